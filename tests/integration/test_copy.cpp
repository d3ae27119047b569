// COPY FROM STDIN and TO STDOUT: round trips, bad rows, early exits.
#include "support.hpp"

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <tuple>
#include <vector>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

asio::awaitable<std::int64_t> count_rows(pgq::connection& conn, const std::string& table) {
  const std::string sql = "SELECT count(*) FROM " + table;
  auto r = co_await conn.query(sql);
  co_return r[0].get<std::int64_t>(0);
}

const char* const all_types_table =
    "(b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric, t text, by bytea, "
    "u uuid, j jsonb, ts timestamp, tz timestamptz, d date, arr int4[], tarr text[])";

// Every type through COPY in `format`, then back out, compared with the server's
// own rendering of the same values inserted with parameters.
asio::awaitable<void> round_trip_all_types(const char* format) {
  auto conn = co_await connect();
  co_await conn.execute("SET TimeZone = 'UTC'");
  const std::string a = unique_name("copy_a"), b = unique_name("copy_b");
  co_await conn.execute("CREATE TEMP TABLE " + a + " " + all_types_table);
  co_await conn.execute("CREATE TEMP TABLE " + b + " " + all_types_table);

  const pgq::timestamp ts = std::chrono::local_days(std::chrono::year(2024) / 2 / 29) + std::chrono::hours(13) +
                            std::chrono::microseconds(123456);
  const auto tz =
      pgq::timestamptz(std::chrono::sys_days(std::chrono::year(1999) / 12 / 31) + std::chrono::seconds(86399));
  const auto day = pgq::date(std::chrono::sys_days(std::chrono::year(2000) / 1 / 1));
  const pgq::uuid id = pgq::uuid::parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  const std::vector<std::optional<int>> arr{1, std::nullopt, -3};
  const std::vector<std::string> tarr{"a b", "q\"uote", "back\\slash", "tab\there", ""};
  const pgq::bytea bytes(std::string_view("\0\t\\\xff\n", 5));
  const std::string tricky = "tab\there\nnew line\\back slash\r\rcarriage \\N not null";
  const nlohmann::json doc = nlohmann::json::parse(R"({"k": [1, 2.5, "x\ty"], "n": null})");

  // Named values only: GCC 12 destroys brace-initialised temporaries in a
  // co_await expression twice.
  const std::int16_t i2 = -32768;
  const std::int32_t i4 = 2147483647;
  const std::int64_t i8 = -9223372036854775807LL - 1;
  const float f4 = 1.5f;
  const double f8 = -2.25;
  const pgq::numeric num("-12345678901234567890.000000001");
  const std::optional<bool> null_b;
  const std::optional<std::int16_t> null_i2;
  const std::optional<std::int32_t> null_i4;
  const std::optional<std::int64_t> null_i8;
  const std::optional<float> null_f4;
  const std::optional<double> null_f8;
  const std::optional<pgq::numeric> null_n;
  const std::optional<std::string> null_t;
  const std::optional<pgq::bytea> null_by;
  const std::optional<pgq::uuid> null_u;
  const std::optional<nlohmann::json> null_j;
  const std::optional<pgq::timestamp> null_ts;
  const std::optional<pgq::timestamptz> null_tz;
  const std::optional<pgq::date> null_d;
  const std::string copy_sql = std::string("COPY ") + a + " FROM STDIN WITH (FORMAT " + format + ")";
  auto w = co_await conn.copy_in(copy_sql);
  CHECK(w.binary() == (std::string(format) == "binary"));
  co_await w.write_row(true, i2, i4, i8, f4, f8, num, tricky, bytes, id, doc, ts, tz, day, arr, tarr);
  // A row of NULLs.
  co_await w.write_row(null_b, null_i2, null_i4, null_i8, null_f4, null_f8, null_n, null_t, null_by, null_u, null_j,
                       null_ts, null_tz, null_d, std::nullopt, std::nullopt);
  const std::uint64_t copied = co_await w.finish();
  CHECK(copied == 2);

  const std::string insert =
      "INSERT INTO " + b + " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
  co_await conn.execute(insert, true, i2, i4, i8, f4, f8, num, tricky, bytes, id, doc, ts, tz, day, arr, tarr);
  co_await conn.execute("INSERT INTO " + b + " DEFAULT VALUES");
  // Same rows, value by value, as the server sees them.
  auto diff = co_await conn.query("SELECT count(*) FROM ((TABLE " + a + " EXCEPT ALL TABLE " + b +
                                  ") UNION ALL (TABLE " + b + " EXCEPT ALL TABLE " + a + ")) d");
  CHECK(diff[0].get<std::int64_t>(0) == 0);

  // And back out: the same bytes as the server's own text of the values.
  std::string out;
  const std::string out_sql = std::string("COPY ") + a + " TO STDOUT WITH (FORMAT " + format + ")";
  auto reader = co_await conn.copy_out(out_sql);
  int chunks = 0;
  while (auto chunk = co_await reader.next()) {
    out.append(*chunk);
    ++chunks;
  }
  CHECK(reader.rows_affected() == 2);
  CHECK(chunks >= 2);
  // Load what came out into a third table: identical again.
  const std::string c = unique_name("copy_c");
  co_await conn.execute("CREATE TEMP TABLE " + c + " " + all_types_table);
  const std::string in_c = std::string("COPY ") + c + " FROM STDIN WITH (FORMAT " + format + ")";
  auto w2 = co_await conn.copy_in(in_c);
  co_await w2.write(out);
  const std::uint64_t copied_c = co_await w2.finish();
  CHECK(copied_c == 2);
  auto diff2 = co_await conn.query("SELECT count(*) FROM ((TABLE " + a + " EXCEPT ALL TABLE " + c +
                                   ") UNION ALL (TABLE " + c + " EXCEPT ALL TABLE " + a + ")) d");
  CHECK(diff2[0].get<std::int64_t>(0) == 0);
}

}  // namespace

TEST_CASE("copy: every supported type round-trips through text COPY in and out", "[copy]") {
  run([]() -> asio::awaitable<void> { co_await round_trip_all_types("text"); });
}

TEST_CASE("copy: every supported type round-trips through binary COPY in and out", "[copy]") {
  run([]() -> asio::awaitable<void> { co_await round_trip_all_types("binary"); });
}

TEST_CASE("copy: doubles and floats arrive bit for bit through text COPY", "[copy]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::string t = unique_name("copy_floats");
    co_await conn.execute("CREATE TEMP TABLE " + t + " (k int, d float8, f float4)");
    const std::vector<double> doubles = {0.1,
                                         -0.0,
                                         1.0 / 3,
                                         1e300,
                                         -1e-300,
                                         5e-324,
                                         123456789012345680.0,
                                         std::numeric_limits<double>::max(),
                                         std::numeric_limits<double>::infinity(),
                                         -std::numeric_limits<double>::infinity(),
                                         2.5e-5,
                                         1e16};
    const std::vector<float> floats = {0.1f,        -0.0f,   1.0f / 3, 3.4e38f, 1e-45f,
                                       16777217.0f, 2.5e-5f, 1e7f,     0.0f,    std::numeric_limits<float>::infinity(),
                                       -1.5f,       100.0f};
    auto w = co_await conn.copy_in("COPY " + t + " FROM STDIN");
    for (std::size_t i = 0; i < doubles.size(); ++i) co_await w.write_row(static_cast<int>(i), doubles[i], floats[i]);
    co_await w.write_row(99, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN());
    const std::uint64_t copied = co_await w.finish();
    CHECK(copied == doubles.size() + 1);
    auto r = co_await conn.query("SELECT k, d, f FROM " + t + " ORDER BY k");
    REQUIRE(static_cast<std::size_t>(r.size()) == doubles.size() + 1);
    for (std::size_t i = 0; i < doubles.size(); ++i) {
      INFO("row " << i);
      CHECK(std::bit_cast<std::uint64_t>(r[static_cast<int>(i)].get<double>(1)) ==
            std::bit_cast<std::uint64_t>(doubles[i]));
      CHECK(std::bit_cast<std::uint32_t>(r[static_cast<int>(i)].get<float>(2)) ==
            std::bit_cast<std::uint32_t>(floats[i]));
    }
    CHECK(std::isnan(r[static_cast<int>(doubles.size())].get<double>(1)));
    CHECK(std::isnan(r[static_cast<int>(doubles.size())].get<float>(2)));
  });
}

TEST_CASE("copy: 1,000,000 rows in, and out again, with a range of tuples", "[copy]") {
  run(
      []() -> asio::awaitable<void> {
        auto conn = co_await connect();
        const std::string t = unique_name("copy_big");
        co_await conn.execute("CREATE TEMP TABLE " + t + " (id int, name text, price float8)");
        std::vector<std::tuple<int, std::string, double>> rows;
        rows.reserve(1'000'000);
        for (int i = 0; i < 1'000'000; ++i) rows.emplace_back(i, "item " + std::to_string(i), i * 0.25);
        const std::string sql = "COPY " + t + " (id, name, price) FROM STDIN";
        const std::uint64_t n = co_await conn.copy_in(sql, rows);
        CHECK(n == 1'000'000);
        auto check =
            co_await conn.query("SELECT count(*), sum(id), sum(price) FROM " + t + " WHERE name = 'item ' || id");
        CHECK(check[0].get<std::int64_t>(0) == 1'000'000);
        CHECK(check[0].get<std::string>(1) == "499999500000");
        CHECK(check[0].get<double>(2) == Approx(124999875000.0));

        std::uint64_t lines = 0, bytes = 0;
        const std::string out = "COPY " + t + " TO STDOUT";
        const std::uint64_t out_rows = co_await conn.copy_out(out, [&](std::string_view line) {
          ++lines;
          bytes += line.size();
        });
        CHECK(out_rows == 1'000'000);
        CHECK(lines == 1'000'000);
        CHECK(bytes > 10'000'000);
      },
      120s);
}

TEST_CASE("copy: a bad row aborts the COPY, nothing is committed, the connection goes on", "[copy]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::string t = unique_name("copy_bad");
    co_await conn.execute("CREATE TABLE " + t + " (id int PRIMARY KEY, v text)");
    const std::string sql = "COPY " + t + " FROM STDIN";
    auto w = co_await conn.copy_in(sql);
    for (int i = 0; i < 50'000; ++i) co_await w.write_row(i, "ok");
    co_await w.write("not-a-number\toops\n");
    for (int i = 50'000; i < 60'000; ++i) co_await w.write_row(i, "ok");
    std::string state;
    try {
      co_await w.finish();
    } catch (const pgq::sql_error& e) {
      state = e.diag().sqlstate;
    }
    CHECK(state == "22P02");
    const std::int64_t n = co_await count_rows(conn, t);
    CHECK(n == 0);
    // A duplicate key is caught the same way.
    auto w2 = co_await conn.copy_in(sql);
    co_await w2.write_row(1, "a");
    co_await w2.write_row(1, "b");
    state.clear();
    try {
      co_await w2.finish();
    } catch (const pgq::sql_error& e) {
      state = e.diag().sqlstate;
    }
    CHECK(state == "23505");
    const std::int64_t n2 = co_await count_rows(conn, t);
    CHECK(n2 == 0);
    co_await conn.execute("DROP TABLE " + t);
  });
}

TEST_CASE("copy: abort(), a writer dropped unfinished and a reader dropped early", "[copy]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::string t = unique_name("copy_drop");
    co_await conn.execute("CREATE TABLE " + t + " (id int)");
    const std::string sql = "COPY " + t + " FROM STDIN";
    {
      auto w = co_await conn.copy_in(sql);
      co_await w.write_row(1);
      co_await w.flush();
      co_await w.abort("changed my mind");
    }
    {
      auto w = co_await conn.copy_in(sql);
      for (int i = 0; i < 100'000; ++i) co_await w.write_row(i);
      // destroyed without finish(): aborted
    }
    auto r = co_await conn.query("SELECT 42");
    CHECK(r[0].get<int>(0) == 42);
    const std::int64_t n = co_await count_rows(conn, t);
    CHECK(n == 0);
    {
      auto reader =
          co_await conn.copy_out("COPY (SELECT i, pg_sleep(0.0005) FROM generate_series(1, 1000000) i) TO STDOUT");
      auto first = co_await reader.next();
      CHECK(first.has_value());
    }
    const auto start = std::chrono::steady_clock::now();
    auto r2 = co_await conn.query("SELECT 43");
    CHECK(r2[0].get<int>(0) == 43);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    co_await conn.execute("DROP TABLE " + t);
  });
}

TEST_CASE("copy: a copy_out() cancelled before its first row cancels the query on the server", "[copy]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    // The server announces the COPY with its first rows: while pg_sleep runs,
    // copy_out() is still waiting.
    const auto start = std::chrono::steady_clock::now();
    bool timed_out = false;
    try {
      auto reader = co_await pgq::with_timeout(conn.copy_out("COPY (SELECT pg_sleep(20)) TO STDOUT"), 300ms);
    } catch (const pgq::sql_error& e) {
      timed_out = e.code() == pgq::errc::timeout;
    }
    CHECK(timed_out);
    auto r = co_await conn.query("SELECT 44");
    CHECK(r[0].get<int>(0) == 44);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
  });
}

TEST_CASE("copy: wrong statements are refused with clear errors", "[copy]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    std::string what;
    try {
      auto w = co_await conn.copy_in("SELECT 1");
    } catch (const pgq::sql_error& e) {
      what = e.what();
    }
    CHECK_THAT(what, Catch::Contains("not a COPY"));
    what.clear();
    try {
      auto w = co_await conn.copy_in("COPY (SELECT 1) TO STDOUT");
    } catch (const pgq::sql_error& e) {
      what = e.what();
    }
    CHECK_THAT(what, Catch::Contains("not a COPY"));
    what.clear();
    try {
      auto w = co_await conn.copy_in("COPY no_such_table_here FROM STDIN");
    } catch (const pgq::sql_error& e) {
      what = e.diag().sqlstate;
    }
    CHECK(what == "42P01");
    what.clear();
    try {
      co_await conn.query("  copy (select 1) to stdout");
    } catch (const pgq::sql_error& e) {
      what = e.what();
    }
    CHECK_THAT(what, Catch::Contains("copy_out()"));
    // Any white space (or a parenthesis) may follow the keyword.
    for (const char* sql :
         {"COPY\tpgq_nothing FROM STDIN", "/* x */ Copy\n(SELECT 1) TO STDOUT", "copy(select 1) to stdout"}) {
      what.clear();
      try {
        co_await conn.query(sql);
      } catch (const pgq::sql_error& e) {
        what = e.what();
      }
      CHECK_THAT(what, Catch::Contains("copy_in() / copy_out()"));
    }
    auto r = co_await conn.query("SELECT 5");
    CHECK(r[0].get<int>(0) == 5);
  });
}

TEST_CASE("copy: requests made during a COPY wait and then run", "[copy]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::string t = unique_name("copy_wait");
    co_await conn.execute("CREATE TEMP TABLE " + t + " (id int)");
    auto ex = co_await asio::this_coro::executor;
    auto before = asio::co_spawn(ex, conn.query("SELECT 1"), asio::use_awaitable);
    const std::string sql = "COPY " + t + " FROM STDIN";
    auto w = co_await conn.copy_in(sql);
    const std::string count_sql = "SELECT count(*) FROM " + t;
    auto during = asio::co_spawn(ex, conn.query(count_sql), asio::use_awaitable);
    for (int i = 0; i < 1000; ++i) co_await w.write_row(i);
    const std::uint64_t n = co_await w.finish();
    CHECK(n == 1000);
    auto a = co_await std::move(before);
    auto b = co_await std::move(during);
    CHECK(a[0].get<int>(0) == 1);
    CHECK(b[0].get<std::int64_t>(0) == 1000);  // ran after the COPY
  });
}
