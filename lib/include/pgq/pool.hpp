// pgq/pool.hpp - a pool of connections, leased to tasks.
#pragma once

#include <pgq/config.hpp>
#include <pgq/connection.hpp>
#include <pgq/detail/query_methods.hpp>
#include <pgq/lease.hpp>
#include <pgq/params.hpp>
#include <pgq/pool_stats.hpp>
#include <pgq/result.hpp>
#include <pgq/transaction.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace pgq {

namespace detail {
class pool_impl;
}

// Its deprecated members keep old code building; GCC 12 would also warn
// about them in the copy and move operations it writes for the struct.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
/// Settings of a pool. Durations of zero switch the feature off.
struct pool_options {
  /// libpq's `key=value` conninfo or a `postgresql://` URI; empty: the PG*
  /// environment and libpq's defaults.
  std::string conninfo{};
  /// How each connection connects: the options of each attempt
  /// (`connect_timeout`, `statement_cache_size`: 0 turns the cache off, as
  /// PgBouncer in transaction mode needs, ...).
  connect_options connect{};
  // The deprecated fields stand where they stood before, so that designated
  // initializers written then still compile; each, when set, wins.
  [[deprecated("use conninfo")]] std::string dsn{};
  std::size_t min_size = 0;   ///< connections kept open even when idle
  std::size_t max_size = 10;  ///< never more connections than this, opening ones included
  /// How long acquire() waits for a connection before errc::pool_timeout.
  std::chrono::milliseconds acquire_timeout{std::chrono::seconds(30)};
  /// Idle connections beyond min_size are closed after this long unused.
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
  /// Connections are replaced after this long (less up to `max_lifetime_jitter`
  /// of it, at random, so that they do not all expire at once).
  std::chrono::milliseconds max_lifetime{std::chrono::hours(1)};
  double max_lifetime_jitter = 0.1;
  /// Idle connections are checked (`SELECT 1`) this often; a dead one is replaced.
  std::chrono::milliseconds health_check_period{std::chrono::seconds(30)};
  [[deprecated("use connect.statement_cache_size")]] std::optional<std::size_t> statement_cache_size{};
  /// Give each connection a strand of its own (the default), so that the
  /// pool and its leases are safe on an io_context run by several threads.
  /// When one thread runs the executor, false saves a strand hop per request
  /// and per returned lease.
  bool strand_per_connection = true;
  [[deprecated("use connect.connect_timeout")]] std::optional<std::chrono::milliseconds> connect_timeout{};
  /// Limit of cleaning a returned connection (waiting for its requests,
  /// rolling back); past it the connection is closed.
  std::chrono::milliseconds reset_timeout{std::chrono::seconds(5)};
  /// After a failed connect, wait this long before the next; doubled at each
  /// failure up to `backoff_max`, so that a down server is not hammered.
  std::chrono::milliseconds backoff_initial{std::chrono::milliseconds(100)};
  std::chrono::milliseconds backoff_max{std::chrono::seconds(10)};
  /// Runs on each new connection before its first use (e.g. `SET
  /// search_path`). A throw counts as a failed connect.
  std::function<boost::asio::awaitable<void>(connection&)> on_connect{};
  /// Runs on each connection when its lease ends, before anyone else gets
  /// it (e.g. `RESET ALL`). A throw closes the connection.
  std::function<boost::asio::awaitable<void>(connection&)> before_return{};
  /// How many independent statements one connection may run for several
  /// tasks at once, pipelined (each with its own Sync, so that one failing
  /// or cancelled affects no other). Independent: `query()`, `execute()`,
  /// `query_as()` and non-atomic `run_batch()` calls whose statements cannot
  /// change session or transaction state (no BEGIN/COMMIT/SAVEPOINT, SET,
  /// LISTEN, PREPARE, DECLARE, LOCK, COPY, CALL, DO...). Such a call takes an
  /// idle connection when there is one, else joins the connection with the
  /// fewest statements in flight below this depth instead of waiting; while
  /// fewer than `max_size` connections are open, joining also opens one more
  /// in the background. Leases, transactions, streams, COPY and atomic
  /// batches still take a connection of their own, and only an idle one.
  ///
  /// Default 8: a pool then runs up to 8 x max_size statements at once, so a
  /// small pool keeps up with many tasks (a pool of 2 runs pgbench's point
  /// select from 100 tasks as fast as 10 exclusive connections: see
  /// docs/benchmarks.md). Sharing starts when the pool is full: below
  /// `max_size` a statement that finds no idle connection waits for a new
  /// one, as without sharing. The price is head-of-line blocking: a statement
  /// pipelined behind a slow one waits for it (see `share_stall`), and what
  /// a shared statement leaves in the session (a `set_config()`, a session
  /// advisory lock, a temporary table) is seen by the others at once. 0 or 1
  /// turns sharing off: every statement takes a connection of its own.
  std::size_t share_depth = 8;
  /// A shared connection whose oldest statement started this long ago takes
  /// no more (it is probably stuck behind a slow statement); a new statement
  /// then goes to another connection, or waits. 0: no limit.
  std::chrono::milliseconds share_stall{std::chrono::milliseconds(20)};
};
#pragma GCC diagnostic pop

/// A pool of connections to one server.
///
/// Thread-safety: all member functions may be called from any thread, also
/// concurrently: the pool's state is guarded by a mutex, and each connection
/// runs on a strand of its own (unless `strand_per_connection` is false, which
/// is only correct when one thread runs the executor). A `lease`, like a connection, is used by one task
/// at a time.
///
/// Cancellation: cancelling acquire() removes the waiter (nothing leaks);
/// cancelling query()/execute() while waiting does the same, and while the
/// statement runs cancels it as `connection::query()` does, after which the
/// pool cleans the connection. A cancelled statement on a shared connection
/// cancels only itself: the others pipelined with it complete normally.
class pool : public detail::query_methods<pool> {
 public:
  using executor_type = boost::asio::any_io_executor;

  /// A pool whose connections run on `ex` (each on its own strand of it).
  /// Opens `min_size` connections in the background.
  pool(executor_type ex, pool_options opts);
  /// Closes at once: waiters fail with errc::pool_closed, idle connections
  /// close, leased ones close when returned.
  ~pool();
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  executor_type get_executor() const noexcept;

  /// A connection, when one is free (waiters are served first come, first
  /// served). Throws `pgq::sql_error`: errc::pool_timeout after
  /// `acquire_timeout` (with the last connection error, if any),
  /// errc::pool_closed, errc::cancelled.
  [[nodiscard]] boost::asio::awaitable<lease> acquire();

  /// Runs the statement on a connection of the pool and returns the
  /// connection (what query() calls): on one shared with other tasks'
  /// independent statements when `pool_options::share_depth` allows and the
  /// statement is independent, else on a leased one. Throws as acquire() and
  /// connection::query_params().
  [[nodiscard]] boost::asio::awaitable<result> query_params(std::string_view sql, params p);
  /// As query_params(); returns the rows affected (what execute() calls).
  [[nodiscard]] boost::asio::awaitable<std::uint64_t> execute_params(std::string_view sql, params p);
  /// Runs the statements of `b` back to back and returns their results, as
  /// `connection::run_batch()` does. A batch without `atomic` whose statements
  /// are all independent (see `pool_options::share_depth`) may share a
  /// connection with other tasks; an atomic one is a transaction and takes a
  /// connection of its own. Throws as acquire() and connection::run_batch().
  /// `b` must stay valid until this completes.
  [[nodiscard]] boost::asio::awaitable<std::vector<result>> run_batch(const batch& b, bool atomic = false);

  /// Opens `min_size` connections (at least one: with `min_size` 0 it
  /// opens one, proves it works and leaves it idle) and completes when they
  /// are open and usable, so that a service can warm up before it takes
  /// traffic. Throws `pgq::sql_error`: errc::pool_timeout when they are not
  /// all open after `acquire_timeout` (its message carries the last
  /// connection error: refused, authentication failed...; the pool keeps
  /// trying in the background, with its backoff), errc::pool_closed,
  /// errc::cancelled. Cancellation stops the waiting only.
  [[nodiscard]] boost::asio::awaitable<void> wait_ready();

  /// Leases a connection and streams the statement's rows on it; the stream
  /// holds the lease until it is destroyed (what stream() calls).
  [[nodiscard]] boost::asio::awaitable<row_stream> stream_params(std::string_view sql, params p);

  /// Leases a connection and begins a transaction on it; the transaction owns
  /// the lease. Throws as acquire() and as the BEGIN statement.
  [[nodiscard]] boost::asio::awaitable<transaction> begin(tx_options opts = {});

  /// Gauges and counters, consistent with each other.
  [[nodiscard]] pool_stats stats() const;

  /// Stops granting leases, waits up to `deadline` for the leased ones to
  /// come back, then closes every connection.
  [[nodiscard]] boost::asio::awaitable<void> close(std::chrono::milliseconds deadline = std::chrono::seconds(30));

 private:
  boost::asio::awaitable<lease> wait_for_lease();
  boost::asio::awaitable<lease> acquire_open(lease l);

  std::shared_ptr<detail::pool_impl> impl_;
};

}  // namespace pgq
