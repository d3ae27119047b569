// pgq/migrate.hpp - SQL migrations: discover, check and apply them under an
// advisory lock.
#pragma once

#include <pgq/config.hpp>
#include <pgq/error.hpp>
#include <pgq/sql_split.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgq {

// ------------------------------------------------------------ the files

// Every failure here is a `pgq::sql_error` (see errc::bad_migration,
// errc::sql_split_failed, errc::checksum_mismatch, errc::migration_refused
// in error.hpp); `diag().script` names the file at fault.

/// Which way a migration file goes.
enum class migration_direction { up, down };

/// What a migration file's name says: `NNNN_name.up.sql` or
/// `NNNN_name.down.sql`. NNNN is a positive integer (any number of digits,
/// leading zeros allowed, at most 18 digits: timestamps such as
/// 20240131120000 fit).
struct migration_file_name {
  std::int64_t version = 0;
  std::string version_text;  ///< the digits as written, leading zeros kept
  std::string name;
  migration_direction direction = migration_direction::up;
};

/// Parses a file name (the last path component, no directories). Returns
/// nothing for a name that is not a migration at all (does not end in
/// `.sql`: README.md, .gitkeep); throws `sql_error` (errc::bad_migration)
/// naming the file for a `.sql` file that does not follow the pattern. Pure:
/// no file access.
std::optional<migration_file_name> parse_migration_file_name(std::string_view file_name);

/// One migration file's name and contents, as read from a directory or
/// embedded in a binary (see cmake/pgqEmbedMigrations.cmake).
struct migration_file {
  std::string name;  ///< file name, e.g. "0001_accounts.up.sql"
  std::string text;  ///< contents, unmodified
};

/// The checksum pgq records for a migration: SHA-256 of the up file's text
/// with line endings normalised, so a checkout with CRLF endings matches one
/// with LF endings; equal to `sha256sum` of the file saved with LF endings.
std::string migration_checksum(std::string_view text);

/// One script of a migration, split into statements.
struct migration_script {
  std::string file;  ///< file name, for messages
  std::string text;  ///< the file's text as read
  std::vector<sql_statement> statements;
  bool no_transaction = false;
};

/// One migration: its up script and, optionally, its down script.
struct migration {
  std::int64_t version = 0;
  std::string name;
  std::string checksum;  ///< migration_checksum() of the up script
  migration_script up;
  std::optional<migration_script> down;

  /// "0003_audit_log"-style label: the version as written in the file name
  /// (leading zeros kept) and the name.
  std::string label;
};

/// Turns a folder's files into migrations sorted by version. Files whose name
/// does not end in `.sql` are ignored. Throws `sql_error` naming the file
/// (in what() and `diag().script`): errc::bad_migration for a malformed name,
/// two files for the same version and direction, an up and a down file of
/// one version with different names, a down file without an up file, a
/// transactional script that runs BEGIN/COMMIT itself (`script_line` is its
/// line); errc::sql_split_failed for a script that ends inside a quote or
/// comment (`script_line` and `script_column` are where it opened).
std::vector<migration> load_migrations(std::vector<migration_file> files);

/// Reads every regular file of `dir` (not recursive) and calls
/// load_migrations(). Throws `sql_error` (errc::bad_migration) when the
/// directory or a file cannot be read.
std::vector<migration> load_migrations(const std::filesystem::path& dir);

// ------------------------------------------------------------ the runner

/// One migration run (or, for a dry run, to be run).
struct migration_step {
  std::int64_t version = 0;
  std::string name;
  migration_direction direction = migration_direction::up;
  bool no_transaction = false;
  std::size_t statements = 0;
  std::chrono::milliseconds took{0};  ///< zero in a dry run
};

// Its deprecated members keep old code building; GCC 12 would also warn
// about them in the copy and move operations it writes for the struct.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
/// How the runner behaves.
struct migrator_options {
  /// Schema of the history table (created if missing).
  std::string schema = "public";
  /// Name of the history table.
  std::string table = "pgq_migrations";
  /// How long to wait for another runner's lock before giving up.
  std::chrono::milliseconds lock_timeout = std::chrono::seconds(60);
  /// How often to try the lock again while another runner holds it.
  std::chrono::milliseconds lock_poll_interval = std::chrono::milliseconds(100);
  /// Recorded in the history's applied_by column; empty: the server's
  /// `current_user`.
  std::string applied_by;
  /// Apply a pending migration whose version is below the newest applied one
  /// (e.g. from a merged branch). Off, up() refuses and names it.
  bool allow_out_of_order = false;
  /// Called after each migration of up() or down() took effect (committed),
  /// on the executor of the awaiting coroutine; for progress output, so that
  /// what was done is known even when a later migration fails. Must not
  /// throw.
  std::function<void(const migration_step&)> on_step;
  /// How the runner's two connections connect (the statement cache is
  /// always off: migrations run each statement once).
  connect_options connect{};

  /// The name `connect` had before; when set, it wins.
  [[deprecated("use connect")]] std::optional<connect_options> connection{};
};
#pragma GCC diagnostic pop

/// Where one migration stands.
enum class migration_state {
  pending,       ///< not applied
  applied,       ///< applied, and the file still has the recorded checksum
  drifted,       ///< applied, but the file changed since: blocks up() and down()
  missing_file,  ///< recorded in the history, but no file has its version
};

/// The name of a state: "pending", "applied", "drifted", "missing file".
std::string_view to_string(migration_state s) noexcept;

/// One line of status(): a migration known from the files, the history, or both.
struct migration_status {
  std::int64_t version = 0;
  std::string name;
  migration_state state = migration_state::pending;
  bool out_of_order = false;              ///< pending, but below the newest applied version
  std::string file_checksum;              ///< empty for missing_file
  std::string recorded_checksum;          ///< empty for pending
  std::optional<std::string> applied_at;  ///< as the server prints a timestamptz
  std::optional<std::int64_t> execution_ms;
  std::optional<std::string> applied_by;
};

/// What the database holds compared with the files.
struct status_report {
  std::vector<migration_status> migrations;  ///< sorted by version
  bool history_exists = false;               ///< false before the first up()
  std::size_t count(migration_state s) const noexcept;
  /// No pending, drifted or missing-file migration.
  bool in_sync() const noexcept;
};

/// What up(), down() or repair() did.
struct run_report {
  std::vector<migration_step> steps;
  /// How long the run waited for another runner's lock.
  std::chrono::milliseconds waited_for_lock{0};
  /// For repair(): the versions whose recorded checksum was replaced.
  std::vector<std::int64_t> repaired;
};

/// Applies migrations to one database.
///
/// Every operation opens its own connections (from `conninfo`) and closes
/// them when done. up(), down() and repair() first take a session-level
/// advisory lock (key derived from the history table's name) on a dedicated
/// connection, polling pg_try_advisory_lock every `lock_poll_interval` for up
/// to `lock_timeout`, and hold it until they finish; the migrations run on a
/// second connection. A waiting runner therefore holds no transaction open,
/// so a `CREATE INDEX CONCURRENTLY` in the holder's migration does not wait
/// for it. After taking the lock a runner reads the history again, so a
/// runner that waited finds the work done and does nothing.
///
/// Each migration runs in one transaction with the insert (up) or delete
/// (down) of its history row: a failure leaves both as they were. A script
/// whose first line is `-- pgq:no-transaction` runs statement by statement
/// outside a transaction, and its history row is written after the last
/// statement succeeded; a failure names the statement.
///
/// Errors, all `pgq::sql_error`: errc::connect_failed or errc::bad_conninfo
/// when connecting fails; errc::timeout when the lock was not obtained in
/// time; errc::checksum_mismatch for drift; errc::migration_refused for
/// out-of-order migrations, a missing down script or an unknown target
/// (nothing ran); errc::bad_migration for an empty history table name. A
/// migration that failed keeps its failure's code: the SQLSTATE for a
/// server error (so `is_retryable(e.code())` answers for a serialization
/// failure), errc::connection_lost and so on for a client one. Its `diag()`
/// has every field the server sent, plus `script` (the file),
/// `script_line` (the failing statement's line), `migration_version`, and a
/// line "migration <label> (<file>), statement N of M" appended to
/// `context`; its what() names the file, the statement and its line, the
/// server's error, and what the failure left behind. (An exception that is
/// not a `boost::system::system_error`, e.g. std::bad_alloc, passes through
/// unchanged.)
///
/// Thread-safety: one operation at a time per migrator object. Cancellation:
/// the running statement is cancelled on the server; a transactional
/// migration rolls back; the connections close, which releases the lock.
class migrator {
 public:
  /// A runner for `migrations` (from load_migrations()) against the
  /// database `conninfo` names. Connects only when an operation runs, on
  /// the executor of the coroutine that awaits it.
  migrator(std::string conninfo, std::vector<migration> migrations, migrator_options opts = {});

  /// Compares the history with the files. Read-only: creates nothing, takes
  /// no lock.
  [[nodiscard]] boost::asio::awaitable<status_report> status();

  /// Applies pending migrations in version order, up to and including
  /// `target` (all when unset). Refuses (throws `sql_error`, runs nothing)
  /// while any migration is drifted (errc::checksum_mismatch), or when a
  /// pending one is out of order (unless allowed) or `target` is unknown
  /// (errc::migration_refused). Creates the history table when missing.
  [[nodiscard]] boost::asio::awaitable<run_report> up(std::optional<std::int64_t> target = {});

  /// Reverts applied migrations newer than `target`, newest first (0 reverts
  /// all). Each needs a down script; when one is missing nothing runs.
  /// Refuses while any migration is drifted.
  [[nodiscard]] boost::asio::awaitable<run_report> down(std::int64_t target);

  /// What up(target) / down(target) would run, checked the same way
  /// (drift, order, down scripts), without taking the lock or changing
  /// anything.
  [[nodiscard]] boost::asio::awaitable<std::vector<migration_step>> plan_up(std::optional<std::int64_t> target = {});
  [[nodiscard]] boost::asio::awaitable<std::vector<migration_step>> plan_down(std::int64_t target);

  /// The problems that block up(): drifted and missing-file migrations, and
  /// out-of-order pending ones. Empty when all is well (pending migrations
  /// are not a problem). Read-only.
  [[nodiscard]] boost::asio::awaitable<std::vector<migration_status>> verify();

  /// Records the files' current checksums for drifted migrations, which
  /// unblocks up(). Runs no migration. Under the lock.
  [[nodiscard]] boost::asio::awaitable<run_report> repair();

  const std::vector<migration>& migrations() const noexcept { return migrations_; }
  const migrator_options& options() const noexcept { return opts_; }

 private:
  std::string conninfo_;
  std::vector<migration> migrations_;
  migrator_options opts_;
};

}  // namespace pgq
