// Regression tests for defects of the old per-connection driver, each against
// the real server, each asserting the exact outcome. Where the server's state
// matters, a second connection (the observer) checks it.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

// The outcome of a request run in the background.
struct pending {
  // Set on the connection's executor, read on the test's (another thread under
  // PGQ_TEST_THREADS): the outcome is published by this flag.
  std::atomic<bool> done{false};
  std::optional<pgq::result> value;
  std::optional<pgq::sql_error> error;
  std::string other;  // what() of an exception that is not a sql_error

  std::string describe() const {
    if (!done) return "still running";
    if (value) return "ok";
    if (error) return std::string("sql_error: ") + error->what() + " [" + error->code().message() + "]";
    return "other exception: " + other;
  }
};

// Takes the SQL by value: the frame owns it for as long as the request runs.
asio::awaitable<void> query_into(pgq::connection& c, std::string sql, std::shared_ptr<pending> out) {
  try {
    auto r = co_await c.query(sql);
    out->value = std::move(r);
  } catch (const pgq::sql_error& e) {
    out->error = e;
  } catch (const std::exception& e) {
    out->other = e.what();
  }
  out->done = true;
}

asio::awaitable<void> query_params_into(pgq::connection& c, std::string sql, pgq::params params,
                                        std::shared_ptr<pending> out) {
  try {
    auto r = co_await c.query_params(sql, std::move(params));
    out->value = std::move(r);
  } catch (const pgq::sql_error& e) {
    out->error = e;
  } catch (const std::exception& e) {
    out->other = e.what();
  }
  out->done = true;
}

// Starts `sql` on `c` now (it is queued before anything started later) and
// returns where its outcome will be.
std::shared_ptr<pending> spawn_query(pgq::connection& c, std::string sql) {
  auto out = std::make_shared<pending>();
  asio::co_spawn(c.get_executor(), query_into(c, std::move(sql), out), asio::detached);
  return out;
}

// Waits until `p` is done or `limit` has passed; returns whether it is done.
asio::awaitable<bool> wait_done(std::shared_ptr<pending> p, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!p->done && std::chrono::steady_clock::now() < until) co_await pause(std::chrono::milliseconds(5));
  co_return p->done;
}

asio::awaitable<std::int64_t> count_rows(pgq::connection& c, std::string sql) {
  auto r = co_await c.query(sql);
  co_return r[0].get<std::int64_t>(0);
}

asio::awaitable<std::string> make_table(pgq::connection& c, std::string prefix, std::string columns) {
  std::string name = unique_name(prefix);
  std::string ddl = "CREATE TABLE " + name + " (" + columns + ")";
  co_await c.execute(ddl);
  co_return name;
}

// SELECT 1 must answer within `limit`.
asio::awaitable<void> check_select_1(pgq::connection& c, std::chrono::milliseconds limit = std::chrono::seconds(3)) {
  auto r = co_await pgq::with_timeout(c.query("SELECT 1::int4"), limit);
  const int v = r[0].get<int>(0);
  CHECK(v == 1);
}

}  // namespace

// ---------------------------------------------------------------- 1

TEST_CASE("core 1: an atomic batch with a stale cached plan commits nothing", "[core]") {
  run([]() -> asio::awaitable<void> {
    auto observer = co_await connect();
    auto conn = co_await connect();
    const std::string a = co_await make_table(observer, "core1a", "id int");
    const std::string b = co_await make_table(observer, "core1b", "id int");
    const std::string insert_b = "INSERT INTO " + b + " (id) VALUES ($1) RETURNING *";
    co_await conn.query(insert_b, 1);  // now a cached prepared statement
    co_await conn.query(insert_b, 2);
    INFO("cached statements: " << conn.stats().cached_statements);
    co_await observer.execute("ALTER TABLE " + b + " ADD COLUMN extra int");

    pgq::batch bt;
    bt.add("INSERT INTO " + a + " (id) VALUES ($1)", 10);
    bt.add(insert_b, 11);
    auto e = co_await error_of(conn.run_batch(bt, true));
    if (e) {
      INFO("run_batch threw: " << e->what());
    }
    CHECK(e.has_value());  // the server's error (0A000, cached plan must not change result type)
    if (e) {
      CHECK(e->sqlstate() == "0A000");
    }

    const auto rows_a = co_await count_rows(observer, "SELECT count(*) FROM " + a);
    const auto rows_b = co_await count_rows(observer, "SELECT count(*) FROM " + b + " WHERE id = 11");
    CHECK(rows_a == 0);
    CHECK(rows_b == 0);

    co_await check_select_1(conn);
    CHECK(conn.transaction_status() == pgq::tx_status::idle);
    co_await observer.execute("DROP TABLE " + a + ", " + b);
  });
}

TEST_CASE("core 1: a non-atomic batch with a stale cached plan never reorders statements", "[core]") {
  run([]() -> asio::awaitable<void> {
    auto observer = co_await connect();
    auto conn = co_await connect();
    const std::string t = co_await make_table(observer, "core1n", "seq serial PRIMARY KEY, tag text");
    const std::string s1 = "INSERT INTO " + t + " (tag) VALUES ('s1')";
    const std::string s2 = "INSERT INTO " + t + " (tag) VALUES ($1) RETURNING *";
    const std::string s3 = "INSERT INTO " + t + " (tag) VALUES ('s3')";
    const std::string warm = "warm";
    co_await conn.query(s2, warm);
    co_await conn.query(s2, warm);
    co_await observer.execute("ALTER TABLE " + t + " ADD COLUMN extra int");

    pgq::batch bt;
    bt.add(s1);
    bt.add(s2, std::string("s2"));
    bt.add(s3);
    auto e = co_await error_of(conn.run_batch(bt, false));
    if (e) {
      INFO("run_batch threw: " << e->what());
    }

    auto r = co_await observer.query("SELECT string_agg(tag, ',' ORDER BY seq) FROM " + t + " WHERE tag <> 'warm'");
    const std::string order = r[0].get<std::string>(0);
    INFO("order in the table: " << order << (e ? " (batch threw)" : " (batch succeeded)"));
    CHECK(order != "s1,s3,s2");
    if (e) {
      CHECK(order == "s1,s3");  // s2 failed and was reported
    } else {
      CHECK(order == "s1,s2,s3");
    }
    co_await check_select_1(conn);
    co_await observer.execute("DROP TABLE " + t);
  });
}

TEST_CASE("core 1: pipelined inserts with a stale cached plan never reorder", "[core]") {
  run([]() -> asio::awaitable<void> {
    auto observer = co_await connect();
    auto conn = co_await connect();
    const std::string t = co_await make_table(observer, "core1p", "seq serial PRIMARY KEY, tag text");
    const std::string s2 = "INSERT INTO " + t + " (tag) VALUES ('s2') RETURNING *";
    co_await conn.query(s2);
    co_await conn.query(s2);
    co_await observer.execute("DELETE FROM " + t);
    co_await observer.execute("ALTER TABLE " + t + " ADD COLUMN extra int");

    auto p1 = spawn_query(conn, "INSERT INTO " + t + " (tag) VALUES ('s1')");
    auto p2 = spawn_query(conn, s2);
    auto p3 = spawn_query(conn, "INSERT INTO " + t + " (tag) VALUES ('s3')");
    const bool d1 = co_await wait_done(p1, std::chrono::seconds(5));
    const bool d2 = co_await wait_done(p2, std::chrono::seconds(5));
    const bool d3 = co_await wait_done(p3, std::chrono::seconds(5));
    INFO("s1: " << p1->describe() << " | s2: " << p2->describe() << " | s3: " << p3->describe());
    CHECK(d1);
    CHECK(d2);
    CHECK(d3);

    auto r = co_await observer.query("SELECT coalesce(string_agg(tag, ',' ORDER BY seq), '') FROM " + t);
    const std::string order = r[0].get<std::string>(0);
    INFO("order in the table: " << order);
    CHECK(order != "s1,s3,s2");
    if (p2->error) {
      CHECK(order == "s1,s3");
    } else {
      CHECK(order == "s1,s2,s3");
    }
    co_await check_select_1(conn);
    co_await observer.execute("DROP TABLE " + t);
  });
}

// ---------------------------------------------------------------- 2

TEST_CASE("core 2: an atomic batch inside the caller's transaction does not commit it", "[core]") {
  run([]() -> asio::awaitable<void> {
    auto observer = co_await connect();
    auto conn = co_await connect();
    const std::string a = co_await make_table(observer, "core2a", "id int");
    const std::string b = co_await make_table(observer, "core2b", "id int");

    auto tx = co_await conn.begin();
    co_await tx.execute("INSERT INTO " + a + " (id) VALUES (1)");
    {
      auto sp = co_await tx.savepoint();
      co_await sp.execute("INSERT INTO " + a + " (id) VALUES (2)");
      // Dropped without commit: the destructor sends ROLLBACK TO SAVEPOINT detached.
    }
    pgq::batch bt;
    bt.add("INSERT INTO " + b + " (id) VALUES ($1)", 1);
    bt.add("INSERT INTO " + b + " (id) VALUES ($1)", 2);
    auto e = co_await error_of(conn.run_batch(bt, true));
    if (e) {
      INFO("run_batch threw: " << e->what());
    }
    CHECK_FALSE(e.has_value());
    co_await tx.rollback();

    const auto rows_a = co_await count_rows(observer, "SELECT count(*) FROM " + a);
    const auto rows_b = co_await count_rows(observer, "SELECT count(*) FROM " + b);
    CHECK(rows_a == 0);
    CHECK(rows_b == 0);
    co_await check_select_1(conn);
    CHECK(conn.transaction_status() == pgq::tx_status::idle);
    co_await observer.execute("DROP TABLE " + a + ", " + b);
  });
}

// ---------------------------------------------------------------- 3

TEST_CASE("core 3: a COPY the text check misses fails fast and does not hang", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        pgq::connection conn = co_await connect();
        const std::string t = co_await make_table(observer, "core3", "id int");
        const std::vector<std::string> statements = {
            "COPY/**/" + t + " FROM STDIN",
            ";COPY " + t + " FROM STDIN",
            "/* a /* nested */ comment */ COPY " + t + " TO STDOUT",
        };
        for (const auto& sql : statements) {
          INFO("statement: " << sql);
          const auto started = std::chrono::steady_clock::now();
          auto e = co_await error_of(pgq::with_timeout(conn.query(sql), std::chrono::seconds(2)));
          const auto took =
              std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
          REQUIRE(e.has_value());
          INFO("error: " << e->what() << " [" << e->code().message() << "] after " << took.count() << " ms");
          CHECK(e->code() != pgq::make_error_code(pgq::errc::timeout));
          WARN("COPY " << sql << " -> " << e->what() << "; open afterwards: " << conn.is_open());
          if (conn.is_open()) {
            co_await check_select_1(conn);
          } else {
            auto e2 = co_await error_of(conn.query("SELECT 1"));
            REQUIRE(e2.has_value());
            CHECK(e2->code() == pgq::make_error_code(pgq::errc::not_connected));
            co_await conn.connect(dsn());
          }
        }
        const auto rows = co_await count_rows(observer, "SELECT count(*) FROM " + t);
        CHECK(rows == 0);
        co_await observer.execute("DROP TABLE " + t);
      },
      std::chrono::seconds(20));
}

TEST_CASE("core 3: a COPY FROM STDIN pipelined with a query behind it does not hang", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        pgq::connection conn = co_await connect();
        const std::string t = co_await make_table(observer, "core3p", "id int");
        std::vector<std::string> copies;
        copies.push_back("COPY/**/" + t + " FROM STDIN");
        copies.push_back("COPY " + t + " FROM STDIN");
        for (const std::string& copy : copies) {
          INFO("copy statement: " << copy);
          auto p1 = spawn_query(conn, copy);
          auto p2 = spawn_query(conn, "SELECT 2::int4");
          const bool d1 = co_await wait_done(p1, std::chrono::seconds(3));
          const bool d2 = co_await wait_done(p2, std::chrono::seconds(3));
          INFO("copy: " << p1->describe() << " | SELECT 2: " << p2->describe());
          CHECK(d1);
          CHECK(d2);
          CHECK(p1->error.has_value());  // COPY through query() is refused one way or another
          WARN("pipelined " << copy << ": copy -> " << p1->describe() << "; SELECT 2 -> " << p2->describe()
                            << "; open: " << conn.is_open());
          if (p2->value) {
            const int v = (*p2->value)[0].get<int>(0);
            CHECK(v == 2);
          }
          if (!conn.is_open()) co_await conn.connect(dsn());
          co_await check_select_1(conn);
        }
        // A real copy_in with a query queued behind it.
        {
          auto p2 = std::make_shared<pending>();
          auto w = co_await conn.copy_in("COPY " + t + " (id) FROM STDIN");
          p2 = spawn_query(conn, "SELECT 2::int4");
          w.add_row(1);
          w.add_row(2);
          w.add_row(3);
          const std::uint64_t n = co_await pgq::with_timeout(w.finish(), std::chrono::seconds(3));
          CHECK(n == 3);
          const bool d2 = co_await wait_done(p2, std::chrono::seconds(3));
          INFO("SELECT 2 behind copy_in: " << p2->describe());
          REQUIRE(d2);
          REQUIRE(p2->value.has_value());
          const int v = (*p2->value)[0].get<int>(0);
          CHECK(v == 2);
        }
        const auto rows = co_await count_rows(observer, "SELECT count(*) FROM " + t);
        CHECK(rows == 3);
        co_await observer.execute("DROP TABLE " + t);
      },
      std::chrono::seconds(30));
}

// ---------------------------------------------------------------- 4

TEST_CASE("core 4: a cancelled query whose SQL text was a temporary", "[core]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    for (int round = 0; round < 5; ++round) {
      INFO("round " << round);
      // The text is a temporary, destroyed right after with_timeout returns
      // while the server still runs the statement.
      auto e = co_await error_of(
          pgq::with_timeout(conn.query(std::string("SELECT pg_sleep(0.3), ") + "'x'"), std::chrono::milliseconds(50)));
      REQUIRE(e.has_value());
      CHECK(e->code() == pgq::make_error_code(pgq::errc::timeout));
      // Reuse the freed memory.
      std::vector<std::string> junk;
      // NOLINTNEXTLINE(performance-inefficient-vector-operation): the allocations are the point
      for (int i = 0; i < 64; ++i) junk.emplace_back(40, static_cast<char>('a' + i % 26));
      for (int i = 0; i < 5; ++i) {
        const std::string text = "v" + std::to_string(i);
        const int number = i * 7 + round;
        auto r = co_await conn.query("SELECT $1::int4, $2::text", number, text);
        const int n = r[0].get<int>(0);
        const std::string s = r[0].get<std::string>(1);
        CHECK(n == i * 7 + round);
        CHECK(s == "v" + std::to_string(i));
      }
    }
    co_await pause(std::chrono::milliseconds(400));
    co_await check_select_1(conn);
    CHECK(conn.transaction_status() == pgq::tx_status::idle);
  });
}

// ---------------------------------------------------------------- 5

namespace {

asio::awaitable<void> commit_into(pgq::transaction& tx, std::shared_ptr<pending> out) {
  try {
    co_await tx.commit();
    out->value = pgq::result{};
  } catch (const pgq::sql_error& e) {
    out->error = e;
  } catch (const std::exception& e) {
    out->other = e.what();
  }
  out->done = true;
}

// begin() as an awaitable<void> (with_timeout needs a default-constructible
// value); a transaction that did begin is dropped, which rolls it back.
asio::awaitable<void> begin_and_drop(pgq::connection& c) { auto tx = co_await c.begin(); }

// A table whose every insert makes COMMIT take a second.
asio::awaitable<std::string> make_slow_commit_table(pgq::connection& c) {
  const std::string t = unique_name("core5");
  co_await c.execute("CREATE TABLE " + t + " (id int)");
  co_await c.execute("CREATE FUNCTION " + t +
                     "_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$");
  co_await c.execute("CREATE CONSTRAINT TRIGGER " + t + "_trg AFTER INSERT ON " + t +
                     " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION " + t + "_slow()");
  co_return t;
}

// After a commit or begin was cut short: the connection settles idle, and an
// autocommit insert is visible to the observer.
asio::awaitable<void> check_settled_idle(pgq::connection& conn, pgq::connection& observer, const std::string& table,
                                         int id) {
  co_await check_select_1(conn);
  CHECK(conn.transaction_status() == pgq::tx_status::idle);
  co_await conn.execute("INSERT INTO " + table + " (id) VALUES ($1)", id);
  const auto seen =
      co_await count_rows(observer, "SELECT count(*) FROM " + table + " WHERE id = " + std::to_string(id));
  CHECK(seen == 1);
}

}  // namespace

// Defect 1, second half: the server has finished a stream's statement (its
// last rows sit in the socket while pgq's buffer is full) and runs the COMMIT
// behind it, slowed by a deferred trigger. Dropping the stream sends a cancel
// meant for the stream; it lands on the COMMIT. The old driver re-sent
// COMMIT, which only warned "there is no transaction in progress", and
// commit() succeeded with nothing committed.
TEST_CASE("core 1: a stream's cancel that lands on the COMMIT behind it fails commit()", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        auto conn = co_await connect();
        const std::string t = co_await make_slow_commit_table(observer);

        auto tx = co_await conn.begin();
        co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1)");
        auto out = std::make_shared<pending>();
        {
          auto rows = co_await tx.stream("SELECT g FROM generate_series(1, 3000) g");
          auto first = co_await rows.next();
          REQUIRE(first.has_value());
          asio::co_spawn(conn.get_executor(), commit_into(tx, out), asio::detached);
          co_await pause(std::chrono::milliseconds(300));  // the COMMIT is in its trigger's pg_sleep(1)
          const auto running = co_await count_rows(
              observer, "SELECT count(*) FROM pg_stat_activity WHERE pid = " + std::to_string(conn.backend_pid()) +
                            " AND query = 'COMMIT' AND state = 'active'");
          INFO("the COMMIT was not running on the server when the stream was dropped: the race did not happen");
          REQUIRE(running == 1);
        }  // dropping the stream cancels it on the server
        const bool done = co_await wait_done(out, std::chrono::seconds(5));
        INFO("commit: " << out->describe());
        REQUIRE(done);
        const auto committed = co_await count_rows(observer, "SELECT count(*) FROM " + t + " WHERE id = 1");
        // Whatever the COMMIT did, commit() says it: success only with the row there.
        CHECK(out->value.has_value() == (committed == 1));
        if (out->error) {
          CHECK(out->error->code() != pgq::make_error_code(pgq::errc::cancelled));
          CHECK(committed == 0);
        }
        co_await check_settled_idle(conn, observer, t, 100);
        co_await observer.execute("DROP TABLE " + t);
        co_await observer.execute("DROP FUNCTION " + t + "_slow()");
      },
      std::chrono::seconds(20));
}

TEST_CASE("core 5: COMMIT cut short by with_timeout reports commit_unknown", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        auto conn = co_await connect();
        const std::string t = co_await make_slow_commit_table(observer);

        auto tx = co_await conn.begin();
        co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1)");
        auto e = co_await error_of(pgq::with_timeout(tx.commit(), std::chrono::milliseconds(200)));
        REQUIRE(e.has_value());
        INFO("commit threw: " << e->what() << " [" << e->code().message() << "]");
        CHECK(e->code() != pgq::make_error_code(pgq::errc::cancelled));
        CHECK(e->code() == pgq::make_error_code(pgq::errc::commit_unknown));

        co_await pause(std::chrono::milliseconds(1200));
        const auto committed = co_await count_rows(observer, "SELECT count(*) FROM " + t + " WHERE id = 1");
        WARN("with_timeout(commit): " << e->what() << "; row committed: " << committed);
        co_await check_settled_idle(conn, observer, t, 100);
        co_await observer.execute("DROP TABLE " + t);
        co_await observer.execute("DROP FUNCTION " + t + "_slow()");
      },
      std::chrono::seconds(20));
}

TEST_CASE("core 5: COMMIT cancelled through its cancellation slot reports commit_unknown", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        auto conn = co_await connect();
        const std::string t = co_await make_slow_commit_table(observer);

        auto tx = co_await conn.begin();
        co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1)");
        auto out = std::make_shared<pending>();
        asio::cancellation_signal sig;
        asio::co_spawn(conn.get_executor(), commit_into(tx, out),
                       asio::bind_cancellation_slot(sig.slot(), asio::detached));
        co_await pause(std::chrono::milliseconds(200));
        sig.emit(asio::cancellation_type::terminal);
        const bool done = co_await wait_done(out, std::chrono::seconds(3));
        INFO("commit: " << out->describe());
        REQUIRE(done);
        REQUIRE(out->error.has_value());
        CHECK(out->error->code() != pgq::make_error_code(pgq::errc::cancelled));
        CHECK(out->error->code() == pgq::make_error_code(pgq::errc::commit_unknown));

        co_await pause(std::chrono::milliseconds(1200));
        const auto committed = co_await count_rows(observer, "SELECT count(*) FROM " + t + " WHERE id = 1");
        WARN("cancelled commit: " << out->describe() << "; row committed: " << committed);
        co_await check_settled_idle(conn, observer, t, 100);
        co_await observer.execute("DROP TABLE " + t);
        co_await observer.execute("DROP FUNCTION " + t + "_slow()");
      },
      std::chrono::seconds(20));
}

TEST_CASE("core 5: a begin() cancelled while queued behind a running statement leaves no transaction", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        auto conn = co_await connect();
        const std::string t = co_await make_table(observer, "core5b", "id int");
        for (int round = 0; round < 3; ++round) {
          INFO("round " << round);
          auto busy = spawn_query(conn, "SELECT pg_sleep(0.3)");
          co_await pause(std::chrono::milliseconds(10));  // BEGIN goes behind it
          auto e =
              co_await error_of(pgq::with_timeout(begin_and_drop(conn), std::chrono::milliseconds(50 + 50 * round)));
          REQUIRE(e.has_value());
          CHECK(e->code() == pgq::make_error_code(pgq::errc::timeout));
          const bool d = co_await wait_done(busy, std::chrono::seconds(3));
          INFO("pg_sleep: " << busy->describe());
          CHECK(d);
          CHECK(busy->value.has_value());
          co_await pause(std::chrono::milliseconds(50));
          co_await check_settled_idle(conn, observer, t, round);
        }
        co_await observer.execute("DROP TABLE " + t);
      },
      std::chrono::seconds(30));
}

TEST_CASE("core 5: a begin() cancelled while BEGIN is on the wire leaves no transaction", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        auto conn = co_await connect();
        const std::string t = co_await make_table(observer, "core5w", "id int");
        const std::vector<std::chrono::microseconds> limits = {
            std::chrono::microseconds(0),    std::chrono::microseconds(50),  std::chrono::microseconds(100),
            std::chrono::microseconds(200),  std::chrono::microseconds(400), std::chrono::microseconds(800),
            std::chrono::microseconds(1500), std::chrono::microseconds(3000)};
        int id = 0;
        int timed_out = 0;
        for (int rep = 0; rep < 3; ++rep) {
          for (const auto limit : limits) {
            INFO("limit " << limit.count() << " us, rep " << rep);
            auto e = co_await error_of(pgq::with_timeout(begin_and_drop(conn), limit));
            if (e) {
              ++timed_out;
              CHECK(e->code() == pgq::make_error_code(pgq::errc::timeout));
            }
            co_await check_settled_idle(conn, observer, t, ++id);
          }
        }
        WARN("begin() timed out in " << timed_out << " of " << id << " attempts");
        co_await observer.execute("DROP TABLE " + t);
      },
      std::chrono::seconds(30));
}

// ---------------------------------------------------------------- 6

namespace {

struct shared_outcomes {
  std::atomic<bool> ready{false};
  std::atomic<int> completed{0};
  std::atomic<int> failed{0};
  std::atomic<int> succeeded{0};
  std::atomic<int> odd{0};  // exceptions that are not sql_error
  std::mutex m;
  std::vector<std::string> messages;
  std::string connect_error;
};

asio::awaitable<void> one_query(pgq::connection& c, std::string sql, std::shared_ptr<shared_outcomes> s) {
  try {
    auto r = co_await c.query(sql);
    ++s->succeeded;
  } catch (const pgq::sql_error& e) {
    {
      std::lock_guard<std::mutex> lock(s->m);
      s->messages.push_back(e.code().message());
    }
    ++s->failed;
  } catch (...) {
    ++s->odd;
  }
  ++s->completed;
}

asio::awaitable<void> start_queries(pgq::connection& c, std::string conninfo, int n,
                                    std::shared_ptr<shared_outcomes> s) {
  try {
    co_await c.connect(conninfo);
  } catch (const std::exception& e) {
    s->connect_error = e.what();
    s->ready = true;
    co_return;
  }
  auto ex = co_await asio::this_coro::executor;
  asio::co_spawn(ex, one_query(c, "SELECT pg_sleep(2)", s), asio::detached);
  for (int i = 1; i < n; ++i) {
    asio::co_spawn(ex, one_query(c, "SELECT " + std::to_string(i), s), asio::detached);
  }
  s->ready = true;
}

}  // namespace

TEST_CASE("core 6: close() from another thread fails every pending query", "[core]") {
  const std::string conninfo = dsn();
  constexpr int n = 8;
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    asio::io_context ctx(2);
    auto strand = asio::make_strand(ctx);
    auto s = std::make_shared<shared_outcomes>();
    {
      pgq::connection conn(strand);
      asio::co_spawn(strand, start_queries(conn, conninfo, n, s), asio::detached);
      std::thread closer([&] {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!s->ready && std::chrono::steady_clock::now() < until)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(100 + 20 * round));
        conn.close();
      });
      std::thread second([&] { ctx.run_for(std::chrono::seconds(15)); });
      ctx.run_for(std::chrono::seconds(15));
      second.join();
      closer.join();
      INFO("connect error: " << s->connect_error);
      REQUIRE(s->connect_error.empty());
      CHECK_FALSE(conn.is_open());
    }
    std::string msgs;
    for (const auto& m : s->messages) msgs += m + "; ";
    INFO("errors: " << msgs);
    CHECK(s->completed == n);
    CHECK(s->failed == n);
    CHECK(s->succeeded == 0);
    CHECK(s->odd == 0);
  }
}

// ---------------------------------------------------------------- 7

TEST_CASE("core 7: queries keep answering after the connect timeout would have fired", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        for (int variant = 0; variant < 2; ++variant) {
          INFO((variant == 0 ? "connect_options::connect_timeout = 1 s" : "conninfo connect_timeout=1"));
          pgq::connection conn(co_await asio::this_coro::executor);
          if (variant == 0) {
            pgq::connect_options o;
            o.connect_timeout = std::chrono::seconds(1);
            co_await conn.connect(dsn(), o);
          } else {
            const std::string ci = with_setting(dsn(), "connect_timeout", "1");
            co_await conn.connect(ci);
          }
          for (int i = 0; i < 7; ++i) {
            INFO("query " << i);
            auto r = co_await pgq::with_timeout(conn.query("SELECT $1::int4", i), std::chrono::seconds(2));
            const int v = r[0].get<int>(0);
            CHECK(v == i);
            co_await pause(std::chrono::milliseconds(300));
          }
        }
      },
      std::chrono::seconds(30));
}

// ---------------------------------------------------------------- 8

namespace {

struct cancel_race_outcome {
  std::atomic<bool> done{false};
  int cancelled = 0;
  int other = 0;
  std::string first_other;
  std::chrono::milliseconds slowest{0};
  bool still_works = false;
  std::string setup_error;
};

// One query's outcome, written by its completion handler.
struct one_outcome {
  bool done = false;
  std::optional<pgq::sql_error> error;
  std::string other;
};

// Runs on its own strand; the connection's driver runs on another strand of
// the same two-thread io_context, so a cancel emitted by the caller right
// after the request started races the driver's side of the initiation.
asio::awaitable<void> cancel_right_away(asio::any_io_executor conn_ex, std::string conninfo, int rounds,
                                        std::shared_ptr<cancel_race_outcome> out) {
  try {
    auto ex = co_await asio::this_coro::executor;
    pgq::connection conn(conn_ex);
    co_await conn.connect(conninfo);
    asio::steady_timer tick(ex);
    for (int i = 0; i < rounds; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto one = std::make_shared<one_outcome>();
      asio::cancellation_signal sig;
      asio::co_spawn(ex, conn.query("SELECT pg_sleep(30)"),
                     asio::bind_cancellation_slot(sig.slot(), [one](const std::exception_ptr& ep, const pgq::result&) {
                       if (ep) {
                         try {
                           std::rethrow_exception(ep);
                         } catch (const pgq::sql_error& e) {
                           one->error = e;
                         } catch (const std::exception& e) {
                           one->other = e.what();
                         }
                       } else {
                         one->other = "succeeded";
                       }
                       one->done = true;
                     }));
      // co_spawn posts the query's start: let it run (it initiates the
      // request), then cancel at once.
      co_await asio::post(ex, asio::use_awaitable);
      sig.emit(asio::cancellation_type::terminal);
      const auto until = t0 + std::chrono::seconds(40);
      while (!one->done && std::chrono::steady_clock::now() < until) {
        tick.expires_after(std::chrono::milliseconds(2));
        co_await tick.async_wait(asio::use_awaitable);
      }
      const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
      if (took > out->slowest) out->slowest = took;
      if (one->error && one->error->code() == pgq::make_error_code(pgq::errc::cancelled)) {
        ++out->cancelled;
      } else {
        ++out->other;
        if (out->first_other.empty()) {
          out->first_other = one->error ? one->error->what() : !one->done ? "still running" : one->other;
        }
        if (!one->done) break;
      }
    }
    auto r = co_await pgq::with_timeout(conn.query("SELECT 7::int4"), std::chrono::seconds(3));
    out->still_works = r[0].get<int>(0) == 7;
  } catch (const std::exception& e) {
    out->setup_error = e.what();
  }
  out->done = true;
}

}  // namespace

// The old driver connected the caller's cancellation slot on its own strand
// after the initiation hopped there: a cancel emitted before that was lost,
// and the caller waited the whole pg_sleep(30). A cancel this early also
// reaches the backend while it still reads the request's messages, where the
// server ignores it: the old driver (and the new one before it cancelled
// again) then told the caller "cancelled" while the statement ran on, and
// the SELECT 7 behind it waited up to 30 s.
TEST_CASE("core 8: a cancel emitted right after a query starts is never lost", "[core]") {
  asio::io_context ctx(2);
  auto driver_strand = asio::make_strand(ctx);
  auto caller_strand = asio::make_strand(ctx);
  auto out = std::make_shared<cancel_race_outcome>();
  constexpr int rounds = 30;
  asio::co_spawn(caller_strand, cancel_right_away(driver_strand, dsn(), rounds, out), asio::detached);
  std::thread second([&] { ctx.run_for(std::chrono::seconds(90)); });
  ctx.run_for(std::chrono::seconds(90));
  second.join();
  REQUIRE(out->done);
  INFO("setup: " << out->setup_error << "; first other outcome: " << out->first_other);
  REQUIRE(out->setup_error.empty());
  CHECK(out->cancelled == rounds);
  CHECK(out->other == 0);
  // Each cancel reaches the server at once; 30 s would mean one was lost.
  CHECK(out->slowest < std::chrono::seconds(10));
  CHECK(out->still_works);
}

// ---------------------------------------------------------------- 9

namespace {

asio::awaitable<void> pool_select(pgq::pool& p, int i, std::shared_ptr<std::vector<std::string>> out) {
  std::string what;
  try {
    auto r = co_await p.query("SELECT $1::int4", i);
    const int v = r[0].get<int>(0);
    what = v == i ? "ok" : "wrong value " + std::to_string(v);
  } catch (const std::exception& e) {
    what = e.what();
  }
  (*out)[static_cast<std::size_t>(i)] = what;
}

}  // namespace

TEST_CASE("core 9: the pool does not hand out connections whose backends were terminated", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        const std::string app = unique_name("core9");
        pgq::pool_options o;
        o.conninfo = with_setting(dsn(), "application_name", app);
        o.min_size = 4;
        o.max_size = 4;
        pgq::pool pool(co_await asio::this_coro::executor, o);
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (pool.stats().idle < 4 && std::chrono::steady_clock::now() < until) {
          co_await pause(std::chrono::milliseconds(10));
        }
        REQUIRE(pool.stats().idle == 4);
        const auto killed =
            co_await count_rows(observer,
                                "SELECT count(*) FILTER (WHERE k) FROM (SELECT pg_terminate_backend(pid) AS k FROM "
                                "pg_stat_activity WHERE application_name = '" +
                                    app + "') s");
        CHECK(killed == 4);
        co_await pause(std::chrono::milliseconds(100));

        auto out = std::make_shared<std::vector<std::string>>(8);
        auto ex = co_await asio::this_coro::executor;
        for (int i = 0; i < 8; ++i) asio::co_spawn(ex, pool_select(pool, i, out), asio::detached);
        const auto until2 = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        auto all_done = [&out] {
          for (const auto& s : *out) {
            if (s.empty()) return false;
          }
          return true;
        };
        while (!all_done() && std::chrono::steady_clock::now() < until2) co_await pause(std::chrono::milliseconds(10));
        for (int i = 0; i < 8; ++i) {
          INFO("query " << i << ": " << (*out)[static_cast<std::size_t>(i)]);
          CHECK((*out)[static_cast<std::size_t>(i)] == "ok");
        }
        // And once more, one after another.
        for (int i = 0; i < 8; ++i) {
          auto e = co_await error_of(pool.query("SELECT 1"));
          if (e) {
            INFO("sequential query " << i << ": " << e->what());
          }
          CHECK_FALSE(e.has_value());
        }
        co_await pool.close(std::chrono::seconds(5));
      },
      std::chrono::seconds(40));
}

// What the pool relies on: an idle connection learns by itself that its
// backend is gone.
TEST_CASE("core 9: an idle connection notices its backend was terminated", "[core]") {
  run([]() -> asio::awaitable<void> {
    auto observer = co_await connect();
    auto conn = co_await connect();
    const int pid = conn.backend_pid();
    co_await observer.query("SELECT pg_terminate_backend($1::int4)", pid);
    co_await pause(std::chrono::milliseconds(100));
    CHECK_FALSE(conn.is_open());
    auto e = co_await error_of(conn.query("SELECT 1"));
    REQUIRE(e.has_value());
    INFO("query on the terminated connection: " << e->what());
    const bool says_so = e->code() == pgq::make_error_code(pgq::errc::not_connected) ||
                         e->code() == pgq::make_error_code(pgq::errc::connection_lost);
    CHECK(says_so);
  });
}

// ---------------------------------------------------------------- 11

TEST_CASE("core 11: cancelling a statement queued behind another cancels it on the server", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        auto conn = co_await connect();
        const int pid = conn.backend_pid();
        auto a = spawn_query(conn, "SELECT pg_sleep(0.5)");
        co_await pause(std::chrono::milliseconds(10));  // A is surely ahead of B
        auto e =
            co_await error_of(pgq::with_timeout(conn.query("SELECT pg_sleep(600)"), std::chrono::milliseconds(100)));
        REQUIRE(e.has_value());
        CHECK(e->code() == pgq::make_error_code(pgq::errc::timeout));

        const auto started = std::chrono::steady_clock::now();
        auto e1 = co_await error_of(pgq::with_timeout(conn.query("SELECT 1"), std::chrono::seconds(3)));
        const auto took =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
        if (e1) {
          INFO("SELECT 1: " << e1->what());
        }
        CHECK_FALSE(e1.has_value());
        WARN("SELECT 1 behind the cancelled pg_sleep(600) answered after " << took.count() << " ms");

        const bool da = co_await wait_done(a, std::chrono::seconds(3));
        INFO("A (pg_sleep(0.5)): " << a->describe());
        CHECK(da);
        CHECK(a->value.has_value());

        const auto running =
            co_await count_rows(observer, "SELECT count(*) FROM pg_stat_activity WHERE pid = " + std::to_string(pid) +
                                              " AND state = 'active' AND query LIKE '%pg_sleep(600)%'");
        CHECK(running == 0);
        co_await check_select_1(conn);
        CHECK(conn.transaction_status() == pgq::tx_status::idle);
      },
      std::chrono::seconds(20));
}

// ---------------------------------------------------------------- 12

TEST_CASE("core 12: more than 65535 parameters fail cleanly, siblings still succeed", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto conn = co_await connect();
        pgq::params ps;
        for (int i = 0; i < 65536; ++i) ps.add(static_cast<std::int32_t>(i));
        REQUIRE(ps.size() == 65536);
        const std::string sql = "SELECT $1::int4";
        auto before = spawn_query(conn, "SELECT pg_sleep(0.1), 7::int4");
        auto big = std::make_shared<pending>();
        asio::co_spawn(conn.get_executor(), query_params_into(conn, sql, std::move(ps), big), asio::detached);
        auto after = spawn_query(conn, "SELECT 8::int4");
        const bool d0 = co_await wait_done(big, std::chrono::seconds(3));
        const bool d1 = co_await wait_done(before, std::chrono::seconds(3));
        const bool d2 = co_await wait_done(after, std::chrono::seconds(3));
        INFO("before: " << before->describe() << " | 65536 parameters: " << big->describe()
                        << " | after: " << after->describe());
        REQUIRE(d0);
        REQUIRE(big->error.has_value());
        CHECK(big->error->code() == pgq::make_error_code(pgq::errc::invalid_value));
        REQUIRE(d1);
        REQUIRE(d2);
        REQUIRE(before->value.has_value());
        REQUIRE(after->value.has_value());
        const int v1 = (*before->value)[0].get<int>(1);
        const int v2 = (*after->value)[0].get<int>(0);
        CHECK(v1 == 7);
        CHECK(v2 == 8);
        CHECK(conn.is_open());

        // Also in a batch.
        pgq::batch bt;
        pgq::params big_set;
        for (int i = 0; i < 65536; ++i) big_set.add(static_cast<std::int32_t>(i));
        bt.add("SELECT 1");
        bt.add(sql, std::move(big_set));
        auto eb = co_await error_of(conn.run_batch(bt));
        REQUIRE(eb.has_value());
        INFO("batch with 65536 parameters: " << eb->what());
        CHECK(eb->code() == pgq::make_error_code(pgq::errc::invalid_value));
        co_await check_select_1(conn);
      },
      std::chrono::seconds(20));
}

TEST_CASE("core 12: close() then connect() on the same object, then COPY and a query", "[core]") {
  run(
      []() -> asio::awaitable<void> {
        auto observer = co_await connect();
        auto conn = co_await connect();
        const std::string t = co_await make_table(observer, "core12", "id int");
        co_await check_select_1(conn);
        for (int round = 0; round < 2; ++round) {
          INFO("round " << round);
          conn.close();
          CHECK_FALSE(conn.is_open());
          co_await conn.connect(dsn());
          REQUIRE(conn.is_open());
          auto w = co_await conn.copy_in("COPY " + t + " (id) FROM STDIN");
          w.add_row(1);
          w.add_row(2);
          w.add_row(3);
          const std::uint64_t n = co_await pgq::with_timeout(w.finish(), std::chrono::seconds(3));
          CHECK(n == 3);
          auto r = co_await pgq::with_timeout(conn.query("SELECT count(*) FROM " + t), std::chrono::seconds(3));
          const auto c = r[0].get<std::int64_t>(0);
          CHECK(c == 3 * (round + 1));
        }
        co_await observer.execute("DROP TABLE " + t);
      },
      std::chrono::seconds(20));
}
