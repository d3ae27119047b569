// pgq/detail/query_methods.hpp - query(), execute(), stream() and query_as()
// for every type that runs statements (connection, transaction, pool).
#pragma once

#include <pgq/params.hpp>
#include <pgq/result.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace pgq {

class row_stream;

namespace detail {

/// The rows of `op`'s result, each read as `T` (see `row_decodable`).
template <class T>
boost::asio::awaitable<std::vector<T>> rows_as(boost::asio::awaitable<result> op) {
  const result r = co_await std::move(op);
  const row_reader<T> read(r);
  std::vector<T> out;
  out.reserve(static_cast<std::size_t>(r.size()));
  for (const row x : r) out.push_back(read(x));
  co_return out;
}

/// The one row of `op`'s result as `T`; with `optional`, none gives nullopt.
template <class T>
boost::asio::awaitable<std::optional<T>> one_row_as(boost::asio::awaitable<result> op, bool optional) {
  const result r = co_await std::move(op);
  const row_reader<T> read(r);
  if (r.size() > 1 || (r.size() == 0 && !optional))
    throw_row_count(optional ? "query_opt_as" : "query_one_as", r.size());
  if (r.size() == 0) co_return std::nullopt;
  co_return read(r[0]);
}

template <class T>
boost::asio::awaitable<T> exactly_one_as(boost::asio::awaitable<result> op) {
  std::optional<T> v = co_await one_row_as<T>(std::move(op), false);
  co_return std::move(*v);
}

/// Gives `Derived` query(), execute(), stream() and query_as() templates that
/// encode the arguments (always bound, never spliced into the text) and call
/// its non-template query_params() / execute_params() / stream_params(),
/// which say what they throw. `sql` and the arguments must stay valid until
/// the awaitable completes, which holds when it is awaited in the same
/// expression (`co_await conn.query(sql, args...)`). Each has an overload
/// that takes a `pgq::params` built at run time instead of the arguments.
template <class Derived>
class query_methods {
 public:
  /// Runs one statement with bound parameters and returns its result.
  template <class... Args>
  requires(encodable<Args>&&...)
      [[nodiscard]] boost::asio::awaitable<result> query(std::string_view sql, const Args&... args) {
    return self().query_params(sql, make_params(args...));
  }
  [[nodiscard]] boost::asio::awaitable<result> query(std::string_view sql, params p) {
    return self().query_params(sql, std::move(p));
  }

  /// Runs one statement and returns the number of rows it affected.
  template <class... Args>
  requires(encodable<Args>&&...)
      [[nodiscard]] boost::asio::awaitable<std::uint64_t> execute(std::string_view sql, const Args&... args) {
    return self().execute_params(sql, make_params(args...));
  }
  [[nodiscard]] boost::asio::awaitable<std::uint64_t> execute(std::string_view sql, params p) {
    return self().execute_params(sql, std::move(p));
  }

  /// Runs one statement and returns its rows as they arrive (see
  /// `row_stream`, in <pgq/stream.hpp>), for results too big to hold. The
  /// stream keeps its own copy of `sql`.
  template <class... Args>
  requires(encodable<Args>&&...)
      [[nodiscard]] boost::asio::awaitable<row_stream> stream(std::string_view sql, const Args&... args) {
    return self().stream_params(sql, make_params(args...));
  }
  [[nodiscard]] boost::asio::awaitable<row_stream> stream(std::string_view sql, params p) {
    return self().stream_params(sql, std::move(p));
  }

  /// Runs one statement and returns its rows, each read as `T`: one column
  /// of a decodable type (`std::optional<U>` reads NULL as nullopt), a
  /// `std::tuple<Ts...>` of them, one column each, or a struct of them, one
  /// column per field (a plain aggregate by position, a
  /// BOOST_DESCRIBE_STRUCT one by column name):
  ///
  ///     std::vector<std::int64_t> ids = co_await pool.query_as<std::int64_t>("SELECT id FROM t");
  ///     auto people = co_await pool.query_as<std::tuple<int, std::string>>("SELECT id, name FROM p");
  ///     struct person { int id; std::string name; std::optional<std::string> email; };
  ///     std::vector<person> all = co_await pool.query_as<person>("SELECT id, name, email FROM p");
  ///
  /// A `T` that cannot be read does not compile (`pgq::row_decodable` names
  /// it). Throws as query(), and `errc::type_mismatch` when the statement
  /// returns other columns than `T` reads (their number, or for a described
  /// struct a member without its column or a column without its member), or
  /// as `field::as<T>()` for a value that cannot be read, the message then
  /// also naming the struct's field.
  template <class T, class... Args>
  requires row_decodable<T> &&(encodable<Args>&&...)
      [[nodiscard]] boost::asio::awaitable<std::vector<T>> query_as(std::string_view sql, const Args&... args) {
    return rows_as<T>(self().query_params(sql, make_params(args...)));
  }
  template <class T>
  requires row_decodable<T>
  [[nodiscard]] boost::asio::awaitable<std::vector<T>> query_as(std::string_view sql, params p) {
    return rows_as<T>(self().query_params(sql, std::move(p)));
  }

  /// The statement's one row as `T` (as query_as() reads rows):
  ///
  ///     struct book { std::int64_t id; std::string title; std::optional<double> price; };
  ///     book b = co_await pool.query_one_as<book>("SELECT id, title, price FROM books WHERE id = $1", id);
  ///
  /// Throws as query_as(), and errc::row_count when the statement returns no
  /// row or more than one.
  template <class T, class... Args>
  requires row_decodable<T> &&(encodable<Args>&&...)
      [[nodiscard]] boost::asio::awaitable<T> query_one_as(std::string_view sql, const Args&... args) {
    return exactly_one_as<T>(self().query_params(sql, make_params(args...)));
  }
  template <class T>
  requires row_decodable<T>
  [[nodiscard]] boost::asio::awaitable<T> query_one_as(std::string_view sql, params p) {
    return exactly_one_as<T>(self().query_params(sql, std::move(p)));
  }

  /// The statement's row as `T`, or nullopt when it returns none. Throws as
  /// query_as(), and errc::row_count when it returns more than one row.
  template <class T, class... Args>
  requires row_decodable<T> &&(encodable<Args>&&...)
      [[nodiscard]] boost::asio::awaitable<std::optional<T>> query_opt_as(std::string_view sql, const Args&... args) {
    return one_row_as<T>(self().query_params(sql, make_params(args...)), true);
  }
  template <class T>
  requires row_decodable<T>
  [[nodiscard]] boost::asio::awaitable<std::optional<T>> query_opt_as(std::string_view sql, params p) {
    return one_row_as<T>(self().query_params(sql, std::move(p)), true);
  }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

}  // namespace detail
}  // namespace pgq
