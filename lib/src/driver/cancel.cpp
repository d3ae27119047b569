// Server-side cancels. With libpq 17 or newer, a non-blocking cancel
// connection (PQcancelCreate, PQcancelStart, PQcancelPoll) driven on the
// connection's executor, its socket watched by Asio: no thread. Before
// libpq 17, PQcancel, which blocks, runs on threads of its own. Either way a
// ticket carries the outcome back to the driver's executor, bounded by
// connect_options::cancel_timeout.
#include "driver/driver.hpp"
#include "driver/libpq_compat.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <libpq-fe.h>

#include <fcntl.h>
#include <unistd.h>

#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace asio = boost::asio;

namespace pgq::detail {

namespace {

std::atomic<std::uint64_t> cancel_threads{0};

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
    cancel_threads.fetch_add(1, std::memory_order_relaxed);
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

}  // namespace

std::uint64_t cancel_threads_started() noexcept { return cancel_threads.load(std::memory_order_relaxed); }

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
  std::shared_ptr<driver> owner;              // executor only; null once the driver let go
  std::shared_ptr<asio::steady_timer> timer;  // executor only: gives up after cancel_timeout
  // libpq 17: the cancel connection and a duplicate of its socket (executor
  // only; null once finished).
  pg_cancel_conn* conn = nullptr;
  std::unique_ptr<asio::posix::stream_descriptor> sock;

  cancel_ticket() = default;
  cancel_ticket(const cancel_ticket&) = delete;
  cancel_ticket& operator=(const cancel_ticket&) = delete;
  ~cancel_ticket() { close_conn(); }

  void close_conn() noexcept {
    if (sock) {
      error_code ignored;
      sock->cancel(ignored);
      sock->close(ignored);  // our duplicate
      sock.reset();
    }
    if (conn != nullptr) libpq().cancel_finish(std::exchange(conn, nullptr));
  }

  // On the executor: the cancel is done, timed out or given up.
  void finish() noexcept {
    try {
      if (timer) timer->cancel();
    } catch (...) {
      // It fires and finds nothing left to do.
    }
    timer.reset();
    close_conn();
    owner.reset();
    asio::any_io_executor w;
    try {
      std::lock_guard lock(mutex);
      w.swap(work);
    } catch (...) {
      // std::mutex::lock failing (no resources): the work guard stays and
      // is released with the ticket.
    }
  }
  // On the executor: the cancel arrived or its time is up.
  static void done(const std::shared_ptr<cancel_ticket>& t) {
    if (const std::shared_ptr<driver> d = t->owner) {
      d->on_server_cancel_done(t);
    } else {
      t->finish();
    }
  }

  // One step of a libpq 17 cancel connection, as PQconnectPoll's: wait
  // until its socket is ready as libpq asked (writable at first), then poll.
  // On `ex` (the driver's executor); touches only the ticket: the driver may
  // be gone, and the cancel still goes out.
  static void step(const std::shared_ptr<cancel_ticket>& t, const asio::any_io_executor& ex, bool first) {
    const libpq_api& api = libpq();
    int status = PGRES_POLLING_WRITING;
    if (!first) status = api.cancel_poll(t->conn);
    if (status == PGRES_POLLING_OK || status == PGRES_POLLING_FAILED) {
      done(t);
      return;
    }
    // libpq may open a new socket at a step, and closes its own when the
    // cancel connection fails: wait on a duplicate, as for the connection.
    const int fd = api.cancel_socket(t->conn);
    const int mine = fd < 0 ? -1 : ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mine < 0) {
      done(t);
      return;
    }
    if (t->sock) {
      error_code ignored;
      t->sock->close(ignored);
    }
    t->sock = std::make_unique<asio::posix::stream_descriptor>(ex);
    error_code ec;
    t->sock->assign(mine, ec);
    if (ec) {
      ::close(mine);
      done(t);
      return;
    }
    t->sock->async_wait(status == PGRES_POLLING_READING ? asio::posix::stream_descriptor::wait_read
                                                        : asio::posix::stream_descriptor::wait_write,
                        [t, ex](const error_code& e) {
                          if (t->conn == nullptr) return;  // finished meanwhile (timed out)
                          if (e) {
                            done(t);
                            return;
                          }
                          step(t, ex, false);
                        });
  }
};

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
  const libpq_api& api = libpq();
  if (api.has_cancel_conn() && port_.conn != nullptr) {
    ticket->conn = api.cancel_create(port_.conn);
    if (ticket->conn == nullptr || api.cancel_start(ticket->conn) != 1) {
      // Out of memory, or no socket: as good as done (nothing will come).
      asio::post(ex_, [ticket] { cancel_ticket::done(ticket); });
      return;
    }
    cancel_ticket::step(ticket, ex_, true);
    return;
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
  pending_cancels_.remove_if([&](const std::shared_ptr<cancel_ticket>& t) noexcept { return t == ticket; });
  ticket->finish();
}

void driver::detach_cancels() noexcept {
  // The session is gone, but a cancel on its way still goes out (bounded by
  // its timer): the statement it stops may outlive the connection.
  for (auto& t : pending_cancels_) t->owner.reset();
  pending_cancels_.clear();
}

}  // namespace pgq::detail
