// `pgq migrate`: status, up, down, verify, repair and new, over pgq::migrator.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace pgq::cli {

/// Exit codes of `pgq migrate` (the tool's general ones, plus one).
inline constexpr int migrate_exit_ok = 0;
inline constexpr int migrate_exit_failed = 1;       ///< a migration or a check failed
inline constexpr int migrate_exit_usage = 2;        ///< bad arguments or migration files
inline constexpr int migrate_exit_no_server = 3;    ///< could not connect
inline constexpr int migrate_exit_not_in_sync = 5;  ///< status: pending/drifted/missing; verify: problems

/// Adds the `migrate` subcommand to `app`. `dsn` and `format` are the tool's
/// global options (read when the command runs, after parsing). When the
/// command ran, `exit_code` holds its exit status; otherwise it is left
/// untouched. All errors are reported on stderr; nothing is thrown.
void add_migrate_command(CLI::App& app, std::string& dsn, std::string& format, int& exit_code);

}  // namespace pgq::cli
