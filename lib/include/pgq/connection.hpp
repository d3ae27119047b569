// pgq/connection.hpp - one non-blocking PostgreSQL connection.
#pragma once

#include <pgq/config.hpp>
#include <pgq/detail/query_methods.hpp>
#include <pgq/error.hpp>
#include <pgq/params.hpp>
#include <pgq/result.hpp>
#include <pgq/tx_options.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct pg_conn;  // libpq's PGconn

namespace pgq {

namespace detail {
class driver;
}
class transaction;
// Defined in <pgq/copy.hpp>, <pgq/notify.hpp> and <pgq/stream.hpp>: include
// those to use copy_in() / copy_out(), notifications or stream().
class copy_writer;
class copy_reader;
struct notification;
class row_stream;

/// Where a connection stands with respect to transactions.
enum class tx_status {
  idle,            ///< no transaction open, nothing running
  active,          ///< a request is running (the state after it is not known yet)
  in_transaction,  ///< inside a transaction block
  in_error,        ///< inside a failed transaction block: only ROLLBACK works
  unknown,         ///< closed or broken
};

/// Counters of one connection's prepared-statement cache.
struct connection_stats {
  std::uint64_t statements_prepared = 0;  ///< PREPAREs sent (one per cache miss)
  std::uint64_t cache_hits = 0;           ///< statements run from the cache
  std::uint64_t cache_misses = 0;
  std::uint64_t cache_invalidations = 0;  ///< plans the server dropped (schema change, DISCARD)
  std::size_t cached_statements = 0;
};

/// Which libpq the process loaded and which of its calls pgq's connections
/// use, from `connection::driver_info()`. pgq is built against libpq 15 and
/// uses a libpq 17/18 call only when the libpq loaded at run time has it.
/// The strings are static (they never dangle).
struct driver_info {
  /// PQlibVersion() of the loaded libpq, e.g. 150012 or 180000.
  int libpq_version = 0;
  /// How each request's Sync is sent: "PQsendPipelineSync" (libpq 17+:
  /// queued, and what a burst of requests queued is written at once) or
  /// "PQpipelineSync" (each Sync written as it is sent, so independent
  /// requests cost one write each). Either way, statements inside a
  /// transaction block share one Sync, and one write, per burst.
  std::string_view sync;
  /// How a running statement is cancelled on the server: "PQcancelStart"
  /// (libpq 17+: non-blocking, on the connection's executor, no thread) or
  /// "PQcancel thread" (the blocking PQcancel, on a thread of pgq's).
  std::string_view cancel;
  /// A row_stream receives chunks of rows (PQsetChunkedRowsMode, libpq 17+;
  /// connect_options::stream_chunk_rows) rather than one result per row.
  bool chunked_rows = false;
  /// Statements evicted from the cache are closed with a protocol Close
  /// (PQsendClosePrepared, libpq 17+) rather than `DEALLOCATE`.
  bool close_prepared = false;
  /// The protocol the connection speaks: 30000 (3.0) or 30002 (3.2, with
  /// libpq 18, PostgreSQL 18 and `max_protocol_version=latest` in the
  /// conninfo); 0 when closed.
  int protocol_version = 0;
};

/// Statements to send together with `connection::run_batch()`. Owns copies
/// of the SQL and the encoded parameters.
class batch {
 public:
  /// Appends a statement with bound parameters.
  template <class... Args>
  requires(encodable<Args>&&...) batch& add(
      std::string sql, const Args&... args) {  // NOLINT(performance-unnecessary-value-param): moved below
    return add(std::move(sql), make_params(args...));
  }
  /// Appends a statement with parameters already encoded, for callers
  /// whose number of parameters is known only at run time (the CLI's bench
  /// scripts).
  batch& add(std::string sql, params p);
  [[deprecated("use add(sql, params)")]] batch& add_params(std::string sql, params p);
  std::size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }

 private:
  friend class connection;
  friend class pool;  // to see whether each statement may share a connection
  struct item {       // NOLINT(bugprone-exception-escape): see params
    std::string sql;
    pgq::params args;
  };
  std::vector<item> items_;
};

/// One PostgreSQL connection bound to one executor.
///
/// Every operation is an awaitable; none blocks the thread. Requests made
/// concurrently (from several coroutines) are pipelined: they go out back to
/// back and complete in order, each isolated from the others' errors (each
/// ends with its own Sync).
///
/// Inside a transaction block (BEGIN by execute(), begin(), an atomic
/// run_batch()) there is nothing to isolate: an error fails the block. The
/// statements in flight together there share one Sync per burst (what the
/// coroutines of one turn of the event loop sent), which is written once,
/// and each completes with its own result. When one fails, those sent with
/// it fail with 25P02 (in_failed_sql_transaction) naming the statement that
/// failed first, and so do later ones and COMMIT (which rolls back).
/// COMMIT, ROLLBACK, SAVEPOINT, RELEASE and ROLLBACK TO always run after a
/// Sync of their own, never skipped.
///
/// Thread-safety: requests may be started from any thread (they are handed to
/// the connection's executor), but the connection's own handlers run on `ex`:
/// if `ex` runs on several threads, make it a strand. One connection object
/// must not be moved or destroyed while another thread uses it.
///
/// Cancellation: every operation honours the caller's cancellation slot (for
/// example `co_await (conn.query(...) || timer.async_wait(use_awaitable))`).
/// A request not yet sent is dropped; one the server is executing is cancelled
/// on the server; one queued behind another completes on the server and its
/// result is discarded. In every case the caller sees `errc::cancelled` at once
/// and the connection stays usable. Inside a transaction block a statement
/// behind others of the same block is cancelled on the server at once (the
/// server answers a burst only at its end, so it is not known whether it
/// runs): the cancel may land on one of those, and either way the block is
/// failed, as after any cancelled statement of a transaction: roll back.
///
/// Arguments: `sql` is a view; it and the arguments must stay valid until the
/// awaitable completes, which holds when it is awaited in the same expression
/// (`co_await conn.query(sql, args...)`). Arguments are encoded when the call
/// is made and always bound as parameters, never spliced into the text.
class connection : public detail::query_methods<connection> {
 public:
  using executor_type = boost::asio::any_io_executor;

  /// A closed connection that will run on `ex`.
  explicit connection(const executor_type& ex);
  /// Closes the connection; pending requests complete with
  /// `errc::not_connected`.
  ~connection();
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  executor_type get_executor() const noexcept;

  /// Opens the connection. `conninfo` is libpq's `key=value` syntax or a
  /// `postgresql://` URI; unset settings come from the `PG*` environment and
  /// libpq's defaults. Host names are resolved with Asio's resolver.
  /// Throws `pgq::sql_error`: `errc::bad_conninfo`, `errc::connect_failed`
  /// (with libpq's message: refused, authentication failed, ...),
  /// `errc::timeout`, `errc::cancelled`.
  /// Cancellation: abandons the attempt; the connection stays closed.
  [[nodiscard]] boost::asio::awaitable<void> connect(std::string_view conninfo, connect_options opts = {});

  /// Sends every statement of `b` back to back, without waiting between
  /// them (one round trip), and returns their results in order. With
  /// `atomic`, the batch runs in its own transaction (BEGIN and COMMIT go in
  /// the same round trip) unless a transaction block is already open, which
  /// then holds it: all statements take effect or none does.
  /// Throws the first failure, after every statement has completed; its
  /// message says which statement failed. Without `atomic` the statements
  /// that succeeded took effect. `b` must stay valid until this completes.
  /// Cancellation: drops the statements not yet sent and cancels the running
  /// one, as for query().
  [[nodiscard]] boost::asio::awaitable<std::vector<result>> run_batch(const batch& b, bool atomic = false);

  /// Runs one statement with bound parameters (what query() calls).
  /// Throws `pgq::sql_error`: the server's error (SQLSTATE and every field,
  /// the statement in `diag().statement`), `errc::connection_lost`,
  /// `errc::not_connected`, `errc::cancelled`. After a server error the
  /// connection is still usable.
  /// A result column of a type pgq has no codec for (a composite, domain,
  /// enum or an array of them) that this connection has not met yet costs
  /// one catalog query after the statement, before the result is returned,
  /// so that `to_json()` names composite fields as the server does. That
  /// query is not cancellable and never changes the statement's outcome:
  /// when it cannot run (aborted transaction) or fails, records get the
  /// names f1..fN. run_batch() does the same for all its results at once.
  [[nodiscard]] boost::asio::awaitable<result> query_params(std::string_view sql, params p);
  /// As query_params(); returns the rows affected (what execute() calls).
  [[nodiscard]] boost::asio::awaitable<std::uint64_t> execute_params(std::string_view sql, params p);

  /// Runs one statement and returns its rows as they arrive (what stream()
  /// calls). Throws as query_params() when the statement fails before its
  /// first row.
  [[nodiscard]] boost::asio::awaitable<row_stream> stream_params(std::string_view sql, params p);

  /// Starts `COPY ... FROM STDIN` (`sql`, without parameters) once the
  /// requests before it are done, and returns the writer of its data.
  /// Throws the server's error (no such table...), errc::protocol_error when
  /// `sql` is not a COPY FROM STDIN.
  [[nodiscard]] boost::asio::awaitable<copy_writer> copy_in(std::string_view sql);
  /// COPY of a whole range of rows: each element a tuple (or pair) of
  /// values, written with copy_writer::add_row(). Returns the rows copied.
  /// Defined in <pgq/copy.hpp>.
  template <class Range>
  [[nodiscard]] boost::asio::awaitable<std::uint64_t> copy_in(std::string_view sql, const Range& rows);
  /// Starts `COPY ... TO STDOUT` (`sql`) once the requests before it are
  /// done, and returns the reader of its data.
  [[nodiscard]] boost::asio::awaitable<copy_reader> copy_out(std::string_view sql);
  /// COPY TO STDOUT into `sink`, called with each row's bytes. Returns the
  /// rows copied. Defined in <pgq/copy.hpp>.
  template <class Sink>
  [[nodiscard]] boost::asio::awaitable<std::uint64_t> copy_out(std::string_view sql, Sink sink);

  /// `LISTEN channel` / `UNLISTEN channel` (`"*"` for all). The channel is a
  /// name, quoted by pgq.
  [[nodiscard]] boost::asio::awaitable<void> listen(std::string_view channel);
  [[nodiscard]] boost::asio::awaitable<void> unlisten(std::string_view channel);
  /// `pg_notify(channel, payload)`, both bound as parameters.
  [[nodiscard]] boost::asio::awaitable<void> notify(std::string_view channel, std::string_view payload = {});
  /// The next notification for a channel this connection listens to.
  /// Notifications that arrive while requests run are kept (in order) until
  /// taken. Waits until one comes: cancel it or use with_timeout. Throws
  /// errc::connection_lost, errc::not_connected, errc::cancelled.
  [[nodiscard]] boost::asio::awaitable<notification> next_notification();
  /// Notifications dropped because more than a million were kept unread.
  std::size_t notifications_dropped() const noexcept;

  /// Begins a transaction (`BEGIN` with `opts`) on this connection, which
  /// must outlive it. Throws as query(). (`transaction` is in
  /// <pgq/transaction.hpp>.)
  [[nodiscard]] boost::asio::awaitable<transaction> begin(tx_options opts = {});

  /// The transaction state as of the last completed request. Call from the
  /// connection's executor.
  tx_status transaction_status() const noexcept;

  /// True between a successful connect() and close() or a connection loss.
  bool is_open() const noexcept;
  /// Closes the connection now. Pending requests complete with
  /// `errc::not_connected`. Safe to call more than once.
  void close() noexcept;

  /// The server process serving this connection (0 when closed).
  int backend_pid() const noexcept;
  /// The server's version as an integer, e.g. 150018 (0 when closed).
  int server_version() const noexcept;
  /// The statement cache's counters. Call from the connection's executor.
  connection_stats stats() const noexcept;
  /// The loaded libpq and the calls this connection uses (see
  /// pgq::driver_info). Any thread.
  pgq::driver_info driver_info() const noexcept;
  /// Number of requests sent or waiting and not yet completed.
  std::size_t pending_requests() const noexcept;
  /// The libpq connection, for what pgq does not wrap. Do not send or read
  /// through it while requests are pending.
  pg_conn* native_handle() const noexcept;

 private:
  friend class transaction;
  // Sends `sql` ahead of anything sent later, without waiting for it and
  // dropping its result: how a destructor rolls back.
  void send_detached(std::string sql) noexcept;

  std::shared_ptr<detail::driver> drv_;
};

}  // namespace pgq
