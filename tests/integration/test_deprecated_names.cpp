// The names the API had before issue 14 made it consistent still compile and
// still work, with a deprecation warning naming the new one (silenced here:
// this file is the one place that must use them).
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/this_coro.hpp>

#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

using namespace pgq_test;
namespace asio = boost::asio;

TEST_CASE("deprecated names: pool_options::dsn, statement_cache_size and connect_timeout still apply",
          "[api][deprecated]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    // Designated initializers written before `connect` came still compile.
    const pgq::pool_options o{.dsn = with_setting(dsn(), "application_name", "pgq_old_names"),
                              .max_size = 1,
                              .statement_cache_size = 0,
                              .connect_timeout = std::chrono::seconds(5)};
    pgq::pool pool(pool_executor(ex), o);
    auto r = co_await pool.query("SELECT current_setting('application_name')");
    CHECK(r[0].get<std::string>(0) == "pgq_old_names");
    auto l = co_await pool.acquire();
    co_await l->execute("SELECT $1::int4", 1);
    co_await l->execute("SELECT $1::int4", 1);
    CHECK(l->stats().statements_prepared == 0);
    l.release();
    co_await pool.close();
  });
}

TEST_CASE("deprecated names: row::as, row_stream::rows_read, copy_reader::rows, batch::add_params",
          "[api][deprecated]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto r = co_await conn.query("SELECT 1::int4, 'x'::text");
    const auto [a, b] = r[0].as<int, std::string>();
    CHECK(a == 1);
    CHECK(b == "x");
    auto s = co_await conn.stream("SELECT g FROM generate_series(1, 3) g");
    while (co_await s.next()) {
    }
    CHECK(s.rows_read() == 3);
    auto reader = co_await conn.copy_out("COPY (SELECT g FROM generate_series(1, 4) g) TO STDOUT");
    while (co_await reader.next()) {
    }
    CHECK(reader.rows() == 4);
    pgq::batch bt;
    bt.add_params("SELECT $1::int4", pgq::make_params(5));
    const auto results = co_await conn.run_batch(bt);
    CHECK(results.at(0)[0].get<int>(0) == 5);
  });
}

TEST_CASE("deprecated names: listener_options::reconnect_delay and migrator_options::connection compile",
          "[api][deprecated]") {
  pgq::listener_options lo;
  lo.reconnect_delay = std::chrono::milliseconds(10);
  lo.max_reconnect_delay = std::chrono::milliseconds(20);
  CHECK(lo.backoff_initial == std::chrono::milliseconds(100));  // applied by the listener, not here
  pgq::migrator_options mo;
  mo.connection = pgq::connect_options{};
  mo.connection->connect_timeout = std::chrono::seconds(3);
  const pgq::migrator m("", std::vector<pgq::migration>{}, mo);
  REQUIRE(m.options().connect.connect_timeout.has_value());
  CHECK(*m.options().connect.connect_timeout == std::chrono::seconds(3));  // moved to `connect`
  CHECK_FALSE(m.options().connection.has_value());
}

#pragma GCC diagnostic pop
