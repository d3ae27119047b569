// pgq/error.hpp - error codes, server diagnostics and the one exception type.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace pgq {

using boost::system::error_code;

/// Failures detected on the client side. Server errors use the SQLSTATE
/// category instead (see `sqlstate_category()`).
enum class errc {
  connection_lost = 1,  ///< the connection broke (socket closed, server gone)
  connect_failed,       ///< a connection attempt was refused or failed
  timeout,              ///< an operation did not finish in time
  cancelled,            ///< the caller cancelled the operation
  type_mismatch,        ///< a value of a Postgres type read as an incompatible C++ type
  unexpected_null,      ///< a NULL read into a non-optional C++ type
  invalid_value,        ///< bytes that do not decode as their type, or out of range
  bad_conninfo,         ///< a conninfo string or URI libpq cannot parse
  protocol_error,       ///< the server or libpq did something pgq does not expect
  not_connected,        ///< the connection is closed or was never opened
  out_of_range,         ///< a row or column index or name that does not exist
  pool_timeout,         ///< no pool connection became free within acquire_timeout
  pool_closed,          ///< the pool was closed
  transaction_done,     ///< the transaction was already committed or rolled back
  commit_unknown,       ///< the connection was lost during COMMIT: it may or may not have committed
  /// A SQL script ends inside a quoted string, a quoted identifier, a
  /// dollar-quoted body or a block comment (split_sql()). `diag()` has
  /// `script_line` and `script_column` where the open quote began, and
  /// `script` when the text came from a file.
  sql_split_failed,
  /// A migration set that cannot be used as it is (load_migrations(),
  /// parse_migration_file_name(), migrator): a malformed or duplicate file
  /// name, an up and a down file of one version with different names, a
  /// down file without its up file, BEGIN/COMMIT in a script that pgq runs
  /// in a transaction, an unreadable directory or file, an empty history
  /// table name. `diag().script` names the file, `script_line` the line
  /// when there is one.
  bad_migration,
  /// An applied migration's file changed since it ran (drift): up() and
  /// down() refuse and run nothing until the file is restored or repair()
  /// records the new checksum. The message lists the files.
  checksum_mismatch,
  /// up() or down() cannot do what was asked, and ran nothing: a target
  /// version no migration has, a negative down target, pending migrations
  /// older than the newest applied one (out of order), a migration to
  /// revert that has no down file or no file at all.
  migration_refused,
  /// query_one_as() got no row or several, query_opt_as() several.
  row_count,
};
// A migration whose SQL fails has no errc of its own: its sql_error keeps
// the failure's code (the SQLSTATE, or errc::connection_lost...), so that
// is_retryable() and is_fatal() answer for it.

/// The category of `pgq::errc` codes.
const boost::system::error_category& client_category() noexcept;

/// The category of server errors: the value is the SQLSTATE packed by
/// `sqlstate_value()`; `message()` gives the five characters.
const boost::system::error_category& sqlstate_category() noexcept;

inline error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), client_category()}; }

/// Packs a five-character SQLSTATE into an int (6 bits a character, as
/// PostgreSQL's MAKE_SQLSTATE does). Returns 0 for a malformed code.
int sqlstate_value(std::string_view sqlstate) noexcept;

/// An error_code in `sqlstate_category()` for `sqlstate`.
error_code make_sqlstate_error(std::string_view sqlstate) noexcept;

/// The SQLSTATE of `ec` if it is a server error, empty otherwise.
std::string sqlstate_of(const error_code& ec);

/// True when the connection that produced `ec` can no longer be used and must
/// be dropped (connection lost, protocol error, admin shutdown, ...).
bool is_fatal(const error_code& ec) noexcept;

/// True when rerunning the whole transaction may succeed: serialization
/// failure (40001) or deadlock (40P01).
bool is_retryable(const error_code& ec) noexcept;

/// Everything the server (or libpq) said about an error. Empty fields were not
/// sent.
struct diagnostics {
  std::string severity;  ///< ERROR, FATAL, PANIC (not localized)
  std::string sqlstate;  ///< five characters, empty for client errors
  std::string message;   ///< the primary message
  std::string detail;
  std::string hint;
  std::optional<int> position;  ///< 1-based character offset into the statement
  std::optional<int> internal_position;
  std::string internal_query;
  std::string context;
  std::string schema;
  std::string table;
  std::string column;
  std::string datatype;
  std::string constraint;
  std::string source_file;
  std::string source_line;
  std::string source_function;
  std::string statement;  ///< the statement that failed, as sent

  // Where in a SQL script the error is. pgq fills these (the server never
  // does) for errc::sql_split_failed, errc::bad_migration, and a migration
  // whose statement failed.
  std::string script;                        ///< the file, e.g. "0003_audit.up.sql"; empty for text not from a file
  std::optional<std::size_t> script_line;    ///< 1-based line in the script
  std::optional<std::size_t> script_column;  ///< 1-based column in the script (split errors)
  std::optional<std::int64_t> migration_version;  ///< the migration at fault, when known
};

/// The one exception pgq throws. `code()` is a `pgq::errc` for client failures
/// or a SQLSTATE code for server errors; `diag()` has every field the server
/// sent and the statement. `what()` reads like
/// `ERROR 42601: syntax error at or near "SELEC" (position 1) [in: SELEC 1]`.
class sql_error : public boost::system::system_error {
 public:
  sql_error(error_code ec, diagnostics diag);
  /// A client error with a message.
  sql_error(errc e, std::string message, std::string statement = {});
  /// An error that tells a longer story than its diagnostics (a failed
  /// migration: which file, which statement, what it left behind): `what()`
  /// is `what`; `code()` and `diag()` are as given.
  sql_error(error_code ec, diagnostics diag, std::string what);

  const diagnostics& diag() const noexcept { return state_->diag; }
  /// The SQLSTATE, empty for client errors.
  const std::string& sqlstate() const noexcept { return state_->diag.sqlstate; }
  /// The message with SQLSTATE, position, detail, hint and statement.
  const char* what() const noexcept override { return state_->what.c_str(); }

 private:
  struct state {
    diagnostics diag;
    std::string what;
  };
  std::shared_ptr<const state> state_;  // shared: exceptions must copy cheaply
};

}  // namespace pgq

template <>
struct boost::system::is_error_code_enum<pgq::errc> : std::true_type {};
