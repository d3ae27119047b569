// Streams of rows, COPY in and out, LISTEN/NOTIFY and the listener.
//
// Streams ride the pipeline like any request (in single-row mode). COPY
// cannot: libpq refuses it in pipeline mode. A COPY therefore asks the driver
// for the connection exclusively (granted once the pipeline is empty, with
// pipeline mode off), drives libpq itself from coroutines spawned on the
// driver's executor, and hands the connection back.
#include <pgq/connection.hpp>
#include <pgq/copy.hpp>
#include <pgq/notify.hpp>
#include <pgq/stream.hpp>
#include <pgq/timeout.hpp>

#include "driver/copy.hpp"
#include "driver/driver.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>


#include <algorithm>
#include <charconv>
#include <cstring>

namespace asio = boost::asio;

namespace pgq {

// ------------------------------------------------------------------ streams

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
    asio::dispatch(drv->get_executor(), [d = drv, st = st, h = std::move(h)]() mutable {
      d->stream_fetch(st, std::move(h));
    });
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


// --------------------------------------------------------------------- COPY
// (driven by lib/src/driver/copy.cpp)

namespace {
using detail::copy_batch;
using detail::copy_end;
using detail::copy_get;
using detail::copy_put;
void release(const detail::copy_state_ptr& st) noexcept { detail::copy_release(st); }
}  // namespace

copy_writer::copy_writer(std::shared_ptr<detail::copy_state> st, bool binary) noexcept
    : st_(std::move(st)), binary_(binary) {}
copy_writer::copy_writer(copy_writer&&) noexcept = default;
copy_writer& copy_writer::operator=(copy_writer&& other) noexcept {
  if (this != &other) {
    release(st_);
    st_ = std::move(other.st_);
    buffer_ = std::move(other.buffer_);
    binary_ = other.binary_;
    header_written_ = other.header_written_;
  }
  return *this;
}
copy_writer::~copy_writer() { release(st_); }

void copy_writer::write_binary_header() {
  static constexpr char signature[] = "PGCOPY\n\377\r\n";
  buffer_.append(signature, sizeof signature);  // with its NUL: 11 bytes
  detail::copy_put_int32(buffer_, 0);           // flags
  detail::copy_put_int32(buffer_, 0);           // header extension length
  header_written_ = true;
}

asio::awaitable<void> copy_writer::write(std::string_view data) {
  buffer_.append(data);
  co_await flush_if_full();
}

asio::awaitable<void> copy_writer::flush_if_full() {
  if (buffer_.size() >= buffer_limit) co_await flush();
}

asio::awaitable<void> copy_writer::flush() {
  if (!st_ || !st_->held) throw sql_error(errc::protocol_error, "the COPY is over");
  if (buffer_.empty()) co_return;
  try {
    buffer_ = co_await asio::co_spawn(st_->d->get_executor(), copy_put(st_, std::move(buffer_)), asio::use_awaitable);
  } catch (...) {
    buffer_.clear();
    release(st_);
    throw;
  }
}

asio::awaitable<std::uint64_t> copy_writer::finish() {
  if (!st_ || !st_->held) throw sql_error(errc::protocol_error, "the COPY is over");
  if (binary_ && header_written_) detail::copy_put_int16(buffer_, -1);  // the trailer
  co_await flush();
  try {
    const std::uint64_t n =
        co_await asio::co_spawn(st_->d->get_executor(), copy_end(st_, std::nullopt), asio::use_awaitable);
    co_return n;
  } catch (...) {
    release(st_);
    throw;
  }
}

asio::awaitable<void> copy_writer::abort(std::string_view reason) {
  if (!st_ || !st_->held) co_return;
  buffer_.clear();
  std::optional<std::string> why(std::string{reason});
  try {
    co_await asio::co_spawn(st_->d->get_executor(), copy_end(st_, std::move(why)), asio::use_awaitable);
  } catch (...) {
    release(st_);
    throw;
  }
}

copy_reader::copy_reader(std::shared_ptr<detail::copy_state> st, bool binary) noexcept
    : st_(std::move(st)), binary_(binary) {}
copy_reader::copy_reader(copy_reader&&) noexcept = default;
copy_reader& copy_reader::operator=(copy_reader&& other) noexcept {
  if (this != &other) {
    release(st_);
    st_ = std::move(other.st_);
    data_ = std::move(other.data_);
    ends_ = std::move(other.ends_);
    next_ = other.next_;
    binary_ = other.binary_;
    ended_ = other.ended_;
    rows_ = other.rows_;
  }
  return *this;
}
copy_reader::~copy_reader() { release(st_); }

asio::awaitable<std::optional<std::string_view>> copy_reader::next() {
  if (!st_) throw sql_error(errc::not_connected, "the COPY reader is empty");
  while (true) {
    if (next_ < ends_.size()) {
      const std::size_t begin = next_ == 0 ? 0 : ends_[next_ - 1];
      const std::size_t end = ends_[next_++];
      co_return std::string_view(data_.data() + begin, end - begin);
    }
    if (ended_) co_return std::nullopt;
    copy_batch b;
    b.data = std::move(data_);
    b.ends = std::move(ends_);
    try {
      b = co_await asio::co_spawn(st_->d->get_executor(), copy_get(st_, std::move(b)), asio::use_awaitable);
    } catch (...) {
      ended_ = true;
      data_.clear();
      ends_.clear();
      release(st_);
      throw;
    }
    data_ = std::move(b.data);
    ends_ = std::move(b.ends);
    next_ = 0;
    if (b.done) {
      ended_ = true;
      rows_ = b.rows;
    }
  }
}

asio::awaitable<copy_writer> connection::copy_in(std::string_view sql) {
  bool binary = false;
  auto st = co_await detail::begin_copy(drv_, sql, true, &binary);
  co_return copy_writer(std::move(st), binary);
}

asio::awaitable<copy_reader> connection::copy_out(std::string_view sql) {
  bool binary = false;
  auto st = co_await detail::begin_copy(drv_, sql, false, &binary);
  co_return copy_reader(std::move(st), binary);
}

// ----------------------------------------------------------- LISTEN/NOTIFY

std::string quote_identifier(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '"';
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

asio::awaitable<void> connection::listen(std::string_view channel) {
  if (channel.find('\0') != std::string_view::npos) throw sql_error(errc::invalid_value, "NUL in a channel name");
  const std::string sql = "LISTEN " + quote_identifier(channel);
  co_await query_params(sql, {});
}

asio::awaitable<void> connection::unlisten(std::string_view channel) {
  if (channel.find('\0') != std::string_view::npos) throw sql_error(errc::invalid_value, "NUL in a channel name");
  const std::string sql = channel == "*" ? std::string("UNLISTEN *") : "UNLISTEN " + quote_identifier(channel);
  co_await query_params(sql, {});
}

asio::awaitable<void> connection::notify(std::string_view channel, std::string_view payload) {
  co_await query_params("SELECT pg_notify($1, $2)", detail::make_params(channel, payload));
}

namespace {
struct initiate_notification {
  std::shared_ptr<detail::driver> drv;
  template <class Handler>
  void operator()(Handler&& handler) {
    const std::uint64_t id = drv->next_waiter_id();
    detail::notification_handler h(std::forward<Handler>(handler));
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) {
      slot.assign([w = std::weak_ptr<detail::driver>(drv), ex = drv->get_executor(), id](asio::cancellation_type) {
        asio::post(ex, [w, id] {
          if (auto d = w.lock()) d->cancel_notification_wait(id);
        });
      });
    }
    asio::dispatch(drv->get_executor(),
                   [d = drv, id, h = std::move(h)]() mutable {
                     d->next_notification(id, std::move(h));
                   });
  }
};
}  // namespace

asio::awaitable<notification> connection::next_notification() {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from");
  initiate_notification init{drv_};  // named: see row_stream::fetch()
  detail::pending_notification p =
      co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                    void(std::exception_ptr, detail::pending_notification)>(
          std::move(init), asio::use_awaitable);
  notification n;
  n.channel = std::move(p.channel);
  n.payload = std::move(p.payload);
  n.sender_pid = p.sender_pid;
  co_return n;
}

std::size_t connection::notifications_dropped() const noexcept {
  return drv_ ? drv_->notifications_dropped() : 0;
}

// ----------------------------------------------------------------- listener

namespace detail {
struct listener_impl {
  asio::any_io_executor ex;
  std::string conninfo;
  listener_options opts;
  std::unique_ptr<connection> conn;
  std::vector<std::string> channels;
  bool connected_once = false;
  bool closed = false;
  bool gap = false;
  std::string lost_reason;
};
}  // namespace detail

namespace {

// Connects and re-subscribes. Before the first success errors are thrown;
// after it, retries with backoff until it works (or the listener closes).
asio::awaitable<void> ensure_connected(detail::listener_impl* l) {
  if (l->conn && l->conn->is_open()) co_return;
  std::chrono::milliseconds delay = l->opts.reconnect_delay;
  while (true) {
    if (l->closed) throw sql_error(errc::not_connected, "the listener is closed");
    try {
      auto c = std::make_unique<connection>(l->ex);
      co_await c->connect(l->conninfo, l->opts.connect);
      for (const auto& ch : l->channels) co_await c->listen(ch);
      l->conn = std::move(c);
      co_return;
    } catch (const sql_error& e) {
      if (e.code() == errc::cancelled || !l->connected_once) throw;
    }
    asio::steady_timer t(l->ex);
    t.expires_after(delay);
    co_await t.async_wait(asio::use_awaitable);
    delay = std::min(delay * 2, l->opts.max_reconnect_delay);
  }
}

}  // namespace

listener::listener(asio::any_io_executor ex, std::string conninfo, listener_options opts)
    : impl_(std::make_shared<detail::listener_impl>()) {
  impl_->ex = std::move(ex);
  impl_->conninfo = std::move(conninfo);
  impl_->opts = opts;
}

listener::~listener() { close(); }

asio::awaitable<void> listener::listen(std::string channel) {
  auto l = impl_;
  if (l->conn && !l->conn->is_open() && !l->gap) {
    l->gap = true;  // reported by the next next()
    l->lost_reason = "the connection was lost";
  }
  co_await ensure_connected(l.get());
  l->connected_once = true;
  co_await l->conn->listen(channel);
  if (std::find(l->channels.begin(), l->channels.end(), channel) == l->channels.end())
    l->channels.push_back(std::move(channel));
}

asio::awaitable<void> listener::unlisten(std::string channel) {
  auto l = impl_;
  std::erase(l->channels, channel);
  if (l->conn && l->conn->is_open()) co_await l->conn->unlisten(channel);
}

asio::awaitable<listener_event> listener::next() {
  auto l = impl_;
  while (true) {
    if (l->closed) throw sql_error(errc::not_connected, "the listener is closed");
    if (l->gap && l->conn && l->conn->is_open()) {
      l->gap = false;
      listener_event ev;
      ev.what = listener_event::kind::reconnected;
      ev.reason = std::move(l->lost_reason);
      l->lost_reason.clear();
      co_return ev;
    }
    if (!l->conn || !l->conn->is_open()) {
      if (l->conn && !l->gap) {
        // Lost while nobody waited in next(): a gap all the same.
        l->gap = true;
        l->lost_reason = "the connection was lost";
      }
      l->connected_once = true;
      co_await ensure_connected(l.get());
      continue;
    }
    try {
      notification n = co_await l->conn->next_notification();
      listener_event ev;
      ev.note = std::move(n);
      co_return ev;
    } catch (const sql_error& e) {
      if (e.code() == errc::cancelled || l->closed) throw;
      l->lost_reason = e.what();
      l->gap = true;
      l->conn->close();
    }
  }
}

const std::vector<std::string>& listener::channels() const noexcept { return impl_->channels; }

int listener::backend_pid() const noexcept {
  return impl_->conn && impl_->conn->is_open() ? impl_->conn->backend_pid() : 0;
}

void listener::close() noexcept {
  if (!impl_) return;
  impl_->closed = true;
  if (impl_->conn) impl_->conn->close();
}

}  // namespace pgq
