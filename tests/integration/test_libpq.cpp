// The libpq 17/18 paths, taken when the libpq loaded at run time has them
// (pgq is built against libpq 15): the suite runs once with Debian's libpq 15
// and once with LD_LIBRARY_PATH at PostgreSQL 18's libpq (scripts/test
// --all). Each test says what it expects of both.
//
// PGQ_TEST_EXPECT_LIBPQ=N (set by that second run) makes the tests fail
// unless libpq N or newer is the one loaded: a run meant for the new paths
// must not pass quietly on the old ones.
#include "support.hpp"

#include "driver/driver.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libpq-fe.h>

#include <cstdlib>
#include <filesystem>
#include <string>

using namespace pgq_test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

bool libpq_17() { return PQlibVersion() >= 170000; }

// The DSN under test with one more conninfo setting (URI or key=value).
std::string dsn_with(const std::string& key, const std::string& value) {
  std::string d = dsn();
  if (d.rfind("postgres://", 0) == 0 || d.rfind("postgresql://", 0) == 0) {
    return d + (d.find('?') == std::string::npos ? "?" : "&") + key + "=" + value;
  }
  return d + " " + key + "=" + value;
}

std::size_t threads_now() {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)e;
    ++n;
  }
  return n;
}

struct outcome {
  int value = 0;
  std::string sqlstate;
};

asio::awaitable<void> one(pgq::connection* conn, const char* sql, outcome* out, int* done) {
  try {
    auto r = co_await conn->query(sql);
    out->value = r[0].get<int>(0);
  } catch (const pgq::sql_error& e) {
    out->sqlstate = e.diag().sqlstate;
  }
  ++*done;
}

}  // namespace

TEST_CASE("the run meant for a newer libpq loaded it", "[connection][libpq]") {
  const char* expect = std::getenv("PGQ_TEST_EXPECT_LIBPQ");
  const int loaded = PQlibVersion();
  INFO("PQlibVersion() = " << loaded << ", PGQ_TEST_EXPECT_LIBPQ = " << (expect != nullptr ? expect : "(unset)"));
  if (expect != nullptr && *expect != '\0') {
    CHECK(loaded >= std::atoi(expect) * 10000);
  } else {
    CHECK(loaded >= 150000);
  }
}

TEST_CASE("driver_info says which libpq calls a connection uses", "[connection][libpq]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const pgq::driver_info i = conn.driver_info();
    CHECK(i.libpq_version == PQlibVersion());
    if (libpq_17()) {
      CHECK(i.sync == "PQsendPipelineSync");
      CHECK(i.cancel == "PQcancelStart");
      CHECK(i.chunked_rows);
      CHECK(i.close_prepared);
    } else {
      CHECK(i.sync == "PQpipelineSync");
      CHECK(i.cancel == "PQcancel thread");
      CHECK_FALSE(i.chunked_rows);
      CHECK_FALSE(i.close_prepared);
    }
    // Protocol 3.2 only when asked for (max_protocol_version), by libpq 18
    // of a PostgreSQL 18 server.
    const bool asked = dsn().find("max_protocol_version=latest") != std::string::npos;
    const bool v32 = asked && PQlibVersion() >= 180000 && conn.server_version() >= 180000;
    CHECK(i.protocol_version == (v32 ? 30002 : 30000));
    conn.close();
    CHECK(conn.driver_info().protocol_version == 0);
  });
}

TEST_CASE("pipelined requests work with either Sync call, each isolated from the others' errors", "[pipeline][libpq]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    // A burst: three requests made in one turn of the event loop, the middle
    // one failing. With PQsendPipelineSync they leave in one write.
    outcome out[3];
    int done = 0;
    asio::co_spawn(ex, one(&conn, "SELECT 1", &out[0], &done), asio::detached);
    asio::co_spawn(ex, one(&conn, "SELECT 1/0", &out[1], &done), asio::detached);
    asio::co_spawn(ex, one(&conn, "SELECT 3", &out[2], &done), asio::detached);
    asio::steady_timer t(ex);
    while (done < 3) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    CHECK(out[0].value == 1);
    CHECK(out[1].sqlstate == "22012");
    CHECK(out[2].value == 3);
    CHECK(conn.pending_requests() == 0);
  });
}

TEST_CASE("a server-side cancel on libpq 17+ starts no thread", "[cancel][libpq]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    const std::uint64_t threads_before = pgq::detail::cancel_threads_started();
    const std::size_t tasks_before = threads_now();
    asio::steady_timer timer(ex);
    timer.expires_after(std::chrono::milliseconds(200));
    const auto start = std::chrono::steady_clock::now();
    auto outcome = co_await (conn.query("SELECT pg_sleep(30)") || timer.async_wait(asio::use_awaitable));
    CHECK(outcome.index() == 1);
    // The cancel is on its way now: on libpq 17+ on this thread's event loop.
    const std::size_t tasks_during = threads_now();
    auto r = co_await conn.query("SELECT 'still usable'");
    CHECK(r[0].get<std::string>(0) == "still usable");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    const std::uint64_t started = pgq::detail::cancel_threads_started() - threads_before;
    if (libpq_17()) {
      CHECK(conn.driver_info().cancel == "PQcancelStart");
      CHECK(started == 0);
      CHECK(tasks_during <= tasks_before);
    } else {
      // libpq 15: the blocking PQcancel runs on a thread of pgq's.
      CHECK(conn.driver_info().cancel == "PQcancel thread");
      CHECK(started == 1);
    }
  });
}

TEST_CASE("a cancel still lands when the connection closes right after it", "[cancel][libpq]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto watcher = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    const int pid = conn.backend_pid();
    asio::steady_timer timer(ex);
    timer.expires_after(std::chrono::milliseconds(200));
    auto outcome = co_await (conn.query("SELECT pg_sleep(30)") || timer.async_wait(asio::use_awaitable));
    CHECK(outcome.index() == 1);
    conn.close();
    // The backend stops sleeping (cancelled, then gone with its client).
    bool idle = false;
    for (int i = 0; i < 100 && !idle; ++i) {
      auto r = co_await watcher.query(
          "SELECT count(*)::int4 FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep(30)%' AND state = "
          "'active'",
          pid);
      idle = r[0].get<int>(0) == 0;
      if (!idle) {
        timer.expires_after(std::chrono::milliseconds(50));
        co_await timer.async_wait(asio::use_awaitable);
      }
    }
    CHECK(idle);
  });
}

TEST_CASE("row_stream receives chunks of rows on libpq 17+", "[stream][libpq]") {
  run([]() -> asio::awaitable<void> {
    for (const std::size_t chunk : {std::size_t{100}, std::size_t{1}}) {
      pgq::connection conn(co_await asio::this_coro::executor);
      pgq::connect_options opts;
      opts.stream_chunk_rows = chunk;
      co_await conn.connect(dsn(), opts);
      auto s = co_await conn.stream("SELECT g FROM generate_series(1, 2500) g");
      std::int64_t sum = 0;
      int max_index = 0;
      while (auto row = co_await s.next()) {
        sum += row->get<int>(0);
        max_index = std::max(max_index, row->index());
      }
      INFO("stream_chunk_rows = " << chunk);
      CHECK(sum == std::int64_t{2500} * 2501 / 2);
      CHECK(s.rows_affected() == 2500);
      // A row's index in its result: the chunk's size less one, or 0 for
      // one row per result.
      CHECK(max_index == (libpq_17() && chunk > 1 ? static_cast<int>(chunk) - 1 : 0));
    }
  });
}

TEST_CASE("statements evicted from the cache are closed on the server", "[statement_cache][libpq]") {
  run([]() -> asio::awaitable<void> {
    pgq::connection conn(co_await asio::this_coro::executor);
    pgq::connect_options opts;
    opts.statement_cache_size = 2;
    co_await conn.connect(dsn(), opts);
    for (int i = 1; i <= 6; ++i) {
      const std::string sql = "SELECT " + std::to_string(i) + " + $1::int4";
      auto r = co_await conn.query(sql, 1);
      CHECK(r[0].get<int>(0) == i + 1);
    }
    // Raw text, so that this query is no cached statement itself.
    auto r = co_await conn.query(
        "SELECT count(*)::int4 FROM pg_prepared_statements WHERE name LIKE 'pgq\\_%' AND statement NOT LIKE "
        "'%pg_prepared_statements%'");
    CHECK(r[0].get<int>(0) <= 2);
    auto first =
        co_await conn.query("SELECT count(*)::int4 FROM pg_prepared_statements WHERE statement LIKE 'SELECT 1 +%'");
    CHECK(first[0].get<int>(0) == 0);
    CHECK(conn.driver_info().close_prepared == libpq_17());
  });
}

TEST_CASE("max_protocol_version=latest: protocol 3.2 with libpq 18 and PostgreSQL 18, a clear error before",
          "[connection][libpq]") {
  const bool server_18 = server_version() >= 180000;
  run([server_18]() -> asio::awaitable<void> {
    pgq::connection conn(co_await asio::this_coro::executor);
    const std::string d = dsn_with("max_protocol_version", "latest");
    if (PQlibVersion() < 180000) {
      std::string message;
      try {
        co_await conn.connect(d);
      } catch (const pgq::sql_error& e) {
        CHECK(e.code() == pgq::errc::bad_conninfo);
        message = e.what();
      }
      INFO(message);
      CHECK(message.find("max_protocol_version needs libpq 18 or newer") != std::string::npos);
      co_return;
    }
    co_await conn.connect(d);
    const int expected = server_18 ? 30002 : 30000;
    CHECK(conn.driver_info().protocol_version == expected);
    // Everything still works on 3.2: queries, a cancel (longer cancel keys).
    auto r = co_await conn.query("SELECT $1::int4 + 1", 41);
    CHECK(r[0].get<int>(0) == 42);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(std::chrono::milliseconds(200));
    const auto start = std::chrono::steady_clock::now();
    auto outcome = co_await (conn.query("SELECT pg_sleep(30)") || timer.async_wait(asio::use_awaitable));
    CHECK(outcome.index() == 1);
    auto again = co_await conn.query("SELECT 'after the cancel'");
    CHECK(again[0].get<std::string>(0) == "after the cancel");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  });
}
