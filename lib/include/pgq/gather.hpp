// pgq/gather.hpp - await several operations at once.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/cancellation_condition.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <cstddef>
#include <exception>
#include <tuple>
#include <type_traits>
#include <utility>

namespace pgq {

namespace detail {

// The results of a parallel group of co_spawn()ed operations come as
// (order, e0, r0, e1, r1, ...): the first failure in completion order, or
// the values.
template <class... T, std::size_t... I, class Group>
std::tuple<T...> gathered(Group& g, std::index_sequence<I...> /*unused*/) {
  const auto& order = std::get<0>(g);
  const std::array<std::exception_ptr, sizeof...(T)> errors{std::get<1 + 2 * I>(g)...};
  for (const std::size_t which : order) {
    if (errors[which]) std::rethrow_exception(errors[which]);
  }
  return std::tuple<T...>(std::move(std::get<2 + 2 * I>(g))...);
}

template <class Condition, class... T>
boost::asio::awaitable<std::tuple<T...>> gather_with(Condition condition, boost::asio::awaitable<T>... ops) {
  const auto ex = co_await boost::asio::this_coro::executor;
  auto g = co_await boost::asio::experimental::make_parallel_group(
               boost::asio::co_spawn(ex, std::move(ops), boost::asio::deferred)...)
               .async_wait(condition, boost::asio::use_awaitable);
  co_return gathered<T...>(g, std::index_sequence_for<T...>{});
}

}  // namespace detail

/// Runs the awaitables at once (each as its own coroutine on the caller's
/// executor) and returns their results in argument order:
///
///     auto [users, orders] = co_await pgq::gather(pool.query("SELECT ... users"),
///                                                 pool.query("SELECT ... orders"));
///
/// Waits for all of them, even when one fails, then throws the first
/// failure (in the order they completed); the others' results are dropped.
/// Each `T` must be default-constructible and movable (`pgq::result`,
/// `std::uint64_t`, `std::vector<...>`; `awaitable<void>` is not accepted).
/// Queries through one pool may share connections
/// (`pool_options::share_depth`); on one `connection` they are pipelined.
/// Cancellation: cancelling the gather cancels every operation still
/// running, as cancelling each would.
/// Lifetime: what the awaitables refer to (the pool, the SQL text and the
/// arguments) must outlive the gather, which holds when it is awaited in the
/// same expression.
template <class... T>
boost::asio::awaitable<std::tuple<T...>> gather(boost::asio::awaitable<T>... ops) {
  static_assert(sizeof...(T) > 0, "gather() needs at least one awaitable");
  return detail::gather_with(boost::asio::experimental::wait_for_all(), std::move(ops)...);
}

/// As gather(), but on the first failure cancels the operations still
/// running (a query on the wire is cancelled on the server: a `pg_sleep`
/// ends early), waits for them to end, and throws that failure.
template <class... T>
boost::asio::awaitable<std::tuple<T...>> gather_or_cancel(boost::asio::awaitable<T>... ops) {
  static_assert(sizeof...(T) > 0, "gather_or_cancel() needs at least one awaitable");
  return detail::gather_with(boost::asio::experimental::wait_for_one_error(), std::move(ops)...);
}

}  // namespace pgq
