#include <pgq/blocking.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// Runs `body` on `ctx` to completion; rethrows what it threw.
void run(asio::io_context& ctx, std::function<asio::awaitable<void>()> body) {
  std::exception_ptr failure;
  bool done = false;
  asio::co_spawn(ctx, std::move(body), [&](std::exception_ptr e) {
    failure = std::move(e);
    done = true;
  });
  ctx.run_for(20s);
  REQUIRE(done);
  if (failure) std::rethrow_exception(failure);
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

}  // namespace

TEST_CASE("run_blocking: runs on another thread and resumes on the caller's executor", "[blocking]") {
  asio::io_context ctx;
  asio::thread_pool threads(2);
  const auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  int got = 0;
  bool back_on_ctx = false;
  run(ctx, [&]() -> asio::awaitable<void> {
    got = co_await pgq::run_blocking(threads, [&] {
      ran_on = std::this_thread::get_id();
      return 42;
    });
    back_on_ctx = ctx.get_executor().running_in_this_thread();
  });
  CHECK(got == 42);
  CHECK(ran_on != caller);
  CHECK(back_on_ctx);
}

TEST_CASE("run_blocking: void functions, move-only results and the default pool", "[blocking]") {
  asio::io_context ctx;
  std::atomic<int> calls{0};
  std::unique_ptr<std::string> text;
  run(ctx, [&]() -> asio::awaitable<void> {
    co_await pgq::run_blocking([&] { ++calls; });
    text = co_await pgq::run_blocking([] { return std::make_unique<std::string>("made on a pool thread"); });
  });
  CHECK(calls == 1);
  REQUIRE(text != nullptr);
  CHECK(*text == "made on a pool thread");
}

TEST_CASE("run_blocking: an exception thrown by the function reaches the caller", "[blocking]") {
  asio::io_context ctx;
  asio::thread_pool threads(1);
  std::string message;
  run(ctx, [&]() -> asio::awaitable<void> {
    try {
      co_await pgq::run_blocking(threads, []() -> int { throw std::runtime_error("disk on fire"); });
    } catch (const std::runtime_error& e) {
      message = e.what();
    }
  });
  CHECK(message == "disk on fire");
}

// Starts run_blocking(threads, fn) as a coroutine of its own whose
// cancellation slot is `signal`'s; `outcome` gets "value N", "aborted" or
// the error, and `done` is set when it completed.
template <class F>
void spawn_cancellable(asio::any_io_executor ex, asio::thread_pool& threads, F fn, asio::cancellation_signal& signal,
                       std::string& outcome, bool& done) {
  asio::co_spawn(ex, pgq::run_blocking(threads, std::move(fn)),
                 asio::bind_cancellation_slot(signal.slot(), [&outcome, &done](const std::exception_ptr& e, int v) {
                   if (!e) {
                     outcome = "value " + std::to_string(v);
                   } else {
                     try {
                       std::rethrow_exception(e);
                     } catch (const boost::system::system_error& err) {
                       outcome = err.code() == asio::error::operation_aborted ? "aborted" : err.what();
                     } catch (const std::exception& err) {
                       outcome = err.what();
                     }
                   }
                   done = true;
                 }));
}

TEST_CASE("run_blocking: cancelled while queued, the function never runs", "[blocking]") {
  asio::io_context ctx;
  asio::thread_pool threads(1);
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<bool> blocker_started{false};
  std::atomic<bool> second_ran{false};
  asio::cancellation_signal signal;
  std::string outcome;
  bool done = false;
  run(ctx, [&]() -> asio::awaitable<void> {
    // The only thread is taken until `release`.
    asio::co_spawn(co_await asio::this_coro::executor,
                   pgq::run_blocking(threads,
                                     [&] {
                                       blocker_started = true;
                                       released.wait();
                                     }),
                   asio::detached);
    while (!blocker_started) co_await sleep_for(1ms);
    spawn_cancellable(
        co_await asio::this_coro::executor, threads,
        [&] {
          second_ran = true;
          return 1;
        },
        signal, outcome, done);
    co_await sleep_for(20ms);
    signal.emit(asio::cancellation_type::terminal);
    for (int i = 0; i < 1000 && !done; ++i) co_await sleep_for(1ms);
    release.set_value();
  });
  threads.join();
  CHECK(done);
  CHECK(outcome == "aborted");
  CHECK_FALSE(second_ran);
}

TEST_CASE("run_blocking: cancelled while running, the caller still gets the result", "[blocking]") {
  asio::io_context ctx;
  asio::thread_pool threads(1);
  std::atomic<bool> started{false};
  asio::cancellation_signal signal;
  std::string outcome;
  bool done = false;
  run(ctx, [&]() -> asio::awaitable<void> {
    spawn_cancellable(
        co_await asio::this_coro::executor, threads,
        [&] {
          started = true;
          std::this_thread::sleep_for(150ms);
          return 7;
        },
        signal, outcome, done);
    while (!started) co_await sleep_for(1ms);
    signal.emit(asio::cancellation_type::terminal);
    CHECK_FALSE(done);  // not completed by the cancel
    for (int i = 0; i < 2000 && !done; ++i) co_await sleep_for(1ms);
  });
  CHECK(done);
  CHECK(outcome == "value 7");
}

TEST_CASE("run_blocking: many callers on a strand of a multi-threaded io_context", "[blocking]") {
  asio::io_context ctx(4);
  asio::thread_pool threads(3);
  std::atomic<int> sum{0};
  std::atomic<int> finished{0};
  constexpr int callers = 200;
  for (int i = 1; i <= callers; ++i) {
    auto strand = asio::make_strand(ctx);
    asio::co_spawn(
        strand,
        [&, i, strand]() -> asio::awaitable<void> {
          const int v = co_await pgq::run_blocking(threads, [i] { return i; });
          if (strand.running_in_this_thread()) sum += v;
          ++finished;
        },
        asio::detached);
  }
  std::thread helper([&] { ctx.run_for(20s); });
  ctx.run_for(20s);
  helper.join();
  CHECK(finished == callers);
  CHECK(sum == callers * (callers + 1) / 2);
}
