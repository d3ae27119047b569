// Server-side cancels: PQcancel, which blocks, runs on threads of its own;
// a ticket carries its outcome back to the driver's executor, bounded by
// connect_options::cancel_timeout.
#include "driver/driver.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <libpq-fe.h>

#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace asio = boost::asio;

namespace pgq::detail {

namespace {

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
    try {
      if (timer) timer->cancel();
    } catch (...) {
      // It fires and finds nothing left to do.
    }
    timer.reset();
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
