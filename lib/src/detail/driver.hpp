// The per-connection driver: the only code that touches a PGconn and its
// socket. Callers enqueue requests; the driver sends them in libpq pipeline
// mode (one sync point each, so one request's error never aborts another's)
// and completes them in order as results arrive.
#pragma once

#include <pgq/config.hpp>
#include <pgq/detail/params.hpp>
#include <pgq/error.hpp>
#include <pgq/result.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <unordered_map>
#include <vector>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

struct pg_conn;
struct pg_cancel;

namespace pgq::detail {

using result_handler = boost::asio::any_completion_handler<void(std::exception_ptr, result)>;
using void_handler = boost::asio::any_completion_handler<void(std::exception_ptr)>;
using rows_handler = boost::asio::any_completion_handler<void(std::exception_ptr, std::vector<result>, bool)>;

/// The driver's side of a row_stream: rows received and not yet handed to
/// the consumer. Touched only on the driver's executor.
struct stream_state {
  std::uint64_t id = 0;
  std::vector<result> rows;  // each holds one row (or more, without single-row mode)
  result final;              // the closing result (command tag), once done
  std::exception_ptr error;
  bool done = false;
  bool abandoned = false;
  rows_handler waiter;  // a fetch waiting for rows
};

/// A notification received and not yet taken.
struct pending_notification {
  std::string channel;
  std::string payload;
  int sender_pid = 0;
};
using notification_handler =
    boost::asio::any_completion_handler<void(std::exception_ptr, pending_notification)>;

struct request {
  std::uint64_t id = 0;
  std::string_view sql;   // caller-owned (valid while the caller waits) or owned_sql
  std::string owned_sql;  // for requests nobody waits for
  param_set params;
  result_handler handler;  // empty once the caller has been completed
  // The handler's executor, when it is (convertible to) an any_io_executor:
  // completing through it skips any_completion_handler's type-erased
  // executor, which allocates on every use. Empty: ask the handler.
  boost::asio::any_io_executor handler_ex;
  pg_result* res = nullptr;        // the statement's result (owned)
  pg_result* error = nullptr;      // its error result, if any (owned)
  pg_result* first_error = nullptr;  // the error that made pgq run it again (owned)
  bool exposed = false;    // a cancel meant for another request may hit it
  bool retried = false;
  bool detached = false;   // sent by pgq itself (ROLLBACK, DEALLOCATE): never cached
  std::string prepared;    // the statement this request prepared, if it did
  std::string statement;   // the cached statement it ran, if any
  bool described = false;  // it prepared with a Describe: stage 1 is its result
  int stage = 0;           // statements of this request finished so far
  bool prepare_failed = false;
  std::shared_ptr<stream_state> stream;  // rows go there, one at a time
  bool single_row_set = false;
  void_handler exclusive;  // granted the connection outside pipeline mode

  request() = default;
  request(const request&) = delete;
  request& operator=(const request&) = delete;
  ~request();
  bool abandoned() const noexcept {
    if (stream) return stream->abandoned;
    return !handler && !exclusive;
  }
};

/// Per-connection LRU cache of prepared statements, keyed by SQL text and
/// parameter types.
class statement_cache {
 public:
  struct entry {
    std::string name;
    std::list<std::string>::iterator lru;
    bool binary = false;      // every result column has a binary codec
    bool needs_utc = false;   // ... and one is timestamptz, rendered in UTC
  };

  std::size_t capacity = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t prepared = 0;
  std::uint64_t invalidations = 0;

  /// The entry for `key`, made most recently used; null on a miss.
  const entry* find(const std::string& key);
  /// Adds `key`; returns the name to prepare it as and, through `evicted`,
  /// the name of a statement pushed out (to DEALLOCATE), if any.
  const std::string& insert(const std::string& key, std::string& evicted);
  /// Forgets the statement named `name` (it failed to prepare, or the server
  /// dropped its plan).
  void erase_name(const std::string& name);
  void clear() noexcept;
  std::size_t size() const noexcept { return map_.size(); }
  /// Records what Describe said about the statement named `name`.
  void describe(const std::string& name, bool binary, bool needs_utc);

 private:
  std::unordered_map<std::string, entry> map_;
  std::list<std::string> lru_;  // most recent first
  std::uint64_t next_ = 1;
};

struct cancel_ticket;

/// The sql_error for a failed libpq result.
sql_error make_sql_error(const pg_result* res, std::string_view statement);
/// libpq's message for the connection, trimmed.
std::string connection_error_message(pg_conn* conn);

class driver : public std::enable_shared_from_this<driver> {
 public:
  /// Rows a stream buffers before the driver stops reading the socket.
  static constexpr std::size_t stream_buffer_rows = 1024;
  /// Notifications kept for a reader that does not come; older ones are
  /// dropped beyond this (and counted).
  static constexpr std::size_t max_pending_notifications = 1'000'000;

  explicit driver(boost::asio::any_io_executor ex);
  ~driver();

  const boost::asio::any_io_executor& get_executor() const noexcept { return ex_; }

  boost::asio::awaitable<void> connect(std::string conninfo_text, connect_options opts);
  /// Runs `req` (its sql and params set, made by the caller so that the
  /// parameters are moved once); `handler` gets the result.
  void enqueue(std::unique_ptr<request> req, result_handler handler, boost::asio::any_io_executor handler_ex = {});
  void enqueue_detached(std::string sql);
  /// Starts one request per statement; `on_done(i, error, result)` is
  /// called for each, from this driver's executor. Returns their ids.
  std::vector<std::uint64_t> enqueue_batch(const std::vector<std::pair<std::string_view, const param_set*>>& items,
                                           std::function<void(std::size_t, std::exception_ptr, result)> on_done);
  void cancel_ids(const std::vector<std::uint64_t>& ids);

  // Streaming: the request's rows are kept in `st` (at most a bounded number;
  // reading stops until the consumer takes them).
  void enqueue_stream(std::string sql, param_set params, std::shared_ptr<stream_state> st);
  void stream_fetch(const std::shared_ptr<stream_state>& st, rows_handler h);
  void stream_abandon(const std::shared_ptr<stream_state>& st);

  // Exclusive use (COPY): `h` runs once every earlier request is done and
  // the connection has left pipeline mode; later requests wait until
  // end_exclusive(). The holder drives libpq directly, with wait_readable()
  // and wait_writable().
  void enqueue_exclusive(std::uint64_t& id, void_handler h);
  void end_exclusive() noexcept;
  bool exclusive() const noexcept { return exclusive_; }
  boost::asio::posix::stream_descriptor& socket() noexcept { return sock_; }
  /// Fails every request with a connection loss (after libpq said so).
  void connection_lost(const std::string& message) noexcept { fail_all(errc::connection_lost, message); }
  /// Cancels, on the server, whatever it runs for this connection now.
  void cancel_running();

  // Notifications (LISTEN).
  void next_notification(notification_handler h);
  void take_notifications();
  std::size_t notifications_dropped() const noexcept { return notifications_dropped_; }
  void close(errc why) noexcept;

  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }
  int transaction_status() const noexcept;
  pg_conn* native_handle() const noexcept { return conn_; }
  std::size_t pending() const noexcept { return waiting_.size() + inflight_.size(); }
  void start(std::unique_ptr<request> req);
  const statement_cache& cache() const noexcept { return cache_; }

 private:
  boost::asio::awaitable<void> connect_steps(std::string conninfo_text, connect_options opts);
  void wrap_socket();
  void release_socket() noexcept;

  bool send(request& req);
  void flush();
  void arm_read();
  void arm_write();
  void on_readable(const error_code& ec);
  void on_writable(const error_code& ec);
  void process_input();
  void deliver_ready();
  void drain_results();
  void complete_front();
  void cancel(std::uint64_t id);
  void issue_server_cancel();
  void on_server_cancel_done(const std::shared_ptr<cancel_ticket>& ticket);
  void settle_cancel(const std::shared_ptr<cancel_ticket>& ticket) noexcept;
  void send_waiting();
  void fail_all(errc why, const std::string& message) noexcept;
  sql_error not_open_error(std::string_view sql) const;
  void complete(request& req, std::exception_ptr ep, result res);
  void after_drain();
  void wake_stream(stream_state& st);
  void resume_reading();
  void grant_exclusive();
  void send_detached_now(std::string sql);
  void note_description(const request& req, const pg_result* d);
  bool session_in_utc() const noexcept;
  bool retry(std::unique_ptr<request>& req);

  boost::asio::any_io_executor ex_;
  boost::asio::posix::stream_descriptor sock_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer connect_timer_;
  pg_conn* conn_ = nullptr;
  std::shared_ptr<pg_cancel> cancel_;
  bool binary_results_ = true;
  // Completions found while handling socket readiness are run when the
  // handler is done (inline: the caller's next request goes out without
  // another trip through the event loop); all others are posted.
  struct ready_completion {
    result_handler handler;
    boost::asio::any_io_executor handler_ex;
    std::exception_ptr error;
    result res;
  };
  bool in_io_ = false;
  static constexpr std::size_t completion_slice = 16;
  bool slice_full_ = false;  // drain_results() stopped at completion_slice
  std::vector<ready_completion> ready_;
  std::atomic<bool> open_{false};  // read from other threads by is_open()
  bool reading_ = false;
  bool paused_ = false;     // a stream's buffer is full: input is left unread
  bool exclusive_ = false;  // a COPY holds the connection (pipeline mode off)
  std::deque<pending_notification> notifications_;
  std::deque<std::pair<std::uint64_t, notification_handler>> notification_waiters_;
  std::uint64_t next_waiter_ = 1;
  std::size_t notifications_dropped_ = 0;
  bool writing_ = false;
  bool connect_timed_out_ = false;
  // The server's last FATAL message (it says why it ends the session, e.g.
  // an idle-in-transaction timeout; libpq hands it to the notice receiver
  // when no request is running), and why the connection was lost: requests
  // made after the loss are told that, not just "not open".
  std::string farewell_;
  std::string lost_reason_;
  static void note_notice(void* self, const pg_result* res);
  int cancels_in_flight_ = 0;
  // Server-side cancels on their way, each with the timer that stops the
  // wait for it after cancel_timeout_.
  std::list<std::pair<std::shared_ptr<cancel_ticket>, boost::asio::steady_timer>> pending_cancels_;
  std::chrono::milliseconds cancel_timeout_{std::chrono::seconds(5)};
  std::uint64_t next_id_ = 1;
  std::deque<std::unique_ptr<request>> waiting_;   // not yet handed to libpq
  std::deque<std::unique_ptr<request>> inflight_;  // sent, results pending
  statement_cache cache_;
};

}  // namespace pgq::detail
