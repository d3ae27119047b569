#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <random>
#include <thread>

using namespace pgq_test;
using namespace boost::asio::experimental::awaitable_operators;
namespace asio = boost::asio;

namespace {

pgq::pool_options options(std::size_t max_size) {
  pgq::pool_options o;
  o.conninfo = dsn();
  o.max_size = max_size;
  o.acquire_timeout = std::chrono::seconds(20);
  return o;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

// Waits until `done` reaches `n`, polling.
asio::awaitable<void> wait_count(const int& done, int n) {
  while (done < n) co_await sleep_for(std::chrono::milliseconds(5));
}

// Backends of this database other than ours, by state.
asio::awaitable<pgq::result> backends(pgq::connection& observer, const std::string& app) {
  co_return co_await observer.query(
      "SELECT count(*)::int8 AS n, count(*) FILTER (WHERE state = 'idle in transaction')::int8 AS idle_tx "
      "FROM pg_stat_activity WHERE application_name = $1",
      app);
}

struct task_outcomes {
  int ok = 0;
  int wrong = 0;
  int cancelled = 0;
  int timed_out = 0;
  int other = 0;
  int done = 0;
};

// One of the 1,000 tasks: a tenth are cancelled at a random point, a tenth
// time out (the statement outlives its timeout), the rest must be right.
asio::awaitable<void> pool_task(pgq::pool* pool, int i, unsigned seed, task_outcomes* out) {
  std::mt19937 rng(seed);
  auto ex = co_await asio::this_coro::executor;
  try {
    if (i % 10 == 0) {
      asio::steady_timer t(ex, std::chrono::milliseconds(rng() % 40));
      auto r = co_await (pool->query("SELECT pg_sleep(0.02), $1::int4", i) || t.async_wait(asio::use_awaitable));
      if (r.index() == 1) {
        ++out->cancelled;
      } else if (std::get<0>(r)[0].get<int>(1) == i) {
        ++out->ok;
      } else {
        ++out->wrong;
      }
    } else if (i % 10 == 1) {
      asio::steady_timer t(ex, std::chrono::milliseconds(5));
      auto r = co_await (pool->query("SELECT pg_sleep(1), $1::int4", i) || t.async_wait(asio::use_awaitable));
      if (r.index() == 1) {
        ++out->timed_out;
      } else {
        ++out->wrong;  // a 1 s sleep cannot beat a 5 ms timer
      }
    } else if (i % 10 == 2) {
      auto tx = co_await pool->begin();
      co_await tx.execute("INSERT INTO pool_tasks VALUES ($1::int4)", i);
      if (i % 20 == 2) {
        co_await tx.commit();
      }  // else: dropped without commit, must roll back
      ++out->ok;
    } else {
      auto r = co_await pool->query("SELECT $1::int4 * 3 AS v", i);
      if (r[0].get<int>("v") == 3 * i) {
        ++out->ok;
      } else {
        ++out->wrong;
      }
    }
  } catch (const pgq::sql_error& e) {
    if (e.code() == pgq::errc::cancelled) {
      ++out->cancelled;
    } else {
      ++out->other;
      UNSCOPED_INFO("task " << i << ": " << e.what());
    }
  }
  ++out->done;
}

}  // namespace

TEST_CASE("pool query and execute", "[pool]") {
  run([]() -> asio::awaitable<void> {
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), options(2));
    auto r = co_await pool.query("SELECT $1::int4 + 1", 1);
    CHECK(r[0].get<int>(0) == 2);
    const auto affected = co_await pool.execute("SELECT generate_series(1, 5)");
    CHECK(affected == 5);
    const auto s = pool.stats();
    CHECK(s.acquires == 2);
    CHECK(s.created == 1);  // the second query reused the first connection
    CHECK(s.in_use == 0);
    CHECK(s.idle == 1);
  });
}

TEST_CASE("the pool never opens more than max_size and serves waiters in order", "[pool]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool pool(pool_executor(ex), options(3));
    std::vector<int> order;
    int done = 0;
    auto hold = [&](int i) -> asio::awaitable<void> {
      auto l = co_await pool.acquire();
      order.push_back(i);
      co_await l->query("SELECT pg_sleep(0.05)");
      ++done;
    };
    for (int i = 0; i < 12; ++i) {
      asio::co_spawn(ex, hold(i), asio::detached);
    }
    int peak = 0;
    while (done < 12) {
      const auto s = pool.stats();
      peak = std::max(peak, static_cast<int>(s.size + s.connecting));
      co_await sleep_for(std::chrono::milliseconds(2));
    }
    CHECK(peak <= 3);
    CHECK(pool.stats().created == 3);
    // The first three got the new connections in some order; the others were
    // served first come, first served.
    REQUIRE(order.size() == 12);
    for (int i = 3; i < 12; ++i) CHECK(order[static_cast<std::size_t>(i)] == i);
  });
}

TEST_CASE("acquire times out with pool_timeout and a clear message", "[pool]") {
  run([]() -> asio::awaitable<void> {
    auto o = options(1);
    o.acquire_timeout = std::chrono::milliseconds(100);
    o.min_size = 1;
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), o);
    // The one connection opens first: a connect slower than 100 ms (a loaded
    // machine, sanitizers) must not time out the acquire that should succeed.
    const auto warm_until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (pool.stats().idle < 1 && std::chrono::steady_clock::now() < warm_until) {
      co_await sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(pool.stats().idle == 1);
    auto held = co_await pool.acquire();
    const auto start = std::chrono::steady_clock::now();
    try {
      co_await pool.acquire();
      FAIL("no timeout");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::pool_timeout);
      CHECK_THAT(e.what(), Catch::Contains("100 ms"));
    }
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(90));
    CHECK(pool.stats().timeouts == 1);
    CHECK(pool.stats().waiting == 0);
  });
}

TEST_CASE("a down server gives pool_timeout naming the connection error, with backoff", "[pool]") {
  run([]() -> asio::awaitable<void> {
    pgq::pool_options o;
    o.conninfo = "host=127.0.0.1 port=1 user=x dbname=x";
    o.max_size = 2;
    o.acquire_timeout = std::chrono::milliseconds(700);
    o.backoff_initial = std::chrono::milliseconds(50);
    o.backoff_max = std::chrono::milliseconds(200);
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), o);
    try {
      co_await pool.acquire();
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::pool_timeout);
      CHECK_THAT(e.what(), Catch::Contains("refused"));
    }
    const auto s = pool.stats();
    // 50+100+200+200... ms apart: a handful of attempts in 700 ms, not hundreds.
    CHECK(s.connect_failures >= 2);
    CHECK(s.connect_failures <= 8);
  });
}

TEST_CASE("cancelling a waiter removes it and leaks nothing", "[pool][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool pool(pool_executor(ex), options(1));
    {
      auto held = co_await pool.acquire();
      asio::steady_timer t(ex, std::chrono::milliseconds(50));
      auto r = co_await (pool.acquire() || t.async_wait(asio::use_awaitable));
      CHECK(r.index() == 1);
      CHECK(pool.stats().waiting == 0);
      CHECK(pool.stats().cancelled_waits == 1);
    }
    co_await sleep_for(std::chrono::milliseconds(20));
    auto again = co_await pool.acquire();  // the single connection came back
    CHECK(again);
    CHECK(pool.stats().created == 1);
  });
}

TEST_CASE("a lease dropped mid-query is cleaned before reuse", "[pool][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool pool(pool_executor(ex), options(1));
    asio::steady_timer t(ex, std::chrono::milliseconds(100));
    auto r = co_await (pool.query("SELECT pg_sleep(10)") || t.async_wait(asio::use_awaitable));
    CHECK(r.index() == 1);
    const auto start = std::chrono::steady_clock::now();
    auto again = co_await pool.query("SELECT 'clean'");
    CHECK(again[0].get<std::string>(0) == "clean");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
    CHECK(pool.stats().created == 1);  // cancelled on the server, connection kept
    CHECK(pool.stats().resets >= 1);
  });
}

TEST_CASE("a broken connection is replaced", "[pool]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool pool(pool_executor(ex), options(1));
    auto observer = co_await connect();
    {
      auto l = co_await pool.acquire();
      const int pid = l->backend_pid();
      co_await observer.query("SELECT pg_terminate_backend($1::int4)", pid);
      try {
        co_await l->query("SELECT 1");
        FAIL("no error");
      } catch (const pgq::sql_error& e) {
        CHECK(pgq::is_fatal(e.code()));
      }
    }
    co_await sleep_for(std::chrono::milliseconds(20));
    auto r = co_await pool.query("SELECT 1");
    CHECK(r[0].get<int>(0) == 1);
    CHECK(pool.stats().closed_broken == 1);
    CHECK(pool.stats().created == 2);
  });
}

TEST_CASE("on_connect runs on each new connection", "[pool]") {
  run([]() -> asio::awaitable<void> {
    auto o = options(2);
    o.on_connect = [](pgq::connection& c) -> asio::awaitable<void> {
      co_await c.execute("SET application_name = 'pgq_hooked'");
    };
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), o);
    auto r = co_await pool.query("SELECT current_setting('application_name')");
    CHECK(r[0].get<std::string>(0) == "pgq_hooked");
  });
}

TEST_CASE("1,000 tasks over a pool of 8, with cancellations and timeouts", "[pool][stress]") {
  run(
      []() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        auto setup = co_await connect();
        co_await setup.execute("DROP TABLE IF EXISTS pool_tasks");
        co_await setup.execute("CREATE TABLE pool_tasks (i int)");
        const std::string app = unique_name("pgq_pool");
        auto o = options(8);
        o.conninfo += (o.conninfo.find('?') == std::string::npos ? "?" : "&") + std::string("application_name=") + app;
        pgq::pool pool(pool_executor(ex), o);
        task_outcomes out;
        constexpr int n = 1000;
        for (int i = 0; i < n; ++i) {
          asio::co_spawn(ex, pool_task(&pool, i, static_cast<unsigned>(i) * 7919u, &out), asio::detached);
        }
        int peak_backends = 0;
        while (out.done < n) {
          auto b = co_await backends(setup, app);
          peak_backends = std::max(peak_backends, static_cast<int>(b[0].get<std::int64_t>(0)));
          co_await sleep_for(std::chrono::milliseconds(20));
        }
        CHECK(out.wrong == 0);
        CHECK(out.other == 0);
        CHECK(out.ok + out.cancelled + out.timed_out == n);
        CHECK(out.timed_out == n / 10);
        CHECK(out.cancelled > 0);
        CHECK(peak_backends <= 8);
        co_await sleep_for(std::chrono::milliseconds(200));  // let the last returns be cleaned
        auto b = co_await backends(setup, app);
        CHECK(b[0].get<std::int64_t>(0) <= 8);
        CHECK(b[0].get<std::int64_t>("idle_tx") == 0);
        // Committed inserts stay, dropped transactions rolled back.
        auto rows = co_await setup.query("SELECT count(*)::int4 FROM pool_tasks");
        CHECK(rows[0].get<int>(0) == n / 20);
        const auto s = pool.stats();
        INFO("acquires " << s.acquires << " created " << s.created << " timeouts " << s.timeouts << " cancelled waits "
                         << s.cancelled_waits << " resets " << s.resets << " closed broken " << s.closed_broken
                         << " reset failed " << s.closed_reset_failed);
        CHECK(s.in_use == 0);
        CHECK(s.waiting == 0);
        CHECK(s.size <= 8);
        CHECK(s.acquires + s.cancelled_waits + s.timeouts == static_cast<std::uint64_t>(n));
        CHECK(s.timeouts == 0);
        CHECK(s.created - (s.closed_broken + s.closed_reset_failed + s.closed_health_check + s.closed_idle +
                           s.closed_lifetime) ==
              s.size);
        WARN("pool stats after 1,000 tasks: acquires "
             << s.acquires << ", created " << s.created << ", resets " << s.resets << ", cancelled waits "
             << s.cancelled_waits << ", closed after failed reset " << s.closed_reset_failed << ", mean wait "
             << (s.acquires ? s.acquire_wait_total.count() / 1000 / static_cast<long long>(s.acquires) : 0) << " us");
        co_await setup.execute("DROP TABLE pool_tasks");
      },
      std::chrono::seconds(120));
}

TEST_CASE("killing every backend mid-run: in-flight queries fail clearly, the pool recovers", "[pool][stress]") {
  run(
      []() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        const std::string app = unique_name("pgq_kill");
        auto o = options(4);
        o.conninfo += (o.conninfo.find('?') == std::string::npos ? "?" : "&") + std::string("application_name=") + app;
        pgq::pool pool(pool_executor(ex), o);
        auto killer = co_await connect();
        int failed_fatal = 0;
        int failed_other = 0;
        int ok = 0;
        int done = 0;
        auto task = [&](int i) -> asio::awaitable<void> {
          try {
            auto r = co_await pool.query("SELECT pg_sleep(0.3), $1::int4", i);
            if (r[0].get<int>(1) == i) ++ok;
          } catch (const pgq::sql_error& e) {
            if (pgq::is_fatal(e.code())) {
              ++failed_fatal;
            } else {
              ++failed_other;
              UNSCOPED_INFO(e.what());
            }
          }
          ++done;
        };
        for (int i = 0; i < 8; ++i) asio::co_spawn(ex, task(i), asio::detached);
        co_await sleep_for(std::chrono::milliseconds(150));
        co_await killer.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                              app);
        co_await wait_count(done, 8);
        CHECK(failed_fatal >= 1);
        CHECK(failed_other == 0);
        CHECK(ok + failed_fatal == 8);
        // Later queries succeed on fresh connections.
        for (int i = 0; i < 10; ++i) {
          auto r = co_await pool.query("SELECT $1::int4", i);
          CHECK(r[0].get<int>(0) == i);
        }
        CHECK(pool.stats().closed_broken >= 1);
      },
      std::chrono::seconds(60));
}

TEST_CASE("a pool used from a multi-threaded io_context", "[pool][threads]") {
  asio::thread_pool threads(4);
  pgq::pool pool(threads.get_executor(), options(6));
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::atomic<int> done{0};
  constexpr int n = 400;
  for (int i = 0; i < n; ++i) {
    asio::co_spawn(
        threads,
        [&pool, &ok, &failed, &done, i]() -> asio::awaitable<void> {
          try {
            if (i % 4 == 0) {
              auto tx = co_await pool.begin();
              auto r = co_await tx.query("SELECT $1::int4", i);
              co_await tx.commit();
              if (r[0].get<int>(0) == i) ++ok;
            } else {
              auto r = co_await pool.query("SELECT $1::int4 + 1", i);
              if (r[0].get<int>(0) == i + 1) ++ok;
            }
          } catch (const std::exception& e) {
            ++failed;
          }
          ++done;
        },
        asio::detached);
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (done < n && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(done == n);
  CHECK(ok == n);
  CHECK(failed == 0);
  const auto s = pool.stats();
  CHECK(s.acquires == static_cast<std::uint64_t>(n));
  CHECK(s.size <= 6);
  CHECK(s.in_use == 0);
  threads.stop();
  threads.join();
}

TEST_CASE("pool close waits for leases, then closes everything", "[pool]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool pool(pool_executor(ex), options(2));
    int done = 0;
    bool leased = false;
    auto holder = [&]() -> asio::awaitable<void> {
      auto l = co_await pool.acquire();
      leased = true;
      co_await sleep_for(std::chrono::milliseconds(100));
      ++done;
    };
    asio::co_spawn(ex, holder(), asio::detached);
    // close() must find the lease out (a connect can take longer than any
    // fixed pause on a loaded machine or under TSan).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!leased && std::chrono::steady_clock::now() < until) co_await sleep_for(std::chrono::milliseconds(5));
    REQUIRE(leased);
    co_await pool.close(std::chrono::seconds(5));
    CHECK(done == 1);
    CHECK(pool.stats().size == 0);
    try {
      co_await pool.acquire();
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::pool_closed);
    }
  });
}

TEST_CASE("idle connections close after idle_timeout while other leases come and go", "[pool]") {
  // The pool's timer is only re-armed for earlier deadlines: this checks that
  // a deadline pushed later by each release still closes the idle connection.
  run([]() -> asio::awaitable<void> {
    auto o = options(2);
    o.idle_timeout = std::chrono::milliseconds(150);
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), o);
    {
      auto a = co_await pool.acquire();
      auto b = co_await pool.acquire();
    }
    CHECK(pool.stats().size == 2);
    for (int i = 0; i < 10; ++i) {  // one connection kept busy for 200 ms
      co_await pool.execute("SELECT 1");
      co_await sleep_for(std::chrono::milliseconds(20));
    }
    for (int i = 0; i < 100 && pool.stats().size > 0; ++i) co_await sleep_for(std::chrono::milliseconds(10));
    CHECK(pool.stats().size == 0);
    CHECK(pool.stats().closed_idle == 2);
  });
}

TEST_CASE("a closed pool leaves nothing that keeps the io_context running", "[pool]") {
  // The pool's timer (idle timeouts, health checks) must not outlive close().
  asio::io_context ctx(1);
  bool done = false;
  std::exception_ptr failure;
  pgq::pool pool(ctx.get_executor(), options(3));  // outlives the run, as in a program's main()
  auto body = [&]() -> asio::awaitable<void> {
    {
      auto a = co_await pool.acquire();
      auto b = co_await pool.acquire();
    }
    co_await pool.execute("SELECT 1");
    co_await pool.close();
  };
  asio::co_spawn(ctx, body(), [&](std::exception_ptr e) {
    failure = std::move(e);
    done = true;
  });
  const auto start = std::chrono::steady_clock::now();
  ctx.run_for(std::chrono::seconds(20));
  const auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(done);
  if (failure) std::rethrow_exception(failure);
  CHECK(ctx.stopped());
  CHECK(took < std::chrono::seconds(5));
}

TEST_CASE("a pool without a strand per connection, on one thread", "[pool]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto o = options(2);
    o.strand_per_connection = false;
    pgq::pool pool(ex, o);
    task_outcomes out;
    constexpr int n = 100;
    for (int i = 0; i < n; ++i) {
      asio::co_spawn(ex, pool_task(&pool, i * 10 + 3, static_cast<unsigned>(i), &out), asio::detached);
    }
    co_await wait_count(out.done, n);
    CHECK(out.ok == n);
    CHECK(out.wrong == 0);
    CHECK(out.other == 0);
    CHECK(pool.stats().created <= 2);
  });
}
