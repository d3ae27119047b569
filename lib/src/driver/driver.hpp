// The Asio half of the per-connection driver: it waits on libpq's socket and
// on timers, and performs what the pipeline state machine (pipeline.hpp)
// decides. Every member is used on the driver's executor only, except those
// marked "any thread" (atomics).
#pragma once

#include "driver/libpq_port.hpp"
#include "driver/pipeline.hpp"

#include <pgq/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <type_traits>

struct pg_conn;
struct pg_cancel;

namespace pgq::detail {

using notification_handler = boost::asio::any_completion_handler<void(std::exception_ptr, pending_notification)>;

/// True when the calling thread runs `ex` now (io_context executors and
/// strands of them; false for any other kind, which then gets a post).
bool running_in(const boost::asio::any_io_executor& ex) noexcept;

struct cancel_ticket;
struct type_catalog;

/// Threads the PQcancel runner (libpq before 17) has started so far, in this
/// process: the tests check that a libpq 17 cancel starts none.
std::uint64_t cancel_threads_started() noexcept;

class driver : public std::enable_shared_from_this<driver> {
 public:
  /// Notifications kept for a reader that does not come; older ones are
  /// dropped beyond this (and counted).
  static constexpr std::size_t max_pending_notifications = 1'000'000;

  explicit driver(const boost::asio::any_io_executor& ex);
  ~driver();

  const boost::asio::any_io_executor& get_executor() const noexcept { return ex_; }

  /// Opens the connection; must run on the driver's executor.
  boost::asio::awaitable<void> connect(std::string conninfo_text, connect_options opts);

  /// A fresh request id (any thread).
  std::uint64_t next_id() noexcept { return core_.next_id(); }
  void enqueue(std::unique_ptr<request> req);
  void enqueue_batch(std::shared_ptr<batch_group> group, std::vector<std::unique_ptr<request>> items);
  void enqueue_detached(std::string sql);
  void cancel(std::uint64_t id);

  // Streams.
  void stream_fetch(const std::shared_ptr<stream_state>& st, rows_handler h);
  void stream_abandon(const std::shared_ptr<stream_state>& st);

  // Exclusive use (COPY): the grant comes once every earlier request is done
  // and the connection left pipeline mode.
  void end_exclusive();
  bool exclusive() const noexcept { return core_.exclusive(); }
  boost::asio::posix::stream_descriptor& socket() noexcept { return sock_; }
  libpq_port& port() noexcept { return port_; }
  /// The connection broke while the COPY drove it.
  void connection_lost(const std::string& message);
  /// Cancels, on the server, whatever it runs for this connection now.
  void cancel_running();

  // Notifications (LISTEN).
  void next_notification(std::uint64_t id, notification_handler h);
  void cancel_notification_wait(std::uint64_t id);
  std::uint64_t next_waiter_id() noexcept { return next_waiter_.fetch_add(1, std::memory_order_relaxed); }
  std::size_t notifications_dropped() const noexcept { return notifications_dropped_.load(); }

  /// Closes now (on the driver's executor); requests fail with `why`.
  void close(errc why) noexcept;
  /// From any thread: is_open() is false from now on; close() follows on the
  /// driver's executor.
  void mark_closing() noexcept { open_.store(false, std::memory_order_release); }

  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }  // any thread
  int backend_pid() const noexcept { return backend_pid_.load(); }                 // any thread
  int server_version() const noexcept { return server_version_.load(); }           // any thread
  /// 30000 for protocol 3.0, 30002 for 3.2; 0 when closed.
  int protocol_version() const noexcept { return protocol_version_.load(); }          // any thread
  tx_set tracked_tx() const noexcept { return tx_.load(std::memory_order_acquire); }  // any thread
  /// The types connection.cpp has looked up in this connection's catalog,
  /// replaced whole when it learns more (any thread).
  std::atomic<std::shared_ptr<const type_catalog>> types;
  std::size_t pending() const noexcept { return pending_.load(std::memory_order_acquire); }  // any thread
  const statement_cache& cache() const noexcept { return core_.cache(); }
  pg_conn* native_handle() const noexcept { return port_.conn; }

 private:
  friend struct cancel_ticket;
  boost::asio::awaitable<void> connect_steps(std::string conninfo_text, connect_options opts, std::uint64_t attempt);
  void wrap_socket();
  void release_socket() noexcept;
  // Performs what the core asked for after an event. `inline_ok`: called
  // from an I/O handler, so callers may be resumed at once.
  void perform(bool inline_ok);
  void deliver(completion& c, bool inline_ok);
  void deliver_streams();
  void deliver_notifications();
  void arm_read();
  void arm_write();
  void post_end_of_burst();
  void on_readable(const error_code& ec);
  void on_writable(const error_code& ec);
  void start_server_cancel();
  void on_server_cancel_done(const std::shared_ptr<cancel_ticket>& ticket);
  void arm_recancel();
  void settle_cancel(const std::shared_ptr<cancel_ticket>& ticket) noexcept;
  void detach_cancels() noexcept;
  void teardown() noexcept;
  static void note_notice(void* self, const pg_result* res);

  boost::asio::any_io_executor ex_;
  libpq_port port_;
  pipeline_core core_{port_};
  boost::asio::posix::stream_descriptor sock_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer connect_timer_;
  std::uint64_t connect_attempt_ = 0;  // a timer of an older attempt does nothing
  bool connect_timed_out_ = false;
  std::shared_ptr<pg_cancel> cancel_;
  std::atomic<bool> open_{false};
  std::atomic<int> backend_pid_{0};
  std::atomic<int> server_version_{0};
  std::atomic<int> protocol_version_{0};
  // Mirrors of the core's state for readers on other threads, updated
  // after every event.
  std::atomic<std::size_t> pending_{0};
  std::atomic<tx_set> tx_{tx_idle};
  bool reading_ = false;
  bool writing_ = false;
  bool performing_ = false;
  bool burst_posted_ = false;           // an end_of_burst() is queued on the executor
  std::vector<completion> delivering_;  // keeps its capacity between rounds
  static constexpr std::size_t completion_slice = 16;
  std::deque<pending_notification> notifications_;
  std::deque<std::pair<std::uint64_t, notification_handler>> notification_waiters_;
  std::atomic<std::uint64_t> next_waiter_{1};
  std::atomic<std::size_t> notifications_dropped_{0};
  // Server-side cancels on their way (each with the timer that stops the
  // wait for it after cancel_timeout_).
  std::list<std::shared_ptr<cancel_ticket>> pending_cancels_;
  std::chrono::milliseconds cancel_timeout_{std::chrono::seconds(5)};
  // Cancels again a request whose server cancel was done but which still
  // runs (pipeline_core::cancelled_but_running()).
  boost::asio::steady_timer recancel_timer_;
  bool recancel_armed_ = false;
};

// Connects the caller's cancellation slot, on the caller's thread and before
// the request can complete, to a cancel of request `id` on the driver. `h`
// is the type-erased handler: making one installs its own handler in the
// caller's slot, so ours goes into the one it forwards to.
template <class Handler>
void connect_cancel(Handler& h, const std::shared_ptr<driver>& d, std::uint64_t id) {
  auto slot = boost::asio::get_associated_cancellation_slot(h);
  if (!slot.is_connected()) return;
  slot.assign([w = std::weak_ptr<driver>(d), ex = d->get_executor(), id](boost::asio::cancellation_type) {
    boost::asio::post(ex, [w, id] {
      if (auto dd = w.lock()) dd->cancel(id);
    });
  });
}

template <class Handler>
boost::asio::any_io_executor io_executor_of(const Handler& h, const boost::asio::any_io_executor& fallback) {
  using handler_executor = boost::asio::associated_executor_t<std::decay_t<Handler>, boost::asio::any_io_executor>;
  if constexpr (std::is_convertible_v<handler_executor, boost::asio::any_io_executor>) {
    return boost::asio::get_associated_executor(h, fallback);
  } else {
    return {};
  }
}

}  // namespace pgq::detail
