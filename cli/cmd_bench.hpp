// pgq bench: a pgbench-compatible load test with latency percentiles.
#pragma once

#include "common.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace pgq::cli {

/// `pgq bench [--builtin NAME | -f SCRIPT] [--init --scale N] [-j THREADS]
/// [-T SECONDS | -t N] [-R TPS] [--pipeline DEPTH] [-P SECONDS]`
void add_bench_command(CLI::App& app, const global_options& g, int& exit_code);

namespace bench {

/// An integer expression of a `\set` line: literals, :variables, + - * / %,
/// parentheses, random(a, b), abs(x), least(...), greatest(...).
struct expr {
  enum class kind { number, variable, negate, add, sub, mul, div, mod, random, abs, least, greatest };
  kind k = kind::number;
  std::int64_t value = 0;  // number
  std::size_t var = 0;     // variable: index into script::variables
  std::vector<expr> args;
};

/// One line of a script: a SQL statement whose :variables became $1, $2...
/// (the variables' indexes in `params`), `\set`, or `\sleep`.
struct command {
  enum class kind { sql, set, sleep };
  kind k = kind::sql;
  std::string sql;
  std::vector<std::size_t> params;
  std::size_t target = 0;           // set: the variable assigned
  expr value;                       // set: the expression; sleep: the amount
  std::int64_t unit_us = 1'000'000; // sleep: microseconds per unit
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

/// Evaluates `e` with the values of the script's variables. `rng_state` is
/// advanced by random(). Throws usage_error on division by zero or an empty
/// random() range.
std::int64_t evaluate(const expr& e, const std::vector<std::int64_t>& vars, std::uint64_t& rng_state);

/// A uniform double in [0, 1) from `state`, and a uniform index below `n`.
double uniform01(std::uint64_t& state);
std::size_t pick(std::uint64_t& state, std::size_t n);
/// The next raw 64-bit value of `state` (to seed the clients' generators).
std::uint64_t next_random_seed(std::uint64_t& state);

}  // namespace bench
}  // namespace pgq::cli
