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
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace pgq {

namespace detail {
// The result of `op` in an optional: with_timeout works for results that
// cannot be default-constructed (a transaction).
template <class T>
boost::asio::awaitable<std::optional<T>> in_optional(boost::asio::awaitable<T> op) {
  std::optional<T> out;
  out.emplace(co_await std::move(op));
  co_return out;
}

[[noreturn]] inline void throw_timeout(std::chrono::steady_clock::duration limit) {
  throw sql_error(errc::timeout,
                  "timed out after " +
                      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()) + " ms");
}

// After the deadline: `op` ended anyway. A commit whose outcome is unknown
// says so (never "timed out", which would hide a commit).
inline void rethrow_if_unknown(const std::exception_ptr& op_error) {
  if (!op_error) return;
  try {
    std::rethrow_exception(op_error);
  } catch (const sql_error& e) {
    if (e.code() == errc::commit_unknown) throw;
  } catch (...) {
  }
}
}  // namespace detail

/// Awaits `op`, or throws `pgq::sql_error` with `errc::timeout` once `limit`
/// has passed. When `op` finishes first, its result or its own exception is
/// passed on at once (a lost connection is reported as such, not as a
/// timeout). On timeout `op` is cancelled through its cancellation slot, so
/// a statement is dropped or cancelled on the server exactly as on any other
/// cancellation, and the connection stays usable:
/// `auto r = co_await pgq::with_timeout(pool.query(sql), 2s);`
/// When the deadline passes but `op` still completes (it finished before the
/// cancel took hold), its result is returned: a COMMIT that committed is not
/// reported as timed out. A COMMIT cancelled on the wire throws
/// `errc::commit_unknown`, not `errc::timeout`.
/// (Boost 1.81 has no asio::cancel_after; this is its equivalent. Not
/// `op || timer` from awaitable_operators: that waits for the first to
/// *succeed*, so a failing `op` would wait out the timer.)
template <class T>
[[nodiscard]] boost::asio::awaitable<T> with_timeout(boost::asio::awaitable<T> op,
                                                     std::chrono::steady_clock::duration limit) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex, limit);
  if constexpr (std::is_void_v<T>) {
    // Named, not a temporary inside the co_await expression (GCC 12).
    auto group = asio::experimental::make_parallel_group(asio::co_spawn(ex, std::move(op), asio::deferred),
                                                         timer.async_wait(asio::deferred));
    auto [order, op_error, timer_error] =
        co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)timer_error;
    if (order[0] == 0 || !op_error) {
      if (op_error) std::rethrow_exception(op_error);
      co_return;
    }
    detail::rethrow_if_unknown(op_error);
  } else {
    auto group = asio::experimental::make_parallel_group(
        asio::co_spawn(ex, detail::in_optional(std::move(op)), asio::deferred), timer.async_wait(asio::deferred));
    auto [order, op_error, value, timer_error] =
        co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)timer_error;
    if (order[0] == 0 || (!op_error && value)) {
      if (op_error) std::rethrow_exception(op_error);
      co_return std::move(*value);
    }
    detail::rethrow_if_unknown(op_error);
  }
  detail::throw_timeout(limit);
}

}  // namespace pgq
