// Records and composites as JSON: pgq's to_json() against the server's own
// to_json() of the same value, in text format (what queries return) and in
// binary format (record_send's bytes), for anonymous records, table row
// types and CREATE TYPE composites with dropped attributes, nested, in
// arrays, holding enums and domains.
#include "support.hpp"

#include "type_catalog.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

constexpr pgq::oid record_oid = 2249, record_array_oid = 2287;

// Fields of many types: numeric, timestamptz, jsonb, bytea, bool, NULL,
// text that needs quoting, an array, json with its own spacing.
const std::string many_types_row =
    std::string("ROW(1.50::numeric, '2024-02-29 13:45:01.5+00'::timestamptz, ") +
    "'{\"k\": [1, null], \"a\": \"b\"}'::jsonb, '\\x0102'::bytea, true, NULL::int, " +
    "'x y \"q\" \\ b,()'::text, ARRAY[1, NULL, 3], '2024-02-29 13:45'::timestamp, 0.1::float8, " +
    "'NaN'::numeric, 123.4500::numeric, '{\"j\":  [1,2]}'::json, ''::text, " +
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '2024-02-29'::date)";

// Values whose JSON does not depend on the session's time zone once it is
// UTC (binary timestamptz values are rendered in UTC).
const std::vector<std::string> anonymous_records = {
    "ROW(1, 'a', NULL)",
    "ROW(ROW(1, 2), ARRAY[ROW(3, 'x')])",
    many_types_row,
    "ROW()",
    "ROW(ROW(ROW(NULL, ROW())), '')",
};

// The server's to_json() of `expr`, and the record's bytes as record_send
// (or, for an array, array_send) writes them.
struct server_view {  // NOLINT(bugprone-exception-escape): nlohmann::json's moves
  nlohmann::json json;
  pgq::bytea binary;
};

asio::awaitable<server_view> server_side(pgq::connection& conn, const std::string& expr, bool array) {
  const std::string send = array ? "array_send" : "record_send";
  auto r = co_await conn.query("SELECT to_json(" + expr + ")::text AS j, " + send + "(" + expr + ") AS b");
  server_view v;
  v.json = nlohmann::json::parse(r[0].get<std::string>("j"));
  v.binary = r[0].get<pgq::bytea>("b");
  co_return v;
}

// Types of our own, dropped by the test's end (the test database is shared).
struct test_types {
  std::string table = unique_name("rec_table");
  std::string comp = unique_name("rec_comp");
  std::string mood = unique_name("rec_mood");
  std::string posint = unique_name("rec_posint");
  std::string outer = unique_name("rec_outer");
  std::string dcomp = unique_name("rec_dcomp");

  std::string create() const {
    return "CREATE TABLE " + table +
           " (id int, name text, price numeric, at timestamptz, doc jsonb, raw bytea, ok bool, missing int, "
           "tags text[]);"
           "INSERT INTO " +
           table +
           " VALUES (7, 'it''s \"x\", (y)', 19.90, '2024-02-29 13:45:01.5+00', '{\"k\": [1, null]}', '\\x00ff', "
           "false, NULL, '{a,NULL,\"b c\"}');"
           "CREATE TYPE " +
           comp +
           " AS (a int, gone text, c numeric);"
           "ALTER TYPE " +
           comp +
           " DROP ATTRIBUTE gone;"
           "ALTER TYPE " +
           comp +
           " ADD ATTRIBUTE d jsonb;"
           "CREATE TYPE " +
           mood +
           " AS ENUM ('ok', 'not ok');"
           "CREATE DOMAIN " +
           posint +
           " AS int CHECK (VALUE > 0);"
           "CREATE DOMAIN " +
           dcomp + " AS " + comp +
           ";"
           "CREATE TYPE " +
           outer + " AS (inner_c " + comp + ", list " + comp + "[], m " + mood + ", p " + posint + ", dc " + dcomp +
           ", rows " + table + "[])";
  }
  std::string drop() const {
    return "DROP TYPE IF EXISTS " + outer + "; DROP DOMAIN IF EXISTS " + dcomp + "; DROP DOMAIN IF EXISTS " + posint +
           "; DROP TYPE IF EXISTS " + mood + "; DROP TYPE IF EXISTS " + comp + "; DROP TABLE IF EXISTS " + table;
  }
  // Named composite values: a table row, a composite with a dropped
  // attribute, and one holding composites, arrays of them, an enum, domains.
  std::vector<std::string> values() const {
    const std::string c1 = "ROW(1, 2.50, '{\"x\": \"(,)\"}')::" + comp;
    const std::string c2 = "ROW(NULL, NULL, NULL)::" + comp;
    return {
        "(SELECT t FROM " + table + " t)",
        c1,
        c2,
        "ROW(" + c1 + ", ARRAY[" + c1 + ", NULL, " + c2 + "], 'not ok', 5, " + c1 + ", ARRAY(SELECT t FROM " + table +
            " t))::" + outer,
        "ARRAY[" + c1 + ", NULL]",
        c1 + "::" + dcomp,
    };
  }
};

asio::awaitable<void> execute_script(pgq::connection& conn, const std::string& sql) {
  for (const auto& stmt : pgq::split_sql(sql)) co_await conn.execute(stmt.text);
}

}  // namespace

TEST_CASE("records: anonymous records in binary render as the server's to_json()", "[records][json]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("SET TimeZone = 'UTC'");
    for (const auto& expr : anonymous_records) {
      const server_view s = co_await server_side(conn, expr, false);
      INFO(expr << "\nserver: " << s.json.dump());
      const pgq::value_view v{s.binary.view(), record_oid, pgq::format::binary};
      CHECK(pgq::to_json_value(v) == s.json);
    }
    // An array of records: record[] in binary.
    const std::string arr = "ARRAY[ROW(1, 'a', NULL), NULL, ROW(2, NULL, ARRAY[ROW(3)])]";
    const server_view s = co_await server_side(conn, arr, true);
    INFO("server: " << s.json.dump());
    const pgq::value_view v{s.binary.view(), record_array_oid, pgq::format::binary};
    CHECK(pgq::to_json_value(v) == s.json);
  });
}

TEST_CASE("records: a query's anonymous records, first run included, are the server's to_json() and text",
          "[records][json]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("SET TimeZone = 'UTC'");
    std::vector<std::string> exprs = anonymous_records;
    exprs.emplace_back("ARRAY[ROW(1, 'a', NULL), NULL, ROW(2, NULL, ARRAY[ROW(3)])]");
    exprs.emplace_back(R"~(ROW('x y', '', 'a"b', 'c\d', NULL, '(,)'))~");
    for (const auto& expr : exprs) {
      // Each statement is new to the connection: its first run.
      const std::string sql = "SELECT " + expr + " AS v, to_json(" + expr + ")::text AS j, (" + expr + ")::text AS t";
      auto r = co_await conn.query(sql);
      INFO(sql);
      CHECK(r[0]["v"].fmt() == pgq::format::binary);
      CHECK(r[0]["v"].to_json() == nlohmann::json::parse(r[0].get<std::string>("j")));
      CHECK(r[0]["v"].text() == r[0].get<std::string>("t"));
      auto again = co_await conn.query(sql);
      CHECK(again[0]["v"].to_json() == nlohmann::json::parse(again[0].get<std::string>("j")));
    }
    // A field of a type pgq cannot print from binary: a clear error naming
    // it, and the fix.
    auto p = co_await conn.query("SELECT ROW(point(1, 2)) AS v");
    std::string message;
    try {
      (void)p[0]["v"].text();
    } catch (const pgq::sql_error& e) {
      message = e.what();
    }
    CHECK_THAT(message, Catch::Contains("field 1") && Catch::Contains("cast the field to text"));
  });
}

TEST_CASE("records: an anonymous record in a text result has f1..fN keys and string fields", "[records][json]") {
  run([]() -> asio::awaitable<void> {
    pgq::connection conn(co_await asio::this_coro::executor);
    pgq::connect_options text_only;
    text_only.binary_results = false;
    co_await conn.connect(dsn(), text_only);
    // Text carries no field types (and the catalog has none for a record
    // type made up by the query): the documented fallback.
    auto r = co_await conn.query("SELECT ROW(1, 'a', NULL) AS v, ROW(ROW(1, 2), 'x y') AS w");
    CHECK(r[0]["v"].fmt() == pgq::format::text);
    CHECK(r[0]["v"].to_json() == nlohmann::json::parse(R"~({"f1": "1", "f2": "a", "f3": null})~"));
    CHECK(r[0]["w"].to_json() == nlohmann::json::parse(R"~({"f1": "(1,2)", "f2": "x y"})~"));
    CHECK(r[0]["v"].text() == "(1,a,)");
  });
}

TEST_CASE("records: named composites render as the server's to_json() in text and binary", "[records][json]") {
  const test_types tt;
  run([&tt]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.execute("SET TimeZone = 'UTC'");
    co_await execute_script(conn, tt.drop());
    co_await execute_script(conn, tt.create());
    std::exception_ptr failure;
    try {
      for (const auto& expr : tt.values()) {
        // Text: what a query returns, named from the catalog the connection
        // looked up.
        std::string sql = "SELECT ";
        sql += expr;
        sql += " AS v, to_json(";
        sql += expr;
        sql += ")::text AS j";
        auto r = co_await conn.query(sql);
        const auto server = nlohmann::json::parse(r[0].get<std::string>("j"));
        INFO(expr << "\nserver: " << server.dump());
        CHECK(r[0]["v"].fmt() == pgq::format::text);
        CHECK(r[0]["v"].to_json() == server);
        CHECK(r.to_json()[0]["v"] == server);
        const pgq::detail::type_catalog* cat = pgq::detail::types_of(r);
        REQUIRE(cat != nullptr);
        // Binary: record_send's (array_send's) bytes with the same catalog.
        const bool array = expr.rfind("ARRAY", 0) == 0;
        const server_view s = co_await server_side(conn, expr, array);
        const pgq::value_view v{s.binary.view(), r.column_type(0), pgq::format::binary};
        CHECK(pgq::detail::to_json_value(v, cat) == server);
      }
    } catch (...) {
      failure = std::current_exception();
    }
    co_await execute_script(conn, tt.drop());
    if (failure) std::rethrow_exception(failure);
  });
}

TEST_CASE("records: a connection looks a composite type up once, also inside a transaction", "[records][json]") {
  const test_types tt;
  run([&tt]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await execute_script(conn, tt.drop());
    co_await execute_script(conn, tt.create());
    std::exception_ptr failure;
    try {
      const std::string sql = "SELECT ROW(1, 2.5, NULL)::" + tt.comp + " AS v";
      const auto expected = nlohmann::json::parse(R"~({"a": 1, "c": 2.5, "d": null})~");
      auto tx = co_await conn.begin();
      auto first = co_await tx.query(sql);
      CHECK(first[0]["v"].to_json() == expected);
      const auto before = conn.stats();
      auto second = co_await tx.query(sql);
      const auto after = conn.stats();
      CHECK(second[0]["v"].to_json() == expected);
      // The second run is one statement: no catalog query.
      CHECK(after.cache_hits + after.cache_misses == before.cache_hits + before.cache_misses + 1);
      co_await tx.commit();
      CHECK(conn.transaction_status() == pgq::tx_status::idle);
      // Another connection learns the type on its own.
      auto other = co_await connect();
      auto r = co_await other.query(sql);
      CHECK(r[0]["v"].to_json() == expected);
      // A stream looks nothing up, but uses what its connection knows.
      auto stream = co_await other.stream(sql);
      auto row = co_await stream.next();
      REQUIRE(row.has_value());
      CHECK(row->to_json()["v"] == expected);
    } catch (...) {
      failure = std::current_exception();
    }
    co_await execute_script(conn, tt.drop());
    if (failure) std::rethrow_exception(failure);
  });
}
