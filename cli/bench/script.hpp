// pgbench-style scripts: SQL statements whose :variables become bound
// parameters, `\set` and `\sleep` lines, and pgbench's three builtins.
#pragma once

#include "bench/expr.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgq::cli::bench {

/// One line of a script: a SQL statement whose :variables became $1, $2...
/// (the variables' indexes in `params`), `\set`, or `\sleep`.
struct command {
  enum class kind { sql, set, sleep };
  kind k = kind::sql;
  std::string sql;
  std::vector<std::size_t> params;
  std::size_t target = 0;            // set: the variable assigned
  expr value;                        // set: the expression; sleep: the amount
  std::int64_t unit_us = 1'000'000;  // sleep: microseconds per unit
};

/// A parsed pgbench script.
struct script {
  std::string name;
  std::vector<std::string> variables;  // index 0: scale, 1: client_id
  std::vector<command> commands;
};

/// Parses a pgbench script: SQL statements ended by `;`, and backslash
/// commands one per line (`\set name expr`, `\sleep n [us|ms|s]`). Throws
/// usage_error naming the line for anything else.
script parse_script(std::string_view text, std::string name);

/// The text of a builtin script ("tpcb-like", "simple-update",
/// "select-only"), as pgbench has it. Throws usage_error for another name.
std::string builtin_script(std::string_view name);

}  // namespace pgq::cli::bench
