#include <pgq/json.hpp>
#include <pgq/result.hpp>

#include <libpq-fe.h>

#include <charconv>

namespace pgq {
namespace detail {
namespace {

std::string describe_column(const pg_result* res, int col) {
  const char* name = PQfname(res, col);
  std::string s = "column \"";
  s += name != nullptr ? name : "?";
  s += "\" (#" + std::to_string(col) + ", " + type_name(PQftype(res, col)) + ")";
  return s;
}

}  // namespace

void throw_unexpected_null(const pg_result* res, int col, std::string_view cpp) {
  throw sql_error(errc::unexpected_null, describe_column(res, col) + " is NULL; read it as std::optional<" +
                                             std::string(cpp) + "> instead of " + std::string(cpp));
}

void throw_type_mismatch(const pg_result* res, int col, std::string_view cpp) {
  throw sql_error(errc::type_mismatch,
                  describe_column(res, col) + " cannot be read as " + std::string(cpp));
}

void throw_nul_in_text(int index) {
  throw sql_error(errc::invalid_value, "parameter $" + std::to_string(index + 1) +
                                           " contains a NUL byte, which text values cannot hold "
                                           "(send bytes as pgq::bytea)");
}

void rethrow_in_column(const pg_result* res, int col, std::string_view cpp, const sql_error& e) {
  diagnostics d = e.diag();
  d.message = describe_column(res, col) + " read as " + std::string(cpp) + ": " + d.message;
  throw sql_error(e.code(), std::move(d));
}

}  // namespace detail

field::field(const pg_result* res, int r, int col) noexcept
    : res_(res), col_(col), null_(PQgetisnull(res, r, col) != 0) {
  value_.type = PQftype(res, col);
  value_.fmt = PQfformat(res, col) == 1 ? format::binary : format::text;
  if (!null_) {
    value_.bytes = std::string_view(PQgetvalue(res, r, col),
                                    static_cast<std::size_t>(PQgetlength(res, r, col)));
  }
}

std::string_view field::name() const noexcept {
  const char* n = PQfname(res_, col_);
  return n != nullptr ? std::string_view(n) : std::string_view();
}

std::string field::text() const {
  if (null_) return {};
  return detail::render_text(value_);
}

nlohmann::json field::to_json() const {
  if (null_) return nullptr;
  return to_json_value(value_);
}

int row::size() const noexcept { return res_ != nullptr ? PQnfields(res_) : 0; }

field row::operator[](int col) const {
  if (res_ == nullptr || col < 0 || col >= PQnfields(res_)) {
    throw sql_error(errc::out_of_range, "column index " + std::to_string(col) +
                                            " out of range (the row has " +
                                            std::to_string(size()) + " columns)");
  }
  return field(res_, row_, col);
}

field row::operator[](std::string_view name) const {
  const std::string n(name);
  const int col = res_ != nullptr ? PQfnumber(res_, n.c_str()) : -1;
  if (col < 0) throw sql_error(errc::out_of_range, "no column named \"" + n + "\" in the result");
  return field(res_, row_, col);
}

nlohmann::json row::to_json() const {
  nlohmann::json obj = nlohmann::json::object();
  const int n = size();
  for (int c = 0; c < n; ++c) {
    field f(res_, row_, c);
    obj[std::string(f.name())] = f.to_json();
  }
  return obj;
}

result::result(pg_result* res) noexcept : res_(res, &PQclear) {}

int result::size() const noexcept { return res_ ? PQntuples(res_.get()) : 0; }

int result::columns() const noexcept { return res_ ? PQnfields(res_.get()) : 0; }

std::string_view result::column_name(int col) const {
  if (col < 0 || col >= columns()) {
    throw sql_error(errc::out_of_range, "column index " + std::to_string(col) + " out of range");
  }
  return PQfname(res_.get(), col);
}

oid result::column_type(int col) const {
  if (col < 0 || col >= columns()) {
    throw sql_error(errc::out_of_range, "column index " + std::to_string(col) + " out of range");
  }
  return PQftype(res_.get(), col);
}

int result::column_index(std::string_view name) const {
  const std::string n(name);
  const int col = res_ ? PQfnumber(res_.get(), n.c_str()) : -1;
  if (col < 0) throw sql_error(errc::out_of_range, "no column named \"" + n + "\" in the result");
  return col;
}

row result::at(int r) const {
  if (r < 0 || r >= size()) {
    throw sql_error(errc::out_of_range, "row " + std::to_string(r) + " out of range (the result has " +
                                            std::to_string(size()) + " rows)");
  }
  return (*this)[r];
}

std::string_view result::command_tag() const noexcept {
  if (!res_) return {};
  const char* s = PQcmdStatus(res_.get());
  return s != nullptr ? std::string_view(s) : std::string_view();
}

std::uint64_t result::rows_affected() const noexcept {
  if (!res_) return 0;
  const char* s = PQcmdTuples(res_.get());
  std::uint64_t n = 0;
  if (s != nullptr && *s != '\0') std::from_chars(s, s + std::char_traits<char>::length(s), n);
  return n;
}

nlohmann::json result::to_json() const {
  nlohmann::json arr = nlohmann::json::array();
  for (auto r : *this) arr.push_back(r.to_json());
  return arr;
}

}  // namespace pgq
