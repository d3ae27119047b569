// Cached statements switch to binary results: every value must read the same
// as from the first (text) run.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

const std::string every_type =
    "SELECT true AS b, (-32768)::int2 AS i2, 2147483647::int4 AS i4, (-9223372036854775808)::int8 AS i8, "
    "1.5::float4 AS f4, 0.1::float8 AS f8, 'NaN'::float8 AS nan, '-Infinity'::float8 AS ninf, "
    "12345678901234567890.000000000000000000123::numeric AS num, 'NaN'::numeric AS nnan, "
    "'text é'::text AS t, 'v'::varchar AS vc, 'x'::char(3) AS ch, '\\x00ff10'::bytea AS bytes, "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, '{\"k\": [1, 2.5, null]}'::jsonb AS jb, "
    "'{\"k\":  1}'::json AS js, '2024-02-29 13:45:01.5+00'::timestamptz AS tz, "
    "'2024-02-29 13:45:01'::timestamp AS ts, 'infinity'::timestamptz AS tinf, '0044-03-15 BC'::date AS d, "
    "'13:45:01.25'::time AS tm, '1 year 2 mons 3 days 04:05:06.5'::interval AS iv, "
    "'{1,NULL,3}'::int4[] AS arr, ARRAY['a b', NULL, 'c\"d'] AS tarr, 26::oid AS o, NULL::int4 AS nothing";

}  // namespace

TEST_CASE("binary results read exactly as text results", "[binary]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    // Text from a connection that never asks for binary; binary from one
    // that does (from the first run on: the statement is described first).
    pgq::connection text_conn(co_await asio::this_coro::executor);
    pgq::connect_options text_only;
    text_only.binary_results = false;
    co_await text_conn.connect(dsn(), text_only);
    auto text = co_await text_conn.query(every_type);
    auto binary = co_await conn.query(every_type);
    REQUIRE(text.columns() == binary.columns());
    CHECK(text[0][0].fmt() == pgq::format::text);
    CHECK(binary[0][0].fmt() == pgq::format::binary);
    for (int c = 0; c < text.columns(); ++c) {
      const auto a = text[0][c];
      const auto b = binary[0][c];
      INFO("column " << a.name());
      CHECK(a.text() == b.text());
      CHECK(a.to_json() == b.to_json());
      CHECK(a.is_null() == b.is_null());
    }
    auto row_t = text[0];
    auto row_b = binary[0];
    CHECK(row_t.get<bool>("b") == row_b.get<bool>("b"));
    CHECK(row_t.get<std::int16_t>("i2") == row_b.get<std::int16_t>("i2"));
    CHECK(row_t.get<int>("i4") == row_b.get<int>("i4"));
    CHECK(row_t.get<std::int64_t>("i8") == row_b.get<std::int64_t>("i8"));
    CHECK(row_t.get<float>("f4") == row_b.get<float>("f4"));
    CHECK(row_t.get<double>("f8") == row_b.get<double>("f8"));
    CHECK(row_t.get<pgq::numeric>("num") == row_b.get<pgq::numeric>("num"));
    CHECK(row_t.get<pgq::numeric>("nnan") == row_b.get<pgq::numeric>("nnan"));
    CHECK(row_t.get<std::string>("t") == row_b.get<std::string>("t"));
    CHECK(row_t.get<std::string_view>("vc") == row_b.get<std::string_view>("vc"));
    CHECK(row_t.get<pgq::bytea>("bytes") == row_b.get<pgq::bytea>("bytes"));
    CHECK(row_t.get<pgq::uuid>("id") == row_b.get<pgq::uuid>("id"));
    CHECK(row_t.get<nlohmann::json>("jb") == row_b.get<nlohmann::json>("jb"));
    CHECK(row_t.get<nlohmann::json>("js") == row_b.get<nlohmann::json>("js"));
    CHECK(row_t.get<pgq::timestamptz>("tz") == row_b.get<pgq::timestamptz>("tz"));
    CHECK(row_t.get<pgq::timestamp>("ts") == row_b.get<pgq::timestamp>("ts"));
    CHECK(row_t.get<pgq::timestamptz>("tinf") == row_b.get<pgq::timestamptz>("tinf"));
    CHECK(row_t.get<pgq::date>("d") == row_b.get<pgq::date>("d"));
    CHECK(row_t.get<std::vector<std::optional<int>>>("arr") == row_b.get<std::vector<std::optional<int>>>("arr"));
    CHECK(row_t.get<std::vector<std::optional<std::string>>>("tarr") ==
          row_b.get<std::vector<std::optional<std::string>>>("tarr"));
    CHECK(row_t.get<std::optional<int>>("nothing") == row_b.get<std::optional<int>>("nothing"));
    // A view of a number is refused in both formats alike, so code that
    // works on the first run works on the second.
    CHECK_THROWS_AS(row_t.get<std::string_view>("i4"), pgq::sql_error);
    CHECK_THROWS_AS(row_b.get<std::string_view>("i4"), pgq::sql_error);
  });
}

TEST_CASE("timestamptz stays text when the session is not in UTC", "[binary]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("SET TimeZone = 'Europe/Warsaw'");
    const std::string sql = "SELECT '2024-07-01 12:00:00+00'::timestamptz AS tz";
    auto first = co_await conn.query(sql);
    auto second = co_await conn.query(sql);
    CHECK(second[0][0].fmt() == pgq::format::text);
    CHECK(second[0][0].text() == "2024-07-01 14:00:00+02");
    CHECK(first[0].get<pgq::timestamptz>(0) == second[0].get<pgq::timestamptz>(0));
    co_await conn.execute("SET TimeZone = 'UTC'");
    auto third = co_await conn.query(sql);
    CHECK(third[0][0].fmt() == pgq::format::binary);
    CHECK(third[0][0].text() == "2024-07-01 12:00:00+00");
  });
}

TEST_CASE("types without a binary codec stay text", "[binary]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::string sql = "SELECT '10.0.0.1/8'::inet AS net, 1::int4 AS n";
    co_await conn.query(sql);
    auto again = co_await conn.query(sql);
    CHECK(again[0][0].fmt() == pgq::format::text);
    CHECK(again[0].get<std::string>("net") == "10.0.0.1/8");
    CHECK(again[0].get<std::string_view>("net") == "10.0.0.1/8");
  });
}

TEST_CASE("binary results can be turned off", "[binary]") {
  run([]() -> asio::awaitable<void> {
    pgq::connection conn(co_await asio::this_coro::executor);
    pgq::connect_options opts;
    opts.binary_results = false;
    co_await conn.connect(dsn(), opts);
    auto first = co_await conn.query("SELECT 1");
    CHECK(first[0][0].fmt() == pgq::format::text);
    auto again = co_await conn.query("SELECT 1");
    CHECK(again[0][0].fmt() == pgq::format::text);
  });
}

TEST_CASE("a statement's first run is described first and comes in binary", "[binary][cache]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const auto before = conn.stats();
    auto first = co_await conn.query("SELECT $1::int4 + 1 AS n", 41);
    CHECK(first[0][0].fmt() == pgq::format::binary);
    CHECK(first[0].get<int>("n") == 42);
    const auto after = conn.stats();
    // One statement, one miss: the Describe is no request of its own.
    CHECK(after.cache_misses == before.cache_misses + 1);
    CHECK(after.cache_hits == before.cache_hits);
    CHECK(conn.pending_requests() == 0);
    // A first run whose Parse fails reports the Parse's error, once, and
    // the connection goes on.
    std::string state;
    try {
      co_await conn.query("SELEC 1");
    } catch (const pgq::sql_error& e) {
      state = e.sqlstate();
    }
    CHECK(state == "42601");
    // Inside a transaction block too: the syntax error, not 25P02.
    co_await conn.execute("BEGIN");
    state.clear();
    try {
      co_await conn.query("SELECT nosuchcolumn FROM pg_class");
    } catch (const pgq::sql_error& e) {
      state = e.sqlstate();
    }
    CHECK(state == "42703");
    co_await conn.execute("ROLLBACK");
    auto ok = co_await conn.query("SELECT 2");
    CHECK(ok[0].get<int>(0) == 2);
  });
}

TEST_CASE("a first run cancelled while its Describe is out never runs", "[binary][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto ex = co_await asio::this_coro::executor;
    const std::string table = unique_name("describe_cancel");
    const std::string create = "CREATE TABLE " + table + " (v int)";
    co_await conn.execute(create);
    std::exception_ptr failure;
    try {
      // A Describe behind a sleep: the INSERT waits for it, unsent, and is
      // cancelled there.
      bool slept = false;
      asio::co_spawn(
          ex,
          [&conn, &slept]() -> asio::awaitable<void> {
            co_await conn.query("SELECT pg_sleep(0.3)");
            slept = true;
          },
          asio::detached);
      asio::cancellation_signal cancel;
      bool cancelled = false;
      const std::string insert = "INSERT INTO " + table + " VALUES (1)";
      asio::co_spawn(ex, conn.execute(insert),
                     asio::bind_cancellation_slot(cancel.slot(), [&cancelled](std::exception_ptr e, std::uint64_t) {
                       try {
                         if (e) std::rethrow_exception(e);
                       } catch (const pgq::sql_error& err) {
                         cancelled = err.code() == pgq::errc::cancelled;
                       }
                     }));
      asio::steady_timer timer(ex);
      timer.expires_after(std::chrono::milliseconds(50));
      co_await timer.async_wait(asio::use_awaitable);
      cancel.emit(asio::cancellation_type::terminal);
      while (!slept) {
        timer.expires_after(std::chrono::milliseconds(10));
        co_await timer.async_wait(asio::use_awaitable);
      }
      CHECK(cancelled);
      const std::string count_sql = "SELECT count(*)::int4 FROM " + table;
      auto r = co_await conn.query(count_sql);
      CHECK(r[0].get<int>(0) == 0);
      // The statement was prepared all the same: its next run uses it.
      co_await conn.execute(insert);
      auto again = co_await conn.query(count_sql);
      CHECK(again[0].get<int>(0) == 1);
    } catch (...) {
      failure = std::current_exception();
    }
    const std::string drop = "DROP TABLE " + table;
    co_await conn.execute(drop);
    if (failure) std::rethrow_exception(failure);
  });
}
