// The integer expressions of pgbench's `\set` and `\sleep` lines: parsed
// once per script, evaluated on every run of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgq::cli::bench {

/// An integer expression of a `\set` line: literals, :variables, + - * / %,
/// parentheses, random(a, b), abs(x), least(...), greatest(...).
struct expr {
  enum class kind { number, variable, negate, add, sub, mul, div, mod, random, abs, least, greatest };
  kind k = kind::number;
  std::int64_t value = 0;  // number
  std::size_t var = 0;     // variable: index into script::variables
  std::vector<expr> args;
};

/// Parses `text`, the expression of line `line` of the script `file`.
/// A :name becomes an index into `variables` (added there if new); it must
/// be a variable `defined` before this line. Throws usage_error naming the
/// file and line.
expr parse_expr(std::string_view text, std::vector<std::string>& variables, const std::vector<bool>& defined,
                const std::string& file, std::size_t line);

/// Evaluates `e` with the values of the script's variables. `rng_state` is
/// advanced by random(). Throws usage_error on division by zero or an empty
/// random() range.
std::int64_t evaluate(const expr& e, const std::vector<std::int64_t>& vars, std::uint64_t& rng_state);

/// A usage_error "file:line: msg", for mistakes in a script.
[[noreturn]] void script_error(const std::string& file, std::size_t line, const std::string& msg);

/// The index of the variable `name` in `variables`, appended when new.
std::size_t variable_index(std::vector<std::string>& variables, std::string_view name);

/// True for the characters of a variable name: letters, digits and _.
bool ident_char(char c);

}  // namespace pgq::cli::bench
