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

// A row as a compact JSON object with its keys in column order (nlohmann::json
// would sort them).
void write_row_json(std::ostream& out, const pgq::row& row) {
  out << '{';
  for (int c = 0; c < row.size(); ++c) {
    auto f = row[c];
    if (c != 0) out << ',';
    out << dump(nlohmann::json(std::string(f.name())), -1) << ':' << dump(f.to_json(), -1);
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
