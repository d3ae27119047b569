#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/this_coro.hpp>

using namespace pgq_test;
namespace asio = boost::asio;

TEST_CASE("a statement seen again runs from the cache", "[cache]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    for (int i = 0; i < 5; ++i) {
      auto r = co_await conn.query("SELECT $1::int4 * 2", i);
      CHECK(r[0].get<int>(0) == 2 * i);
    }
    auto s = conn.stats();
    CHECK(s.cache_misses == 1);
    CHECK(s.cache_hits == 4);
    CHECK(s.statements_prepared == 1);
    // The server agrees: one named statement of ours.
    auto ps = co_await conn.query("SELECT count(*)::int4 FROM pg_prepared_statements WHERE name LIKE 'pgq_%'");
    CHECK(ps[0].get<int>(0) == 2);  // the SELECT above and this one
    // Other parameter types make another statement.
    auto r = co_await conn.query("SELECT $1::int4 * 2", std::int64_t{4});
    CHECK(r[0].get<int>(0) == 8);
    CHECK(conn.stats().cache_misses == 3);
  });
}

TEST_CASE("ALTER TABLE between two runs of a cached statement still gives correct rows", "[cache]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("CREATE TEMP TABLE shape (a int)");
    co_await conn.execute("INSERT INTO shape VALUES (1)");
    auto before = co_await conn.query("SELECT * FROM shape");
    CHECK(before.columns() == 1);
    co_await conn.execute("ALTER TABLE shape ADD COLUMN b text DEFAULT 'new'");
    auto after = co_await conn.query("SELECT * FROM shape");
    REQUIRE(after.columns() == 2);
    CHECK(after[0].get<std::string>("b") == "new");
    CHECK(conn.stats().cache_invalidations == 1);
    // Inside a transaction block the error cannot be retried: it is reported.
    co_await conn.execute("ALTER TABLE shape DROP COLUMN b");
    auto tx = co_await conn.begin();
    try {
      co_await tx.query("SELECT * FROM shape");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "0A000");
    }
    co_await tx.rollback();
    auto again = co_await conn.query("SELECT * FROM shape");
    CHECK(again.columns() == 1);
  });
}

TEST_CASE("DISCARD ALL and DEALLOCATE ALL do not break cached statements", "[cache]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto r1 = co_await conn.query("SELECT $1::text || '!'", std::string("hi"));
    CHECK(r1[0].get<std::string>(0) == "hi!");
    co_await conn.execute("DISCARD ALL");
    auto r2 = co_await conn.query("SELECT $1::text || '!'", std::string("again"));
    CHECK(r2[0].get<std::string>(0) == "again!");
    co_await conn.execute("DEALLOCATE ALL");
    auto r3 = co_await conn.query("SELECT $1::text || '!'", std::string("third"));
    CHECK(r3[0].get<std::string>(0) == "third!");
  });
}

TEST_CASE("the cache evicts the least recently used statement", "[cache]") {
  run([]() -> asio::awaitable<void> {
    pgq::connection conn(co_await asio::this_coro::executor);
    pgq::connect_options opts;
    opts.statement_cache_size = 2;
    co_await conn.connect(dsn(), opts);
    for (int round = 0; round < 3; ++round) {
      for (int k = 1; k <= 3; ++k) {
        auto r = co_await conn.query("SELECT " + std::to_string(k) + " + $1::int4", round);
        CHECK(r[0].get<int>(0) == k + round);
      }
    }
    CHECK(conn.stats().cached_statements == 2);
    CHECK(conn.stats().cache_misses == 9);  // a cycle of 3 through 2 slots always misses
    auto ps = co_await conn.query("SELECT count(*)::int4 FROM pg_prepared_statements");
    CHECK(ps[0].get<int>(0) <= 3);  // two cached plus this one: evicted ones were deallocated
  });
}

TEST_CASE("a statement that fails to prepare is not cached", "[cache]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    for (int i = 0; i < 2; ++i) {
      try {
        co_await conn.query("SELEC $1::int4", i);
        FAIL("no error");
      } catch (const pgq::sql_error& e) {
        CHECK(e.sqlstate() == "42601");
      }
    }
    CHECK(conn.stats().cached_statements == 0);
    auto r = co_await conn.query("SELECT 1");
    CHECK(r[0].get<int>(0) == 1);
  });
}

TEST_CASE("the cache can be turned off", "[cache]") {
  run([]() -> asio::awaitable<void> {
    pgq::connection conn(co_await asio::this_coro::executor);
    pgq::connect_options opts;
    opts.statement_cache_size = 0;
    co_await conn.connect(dsn(), opts);
    for (int i = 0; i < 3; ++i) co_await conn.query("SELECT $1::int4", i);
    CHECK(conn.stats().statements_prepared == 0);
    auto ps = co_await conn.query("SELECT count(*)::int4 FROM pg_prepared_statements");
    CHECK(ps[0].get<int>(0) == 0);
  });
}
