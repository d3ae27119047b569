#include <pgq/detail/params.hpp>
#include <pgq/json.hpp>
#include <pgq/result.hpp>

#include "type_catalog.hpp"

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
  throw sql_error(errc::type_mismatch, describe_column(res, col) + " cannot be read as " + std::string(cpp));
}

void throw_nul_in_text(int index) {
  throw sql_error(errc::invalid_value, "parameter $" + std::to_string(index + 1) +
                                           " contains a NUL byte, which text values cannot hold "
                                           "(send bytes as pgq::bytea)");
}

void throw_param_too_large(int index, std::size_t size) {
  throw sql_error(errc::invalid_value, "parameter $" + std::to_string(index + 1) + " is " + std::to_string(size) +
                                           " bytes, more than the " + std::to_string(max_param_bytes) +
                                           " (2 GiB - 1) a parameter can hold");
}

void check_param_count(const param_set& p) {
  if (p.size() <= max_param_count) return;
  throw sql_error(errc::invalid_value, "a statement can take at most " + std::to_string(max_param_count) +
                                           " parameters, not " + std::to_string(p.size()));
}

void rethrow_in_column(const pg_result* res, int col, std::string_view cpp, const sql_error& e) {
  diagnostics d = e.diag();
  d.message = describe_column(res, col) + " read as " + std::string(cpp) + ": " + d.message;
  throw sql_error(e.code(), std::move(d));
}

void throw_row_count(std::string_view what, int rows) {
  throw sql_error(errc::row_count, std::string(what) + ": the statement returned " + std::to_string(rows) +
                                       (rows == 1 ? " row" : " rows") + ", not " +
                                       (what == "query_opt_as" ? "at most one" : "exactly one"));
}

void throw_struct_columns(const std::string& type, int have, std::size_t fields) {
  throw sql_error(errc::type_mismatch, "query_as<" + type + ">: the statement returns " + std::to_string(have) +
                                           (have == 1 ? " column" : " columns") + ", " + type + " has " +
                                           std::to_string(fields) + (fields == 1 ? " field" : " fields") +
                                           " (a plain struct is read by position)");
}

void throw_struct_missing(const std::string& type, std::string_view member,
                          const std::vector<std::string_view>& columns) {
  std::string list;
  for (const auto c : columns) {
    if (!list.empty()) list += ", ";
    list += c;
  }
  throw sql_error(errc::type_mismatch, "query_as<" + type + ">: no column named \"" + std::string(member) +
                                           "\" for its member " + std::string(member) + " (the statement returns " +
                                           (list.empty() ? std::string("no columns") : list) + ")");
}

void throw_struct_extra(const std::string& type, std::string_view column, int index) {
  throw sql_error(errc::type_mismatch, "query_as<" + type + ">: column \"" + std::string(column) + "\" (#" +
                                           std::to_string(index) + ") matches no member of " + type);
}

void rethrow_in_field(const std::string& type, std::string_view member, std::size_t index, const sql_error& e) {
  diagnostics d = e.diag();
  const std::string field =
      member.empty() ? "field " + std::to_string(index) + " of " + type : type + "::" + std::string(member);
  d.message = field + ": " + d.message;
  throw sql_error(e.code(), std::move(d));
}

void throw_column_count(int have, int want) {
  throw sql_error(errc::type_mismatch, "query_as: the statement returns " + std::to_string(have) +
                                           (have == 1 ? " column" : " columns") + ", the row type reads " +
                                           std::to_string(want));
}

}  // namespace detail

detail::result_data::result_data(pg_result* r) noexcept : res(r) {
  if (res == nullptr) return;
  rows = PQntuples(res);
  columns = PQnfields(res);
  try {
    cols.resize(static_cast<std::size_t>(columns));
  } catch (...) {
    columns = 0;  // out of memory: an empty view rather than a crash
    return;
  }
  for (int c = 0; c < columns; ++c) {
    cols[static_cast<std::size_t>(c)] =
        column_meta{PQftype(res, c), PQfformat(res, c) == 1 ? format::binary : format::text};
  }
}

void detail::attach_types(result& r, std::shared_ptr<const type_catalog> types) noexcept {
  if (!r.data_) return;
  // The data is const for every reader; this runs before there is any.
  const_cast<result_data&>(*r.data_).types = std::move(types);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
}

const detail::type_catalog* detail::types_of(const result& r) noexcept {
  return r.data_ ? r.data_->types.get() : nullptr;
}

detail::result_data::~result_data() {
  if (res != nullptr) PQclear(res);
}

field::field(const detail::result_data* d, int r, int col) noexcept : res_(d->res), types_(d->types.get()), col_(col) {
  const detail::column_meta& m = d->cols[static_cast<std::size_t>(col)];
  value_.type = m.type;
  value_.fmt = m.fmt;
  // libpq gives a NULL the length 0: only an empty value needs the question.
  const int len = PQgetlength(d->res, r, col);
  null_ = len == 0 && PQgetisnull(d->res, r, col) != 0;
  if (!null_) value_.bytes = std::string_view(PQgetvalue(d->res, r, col), static_cast<std::size_t>(len));
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
  return detail::to_json_value(value_, types_);
}

field row::operator[](int col) const {
  if (data_ == nullptr || col < 0 || col >= data_->columns) {
    throw sql_error(errc::out_of_range, "column index " + std::to_string(col) + " out of range (the row has " +
                                            std::to_string(size()) + " columns)");
  }
  return field(data_, row_, col);
}

field row::operator[](std::string_view name) const {
  const std::string n(name);
  const int col = data_ != nullptr ? PQfnumber(data_->res, n.c_str()) : -1;
  if (col < 0) throw sql_error(errc::out_of_range, "no column named \"" + n + "\" in the result");
  return field(data_, row_, col);
}

nlohmann::json row::to_json() const {
  nlohmann::json obj = nlohmann::json::object();
  const int n = size();
  for (int c = 0; c < n; ++c) {
    field f(data_, row_, c);
    obj[std::string(f.name())] = f.to_json();
  }
  return obj;
}

result::result(pg_result* res) noexcept {
  if (res == nullptr) return;
  try {
    data_ = std::make_shared<const detail::result_data>(res);
  } catch (...) {
    PQclear(res);  // out of memory: an empty result, and no leak
  }
}

std::string_view result::column_name(int col) const {
  if (col < 0 || col >= columns()) {
    throw sql_error(errc::out_of_range, "column index " + std::to_string(col) + " out of range");
  }
  return PQfname(data_->res, col);
}

oid result::column_type(int col) const {
  if (col < 0 || col >= columns()) {
    throw sql_error(errc::out_of_range, "column index " + std::to_string(col) + " out of range");
  }
  return data_->cols[static_cast<std::size_t>(col)].type;
}

int result::column_index(std::string_view name) const {
  const std::string n(name);
  const int col = data_ ? PQfnumber(data_->res, n.c_str()) : -1;
  if (col < 0) throw sql_error(errc::out_of_range, "no column named \"" + n + "\" in the result");
  return col;
}

row result::at(int r) const {
  if (r < 0 || r >= size()) {
    throw sql_error(errc::out_of_range,
                    "row " + std::to_string(r) + " out of range (the result has " + std::to_string(size()) + " rows)");
  }
  return (*this)[r];
}

std::string_view result::command_tag() const noexcept {
  if (!data_) return {};
  const char* s = PQcmdStatus(data_->res);
  return s != nullptr ? std::string_view(s) : std::string_view();
}

std::uint64_t result::rows_affected() const noexcept {
  if (!data_) return 0;
  const char* s = PQcmdTuples(data_->res);
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
