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

#include "detail/driver.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libpq-fe.h>

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
  void operator()(Handler&& h) {
    asio::dispatch(drv->get_executor(), [d = drv, st = st, h = detail::rows_handler(std::forward<Handler>(h))]() mutable {
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
  std::string text(sql);
  asio::dispatch(d->get_executor(), [d, st, text = std::move(text), p = std::move(params)]() mutable {
    d->enqueue_stream(std::move(text), std::move(p), st);
  });
  row_stream s(d, st);
  // The first batch: a statement that fails at once throws here.
  co_await s.fetch();
  co_return s;
}


// --------------------------------------------------------------------- COPY

namespace detail {

struct copy_state {
  std::shared_ptr<driver> d;
  std::string statement;
  enum class mode { idle, in, out };
  mode m = mode::idle;  // what the server is in, as far as we drive it
  bool held = false;    // we hold the connection (pipeline mode off)
  // A COPY TO sent whose first answer has not come: the server sends
  // CopyOutResponse only with its first buffer of rows, so a slow query
  // can run for long before it; abandoned then, it must be cancelled.
  bool out_pending = false;
};

void copy_escape_text(std::string& out, std::string_view value) {
  const char* run = value.data();
  const char* const end = run + value.size();
  for (const char* p = run; p != end; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c > '\r' && c != '\\') continue;  // nothing to escape: the usual case
    const char* rep = nullptr;
    switch (c) {
      case '\\': rep = "\\\\"; break;
      case '\n': rep = "\\n"; break;
      case '\r': rep = "\\r"; break;
      case '\t': rep = "\\t"; break;
      default: continue;
    }
    out.append(run, static_cast<std::size_t>(p - run));
    out.append(rep, 2);
    run = p + 1;
  }
  out.append(run, static_cast<std::size_t>(end - run));
}

void copy_put_int16(std::string& out, std::int16_t v) {
  const auto u = static_cast<std::uint16_t>(v);
  out.push_back(static_cast<char>(u >> 8));
  out.push_back(static_cast<char>(u & 0xff));
}

void copy_put_int32(std::string& out, std::int32_t v) {
  const auto u = static_cast<std::uint32_t>(v);
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((u >> shift) & 0xff));
}

}  // namespace detail

namespace {

using detail::copy_state;
using state_ptr = std::shared_ptr<copy_state>;

pg_conn* live(const copy_state& st) {
  if (!st.d->is_open() || st.d->native_handle() == nullptr) {
    throw sql_error(errc::connection_lost, "the connection was lost during COPY", st.statement);
  }
  return st.d->native_handle();
}

[[noreturn]] void lost(const copy_state& st) {
  const std::string message = detail::connection_error_message(st.d->native_handle());
  st.d->connection_lost(message);
  throw sql_error(errc::connection_lost, message, st.statement);
}

asio::awaitable<void> wait_socket(state_ptr st, asio::posix::stream_descriptor::wait_type w) {
  try {
    co_await st->d->socket().async_wait(w, asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    if (e.code() == asio::error::operation_aborted && st->d->is_open()) {
      throw sql_error(errc::cancelled, "COPY cancelled", st->statement);
    }
    throw sql_error(errc::connection_lost, "the connection was lost during COPY", st->statement);
  }
}

asio::awaitable<void> flush_all(state_ptr st) {
  while (true) {
    const int r = PQflush(live(*st));
    if (r == 0) co_return;
    if (r < 0) lost(*st);
    co_await wait_socket(st, asio::posix::stream_descriptor::wait_write);
  }
}

// The next result of the statement (null after the last), waiting for input.
asio::awaitable<pg_result*> read_result(state_ptr st) {
  while (true) {
    pg_conn* c = live(*st);
    if (PQconsumeInput(c) != 1) lost(*st);
    if (PQisBusy(c) == 0) co_return PQgetResult(c);
    co_await wait_socket(st, asio::posix::stream_descriptor::wait_read);
  }
}

asio::awaitable<void> end_copy_in(state_ptr st, const char* error) {
  while (true) {
    const int r = PQputCopyEnd(live(*st), error);
    if (r == 1) break;
    if (r < 0) lost(*st);
    co_await wait_socket(st, asio::posix::stream_descriptor::wait_write);
  }
  co_await flush_all(st);
}

// Reads results until libpq is idle, ending any COPY still open.
asio::awaitable<void> drain_to_idle(state_ptr st) {
  while (pg_result* r = co_await read_result(st)) {
    const ExecStatusType status = PQresultStatus(r);
    PQclear(r);
    if (status == PGRES_COPY_IN) {
      co_await end_copy_in(st, "pgq: COPY abandoned");
    } else if (status == PGRES_COPY_OUT) {
      while (true) {
        char* buf = nullptr;
        const int n = PQgetCopyData(live(*st), &buf, 1);
        if (n > 0) {
          PQfreemem(buf);
        } else if (n == 0) {
          co_await wait_socket(st, asio::posix::stream_descriptor::wait_read);
          if (PQconsumeInput(live(*st)) != 1) lost(*st);
        } else if (n == -1) {
          break;
        } else {
          lost(*st);
        }
      }
    }
  }
  st->m = copy_state::mode::idle;
}

void give_back(copy_state& st) noexcept {
  if (!st.held) return;
  st.held = false;
  st.m = copy_state::mode::idle;
  st.d->end_exclusive();
}

// Ends whatever COPY is open, in the background, and gives the connection
// back: what a writer or reader destroyed early, or a failed operation,
// leaves behind.
asio::awaitable<void> clean_up(state_ptr st) {
  try {
    if (st->m == copy_state::mode::in) {
      co_await end_copy_in(st, "pgq: COPY abandoned");
    } else if (st->m == copy_state::mode::out || st->out_pending) {
      st->d->cancel_running();
    }
    co_await drain_to_idle(st);
  } catch (...) {
    if (st->d->is_open()) st->d->connection_lost("could not end an abandoned COPY");
  }
  give_back(*st);
}

void release(const state_ptr& st) noexcept {
  if (!st || !st->held) return;
  try {
    asio::co_spawn(st->d->get_executor(), clean_up(st), asio::detached);
  } catch (...) {
    st->d->connection_lost("out of memory ending a COPY");
    give_back(*st);
  }
}

asio::awaitable<bool> copy_start(state_ptr st, ExecStatusType want) {
  pg_conn* c = live(*st);
  if (PQsendQueryParams(c, st->statement.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) != 1) {
    if (PQstatus(c) == CONNECTION_BAD) lost(*st);
    throw sql_error(errc::protocol_error, detail::connection_error_message(c), st->statement);
  }
  st->out_pending = want == PGRES_COPY_OUT;
  co_await flush_all(st);
  pg_result* r = co_await read_result(st);
  st->out_pending = false;
  if (r == nullptr) throw sql_error(errc::protocol_error, "no result for the COPY statement", st->statement);
  const ExecStatusType status = PQresultStatus(r);
  if (status == want) {
    const bool binary = PQbinaryTuples(r) == 1;
    PQclear(r);
    st->m = want == PGRES_COPY_IN ? copy_state::mode::in : copy_state::mode::out;
    co_return binary;
  }
  std::exception_ptr error;
  if (status == PGRES_FATAL_ERROR) {
    error = std::make_exception_ptr(detail::make_sql_error(r, st->statement));
  } else {
    error = std::make_exception_ptr(sql_error(
        errc::protocol_error,
        want == PGRES_COPY_IN ? "not a COPY ... FROM STDIN statement" : "not a COPY ... TO STDOUT statement",
        st->statement));
  }
  PQclear(r);
  if (status == PGRES_COPY_IN) co_await end_copy_in(st, "pgq: not the COPY direction asked for");
  if (status == PGRES_COPY_OUT) st->d->cancel_running();
  co_await drain_to_idle(st);
  give_back(*st);
  std::rethrow_exception(error);
}

struct initiate_exclusive {
  std::shared_ptr<detail::driver> drv;
  template <class Handler>
  void operator()(Handler&& h) {
    asio::dispatch(drv->get_executor(), [d = drv, h = detail::void_handler(std::forward<Handler>(h))]() mutable {
      std::uint64_t id = 0;
      d->enqueue_exclusive(id, std::move(h));
    });
  }
};

asio::awaitable<state_ptr> begin_copy(std::shared_ptr<detail::driver> d, std::string_view sql, ExecStatusType want,
                                      bool* binary) {
  if (!d) throw sql_error(errc::not_connected, "connection was moved from", std::string(sql));
  auto st = std::make_shared<copy_state>();
  st->d = d;
  st->statement = std::string(sql);
  initiate_exclusive init{d};  // named: see row_stream::fetch()
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr)>(std::move(init),
                                                                                          asio::use_awaitable);
  st->held = true;
  try {
    *binary = co_await asio::co_spawn(d->get_executor(), copy_start(st, want), asio::use_awaitable);
  } catch (...) {
    release(st);
    throw;
  }
  co_return st;
}

asio::awaitable<std::string> copy_put(state_ptr st, std::string data) {
  if (st->m != copy_state::mode::in) throw sql_error(errc::protocol_error, "the COPY is over", st->statement);
  while (true) {
    const int r = PQputCopyData(live(*st), data.data(), static_cast<int>(data.size()));
    if (r == 1) break;
    if (r < 0) lost(*st);
    co_await wait_socket(st, asio::posix::stream_descriptor::wait_write);
  }
  co_await flush_all(st);
  data.clear();
  co_return data;
}

// Ends a COPY FROM STDIN (with an error message: aborts it) and returns the
// rows the server took.
asio::awaitable<std::uint64_t> copy_end(state_ptr st, std::optional<std::string> error) {
  if (st->m != copy_state::mode::in) throw sql_error(errc::protocol_error, "the COPY is over", st->statement);
  co_await end_copy_in(st, error ? error->c_str() : nullptr);
  st->m = copy_state::mode::idle;
  std::uint64_t rows = 0;
  std::exception_ptr failure;
  if (pg_result* r = co_await read_result(st)) {
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
      const char* n = PQcmdTuples(r);
      std::from_chars(n, n + std::strlen(n), rows);
    } else if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
      failure = std::make_exception_ptr(detail::make_sql_error(r, st->statement));
    }
    PQclear(r);
  }
  co_await drain_to_idle(st);
  give_back(*st);
  if (failure && !error) std::rethrow_exception(failure);
  co_return rows;
}

struct copy_batch {
  std::string data;
  std::vector<std::size_t> ends;
  bool done = false;
  std::uint64_t rows = 0;
};

asio::awaitable<copy_batch> copy_get(state_ptr st, copy_batch b) {
  b.data.clear();
  b.ends.clear();
  if (st->m != copy_state::mode::out) throw sql_error(errc::protocol_error, "the COPY is over", st->statement);
  constexpr std::size_t batch_bytes = 256 * 1024;
  while (true) {
    char* buf = nullptr;
    const int n = PQgetCopyData(live(*st), &buf, 1);
    if (n > 0) {
      b.data.append(buf, static_cast<std::size_t>(n));
      PQfreemem(buf);
      b.ends.push_back(b.data.size());
      if (b.data.size() >= batch_bytes) co_return b;
    } else if (n == 0) {
      if (!b.ends.empty()) co_return b;
      co_await wait_socket(st, asio::posix::stream_descriptor::wait_read);
      if (PQconsumeInput(live(*st)) != 1) lost(*st);
    } else if (n == -1) {
      st->m = copy_state::mode::idle;
      std::exception_ptr failure;
      if (pg_result* r = co_await read_result(st)) {
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
          const char* t = PQcmdTuples(r);
          std::from_chars(t, t + std::strlen(t), b.rows);
        } else if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
          failure = std::make_exception_ptr(detail::make_sql_error(r, st->statement));
        }
        PQclear(r);
      }
      co_await drain_to_idle(st);
      give_back(*st);
      if (failure) std::rethrow_exception(failure);
      b.done = true;
      co_return b;
    } else {
      lost(*st);
    }
  }
}

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
  auto st = co_await begin_copy(drv_, sql, PGRES_COPY_IN, &binary);
  co_return copy_writer(std::move(st), binary);
}

asio::awaitable<copy_reader> connection::copy_out(std::string_view sql) {
  bool binary = false;
  auto st = co_await begin_copy(drv_, sql, PGRES_COPY_OUT, &binary);
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
  void operator()(Handler&& h) {
    asio::dispatch(drv->get_executor(),
                   [d = drv, h = detail::notification_handler(std::forward<Handler>(h))]() mutable {
                     d->next_notification(std::move(h));
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
