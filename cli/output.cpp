#include "output.hpp"

#include <algorithm>

namespace pgq::cli {
namespace {

// Display width of UTF-8 text, counted in code points: close enough for
// alignment without a Unicode width table.
std::size_t display_width(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

bool is_numeric_type(pgq::oid t) {
  namespace o = pgq::oids;
  return t == o::int2 || t == o::int4 || t == o::int8 || t == o::float4 || t == o::float8 ||
         t == o::numeric || t == o::oid_;
}

// Invalid UTF-8 (from a SQL_ASCII database, say) is replaced, not fatal.
std::string dump(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

constexpr pgq::oid numeric_oid = 1700;
constexpr pgq::oid numeric_array_oid = 1231;
constexpr pgq::oid json_oid = 114;
constexpr pgq::oid json_array_oid = 199;
constexpr pgq::oid jsonb_oid = 3802;
constexpr pgq::oid jsonb_array_oid = 3807;

// A numeric as to_json() writes it: its exact digits as a number (a double
// would lose them), NaN and the infinities as strings.
void write_numeric(std::ostream& out, std::string_view text) {
  if (text == "NaN" || text == "Infinity" || text == "-Infinity") out << '"' << text << '"';
  else out << text;
}

// An array of numeric, json or jsonb in the server's text form ({1.50,NULL},
// {"{\"a\": 1}"}) as to_json() writes it: nested JSON arrays whose
// elements are the element text itself (numbers keep their digits, json
// keeps its spacing and key order). Returns false for text it cannot read.
bool write_raw_array(std::ostream& out, std::string_view text, bool numeric) {
  std::string json;
  std::size_t i = 0;
  // An optional dimension decoration "[1:2]=" precedes non-default bounds.
  if (!text.empty() && text[0] == '[') {
    i = text.find('=');
    if (i == std::string_view::npos) return false;
    ++i;
  }
  auto element = [&](const std::string& v, bool quoted) {
    if (!quoted && v == "NULL") json += "null";
    else if (numeric && (v == "NaN" || v == "Infinity" || v == "-Infinity")) json += '"' + v + '"';
    else json += v;
  };
  bool expect_value = true;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{') {
      json += '[';
    } else if (c == '}') {
      json += ']';
      expect_value = false;
    } else if (c == ',') {
      json += ',';
      expect_value = true;
    } else if (c == '"') {
      std::string v;
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) ++i;
        v += text[i];
      }
      if (i >= text.size()) return false;
      element(v, true);
      expect_value = false;
    } else if (expect_value && c != ' ') {
      const std::size_t end = text.find_first_of(",}", i);
      if (end == std::string_view::npos) return false;
      element(std::string(text.substr(i, end - i)), false);
      i = end - 1;
      expect_value = false;
    }
  }
  out << json;
  return true;
}

// One value as PostgreSQL's to_json() renders it. The library's to_json()
// gives the same values; numeric, json and jsonb (and arrays of them) are
// written from their text here so that the digits, spacing and key order are
// the server's too.
void write_value_json(std::ostream& out, const pgq::field& f) {
  if (f.is_null()) {
    out << "null";
    return;
  }
  switch (f.type()) {
    case numeric_oid:
      write_numeric(out, f.text());
      return;
    case json_oid:
    case jsonb_oid:
      out << f.text();
      return;
    case numeric_array_oid:
    case json_array_oid:
    case jsonb_array_oid:
      if (write_raw_array(out, f.text(), f.type() == numeric_array_oid)) return;
      break;
    default:
      break;
  }
  out << dump(f.to_json(), -1);
}

// A row as a compact JSON object with its keys in column order (nlohmann::json
// would sort them).
void write_row_json(std::ostream& out, const pgq::row& row) {
  out << '{';
  for (int c = 0; c < row.size(); ++c) {
    auto f = row[c];
    if (c != 0) out << ',';
    out << dump(nlohmann::json(std::string(f.name())), -1) << ':';
    write_value_json(out, f);
  }
  out << '}';
}

// The rows of one result as a JSON array, one row per line.
void write_result_json(std::ostream& out, const pgq::result& r, const char* indent) {
  if (r.empty()) {
    out << "[]";
    return;
  }
  out << "[\n";
  for (int i = 0; i < r.size(); ++i) {
    out << indent << "  ";
    write_row_json(out, r[i]);
    out << (i + 1 < r.size() ? ",\n" : "\n");
  }
  out << indent << ']';
}

void pad(std::ostream& out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out.put(' ');
}

}  // namespace

bool parse_format(std::string_view name, output_format& out) {
  if (name == "table") out = output_format::table;
  else if (name == "json") out = output_format::json;
  else if (name == "ndjson") out = output_format::ndjson;
  else if (name == "csv") out = output_format::csv;
  else return false;
  return true;
}

void write_table(std::ostream& out, const pgq::result& r) {
  const int cols = r.columns();
  if (cols == 0) {
    out << r.command_tag() << '\n';
    return;
  }
  std::vector<std::size_t> width(static_cast<std::size_t>(cols));
  std::vector<bool> right(static_cast<std::size_t>(cols));
  for (int c = 0; c < cols; ++c) {
    const auto k = static_cast<std::size_t>(c);
    width[k] = display_width(r.column_name(c));
    right[k] = is_numeric_type(r.column_type(c));
  }
  for (auto row : r) {
    for (int c = 0; c < cols; ++c) {
      auto& w = width[static_cast<std::size_t>(c)];
      w = std::max(w, display_width(row[c].text()));
    }
  }
  // Header centred over each column, as psql does.
  for (int c = 0; c < cols; ++c) {
    const auto k = static_cast<std::size_t>(c);
    const std::string_view name = r.column_name(c);
    const std::size_t space = width[k] - display_width(name);
    out << (c == 0 ? " " : " | ");
    pad(out, space / 2);
    out << name;
    pad(out, space - space / 2);
  }
  out << "\n";
  for (int c = 0; c < cols; ++c) {
    out << (c == 0 ? "-" : "-+-") << std::string(width[static_cast<std::size_t>(c)], '-');
  }
  out << "-\n";
  for (auto row : r) {
    for (int c = 0; c < cols; ++c) {
      const auto k = static_cast<std::size_t>(c);
      const std::string v = row[c].text();
      const std::size_t space = width[k] - display_width(v);
      out << (c == 0 ? " " : " | ");
      if (right[k]) pad(out, space);
      out << v;
      if (!right[k] && c + 1 < cols) pad(out, space);
    }
    out << '\n';
  }
  out << '(' << r.size() << (r.size() == 1 ? " row)" : " rows)") << "\n";
}

void write_csv(std::ostream& out, const pgq::result& r) {
  auto field = [&](std::string_view v, bool quote_empty) {
    const bool quote = (quote_empty && v.empty()) ||
                       v.find_first_of(",\"\r\n") != std::string_view::npos;
    if (!quote) {
      out << v;
      return;
    }
    out << '"';
    for (char ch : v) {
      if (ch == '"') out << '"';
      out << ch;
    }
    out << '"';
  };
  const int cols = r.columns();
  for (int c = 0; c < cols; ++c) {
    if (c != 0) out << ',';
    field(r.column_name(c), true);
  }
  out << '\n';
  for (auto row : r) {
    for (int c = 0; c < cols; ++c) {
      if (c != 0) out << ',';
      auto f = row[c];
      if (!f.is_null()) field(f.text(), true);
    }
    out << '\n';
  }
}

result_writer::result_writer(std::ostream& out, output_format fmt, std::size_t count, bool always_list)
    : out_(out), fmt_(fmt), list_(always_list || count != 1) {
  if (fmt_ == output_format::json && list_) out_ << '[';
}

void result_writer::separate() {
  if (written_++ == 0) {
    if (fmt_ == output_format::json && list_) out_ << '\n';
    return;
  }
  switch (fmt_) {
    case output_format::json:
      if (list_) out_ << ",\n";
      break;
    case output_format::table:
    case output_format::csv:
      out_ << '\n';
      break;
    case output_format::ndjson:
      break;
  }
}

void result_writer::write(const pgq::result& r) {
  switch (fmt_) {
    case output_format::table:
      // psql: a blank line after a table, none between command tags.
      if (written_++ > 0 && (last_had_columns_ || r.columns() > 0)) out_ << '\n';
      last_had_columns_ = r.columns() > 0;
      write_table(out_, r);
      break;
    case output_format::json:
      separate();
      if (list_) out_ << "  ";
      write_result_json(out_, r, list_ ? "  " : "");
      if (!list_) out_ << '\n';
      break;
    case output_format::ndjson:
      for (auto row : r) {
        write_row_json(out_, row);
        out_ << '\n';
      }
      break;
    case output_format::csv:
      if (r.columns() == 0) break;  // no rows to write, not even a header
      separate();
      write_csv(out_, r);
      break;
  }
}

void result_writer::write_failed() {
  if (fmt_ != output_format::json) return;
  separate();
  out_ << (list_ ? "  null" : "null\n");
}

void result_writer::finish() {
  if (fmt_ != output_format::json || !list_) return;
  out_ << (written_ == 0 ? "]\n" : "\n]\n");
}

void write_results(std::ostream& out, output_format fmt, const std::vector<pgq::result>& results) {
  result_writer w(out, fmt, results.size());
  for (const auto& r : results) w.write(r);
  w.finish();
}

}  // namespace pgq::cli
