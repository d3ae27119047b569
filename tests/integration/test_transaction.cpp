#include "support.hpp"
#include "transaction_sql.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <stdexcept>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

pgq::pool_options options(std::size_t max_size = 4) {
  pgq::pool_options o;
  o.conninfo = dsn();
  o.max_size = max_size;
  return o;
}

// A fresh table for one test, dropped by the caller.
asio::awaitable<std::string> make_table(pgq::connection& c) {
  const std::string name = unique_name("tx");
  co_await c.execute("CREATE TABLE " + name + " (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)");
  co_return name;
}

asio::awaitable<int> count_rows(pgq::connection& c, const std::string& table) {
  auto r = co_await c.query("SELECT count(*)::int4 FROM " + table);
  co_return r[0].get<int>(0);
}

// Never co_await inside a Catch macro: GCC 12 evaluates the operand more
// than once.
#define CHECK_ROWS(conn, table, expected)               \
  do {                                                  \
    const int rows_ = co_await count_rows(conn, table); \
    CHECK(rows_ == (expected));                         \
  } while (false)

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

}  // namespace

TEST_CASE("begin_statement spells the options", "[transaction]") {
  CHECK(pgq::begin_statement({}) == "BEGIN");
  CHECK(pgq::begin_statement({.level = pgq::isolation::serializable, .read_only = true, .deferrable = true}) ==
        "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE");
  CHECK(pgq::begin_statement({.level = pgq::isolation::repeatable_read}) == "BEGIN ISOLATION LEVEL REPEATABLE READ");
  CHECK(pgq::begin_statement({.read_only = true}) == "BEGIN READ ONLY");
}

TEST_CASE("commit is visible, rollback is not", "[transaction]") {
  run([]() -> asio::awaitable<void> {
    auto c = co_await connect();
    const auto t = co_await make_table(c);
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), options());
    {
      auto tx = co_await pool.begin();
      co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1)");
      CHECK_ROWS(c, t, 0);  // not yet visible outside
      co_await tx.commit();
      CHECK_FALSE(tx.active());
    }
    CHECK_ROWS(c, t, 1);
    {
      auto tx = co_await pool.begin();
      co_await tx.execute("INSERT INTO " + t + " (id) VALUES (2)");
      co_await tx.rollback();
      try {
        co_await tx.query("SELECT 1");
        FAIL("query after rollback");
      } catch (const pgq::sql_error& e) {
        CHECK(e.code() == pgq::errc::transaction_done);
      }
    }
    CHECK_ROWS(c, t, 1);
    co_await c.execute("DROP TABLE " + t);
  });
}

TEST_CASE("a dropped transaction rolls back, on a pool and on a bare connection", "[transaction]") {
  run([]() -> asio::awaitable<void> {
    auto c = co_await connect();
    const auto t = co_await make_table(c);
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), options(1));
    {
      auto tx = co_await pool.begin();
      co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1)");
    }  // no commit
    // The single pool connection is clean for the next user.
    // Not inside the old transaction: that one had an xid (it inserted).
    // pg_current_xact_id_if_assigned() is 13's name for txid_current_if_assigned().
    const std::string xid =
        c.server_version() >= 130000 ? "pg_current_xact_id_if_assigned()" : "txid_current_if_assigned()";
    auto status = co_await pool.query("SELECT " + xid + " IS NULL");
    CHECK(status[0].get<bool>(0));
    CHECK_ROWS(c, t, 0);

    auto bare = co_await connect();
    {
      auto tx = co_await bare.begin();
      co_await tx.execute("INSERT INTO " + t + " (id) VALUES (2)");
    }
    auto r = co_await bare.query("SELECT count(*)::int4 FROM " + t);
    CHECK(r[0].get<int>(0) == 0);
    CHECK(bare.transaction_status() == pgq::tx_status::idle);
    co_await c.execute("DROP TABLE " + t);
  });
}

TEST_CASE("transact commits on return and rolls back on exception", "[transaction]") {
  run([]() -> asio::awaitable<void> {
    auto c = co_await connect();
    const auto t = co_await make_table(c);
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), options());
    // The lambdas are named first: GCC 12 destroys a capturing lambda
    // temporary twice when it is written inside a co_await expression.
    auto insert_two = [t](pgq::transaction& tx) -> asio::awaitable<int> {
      co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1), (2)");
      auto r = co_await tx.query("SELECT sum(id)::int4 FROM " + t);
      co_return r[0].get<int>(0);
    };
    const int answer = co_await pgq::transact(pool, {}, insert_two);
    CHECK(answer == 3);
    CHECK_ROWS(c, t, 2);
    try {
      auto change_mind = [t](pgq::transaction& tx) -> asio::awaitable<void> {
        co_await tx.execute("INSERT INTO " + t + " (id) VALUES (3)");
        throw std::runtime_error("changed my mind");
      };
      co_await pgq::transact(pool, {}, change_mind);
      FAIL("no exception");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "changed my mind");
    }
    CHECK_ROWS(c, t, 2);
    // A server error inside: rolled back, rethrown with its SQLSTATE.
    try {
      auto duplicate = [t](pgq::transaction& tx) -> asio::awaitable<void> {
        co_await tx.execute("INSERT INTO " + t + " (id) VALUES (4)");
        co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1)");  // duplicate
      };
      co_await pgq::transact(c, {}, duplicate);
      FAIL("no exception");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "23505");
    }
    CHECK_ROWS(c, t, 2);
    CHECK(c.transaction_status() == pgq::tx_status::idle);
    co_await c.execute("DROP TABLE " + t);
  });
}

TEST_CASE("savepoints: a nested rollback keeps the outer work", "[transaction]") {
  run([]() -> asio::awaitable<void> {
    auto c = co_await connect();
    const auto t = co_await make_table(c);
    {
      auto tx = co_await c.begin();
      co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1)");
      {
        auto inner = co_await tx.savepoint();
        co_await inner.execute("INSERT INTO " + t + " (id) VALUES (2)");
        co_await inner.rollback();
      }
      {
        auto inner = co_await tx.savepoint();
        co_await inner.execute("INSERT INTO " + t + " (id) VALUES (3)");
        {
          auto deeper = co_await inner.savepoint();
          co_await deeper.execute("INSERT INTO " + t + " (id) VALUES (4)");
        }  // dropped: rolls back to its savepoint only
        co_await inner.commit();
      }
      {
        auto inner = co_await tx.savepoint();
        try {
          co_await inner.execute("INSERT INTO " + t + " (id) VALUES (1)");  // duplicate
          FAIL("no error");
        } catch (const pgq::sql_error& e) {
          CHECK(e.sqlstate() == "23505");
        }
        co_await inner.rollback();  // the outer transaction is usable again
      }
      co_await tx.execute("INSERT INTO " + t + " (id) VALUES (5)");
      co_await tx.commit();
    }
    auto r = co_await c.query("SELECT string_agg(id::text, ',' ORDER BY id) FROM " + t);
    CHECK(r[0].get<std::string>(0) == "1,3,5");
    co_await c.execute("DROP TABLE " + t);
  });
}

TEST_CASE("commit of a failed transaction reports the failure", "[transaction]") {
  run([]() -> asio::awaitable<void> {
    auto c = co_await connect();
    auto tx = co_await c.begin();
    try {
      co_await tx.query("SELECT 1/0");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "22012");
    }
    try {
      co_await tx.commit();
      FAIL("commit succeeded");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "25P02");
    }
    CHECK(c.transaction_status() == pgq::tx_status::idle);
  });
}

namespace {

// Two serializable transactions that each read the sum and insert it: one of
// them must fail with 40001 and, retried, succeed. Neither inserts before
// both have read (`reads` counts the reads), so the conflict happens however
// slowly the second one connects.
asio::awaitable<void> serializable_worker(pgq::pool* pool, std::string table, int id, int* attempts, int* reads,
                                          int* done) {
  auto work = [table, id, attempts, reads](pgq::transaction& tx) -> asio::awaitable<void> {
    ++*attempts;
    auto r = co_await tx.query("SELECT coalesce(sum(v), 0)::int4 FROM " + table);
    const int sum = r[0].get<int>(0);
    ++*reads;
    asio::steady_timer t(co_await asio::this_coro::executor);
    while (*reads < 2) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    co_await tx.execute("INSERT INTO " + table + " (id, v) VALUES ($1, $2)", id, sum + 1);
  };
  co_await pgq::transact(*pool, {.level = pgq::isolation::serializable, .retries = 5}, work);
  ++*done;
}

}  // namespace

TEST_CASE("serializable conflicts are retried to success", "[transaction]") {
  run([]() -> asio::awaitable<void> {
    auto c = co_await connect();
    const auto t = co_await make_table(c);
    auto ex = co_await asio::this_coro::executor;
    pgq::pool pool(pool_executor(ex), options());
    int attempts = 0;
    int reads = 0;
    int done = 0;
    asio::co_spawn(ex, serializable_worker(&pool, t, 1, &attempts, &reads, &done), asio::detached);
    asio::co_spawn(ex, serializable_worker(&pool, t, 2, &attempts, &reads, &done), asio::detached);
    while (done < 2) co_await sleep_for(std::chrono::milliseconds(10));
    CHECK(attempts >= 3);  // at least one conflict happened and was retried
    // Serial order: the second saw the first's row.
    auto r = co_await c.query("SELECT string_agg(v::text, ',' ORDER BY v) FROM " + t);
    CHECK(r[0].get<std::string>(0) == "1,2");
    co_await c.execute("DROP TABLE " + t);
  });
}

TEST_CASE("without retries a serialization failure is rethrown as retryable", "[transaction]") {
  run([]() -> asio::awaitable<void> {
    auto c = co_await connect();
    const auto t = co_await make_table(c);
    co_await c.execute("INSERT INTO " + t + " VALUES (1, 0)");
    pgq::pool pool(pool_executor(co_await asio::this_coro::executor), options());
    auto a = co_await pool.begin({.level = pgq::isolation::repeatable_read});
    auto b = co_await pool.begin({.level = pgq::isolation::repeatable_read});
    co_await a.query("SELECT * FROM " + t);
    co_await b.query("SELECT * FROM " + t);
    co_await a.execute("UPDATE " + t + " SET v = 1 WHERE id = 1");
    co_await a.commit();
    try {
      co_await b.execute("UPDATE " + t + " SET v = 2 WHERE id = 1");
      FAIL("no conflict");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "40001");
      CHECK(pgq::is_retryable(e.code()));
    }
    co_await b.rollback();
    co_await c.execute("DROP TABLE " + t);
  });
}

TEST_CASE("a connection lost before COMMIT is connection_lost, during COMMIT commit_unknown", "[transaction]") {
  run([]() -> asio::awaitable<void> {
    {
      auto victim = co_await connect();
      auto killer = co_await connect();
      auto tx = co_await victim.begin();
      co_await tx.query("SELECT 1");
      co_await killer.query("SELECT pg_terminate_backend($1::int4)", victim.backend_pid());
      co_await sleep_for(std::chrono::milliseconds(100));
      try {
        co_await tx.commit();
        FAIL("commit succeeded");
      } catch (const pgq::sql_error& e) {
        CHECK(e.code() == pgq::errc::connection_lost);
      }
    }
    // A deferred trigger that kills its own backend: the connection dies
    // while the server runs the COMMIT, so the client cannot know the outcome.
    auto c = co_await connect();
    const auto t = co_await make_table(c);
    co_await c.execute("CREATE OR REPLACE FUNCTION " + t +
                       "_die() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$");
    co_await c.execute("CREATE CONSTRAINT TRIGGER die AFTER INSERT ON " + t +
                       " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION " + t + "_die()");
    auto victim = co_await connect();
    auto tx = co_await victim.begin();
    co_await tx.execute("INSERT INTO " + t + " (id) VALUES (1)");
    try {
      co_await tx.commit();
      FAIL("commit succeeded");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::commit_unknown);
      CHECK_THAT(e.what(), Catch::Contains("may or may not"));
    }
    co_await c.execute("DROP TABLE " + t);
    co_await c.execute("DROP FUNCTION " + t + "_die()");
  });
}
