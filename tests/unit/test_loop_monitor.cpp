#include <pgq/loop_monitor.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

// A callback that blocks the loop, as a synchronous call in a handler does.
// Not inlined and exported (the test binary links with -rdynamic), so
// that the sampled stack can name it.
__attribute__((noinline)) void pgq_test_blocking_handler(std::chrono::milliseconds how_long) {
  const auto until = std::chrono::steady_clock::now() + how_long;
  while (std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
}

TEST_CASE("loop_monitor: a blocked loop is reported with the stack that blocked it", "[loop_monitor]") {
  asio::io_context ctx(1);
  std::vector<pgq::loop_stall> stalls;
  pgq::loop_monitor_options o;
  o.period = 10ms;
  o.threshold = 100ms;
  pgq::loop_monitor monitor(ctx.get_executor(), o, [&](const pgq::loop_stall& s) { stalls.push_back(s); });
  asio::steady_timer block_at(ctx, 50ms);
  block_at.async_wait([](const boost::system::error_code&) { pgq_test_blocking_handler(600ms); });
  asio::steady_timer end(ctx, 900ms);
  end.async_wait([&](const boost::system::error_code&) { monitor.stop(); });
  ctx.run_for(5s);

  REQUIRE_FALSE(stalls.empty());
  const auto longest =
      std::max_element(stalls.begin(), stalls.end(), [](const auto& a, const auto& b) { return a.late < b.late; });
  CHECK(longest->late >= 400ms);
  INFO("stack of the longest stall:\n"
       << [&] {
            std::string all;
            for (const auto& f : longest->stack) all += "  " + f + "\n";
            return all;
          }());
  REQUIRE_FALSE(longest->stack.empty());
  CHECK(std::any_of(longest->stack.begin(), longest->stack.end(),
                    [](const std::string& f) { return f.find("pgq_test_blocking_handler") != std::string::npos; }));
  const auto st = monitor.statistics();
  CHECK(st.stalls == stalls.size());
  CHECK(st.ticks > st.stalls);
  CHECK(st.max_late == longest->late);
  CHECK(ctx.stopped());  // stop() let run() return: nothing of the monitor is left
}

TEST_CASE("loop_monitor: a loop that is never held up reports no stall", "[loop_monitor]") {
  asio::io_context ctx(1);
  int stalls = 0;
  pgq::loop_monitor_options o;
  o.period = 5ms;
  o.threshold = 1000ms;  // far above any scheduling hiccup of a loaded test machine
  pgq::loop_monitor monitor(ctx.get_executor(), o, [&](const pgq::loop_stall&) { ++stalls; });
  asio::steady_timer end(ctx, 200ms);
  end.async_wait([&](const boost::system::error_code&) { monitor.stop(); });
  ctx.run_for(5s);
  CHECK(stalls == 0);
  CHECK(monitor.statistics().ticks >= 10);
  CHECK(ctx.stopped());
}

TEST_CASE("loop_monitor: without stack capture, a stall is still reported", "[loop_monitor]") {
  asio::io_context ctx(1);
  std::vector<pgq::loop_stall> stalls;
  pgq::loop_monitor_options o;
  o.period = 10ms;
  o.threshold = 50ms;
  o.capture_stack = false;
  pgq::loop_monitor monitor(ctx.get_executor(), o, [&](const pgq::loop_stall& s) { stalls.push_back(s); });
  asio::post(ctx, [] { pgq_test_blocking_handler(300ms); });
  asio::steady_timer end(ctx, 500ms);
  end.async_wait([&](const boost::system::error_code&) { monitor.stop(); });
  ctx.run_for(5s);
  REQUIRE_FALSE(stalls.empty());
  CHECK(stalls.front().stack.empty());
}

TEST_CASE("loop_monitor: destroyed from another thread while the loop runs", "[loop_monitor]") {
  asio::io_context ctx(2);
  auto work = asio::make_work_guard(ctx);
  std::thread a([&] { ctx.run(); });
  std::thread b([&] { ctx.run(); });
  for (int i = 0; i < 20; ++i) {
    pgq::loop_monitor_options o;
    o.period = 1ms;
    o.threshold = 50ms;
    pgq::loop_monitor m(ctx.get_executor(), o, [](const pgq::loop_stall&) {});
    std::this_thread::sleep_for(3ms);
  }  // each destroyed here, on this thread, while a or b may run its timer
  work.reset();
  a.join();
  b.join();
  CHECK(ctx.stopped());
}

TEST_CASE("loop_monitor: bad options are refused", "[loop_monitor]") {
  asio::io_context ctx(1);
  pgq::loop_monitor_options o;
  o.period = 0ms;
  CHECK_THROWS_AS(pgq::loop_monitor(ctx.get_executor(), o, nullptr), std::invalid_argument);
}
