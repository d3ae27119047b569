// pgq/timeout.hpp - a deadline for any pgq awaitable.
#pragma once

#include <pgq/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace pgq {

/// Awaits `op`, or throws `pgq::sql_error` with `errc::timeout` once `limit`
/// has passed. On timeout `op` is cancelled through its cancellation slot, so
/// a statement is dropped or cancelled on the server exactly as on any other
/// cancellation, and the connection stays usable:
/// `auto r = co_await pgq::with_timeout(pool.query(sql), 2s);`
/// (Boost 1.81 has no asio::cancel_after; this is its equivalent.)
template <class T>
boost::asio::awaitable<T> with_timeout(boost::asio::awaitable<T> op, std::chrono::steady_clock::duration limit) {
  using namespace boost::asio::experimental::awaitable_operators;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, limit);
  auto outcome = co_await (std::move(op) || timer.async_wait(boost::asio::use_awaitable));
  if (outcome.index() == 1) {
    throw sql_error(errc::timeout,
                    "timed out after " +
                        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()) +
                        " ms");
  }
  if constexpr (!std::is_void_v<T>) co_return std::get<0>(std::move(outcome));
}

}  // namespace pgq
