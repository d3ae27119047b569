// Rule 11 against a real server: statements of one transaction pipelined by
// many coroutines share one Sync per burst; an error or a cancel among them
// fails the transaction, the others say which statement failed first.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <string>
#include <vector>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

struct outcomes {
  int ok = 0;
  int done = 0;
  std::vector<pgq::sql_error> errors;
};

// Rows first, first + step, ... up to last, into `table`; the row `bad`
// divides by zero. Stops at its first error.
asio::awaitable<void> inserter(pgq::transaction* tx, std::string table, int first, int step, int last, int bad,
                               outcomes* o) {
  const std::string good = "INSERT INTO " + table + " (id, v) VALUES ($1, $1)";
  const std::string failing = "INSERT INTO " + table + " (id, v) VALUES ($1, 1 / ($1 - $1)) /* the bad one */";
  try {
    for (int i = first; i <= last; i += step) {
      const std::string& sql = i == bad ? failing : good;
      const std::uint64_t n = co_await tx->execute(sql, i);
      if (n == 1) ++o->ok;
    }
  } catch (const pgq::sql_error& e) {
    o->errors.push_back(e);
  }
  ++o->done;
}

asio::awaitable<void> wait_done(const int& done, int n) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (done < n) {
    t.expires_after(std::chrono::milliseconds(2));
    co_await t.async_wait(asio::use_awaitable);
  }
}

asio::awaitable<std::string> make_table(pgq::connection& c) {
  const std::string name = unique_name("burst");
  co_await c.execute("CREATE TABLE " + name + " (id int PRIMARY KEY, v int NOT NULL)");
  co_return name;
}

asio::awaitable<int> count_rows(pgq::connection& c, const std::string& table) {
  auto r = co_await c.query("SELECT count(*)::int4 FROM " + table);
  co_return r[0].get<int>(0);
}

// 50 coroutines, 1,000 rows, on `tx`.
void spawn_inserters(const asio::any_io_executor& ex, pgq::transaction* tx, const std::string& table, int bad,
                     outcomes* o) {
  for (int k = 1; k <= 50; ++k) asio::co_spawn(ex, inserter(tx, table, k, 50, 1000, bad, o), asio::detached);
}

}  // namespace

TEST_CASE("1,000 pipelined INSERTs from 50 coroutines in one transaction commit exactly 1,000 rows",
          "[pipeline][burst]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    const std::string table = co_await make_table(conn);
    {
      auto tx = co_await conn.begin();
      outcomes o;
      spawn_inserters(ex, &tx, table, 0, &o);
      co_await wait_done(o.done, 50);
      CHECK(o.ok == 1000);
      CHECK(o.errors.empty());
      co_await tx.commit();
    }
    const int rows = co_await count_rows(conn, table);
    CHECK(rows == 1000);
    // The same with a raw BEGIN / COMMIT through execute() (what W5p does).
    co_await conn.execute("TRUNCATE " + table);
    co_await conn.execute("BEGIN");
    {
      outcomes o;
      const std::string sql = "INSERT INTO " + table + " (id, v) VALUES ($1, $1)";
      int done = 0;
      auto one = [](pgq::connection* c, std::string s, int id, outcomes* out, int* d) -> asio::awaitable<void> {
        const std::uint64_t n = co_await c->execute(s, id);
        out->ok += static_cast<int>(n);
        ++*d;
      };
      for (int i = 1; i <= 1000; ++i) asio::co_spawn(ex, one(&conn, sql, i, &o, &done), asio::detached);
      co_await wait_done(done, 1000);
      CHECK(o.ok == 1000);
    }
    co_await conn.execute("COMMIT");
    const int again = co_await count_rows(conn, table);
    CHECK(again == 1000);
    CHECK(conn.transaction_status() == pgq::tx_status::idle);
    co_await conn.execute("DROP TABLE " + table);
  });
}

TEST_CASE("a statement failing among pipelined ones of a transaction: the others report 25P02 naming it",
          "[pipeline][burst]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    const std::string table = co_await make_table(conn);
    {
      auto tx = co_await conn.begin();
      outcomes o;
      spawn_inserters(ex, &tx, table, 500, &o);
      co_await wait_done(o.done, 50);
      int failed_itself = 0;
      int skipped = 0;
      for (const auto& e : o.errors) {
        INFO(e.what());
        if (e.sqlstate() == "22012") {
          ++failed_itself;
          continue;
        }
        CHECK(e.sqlstate() == "25P02");
        CHECK_THAT(e.what(), Catch::Contains("the bad one"));
        if (std::string(e.what()).find("not run") != std::string::npos) ++skipped;
      }
      CHECK(failed_itself == 1);
      CHECK(o.errors.size() == 50);  // every coroutine stopped at an error
      CHECK(skipped > 0);            // some shared the failing one's burst
      CHECK(conn.transaction_status() == pgq::tx_status::in_error);
      auto commit = co_await error_of(tx.commit());
      REQUIRE(commit.has_value());
      CHECK(commit->sqlstate() == "25P02");  // COMMIT answered ROLLBACK
      CHECK_THAT(commit->what(), Catch::Contains("the bad one"));
    }
    const int rows = co_await count_rows(conn, table);
    CHECK(rows == 0);
    CHECK(conn.transaction_status() == pgq::tx_status::idle);
    co_await conn.execute("DROP TABLE " + table);
  });
}

TEST_CASE("a statement cancelled in the middle of a burst fails the transaction, and the connection goes on",
          "[pipeline][burst][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    const std::string table = co_await make_table(conn);
    {
      auto tx = co_await conn.begin();
      outcomes o;
      bool timed_out = false;
      int sleeper_done = 0;
      auto sleeper = [](pgq::transaction* t, bool* out, int* d) -> asio::awaitable<void> {
        try {
          co_await pgq::with_timeout(t->query("SELECT pg_sleep(5)"), std::chrono::milliseconds(150));
        } catch (const pgq::sql_error& e) {
          *out = e.code() == pgq::errc::timeout;
        }
        ++*d;
      };
      for (int k = 1; k <= 25; ++k) asio::co_spawn(ex, inserter(&tx, table, k, 50, 1000, 0, &o), asio::detached);
      asio::co_spawn(ex, sleeper(&tx, &timed_out, &sleeper_done), asio::detached);
      for (int k = 26; k <= 50; ++k) asio::co_spawn(ex, inserter(&tx, table, k, 50, 1000, 0, &o), asio::detached);
      const auto start = std::chrono::steady_clock::now();
      co_await wait_done(sleeper_done, 1);
      co_await wait_done(o.done, 50);
      CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));  // the sleep was cut short
      CHECK(timed_out);
      CHECK(o.errors.size() == 50);
      int naming = 0;
      for (const auto& e : o.errors) {
        INFO(e.what());
        CHECK(e.sqlstate() == "25P02");
        if (std::string(e.what()).find("pg_sleep(5)") != std::string::npos) ++naming;
      }
      CHECK(naming == 50);
      co_await tx.rollback();
    }
    const int rows = co_await count_rows(conn, table);
    CHECK(rows == 0);
    auto r = co_await conn.query("SELECT 'usable'");
    CHECK(r[0].get<std::string>(0) == "usable");
    co_await conn.execute("DROP TABLE " + table);
  });
}

TEST_CASE("SAVEPOINT and ROLLBACK TO between bursts of a transaction", "[pipeline][burst]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    const std::string table = co_await make_table(conn);
    {
      auto tx = co_await conn.begin();
      outcomes first;
      for (int k = 1; k <= 10; ++k) asio::co_spawn(ex, inserter(&tx, table, k, 10, 100, 0, &first), asio::detached);
      co_await wait_done(first.done, 10);
      CHECK(first.ok == 100);
      {
        auto sp = co_await tx.savepoint();
        outcomes second;
        for (int k = 101; k <= 110; ++k) {
          asio::co_spawn(ex, inserter(&sp, table, k, 10, 200, 150, &second), asio::detached);
        }
        co_await wait_done(second.done, 10);
        CHECK(second.errors.size() == 10);
        CHECK(conn.transaction_status() == pgq::tx_status::in_error);
        co_await sp.rollback();  // ROLLBACK TO SAVEPOINT: the block works again
      }
      CHECK(conn.transaction_status() == pgq::tx_status::in_transaction);
      outcomes third;
      for (int k = 201; k <= 210; ++k) asio::co_spawn(ex, inserter(&tx, table, k, 10, 300, 0, &third), asio::detached);
      co_await wait_done(third.done, 10);
      CHECK(third.ok == 100);
      CHECK(third.errors.empty());
      co_await tx.commit();
    }
    auto r =
        co_await conn.query("SELECT count(*)::int4, min(id), max(id) FROM " + table + " WHERE id BETWEEN 101 AND 200");
    CHECK(r[0].get<int>(0) == 0);  // the savepoint's rows were rolled back
    const int rows = co_await count_rows(conn, table);
    CHECK(rows == 200);
    co_await conn.execute("DROP TABLE " + table);
  });
}
