// pgq/sql_split.hpp - split a SQL script into its statements, as psql does.
#pragma once

#include <pgq/error.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace pgq {

/// One statement of a script.
struct sql_statement {
  /// The statement's text, from its first token to its end, without the
  /// terminating semicolon. Comments inside it are kept; comments and
  /// blank space before it are not.
  std::string text;
  /// 1-based line and column of its first token in the script.
  std::size_t line = 1;
  std::size_t column = 1;
  /// Byte offset of its first token in the script.
  std::size_t offset = 0;
};

/// Splits `script` on the semicolons that end statements. Semicolons inside
/// `'...'` (with `''`), `E'...'` (with backslash escapes), `"..."`, dollar
/// quotes (`$$...$$`, `$tag$...$tag$`), `--` comments, nested `/* */`
/// comments and `BEGIN ATOMIC ... END` bodies do not end a statement.
/// Statements that hold nothing but comments and space are dropped.
/// `standard_conforming_strings` is assumed on (the default since 9.1).
/// Psql backslash commands are not interpreted.
///
/// Throws `pgq::sql_error` with errc::sql_split_failed when the script ends
/// inside a quoted string, a quoted identifier, a dollar-quoted body or a
/// block comment: what() reads "line L, column C: <message>", and
/// `diag().script_line` / `script_column` hold L and C, where the open quote
/// began.
std::vector<sql_statement> split_sql(std::string_view script);

}  // namespace pgq
