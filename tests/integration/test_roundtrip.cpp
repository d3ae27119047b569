// Every supported type through a real server: sent as a parameter, compared
// on the server, read back; and rows rendered as JSON the way the server's
// to_json() renders them.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using namespace pgq_test;
namespace asio = boost::asio;
using namespace std::chrono;

namespace {

// Sends `v` as $1, has the server cast it to `type` and compare it with the
// literal `literal`, and reads it back.
template <class T>
asio::awaitable<T> echo(pgq::connection& conn, const T& v, const std::string& type, const std::string& literal) {
  auto r = co_await conn.query(
      "SELECT $1::" + type + " AS v, $1::" + type + " IS NOT DISTINCT FROM (" + literal + ")::" + type + " AS same", v);
  INFO("type " << type << ", literal " << literal);
  CHECK(r[0].template get<bool>("same"));
  co_return r[0].template get<T>("v");
}

// echo() and a check that the value came back unchanged. (Never co_await
// inside a Catch macro: GCC 12 evaluates the operand more than once.)
template <class T>
asio::awaitable<void> check_echo(pgq::connection& conn, const T& v, const std::string& type,
                                 const std::string& literal) {
  const T back = co_await echo(conn, v, type, literal);
  INFO("type " << type);
  CHECK(back == v);
}

}  // namespace

TEST_CASE("scalars round-trip through the server", "[roundtrip]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await check_echo(conn, true, "bool", "true");
    co_await check_echo(conn, false, "bool", "false");
    co_await check_echo(conn, std::int16_t{-32768}, "int2", "-32768");
    co_await check_echo(conn, std::int16_t{32767}, "int2", "32767");
    co_await check_echo(conn, std::numeric_limits<std::int32_t>::min(), "int4", "-2147483648");
    co_await check_echo(conn, std::numeric_limits<std::int64_t>::max(), "int8", "9223372036854775807");
    co_await check_echo(conn, std::numeric_limits<std::int64_t>::min(), "int8", "-9223372036854775808");
    co_await check_echo(conn, 1.5f, "float4", "1.5");
    co_await check_echo(conn, 0.1, "float8", "0.1");
    const double nan = co_await echo(conn, std::numeric_limits<double>::quiet_NaN(), "float8", "'NaN'");
    CHECK(std::isnan(nan));
    co_await check_echo(conn, std::numeric_limits<double>::infinity(), "float8", "'Infinity'");
    co_await check_echo(conn, -std::numeric_limits<double>::infinity(), "float8", "'-Infinity'");
    co_await check_echo(conn, std::string(), "text", "''");
    co_await check_echo(conn, std::string("żółw 🐢 \"quoted\" 'single'"), "text", "'żółw 🐢 \"quoted\" ''single'''");
    co_await check_echo(conn, std::string("  padded  "), "varchar", "'  padded  '");
  });
}

TEST_CASE("bytes, numeric, uuid and json round-trip", "[roundtrip]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::string raw("a\0b\xff\x00z", 6);
    const pgq::bytea b(raw);
    co_await check_echo(conn, b, "bytea", "'\\x610062ff007a'::bytea");
    const std::vector<std::byte> bv = b.data;
    co_await check_echo(conn, bv, "bytea", "'\\x610062ff007a'::bytea");
    co_await check_echo(conn, pgq::bytea(std::string_view()), "bytea", "''::bytea");

    std::vector<const char*> numerics = {"0",
                                         "-0.000",
                                         "12345678901234567890.123456789012345678901",
                                         "0.000000000000000000001",
                                         "-99999999999999999999999999999999999999",
                                         "NaN",
                                         "1e-5"};
    if (server_version_at_least(conn, 140000, "numeric 'Infinity' and '-Infinity'")) {
      numerics.insert(numerics.end(), {"Infinity", "-Infinity"});
    } else {
      // An older server refuses it with an error, never a wrong value.
      std::string sqlstate, message;
      try {
        co_await conn.query("SELECT $1::numeric", pgq::numeric{std::string_view("Infinity")});
      } catch (const pgq::sql_error& e) {
        sqlstate = e.sqlstate();
        message = e.what();
      }
      INFO(message);
      CHECK(sqlstate.starts_with("22"));  // data exception: 22P02 from the text, 22P03 from binary
    }
    for (const char* n : numerics) {
      const pgq::numeric v{std::string_view(n)};
      const pgq::numeric back = co_await echo(conn, v, "numeric", std::string("'") + n + "'");
      auto canonical = co_await conn.query("SELECT $1::numeric::text", std::string(n));
      CHECK(back.str() == canonical[0].get<std::string>(0));
    }

    const auto u = pgq::uuid::parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    co_await check_echo(conn, u, "uuid", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'");

    const nlohmann::json j = {{"a", 1}, {"b", {true, nullptr, "x\"y"}}, {"c", 1.5}, {"ü", "ß"}};
    co_await check_echo(conn, j, "jsonb", "'{\"a\":1,\"b\":[true,null,\"x\\\"y\"],\"c\":1.5,\"ü\":\"ß\"}'");
    auto r = co_await conn.query("SELECT $1::json AS j", j);
    CHECK(r[0].get<nlohmann::json>(0) == j);
  });
}

TEST_CASE("dates and times round-trip, BC and infinity included", "[roundtrip]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("SET TimeZone = 'Asia/Kolkata'");  // +05:30: offsets must be honoured

    const pgq::timestamptz t = sys_days{2024y / February / 29} + 13h + 45min + 1s + 123456us;
    co_await check_echo(conn, t, "timestamptz", "'2024-02-29 13:45:01.123456+00'");
    co_await check_echo(conn, pgq::timestamptz::max(), "timestamptz", "'infinity'");
    co_await check_echo(conn, pgq::timestamptz::min(), "timestamptz", "'-infinity'");
    // Text results come in the session's zone; the value must not shift.
    auto r = co_await conn.query("SELECT '2024-02-29 13:45:01.123456+00'::timestamptz");
    CHECK(r[0].get<pgq::timestamptz>(0) == t);

    const pgq::timestamp lt = local_days{1999y / December / 31} + 23h + 59min + 59s;
    co_await check_echo(conn, lt, "timestamp", "'1999-12-31 23:59:59'");

    const pgq::date d = 2024y / February / 29;
    co_await check_echo(conn, d, "date", "'2024-02-29'");
    const pgq::date bc = year{-43} / March / 15;
    co_await check_echo(conn, bc, "date", "'0044-03-15 BC'");
    auto r2 = co_await conn.query("SELECT '0044-03-15 BC'::date");
    CHECK(r2[0].get<pgq::date>(0) == bc);

    // Now, against the server's own reading of the same instant from whole
    // numbers (seconds since the epoch, then microseconds).
    const auto now = floor<microseconds>(system_clock::now());
    const auto us = now.time_since_epoch().count();
    const std::string now_literal = "to_timestamp(" + std::to_string(us / 1'000'000) +
                                    ") + interval '1 microsecond' * " + std::to_string(us % 1'000'000);
    const auto back = co_await echo(conn, now, "timestamptz", now_literal);
    CHECK(back == now);
  });
}

TEST_CASE("arrays round-trip, with NULLs and quoting", "[roundtrip]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::vector<int> ints{1, -2, 2147483647};
    co_await check_echo(conn, ints, "int4[]", "'{1,-2,2147483647}'");
    const std::vector<int> none;
    co_await check_echo(conn, none, "int4[]", "'{}'");
    const std::vector<std::string> words{"plain", "", "with space", "a,b", "q\"uote", "back\\slash", "NULL", "{}"};
    co_await check_echo(conn, words, "text[]",
                        "ARRAY['plain','','with space','a,b','q\"uote','back\\slash','NULL','{}']");
    const std::vector<std::optional<std::int64_t>> holes{1, std::nullopt, 3};
    co_await check_echo(conn, holes, "int8[]", "'{1,NULL,3}'");
    const std::vector<double> doubles{0.5, -1e300};
    co_await check_echo(conn, doubles, "float8[]", "'{0.5,-1e300}'");
    const std::vector<pgq::uuid> ids{pgq::uuid::parse("00000000-0000-0000-0000-000000000001")};
    co_await check_echo(conn, ids, "uuid[]", "'{00000000-0000-0000-0000-000000000001}'");
    const std::vector<bool> flags{true, false};
    co_await check_echo(conn, flags, "bool[]", "'{t,f}'");

    // A NULL element read into a non-optional vector is an error, not a 0.
    auto r = co_await conn.query("SELECT '{1,NULL}'::int4[]");
    CHECK_THROWS_AS(r[0].get<std::vector<int>>(0), pgq::sql_error);
  });
}

TEST_CASE("NULL parameters and results", "[roundtrip]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::optional<int> none;
    auto r = co_await conn.query("SELECT $1::int4 IS NULL, $1::int4, $2::text", none, std::optional<std::string>("x"));
    CHECK(r[0].get<bool>(0));
    CHECK(r[0][1].is_null());
    CHECK_FALSE(r[0].get<std::optional<int>>(1).has_value());
    CHECK(r[0].get<std::optional<std::string>>(2) == "x");
    auto r2 = co_await conn.query("SELECT $1::text IS NULL", std::nullopt);
    CHECK(r2[0].get<bool>(0));
  });
}

TEST_CASE("injection strings are bound, never spliced", "[roundtrip][security]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("CREATE TEMP TABLE victims (name text)");
    const std::string evil = "'); DROP TABLE victims; --";
    co_await conn.execute("INSERT INTO victims VALUES ($1)", evil);
    auto r = co_await conn.query("SELECT name FROM victims WHERE name = $1", evil);
    REQUIRE(r.size() == 1);
    CHECK(r[0].get<std::string>(0) == evil);
  });
}

TEST_CASE("row JSON matches the server's row_to_json", "[roundtrip][json]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("SET TimeZone = 'America/Los_Angeles'");
    const std::string select =
        "SELECT 1::int2 AS i2, 2147483647::int4 AS i4, 9007199254740993::int8 AS i8, "
        "1.5::float4 AS f4, 0.1::float8 AS f8, 'NaN'::float8 AS nan, '-Infinity'::float8 AS ninf, "
        "123.4500::numeric AS num, true AS b, 'text \"q\" \\ é'::text AS txt, NULL::int4 AS nothing, "
        "'\\x00ff'::bytea AS bytes, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, "
        "'{\"k\": [1, 2.5, null]}'::jsonb AS jb, '{\"k\":  1}'::json AS js, "
        "'2024-02-29 13:45:01.5+00'::timestamptz AS tz, '2024-02-29 13:45:01'::timestamp AS ts, "
        "'infinity'::timestamptz AS tinf, '2024-02-29'::date AS d, '{1,NULL,3}'::int4[] AS arr, "
        "ARRAY['a b', NULL, 'c\"d'] AS tarr, '1 day 02:00:00'::interval AS iv, 'x'::char(3) AS ch";
    auto ours = co_await conn.query(select);
    auto theirs = co_await conn.query("SELECT row_to_json(sub)::text FROM (" + select + ") AS sub");
    const auto expected = nlohmann::json::parse(theirs[0].get<std::string>(0));
    const auto got = ours[0].to_json();
    for (auto& [key, value] : expected.items()) {
      INFO("column " << key);
      CHECK(got.at(key) == value);
    }
    CHECK(got.size() == expected.size());
  });
}
