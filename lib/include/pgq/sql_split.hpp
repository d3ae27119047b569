// pgq/sql_split.hpp - split a SQL script into its statements, as psql does.
#pragma once

#include <cstddef>
#include <stdexcept>
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

/// Why a script could not be split: it ends inside a quoted string, a quoted
/// identifier, a dollar-quoted body or a block comment. what() reads
/// "line L, column C: <message>", where L:C is where the open quote began.
class sql_split_error : public std::invalid_argument {
 public:
  sql_split_error(std::size_t line, std::size_t column, const std::string& message);
  std::size_t line() const noexcept { return line_; }
  std::size_t column() const noexcept { return column_; }

 private:
  std::size_t line_;
  std::size_t column_;
};

/// Splits `script` on the semicolons that end statements. Semicolons inside
/// `'...'` (with `''`), `E'...'` (with backslash escapes), `"..."`, dollar
/// quotes (`$$...$$`, `$tag$...$tag$`), `--` comments, nested `/* */`
/// comments and `BEGIN ATOMIC ... END` bodies do not end a statement.
/// Statements that hold nothing but comments and space are dropped.
/// `standard_conforming_strings` is assumed on (the default since 9.1).
/// Psql backslash commands are not interpreted.
///
/// Throws `sql_split_error` when the script ends inside a quote or comment.
std::vector<sql_statement> split_sql(std::string_view script);

}  // namespace pgq
