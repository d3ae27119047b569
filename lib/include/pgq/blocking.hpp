// pgq/blocking.hpp - run a blocking function on a thread pool from a coroutine.
#pragma once

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/is_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace pgq {

/// The thread pool run_blocking() uses when given none: made at first use
/// with as many threads as the machine has cores (at least 2, at most 16),
/// never destroyed (a call still blocked at exit does not hold up the exit).
/// A blocking call holds one of its threads for as long as it runs.
boost::asio::thread_pool& default_blocking_pool();

namespace detail {

enum class blocking_phase : int { queued, running, cancelled };

template <class R>
struct blocking_state {
  std::atomic<blocking_phase> phase{blocking_phase::queued};
  std::exception_ptr error;
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
};

}  // namespace detail

/// Runs `fn()` on a thread of `threads` (any executor of a thread pool) and
/// resumes the calling coroutine on its own executor with what `fn`
/// returned, or with the exception it threw. For code that must block: a
/// synchronous library call, file I/O, a CPU-heavy step, so that it does not
/// stall the io_context that runs the connections.
///
/// Cancellation (the awaiting coroutine's cancellation slot, e.g. a
/// pgq::timeout or `||` of asio's awaitable operators):
///   - while `fn` waits for a free thread: it is never run, and the caller
///     gets boost::system::system_error(asio::error::operation_aborted);
///   - once `fn` runs: a thread cannot be interrupted; the caller waits for
///     it and gets its result (the cancel is ignored, so what `fn` did is
///     never hidden). Make `fn` time-bounded itself if that matters.
/// `fn` is moved to the thread; what it captures by reference must outlive
/// the call (it does while the caller is suspended in it).
///
///   auto text = co_await pgq::run_blocking([&] { return read_file(path); });
template <class F, class Executor>
requires std::is_invocable_v<F&> &&
    (boost::asio::execution::is_executor<Executor>::value || boost::asio::is_executor<Executor>::value)
        [[nodiscard]] boost::asio::awaitable<std::invoke_result_t<F&>> run_blocking(Executor threads, F fn) {
  namespace asio = boost::asio;
  using result_type = std::invoke_result_t<F&>;
  auto state = std::make_shared<detail::blocking_state<result_type>>();
  co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr)>(
      [&state, &threads, &fn](auto handler) {
        using handler_type = decltype(handler);
        // The one place the handler lives; whoever finishes (the thread, or
        // a cancel while queued) takes it, on the caller's executor.
        struct completion {
          handler_type handler;
          asio::executor_work_guard<asio::associated_executor_t<handler_type>> work;
          explicit completion(handler_type&& h) : handler(std::move(h)), work(asio::get_associated_executor(handler)) {}
        };
        auto done = std::make_shared<completion>(std::move(handler));
        auto finish = [done](std::exception_ptr e) {
          auto ex = done->work.get_executor();
          asio::post(ex, [done, e]() mutable {
            auto slot = asio::get_associated_cancellation_slot(done->handler);
            if (slot.is_connected()) slot.clear();
            auto h = std::move(done->handler);
            done->work.reset();
            std::move(h)(e);
          });
        };
        auto slot = asio::get_associated_cancellation_slot(done->handler);
        if (slot.is_connected()) {
          slot.assign([state, finish](asio::cancellation_type type) {
            if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                         asio::cancellation_type::total)) == asio::cancellation_type::none) {
              return;
            }
            auto expected = detail::blocking_phase::queued;
            if (state->phase.compare_exchange_strong(expected, detail::blocking_phase::cancelled)) {
              finish(std::make_exception_ptr(boost::system::system_error(
                  asio::error::operation_aborted, "pgq::run_blocking: cancelled before it ran")));
            }
          });
        }
        asio::post(threads, [state, finish, fn = std::move(fn)]() mutable {
          auto expected = detail::blocking_phase::queued;
          if (!state->phase.compare_exchange_strong(expected, detail::blocking_phase::running)) return;
          try {
            if constexpr (std::is_void_v<result_type>) {
              fn();
              state->value = true;
            } else {
              state->value.emplace(fn());
            }
          } catch (...) {
            state->error = std::current_exception();
          }
          finish(nullptr);
        });
      },
      asio::use_awaitable);
  if (state->error) std::rethrow_exception(state->error);
  if constexpr (!std::is_void_v<result_type>) {
    co_return std::move(*state->value);
  }
}

/// run_blocking() on a thread_pool.
template <class F>
requires std::is_invocable_v<F&>
[[nodiscard]] boost::asio::awaitable<std::invoke_result_t<F&>> run_blocking(boost::asio::thread_pool& threads, F fn) {
  return run_blocking(threads.get_executor(), std::move(fn));
}

/// run_blocking() on default_blocking_pool().
template <class F>
requires std::is_invocable_v<F&>
[[nodiscard]] boost::asio::awaitable<std::invoke_result_t<F&>> run_blocking(F fn) {
  return run_blocking(default_blocking_pool().get_executor(), std::move(fn));
}

}  // namespace pgq
