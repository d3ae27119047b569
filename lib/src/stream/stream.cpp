// Streams of rows: a stream is a request like any other, riding the pipeline
// in single-row mode; the driver buffers its rows and row_stream fetches
// them a batch at a time.
#include <pgq/connection.hpp>
#include <pgq/stream.hpp>

#include "driver/driver.hpp"
#include "type_catalog.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;

namespace pgq {

row_stream::row_stream(std::shared_ptr<detail::driver> drv, std::shared_ptr<detail::stream_state> st) noexcept
    : drv_(std::move(drv)), st_(std::move(st)) {}

row_stream::row_stream(row_stream&&) noexcept = default;

row_stream& row_stream::operator=(row_stream&& other) noexcept {
  if (this != &other) {
    cancel();
    drv_ = std::move(other.drv_);
    st_ = std::move(other.st_);
    batch_ = std::move(other.batch_);
    next_in_batch_ = other.next_in_batch_;
    current_ = std::move(other.current_);
    row_in_current_ = other.row_in_current_;
    final_ = std::move(other.final_);
    ended_ = other.ended_;
    finished_ = other.finished_;
    rows_read_ = other.rows_read_;
    owner_ = std::move(other.owner_);
    reader_ = std::move(other.reader_);
    reader_type_ = std::exchange(other.reader_type_, nullptr);
  }
  return *this;
}

row_stream::~row_stream() { cancel(); }

const result& row_stream::meta() const noexcept {
  if (current_.native_handle() != nullptr) return current_;
  if (next_in_batch_ < batch_.size()) return batch_[next_in_batch_];
  if (final_.native_handle() == nullptr && ended_ && st_ && st_->done) return st_->final;
  return final_;
}

void row_stream::cancel() noexcept {
  if (!st_ || ended_) return;
  ended_ = true;
  finished_ = true;
  try {
    asio::post(drv_->get_executor(), [d = drv_, st = st_] { d->stream_abandon(st); });
  } catch (...) {
    // Out of memory: the rows are dropped when the connection closes.
  }
}

namespace {
struct initiate_fetch {
  std::shared_ptr<detail::driver> drv;
  std::shared_ptr<detail::stream_state> st;
  template <class Handler>
  void operator()(Handler&& handler) {
    detail::rows_handler h(std::forward<Handler>(handler));
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) {
      // Assigned here, on the caller's side: a cancel emitted at once is
      // not lost. Giving up a fetch gives up the stream.
      slot.assign([w = std::weak_ptr<detail::driver>(drv), ex = drv->get_executor(), st = st](asio::cancellation_type) {
        asio::post(ex, [w, st] {
          auto d = w.lock();
          if (d && st->waiter) d->stream_abandon(st);
        });
      });
    }
    asio::dispatch(drv->get_executor(),
                   [d = drv, st = st, h = std::move(h)]() mutable { d->stream_fetch(st, std::move(h)); });
  }
};
}  // namespace

asio::awaitable<void> row_stream::fetch() {
  // Named, not a temporary in the co_await expression (GCC 12 destroys
  // those twice).
  initiate_fetch init{drv_, st_};
  auto [rows, done] = co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                                    void(std::exception_ptr, std::vector<result>, bool)>(
      std::move(init), asio::use_awaitable);
  batch_ = std::move(rows);
  // No catalog lookup of its own (rows arrive while the statement runs):
  // the types this connection already looked up name the composites.
  if (auto types = drv_->types.load()) {
    for (auto& r : batch_) detail::attach_types(r, types);
  }
  next_in_batch_ = 0;
  if (done) ended_ = true;
}

asio::awaitable<std::optional<row>> row_stream::next() {
  if (!st_) throw sql_error(errc::not_connected, "the stream is empty (moved from or never started)");
  while (true) {
    if (current_.native_handle() != nullptr && row_in_current_ + 1 < current_.size()) {
      ++row_in_current_;
      ++rows_read_;
      co_return current_[row_in_current_];
    }
    if (next_in_batch_ < batch_.size()) {
      current_ = std::move(batch_[next_in_batch_++]);
      row_in_current_ = -1;
      continue;
    }
    if (ended_) {
      if (!finished_) {
        finished_ = true;
        // The statement's closing result: the command tag, or the error.
        if (st_->done) final_ = st_->final;
      }
      co_return std::nullopt;
    }
    try {
      co_await fetch();
    } catch (...) {
      ended_ = true;
      finished_ = true;
      throw;
    }
  }
}

asio::awaitable<row_stream> connection::stream_params(std::string_view sql, detail::param_set params) {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from", std::string(sql));
  auto st = std::make_shared<detail::stream_state>();
  auto d = drv_;
  auto req = std::make_unique<detail::request>();
  req->id = d->next_id();
  st->id = req->id;
  req->what = detail::request::type::stream;
  req->owned_sql = std::string(sql);  // the stream may outlive the caller's text
  req->sql = req->owned_sql;
  req->params = std::move(params);
  req->stream = st;
  asio::dispatch(d->get_executor(), [d, r = std::move(req)]() mutable { d->enqueue(std::move(r)); });
  row_stream s(d, st);
  // The first batch: a statement that fails at once throws here.
  co_await s.fetch();
  co_return s;
}

}  // namespace pgq
