// End-to-end tests of the pgq binary against the server in PGQ_TEST_DSN.
// Each test runs the built tool as a child process and checks its stdout,
// stderr and exit code; the server's own view (pg_stat_activity, table
// contents, json_agg) is read through libpq directly, not through pgq.
#include "support.hpp"

#include <nlohmann/json.hpp>

#include <regex>

using namespace pgq_cli_test;

TEST_CASE("query: every output format", "[cli]") {
  const std::string sql = "SELECT 1 AS n, 'a,b' AS s, NULL::text AS z UNION ALL SELECT 22, '', 'q\"x'";
  auto t = pgq({"--format", "table", "query", sql});
  CHECK(t.code == 0);
  CHECK(t.out ==
        " n  |  s  |  z \n"
        "----+-----+-----\n"
        "  1 | a,b | \n"
        " 22 |     | q\"x\n"
        "(2 rows)\n");
  auto j = pgq({"--format", "json", "query", sql});
  CHECK(j.code == 0);
  CHECK(j.out == "[\n  {\"n\":1,\"s\":\"a,b\",\"z\":null},\n  {\"n\":22,\"s\":\"\",\"z\":\"q\\\"x\"}\n]\n");
  auto nd = pgq({"--format", "ndjson", "query", sql});
  CHECK(nd.out == "{\"n\":1,\"s\":\"a,b\",\"z\":null}\n{\"n\":22,\"s\":\"\",\"z\":\"q\\\"x\"}\n");
  auto csv = pgq({"--format", "csv", "query", sql});
  CHECK(csv.out == "n,s,z\n1,\"a,b\",\n22,\"\",\"q\"\"x\"\n");
  // Several statements: results in the order given; json nests them.
  auto two = pgq({"--format", "json", "query", "SELECT pg_sleep(0.3), 1 AS a", "SELECT 2 AS b"});
  CHECK(two.out == "[\n  [\n    {\"pg_sleep\":\"\",\"a\":1}\n  ],\n  [\n    {\"b\":2}\n  ]\n]\n");
  // Not a terminal: ndjson by default.
  auto piped = pgq({"query", "SELECT 1 AS one"});
  CHECK(piped.out == "{\"one\":1}\n");
  // Global options also after the subcommand.
  auto after = pgq({"query", "SELECT 1 AS one", "--format", "csv"});
  CHECK(after.out == "one\n1\n");
}

TEST_CASE("query: JSON of a battery of types equals the server's json_agg", "[cli]") {
  const std::string sql =
      "SELECT k, 1::int2 AS i2, 2147483647::int4 AS i4, 9223372036854775807::int8 AS i8, -5::int8 AS neg, "
      "1.1::float4 AS f4, 0.1::float8 AS f8, 1e300::float8 AS big, 'NaN'::float8 AS nan, "
      "'-Infinity'::float8 AS ninf, 123.4500::numeric AS n1, 12345678901234567890.123456789::numeric AS n2, "
      "'NaN'::numeric AS n3, 1e-20::numeric AS n4, k % 2 = 0 AS b, E'he said \"hi\"\\n\\\\ \u00e9\\t' AS t, "
      "'x'::char(3) AS c3, '{\"b\":1,\"a\":[1,2,{\"c\":null}]}'::json AS j, "
      "'{\"bb\":1,\"a\":[1,2.50,1e3]}'::jsonb AS jb, ARRAY[1,2,NULL]::int[] AS arr, ARRAY[[1,2],[3,4]] AS arr2, "
      "ARRAY['a','b c',NULL,'{\"x\"}']::text[] AS tarr, ARRAY[1.50, 12345678901234567890.5]::numeric[] AS narr, "
      "ARRAY[true,false] AS barr, ARRAY['{\"a\":1}'::jsonb] AS jarr, '\\x0102ff'::bytea AS by, "
      "'2024-02-29 13:45:01.123456+05:30'::timestamptz AS tz, '2024-02-29 13:45:01'::timestamp AS ts, "
      "'2024-02-29'::date AS d, '13:45'::time AS tm, '1 day 2 hours'::interval AS iv, "
      "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, 42::oid AS o, NULL::int AS nul, "
      "'192.168.0.1/24'::inet AS ip, '(1,2)'::point AS pt, 'infinity'::timestamp AS tinf, "
      "'4713-01-01 BC'::date AS bc, ARRAY['2024-01-01 10:00+00'::timestamptz] AS tzarr, "
      "'[1,5)'::int4range AS rng FROM generate_series(1, 3) AS k";
  const std::string expected = server_value("SELECT json_agg(zz) FROM (" + sql + ") zz");
  REQUIRE(!expected.empty());
  // json_agg writes its rows as row_to_json does, joined by ", \n ".
  auto nd = pgq({"--format", "ndjson", "query", sql});
  REQUIRE(nd.code == 0);
  const auto rows = lines(nd.out);
  REQUIRE(rows.size() == 3);
  std::string agg = "[";
  for (std::size_t i = 0; i < rows.size(); ++i) agg += (i ? ", \n " : "") + rows[i];
  agg += "]";
  CHECK(agg == expected);
  // --format json holds the same rows.
  auto j = pgq({"--format", "json", "query", sql});
  REQUIRE(j.code == 0);
  CHECK(nlohmann::json::parse(j.out) == nlohmann::json::parse(expected));
}

TEST_CASE("query: 50 pg_sleep(0.2) over 10 connections take about 1 s", "[cli]") {
  std::vector<std::string> args = {"--connections", "10", "--format", "ndjson", "query"};
  for (int i = 0; i < 50; ++i) args.push_back("SELECT pg_sleep(0.2), " + std::to_string(i) + " AS i");
  const auto start = std::chrono::steady_clock::now();
  auto r = pgq(args);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(r.code == 0);
  const auto out = lines(r.out);
  REQUIRE(out.size() == 50);
  for (int i = 0; i < 50; ++i)
    CHECK(out[static_cast<std::size_t>(i)] == "{\"pg_sleep\":\"\",\"i\":" + std::to_string(i) + "}");
  CHECK(secs >= 0.95);  // 5 rounds of 0.2 s
  CHECK(secs < 3.0);    // one connection would take 10 s
}

TEST_CASE("query: -v prints each statement's time and the pool's statistics", "[cli]") {
  auto r = pgq({"-v", "--connections", "3", "--format", "ndjson", "query", "SELECT 1 AS a", "SELECT 2 AS a",
                "SELECT 3 AS a", "SELECT 4 AS a"});
  REQUIRE(r.code == 0);
  CHECK(r.out == "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n");
  CHECK_THAT(r.err, Catch::Contains(" ms\n"));
  // Four statements over at most three connections.
  CHECK_THAT(r.err, Catch::Contains("pgq: pool: ") && Catch::Contains("4 acquires") && Catch::Contains("0 timeouts") &&
                        Catch::Contains(" idle"));
  const auto at = r.err.find("pgq: pool: ");
  REQUIRE(at != std::string::npos);
  const int opened = std::stoi(r.err.substr(at + 11));
  CHECK(opened >= 1);
  CHECK(opened <= 3);
}

TEST_CASE("query: -p binds parameters, --params-file runs once per line", "[cli]") {
  auto p = pgq({"--format", "csv", "query", "SELECT $1::int + 1 AS a, $2::text AS b", "-p", "41", "-p", "x y"});
  CHECK(p.code == 0);
  CHECK(p.out == "a,b\n42,x y\n");
  const auto csv = temp_file("params.csv", "a,b\n1,x\n2,\n3,\"\"\n4,\"multi\nline, \"\"q\"\"\"\n");
  auto c = pgq({"--format", "ndjson", "--connections", "3", "query",
                "SELECT $1::int AS a, $2::text AS b, $2 IS NULL AS isnull", "--params-file", csv});
  CHECK(c.code == 0);
  CHECK(c.out ==
        "{\"a\":1,\"b\":\"x\",\"isnull\":false}\n"
        "{\"a\":2,\"b\":null,\"isnull\":true}\n"
        "{\"a\":3,\"b\":\"\",\"isnull\":false}\n"
        "{\"a\":4,\"b\":\"multi\\nline, \\\"q\\\"\",\"isnull\":false}\n");
  const auto nd = temp_file("params.ndjson", "[1, \"[true]\"]\n\n{\"a\": 2, \"b\": null}\n[3, {\"k\": [1]}]\n");
  auto n = pgq({"--format", "json", "query", "SELECT $1::int AS a, $2::jsonb AS b", "--params-file", nd});
  CHECK(n.code == 0);
  CHECK(nlohmann::json::parse(n.out) ==
        nlohmann::json::parse(R"([[{"a":1,"b":[true]}],[{"a":2,"b":null}],[{"a":3,"b":{"k":[1]}}]])"));
  // A malformed line is a usage error that names it.
  const auto bad = temp_file("bad.ndjson", "[1]\n[2\n");
  auto b = pgq({"query", "SELECT $1", "--params-file", bad});
  CHECK(b.code == 2);
  CHECK(b.err.find("bad.ndjson:2") != std::string::npos);
}

TEST_CASE("run: tricky files are split correctly, errors stop the run", "[cli]") {
  const std::string t = table + "_run";
  const auto file = temp_file("tricky.sql",
                              "-- a comment; with a semicolon\n"
                              "DROP TABLE IF EXISTS " +
                                  t +
                                  ";\n"
                                  "CREATE TABLE " +
                                  t +
                                  " (id int, s text);\n"
                                  "CREATE OR REPLACE FUNCTION " +
                                  t +
                                  "_f() RETURNS text AS $$\n"
                                  "BEGIN RETURN 'x;y'; END; $$ LANGUAGE plpgsql;\n"
                                  "INSERT INTO " +
                                  t +
                                  " VALUES (1, 'a;b'), (2, E'it\\'s;'), /* c; */ (3, $q$d;e$q$);\n"
                                  "INSERT INTO " +
                                  t + " VALUES (4, " + t +
                                  "_f()), (5, \"left\"('semi;colon', 4))\n"
                                  ";SELECT id, s FROM " +
                                  t + " ORDER BY id;\n");
  auto r = pgq({"--format", "csv", "run", file});
  CHECK(r.code == 0);
  CHECK(r.out == "id,s\n1,a;b\n2,it's;\n3,d;e\n4,x;y\n5,semi\n");
  CHECK(r.err.empty());

  // Stops at the first error: the statement after it never runs.
  const auto failing = temp_file("failing.sql", "INSERT INTO " + t +
                                                    " VALUES (10, 'x');\nSELECT * FROM no_such_table;\n"
                                                    "INSERT INTO " +
                                                    t + " VALUES (11, 'y');\n");
  auto f = pgq({"run", failing});
  CHECK(f.code == 1);
  CHECK(f.err.find("failing.sql:2: ERROR: 42P01: relation \"no_such_table\" does not exist") != std::string::npos);
  CHECK(server_value("SELECT string_agg(id::text, ',' ORDER BY id) FROM " + t + " WHERE id >= 10") == "10");

  // --continue-on-error goes on and lists the failures.
  auto c = pgq({"run", failing, "--continue-on-error"});
  CHECK(c.code == 1);
  CHECK(c.err.find("pgq: 1 statement failed:\n  " + failing + ":2: 42P01:") != std::string::npos);
  CHECK(server_value("SELECT count(*) FROM " + t + " WHERE id = 11") == "1");

  // --tx: a failing file leaves nothing behind; others commit.
  const auto good = temp_file("good.sql", "INSERT INTO " + t + " VALUES (20, 'g');\n");
  auto x = pgq({"run", "--tx", "--continue-on-error", failing, good});
  CHECK(x.code == 1);
  CHECK(server_value("SELECT count(*) FROM " + t + " WHERE id IN (10, 11)") ==
        "3");  // 10, 11 and 10 again: not a third 10
  CHECK(server_value("SELECT count(*) FROM " + t + " WHERE id = 20") == "1");

  // An unterminated dollar quote is a usage error naming where it began.
  const auto open = temp_file("open.sql", "SELECT 1;\nSELECT $$never closed;\n");
  auto o = pgq({"run", open});
  CHECK(o.code == 2);
  CHECK(o.err.find("open.sql: line 2, column 8") != std::string::npos);
  server_value("DROP TABLE " + t + "; DROP FUNCTION " + t + "_f()");
}

TEST_CASE("run: --jobs spreads statements over workers", "[cli]") {
  std::string script;
  for (int i = 0; i < 8; ++i) script += "SELECT pg_sleep(0.25);\n";
  const auto file = temp_file("sleeps.sql", script);
  const auto start = std::chrono::steady_clock::now();
  auto r = pgq({"--format", "csv", "run", "--jobs", "4", file});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(r.code == 0);
  CHECK(secs < 1.5);  // 2 rounds of 0.25 s, not 8
  CHECK(secs >= 0.5);
}

TEST_CASE("tx: commits on success, leaves nothing on failure", "[cli]") {
  const std::string t = table + "_tx";
  server_value("DROP TABLE IF EXISTS " + t + "; CREATE TABLE " + t + " (id int PRIMARY KEY)");
  auto bad = pgq(
      {"tx", "INSERT INTO " + t + " VALUES (1)", "INSERT INTO " + t + " VALUES (2); INSERT INTO " + t + " VALUES (1)"});
  CHECK(bad.code == 1);
  CHECK(bad.err.find("ERROR: 23505: duplicate key value violates unique constraint") != std::string::npos);
  CHECK(bad.err.find("DETAIL: Key (id)=(1) already exists.") != std::string::npos);
  CHECK(server_value("SELECT count(*) FROM " + t) == "0");

  auto good = pgq({"--format", "csv", "tx", "--isolation", "serializable", "INSERT INTO " + t + " VALUES (1), (2)",
                   "SELECT current_setting('transaction_isolation') AS iso, "
                   "count(*) AS n FROM " +
                       t});
  CHECK(good.code == 0);
  CHECK(good.out == "iso,n\nserializable,2\n");
  CHECK(server_value("SELECT count(*) FROM " + t) == "2");

  const auto file = temp_file("tx.sql", "INSERT INTO " + t + " VALUES (3);\nUPDATE " + t + " SET id = id / 0;\n");
  auto f = pgq({"tx", "-f", file});
  CHECK(f.code == 1);
  CHECK(f.err.find("tx.sql:2: ERROR: 22012: division by zero") != std::string::npos);
  CHECK(server_value("SELECT count(*) FROM " + t) == "2");

  auto ro = pgq({"tx", "--read-only", "INSERT INTO " + t + " VALUES (9)"});
  CHECK(ro.code == 1);
  CHECK(ro.err.find("25006") != std::string::npos);
  server_value("DROP TABLE " + t);
}

TEST_CASE("exit codes and psql-style errors", "[cli]") {
  auto ok = pgq({"query", "SELECT 1"});
  CHECK(ok.code == 0);

  auto syntax = pgq({"query", "SELECT 1,\n  2 FROM nowhere WHERE (x"});
  CHECK(syntax.code == 1);
  CHECK(syntax.err ==
        "ERROR: 42601: syntax error at end of input\nLINE 2:   2 FROM nowhere WHERE (x\n"
        "                                 ^\n");  // one past the end

  CHECK(pgq({"query"}).code == 2);
  CHECK(pgq({"--format", "xml", "query", "SELECT 1"}).code == 2);
  CHECK(pgq({"nosuchcommand"}).code == 2);
  CHECK(pgq({"run", "/nonexistent/file.sql"}).code == 2);
  CHECK(pgq({"--timeout", "soon", "query", "SELECT 1"}).code == 2);

  auto down = pgq({"--dsn", "postgresql://postgres@127.0.0.1:1/x?connect_timeout=5", "query", "SELECT 1"});
  CHECK(down.code == 3);
  CHECK(down.err.find("Connection refused") != std::string::npos);

  auto slow = pgq({"--timeout", "300ms", "query", "SELECT pg_sleep(20), 'pgq_cli_timeout'"});
  CHECK(slow.code == 4);
  CHECK(slow.err.find("timed out after 300 ms") != std::string::npos);
  CHECK(server_value("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
                     "'%pgq_cli_timeout%' AND pid <> pg_backend_pid()") == "0");

  // Cancelled on the server by someone else: 4 as well.
  child victim({"query", "SELECT pg_sleep(20), 'pgq_cli_victim'"});
  std::string cancelled;
  for (int i = 0; i < 100 && cancelled != "1"; ++i) {
    std::this_thread::sleep_for(50ms);
    cancelled = server_value(
        "SELECT count(*) FROM (SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE "
        "query LIKE '%pgq_cli_victim%' AND pid <> pg_backend_pid()) c");
  }
  auto v = victim.wait();
  CHECK(v.code == 4);
  CHECK(v.err.find("57014") != std::string::npos);

  for (const char* cmd : {"query", "run", "tx", "bench"}) {
    auto h = pgq({cmd, "--help"});
    CHECK(h.code == 0);
    CHECK(h.out.find("Exit codes: 0 success; 1 a statement failed; 2 bad usage; 3 could not connect;") !=
          std::string::npos);
  }
}

namespace {

// Starts `args`, waits until the server runs the statement tagged `marker`,
// sends SIGINT and returns the outcome.
outcome interrupt_when_running(std::vector<std::string> args, const std::string& marker) {
  child c(std::move(args));
  const std::string running = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" +
                              marker + "%' AND pid <> pg_backend_pid()";
  std::string n;
  for (int i = 0; i < 200 && n != "1"; ++i) {
    std::this_thread::sleep_for(25ms);
    n = server_value(running);
  }
  REQUIRE(n == "1");
  c.signal(SIGINT);
  auto o = c.wait(10s);
  CHECK(server_value(running) == "0");  // cancelled on the server, not left running
  return o;
}

}  // namespace

TEST_CASE("SIGINT cancels the running statement on the server and rolls back", "[cli]") {
  const auto start = std::chrono::steady_clock::now();
  auto q = interrupt_when_running({"query", "SELECT pg_sleep(30), 'pgq_cli_sigint_q'"}, "pgq_cli_sigint_q");
  CHECK(q.code == 130);
  CHECK(std::chrono::steady_clock::now() - start < 10s);

  const std::string t = table + "_sig";
  server_value("DROP TABLE IF EXISTS " + t + "; CREATE TABLE " + t + " (id int)");
  auto tx = interrupt_when_running(
      {"tx", "INSERT INTO " + t + " VALUES (1)", "SELECT pg_sleep(30), 'pgq_cli_sigint_tx'"}, "pgq_cli_sigint_tx");
  CHECK(tx.code == 130);
  CHECK(server_value("SELECT count(*) FROM " + t) == "0");
  CHECK(server_value("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND query LIKE "
                     "'%pgq_cli_sigint_tx%'") == "0");
  server_value("DROP TABLE " + t);
}

TEST_CASE("bench: init, builtin and custom scripts, JSON report", "[cli]") {
  auto init = pgq({"bench", "--init", "--scale", "1"});
  REQUIRE(init.code == 0);
  CHECK(server_value("SELECT count(*) FROM pgbench_accounts") == "100000");
  CHECK(server_value("SELECT count(*) FROM pgbench_tellers") == "10");

  auto r = pgq({"--format", "json", "--connections", "4", "bench", "--builtin", "tpcb-like", "-j", "2", "-T", "1"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["clients"] == 4);
  CHECK(j["threads"] == 2);
  CHECK(j["scale"] == 1);
  CHECK(j["transactions"].get<int>() > 10);
  CHECK(j["tps"].get<double>() > 10);
  const auto& lat = j["latency_ms"];
  CHECK(lat["p50"].get<double>() > 0);
  CHECK(lat["p50"].get<double>() <= lat["p90"].get<double>());
  CHECK(lat["p90"].get<double>() <= lat["p99"].get<double>());
  CHECK(lat["p99"].get<double>() <= lat["p99_9"].get<double>());
  CHECK(lat["p99_9"].get<double>() <= lat["max"].get<double>());
  CHECK(j["errors"].empty());
  // Every transaction left its row in the history, as pgbench's does.
  CHECK(server_value("SELECT count(*) FROM pgbench_history") == std::to_string(j["transactions"].get<int>()));

  // -t counts per client; --pipeline keeps several scripts in flight.
  auto t = pgq({"--format", "json", "--connections", "2", "bench", "-b", "select-only", "-t", "25", "--pipeline", "4"});
  REQUIRE(t.code == 0);
  CHECK(nlohmann::json::parse(t.out)["transactions"] == 50);

  // A custom script: \set, :variables as parameters, failures by SQLSTATE.
  const auto script = temp_file("bench.sql",
                                "\\set x random(1, 10)\n\\set y :x * 2 + 1\n"
                                "SELECT :x / (:y - :y) AS boom, ':x' AS literal;\n");
  auto f = pgq({"--format", "json", "--connections", "2", "bench", "-f", script, "-t", "5"});
  CHECK(f.code == 1);
  const auto fj = nlohmann::json::parse(f.out);
  CHECK(fj["failed"] == 10);
  CHECK(fj["errors"]["22012"] == 10);

  // --rate: about rate x duration transactions, latency from the schedule.
  auto rate = pgq({"--format", "json", "bench", "-b", "select-only", "-T", "1", "-R", "100", "-c", "2"});
  REQUIRE(rate.code == 0);
  const auto rj = nlohmann::json::parse(rate.out);
  CHECK(rj["transactions"].get<int>() > 50);
  CHECK(rj["transactions"].get<int>() < 200);
  CHECK(rj.contains("schedule_lag_ms"));

  auto table_report = pgq({"--format", "table", "bench", "-b", "select-only", "-t", "3"});
  CHECK(table_report.code == 0);
  CHECK(table_report.out.find("latency p99.9 = ") != std::string::npos);
  CHECK(table_report.out.find("number of transactions actually processed: 12\n") != std::string::npos);

  const auto bad = temp_file("badbench.sql", "\\shell ls\nSELECT 1;\n");
  auto b = pgq({"bench", "-f", bad});
  CHECK(b.code == 2);
  CHECK(b.err.find("badbench.sql:1: unsupported meta-command \\shell") != std::string::npos);
  server_value("DROP TABLE pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers");
}

TEST_CASE("query: records and composites in json and ndjson equal the server's to_json", "[cli][records][json]") {
  const std::string t = "pgq_cli_rec" + std::to_string(::getpid());
  const std::string c = t + "_c";
  server_value("DROP TABLE IF EXISTS " + t + "; DROP TYPE IF EXISTS " + c + "; CREATE TYPE " + c +
               " AS (a int, gone text, b numeric); ALTER TYPE " + c + " DROP ATTRIBUTE gone; CREATE TABLE " + t +
               " (id int, name text, at timestamptz, doc jsonb, ok bool, nothing int, inner_c " + c + ", cs " + c +
               "[]); INSERT INTO " + t +
               " VALUES (1, 'x, \"y\" (z)', '2024-02-29 13:45:01.5+00', '{\"k\": [1]}', true, "
               "NULL, ROW(2, 2.50), ARRAY[ROW(3, NULL)::" +
               c + ", NULL])");
  const std::string sql = "SELECT t AS whole, t.inner_c, t.cs FROM " + t + " t";
  const std::string expected = server_value("SELECT json_agg(zz) FROM (" + sql + ") zz");
  REQUIRE(!expected.empty());
  auto nd = pgq({"--format", "ndjson", "query", sql});
  CHECK(nd.code == 0);
  const auto rows = lines(nd.out);
  REQUIRE(rows.size() == 1);
  CHECK(nlohmann::json::parse(rows[0]) == nlohmann::json::parse(expected)[0]);
  auto j = pgq({"--format", "json", "query", sql});
  CHECK(j.code == 0);
  CHECK(nlohmann::json::parse(j.out) == nlohmann::json::parse(expected));
  server_value("DROP TABLE " + t + "; DROP TYPE " + c);
}
