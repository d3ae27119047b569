#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pgq_test {

std::string dsn() {
  const char* v = std::getenv("PGQ_TEST_DSN");
  if (v == nullptr || *v == '\0') {
    FAIL(
        "PGQ_TEST_DSN is not set: integration tests need a server "
        "(scripts/test starts one; or export PGQ_TEST_DSN=$(scripts/pg start))");
  }
  return v;
}

namespace {

using strand_type = asio::strand<asio::io_context::executor_type>;

int test_threads() {
  const char* v = std::getenv("PGQ_TEST_THREADS");
  if (v == nullptr || *v == '\0') return 1;
  const int n = std::atoi(v);
  if (n < 1 || n > 64) FAIL("PGQ_TEST_THREADS=" << v << ": expected a number of threads from 1 to 64");
  return n;
}

}  // namespace

void run(const std::function<asio::awaitable<void>()>& body, std::chrono::milliseconds limit) {
  const int threads = test_threads();
  // The concurrency hint must not promise one thread when there are more.
  asio::io_context ctx(threads);
  std::exception_ptr failure;
  bool done = false;
  auto on_done = [&](std::exception_ptr e) {
    failure = std::move(e);
    done = true;
  };
  if (threads == 1) {
    asio::co_spawn(ctx, body(), on_done);
    ctx.run_for(limit);
  } else {
    asio::co_spawn(asio::make_strand(ctx), body(), on_done);
    std::vector<std::thread> others;
    std::vector<std::exception_ptr> thrown(threads);
    auto run_one = [&](int i) {
      try {
        ctx.run_for(limit);
      } catch (...) {
        thrown[i] = std::current_exception();
      }
      ctx.stop();  // past the limit, or a handler threw: the others stop too
    };
    for (int i = 1; i < threads; ++i) others.emplace_back(run_one, i);
    run_one(0);
    for (auto& t : others) t.join();
    for (auto& e : thrown) {
      if (e) std::rethrow_exception(e);
    }
  }
  if (!done) FAIL("the test coroutine did not finish within " << limit.count() << " ms");
  if (failure) std::rethrow_exception(failure);
}

asio::awaitable<pgq::connection> connect() {
  const asio::any_io_executor ex = co_await asio::this_coro::executor;
  // Several threads run run()'s strand: the connection gets one of its own,
  // as connection's contract asks of a multi-threaded executor.
  const auto* s = ex.target<strand_type>();
  pgq::connection conn(s != nullptr ? asio::any_io_executor(asio::make_strand(s->get_inner_executor())) : ex);
  co_await conn.connect(dsn());
  co_return conn;
}

asio::any_io_executor pool_executor(const asio::any_io_executor& ex) {
  if (const auto* s = ex.target<strand_type>()) return s->get_inner_executor();
  return ex;
}

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
}

namespace {

// "15", "12.22": PostgreSQL's own way of naming a PQserverVersion() number.
std::string version_name(int v) {
  if (v % 10000 == 0) return std::to_string(v / 10000);
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000);
}

bool at_least(int server, int min, const std::string& what) {
  if (server >= min) return true;
  WARN("skipped: " << what << " needs PostgreSQL " << version_name(min) << ", the server is " << version_name(server));
  return false;
}

}  // namespace

int server_version() {
  static const int version = [] {
    int v = 0;
    run([&v]() -> asio::awaitable<void> {
      auto conn = co_await connect();
      v = conn.server_version();
    });
    if (v <= 0) FAIL("the server under test reports no version");
    return v;
  }();
  return version;
}

bool server_version_at_least(const pgq::connection& conn, int min, const std::string& what) {
  return at_least(conn.server_version(), min, what);
}

bool server_version_at_least(int min, const std::string& what) { return at_least(server_version(), min, what); }

asio::awaitable<void> drop_database(pgq::connection& admin, const std::string& name) {
  if (admin.server_version() >= 130000) {
    co_await admin.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    co_return;
  }
  co_await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name);
  // DROP DATABASE waits a few seconds for terminated sessions to go.
  co_await admin.execute("DROP DATABASE IF EXISTS " + name);
}

}  // namespace pgq_test

namespace pgq_test {

std::string run_command(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("could not run: " + command);
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) {
    throw std::runtime_error("command failed (status " + std::to_string(status) + "): " + command);
  }
  return out;
}

std::string scripts_dir() { return PGQ_SOURCE_DIR "/scripts"; }

scoped_server::scoped_server(std::string name, const std::string& extra_args) : name_(std::move(name)) {
  std::string out = run_command(scripts_dir() + "/pg start --name " + name_ + " " + extra_args);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  dsn_ = out;
  if (dsn_.rfind("postgresql://", 0) != 0) {
    throw std::runtime_error("scripts/pg start --name " + name_ + " printed no DSN: " + out);
  }
}

scoped_server::~scoped_server() {
  try {
    run_command(scripts_dir() + "/pg stop --name " + name_);
  } catch (const std::exception&) {
    // Reported on stderr by the script; a destructor must not throw.
  }
}

void scoped_server::restart() { run_command(scripts_dir() + "/pg restart --name " + name_); }

std::string with_setting(const std::string& dsn, const std::string& key, const std::string& value) {
  auto ci = pgq::conninfo::parse(dsn);
  ci.set(key, value);
  return ci.to_string();
}

asio::awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

asio::awaitable<void> check_pool_settled(const pgq::pool& pool, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  pgq::pool_stats s = pool.stats();
  while ((s.in_use != 0 || s.waiting != 0 || s.connecting != 0 || s.size != s.idle) &&
         std::chrono::steady_clock::now() < until) {
    co_await pause(std::chrono::milliseconds(10));
    s = pool.stats();
  }
  INFO("pool: size " << s.size << " idle " << s.idle << " in use " << s.in_use << " connecting " << s.connecting
                     << " waiting " << s.waiting << " created " << s.created << " closed broken " << s.closed_broken
                     << " reset failed " << s.closed_reset_failed);
  CHECK(s.in_use == 0);  // no leaked lease
  CHECK(s.waiting == 0);
  CHECK(s.connecting == 0);
  CHECK(s.size == s.idle);
  const std::uint64_t closed = s.closed_idle + s.closed_lifetime + s.closed_broken + s.closed_health_check +
                               s.closed_reset_failed + s.closed_pool_closed;
  CHECK(s.created == closed + s.size);
}

asio::awaitable<void> check_no_idle_in_transaction(pgq::connection& observer, const std::string& app,
                                                   std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  std::int64_t n = 0;
  while (true) {
    auto r = co_await observer.query(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND state IN ('idle in transaction', 'idle in transaction (aborted)')",
        app);
    n = r[0].get<std::int64_t>(0);
    if (n == 0 || std::chrono::steady_clock::now() >= until) break;
    co_await pause(std::chrono::milliseconds(20));
  }
  INFO("backends of " << app << " left idle in transaction");
  CHECK(n == 0);
}

}  // namespace pgq_test
