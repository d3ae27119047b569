#include "bench/script.hpp"

#include "usage_error.hpp"

#include <pgq/error.hpp>
#include <pgq/sql_split.hpp>

#include <algorithm>
#include <cctype>

namespace pgq::cli::bench {
namespace {

// Replaces the :variables of one statement with $1, $2... Quotes, quoted
// identifiers, comments and :: casts are left alone, and so is :name when no
// variable of that name is set before (an array slice a[1:n], say).
command sql_command(script& s, const std::string& text, const std::vector<bool>& defined) {
  command c;
  c.k = command::kind::sql;
  std::string out;
  std::size_t i = 0;
  const std::size_t n = text.size();
  auto copy_until = [&](std::size_t end) {
    out.append(text, i, end - i);
    i = end;
  };
  while (i < n) {
    const char ch = text[i];
    if (ch == '\'' || ch == '"') {
      const bool escapes = ch == '\'' && i > 0 && (text[i - 1] == 'E' || text[i - 1] == 'e');
      std::size_t j = i + 1;
      while (j < n) {
        if (escapes && text[j] == '\\') {
          j += 2;
          continue;
        }
        if (text[j] == ch) {
          if (j + 1 < n && text[j + 1] == ch) {
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      copy_until(std::min(n, j + 1));
    } else if (ch == '-' && i + 1 < n && text[i + 1] == '-') {
      const std::size_t e = text.find('\n', i);
      copy_until(e == std::string::npos ? n : e);
    } else if (ch == '/' && i + 1 < n && text[i + 1] == '*') {
      const std::size_t e = text.find("*/", i + 2);
      copy_until(e == std::string::npos ? n : e + 2);
    } else if (ch == '$' && (i == 0 || !ident_char(text[i - 1]))) {
      std::size_t j = i + 1;
      while (j < n && ident_char(text[j]) && std::isdigit(static_cast<unsigned char>(text[i + 1])) == 0) ++j;
      if (j < n && text[j] == '$') {
        const std::string tag = text.substr(i, j - i + 1);
        const std::size_t e = text.find(tag, j + 1);
        copy_until(e == std::string::npos ? n : e + tag.size());
      } else {
        copy_until(i + 1);
      }
    } else if (ch == ':' && i + 1 < n && text[i + 1] == ':') {
      copy_until(i + 2);
    } else if (ch == ':' && i + 1 < n && ident_char(text[i + 1])) {
      std::size_t j = i + 1;
      while (j < n && ident_char(text[j])) ++j;
      const std::string name = text.substr(i + 1, j - i - 1);
      const auto it = std::find(s.variables.begin(), s.variables.end(), name);
      const auto var = static_cast<std::size_t>(it - s.variables.begin());
      if (it == s.variables.end() || var >= defined.size() || !defined[var]) {
        copy_until(j);
        continue;
      }
      auto p = std::find(c.params.begin(), c.params.end(), var);
      if (p == c.params.end()) {
        c.params.push_back(var);
        p = c.params.end() - 1;
      }
      out += '$' + std::to_string(p - c.params.begin() + 1);
      i = j;
    } else {
      copy_until(i + 1);
    }
  }
  c.sql = std::move(out);
  return c;
}

}  // namespace

script parse_script(std::string_view text, std::string name) {
  script s;
  s.name = std::move(name);
  s.variables = {"scale", "client_id"};
  std::vector<bool> defined = {true, true};
  std::string sql;           // SQL lines not yet split
  std::size_t sql_line = 1;  // where `sql` began
  auto flush_sql = [&] {
    std::vector<pgq::sql_statement> stmts;
    try {
      stmts = pgq::split_sql(sql);
    } catch (const pgq::sql_error& e) {
      script_error(s.name, sql_line + e.diag().script_line.value_or(1) - 1, e.what());
    }
    for (const auto& st : stmts) s.commands.push_back(sql_command(s, st.text, defined));
    sql.clear();
  };
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] != '\\') {
      if (sql.empty()) sql_line = line_no;
      sql.append(line);
      sql.push_back('\n');
      continue;
    }
    flush_sql();
    line = line.substr(first + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    const auto word_end = line.find_first_of(" \t");
    const std::string_view word = line.substr(0, word_end);
    std::string_view rest = word_end == std::string_view::npos ? std::string_view() : line.substr(word_end);
    rest.remove_prefix(std::min(rest.size(), rest.find_first_not_of(" \t")));
    if (word == "set") {
      const auto name_end = rest.find_first_of(" \t");
      if (name_end == std::string_view::npos) script_error(s.name, line_no, "\\set needs a name and an expression");
      const std::string_view var = rest.substr(0, name_end);
      if (!std::all_of(var.begin(), var.end(), ident_char)) {
        script_error(s.name, line_no, "invalid variable name \"" + std::string(var) + "\"");
      }
      command c;
      c.k = command::kind::set;
      c.target = variable_index(s.variables, var);
      defined.resize(s.variables.size(), false);
      c.value = parse_expr(rest.substr(name_end), s.variables, defined, s.name, line_no);
      defined[c.target] = true;
      s.commands.push_back(std::move(c));
    } else if (word == "sleep") {
      command c;
      c.k = command::kind::sleep;
      std::string_view amount = rest;
      const auto unit_at = rest.find_last_of(" \t");
      if (unit_at != std::string_view::npos) {
        const std::string_view unit = rest.substr(unit_at + 1);
        if (unit == "us") c.unit_us = 1;
        else if (unit == "ms") c.unit_us = 1000;
        else if (unit == "s") c.unit_us = 1'000'000;
        else script_error(s.name, line_no, "\\sleep unit must be us, ms or s");
        amount = rest.substr(0, unit_at);
      }
      defined.resize(s.variables.size(), false);
      c.value = parse_expr(amount, s.variables, defined, s.name, line_no);
      s.commands.push_back(std::move(c));
    } else {
      script_error(s.name, line_no, "unsupported meta-command \\" + std::string(word) + " (\\set and \\sleep are)");
    }
  }
  flush_sql();
  if (std::none_of(s.commands.begin(), s.commands.end(), [](const command& c) { return c.k == command::kind::sql; })) {
    throw usage_error(s.name + ": the script has no SQL statement");
  }
  return s;
}

std::string builtin_script(std::string_view name) {
  if (name == "tpcb-like") {
    return "\\set aid random(1, 100000 * :scale)\n"
           "\\set bid random(1, 1 * :scale)\n"
           "\\set tid random(1, 10 * :scale)\n"
           "\\set delta random(-5000, 5000)\n"
           "BEGIN;\n"
           "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
           "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
           "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;\n"
           "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;\n"
           "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, "
           "CURRENT_TIMESTAMP);\n"
           "END;\n";
  }
  if (name == "simple-update") {
    return "\\set aid random(1, 100000 * :scale)\n"
           "\\set bid random(1, 1 * :scale)\n"
           "\\set tid random(1, 10 * :scale)\n"
           "\\set delta random(-5000, 5000)\n"
           "BEGIN;\n"
           "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
           "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
           "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, "
           "CURRENT_TIMESTAMP);\n"
           "END;\n";
  }
  if (name == "select-only") {
    return "\\set aid random(1, 100000 * :scale)\n"
           "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n";
  }
  throw usage_error("unknown builtin script \"" + std::string(name) + "\" (tpcb-like, simple-update, select-only)");
}

}  // namespace pgq::cli::bench
