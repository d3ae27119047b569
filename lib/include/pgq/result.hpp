// pgq/result.hpp - zero-copy views over a query's result: result, row, field.
#pragma once

#include <pgq/codec.hpp>
#include <pgq/detail/struct_rows.hpp>
#include <pgq/error.hpp>

#include <boost/container/small_vector.hpp>
#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

struct pg_result;  // libpq's PGresult, kept out of our public headers

namespace pgq {

class result;
class row;

namespace detail {
struct type_catalog;
/// Gives `r` the catalog its JSON rendering uses; for pgq's connection,
/// before `r` is handed to anyone.
void attach_types(result& r, std::shared_ptr<const type_catalog> types) noexcept;
/// The catalog attached to `r` (null when none), for pgq's tests.
const type_catalog* types_of(const result& r) noexcept;
struct type_catalog;  // lib/src/type_catalog.hpp: composite names, domains, enums
/// A column's type and format, read once per result.
struct column_meta {
  oid type = 0;
  format fmt = format::text;
};
/// A result and the metadata that every field access needs.
struct result_data {
  pg_result* res = nullptr;
  int rows = 0;
  int columns = 0;
  // Inline up to 8 columns: one allocation less per result (per row when
  // streaming).
  boost::container::small_vector<column_meta, 8> cols;
  /// What the connection knew of the result's non-built-in types (composite
  /// attribute names...) when the result arrived; null when it knew nothing.
  /// Set once, before the result reaches its user (attach_types()).
  std::shared_ptr<const type_catalog> types;
  explicit result_data(pg_result* r) noexcept;
  ~result_data();
  result_data(const result_data&) = delete;
  result_data& operator=(const result_data&) = delete;
};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

[[noreturn]] void throw_unexpected_null(const pg_result* res, int col, std::string_view cpp);
[[noreturn]] void throw_type_mismatch(const pg_result* res, int col, std::string_view cpp);
[[noreturn]] void rethrow_in_column(const pg_result* res, int col, std::string_view cpp, const sql_error& e);

template <class T>
struct tuple_decodable : std::false_type {};
template <class... Ts>
struct tuple_decodable<std::tuple<Ts...>> : std::bool_constant<(decodable<read_value_t<Ts>> && ...)> {};
}  // namespace detail

/// What `query_as<T>()` can make of one row, tried in this order: one column
/// of a decodable type (`std::optional<U>` of one reads NULL as nullopt); a
/// `std::tuple` of those, one column each; a struct of those, one column per
/// field: a plain aggregate by position (Boost.PFR, no macro), a struct
/// described with BOOST_DESCRIBE_STRUCT by column name (see
/// <pgq/detail/struct_rows.hpp>).
template <class T>
concept row_decodable =
    decodable<detail::read_value_t<T>> || detail::tuple_decodable<T>::value || detail::struct_row<T>;

/// One value of one row: a view into the result that owns it. Valid while
/// that `pgq::result` (or a copy of it) lives.
class field {
 public:
  /// True when the value is SQL NULL.
  bool is_null() const noexcept { return null_; }
  /// The value as the server prints it (empty for NULL), whatever format it
  /// came in: for display. Throws errc::type_mismatch for a binary value
  /// pgq cannot render (never happens for results pgq asked for in binary).
  std::string text() const;
  /// The raw bytes as the server sent them (text or binary, see fmt());
  /// empty for NULL.
  std::string_view bytes() const noexcept { return value_.bytes; }
  /// The Postgres type of the column.
  oid type() const noexcept { return value_.type; }
  /// The wire format of the value.
  format fmt() const noexcept { return value_.fmt; }
  /// The column's index in the row.
  int column() const noexcept { return col_; }
  /// The column's name.
  std::string_view name() const noexcept;
  /// The value as it came, for codecs.
  const value_view& value() const noexcept { return value_; }

  /// Decodes the value as `T`; `std::optional<T>` reads NULL as nullopt.
  /// Throws `pgq::sql_error`: `errc::unexpected_null` for NULL into a
  /// non-optional, `errc::type_mismatch` when the column's type cannot be read
  /// as `T`, `errc::invalid_value` when the bytes do not decode; every message
  /// names the column, the Postgres type and the C++ type. A `T` without a
  /// decoding codec does not compile (`pgq::decodable`).
  template <class T>
  requires decodable<detail::read_value_t<T>> T as()
  const {
    if constexpr (detail::is_optional<T>::value) {
      if (null_) return T{};
      return T{as<typename T::value_type>()};
    } else {
      using codec_t = codec<T>;
      if (null_) detail::throw_unexpected_null(res_, col_, codec_t::cpp_name);
      if (!codec_t::accepts(value_.type)) detail::throw_type_mismatch(res_, col_, codec_t::cpp_name);
      try {
        return codec_t::decode(value_);
      } catch (const sql_error& e) {
        detail::rethrow_in_column(res_, col_, codec_t::cpp_name, e);
      }
    }
  }

  /// The value as PostgreSQL's `to_json()` renders it (null for NULL);
  /// records and composites as objects, named as the connection learnt
  /// from the catalog (see `connection::query_params()`), f1..fN otherwise.
  nlohmann::json to_json() const;

 private:
  friend class row;
  field(const detail::result_data* data, int row, int col) noexcept;

  const pg_result* res_;
  const detail::type_catalog* types_;
  int col_;
  bool null_;
  value_view value_;
};

/// One row of a result: a view, valid while its `pgq::result` lives.
class row {
 public:
  /// The number of columns.
  int size() const noexcept { return data_ != nullptr ? data_->columns : 0; }
  /// The row's index in its result.
  int index() const noexcept { return row_; }

  /// The field at column `col`. Throws `errc::out_of_range` for a bad index.
  field operator[](int col) const;
  /// The field of the column named `name` (libpq's rules: unquoted names are
  /// case-folded). Throws `errc::out_of_range` when there is no such column.
  field operator[](std::string_view name) const;
  field operator[](const char* name) const { return (*this)[std::string_view(name)]; }

  /// `(*this)[col].as<T>()`.
  template <class T>
  requires decodable<detail::read_value_t<T>> T get(int col)
  const { return (*this)[col].template as<T>(); }
  /// `(*this)[name].as<T>()`.
  template <class T>
  requires decodable<detail::read_value_t<T>> T get(std::string_view name)
  const { return (*this)[name].template as<T>(); }
  /// The first `sizeof...(Ts)` columns as a tuple, for structured bindings:
  /// `auto [id, name] = row.as_tuple<int, std::string>();` Throws as
  /// `field::as<T>()`, and errc::out_of_range when the row has fewer columns.
  template <class... Ts>
  requires(decodable<detail::read_value_t<Ts>>&&...) std::tuple<Ts...> as_tuple()
  const { return as_impl<Ts...>(std::index_sequence_for<Ts...>{}); }
  /// The old name of as_tuple(): `row.as<Ts...>()` read like `field::as<T>()`,
  /// which decodes one value.
  template <class... Ts>
  requires(decodable<detail::read_value_t<Ts>>&&...)
      [[deprecated("use row::as_tuple<Ts...>()")]] std::tuple<Ts...> as() const {
    return as_impl<Ts...>(std::index_sequence_for<Ts...>{});
  }

  /// The row as a JSON object keyed by column name, values as `to_json()`.
  nlohmann::json to_json() const;

 private:
  friend class result;
  row(const detail::result_data* data, int r) noexcept : data_(data), row_(r) {}
  template <class... Ts, std::size_t... I>
  std::tuple<Ts...> as_impl(std::index_sequence<I...>) const {
    return std::tuple<Ts...>{get<Ts>(static_cast<int>(I))...};
  }

  const detail::result_data* data_;
  int row_;
};

/// The result of one statement. Owns the libpq result; copies share it.
/// Rows and fields are views into it. Not thread-safe to mutate, safe to read
/// from several threads.
class result {
 public:
  class iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = pgq::row;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = pgq::row;

    iterator() = default;
    pgq::row operator*() const noexcept { return pgq::row(data_, i_); }
    pgq::row operator[](difference_type n) const noexcept { return pgq::row(data_, i_ + static_cast<int>(n)); }
    iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    iterator operator++(int) noexcept {
      auto t = *this;
      ++i_;
      return t;
    }
    iterator& operator--() noexcept {
      --i_;
      return *this;
    }
    iterator operator--(int) noexcept {
      auto t = *this;
      --i_;
      return t;
    }
    iterator& operator+=(difference_type n) noexcept {
      i_ += static_cast<int>(n);
      return *this;
    }
    iterator& operator-=(difference_type n) noexcept {
      i_ -= static_cast<int>(n);
      return *this;
    }
    friend iterator operator+(iterator it, difference_type n) noexcept { return it += n; }
    friend iterator operator+(difference_type n, iterator it) noexcept { return it += n; }
    friend iterator operator-(iterator it, difference_type n) noexcept { return it -= n; }
    friend difference_type operator-(const iterator& a, const iterator& b) noexcept { return a.i_ - b.i_; }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.i_ == b.i_; }
    friend auto operator<=>(const iterator& a, const iterator& b) noexcept { return a.i_ <=> b.i_; }

   private:
    friend class result;
    iterator(const detail::result_data* d, int i) noexcept : data_(d), i_(i) {}
    const detail::result_data* data_ = nullptr;
    int i_ = 0;
  };

  /// An empty result (no rows, no columns).
  result() = default;
  /// Takes ownership of a libpq result (for pgq's internals and extensions).
  explicit result(pg_result* res) noexcept;

  /// Number of rows.
  int size() const noexcept { return data_ ? data_->rows : 0; }
  bool empty() const noexcept { return size() == 0; }
  /// Number of columns.
  int columns() const noexcept { return data_ ? data_->columns : 0; }
  /// The name of column `col`. Throws `errc::out_of_range`.
  std::string_view column_name(int col) const;
  /// The type OID of column `col`. Throws `errc::out_of_range`.
  oid column_type(int col) const;
  /// The index of the column named `name`. Throws `errc::out_of_range`.
  int column_index(std::string_view name) const;

  /// Row `r`, unchecked.
  pgq::row operator[](int r) const noexcept { return pgq::row(data_.get(), r); }
  /// Row `r`; throws `errc::out_of_range`.
  pgq::row at(int r) const;
  iterator begin() const noexcept { return iterator(data_.get(), 0); }
  iterator end() const noexcept { return iterator(data_.get(), size()); }

  /// The command tag, e.g. "INSERT 0 3" or "SELECT 10".
  std::string_view command_tag() const noexcept;
  /// Rows affected by INSERT/UPDATE/DELETE/MERGE/SELECT/COPY..., 0 otherwise.
  std::uint64_t rows_affected() const noexcept;

  /// All rows as a JSON array of objects (see `row::to_json()`).
  nlohmann::json to_json() const;

  /// The libpq result; null for an empty result.
  pg_result* native_handle() const noexcept { return data_ ? data_->res : nullptr; }

 private:
  friend void detail::attach_types(result& r, std::shared_ptr<const detail::type_catalog> types) noexcept;
  friend const detail::type_catalog* detail::types_of(const result& r) noexcept;
  std::shared_ptr<const detail::result_data> data_;
};

namespace detail {
/// Throws errc::type_mismatch: a result of `have` columns read as rows of
/// `want` columns (query_as()).
[[noreturn]] void throw_column_count(int have, int want);

/// Reads the rows of one statement as `T` (see row_decodable): checks the
/// columns once, when made from the result (or a stream's first result).
template <class T>
class row_reader {
 public:
  explicit row_reader(const result& r) {
    if constexpr (decodable<read_value_t<T>>) {
      if (r.columns() != 1) throw_column_count(r.columns(), 1);
    } else if constexpr (tuple_decodable<T>::value) {
      if (r.columns() != static_cast<int>(std::tuple_size_v<T>))
        throw_column_count(r.columns(), static_cast<int>(std::tuple_size_v<T>));
    } else {
      cols_ = struct_columns<T>(r.columns(), [&r](int c) { return r.column_name(c); });
    }
  }
  T operator()(const row& x) const {
    if constexpr (decodable<read_value_t<T>>) {
      return x.get<T>(0);
    } else if constexpr (tuple_decodable<T>::value) {
      return [&x]<class... Ts>(std::type_identity<std::tuple<Ts...>>) {
        return x.as_tuple<Ts...>();
      }(std::type_identity<T>{});
    } else {
      return read_struct<T>(x, cols_);
    }
  }

 private:
  std::vector<int> cols_;
};

/// Throws errc::row_count: `what` (query_one_as, query_opt_as) got `rows`.
[[noreturn]] void throw_row_count(std::string_view what, int rows);
}  // namespace detail

}  // namespace pgq
