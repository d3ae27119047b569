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
  return t == o::int2 || t == o::int4 || t == o::int8 || t == o::float4 || t == o::float8 || t == o::numeric ||
         t == o::oid_;
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
    case numeric_oid: write_numeric(out, f.text()); return;
    case json_oid:
    case jsonb_oid: out << f.text(); return;
    case numeric_array_oid:
    case json_array_oid:
    case jsonb_array_oid:
      if (write_raw_array(out, f.text(), f.type() == numeric_array_oid)) return;
      break;
    default: break;
  }
  out << dump(f.to_json(), -1);
}

// The writers below read a table through a grid: a server result, or rows
// the tool made (record_set). A grid has columns() and rows(), name(c),
// right(c) (align right: numbers), is_null(row, c), text(row, c) (the text
// a table and CSV show) and json(out, row, c) (the value as JSON).
struct result_grid {
  const pgq::result& r;
  int columns() const { return r.columns(); }
  int rows() const { return r.size(); }
  std::string_view name(int c) const { return r.column_name(c); }
  bool right(int c) const { return is_numeric_type(r.column_type(c)); }
  bool is_null(int row, int c) const { return r[row][c].is_null(); }
  std::string text(int row, int c) const { return r[row][c].text(); }
  void json(std::ostream& out, int row, int c) const { write_value_json(out, r[row][c]); }
};

class record_grid {
 public:
  explicit record_grid(const record_set& s) : s_(s), right_(s.columns.size(), false) {
    for (std::size_t c = 0; c < s.columns.size(); ++c) {
      bool numbers = false;
      bool others = false;
      for (const auto& row : s.rows) {
        const auto& v = row[c];
        if (v.is_number()) numbers = true;
        else if (!v.is_null()) others = true;
      }
      right_[c] = numbers && !others;
    }
  }
  int columns() const { return static_cast<int>(s_.columns.size()); }
  int rows() const { return static_cast<int>(s_.rows.size()); }
  std::string_view name(int c) const { return s_.columns[static_cast<std::size_t>(c)]; }
  bool right(int c) const { return right_[static_cast<std::size_t>(c)]; }
  bool is_null(int row, int c) const { return cell(row, c).is_null(); }
  std::string text(int row, int c) const {
    const auto& v = cell(row, c);
    if (v.is_null()) return {};
    if (v.is_string()) return v.get<std::string>();
    return dump(v, -1);
  }
  void json(std::ostream& out, int row, int c) const { out << dump(cell(row, c), -1); }

 private:
  const nlohmann::json& cell(int row, int c) const {
    return s_.rows[static_cast<std::size_t>(row)][static_cast<std::size_t>(c)];
  }
  const record_set& s_;
  std::vector<bool> right_;
};

// A row as a compact JSON object with its keys in column order (nlohmann::json
// would sort them).
template <class Grid>
void write_row_json(std::ostream& out, const Grid& g, int row) {
  out << '{';
  for (int c = 0; c < g.columns(); ++c) {
    if (c != 0) out << ',';
    out << dump(nlohmann::json(std::string(g.name(c))), -1) << ':';
    g.json(out, row, c);
  }
  out << '}';
}

// The rows of one result as a JSON array, one row per line.
template <class Grid>
void write_array_json(std::ostream& out, const Grid& g, std::string_view indent) {
  if (g.rows() == 0) {
    out << "[]";
    return;
  }
  out << "[\n";
  for (int i = 0; i < g.rows(); ++i) {
    out << indent << "  ";
    write_row_json(out, g, i);
    out << (i + 1 < g.rows() ? ",\n" : "\n");
  }
  out << indent << ']';
}

void pad(std::ostream& out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out.put(' ');
}

template <class Grid>
void write_grid_table(std::ostream& out, const Grid& g) {
  const int cols = g.columns();
  std::vector<std::size_t> width(static_cast<std::size_t>(cols));
  std::vector<bool> right(static_cast<std::size_t>(cols));
  for (int c = 0; c < cols; ++c) {
    const auto k = static_cast<std::size_t>(c);
    width[k] = display_width(g.name(c));
    right[k] = g.right(c);
  }
  for (int row = 0; row < g.rows(); ++row) {
    for (int c = 0; c < cols; ++c) {
      auto& w = width[static_cast<std::size_t>(c)];
      w = std::max(w, display_width(g.text(row, c)));
    }
  }
  // Header centred over each column, as psql does.
  for (int c = 0; c < cols; ++c) {
    const auto k = static_cast<std::size_t>(c);
    const std::string_view name = g.name(c);
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
  for (int row = 0; row < g.rows(); ++row) {
    for (int c = 0; c < cols; ++c) {
      const auto k = static_cast<std::size_t>(c);
      const std::string v = g.text(row, c);
      const std::size_t space = width[k] - display_width(v);
      out << (c == 0 ? " " : " | ");
      if (right[k]) pad(out, space);
      out << v;
      if (!right[k] && c + 1 < cols) pad(out, space);
    }
    out << '\n';
  }
  out << '(' << g.rows() << (g.rows() == 1 ? " row)" : " rows)") << "\n";
}

template <class Grid>
void write_grid_csv(std::ostream& out, const Grid& g) {
  auto field = [&](std::string_view v, bool quote_empty) {
    const bool quote = (quote_empty && v.empty()) || v.find_first_of(",\"\r\n") != std::string_view::npos;
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
  const int cols = g.columns();
  for (int c = 0; c < cols; ++c) {
    if (c != 0) out << ',';
    field(g.name(c), true);
  }
  out << '\n';
  for (int row = 0; row < g.rows(); ++row) {
    for (int c = 0; c < cols; ++c) {
      if (c != 0) out << ',';
      if (!g.is_null(row, c)) field(g.text(row, c), true);
    }
    out << '\n';
  }
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
  if (r.columns() == 0) {
    out << r.command_tag() << '\n';
    return;
  }
  write_grid_table(out, result_grid{r});
}

void write_csv(std::ostream& out, const pgq::result& r) { write_grid_csv(out, result_grid{r}); }

void write_records(std::ostream& out, output_format fmt, const record_set& records) {
  const record_grid g(records);
  switch (fmt) {
    case output_format::table: write_grid_table(out, g); break;
    case output_format::json:
      write_array_json(out, g, "");
      out << '\n';
      break;
    case output_format::ndjson:
      for (int row = 0; row < g.rows(); ++row) {
        write_row_json(out, g, row);
        out << '\n';
      }
      break;
    case output_format::csv: write_grid_csv(out, g); break;
  }
}

void write_records_json(std::ostream& out, const record_set& records, std::string_view indent) {
  write_array_json(out, record_grid(records), indent);
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
    case output_format::csv: out_ << '\n'; break;
    case output_format::ndjson: break;
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
      write_array_json(out_, result_grid{r}, list_ ? "  " : "");
      if (!list_) out_ << '\n';
      break;
    case output_format::ndjson:
      for (int row = 0; row < r.size(); ++row) {
        write_row_json(out_, result_grid{r}, row);
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
