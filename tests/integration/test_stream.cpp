// Streaming rows: order, memory-independent reading, early exits.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

using namespace pgq_test;
namespace asio = boost::asio;

TEST_CASE("stream: 1,000,000 rows arrive complete and in order", "[stream]") {
  run(
      []() -> asio::awaitable<void> {
        auto conn = co_await connect();
        auto rows = co_await conn.stream(
            "SELECT i, 'row ' || i AS label, i * 0.5::float8 AS half FROM generate_series(1, $1) i", 1'000'000);
        CHECK(rows.columns() == 3);
        CHECK(rows.column_name(1) == "label");
        std::int64_t expected = 1;
        std::int64_t wrong = 0;
        while (auto r = co_await rows.next()) {
          const auto [i, label, half] = r->as_tuple<int, std::string_view, double>();
          if (i != expected || label != "row " + std::to_string(expected) || half != expected * 0.5) ++wrong;
          ++expected;
        }
        CHECK(wrong == 0);
        CHECK(expected == 1'000'001);
        CHECK(rows.rows_affected() == 1'000'000);
        CHECK(rows.command_tag() == "SELECT 1000000");
        CHECK(rows.done());
      },
      120s);
}

TEST_CASE("stream: zero rows, and an error before the first row", "[stream]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto empty = co_await conn.stream("SELECT 1 AS x WHERE false");
    auto first = co_await empty.next();
    CHECK_FALSE(first.has_value());
    CHECK(empty.columns() == 1);
    CHECK(empty.command_tag() == "SELECT 0");

    bool threw = false;
    try {
      auto bad = co_await conn.stream("SELECT * FROM no_such_table_for_streams");
    } catch (const pgq::sql_error& e) {
      threw = true;
      CHECK(e.diag().sqlstate == "42P01");
    }
    CHECK(threw);
    auto r = co_await conn.query("SELECT 7");
    CHECK(r[0].get<int>(0) == 7);
  });
}

TEST_CASE("stream: rows before an error mid-way are delivered, then the error", "[stream]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    // Division by zero at i = 3000, after rows went out.
    auto rows = co_await conn.stream("SELECT i, 1 / (3000 - i) FROM generate_series(1, 5000) i");
    int seen = 0;
    std::string state;
    try {
      while (auto r = co_await rows.next()) {
        if (r->get<int>(0) == seen + 1) ++seen;
      }
    } catch (const pgq::sql_error& e) {
      state = e.diag().sqlstate;
    }
    CHECK(state == "22012");
    CHECK(seen > 0);
    CHECK(seen < 3000);
    auto r = co_await conn.query("SELECT 1");
    CHECK(r[0].get<int>(0) == 1);
  });
}

TEST_CASE("stream: breaking out early cancels the rest, and the connection goes on", "[stream]") {
  run(
      []() -> asio::awaitable<void> {
        auto conn = co_await connect();
        const auto start = std::chrono::steady_clock::now();
        {
          // Far more rows than anyone reads, slow to produce: only a cancel on
          // the server ends it quickly. (Wide rows: the server sends in 8 kB
          // writes, so narrow slow rows would take seconds to show up at all.)
          auto rows =
              co_await conn.stream("SELECT i, repeat('x', 2000), pg_sleep(0.001) FROM generate_series(1, 1000000) i");
          int n = 0;
          while (auto r = co_await rows.next()) {
            if (++n == 10) break;
          }
          CHECK(n == 10);
        }
        auto r = co_await conn.query("SELECT 'after'::text");
        CHECK(r[0].get<std::string>(0) == "after");
        CHECK(std::chrono::steady_clock::now() - start < 20s);
        // And a second stream on the same connection reads from the start.
        auto again = co_await conn.stream("SELECT generate_series(1, 3)");
        int sum = 0;
        while (auto row = co_await again.next()) sum += row->get<int>(0);
        CHECK(sum == 6);
        CHECK(conn.pending_requests() == 0);
      },
      60s);
}

namespace {
// The state of backend `pid` and what it waits for, as another connection
// sees it ("gone" once it has left).
asio::awaitable<std::string> backend_state(pgq::connection& observer, int pid) {
  auto r = co_await observer.query(
      "SELECT coalesce(state, '') || '/' || coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1::int4", pid);
  co_return r.size() == 0 ? std::string("gone") : r[0].get<std::string>(0);
}

// Polls backend_state() until `pred` holds or `limit` passes; returns the
// last state seen.
template <class Pred>
asio::awaitable<std::string> wait_for_state(pgq::connection& observer, int pid, Pred pred,
                                            std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  std::string state = co_await backend_state(observer, pid);
  while (!pred(state) && std::chrono::steady_clock::now() < until) {
    co_await pause(std::chrono::milliseconds(20));
    state = co_await backend_state(observer, pid);
  }
  co_return state;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

TEST_CASE("stream: cancelling next() (a timeout) stops the statement on the server", "[stream]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto observer = co_await connect();
    auto p = co_await conn.query("SELECT pg_backend_pid()");
    const int pid = p[0].get<int>(0);
    // Wide rows: the server flushes every 8 kB, here every few rows.
    auto rows = co_await conn.stream("SELECT i, repeat('x', 2000), pg_sleep(0.01) FROM generate_series(1, 100000) i");
    auto first = co_await rows.next();
    REQUIRE(first.has_value());
    int read = 1;
    // The observer sees the statement run (else its "stopped" below would
    // prove nothing): 100,000 rows at 10 ms each take minutes.
    const std::string running = co_await backend_state(observer, pid);
    CHECK(starts_with(running, "active/"));
    std::string error;
    // The rows come a few per 10 ms: a 2 ms timeout on next() finds it
    // waiting soon. (The timeout wraps next() itself: a timeout around a
    // loop of next() calls can fall between two of them, where it cancels
    // the loop's coroutine and never reaches the stream.) A next() that
    // completes as its timeout fires is a late success: read on.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (error.empty() && std::chrono::steady_clock::now() < until) {
      try {
        auto r = co_await pgq::with_timeout(rows.next(), std::chrono::milliseconds(2));
        if (!r) break;
        ++read;
      } catch (const pgq::sql_error& e) {
        error = e.code() == pgq::errc::timeout ? "timeout" : e.code() == pgq::errc::cancelled ? "cancelled" : e.what();
      }
    }
    CHECK((error == "timeout" || error == "cancelled"));
    CHECK(read > 1);
    CHECK(read < 100000);
    CHECK(rows.done());  // the cancelled next() ended the stream
    // Stopped on the server, not only no longer read: the backend goes idle.
    const std::string after = co_await wait_for_state(
        observer, pid, [](const std::string& s) { return !starts_with(s, "active/"); }, std::chrono::seconds(10));
    CHECK(starts_with(after, "idle/"));
  });
}

TEST_CASE("stream: a slow reader keeps memory flat, and queries queued behind run after", "[stream]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto observer = co_await connect();
    auto p = co_await conn.query("SELECT pg_backend_pid()");
    const int pid = p[0].get<int>(0);
    // Prepared before, so that the query queued below is one request (a
    // first run would add its Describe).
    co_await conn.query("SELECT clock_timestamp()");
    // 100 MB: more than the socket buffers and any bounded client buffer.
    constexpr int total = 50'000;
    auto rows = co_await conn.stream(
        "SELECT i, repeat('x', 2000), clock_timestamp() FROM generate_series(1, $1::int4) i", total);
    // Queued behind the stream on the same connection: runs after it on the
    // server. (Its result may complete while the reader still has the
    // stream's last buffered rows to read: the order is checked by the
    // server's clock, and while the server is held up by the reader.)
    // (Detached: co_spawn with use_awaitable would start it only when awaited.)
    bool queued_done = false;
    pgq::timestamptz queued_at{};
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(
        ex,
        [](pgq::connection* c, pgq::timestamptz* at, bool* done) -> asio::awaitable<void> {
          auto r = co_await c->query("SELECT clock_timestamp()");
          *at = r[0].get<pgq::timestamptz>(0);
          *done = true;
        }(&conn, &queued_at, &queued_done),
        asio::detached);
    int read = 0;
    std::string while_paused;
    pgq::timestamptz last_row_at{};
    while (auto r = co_await rows.next()) {
      ++read;
      last_row_at = r->get<pgq::timestamptz>(2);
      if (read == 100) {
        // A slow reader: the client stops reading, so the server must stop
        // sending (its backend waits to write to us) instead of the driver
        // taking in all 100 MB.
        while_paused = co_await wait_for_state(
            observer, pid, [](const std::string& s) { return s == "active/ClientWrite"; }, std::chrono::seconds(10));
        CHECK(conn.pending_requests() == 2);  // the stream, and the query behind it
        CHECK_FALSE(queued_done);
      }
    }
    CHECK(while_paused == "active/ClientWrite");
    CHECK(read == total);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!queued_done && std::chrono::steady_clock::now() < until) co_await pause(std::chrono::milliseconds(5));
    CHECK(queued_done);
    CHECK(queued_at > last_row_at);
  });
}

namespace {
asio::awaitable<void> timestamp_of(pgq::connection* conn, std::string sql, std::string* out, int* done) {
  auto r = co_await conn->query(sql);
  *out = r[0].get<std::string>(0);
  ++*done;
}
}  // namespace

TEST_CASE("stream: pipelined between other requests from other coroutines", "[stream]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    std::string before, after;
    int done = 0;
    // "before" goes on the wire first (and sleeps), the stream behind it,
    // then "after" behind the stream while its rows are still coming.
    asio::co_spawn(ex, timestamp_of(&conn, "SELECT pg_sleep(0.2)::text || clock_timestamp()::text", &before, &done),
                   asio::detached);
    co_await asio::post(ex, asio::use_awaitable);
    auto rows = co_await conn.stream("SELECT clock_timestamp()::text FROM generate_series(1, 5000)");
    asio::co_spawn(ex, timestamp_of(&conn, "SELECT clock_timestamp()::text", &after, &done), asio::detached);
    co_await asio::post(ex, asio::use_awaitable);
    CHECK(conn.pending_requests() >= 2);  // the stream and "after"
    std::string first, last;
    int n = 0;
    while (auto r = co_await rows.next()) {
      last = r->get<std::string>(0);
      if (n++ == 0) first = last;
    }
    CHECK(n == 5000);
    while (done < 2) co_await asio::post(ex, asio::use_awaitable);
    // The server ran them in the order sent (ISO timestamps compare as text).
    CHECK(before < first);
    CHECK(last < after);
  });
}

TEST_CASE("stream: from a pool (the lease lives as long as the stream) and in a transaction", "[stream]") {
  run([]() -> asio::awaitable<void> {
    pgq::pool_options opts;
    opts.conninfo = dsn();
    opts.max_size = 1;
    pgq::pool pool(co_await asio::this_coro::executor, opts);
    {
      auto rows = co_await pool.stream("SELECT generate_series(1, 100)");
      CHECK(pool.stats().in_use == 1);
      int n = 0;
      while (auto r = co_await rows.next()) ++n;
      CHECK(n == 100);
    }
    {
      auto tx = co_await pool.begin();
      co_await tx.execute("CREATE TEMP TABLE s (i int)");
      co_await tx.execute("INSERT INTO s SELECT generate_series(1, 10)");
      auto rows = co_await tx.stream("SELECT i FROM s ORDER BY i");
      int sum = 0;
      while (auto r = co_await rows.next()) sum += r->get<int>(0);
      CHECK(sum == 55);
      co_await tx.rollback();
    }
    auto r = co_await pool.query("SELECT 1");
    CHECK(r[0].get<int>(0) == 1);
    co_await pool.close();
  });
}
