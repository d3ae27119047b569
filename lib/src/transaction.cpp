#include <pgq/pool.hpp>
#include <pgq/stream.hpp>
#include <pgq/transaction.hpp>

#include "transaction_sql.hpp"

namespace asio = boost::asio;

namespace pgq {

std::string begin_statement(const tx_options& opts) {
  std::string sql = "BEGIN";
  const char* sep = " ";
  switch (opts.level) {
    case isolation::default_level: break;
    case isolation::read_committed:
      sql += " ISOLATION LEVEL READ COMMITTED";
      sep = ", ";
      break;
    case isolation::repeatable_read:
      sql += " ISOLATION LEVEL REPEATABLE READ";
      sep = ", ";
      break;
    case isolation::serializable:
      sql += " ISOLATION LEVEL SERIALIZABLE";
      sep = ", ";
      break;
  }
  if (opts.read_only) {
    sql += sep;
    sql += "READ ONLY";
    sep = ", ";
  }
  if (opts.deferrable) {
    sql += sep;
    sql += "DEFERRABLE";
  }
  return sql;
}

transaction::transaction(connection* conn, std::string savepoint, std::unique_ptr<lease> owned) noexcept
    : conn_(conn), savepoint_(std::move(savepoint)), lease_(std::move(owned)) {}

transaction::transaction(transaction&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)),
      savepoint_(std::move(other.savepoint_)),
      lease_(std::move(other.lease_)),
      done_(other.done_),
      next_savepoint_(other.next_savepoint_) {}

transaction& transaction::operator=(transaction&& other) noexcept {
  if (this != &other) {
    abandon();
    conn_ = std::exchange(other.conn_, nullptr);
    savepoint_ = std::move(other.savepoint_);
    lease_ = std::move(other.lease_);
    done_ = other.done_;
    next_savepoint_ = other.next_savepoint_;
  }
  return *this;
}

transaction::~transaction() { abandon(); }

void transaction::abandon() noexcept {
  if (active()) {
    // A destructor cannot await: queue the rollback ahead of anything sent
    // later on this connection. A pool lease released below is then seen as
    // dirty and cleaned (its reset waits for this ROLLBACK) before reuse.
    if (savepoint_.empty()) {
      conn_->send_detached("ROLLBACK");
    } else {
      conn_->send_detached("ROLLBACK TO SAVEPOINT " + savepoint_);
      conn_->send_detached("RELEASE SAVEPOINT " + savepoint_);
    }
    done_ = true;
  }
  lease_.reset();
  conn_ = nullptr;
}

void transaction::check_active(std::string_view sql) const {
  if (!active()) {
    throw sql_error(errc::transaction_done, "the transaction was already committed or rolled back", std::string(sql));
  }
}

asio::awaitable<result> transaction::query_params(std::string_view sql, detail::param_set params) {
  check_active(sql);
  return conn_->query_params(sql, std::move(params));
}

asio::awaitable<std::uint64_t> transaction::execute_params(std::string_view sql, detail::param_set params) {
  check_active(sql);
  return conn_->execute_params(sql, std::move(params));
}

asio::awaitable<row_stream> transaction::stream_params(std::string_view sql, detail::param_set params) {
  check_active(sql);
  return conn_->stream_params(sql, std::move(params));
}

asio::awaitable<void> transaction::commit() {
  check_active("COMMIT");
  if (!conn_->is_open()) {
    done_ = true;
    throw sql_error(errc::connection_lost,
                    "the connection was lost before COMMIT was sent: the server rolled the transaction back");
  }
  const std::string sql = savepoint_.empty() ? std::string("COMMIT") : "RELEASE SAVEPOINT " + savepoint_;
  try {
    // COMMIT of a failed transaction "succeeds" as a ROLLBACK: report it.
    const result r = co_await conn_->query_params(sql, {});
    done_ = true;
    if (savepoint_.empty() && r.command_tag() == "ROLLBACK") {
      diagnostics d;
      d.severity = "ERROR";
      d.sqlstate = "25P02";
      d.message = "the transaction had failed: COMMIT rolled it back";
      d.statement = sql;
      throw sql_error(make_sqlstate_error("25P02"), std::move(d));
    }
  } catch (const sql_error& e) {
    done_ = true;
    if (savepoint_.empty() && is_fatal(e.code())) {
      diagnostics d = e.diag();
      d.message = "the connection was lost during COMMIT, which may or may not have taken effect: " + d.message;
      throw sql_error(make_error_code(errc::commit_unknown), std::move(d));
    }
    if (!savepoint_.empty() && !is_fatal(e.code())) {
      // RELEASE failed (the outer transaction is in error): undo our part.
      conn_->send_detached("ROLLBACK TO SAVEPOINT " + savepoint_);
    }
    throw;
  }
}

asio::awaitable<void> transaction::rollback() {
  check_active("ROLLBACK");
  done_ = true;
  if (!conn_->is_open()) co_return;  // the server rolled back when the connection went
  try {
    if (savepoint_.empty()) {
      co_await conn_->query_params("ROLLBACK", {});
    } else {
      co_await conn_->query_params("ROLLBACK TO SAVEPOINT " + savepoint_, {});
      co_await conn_->query_params("RELEASE SAVEPOINT " + savepoint_, {});
    }
  } catch (const sql_error& e) {
    if (!is_fatal(e.code())) throw;
  }
}

asio::awaitable<transaction> transaction::savepoint() {
  check_active("SAVEPOINT");
  std::string name =
      (savepoint_.empty() ? std::string("pgq_sp") : savepoint_) + "_" + std::to_string(++next_savepoint_);
  co_await conn_->query_params("SAVEPOINT " + name, {});
  co_return transaction(conn_, std::move(name), nullptr);
}

asio::awaitable<transaction> connection::begin(tx_options opts) {
  co_await query_params(begin_statement(opts), {});
  co_return transaction(this, {}, nullptr);
}

}  // namespace pgq
