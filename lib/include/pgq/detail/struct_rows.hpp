// pgq/detail/struct_rows.hpp - which structs a row can be read into, and
// how their fields are matched with columns (query_as<T>() and friends).
//
// A plain aggregate is read by position through Boost.PFR: field k from
// column k, and the statement must return exactly as many columns as it has
// fields. A struct described with BOOST_DESCRIBE_STRUCT (Boost.Describe) is
// read by name: each public member from the column of its name, and every
// column must belong to a member. Every field's type must be decodable
// (std::optional<U> for a column that may be NULL).
#pragma once

#include <pgq/codec.hpp>
#include <pgq/error.hpp>

#include <boost/core/demangle.hpp>
#include <boost/describe/members.hpp>
#include <boost/describe/modifiers.hpp>
#include <boost/mp11/algorithm.hpp>
#include <boost/pfr/core.hpp>
#include <boost/pfr/tuple_size.hpp>

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace pgq::detail {

template <class T>
using public_members = boost::describe::describe_members<T, boost::describe::mod_public>;

/// A struct whose public members Boost.Describe lists: read by name.
template <class T>
concept described_struct = boost::describe::has_describe_members<T>::value;

template <class T, class D>
using member_type = std::remove_cvref_t<decltype(std::declval<T&>().*D::pointer)>;

template <class T, class L>
struct members_decodable : std::false_type {};
template <class T, template <class...> class L, class... D>
struct members_decodable<T, L<D...>> : std::bool_constant<(decodable<read_value_t<member_type<T, D>>> && ...)> {};

template <class T, std::size_t... I>
constexpr bool pfr_fields_decodable(std::index_sequence<I...>) {
  return (decodable<read_value_t<boost::pfr::tuple_element_t<I, T>>> && ...);
}

template <class T>
constexpr bool struct_fields_decodable() {
  if constexpr (described_struct<T>) {
    return boost::mp11::mp_size<public_members<T>>::value > 0 && members_decodable<T, public_members<T>>::value;
  } else if constexpr (std::is_aggregate_v<T>) {
    // An empty struct reads nothing: not a row type.
    if constexpr (boost::pfr::tuple_size_v<T> == 0) return false;
    else return pfr_fields_decodable<T>(std::make_index_sequence<boost::pfr::tuple_size_v<T>>{});
  } else {
    return false;
  }
}

/// A struct a row can be read into (see the top of this header): tried
/// after a single decodable column and a std::tuple.
template <class T>
concept struct_row = std::is_class_v<T> && !decodable<read_value_t<T>> && std::default_initializable<T> &&
                     (described_struct<T> || std::is_aggregate_v<T>)&&struct_fields_decodable<T>();

template <class T>
constexpr std::size_t struct_field_count() {
  if constexpr (described_struct<T>) {
    return boost::mp11::mp_size<public_members<T>>::value;
  } else {
    return boost::pfr::tuple_size_v<T>;
  }
}

/// The struct's name for messages.
template <class T>
std::string struct_name() {
  return boost::core::demangle(typeid(T).name());
}

[[noreturn]] void throw_struct_columns(const std::string& type, int have, std::size_t fields);
[[noreturn]] void throw_struct_missing(const std::string& type, std::string_view member,
                                       const std::vector<std::string_view>& columns);
[[noreturn]] void throw_struct_extra(const std::string& type, std::string_view column, int index);
[[noreturn]] void rethrow_in_field(const std::string& type, std::string_view member, std::size_t index,
                                   const sql_error& e);

/// Column k of the statement for each field of `T`, in field order: checked
/// once per result. `name(i)` is column i's name.
template <class T, class NameFn>
std::vector<int> struct_columns(int columns, NameFn&& name) {
  constexpr std::size_t fields = struct_field_count<T>();
  std::vector<int> cols(fields, -1);
  if constexpr (described_struct<T>) {
    std::vector<bool> used(static_cast<std::size_t>(columns), false);
    std::size_t k = 0;
    boost::mp11::mp_for_each<public_members<T>>([&](auto d) {
      const std::string_view member = d.name;
      for (int c = 0; c < columns; ++c) {
        if (!used[static_cast<std::size_t>(c)] && name(c) == member) {
          cols[k] = c;
          used[static_cast<std::size_t>(c)] = true;
          break;
        }
      }
      if (cols[k] < 0) {
        std::vector<std::string_view> all;
        for (int c = 0; c < columns; ++c) all.push_back(name(c));
        throw_struct_missing(struct_name<T>(), member, all);
      }
      ++k;
    });
    for (int c = 0; c < columns; ++c) {
      if (!used[static_cast<std::size_t>(c)]) throw_struct_extra(struct_name<T>(), name(c), c);
    }
  } else {
    if (columns != static_cast<int>(fields)) throw_struct_columns(struct_name<T>(), columns, fields);
    for (std::size_t k = 0; k < fields; ++k) cols[k] = static_cast<int>(k);
  }
  return cols;
}

/// A row (anything with `field operator[](int)`) read into `T` through the
/// columns struct_columns() chose.
template <class T, class Row>
T read_struct(const Row& x, const std::vector<int>& cols) {
  T out{};
  if constexpr (described_struct<T>) {
    std::size_t k = 0;
    boost::mp11::mp_for_each<public_members<T>>([&](auto d) {
      using F = member_type<T, decltype(d)>;
      try {
        out.*d.pointer = x[cols[k]].template as<F>();
      } catch (const sql_error& e) {
        rethrow_in_field(struct_name<T>(), d.name, k, e);
      }
      ++k;
    });
  } else {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      auto one = [&]<std::size_t K>(std::integral_constant<std::size_t, K>) {
        using F = boost::pfr::tuple_element_t<K, T>;
        try {
          boost::pfr::get<K>(out) = x[cols[K]].template as<F>();
        } catch (const sql_error& e) {
          rethrow_in_field(struct_name<T>(), {}, K, e);
        }
      };
      (one(std::integral_constant<std::size_t, I>{}), ...);
    }
    (std::make_index_sequence<struct_field_count<T>()>{});
  }
  return out;
}

}  // namespace pgq::detail
