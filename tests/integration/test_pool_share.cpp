// Shared pool connections (pool_options::share_depth), pool::wait_ready()
// and pgq::gather(), against the server.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <pgq/gather.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <set>
#include <tuple>

using namespace pgq_test;
using namespace boost::asio::experimental::awaitable_operators;
namespace asio = boost::asio;

namespace {

pgq::pool_options shared_options(std::size_t max_size, const std::string& app) {
  pgq::pool_options o;
  o.conninfo = with_setting(dsn(), "application_name", app);
  o.max_size = max_size;
  o.acquire_timeout = std::chrono::seconds(30);
  return o;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

// Sessions of `app` on the server, and how many of them run pg_sleep now.
asio::awaitable<std::pair<std::int64_t, std::int64_t>> sessions_of(pgq::connection& observer, const std::string& app) {
  auto r = co_await observer.query(
      "SELECT count(*)::int8, count(*) FILTER (WHERE state = 'active' AND query LIKE '%pg_sleep%')::int8 "
      "FROM pg_stat_activity WHERE application_name = $1",
      app);
  co_return std::pair{r[0].get<std::int64_t>(0), r[0].get<std::int64_t>(1)};
}

struct share_outcomes {
  int ok = 0;
  int wrong = 0;
  int failed_as_meant = 0;
  int cancelled = 0;
  int other = 0;
  int done = 0;
  std::set<int> pids;
};

// Task i of the 1,000: every 50th divides by zero, every 100th (from 7) is a
// long sleep cancelled after 30 ms; the others must get their own value back.
asio::awaitable<void> share_task(pgq::pool* pool, int i, share_outcomes* out) {
  auto ex = co_await asio::this_coro::executor;
  try {
    if (i % 50 == 0) {
      co_await pool->query("SELECT 1 / ($1::int4 - $1::int4)", i);
      ++out->wrong;
    } else if (i % 100 == 7) {
      asio::steady_timer t(ex, std::chrono::milliseconds(30));
      auto r = co_await (pool->query("SELECT pg_sleep(30), $1::int4", i) || t.async_wait(asio::use_awaitable));
      if (r.index() == 1) {
        ++out->cancelled;
      } else {
        ++out->wrong;
      }
    } else {
      auto r = co_await pool->query("SELECT $1::int4 * 3, pg_backend_pid()", i);
      out->pids.insert(r[0].get<int>(1));
      if (r.size() == 1 && r[0].get<int>(0) == 3 * i) {
        ++out->ok;
      } else {
        ++out->wrong;
      }
    }
  } catch (const pgq::sql_error& e) {
    if (i % 50 == 0 && e.sqlstate() == "22012") {
      ++out->failed_as_meant;
    } else {
      ++out->other;
      UNSCOPED_INFO("task " << i << ": " << e.what());
    }
  }
  ++out->done;
}

}  // namespace

TEST_CASE("1,000 tasks share a pool of 2 connections: right, isolated results, at most 2 backends", "[pool][share]") {
  run(
      []() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        const std::string app = unique_name("pgq_share");
        pgq::pool pool(pool_executor(ex), shared_options(2, app));
        auto observer = co_await connect();
        share_outcomes out;
        for (int i = 0; i < 1000; ++i) asio::co_spawn(ex, share_task(&pool, i, &out), asio::detached);
        std::int64_t most_sessions = 0;
        std::size_t deepest = 0;
        while (out.done < 1000) {
          const auto [sessions, sleeping] = co_await sessions_of(observer, app);
          most_sessions = std::max(most_sessions, sessions);
          deepest = std::max(deepest, pool.stats().shared_in_flight);
          co_await sleep_for(std::chrono::milliseconds(3));
        }
        CHECK(out.ok == 1000 - 20 - 10);
        CHECK(out.failed_as_meant == 20);
        CHECK(out.cancelled == 10);
        CHECK(out.wrong == 0);
        CHECK(out.other == 0);
        CHECK(out.pids.size() <= 2);
        CHECK(most_sessions <= 2);
        CHECK(deepest > 2);  // statements really shared a connection
        const auto s = pool.stats();
        CHECK(s.created <= 2);
        CHECK(s.closed_broken == 0);
        CHECK(s.shared_acquires >= 1000 - 10);
        CHECK(s.timeouts == 0);
        co_await check_pool_settled(pool);
        // The cancelled 30 s sleeps were cancelled on the server, not left to run.
        const auto [sessions, sleeping] = co_await sessions_of(observer, app);
        CHECK(sessions <= 2);
        CHECK(sleeping == 0);
        CHECK(pool.stats().shared_in_flight == 0);
        CHECK(pool.stats().shared == 0);
      },
      std::chrono::seconds(120));
}

TEST_CASE("a cancelled shared statement leaves the statements pipelined with it alone", "[pool][share]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto o = shared_options(1, unique_name("pgq_share_cancel"));
    o.share_stall = std::chrono::milliseconds(0);  // join whatever runs
    pgq::pool pool(pool_executor(ex), o);
    co_await pool.wait_ready();
    int done = 0;
    int right = 0;
    std::optional<pgq::sql_error> cancelled;
    auto slow = [&]() -> asio::awaitable<void> {
      cancelled = co_await error_of(with_timeout(pool.query("SELECT pg_sleep(30)"), std::chrono::milliseconds(50)));
      ++done;
    };
    auto quick = [&](int i) -> asio::awaitable<void> {
      auto r = co_await pool.query("SELECT $1::int4", i);
      if (r[0].get<int>(0) == i) ++right;
      ++done;
    };
    const auto start = std::chrono::steady_clock::now();
    asio::co_spawn(ex, slow(), asio::detached);
    co_await sleep_for(std::chrono::milliseconds(10));  // the sleep runs first
    for (int i = 0; i < 5; ++i) asio::co_spawn(ex, quick(i), asio::detached);
    while (done < 6) co_await sleep_for(std::chrono::milliseconds(2));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    REQUIRE(cancelled.has_value());
    CHECK(cancelled->code() == pgq::errc::timeout);
    CHECK(right == 5);
    CHECK(pool.stats().created == 1);
    co_await check_pool_settled(pool);
  });
}

TEST_CASE("pool statements that may change the session or a transaction never share", "[pool][share]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto o = shared_options(2, unique_name("pgq_share_tx"));
    pgq::pool pool(pool_executor(ex), o);
    {
      // A transaction holds its connection: shared statements take the other one.
      auto tx = co_await pool.begin();
      const auto tx_pid = co_await tx.query("SELECT pg_backend_pid()");
      std::set<int> pids;
      for (int i = 0; i < 20; ++i) {
        auto r = co_await pool.query("SELECT pg_backend_pid()");
        pids.insert(r[0].get<int>(0));
      }
      CHECK(pids.size() == 1);
      CHECK(pids.count(tx_pid[0].get<int>(0)) == 0);
      co_await tx.rollback();
    }
    // SET and BEGIN through pool.query() go the exclusive way (no shared use).
    const auto before = pool.stats().shared_acquires;
    co_await pool.execute("SET application_name = 'pgq_share_tx_set'");
    co_await pool.execute("RESET application_name");
    try {
      co_await pool.execute("BEGIN");
    } catch (const pgq::sql_error&) {
    }
    CHECK(pool.stats().shared_acquires == before);
    co_await pool.query("SELECT 1");
    CHECK(pool.stats().shared_acquires == before + 1);
    co_await check_pool_settled(pool);
    CHECK(pool.stats().in_use == 0);
  });
}

TEST_CASE("pool run_batch shares a plain batch and runs an atomic one in a transaction of its own", "[pool][share]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool pool(pool_executor(ex), shared_options(2, unique_name("pgq_share_batch")));
    const std::string table = unique_name("share_batch");
    const std::string create = "CREATE TABLE " + table + " (i int4 PRIMARY KEY)";
    const std::string insert = "INSERT INTO " + table + " VALUES ($1::int4)";
    const std::string count = "SELECT count(*)::int8 FROM " + table;
    const std::string drop = "DROP TABLE " + table;
    co_await pool.execute(create);
    pgq::batch b;
    b.add(insert, 1);
    b.add("SELECT 1 / 0");
    b.add(insert, 2);
    const auto shared_before = pool.stats().shared_acquires;
    auto plain = co_await error_of(pool.run_batch(b));
    REQUIRE(plain.has_value());
    CHECK(plain->sqlstate() == "22012");
    CHECK(pool.stats().shared_acquires == shared_before + 1);
    auto atomic = co_await error_of(pool.run_batch(b, true));
    REQUIRE(atomic.has_value());
    CHECK(pool.stats().shared_acquires == shared_before + 1);  // atomic: exclusive
    auto rows = co_await pool.query(count);
    CHECK(rows[0].get<std::int64_t>(0) == 2);  // the plain batch's two inserts; none of the atomic one
    pgq::batch ok;
    ok.add("SELECT 1");
    ok.add("SELECT 2");
    auto results = co_await pool.run_batch(ok);
    REQUIRE(results.size() == 2);
    CHECK(results[1][0].get<int>(0) == 2);
    co_await pool.execute(drop);
    co_await check_pool_settled(pool);
  });
}

TEST_CASE("pool wait_ready opens min_size connections before traffic", "[pool][share]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    const std::string app = unique_name("pgq_ready");
    auto o = shared_options(4, app);
    o.min_size = 3;
    pgq::pool pool(pool_executor(ex), o);
    co_await pool.wait_ready();
    const auto s = pool.stats();
    CHECK(s.size >= 3);
    CHECK(s.created >= 3);
    auto observer = co_await connect();
    const auto [sessions, sleeping] = co_await sessions_of(observer, app);
    CHECK(sessions >= 3);

    pgq::pool lazy(pool_executor(ex), shared_options(2, app));  // min_size 0: one connection, proved
    co_await lazy.wait_ready();
    // Open and kept (its return to the idle list may still be on its way
    // on another thread).
    CHECK(lazy.stats().size == 1);
    CHECK(lazy.stats().created == 1);
  });
}

TEST_CASE("pool wait_ready throws pool_timeout with the connection error when the server is down", "[pool][share]") {
  run([]() -> asio::awaitable<void> {
    pgq::pool_options o;
    o.conninfo = "host=127.0.0.1 port=1 user=x dbname=x";
    o.min_size = 2;
    o.max_size = 2;
    o.acquire_timeout = std::chrono::milliseconds(300);
    o.backoff_initial = std::chrono::milliseconds(20);
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), o);
    const auto start = std::chrono::steady_clock::now();
    auto e = co_await error_of(pool.wait_ready());
    REQUIRE(e.has_value());
    CHECK(e->code() == pgq::errc::pool_timeout);
    CHECK_THAT(e->what(), Catch::Contains("refused"));
    CHECK_THAT(e->what(), Catch::Contains("0 of its 2"));
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(290));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  });
}

TEST_CASE("gather returns the results in order and rethrows the first failure after all ended", "[gather]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool pool(pool_executor(ex), shared_options(2, unique_name("pgq_gather")));
    auto [a, b, n] = co_await pgq::gather(pool.query("SELECT $1::int4", 1), pool.query("SELECT 'two'::text"),
                                          pool.execute("SELECT generate_series(1, 3)"));
    CHECK(a[0].get<int>(0) == 1);
    CHECK(b[0].get<std::string>(0) == "two");
    CHECK(n == 3);

    const std::string table = unique_name("gather_all");
    const std::string create = "CREATE TABLE " + table + " (i int4)";
    const std::string insert = "INSERT INTO " + table + " SELECT 1 FROM pg_sleep(0.2)";
    const std::string count = "SELECT count(*)::int8 FROM " + table;
    const std::string drop = "DROP TABLE " + table;
    co_await pool.execute(create);
    auto e = co_await error_of(pgq::gather(pool.query("SELECT 1 / 0"), pool.execute(insert)));
    REQUIRE(e.has_value());
    CHECK(e->sqlstate() == "22012");
    auto rows = co_await pool.query(count);
    CHECK(rows[0].get<std::int64_t>(0) == 1);  // the slower one was waited for, not cancelled
    co_await pool.execute(drop);
  });
}

TEST_CASE("gather_or_cancel cancels the rest on the first failure, on the server too", "[gather]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    const std::string app = unique_name("pgq_gather_cancel");
    auto o = shared_options(3, app);
    o.min_size = 3;  // one idle connection each: nothing waits behind a sleep
    pgq::pool pool(pool_executor(ex), o);
    co_await pool.wait_ready();
    auto observer = co_await connect();
    const auto start = std::chrono::steady_clock::now();
    auto fails_later = [&]() -> asio::awaitable<pgq::result> {
      co_await sleep_for(std::chrono::milliseconds(100));  // the sleeps are running by then
      co_return co_await pool.query("SELECT 1 / 0");
    };
    auto e = co_await error_of(
        pgq::gather_or_cancel(pool.query("SELECT pg_sleep(20)"), fails_later(), pool.query("SELECT pg_sleep(20)")));
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(e.has_value());
    CHECK(e->sqlstate() == "22012");
    CHECK(took < std::chrono::seconds(5));
    // The sleeps ended on the server, early: no session of ours still sleeps.
    std::int64_t sleeping = -1;
    for (int i = 0; i < 100 && sleeping != 0; ++i) {
      sleeping = (co_await sessions_of(observer, app)).second;
      if (sleeping != 0) co_await sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(sleeping == 0);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    co_await check_pool_settled(pool);
  });
}
