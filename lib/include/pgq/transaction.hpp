// pgq/transaction.hpp - transactions as async RAII scopes.
#pragma once

#include <pgq/connection.hpp>
#include <pgq/detail/params.hpp>
#include <pgq/detail/query_methods.hpp>
#include <pgq/error.hpp>
#include <pgq/result.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace pgq {

class lease;
class pool;

/// Isolation levels (`default_level` keeps the server's default).
enum class isolation { default_level, read_committed, repeatable_read, serializable };

/// How a transaction begins.
struct tx_options {
  isolation level = isolation::default_level;
  bool read_only = false;
  bool deferrable = false;  ///< only meaningful with serializable + read_only
  /// For `transact()`: how many times to rerun the function after a
  /// serialization failure (40001) or deadlock (40P01).
  int retries = 0;
};

/// The BEGIN statement for `opts`, e.g. "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY".
std::string begin_statement(const tx_options& opts);

/// An open transaction (or, from savepoint(), a nested one).
///
/// A transaction that is destroyed before commit() or rollback() rolls back:
/// a destructor cannot await, so it sends ROLLBACK (ROLLBACK TO SAVEPOINT for
/// a nested one) in the background on its connection, ahead of anything sent
/// later; a pool connection is then cleaned before anyone else gets it.
///
/// Lifetime: a transaction from `pool::begin()` owns its lease; one from
/// `connection::begin()` refers to the connection, which must outlive it; a
/// nested one refers to its parent's connection. Not thread-safe: one task.
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
  boost::asio::awaitable<result> query_params(std::string_view sql, detail::param_set params);
  /// As query_params(); returns the rows affected (what execute() calls).
  boost::asio::awaitable<std::uint64_t> execute_params(std::string_view sql, detail::param_set params);
  /// As `connection::stream_params()` (what stream() calls).
  boost::asio::awaitable<row_stream> stream_params(std::string_view sql, detail::param_set params);

  /// Commits (RELEASE SAVEPOINT for a nested one). Throws the server's error
  /// (e.g. 40001 at commit under serializable; the transaction is then over
  /// and rolled back), errc::commit_unknown when the connection was lost
  /// while the COMMIT was on its way (it may or may not have committed),
  /// errc::transaction_done when already finished.
  boost::asio::awaitable<void> commit();
  /// Rolls back (to the savepoint for a nested one). Never throws for a lost
  /// connection: the server rolls back by itself then.
  boost::asio::awaitable<void> rollback();
  /// A nested transaction: SAVEPOINT now; its commit() releases the
  /// savepoint, its rollback() (or destruction) undoes only its own work.
  boost::asio::awaitable<transaction> savepoint();

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
