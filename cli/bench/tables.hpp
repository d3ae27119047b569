// pgbench's tables: created and filled by `pgq bench --init`, counted for
// the builtins' :scale, vacuumed before a builtin run. Each function runs
// on a connection of its own, to completion, before the load starts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgq::cli::bench {

/// The statements of `pgbench -i` (server-side generation, as -I dtGvp
/// does): drop, create, fill (with $1 the scale), vacuum, primary keys.
std::vector<std::string> init_statements();

/// Runs `sql` in order on one new connection to `dsn`; a statement holding
/// $1 gets `scale` for it. Throws the first failure.
void run_statements(const std::string& dsn, std::vector<std::string> sql, std::int64_t scale);

/// The scale of the existing tables: the rows of pgbench_branches. Throws
/// usage_error when the tables do not exist or are empty.
std::int64_t count_branches(const std::string& dsn);

}  // namespace pgq::cli::bench
