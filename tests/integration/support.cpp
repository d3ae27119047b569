#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <unistd.h>

namespace pgq_test {

std::string dsn() {
  const char* v = std::getenv("PGQ_TEST_DSN");
  if (v == nullptr || *v == '\0') {
    FAIL("PGQ_TEST_DSN is not set: integration tests need a server "
         "(scripts/test starts one; or export PGQ_TEST_DSN=$(scripts/pg start))");
  }
  return v;
}

void run(std::function<asio::awaitable<void>()> body, std::chrono::milliseconds limit) {
  asio::io_context ctx(1);
  std::exception_ptr failure;
  bool done = false;
  asio::co_spawn(ctx, body(), [&](std::exception_ptr e) {
    failure = e;
    done = true;
  });
  ctx.run_for(limit);
  if (!done) FAIL("the test coroutine did not finish within " << limit.count() << " ms");
  if (failure) std::rethrow_exception(failure);
}

asio::awaitable<pgq::connection> connect() {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(dsn());
  co_return conn;
}

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
}

}  // namespace pgq_test
