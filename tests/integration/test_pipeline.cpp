// Automatic pipelining: many coroutines, one connection.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

struct tally {
  int matched = 0;
  int mismatched = 0;
  int failed = 0;
  int done = 0;
};

// Ten queries in a row, each result checked against what this caller sent.
asio::awaitable<void> caller(pgq::connection* conn, int id, tally* t) {
  for (int k = 0; k < 10; ++k) {
    const int token = id * 10 + k;
    try {
      auto r = co_await conn->query("SELECT $1::int4 AS token, $2::text AS who", token, "caller " + std::to_string(id));
      if (r[0].get<int>("token") == token && r[0].get<std::string>("who") == "caller " + std::to_string(id)) {
        ++t->matched;
      } else {
        ++t->mismatched;
      }
    } catch (const std::exception& e) {
      ++t->failed;
      UNSCOPED_INFO(e.what());
    }
  }
  ++t->done;
}

asio::awaitable<void> wait_done(const int& done, int n) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (done < n) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(asio::use_awaitable);
  }
}

}  // namespace

TEST_CASE("10,000 concurrent queries from 1,000 coroutines on one connection", "[pipeline]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    tally t;
    for (int i = 0; i < 1000; ++i) asio::co_spawn(ex, caller(&conn, i, &t), asio::detached);
    CHECK(conn.pending_requests() > 0);
    co_await wait_done(t.done, 1000);
    CHECK(t.matched == 10000);
    CHECK(t.mismatched == 0);
    CHECK(t.failed == 0);
    CHECK(conn.pending_requests() == 0);
    CHECK(conn.stats().cache_misses == 1);  // one statement, prepared once
  });
}

namespace {

asio::awaitable<void> one(pgq::connection* conn, std::string sql, int i, std::vector<std::string>* outcome, int* done) {
  try {
    auto r = co_await conn->query(sql, i);
    (*outcome)[static_cast<std::size_t>(i)] = "ok " + std::to_string(r[0].get<int>(0));
  } catch (const pgq::sql_error& e) {
    (*outcome)[static_cast<std::size_t>(i)] =
        e.code() == pgq::errc::cancelled ? std::string("cancelled") : "error " + e.sqlstate();
  }
  ++*done;
}

asio::awaitable<void> cancelled_after(pgq::connection* conn, int i, std::chrono::milliseconds after,
                                      std::vector<std::string>* outcome, int* done) {
  try {
    co_await pgq::with_timeout(conn->query("SELECT $1::int4 FROM pg_sleep(1)", i), after);
    (*outcome)[static_cast<std::size_t>(i)] = "completed";
  } catch (const pgq::sql_error& e) {
    (*outcome)[static_cast<std::size_t>(i)] = e.code() == pgq::errc::timeout ? "timeout" : "error " + e.sqlstate();
  }
  ++*done;
}

}  // namespace

TEST_CASE("an error in the middle of a pipeline fails that query only", "[pipeline]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::string> outcome(9);
    int done = 0;
    for (int i = 0; i < 9; ++i) {
      const std::string sql = i == 4 ? "SELECT 1 / ($1::int4 - 4)" : "SELECT $1::int4";
      asio::co_spawn(ex, one(&conn, sql, i, &outcome, &done), asio::detached);
    }
    co_await wait_done(done, 9);
    for (int i = 0; i < 9; ++i) {
      INFO("request " << i);
      CHECK(outcome[static_cast<std::size_t>(i)] == (i == 4 ? std::string("error 22012") : "ok " + std::to_string(i)));
    }
  });
}

TEST_CASE("cancelling one pipelined request leaves the others intact", "[pipeline][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::string> outcome(7);
    int done = 0;
    // 0..2 run before the slow one, 3 is the slow one (cancelled while the
    // server runs it), 4..6 are queued behind it.
    for (int i = 0; i < 3; ++i) asio::co_spawn(ex, one(&conn, "SELECT $1::int4", i, &outcome, &done), asio::detached);
    asio::co_spawn(ex, cancelled_after(&conn, 3, std::chrono::milliseconds(150), &outcome, &done), asio::detached);
    for (int i = 4; i < 7; ++i) asio::co_spawn(ex, one(&conn, "SELECT $1::int4", i, &outcome, &done), asio::detached);
    const auto start = std::chrono::steady_clock::now();
    co_await wait_done(done, 7);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(900));  // the sleep was cut short
    for (int i = 0; i < 7; ++i) {
      INFO("request " << i);
      CHECK(outcome[static_cast<std::size_t>(i)] == (i == 3 ? std::string("timeout") : "ok " + std::to_string(i)));
    }
    auto r = co_await conn.query("SELECT 'usable'");
    CHECK(r[0].get<std::string>(0) == "usable");
  });
}
