#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

using namespace pgq_test;
using namespace boost::asio::experimental::awaitable_operators;
namespace asio = boost::asio;

TEST_CASE("connect and run a parameterized query", "[connection]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    REQUIRE(conn.is_open());
    CHECK(conn.backend_pid() > 0);
    // 12 is the oldest server pgq supports (scripts/test --matrix runs 12 to 18).
    CHECK(conn.server_version() >= 120000);
    auto v = co_await conn.query("SELECT current_setting('server_version_num')::int4");
    CHECK(v[0].get<int>(0) == conn.server_version());
    auto r = co_await conn.query("SELECT $1::int4 + 1 AS n, 'hello ' || $2 AS greeting", 41, std::string("world"));
    REQUIRE(r.size() == 1);
    REQUIRE(r.columns() == 2);
    CHECK(r.column_name(0) == "n");
    CHECK(r.column_type(0) == pgq::oids::int4);
    CHECK(r[0].get<int>(0) == 42);
    CHECK(r[0].get<std::string>("greeting") == "hello world");
    CHECK(r.command_tag() == "SELECT 1");
  });
}

TEST_CASE("execute returns rows affected", "[connection]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("CREATE TEMP TABLE t (id int primary key, name text)");
    auto n = co_await conn.execute("INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, $1::int4) g", 7);
    CHECK(n == 7);
    n = co_await conn.execute("UPDATE t SET name = $1 WHERE id > $2::int4", std::string("x"), 4);
    CHECK(n == 3);
    n = co_await conn.execute("DELETE FROM t WHERE id = 100");
    CHECK(n == 0);
  });
}

TEST_CASE("a syntax error gives 42601 with a position and the connection still works", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    try {
      co_await conn.query("SELEC 1");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "42601");
      CHECK(e.code() == pgq::make_sqlstate_error("42601"));
      REQUIRE(e.diag().position.has_value());
      CHECK(*e.diag().position == 1);
      CHECK(e.diag().severity == "ERROR");
      CHECK(e.diag().statement == "SELEC 1");
      CHECK(std::string(e.what()).find("42601") != std::string::npos);
      CHECK(std::string(e.what()).find("SELEC 1") != std::string::npos);
      CHECK_FALSE(pgq::is_fatal(e.code()));
    }
    auto r = co_await conn.query("SELECT 2");
    CHECK(r[0].get<int>(0) == 2);
  });
}

TEST_CASE("a unique violation gives 23505 with the constraint name", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("CREATE TEMP TABLE u (id int CONSTRAINT u_pkey PRIMARY KEY)");
    co_await conn.execute("INSERT INTO u VALUES ($1)", 1);
    try {
      co_await conn.execute("INSERT INTO u VALUES ($1)", 1);
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "23505");
      CHECK(e.diag().constraint == "u_pkey");
      CHECK(e.diag().table == "u");
      CHECK_FALSE(e.diag().detail.empty());
      CHECK_FALSE(e.diag().schema.empty());
    }
    auto count = co_await conn.query("SELECT count(*)::int4 FROM u");
    CHECK(count[0].get<int>(0) == 1);
  });
}

TEST_CASE("errors in pipelined requests fail only their own request", "[connection][pipeline]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    constexpr int n = 60;
    std::vector<int> outcome(n, -1);
    int finished = 0;
    for (int i = 0; i < n; ++i) {
      asio::co_spawn(
          ex,
          [&conn, &outcome, &finished, i]() -> asio::awaitable<void> {
            try {
              if (i % 7 == 3) {
                co_await conn.query("SELECT 1/0");
              } else {
                auto r = co_await conn.query("SELECT $1::int4 * 2", i);
                outcome[i] = r[0].get<int>(0);
              }
            } catch (const pgq::sql_error& e) {
              outcome[i] = e.sqlstate() == "22012" ? -2 : -3;
            }
            ++finished;
          },
          asio::detached);
    }
    asio::steady_timer t(ex);
    while (finished < n) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    for (int i = 0; i < n; ++i) {
      if (i % 7 == 3) {
        CHECK(outcome[i] == -2);
      } else {
        CHECK(outcome[i] == 2 * i);
      }
    }
  });
}

TEST_CASE("a wrong type in get<T> names the column, the Postgres type and the C++ type", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto r = co_await conn.query("SELECT 'abc'::text AS word, NULL::int4 AS nothing");
    try {
      (void)r[0].get<int>("word");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::type_mismatch);
      const std::string what = e.what();
      CHECK(what.find("word") != std::string::npos);
      CHECK(what.find("text") != std::string::npos);
      CHECK(what.find("int32") != std::string::npos);
    }
    try {
      (void)r[0].get<int>("nothing");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::unexpected_null);
      CHECK(std::string(e.what()).find("nothing") != std::string::npos);
    }
    CHECK_FALSE(r[0].get<std::optional<int>>("nothing").has_value());
    CHECK(r[0]["nothing"].is_null());
    CHECK_THROWS_AS(r[0]["missing"], pgq::sql_error);
    CHECK_THROWS_AS(r[0][5], pgq::sql_error);
    CHECK_THROWS_AS(r.at(1), pgq::sql_error);
  });
}

TEST_CASE("a malformed conninfo is a clear error", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    pgq::connection conn(co_await asio::this_coro::executor);
    try {
      co_await conn.connect("host=localhost nonsense_key=1");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::bad_conninfo);
      CHECK(std::string(e.what()).find("nonsense_key") != std::string::npos);
    }
    try {
      co_await conn.connect("postgresql://[broken");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::bad_conninfo);
    }
    CHECK_FALSE(conn.is_open());
  });
}

TEST_CASE("an unreachable host and a refused port fail within the connect timeout", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    // A closed port on loopback: refused at once, long before the timeout.
    {
      pgq::connection conn(co_await asio::this_coro::executor);
      const auto start = std::chrono::steady_clock::now();
      try {
        co_await conn.connect("host=127.0.0.1 port=1 dbname=x user=x",
                              pgq::connect_options{.connect_timeout = std::chrono::seconds(30)});
        FAIL("no error");
      } catch (const pgq::sql_error& e) {
        CHECK(e.code() == pgq::errc::connect_failed);
        CHECK(std::string(e.what()).find("refused") != std::string::npos);
      }
      CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    }
    // 192.0.2.0/24 is TEST-NET-1, never routed: either no route at all (an
    // error at once) or SYNs that go nowhere, which only the timeout ends
    // (the kernel alone would retry for minutes).
    {
      pgq::connection conn(co_await asio::this_coro::executor);
      const auto start = std::chrono::steady_clock::now();
      try {
        co_await conn.connect("host=192.0.2.1 port=5432 dbname=x user=x",
                              pgq::connect_options{.connect_timeout = std::chrono::milliseconds(1000)});
        FAIL("no error");
      } catch (const pgq::sql_error& e) {
        INFO(e.what());
        CHECK((e.code() == pgq::errc::timeout || e.code() == pgq::errc::connect_failed));
      }
      CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    }
  });
}

TEST_CASE("a connect that hangs times out", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    // A listening socket that never answers: the server's side of the
    // handshake never comes, so only our timeout ends the attempt.
    auto ex = co_await asio::this_coro::executor;
    asio::ip::tcp::acceptor silent(ex, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = silent.local_endpoint().port();
    pgq::connection conn(ex);
    const auto start = std::chrono::steady_clock::now();
    try {
      co_await conn.connect("host=127.0.0.1 port=" + std::to_string(port) + " user=x dbname=x sslmode=disable",
                            pgq::connect_options{.connect_timeout = std::chrono::milliseconds(300)});
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::timeout);
    }
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= std::chrono::milliseconds(250));
    CHECK(took < std::chrono::seconds(3));
  });
}

TEST_CASE("a wrong password is a clear error", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    auto base = pgq::conninfo::parse(dsn());
    base.set("password", "certainly-not-the-password");
    pgq::connection conn(co_await asio::this_coro::executor);
    try {
      co_await conn.connect(base.to_string(), pgq::connect_options{.connect_timeout = std::chrono::milliseconds(5000)});
      FAIL("no error (does the test server trust every local connection?)");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::connect_failed);
      CHECK(std::string(e.what()).find("password authentication failed") != std::string::npos);
    }
  });
}

// Resolving without blocking and trying every address are not checked here:
// localhost resolves instantly, and to ::1 first only on some machines.
TEST_CASE("a host name (localhost) is resolved and connected to", "[connection]") {
  run([]() -> asio::awaitable<void> {
    auto ci = pgq::conninfo::parse(dsn());
    ci.set("host", "localhost");  // may resolve to ::1 first; the server listens on 127.0.0.1
    ci.erase("hostaddr");
    pgq::connection conn(co_await asio::this_coro::executor);
    co_await conn.connect(ci.to_string());
    auto one = co_await conn.query("SELECT 1");
    CHECK(one[0].get<int>(0) == 1);
  });
}

TEST_CASE("100 queries on 100 connections are on the server at the same time", "[connection][concurrency]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    // Each query waits for an advisory lock the observer holds: all 100 can
    // be seen waiting together only if they run concurrently. No bound on
    // the wall clock: a loaded machine only makes them take longer.
    auto observer = co_await connect();
    const std::int64_t key = 0x70677100000000LL + ::getpid();
    co_await observer.query("SELECT pg_advisory_lock($1::int8)", key);
    constexpr int n = 100;
    int finished = 0;
    int ok = 0;
    for (int i = 0; i < n; ++i) {
      asio::co_spawn(
          ex,
          [](int i, std::int64_t key, int* finished, int* ok) -> asio::awaitable<void> {
            try {
              auto conn = co_await connect();
              auto r = co_await conn.query("SELECT pg_advisory_xact_lock_shared($1::int8), $2::int4 AS i", key, i);
              if (r[0].get<int>("i") == i) ++*ok;
            } catch (const std::exception& e) {
              UNSCOPED_INFO("query " << i << " failed: " << e.what());
            }
            ++*finished;
          }(i, key, &finished, &ok),
          asio::detached);
    }
    asio::steady_timer t(ex);
    std::int64_t waiting = 0;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(50);
    while (finished == 0 && std::chrono::steady_clock::now() < until) {
      auto r = co_await observer.query(
          "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
          "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
          "AND ((classid::int8 << 32) | objid::int8) = $1::int8",
          key);
      waiting = r[0].get<std::int64_t>(0);
      if (waiting == n) break;
      t.expires_after(std::chrono::milliseconds(10));
      co_await t.async_wait(asio::use_awaitable);
    }
    CHECK(finished == 0);  // none got past the lock before it was released
    CHECK(waiting == n);
    co_await observer.query("SELECT pg_advisory_unlock($1::int8)", key);
    while (finished < n) {
      t.expires_after(std::chrono::milliseconds(10));
      co_await t.async_wait(asio::use_awaitable);
    }
    CHECK(ok == n);
  });
}

TEST_CASE("a 1,000,000-row result reads correctly", "[connection][large]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto r = co_await conn.query("SELECT g AS id, 'row ' || g AS label FROM generate_series(1, 1000000) g");
    REQUIRE(r.size() == 1000000);
    std::int64_t sum = 0;
    bool labels_ok = true;
    for (auto row : r) {
      const int id = row.get<int>(0);
      sum += id;
      if (id % 99991 == 0) labels_ok = labels_ok && row.get<std::string_view>(1) == "row " + std::to_string(id);
    }
    CHECK(sum == std::int64_t{1000000} * 1000001 / 2);
    CHECK(labels_ok);
    CHECK(r[999999].get<int>(0) == 1000000);
  });
}

TEST_CASE("cancelling a running query cancels it on the server and keeps the connection", "[connection][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    timer.expires_after(std::chrono::milliseconds(200));
    const auto start = std::chrono::steady_clock::now();
    bool cancelled = false;
    try {
      auto outcome = co_await (conn.query("SELECT pg_sleep(30)") || timer.async_wait(asio::use_awaitable));
      CHECK(outcome.index() == 1);
      cancelled = outcome.index() == 1;
    } catch (const pgq::sql_error& e) {
      cancelled = e.code() == pgq::errc::cancelled;
    }
    CHECK(cancelled);
    // The server stopped sleeping: the next query answers at once.
    auto r = co_await conn.query("SELECT 'still usable'");
    CHECK(r[0].get<std::string>(0) == "still usable");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    CHECK(conn.pending_requests() == 0);
  });
}

TEST_CASE("cancelling a queued request drops it, and the running one completes", "[connection][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    co_await conn.execute("CREATE TEMP TABLE c (v int)");
    // Prepared before: a first run would wait unsent for its Describe (and
    // then not run at all when cancelled; test_binary.cpp tests that).
    co_await conn.execute("INSERT INTO c VALUES (1)");
    co_await conn.execute("DELETE FROM c");
    bool first_done = false;
    asio::co_spawn(
        ex,
        [&conn, &first_done]() -> asio::awaitable<void> {
          co_await conn.query("SELECT pg_sleep(0.5)");
          first_done = true;
        },
        asio::detached);
    asio::steady_timer timer(ex);
    timer.expires_after(std::chrono::milliseconds(100));
    auto outcome = co_await (conn.execute("INSERT INTO c VALUES (1)") || timer.async_wait(asio::use_awaitable));
    CHECK(outcome.index() == 1);
    while (!first_done) {
      timer.expires_after(std::chrono::milliseconds(10));
      co_await timer.async_wait(asio::use_awaitable);
    }
    // The insert was queued behind the sleep on the server: it ran, and its
    // result was dropped (it is not undone).
    auto r = co_await conn.query("SELECT count(*)::int4 FROM c");
    CHECK(r[0].get<int>(0) == 1);
  });
}

TEST_CASE("a query on a closed connection fails with not_connected", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    pgq::connection conn(co_await asio::this_coro::executor);
    try {
      co_await conn.query("SELECT 1");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::not_connected);
    }
  });
}

TEST_CASE("a connection killed by the server fails pending requests with connection_lost", "[connection][errors]") {
  run([]() -> asio::awaitable<void> {
    auto victim = co_await connect();
    auto killer = co_await connect();
    const int pid = victim.backend_pid();
    auto ex = co_await asio::this_coro::executor;
    bool failed_as_lost = false;
    bool done = false;
    asio::co_spawn(
        ex,
        [&victim, &failed_as_lost, &done]() -> asio::awaitable<void> {
          try {
            co_await victim.query("SELECT pg_sleep(30)");
          } catch (const pgq::sql_error& e) {
            failed_as_lost = pgq::is_fatal(e.code());
            UNSCOPED_INFO("error: " << e.what());
          }
          done = true;
        },
        asio::detached);
    asio::steady_timer t(ex);
    t.expires_after(std::chrono::milliseconds(200));
    co_await t.async_wait(asio::use_awaitable);
    co_await killer.query("SELECT pg_terminate_backend($1::int4)", pid);
    while (!done) {
      t.expires_after(std::chrono::milliseconds(10));
      co_await t.async_wait(asio::use_awaitable);
    }
    CHECK(failed_as_lost);
    CHECK_FALSE(victim.is_open());
    try {
      co_await victim.query("SELECT 1");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(pgq::is_fatal(e.code()));
    }
  });
}

TEST_CASE("with_timeout fails a slow query with errc::timeout and keeps the connection", "[connection][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const auto start = std::chrono::steady_clock::now();
    try {
      co_await pgq::with_timeout(conn.query("SELECT pg_sleep(10)"), std::chrono::milliseconds(100));
      FAIL("no timeout");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::timeout);
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    auto r = co_await pgq::with_timeout(conn.query("SELECT 7"), std::chrono::seconds(5));
    CHECK(r[0].get<int>(0) == 7);
  });
}

TEST_CASE("with_timeout passes an operation's own failure on at once, not as a timeout", "[faults][timeout]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto start = std::chrono::steady_clock::now();
    try {
      co_await pgq::with_timeout(conn.query("SELEC 1"), std::chrono::seconds(3));
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "42601");
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
    auto observer = co_await connect();
    co_await observer.query("SELECT pg_terminate_backend($1::int4)", conn.backend_pid());
    start = std::chrono::steady_clock::now();
    try {
      co_await pgq::with_timeout(conn.query("SELECT 1"), std::chrono::seconds(3));
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(pgq::is_fatal(e.code()));
      CHECK(e.code() != pgq::errc::timeout);
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
    // A void operation too, and a success passes its value on.
    auto value = co_await pgq::with_timeout(observer.query("SELECT 42"), std::chrono::seconds(3));
    CHECK(value[0].get<int>(0) == 42);
    try {
      co_await pgq::with_timeout(pause(std::chrono::milliseconds(5000)), std::chrono::milliseconds(50));
      FAIL("no timeout");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::timeout);
    }
  });
}
