#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/this_coro.hpp>

using namespace pgq_test;
namespace asio = boost::asio;

TEST_CASE("a batch runs its statements in one round trip and returns results in order", "[batch]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    pgq::batch b;
    b.add("CREATE TEMP TABLE items (id int PRIMARY KEY, name text)");
    for (int i = 1; i <= 50; ++i) b.add("INSERT INTO items VALUES ($1, $2)", i, "item " + std::to_string(i));
    b.add("SELECT count(*)::int4 FROM items");
    b.add("SELECT name FROM items WHERE id = $1", 42);
    auto results = co_await conn.run_batch(b);
    REQUIRE(results.size() == 53);
    CHECK(results[1].rows_affected() == 1);
    CHECK(results[51][0].get<int>(0) == 50);
    CHECK(results[52][0].get<std::string>(0) == "item 42");
    const pgq::batch nothing;
    auto empty = co_await conn.run_batch(nothing);
    CHECK(empty.empty());
  });
}

TEST_CASE("a failing statement in a batch: reported with its position, and the others took effect", "[batch]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY)");
    pgq::batch b;
    b.add("INSERT INTO t VALUES (1)").add("INSERT INTO t VALUES (1)").add("INSERT INTO t VALUES (2)");
    try {
      co_await conn.run_batch(b);
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "23505");
      CHECK_THAT(e.what(), Catch::Contains("statement 2 of 3"));
    }
    auto r = co_await conn.query("SELECT count(*)::int4 FROM t");
    CHECK(r[0].get<int>(0) == 2);
  });
}

TEST_CASE("an atomic batch is all or nothing", "[batch]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY)");
    pgq::batch bad;
    bad.add("INSERT INTO t VALUES (1)").add("INSERT INTO t VALUES (1)").add("INSERT INTO t VALUES (2)");
    try {
      co_await conn.run_batch(bad, true);
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "23505");
    }
    auto none = co_await conn.query("SELECT count(*)::int4 FROM t");
    CHECK(none[0].get<int>(0) == 0);
    CHECK(conn.transaction_status() == pgq::tx_status::idle);
    pgq::batch good;
    good.add("INSERT INTO t VALUES (1)").add("INSERT INTO t VALUES (2)");
    auto results = co_await conn.run_batch(good, true);
    CHECK(results.size() == 2);
    auto two = co_await conn.query("SELECT count(*)::int4 FROM t");
    CHECK(two[0].get<int>(0) == 2);
    // Inside an open transaction the batch joins it instead of nesting.
    auto tx = co_await conn.begin();
    pgq::batch more;
    more.add("INSERT INTO t VALUES (3)");
    co_await conn.run_batch(more, true);
    co_await tx.rollback();
    auto still_two = co_await conn.query("SELECT count(*)::int4 FROM t");
    CHECK(still_two[0].get<int>(0) == 2);
  });
}

TEST_CASE("cancelling an atomic batch leaves the connection outside any transaction", "[batch][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    pgq::batch b;
    b.add("SELECT pg_sleep(5)").add("SELECT 1").add("SELECT 2");
    try {
      co_await pgq::with_timeout(conn.run_batch(b, true), std::chrono::milliseconds(100));
      FAIL("no timeout");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::timeout);
    }
    auto r = co_await conn.query("SELECT 'after'");
    CHECK(r[0].get<std::string>(0) == "after");
    CHECK(conn.transaction_status() == pgq::tx_status::idle);
  });
}
