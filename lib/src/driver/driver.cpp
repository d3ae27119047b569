// The Asio driver: requests in, the pipeline state machine's actions
// performed on the connection's executor, the socket waits, closing.
// Connecting is in connect.cpp, server-side cancels in cancel.cpp.
#include "driver/driver.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <libpq-fe.h>

namespace asio = boost::asio;

namespace pgq::detail {

bool running_in(const asio::any_io_executor& ex) noexcept {
  using io_ex = asio::io_context::executor_type;
  if (const auto* e = ex.target<io_ex>()) return e->running_in_this_thread();
  if (const auto* s = ex.target<asio::strand<io_ex>>()) return s->running_in_this_thread();
  if (const auto* s = ex.target<asio::strand<asio::any_io_executor>>()) return s->running_in_this_thread();
  return false;
}

namespace {

// Calls `h(args...)` on its own executor: at once when that executor runs on
// this thread and `inline_ok`, else queued there. The handler's cancellation
// slot is cleared there, on the caller's side, right before the call.
template <class Handler, class... Args>
void invoke(const asio::any_io_executor& fallback, const asio::any_io_executor& handler_ex, Handler h, bool inline_ok,
            Args... args) {
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

driver::driver(const asio::any_io_executor& ex)
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
    if (core_.wants_flush() && inline_ok) {
      // After an I/O event, callers resumed inline have queued their next
      // requests by now: one write for all of them.
      core_.end_of_burst();
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
  if (core_.wants_flush()) post_end_of_burst();
  if (core_.wants_read()) arm_read();
  if (core_.wants_write()) arm_write();
}

// Requests queued without a write (PQsendPipelineSync) go out when the
// executor has run what was queued on it before: every request made in the
// same turn of the event loop shares one write.
void driver::post_end_of_burst() {
  if (burst_posted_) return;
  burst_posted_ = true;
  asio::post(ex_, [self = shared_from_this()] {
    self->burst_posted_ = false;
    if (!self->core_.is_open()) return;
    self->core_.end_of_burst();
    self->perform(false);
  });
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
    st.buffered = 0;
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

// ------------------------------------------------------------ closing

void driver::teardown() noexcept {
  open_.store(false, std::memory_order_release);
  release_socket();
  detach_cancels();
  try {
    recancel_timer_.cancel();
  } catch (...) {
    // It fires, finds the connection closed and does nothing.
  }
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
  try {
    connect_timer_.cancel();
    resolver_.cancel();
  } catch (...) {
    // They complete later and find a newer connect attempt: nothing to do.
  }
  if (port_.conn != nullptr) {
    PQfinish(port_.conn);
    port_.conn = nullptr;
  }
  cancel_.reset();
  backend_pid_.store(0);
  server_version_.store(0);
  protocol_version_.store(0);
}

}  // namespace pgq::detail
