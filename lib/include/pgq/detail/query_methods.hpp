// pgq/detail/query_methods.hpp - query(), execute(), stream() and query_as()
// for every type that runs statements (connection, transaction, pool).
#pragma once

#include <pgq/params.hpp>
#include <pgq/result.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
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
  check_row_columns<T>(r);
  std::vector<T> out;
  out.reserve(static_cast<std::size_t>(r.size()));
  for (const row x : r) out.push_back(read_row<T>(x));
  co_return out;
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
  /// of a decodable type (`std::optional<U>` reads NULL as nullopt), or a
  /// `std::tuple<Ts...>` of them, one column each:
  ///
  ///     std::vector<std::int64_t> ids = co_await pool.query_as<std::int64_t>("SELECT id FROM t");
  ///     auto people = co_await pool.query_as<std::tuple<int, std::string>>("SELECT id, name FROM p");
  ///
  /// A `T` without a decoding codec does not compile (`pgq::row_decodable`
  /// names it). Throws as query(), and `errc::type_mismatch` when the
  /// statement returns another number of columns than `T` reads, or as
  /// `field::as<T>()` for a value that cannot be read.
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

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

}  // namespace detail
}  // namespace pgq
