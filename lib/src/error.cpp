#include <pgq/error.hpp>

#include "error_detail.hpp"

#include <libpq-fe.h>

#include <array>
#include <charconv>
#include <optional>

namespace pgq {
namespace {

class client_category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "pgq"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::connection_lost: return "connection lost";
      case errc::connect_failed: return "connection attempt failed";
      case errc::timeout: return "operation timed out";
      case errc::cancelled: return "operation cancelled";
      case errc::type_mismatch: return "type mismatch";
      case errc::unexpected_null: return "unexpected NULL";
      case errc::invalid_value: return "invalid value";
      case errc::bad_conninfo: return "invalid connection string";
      case errc::protocol_error: return "protocol error";
      case errc::not_connected: return "not connected";
      case errc::out_of_range: return "out of range";
      case errc::pool_timeout: return "timed out waiting for a pool connection";
      case errc::pool_closed: return "pool closed";
      case errc::transaction_done: return "transaction already finished";
      case errc::commit_unknown: return "connection lost during COMMIT: outcome unknown";
      case errc::sql_split_failed: return "SQL script ends inside a quote or comment";
      case errc::bad_migration: return "bad migration file or set";
      case errc::checksum_mismatch: return "applied migration changed since it ran (checksum mismatch)";
      case errc::migration_refused: return "migration run refused: nothing was run";
      case errc::row_count: return "the statement returned another number of rows than expected";
    }
    return "unknown pgq error";
  }
};

constexpr std::string_view sqlstate_chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

std::string unpack_sqlstate(int v) {
  std::string s(5, '0');
  for (int i = 0; i < 5; ++i) {
    const int c = (v >> (6 * i)) & 0x3F;
    s[static_cast<std::size_t>(i)] = static_cast<char>(c + '0');
  }
  return s;
}

class sqlstate_category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "sqlstate"; }
  std::string message(int ev) const override { return "SQLSTATE " + unpack_sqlstate(ev); }
};

std::string format_what(const diagnostics& d, const error_code& ec) {
  std::string s;
  if (!d.sqlstate.empty()) {
    s += d.severity.empty() ? "ERROR" : d.severity;
    s += ' ';
    s += d.sqlstate;
    s += ": ";
  }
  s += d.message.empty() ? ec.message() : d.message;
  if (d.position) s += " (position " + std::to_string(*d.position) + ")";
  if (!d.detail.empty()) s += "; DETAIL: " + d.detail;
  if (!d.hint.empty()) s += "; HINT: " + d.hint;
  if (!d.statement.empty()) {
    constexpr std::size_t max_shown = 200;
    s += " [in: ";
    s += d.statement.size() > max_shown ? d.statement.substr(0, max_shown) + "..." : d.statement;
    s += ']';
  }
  return s;
}

}  // namespace

const boost::system::error_category& client_category() noexcept {
  static const client_category_impl instance;
  return instance;
}

const boost::system::error_category& sqlstate_category() noexcept {
  static const sqlstate_category_impl instance;
  return instance;
}

int sqlstate_value(std::string_view sqlstate) noexcept {
  if (sqlstate.size() != 5) return 0;
  int v = 0;
  for (int i = 0; i < 5; ++i) {
    const char c = sqlstate[static_cast<std::size_t>(i)];
    if (sqlstate_chars.find(c) == std::string_view::npos) return 0;
    v |= ((c - '0') & 0x3F) << (6 * i);
  }
  return v;
}

error_code make_sqlstate_error(std::string_view sqlstate) noexcept {
  return {sqlstate_value(sqlstate), sqlstate_category()};
}

std::string sqlstate_of(const error_code& ec) {
  if (ec.category() != sqlstate_category()) return {};
  return unpack_sqlstate(ec.value());
}

bool is_fatal(const error_code& ec) noexcept {
  if (ec.category() == client_category()) {
    switch (static_cast<errc>(ec.value())) {
      case errc::connection_lost:
      case errc::connect_failed:
      case errc::protocol_error:
      case errc::not_connected: return true;
      default: return false;
    }
  }
  if (ec.category() == sqlstate_category()) {
    const std::string s = unpack_sqlstate(ec.value());
    // Class 08 (connection exception), 57P01..57P05 (admin shutdown, crash
    // shutdown, cannot connect now, database dropped, idle session timeout),
    // XX (internal error: the backend state is unknown).
    return s.starts_with("08") || (s.starts_with("57P") && s != "57P04") || s.starts_with("XX");
  }
  return false;
}

bool is_retryable(const error_code& ec) noexcept {
  return ec == make_sqlstate_error("40001") || ec == make_sqlstate_error("40P01");
}

sql_error::sql_error(error_code ec, diagnostics diag) : boost::system::system_error(ec) {
  auto st = std::make_shared<state>();
  st->what = format_what(diag, ec);
  st->diag = std::move(diag);
  state_ = std::move(st);
}

sql_error::sql_error(error_code ec, diagnostics diag, std::string what) : boost::system::system_error(ec) {
  auto st = std::make_shared<state>();
  st->what = std::move(what);
  st->diag = std::move(diag);
  state_ = std::move(st);
}

sql_error::sql_error(errc e, std::string message, std::string statement)
    : sql_error(make_error_code(e), [&] {
        diagnostics d;
        d.message = std::move(message);
        d.statement = std::move(statement);
        return d;
      }()) {}

// ------------------------------------------------ libpq's errors (error_detail.hpp)

namespace detail {

std::string trim_message(const char* m) {
  std::string s = m != nullptr ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

sql_error make_sql_error(const pg_result* res, std::string_view statement) {
  diagnostics d;
  auto field = [&](int code) {
    const char* v = PQresultErrorField(res, code);
    return v != nullptr ? std::string(v) : std::string();
  };
  d.severity = field(PG_DIAG_SEVERITY_NONLOCALIZED);
  if (d.severity.empty()) d.severity = field(PG_DIAG_SEVERITY);
  d.sqlstate = field(PG_DIAG_SQLSTATE);
  d.message = field(PG_DIAG_MESSAGE_PRIMARY);
  if (d.message.empty()) d.message = trim_message(PQresultErrorMessage(res));
  d.detail = field(PG_DIAG_MESSAGE_DETAIL);
  d.hint = field(PG_DIAG_MESSAGE_HINT);
  auto to_int = [](const std::string& s) -> std::optional<int> {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc()) return std::nullopt;
    return v;
  };
  d.position = to_int(field(PG_DIAG_STATEMENT_POSITION));
  d.internal_position = to_int(field(PG_DIAG_INTERNAL_POSITION));
  d.internal_query = field(PG_DIAG_INTERNAL_QUERY);
  d.context = field(PG_DIAG_CONTEXT);
  d.schema = field(PG_DIAG_SCHEMA_NAME);
  d.table = field(PG_DIAG_TABLE_NAME);
  d.column = field(PG_DIAG_COLUMN_NAME);
  d.datatype = field(PG_DIAG_DATATYPE_NAME);
  d.constraint = field(PG_DIAG_CONSTRAINT_NAME);
  d.source_file = field(PG_DIAG_SOURCE_FILE);
  d.source_line = field(PG_DIAG_SOURCE_LINE);
  d.source_function = field(PG_DIAG_SOURCE_FUNCTION);
  d.statement = std::string(statement);
  if (d.sqlstate.empty()) {
    // libpq made this error itself (e.g. the connection dropped).
    return sql_error(make_error_code(errc::connection_lost), std::move(d));
  }
  const error_code ec = make_sqlstate_error(d.sqlstate);
  return sql_error(ec, std::move(d));
}

std::string connection_error_message(pg_conn* conn) { return trim_message(PQerrorMessage(conn)); }

}  // namespace detail

}  // namespace pgq
