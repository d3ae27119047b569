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
/// pool cleans the connection.
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

  /// Leases a connection, runs the statement, returns the connection (what
  /// query() calls). Throws as acquire() and connection::query_params().
  [[nodiscard]] boost::asio::awaitable<result> query_params(std::string_view sql, params p);
  /// As query_params(); returns the rows affected (what execute() calls).
  [[nodiscard]] boost::asio::awaitable<std::uint64_t> execute_params(std::string_view sql, params p);
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
