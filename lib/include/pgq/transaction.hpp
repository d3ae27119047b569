// pgq/transaction.hpp - transactions as async RAII scopes.
#pragma once

#include <pgq/connection.hpp>
#include <pgq/detail/query_methods.hpp>
#include <pgq/error.hpp>
#include <pgq/lease.hpp>
#include <pgq/params.hpp>
#include <pgq/result.hpp>
#include <pgq/tx_options.hpp>

#include <boost/asio/awaitable.hpp>

#include <concepts>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace pgq {

class pool;

/// An open transaction (or, from savepoint(), a nested one).
///
/// A transaction that is destroyed before commit() or rollback() rolls back:
/// a destructor cannot await, so it sends ROLLBACK (ROLLBACK TO SAVEPOINT for
/// a nested one) in the background on its connection, ahead of anything sent
/// later; a pool connection is then cleaned before anyone else gets it.
///
/// Lifetime: a transaction from `pool::begin()` owns its lease; one from
/// `connection::begin()` refers to the connection, which must outlive it; a
/// nested one refers to its parent's connection.
///
/// Concurrency: not thread-safe, but several coroutines on the connection's
/// executor (one thread, or its strand) may run statements of one
/// transaction at once. They are pipelined, and the statements in flight
/// together share one Sync (one write) per burst: N pipelined INSERTs cost
/// about one write per turn of the event loop, not N, even with libpq 15.
/// They are not isolated from each other: the first to fail (or be
/// cancelled) fails the transaction, the statements sent with it fail with
/// 25P02 (in_failed_sql_transaction) naming it, later ones too, and
/// commit() then throws 25P02 (the server rolled back). Await every
/// statement before commit(), rollback() or savepoint(): those run after
/// what was sent before them (always behind a Sync, never skipped), and a
/// statement another coroutine sends while COMMIT is on its way runs after
/// it, outside the transaction (once commit() is done it throws
/// errc::transaction_done instead).
class transaction : public detail::query_methods<transaction> {
 public:
  transaction(transaction&& other) noexcept;
  transaction& operator=(transaction&& other) noexcept;
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  ~transaction();

  /// Runs a statement in the transaction (what query() calls). Throws as
  /// `connection::query_params()`, and errc::transaction_done once committed
  /// or rolled back.
  [[nodiscard]] boost::asio::awaitable<result> query_params(std::string_view sql, params p);
  /// As query_params(); returns the rows affected (what execute() calls).
  [[nodiscard]] boost::asio::awaitable<std::uint64_t> execute_params(std::string_view sql, params p);
  /// As `connection::stream_params()` (what stream() calls).
  [[nodiscard]] boost::asio::awaitable<row_stream> stream_params(std::string_view sql, params p);

  /// Commits (RELEASE SAVEPOINT for a nested one). Throws the server's error
  /// (e.g. 40001 at commit under serializable; the transaction is then over
  /// and rolled back), errc::commit_unknown when the connection was lost
  /// while the COMMIT was on its way (it may or may not have committed),
  /// errc::transaction_done when already finished.
  [[nodiscard]] boost::asio::awaitable<void> commit();
  /// Rolls back (to the savepoint for a nested one). Never throws for a lost
  /// connection: the server rolls back by itself then.
  [[nodiscard]] boost::asio::awaitable<void> rollback();
  /// A nested transaction: SAVEPOINT now; its commit() releases the
  /// savepoint, its rollback() (or destruction) undoes only its own work.
  [[nodiscard]] boost::asio::awaitable<transaction> savepoint();

  /// True until commit() or rollback() (or a failure that ended it).
  bool active() const noexcept { return conn_ != nullptr && !done_; }
  /// The connection the transaction runs on.
  connection& conn() const noexcept { return *conn_; }

 private:
  friend class connection;
  friend class pool;
  transaction(connection* conn, std::string savepoint, std::unique_ptr<lease> owned) noexcept;
  void check_active(std::string_view sql) const;
  void abandon() noexcept;

  connection* conn_ = nullptr;
  std::string savepoint_;         // empty for a top-level transaction
  std::unique_ptr<lease> lease_;  // set when the transaction owns a pool lease
  bool done_ = false;
  int next_savepoint_ = 0;
};

}  // namespace pgq

namespace pgq {

/// What `transact(source, opts, fn)` returns: the value of fn's awaitable.
template <class Fn>
using transact_result_t = typename std::invoke_result_t<Fn&, transaction&>::value_type;

namespace detail {

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

/// Runs `fn(tx)` in a transaction from `source`: commits when fn returns, rolls
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
///
/// `source` is a `pgq::pool` (each attempt on a connection of its own) or a
/// `pgq::connection` (which must outlive the call): anything whose
/// `begin(tx_options)` begins a transaction.
template <class Source, class Fn>
requires requires(Source& s, tx_options o) {
  { s.begin(o) } -> std::same_as<boost::asio::awaitable<transaction>>;
}
[[nodiscard]] boost::asio::awaitable<transact_result_t<Fn>> transact(Source& source, tx_options opts, Fn fn) {
  return detail::transact_loop([&source](tx_options o) { return source.begin(o); }, opts, std::move(fn));
}

}  // namespace pgq
