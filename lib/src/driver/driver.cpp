#include "driver/driver.hpp"
#include "driver/resolve.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libpq-fe.h>

#include <charconv>
#include <fcntl.h>
#include <unistd.h>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace asio = boost::asio;

namespace pgq::detail {

std::string connection_error_message(pg_conn* conn) { return trim_message(PQerrorMessage(conn)); }

bool running_in(const asio::any_io_executor& ex) noexcept {
  using io_ex = asio::io_context::executor_type;
  if (const auto* e = ex.target<io_ex>()) return e->running_in_this_thread();
  if (const auto* s = ex.target<asio::strand<io_ex>>()) return s->running_in_this_thread();
  if (const auto* s = ex.target<asio::strand<asio::any_io_executor>>()) return s->running_in_this_thread();
  return false;
}

namespace {





std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::optional<std::chrono::milliseconds> parse_seconds(const std::string& s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  // libpq treats 1 as 2 seconds and <= 0 as "no limit".
  if (v <= 0) return std::chrono::milliseconds(0);
  return std::chrono::seconds(v == 1 ? 2 : v);
}


// Runs server-side cancels off the callers' event loops. PQcancel blocks
// (connect, send, wait for the server to close) with no time limit before
// libpq 17, so each runs on a thread of its own: one stuck on a black-holed
// network holds up no other connection's cancel. At most max_threads run at
// once; later ones queue until a thread is free. Threads end when the queue
// is empty. Never destroyed: a thread may still be stuck at exit.
class cancel_runner {
 public:
  static constexpr std::size_t max_threads = 64;

  static cancel_runner& instance() {
    static cancel_runner* runner = new cancel_runner;
    return *runner;
  }

  void post(std::function<void()> job) {
    std::lock_guard lock(mutex_);
    if (running_ >= max_threads) {
      queue_.push_back(std::move(job));
      return;
    }
    ++running_;
    std::thread([this, job = std::move(job)]() mutable { work(std::move(job)); }).detach();
  }

 private:
  void work(std::function<void()> job) {
    while (true) {
      job();
      std::lock_guard lock(mutex_);
      if (queue_.empty()) {
        --running_;
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
    }
  }

  std::mutex mutex_;
  std::deque<std::function<void()>> queue_;
  std::size_t running_ = 0;
};

// Calls `h(args...)` on its own executor: at once when that executor runs on
// this thread and `inline_ok`, else queued there. The handler's cancellation
// slot is cleared there, on the caller's side, right before the call.
template <class Handler, class... Args>
void invoke(const asio::any_io_executor& fallback, const asio::any_io_executor& handler_ex, Handler h,
            bool inline_ok, Args... args) {
  if (!h) return;
  asio::any_completion_executor erased;
  if (!handler_ex) erased = asio::get_associated_executor(h, fallback);
  auto call = [h = std::move(h), ... args = std::move(args)]() mutable {
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) slot.clear();
    std::move(h)(std::move(args)...);
  };
  if (handler_ex) {
    if (inline_ok) {
      asio::dispatch(handler_ex, std::move(call));
    } else {
      asio::post(handler_ex, std::move(call));
    }
  } else if (inline_ok) {
    asio::dispatch(fallback, asio::bind_executor(std::move(erased), std::move(call)));
  } else {
    asio::post(fallback, asio::bind_executor(std::move(erased), std::move(call)));
  }
}

}  // namespace

// One server-side cancel on its way, shared by the driver, its timer and
// the thread that sends it. The thread touches nothing but the ticket (the
// driver may be gone) and hands its end back through `work`.
struct cancel_ticket {
  std::mutex mutex;
  // A tracked executor: the caller's io_context::run() does not return (and
  // the context is not destroyed under the thread) while the cancel is on its
  // way, also after the connection closed: a Ctrl-C that closes everything
  // must still reach the server. Under mutex; released by finish().
  asio::any_io_executor work;
  std::shared_ptr<driver> owner;               // executor only; null once the driver let go
  std::shared_ptr<asio::steady_timer> timer;   // executor only: gives up after cancel_timeout

  // On the executor: the cancel is done, timed out or given up.
  void finish() noexcept {
    if (timer) {
      timer->cancel();
      timer.reset();
    }
    owner.reset();
    asio::any_io_executor w;
    std::lock_guard lock(mutex);
    w.swap(work);
  }
  // On the executor: the cancel arrived or its time is up.
  static void done(const std::shared_ptr<cancel_ticket>& t) {
    if (const std::shared_ptr<driver> d = t->owner) {
      d->on_server_cancel_done(t);
    } else {
      t->finish();
    }
  }
};

driver::driver(asio::any_io_executor ex)
    : ex_(ex), sock_(ex), resolver_(ex), connect_timer_(ex), recancel_timer_(ex) {
  core_.set_completion_slice(completion_slice);
}

driver::~driver() {
  release_socket();
  if (port_.conn != nullptr) PQfinish(port_.conn);
}

void driver::release_socket() noexcept {
  reading_ = writing_ = false;
  if (sock_.is_open()) {
    error_code ignored;
    sock_.cancel(ignored);
    sock_.close(ignored);  // our duplicate: libpq's descriptor stays its own
  }
}

// Asio waits on a duplicate of libpq's descriptor, never on libpq's own:
// libpq closes its socket by itself when the connection breaks (inside
// PQconsumeInput), and the number may be reused at once by another
// connection on another thread; deregistering "our" number from epoll then
// would silence that connection. The duplicate keeps the socket and its
// number ours until we close it.
void driver::wrap_socket() {
  release_socket();
  const int fd = PQsocket(port_.conn);
  if (fd < 0) return;
  const int mine = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (mine < 0) throw sql_error(errc::connect_failed, "could not duplicate the connection's socket");
  error_code ec;
  sock_.assign(mine, ec);
  if (ec) {
    ::close(mine);
    throw sql_error(errc::connect_failed, "could not watch the connection's socket: " + ec.message());
  }
}

asio::awaitable<void> driver::connect(std::string conninfo_text, connect_options opts) {
  if (port_.conn != nullptr || core_.is_open()) close(errc::not_connected);
  conninfo ci = conninfo::parse(conninfo_text);  // throws bad_conninfo

  std::chrono::milliseconds timeout(10000);
  if (opts.connect_timeout) {
    timeout = *opts.connect_timeout;
  } else if (auto v = ci.get("connect_timeout")) {
    auto parsed = parse_seconds(*v);
    if (!parsed) throw sql_error(errc::bad_conninfo, "invalid connect_timeout value: \"" + *v + "\"");
    timeout = *parsed;
  } else if (auto e = env("PGCONNECT_TIMEOUT")) {
    if (auto parsed = parse_seconds(*e)) timeout = *parsed;
  }

  auto self = shared_from_this();
  const std::uint64_t attempt = ++connect_attempt_;
  connect_timed_out_ = false;
  if (timeout.count() > 0) {
    connect_timer_.expires_after(timeout);
    connect_timer_.async_wait([self, attempt](const error_code& ec) {
      // A handler queued before its attempt ended does nothing: it must not
      // cancel the reads of the open connection.
      if (ec || self->connect_attempt_ != attempt) return;
      self->connect_timed_out_ = true;
      self->resolver_.cancel();
      error_code ignored;
      self->sock_.cancel(ignored);
    });
  }
  try {
    co_await connect_steps(ci.to_string(), opts, attempt);
  } catch (...) {
    ++connect_attempt_;
    connect_timer_.cancel();
    const bool timed_out = connect_timed_out_;
    release_socket();
    if (port_.conn != nullptr) {
      PQfinish(port_.conn);
      port_.conn = nullptr;
    }
    if (timed_out) {
      throw sql_error(errc::timeout, "connection attempt timed out after " + std::to_string(timeout.count()) +
                                         " ms (" + ci.redacted() + ")");
    }
    throw;
  }
  ++connect_attempt_;
  connect_timer_.cancel();
}

asio::awaitable<void> driver::connect_steps(std::string text, connect_options opts, std::uint64_t attempt) {
  conninfo ci = conninfo::parse(text);
  auto cs = co_await asio::this_coro::cancellation_state;
  auto check = [&] {
    if (connect_timed_out_) throw sql_error(errc::timeout, "timed out");
    if (connect_attempt_ != attempt) throw sql_error(errc::cancelled, "connection attempt abandoned");
  };
  auto rethrow_cancelled = [&](const boost::system::system_error& e) {
    if (cs.cancelled() != asio::cancellation_type::none && !connect_timed_out_) {
      throw sql_error(errc::cancelled, "connection attempt cancelled");
    }
    if (connect_timed_out_) throw sql_error(errc::timeout, "timed out");
    throw e;
  };

  // Resolve host names here, asynchronously, so that libpq never blocks in
  // getaddrinfo: those of the conninfo, the service file and the environment.
  if (opts.resolve_hosts) {
    try {
      ci = co_await resolve_hosts(std::move(ci), resolver_);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) rethrow_cancelled(e);
      throw;
    }
  }

  std::vector<const char*> keys, values;
  for (const auto& [k, v] : ci.entries()) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  check();
  port_.conn = PQconnectStartParams(keys.data(), values.data(), 0);
  if (port_.conn == nullptr) throw std::bad_alloc();
  if (PQstatus(port_.conn) == CONNECTION_BAD) throw sql_error(errc::connect_failed, connection_error_message(port_.conn));
  port_.farewell.clear();
  PQsetNoticeReceiver(port_.conn, &driver::note_notice, this);

  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    wrap_socket();  // libpq may open a new socket at any step
    check();        // a timer that fired between two waits
    try {
      co_await sock_.async_wait(st == PGRES_POLLING_READING ? asio::posix::stream_descriptor::wait_read
                                                            : asio::posix::stream_descriptor::wait_write,
                                asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) rethrow_cancelled(e);
      throw;
    }
    if (port_.conn == nullptr) throw sql_error(errc::cancelled, "connection closed while connecting");
    check();
    st = PQconnectPoll(port_.conn);
    if (st == PGRES_POLLING_FAILED) throw sql_error(errc::connect_failed, connection_error_message(port_.conn));
  }
  wrap_socket();
  if (PQsetnonblocking(port_.conn, 1) != 0 || PQenterPipelineMode(port_.conn) != 1) {
    throw sql_error(errc::protocol_error, "could not enter pipeline mode: " + connection_error_message(port_.conn));
  }
  cancel_ = std::shared_ptr<pg_cancel>(PQgetCancel(port_.conn), &PQfreeCancel);
  cancel_timeout_ = opts.cancel_timeout;
  backend_pid_.store(PQbackendPID(port_.conn));
  server_version_.store(PQserverVersion(port_.conn));
  const int tx = PQtransactionStatus(port_.conn);
  core_.opened(tx == PQTRANS_INTRANS ? tx_block : tx == PQTRANS_INERROR ? tx_failed : tx_idle,
               opts.statement_cache_size, opts.binary_results);
  tx_.store(core_.tracked_tx(), std::memory_order_release);
  pending_.store(0, std::memory_order_release);
  open_.store(true, std::memory_order_release);
  arm_read();
}

void driver::note_notice(void* self, const pg_result* res) {
  const char* severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (severity == nullptr) return;
  const std::string_view sv(severity);
  if (sv == "FATAL" || sv == "PANIC") static_cast<driver*>(self)->port_.farewell = trim_message(PQresultErrorMessage(res));
}

// ------------------------------------------------------------ requests

void driver::enqueue(std::unique_ptr<request> req) {
  core_.enqueue(std::move(req));
  perform(false);
}

void driver::enqueue_batch(std::shared_ptr<batch_group> group, std::vector<std::unique_ptr<request>> items) {
  core_.enqueue_batch(std::move(group), std::move(items));
  perform(false);
}

void driver::enqueue_detached(std::string sql) {
  if (!core_.is_open()) return;
  auto req = std::make_unique<request>();
  req->what = request::type::detached;
  req->owned_sql = std::move(sql);
  req->sql = req->owned_sql;
  core_.enqueue(std::move(req));
  perform(false);
}

void driver::cancel(std::uint64_t id) {
  core_.cancel(id);
  perform(false);
}

void driver::cancel_running() {
  if (!cancel_) return;
  core_.server_cancel_started();
  start_server_cancel();
}

void driver::connection_lost(const std::string& message) {
  core_.lost(port_.with_farewell(message));
  perform(false);
}

void driver::end_exclusive() {
  core_.end_exclusive();
  perform(false);
}

// ------------------------------------------------------------ performing

void driver::perform(bool inline_ok) {
  if (performing_) return;  // the outer call goes on with what this adds
  performing_ = true;
  while (true) {
    for (int n = core_.take_server_cancels(); n > 0; --n) start_server_cancel();
    auto& done = core_.completions();
    if (!done.empty()) {
      // Callers resumed below must see a lost connection as closed, and the
      // state after their requests.
      if (!core_.is_open()) open_.store(false, std::memory_order_release);
      pending_.store(core_.pending(), std::memory_order_release);
      tx_.store(core_.tracked_tx(), std::memory_order_release);
      delivering_.swap(done);
      for (auto& c : delivering_) deliver(c, inline_ok);
      delivering_.clear();
      continue;  // callers resumed inline may have added more
    }
    if (!core_.woken_streams().empty()) {
      deliver_streams();
      continue;
    }
    if (!core_.notifications().empty()) deliver_notifications();
    if (core_.more_buffered() && core_.is_open()) {
      core_.on_readable();  // the next slice of what libpq has already read
      continue;
    }
    break;
  }
  performing_ = false;
  pending_.store(core_.pending(), std::memory_order_release);
  tx_.store(core_.tracked_tx(), std::memory_order_release);
  if (!core_.is_open()) {
    if (open_.load(std::memory_order_acquire) || sock_.is_open()) teardown();
    return;
  }
  if (core_.wants_read()) arm_read();
  if (core_.wants_write()) arm_write();
}

void driver::deliver(completion& c, bool inline_ok) {
  request_caller& k = c.caller;
  if (c.grant) {
    invoke(ex_, k.ex, std::move(k.on_grant), inline_ok, std::move(c.error));
  } else if (c.batch) {
    invoke(ex_, k.ex, std::move(k.on_batch), inline_ok, std::move(c.error), std::move(c.rows));
  } else {
    invoke(ex_, k.ex, std::move(k.on_result), inline_ok, std::move(c.error), std::move(c.res));
  }
}

void driver::deliver_streams() {
  std::vector<std::shared_ptr<stream_state>> woken;
  woken.swap(core_.woken_streams());
  for (auto& stp : woken) {
    stream_state& st = *stp;
    if (!st.waiter || (st.rows.empty() && !st.done)) continue;
    rows_handler h = std::move(st.waiter);
    std::vector<result> rows;
    rows.swap(st.rows);
    // Rows before an error first: the error comes with the next fetch.
    const bool error_now = st.done && st.error && rows.empty();
    std::exception_ptr ep = error_now ? st.error : nullptr;
    const bool done = st.done && (!st.error || error_now);
    invoke(ex_, asio::any_io_executor(), std::move(h), false, std::move(ep), std::move(rows), done);
  }
}

void driver::stream_fetch(const std::shared_ptr<stream_state>& st, rows_handler h) {
  if (st->waiter) {
    invoke(ex_, asio::any_io_executor(), std::move(h), false,
           std::make_exception_ptr(sql_error(errc::protocol_error, "a stream is read by one task at a time")),
           std::vector<result>{}, false);
    return;
  }
  if (st->abandoned) {
    invoke(ex_, asio::any_io_executor(), std::move(h), false,
           std::make_exception_ptr(sql_error(errc::cancelled, "stream cancelled")), std::vector<result>{}, true);
    return;
  }
  st->waiter.swap(h);
  core_.woken_streams().push_back(st);
  core_.stream_resume();
  perform(false);
}

void driver::stream_abandon(const std::shared_ptr<stream_state>& st) {
  if (st->waiter) {
    rows_handler h = std::move(st->waiter);
    invoke(ex_, asio::any_io_executor(), std::move(h), false,
           std::make_exception_ptr(sql_error(errc::cancelled, "stream cancelled")), std::vector<result>{}, true);
  }
  core_.stream_abandon(st);
  perform(false);
}

void driver::deliver_notifications() {
  for (auto& n : core_.notifications()) {
    if (notifications_.size() >= max_pending_notifications) {
      notifications_.pop_front();
      notifications_dropped_.fetch_add(1);
    }
    notifications_.push_back(std::move(n));
  }
  core_.notifications().clear();
  while (!notifications_.empty() && !notification_waiters_.empty()) {
    notification_handler h = std::move(notification_waiters_.front().second);
    notification_waiters_.pop_front();
    invoke(ex_, asio::any_io_executor(), std::move(h), false, std::exception_ptr(), std::move(notifications_.front()));
    notifications_.pop_front();
  }
}

void driver::next_notification(std::uint64_t id, notification_handler h) {
  if (!core_.is_open() && notifications_.empty()) {
    invoke(ex_, asio::any_io_executor(), std::move(h), false,
           std::make_exception_ptr(sql_error(errc::not_connected, "the connection is not open")),
           pending_notification{});
    return;
  }
  // The id was given to the handler's cancellation slot by the caller.
  notification_waiters_.emplace_back(id, std::move(h));
  deliver_notifications();
}

void driver::cancel_notification_wait(std::uint64_t id) {
  for (auto it = notification_waiters_.begin(); it != notification_waiters_.end(); ++it) {
    if (it->first != id) continue;
    notification_handler h = std::move(it->second);
    notification_waiters_.erase(it);
    invoke(ex_, asio::any_io_executor(), std::move(h), false,
           std::make_exception_ptr(sql_error(errc::cancelled, "wait for a notification cancelled")),
           pending_notification{});
    return;
  }
}

// ------------------------------------------------------------ socket

void driver::arm_read() {
  if (reading_ || !sock_.is_open()) return;
  reading_ = true;
  sock_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [self = shared_from_this()](const error_code& ec) { self->on_readable(ec); });
}

void driver::arm_write() {
  if (writing_ || !sock_.is_open()) return;
  writing_ = true;
  sock_.async_wait(asio::posix::stream_descriptor::wait_write,
                   [self = shared_from_this()](const error_code& ec) { self->on_writable(ec); });
}

void driver::on_readable(const error_code& ec) {
  reading_ = false;
  if (!core_.is_open()) return;
  if (ec) {
    // Aborted by someone else's cancel of the socket's waits (a COPY that
    // waited, a connect timer): the connection still wants reading.
    if (ec == asio::error::operation_aborted) {
      if (core_.wants_read()) arm_read();
      return;
    }
    connection_lost(ec.message());
    return;
  }
  if (!core_.wants_read()) return;  // a COPY reads for itself; a stream is paused
  core_.on_readable();
  perform(true);
}

void driver::on_writable(const error_code& ec) {
  writing_ = false;
  if (!core_.is_open()) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) {
      if (core_.wants_write()) arm_write();
      return;
    }
    connection_lost(ec.message());
    return;
  }
  core_.on_writable();
  perform(true);
}

// ------------------------------------------------------------ server cancels

void driver::start_server_cancel() {
  if (!cancel_) {
    core_.on_server_cancel_done();
    return;
  }
  auto ticket = std::make_shared<cancel_ticket>();
  ticket->work = asio::prefer(ex_, asio::execution::outstanding_work.tracked);
  ticket->owner = shared_from_this();
  pending_cancels_.push_back(ticket);
  if (cancel_timeout_.count() > 0) {
    // A cancel that does not arrive in time (a black-holed network) is not
    // waited for any longer: requests queued behind it go out.
    ticket->timer = std::make_shared<asio::steady_timer>(ex_, cancel_timeout_);
    ticket->timer->async_wait([ticket](const error_code& ec) {
      if (!ec) cancel_ticket::done(ticket);
    });
  }
  cancel_runner::instance().post([c = cancel_, ticket] {
    char errbuf[256];
    PQcancel(c.get(), errbuf, sizeof errbuf);
    std::lock_guard lock(ticket->mutex);
    if (!ticket->work) return;  // given up meanwhile
    asio::post(ticket->work, [ticket] { cancel_ticket::done(ticket); });
  });
}

void driver::on_server_cancel_done(const std::shared_ptr<cancel_ticket>& ticket) {
  settle_cancel(ticket);
  core_.on_server_cancel_done();
  perform(false);
  arm_recancel();
}

// The server ignores a cancel that reaches the backend while it reads the
// request's messages: if the request still runs a little after its cancel
// was done, cancel it again (with growing pauses, for as long as it runs).
void driver::arm_recancel() {
  const std::uint64_t id = core_.cancelled_but_running();
  if (id == 0 || recancel_armed_) return;
  recancel_armed_ = true;
  recancel_timer_.expires_after(core_.recancel_delay());
  recancel_timer_.async_wait([self = shared_from_this(), id](const error_code& ec) {
    self->recancel_armed_ = false;
    if (ec || !self->core_.is_open()) return;
    self->core_.recancel(id);
    self->perform(false);
    self->arm_recancel();  // another request may have become the one to cancel again
  });
}

void driver::settle_cancel(const std::shared_ptr<cancel_ticket>& ticket) noexcept {
  pending_cancels_.remove(ticket);
  ticket->finish();
}

void driver::detach_cancels() noexcept {
  // The session is gone, but a cancel on its way still goes out (bounded by
  // its timer): the statement it stops may outlive the connection.
  for (auto& t : pending_cancels_) t->owner.reset();
  pending_cancels_.clear();
}

// ------------------------------------------------------------ closing

void driver::teardown() noexcept {
  open_.store(false, std::memory_order_release);
  release_socket();
  detach_cancels();
  recancel_timer_.cancel();
  auto waiters = std::move(notification_waiters_);
  notification_waiters_.clear();
  const std::string& why = core_.lost_reason();
  for (auto& [id, h] : waiters) {
    try {
      invoke(ex_, asio::any_io_executor(), std::move(h), false,
             std::make_exception_ptr(why.empty() ? sql_error(errc::not_connected, "the connection was closed")
                                                 : sql_error(errc::connection_lost, why)),
             pending_notification{});
    } catch (...) {
    }
  }
}

void driver::close(errc why) noexcept {
  try {
    ++connect_attempt_;
    core_.close(why, "the connection was closed");
    perform(false);
  } catch (...) {
    // Out of memory while failing requests: their handlers go with them.
  }
  teardown();
  connect_timer_.cancel();
  resolver_.cancel();
  if (port_.conn != nullptr) {
    PQfinish(port_.conn);
    port_.conn = nullptr;
  }
  cancel_.reset();
  backend_pid_.store(0);
  server_version_.store(0);
}

}  // namespace pgq::detail
