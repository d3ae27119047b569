// pgq/pool.hpp - a pool of connections, leased to tasks.
#pragma once

#include <pgq/config.hpp>
#include <pgq/connection.hpp>
#include <pgq/detail/params.hpp>
#include <pgq/detail/query_methods.hpp>
#include <pgq/detail/pool_core.hpp>
#include <pgq/result.hpp>
#include <pgq/transaction.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <string>
#include <string_view>

namespace pgq {

namespace detail {
class pool_impl;
}

using detail::pool_stats;

/// Settings of a pool. Durations of zero switch the feature off.
struct pool_options {
  /// libpq conninfo or URI; empty: the PG* environment and libpq's defaults.
  std::string dsn{};
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
  /// Prepared statements kept per connection (see connect_options); 0 turns
  /// the cache off, as PgBouncer in transaction mode needs.
  std::size_t statement_cache_size = 256;
  /// Give each connection a strand of its own (the default), so that the
  /// pool and its leases are safe on an io_context run by several threads.
  /// When one thread runs the executor, false saves a strand hop per request
  /// and per returned lease. An `io_context` made with concurrency hint 1
  /// (`io_context ctx(1)`, a promise that one thread runs it) gets no strands
  /// either way.
  bool strand_per_connection = true;
  /// Limit of one connection attempt.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
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

/// A connection on loan from a pool. Returns it when destroyed (or on
/// `release()`), on every exit path. If the lease ends with a transaction
/// open or a request in flight, the pool cleans the connection (waits for
/// or cancels what runs, rolls back) before anyone else gets it; a broken
/// connection is replaced. Movable, not copyable.
class lease {
 public:
  lease() = default;
  lease(lease&& other) noexcept;
  lease& operator=(lease&& other) noexcept;
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  ~lease();

  connection& operator*() const noexcept { return *conn_; }
  connection* operator->() const noexcept { return conn_; }
  connection& get() const noexcept { return *conn_; }
  explicit operator bool() const noexcept { return conn_ != nullptr; }

  /// Returns the connection now.
  void release() noexcept;

 private:
  friend class detail::pool_impl;
  lease(std::shared_ptr<detail::pool_impl> pool, std::size_t slot, connection* conn) noexcept
      : pool_(std::move(pool)), slot_(slot), conn_(conn) {}

  std::shared_ptr<detail::pool_impl> pool_;
  std::size_t slot_ = 0;
  connection* conn_ = nullptr;
};

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
  boost::asio::awaitable<lease> acquire();

  /// Leases a connection, runs the statement, returns the connection (what
  /// query() calls). Throws as acquire() and connection::query_params().
  boost::asio::awaitable<result> query_params(std::string_view sql, detail::param_set params);
  /// As query_params(); returns the rows affected (what execute() calls).
  boost::asio::awaitable<std::uint64_t> execute_params(std::string_view sql, detail::param_set params);
  /// Leases a connection and streams the statement's rows on it; the stream
  /// holds the lease until it is destroyed (what stream() calls).
  boost::asio::awaitable<row_stream> stream_params(std::string_view sql, detail::param_set params);

  /// Leases a connection and begins a transaction on it; the transaction owns
  /// the lease. Throws as acquire() and as the BEGIN statement.
  boost::asio::awaitable<transaction> begin(tx_options opts = {});

  /// Gauges and counters, consistent with each other.
  pool_stats stats() const;

  /// Stops granting leases, waits up to `deadline` for the leased ones to
  /// come back, then closes every connection.
  boost::asio::awaitable<void> close(std::chrono::milliseconds deadline = std::chrono::seconds(30));

 private:
  boost::asio::awaitable<lease> wait_for_lease();
  boost::asio::awaitable<lease> acquire_open(lease l);

  std::shared_ptr<detail::pool_impl> impl_;
};

}  // namespace pgq

namespace pgq {

namespace detail {
template <class Fn>
using transact_result_t = typename std::invoke_result_t<Fn&, transaction&>::value_type;

// Runs fn in transactions from `begin` until it commits, retrying
// serialization failures and deadlocks up to opts.retries times. fn lives in
// this frame for the whole call.
template <class Begin, class Fn>
boost::asio::awaitable<transact_result_t<Fn>> transact_loop(Begin begin, tx_options opts, Fn fn) {
  using R = transact_result_t<Fn>;
  for (int attempt = 0;; ++attempt) {
    transaction tx = co_await begin(opts);
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
    try {
      if constexpr (std::is_void_v<R>) {
        co_await fn(tx);
        value = true;
      } else {
        value = co_await fn(tx);
      }
      co_await tx.commit();
    } catch (...) {
      failure = std::current_exception();
    }
    if (!failure) {
      if constexpr (std::is_void_v<R>) {
        co_return;
      } else {
        co_return std::move(*value);
      }
    }
    if (tx.active()) {
      try {
        co_await tx.rollback();
      } catch (const sql_error&) {
        // fn's failure is the one to report
      }
    }
    bool retry = false;
    try {
      std::rethrow_exception(failure);
    } catch (const sql_error& e) {
      retry = attempt < opts.retries && is_retryable(e.code());
      if (!retry) throw;
    }
  }
}
}  // namespace detail

/// Runs `fn(tx)` in a transaction from `p`: commits when fn returns, rolls
/// back and rethrows when it throws. With `opts.retries = N`, reruns fn (in
/// a new transaction) up to N times after a serialization failure (40001) or
/// deadlock (40P01). `fn` is taken by value and kept alive in this call's
/// frame, so a lambda's captures live as long as the scope. Returns what fn's
/// awaitable returns.
///
/// GCC 12 destroys a temporary twice when it is a lambda with captures (or
/// another brace-initialised object owning memory) written inside a co_await
/// expression. Name the lambda first:
/// `auto work = [id](pgq::transaction& tx) -> asio::awaitable<void> {...};`
/// `co_await pgq::transact(pool, {}, work);`
template <class Fn>
boost::asio::awaitable<detail::transact_result_t<Fn>> transact(pool& p, tx_options opts, Fn fn) {
  return detail::transact_loop([&p](tx_options o) { return p.begin(o); }, opts, std::move(fn));
}

/// As above, on one connection (which must outlive the call).
template <class Fn>
boost::asio::awaitable<detail::transact_result_t<Fn>> transact(connection& c, tx_options opts, Fn fn) {
  return detail::transact_loop([&c](tx_options o) { return c.begin(o); }, opts, std::move(fn));
}

}  // namespace pgq
