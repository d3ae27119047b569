// pgq/timeout.hpp - a deadline for any pgq awaitable.
#pragma once

#include <pgq/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>

namespace pgq {

/// Awaits `op`, or throws `pgq::sql_error` with `errc::timeout` once `limit`
/// has passed. When `op` finishes first, its result or its own exception is
/// passed on at once (a lost connection is reported as such, not as a
/// timeout). On timeout `op` is cancelled through its cancellation slot, so
/// a statement is dropped or cancelled on the server exactly as on any other
/// cancellation, and the connection stays usable:
/// `auto r = co_await pgq::with_timeout(pool.query(sql), 2s);`
/// (Boost 1.81 has no asio::cancel_after; this is its equivalent. Not
/// `op || timer` from awaitable_operators: that waits for the first to
/// *succeed*, so a failing `op` would wait out the timer.)
template <class T>
boost::asio::awaitable<T> with_timeout(boost::asio::awaitable<T> op, std::chrono::steady_clock::duration limit) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex, limit);
  // Named, not a temporary inside the co_await expression (GCC 12).
  auto group = asio::experimental::make_parallel_group(asio::co_spawn(ex, std::move(op), asio::deferred),
                                                       timer.async_wait(asio::deferred));
  if constexpr (std::is_void_v<T>) {
    auto [order, op_error, timer_error] =
        co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)timer_error;
    if (order[0] == 0) {
      if (op_error) std::rethrow_exception(op_error);
      co_return;
    }
  } else {
    auto [order, op_error, value, timer_error] =
        co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)timer_error;
    if (order[0] == 0) {
      if (op_error) std::rethrow_exception(op_error);
      co_return std::move(value);
    }
  }
  throw sql_error(errc::timeout,
                  "timed out after " +
                      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()) + " ms");
}

}  // namespace pgq
