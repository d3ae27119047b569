// pgq/detail/query_methods.hpp - query() and execute() for every type that
// runs statements (connection, transaction, pool).
#pragma once

#include <pgq/detail/params.hpp>
#include <pgq/result.hpp>
#include <pgq/stream.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string_view>

namespace pgq::detail {

/// Gives `Derived` query() and execute() templates that encode the arguments
/// (always bound, never spliced into the text) and call its non-template
/// query_params() / execute_params(), which say what they throw.
template <class Derived>
class query_methods {
 public:
  /// Runs one statement with bound parameters and returns its result. `sql`
  /// and the arguments must stay valid until the awaitable completes, which
  /// holds when it is awaited in the same expression.
  template <class... Args>
    requires(encodable<Args> && ...)
  boost::asio::awaitable<result> query(std::string_view sql, const Args&... args) {
    return static_cast<Derived&>(*this).query_params(sql, make_params(args...));
  }

  /// Runs one statement and returns the number of rows it affected.
  template <class... Args>
    requires(encodable<Args> && ...)
  boost::asio::awaitable<std::uint64_t> execute(std::string_view sql, const Args&... args) {
    return static_cast<Derived&>(*this).execute_params(sql, make_params(args...));
  }

  /// Runs one statement and returns its rows as they arrive (see
  /// `row_stream`), for results too big to hold. The stream keeps its own
  /// copy of `sql`.
  template <class... Args>
    requires(encodable<Args> && ...)
  boost::asio::awaitable<row_stream> stream(std::string_view sql, const Args&... args) {
    return static_cast<Derived&>(*this).stream_params(sql, make_params(args...));
  }
};

}  // namespace pgq::detail
