// The migration runner against a real server. Every test gets a database of
// its own, created and dropped here, so runs are independent.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/wait.h>

using namespace pgq_test;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// ------------------------------------------------------------ a fresh database

asio::awaitable<void> admin(std::string sql) {
  pgq::connection c = co_await connect();
  co_await c.execute(sql);
}

asio::awaitable<void> drop(std::string name) {
  pgq::connection c = co_await connect();
  co_await drop_database(c, name);
}

// A database made for one test and dropped (with its connections) after it.
class scratch_database {
 public:
  scratch_database() : name_(unique_name("pgq_mig")) {
    run([this]() -> asio::awaitable<void> { return admin("CREATE DATABASE " + name_); });
    auto ci = pgq::conninfo::parse(pgq_test::dsn());
    ci.set("dbname", name_);
    dsn_ = ci.to_string();
  }
  ~scratch_database() {
    try {
      run([this]() -> asio::awaitable<void> { return drop(name_); });
    } catch (...) {
    }
  }
  scratch_database(const scratch_database&) = delete;
  scratch_database& operator=(const scratch_database&) = delete;
  const std::string& dsn() const { return dsn_; }

 private:
  std::string name_;
  std::string dsn_;
};

asio::awaitable<pgq::connection> connect_to(std::string dsn) {
  pgq::connection c(co_await asio::this_coro::executor);
  co_await c.connect(dsn);
  co_return c;
}

// Runs `sql` in `dsn`'s database and returns the rows as text, one line a row.
asio::awaitable<std::string> rows_of(std::string dsn, std::string sql) {
  pgq::connection c = co_await connect_to(dsn);
  auto r = co_await c.query(sql);
  std::string out;
  for (auto row : r) {
    for (int i = 0; i < row.size(); ++i) {
      if (i > 0) out += '|';
      out += row[i].is_null() ? std::string("NULL") : row[i].text();
    }
    out += '\n';
  }
  co_return out;
}

asio::awaitable<void> store_rows(std::string dsn, std::string sql, std::string* out) {
  *out = co_await rows_of(std::move(dsn), std::move(sql));
}

std::string query_text(const std::string& dsn, const std::string& sql) {
  std::string out;
  run([&]() { return store_rows(dsn, sql, &out); });
  return out;
}

const std::string history_sql =
    "SELECT version, name, checksum, applied_at, execution_ms, applied_by, no_transaction "
    "FROM pgq_migrations ORDER BY version";

// ------------------------------------------------------------ pg_dump

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// The newest pg_dump installed (a newer one dumps older servers, not the
// other way round), else the one on PATH.
std::string pg_dump_path() {
  int best = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string v = e.path().filename().string();
    if (!v.empty() && std::all_of(v.begin(), v.end(), ::isdigit) && fs::exists(e.path() / "bin/pg_dump")) {
      best = std::max(best, std::stoi(v));
    }
  }
  if (best > 0) return "/usr/lib/postgresql/" + std::to_string(best) + "/bin/pg_dump";
  return "pg_dump";
}

// The major version of pg_dump_path(): 15 for "pg_dump (PostgreSQL) 15.18 (Debian ...)"; 0 if unknown.
int pg_dump_major() {
  static const int major = [] {
    FILE* p = ::popen((pg_dump_path() + " --version 2>/dev/null").c_str(), "r");
    if (p == nullptr) return 0;
    char buf[256] = {};
    const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
    ::pclose(p);
    const std::string line = got ? buf : "";
    const auto at = line.find(") ");
    return at == std::string::npos ? 0 : std::atoi(line.c_str() + at + 2);
  }();
  return major;
}

// Every object in the database's own schemas as the catalogs describe it,
// a line (or a definition) each, sorted: what schema_dump() compares when
// the installed pg_dump is older than the server (it refuses to dump those).
const std::string catalog_schema_sql = R"(
WITH own_ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_toast%'
    AND nspname NOT LIKE 'pg\_temp\_%'
), own_rel AS (
  SELECT c.oid, c.relname, c.relkind, c.relacl, n.nspname FROM pg_class c JOIN own_ns n ON n.oid = c.relnamespace
)
SELECT line FROM (
  SELECT 'schema ' || nspname AS line FROM own_ns
  UNION ALL SELECT 'extension ' || extname FROM pg_extension
  UNION ALL SELECT format('relation %s.%s kind %s acl %s', nspname, relname, relkind, relacl) FROM own_rel
  UNION ALL
  SELECT format('column %s.%s.%s %s%s%s%s%s', r.nspname, r.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END,
                CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END,
                coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''))
  FROM pg_attribute a JOIN own_rel r ON r.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'v', 'm', 'f')
  UNION ALL
  SELECT format('constraint %s.%s %s %s', r.nspname, r.relname, co.conname, pg_get_constraintdef(co.oid))
  FROM pg_constraint co JOIN own_rel r ON r.oid = co.conrelid
  UNION ALL SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN own_rel r ON r.oid = i.indexrelid
  UNION ALL
  SELECT format('view %s.%s %s', nspname, relname, pg_get_viewdef(oid)) FROM own_rel WHERE relkind IN ('v', 'm')
  UNION ALL
  SELECT format('sequence %s.%s %s %s %s %s %s %s', schemaname, sequencename, data_type, start_value, min_value,
                max_value, increment_by, cycle)
  FROM pg_sequences WHERE schemaname IN (SELECT nspname FROM own_ns)
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) FROM pg_proc p JOIN own_ns n ON n.oid = p.pronamespace
  WHERE p.prokind IN ('f', 'p')
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN own_rel r ON r.oid = t.tgrelid
  WHERE NOT t.tgisinternal
  UNION ALL
  SELECT format('type %s.%s %s %s', n.nspname, t.typname, t.typtype,
                (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
  FROM pg_type t JOIN own_ns n ON n.oid = t.typnamespace
  WHERE t.typtype IN ('d', 'e', 'r', 'm')
  UNION ALL
  SELECT format('comment %s.%s %s %s', r.nspname, r.relname, d.objsubid, d.description)
  FROM pg_description d JOIN own_rel r ON r.oid = d.objoid AND d.classoid = 'pg_class'::regclass
) AS schema ORDER BY line
)";

// `pg_dump --schema-only`, without the lines that differ between two dumps
// of one schema (the random \restrict key of recent pg_dump releases). A
// pg_dump older than the server refuses to dump it: then the catalogs'
// description of the schema (catalog_schema_sql) stands in for the dump.
std::string schema_dump(const std::string& dsn) {
  if (pg_dump_major() < server_version() / 10000) {
    WARN("pg_dump " << pg_dump_major() << " cannot dump PostgreSQL " << server_version() / 10000
                    << ": schemas compared as the catalogs describe them");
    std::string out = query_text(dsn, catalog_schema_sql);
    INFO(out);
    REQUIRE(out.find("relation public.") != std::string::npos);
    return out;
  }
  const std::string cmd = pg_dump_path() + " --schema-only --no-owner --dbname=" + shell_quote(dsn) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p) != nullptr) {
    const std::string line = buf;
    if (line.starts_with("\\restrict") || line.starts_with("\\unrestrict")) continue;
    out += line;
  }
  const int status = ::pclose(p);
  INFO(out);
  REQUIRE(status == 0);
  REQUIRE(out.find("CREATE TABLE") != std::string::npos);
  return out;
}

// ------------------------------------------------------------ running

fs::path project_migrations_dir() { return fs::path(PGQ_SOURCE_DIR) / "migrations"; }

asio::awaitable<void> do_up(pgq::migrator* m, std::optional<std::int64_t> target, pgq::run_report* out) {
  *out = co_await m->up(target);
}
asio::awaitable<void> do_down(pgq::migrator* m, std::int64_t target, pgq::run_report* out) {
  *out = co_await m->down(target);
}
asio::awaitable<void> do_status(pgq::migrator* m, pgq::status_report* out) { *out = co_await m->status(); }
asio::awaitable<void> do_repair(pgq::migrator* m, pgq::run_report* out) { *out = co_await m->repair(); }
asio::awaitable<void> do_plan_up(pgq::migrator* m, std::int64_t target, std::vector<pgq::migration_step>* out) {
  *out = co_await m->plan_up(target);
}
asio::awaitable<void> do_verify(pgq::migrator* m, std::vector<pgq::migration_status>* out) {
  *out = co_await m->verify();
}

pgq::run_report up(pgq::migrator& m, std::optional<std::int64_t> target = {}) {
  pgq::run_report r;
  run([&]() { return do_up(&m, target, &r); });
  return r;
}
pgq::run_report down(pgq::migrator& m, std::int64_t target) {
  pgq::run_report r;
  run([&]() { return do_down(&m, target, &r); });
  return r;
}
pgq::status_report status(pgq::migrator& m) {
  pgq::status_report r;
  run([&]() { return do_status(&m, &r); });
  return r;
}

// The sql_error that `f` throws.
template <class F>
pgq::sql_error error_of(F f) {
  try {
    f();
  } catch (const pgq::sql_error& e) {
    return e;
  }
  FAIL("no sql_error was thrown");
  throw std::logic_error("unreachable");
}

std::vector<pgq::migration> load(std::vector<pgq::migration_file> files) {
  return pgq::load_migrations(std::move(files));
}

// A temporary folder of migration files.
class temp_dir {
 public:
  temp_dir() : path_(fs::temp_directory_path() / unique_name("pgq_migrations")) { fs::create_directories(path_); }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream out(path_ / name, std::ios::binary | std::ios::trunc);
    out << text;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

}  // namespace

// ================================================================ the tests

TEST_CASE("migrate: a fresh database gets every migration of migrations/", "[migrate]") {
  scratch_database db;
  pgq::migrator m(db.dsn(), pgq::load_migrations(project_migrations_dir()));

  const auto before = status(m);
  CHECK_FALSE(before.history_exists);
  CHECK(before.count(pgq::migration_state::pending) == m.migrations().size());

  const auto rep = up(m);
  REQUIRE(rep.steps.size() == m.migrations().size());
  for (std::size_t i = 0; i < rep.steps.size(); ++i) CHECK(rep.steps[i].version == m.migrations()[i].version);

  const auto after = status(m);
  CHECK(after.history_exists);
  CHECK(after.in_sync());
  for (const auto& s : after.migrations) {
    CHECK(s.state == pgq::migration_state::applied);
    CHECK(s.recorded_checksum == s.file_checksum);
    CHECK(s.applied_at.has_value());
    CHECK(s.applied_by == std::optional<std::string>("postgres"));
  }

  // The schema is really there: the concurrent index is valid, the trigger
  // writes the audit log.
  CHECK(query_text(db.dsn(),
                   "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                   "'orders_account_id_ordered_at_idx'::regclass") == "t\n");
  CHECK(query_text(db.dsn(), "SELECT count(*) FROM orders WHERE account_id IS NULL") == "0\n");
  query_text(db.dsn(), "UPDATE accounts SET display_name = 'Ada' WHERE id = 1 RETURNING id");
  CHECK(query_text(db.dsn(), "SELECT table_name, operation, row_id, new_row->>'display_name' FROM audit_log") ==
        "accounts|UPDATE|1|Ada\n");
  CHECK(query_text(db.dsn(), "SELECT version, no_transaction FROM pgq_migrations WHERE no_transaction") == "5|t\n");
}

TEST_CASE("migrate: running up again is a no-op", "[migrate]") {
  scratch_database db;
  pgq::migrator m(db.dsn(), pgq::load_migrations(project_migrations_dir()));
  up(m);
  const std::string history = query_text(db.dsn(), history_sql);
  const std::string schema = schema_dump(db.dsn());

  const auto again = up(m);
  CHECK(again.steps.empty());
  CHECK(query_text(db.dsn(), history_sql) == history);
  CHECK(schema_dump(db.dsn()) == schema);
}

TEST_CASE("migrate: five runners at once apply each migration exactly once", "[migrate]") {
  scratch_database db;
  // Each migration records the backend that ran it; a slow first migration
  // keeps the others waiting on the lock.
  const auto files = std::vector<pgq::migration_file>{
      {"1_log.up.sql",
       "CREATE TABLE runs (version int, backend int);\n"
       "SELECT pg_sleep(0.3);\n"
       "INSERT INTO runs VALUES (1, pg_backend_pid());\n"},
      {"2_second.up.sql", "INSERT INTO runs VALUES (2, pg_backend_pid());\n"},
      {"3_third.up.sql", "CREATE TABLE third (a int);\nINSERT INTO runs VALUES (3, pg_backend_pid());\n"},
  };
  std::vector<std::unique_ptr<pgq::migrator>> runners;
  runners.reserve(5);
  for (int i = 0; i < 5; ++i) runners.push_back(std::make_unique<pgq::migrator>(db.dsn(), load(files)));

  std::vector<pgq::run_report> reports(5);
  std::vector<std::exception_ptr> errors(5);
  int finished = 0;
  asio::io_context ctx(1);
  for (int i = 0; i < 5; ++i) {
    asio::co_spawn(ctx, do_up(runners[i].get(), std::nullopt, &reports[i]), [&, i](std::exception_ptr e) {
      errors[i] = std::move(e);
      ++finished;
    });
  }
  ctx.run_for(std::chrono::seconds(60));
  REQUIRE(finished == 5);
  std::size_t steps = 0;
  int waited = 0;
  for (int i = 0; i < 5; ++i) {
    if (errors[i]) std::rethrow_exception(errors[i]);
    steps += reports[i].steps.size();
    if (reports[i].waited_for_lock > std::chrono::milliseconds(0)) ++waited;
  }
  CHECK(steps == 3);   // all the work, done once
  CHECK(waited >= 4);  // everyone but the first waited for the lock
  CHECK(query_text(db.dsn(), "SELECT version, count(*) FROM runs GROUP BY version ORDER BY version") ==
        "1|1\n2|1\n3|1\n");
  CHECK(query_text(db.dsn(), "SELECT count(DISTINCT backend) FROM runs") == "1\n");
  CHECK(query_text(db.dsn(), "SELECT version FROM pgq_migrations ORDER BY version") == "1\n2\n3\n");
}

TEST_CASE("migrate: a failing migration leaves the schema and the history as they were", "[migrate]") {
  scratch_database db;
  const auto files = std::vector<pgq::migration_file>{
      {"0001_accounts.up.sql", "CREATE TABLE accounts (id int PRIMARY KEY);\nINSERT INTO accounts VALUES (1);\n"},
      {"0002_broken.up.sql",
       "CREATE TABLE orders (id int);\n"
       "ALTER TABLE accounts ADD COLUMN email text;\n"
       "INSERT INTO accounts (id)\n"
       "VALUES (1 / 0);\n"},
  };
  pgq::migrator m(db.dsn(), load(files));
  up(m, 1);
  const std::string schema = schema_dump(db.dsn());
  const std::string history = query_text(db.dsn(), history_sql);
  REQUIRE(history.starts_with("1|accounts|"));

  const auto e = error_of([&] { up(m); });
  CHECK_THAT(e.what(), Catch::Contains("0002_broken") && Catch::Contains("statement 3 of 3") &&
                           Catch::Contains("line 3") && Catch::Contains("division by zero") &&
                           Catch::Contains("rolled back"));
  CHECK(e.code() == pgq::make_sqlstate_error("22012"));
  CHECK(e.diag().message == "division by zero");
  CHECK(e.diag().script == "0002_broken.up.sql");
  CHECK(e.diag().script_line == std::size_t{3});
  CHECK(e.diag().migration_version == 2);

  CHECK(schema_dump(db.dsn()) == schema);
  CHECK(query_text(db.dsn(), history_sql) == history);
  CHECK(query_text(db.dsn(), "SELECT count(*) FROM accounts") == "1\n");
  const auto st = status(m);
  REQUIRE(st.migrations.size() == 2);
  CHECK(st.migrations[1].state == pgq::migration_state::pending);  // not "dirty": fix it and run again
}

TEST_CASE("migrate: a unique violation keeps its SQLSTATE and every field of the server's error", "[migrate]") {
  scratch_database db;
  pgq::migrator m(db.dsn(), load({{"0001_users.up.sql",
                                   "CREATE TABLE users (id int CONSTRAINT users_pkey PRIMARY KEY);\n"
                                   "INSERT INTO users VALUES (1);\n"
                                   "INSERT INTO users\n  VALUES (1);\n"}}));
  const auto e = error_of([&] { up(m); });
  CHECK(e.code() == pgq::make_sqlstate_error("23505"));
  CHECK(e.sqlstate() == "23505");
  const auto& d = e.diag();
  CHECK(d.severity == "ERROR");
  CHECK(d.constraint == "users_pkey");
  CHECK(d.table == "users");
  CHECK(d.schema == "public");
  CHECK(d.detail == "Key (id)=(1) already exists.");
  CHECK_THAT(d.message, Catch::Contains("duplicate key value violates unique constraint"));
  CHECK_THAT(d.statement, Catch::Contains("INSERT INTO users"));
  CHECK(d.script == "0001_users.up.sql");
  CHECK(d.script_line == std::size_t{3});
  CHECK(d.migration_version == 1);
  CHECK(d.context == "migration 0001_users (0001_users.up.sql), statement 3 of 3");
  CHECK_THAT(e.what(), Catch::Contains("0001_users") && Catch::Contains("23505") && Catch::Contains("users_pkey") &&
                           Catch::Contains("Nothing of it took effect"));
  CHECK_FALSE(pgq::is_retryable(e.code()));
  CHECK_FALSE(pgq::is_fatal(e.code()));
  CHECK(query_text(db.dsn(), "SELECT to_regclass('users') IS NULL") == "t\n");
}

TEST_CASE("migrate: a serialization failure in a migration is retryable", "[migrate]") {
  scratch_database db;
  const std::string raise =
      "DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' "
      "USING ERRCODE = 'serialization_failure'; END $$;\n";
  std::string directive;
  SECTION("in a transaction") {}
  SECTION("outside a transaction") { directive = "-- pgq:no-transaction\n"; }
  pgq::migrator m(db.dsn(),
                  load({{"0003_retry.up.sql", directive + "CREATE TABLE IF NOT EXISTS r (a int);\n" + raise}}));
  const auto e = error_of([&] { up(m); });
  CHECK(e.code() == pgq::make_sqlstate_error("40001"));
  CHECK(pgq::is_retryable(e.code()));
  CHECK_FALSE(pgq::is_fatal(e.code()));
  // The server's own context (the DO block) comes first, the migration after.
  CHECK_THAT(e.diag().context, Catch::Contains("PL/pgSQL") &&
                                   Catch::EndsWith("\nmigration 0003_retry (0003_retry.up.sql), statement 2 of 2"));
  CHECK(e.diag().migration_version == 3);
  CHECK(query_text(db.dsn(), "SELECT count(*) FROM pgq_migrations") == "0\n");
}

TEST_CASE("migrate: a statement that cannot run in a transaction says how to fix it", "[migrate]") {
  scratch_database db;
  pgq::migrator m(db.dsn(),
                  load({{"1_t.up.sql", "CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n"}}));
  const auto e = error_of([&] { up(m); });
  CHECK_THAT(e.what(), Catch::Contains("25001") && Catch::Contains("-- pgq:no-transaction"));
  CHECK(e.code() == pgq::make_sqlstate_error("25001"));
  CHECK(query_text(db.dsn(), "SELECT to_regclass('t') IS NULL") == "t\n");
}

TEST_CASE("migrate: a failing no-transaction migration names the statement and what to do", "[migrate]") {
  scratch_database db;
  const std::string broken =
      "-- pgq:no-transaction\n"
      "CREATE TABLE IF NOT EXISTS t (a int);\n"
      "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_b ON t (b);\n";
  pgq::migrator bad(db.dsn(), load({{"0007_index.up.sql", broken}}));
  const auto e = error_of([&] { up(bad); });
  CHECK_THAT(e.what(), Catch::Contains("0007_index.up.sql") && Catch::Contains("statement 2 of 2") &&
                           Catch::Contains("line 3") && Catch::Contains("column \"b\" does not exist") &&
                           Catch::Contains("Statements 1 to 1 took effect") && Catch::Contains("not recorded"));
  CHECK(e.code() == pgq::make_sqlstate_error("42703"));
  CHECK(e.diag().script_line == std::size_t{3});
  // Statement 1 stays (it ran on its own); the migration is not recorded.
  CHECK(query_text(db.dsn(), "SELECT to_regclass('t') IS NOT NULL") == "t\n");
  CHECK(query_text(db.dsn(), "SELECT count(*) FROM pgq_migrations") == "0\n");

  // Fixed, and safe to rerun from the top: it goes through.
  pgq::migrator fixed(db.dsn(), load({{"0007_index.up.sql",
                                       "-- pgq:no-transaction\n"
                                       "CREATE TABLE IF NOT EXISTS t (a int);\n"
                                       "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n"}}));
  CHECK(up(fixed).steps.size() == 1);
  CHECK(query_text(db.dsn(), "SELECT version, no_transaction FROM pgq_migrations") == "7|t\n");
}

TEST_CASE("migrate: an edited applied file is drift, blocks up until repair", "[migrate]") {
  scratch_database db;
  temp_dir dir;
  dir.write("0001_accounts.up.sql", "CREATE TABLE accounts (id int);\n");
  dir.write("0002_orders.up.sql", "CREATE TABLE orders (id int);\n");
  {
    pgq::migrator m(db.dsn(), pgq::load_migrations(dir.path()));
    CHECK(up(m).steps.size() == 2);
  }
  SECTION("CRLF line endings are not a change") {
    dir.write("0001_accounts.up.sql", "CREATE TABLE accounts (id int);\r\n");
    pgq::migrator m(db.dsn(), pgq::load_migrations(dir.path()));
    CHECK(status(m).in_sync());
  }
  SECTION("a changed statement is") {
    dir.write("0001_accounts.up.sql", "CREATE TABLE accounts (id bigint);\n");
    dir.write("0003_more.up.sql", "CREATE TABLE more (id int);\n");
    pgq::migrator m(db.dsn(), pgq::load_migrations(dir.path()));
    const auto st = status(m);
    REQUIRE(st.migrations.size() == 3);
    CHECK(st.migrations[0].state == pgq::migration_state::drifted);
    CHECK(st.migrations[0].recorded_checksum != st.migrations[0].file_checksum);
    CHECK(st.migrations[1].state == pgq::migration_state::applied);
    CHECK(st.migrations[2].state == pgq::migration_state::pending);

    std::vector<pgq::migration_status> problems;
    run([&]() { return do_verify(&m, &problems); });
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].version == 1);

    const auto e = error_of([&] { up(m); });
    CHECK(e.code() == pgq::errc::checksum_mismatch);
    CHECK_THAT(e.what(),
               Catch::Contains("drift") && Catch::Contains("0001_accounts.up.sql") && Catch::Contains("repair"));
    CHECK(e.diag().script == "0001_accounts.up.sql");
    CHECK(e.diag().migration_version == 1);
    CHECK(error_of([&] { down(m, 0); }).code() == pgq::errc::checksum_mismatch);
    CHECK(query_text(db.dsn(), "SELECT to_regclass('more') IS NULL") == "t\n");  // nothing ran

    pgq::run_report repaired;
    run([&]() { return do_repair(&m, &repaired); });
    CHECK(repaired.repaired == std::vector<std::int64_t>{1});
    CHECK(query_text(db.dsn(), "SELECT checksum FROM pgq_migrations WHERE version = 1") ==
          pgq::migration_checksum("CREATE TABLE accounts (id bigint);\n") + "\n");
    CHECK(up(m).steps.size() == 1);
    CHECK(status(m).in_sync());
  }
}

TEST_CASE("migrate: down then up returns to the same schema", "[migrate]") {
  scratch_database db;
  pgq::migrator m(db.dsn(), pgq::load_migrations(project_migrations_dir()));
  up(m);
  const std::string full = schema_dump(db.dsn());

  SECTION("one step") {
    const auto back = down(m, 4);
    REQUIRE(back.steps.size() == 1);
    CHECK(back.steps[0].version == 5);
    CHECK(back.steps[0].direction == pgq::migration_direction::down);
    CHECK(schema_dump(db.dsn()) != full);
    CHECK(up(m).steps.size() == 1);
    CHECK(schema_dump(db.dsn()) == full);
  }
  SECTION("all the way") {
    const auto back = down(m, 0);
    CHECK(back.steps.size() == m.migrations().size());
    CHECK(query_text(db.dsn(), "SELECT count(*) FROM pgq_migrations") == "0\n");
    CHECK(query_text(db.dsn(), "SELECT to_regclass('orders') IS NULL AND to_regclass('audit_log') IS NULL") == "t\n");
    CHECK(up(m).steps.size() == m.migrations().size());
    CHECK(schema_dump(db.dsn()) == full);
    CHECK(status(m).in_sync());
  }
}

TEST_CASE("migrate: down refuses, running nothing, when a down file is missing", "[migrate]") {
  scratch_database db;
  pgq::migrator m(db.dsn(), load({{"1_a.up.sql", "CREATE TABLE a (x int);"},
                                  {"1_a.down.sql", "DROP TABLE a;"},
                                  {"2_b.up.sql", "CREATE TABLE b (x int);"}}));
  up(m);
  const auto e = error_of([&] { down(m, 0); });
  CHECK(e.code() == pgq::errc::migration_refused);
  CHECK_THAT(e.what(), Catch::Contains("2_b.up.sql") && Catch::Contains("no down file"));
  CHECK(e.diag().migration_version == 2);
  CHECK(error_of([&] { down(m, -1); }).code() == pgq::errc::migration_refused);
  CHECK(error_of([&] { up(m, 9); }).code() == pgq::errc::migration_refused);
  CHECK(query_text(db.dsn(), "SELECT count(*) FROM pgq_migrations") == "2\n");
}

TEST_CASE("migrate: a dry run plans without creating anything", "[migrate]") {
  scratch_database db;
  pgq::migrator m(db.dsn(), pgq::load_migrations(project_migrations_dir()));
  std::vector<pgq::migration_step> plan;
  run([&]() { return do_plan_up(&m, 3, &plan); });
  REQUIRE(plan.size() == 3);
  CHECK(plan[2].version == 3);
  CHECK(query_text(db.dsn(), "SELECT to_regclass('pgq_migrations') IS NULL") == "t\n");
}

TEST_CASE("migrate: the history table lives in the schema the options name", "[migrate]") {
  scratch_database db;
  pgq::migrator_options o;
  o.schema = "ops";
  o.table = "schema_history";
  pgq::migrator m(db.dsn(), load({{"1_a.up.sql", "CREATE TABLE a (x int);"}}), o);
  CHECK(up(m).steps.size() == 1);
  CHECK(query_text(db.dsn(), "SELECT version, name FROM ops.schema_history") == "1|a\n");
  CHECK(query_text(db.dsn(), "SELECT to_regclass('public.pgq_migrations') IS NULL") == "t\n");
  CHECK(status(m).in_sync());
}

namespace {

asio::awaitable<void> sleep_ms(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
}

// Waits until the runner holding the lock has started its second migration
// (the slow one), then runs a second runner, which must wait.
asio::awaitable<void> second_runner(std::string dsn, pgq::migrator* m, pgq::run_report* out) {
  pgq::connection c = co_await connect_to(dsn);
  for (int i = 0; i < 200; ++i) {
    auto r = co_await c.query("SELECT count(*)::int4 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(0.8)%'");
    if (r[0].get<int>(0) > 0) break;
    co_await sleep_ms(25);
  }
  *out = co_await m->up();
}

}  // namespace

TEST_CASE("migrate: CREATE INDEX CONCURRENTLY succeeds while another runner waits", "[migrate]") {
  scratch_database db;
  const auto files = std::vector<pgq::migration_file>{
      {"1_table.up.sql", "CREATE TABLE t (a int);\nINSERT INTO t SELECT g FROM generate_series(1, 1000) AS g;\n"},
      {"2_index.up.sql",
       "-- pgq:no-transaction\n"
       "SELECT pg_sleep(0.8);\n"
       "CREATE INDEX CONCURRENTLY t_a_idx ON t (a);\n"},
  };
  pgq::migrator first(db.dsn(), load(files));
  pgq::migrator second(db.dsn(), load(files));
  pgq::run_report a, b;
  std::exception_ptr ea, eb;
  int finished = 0;
  asio::io_context ctx(1);
  asio::co_spawn(ctx, do_up(&first, std::nullopt, &a), [&](std::exception_ptr e) {
    ea = std::move(e);
    ++finished;
  });
  asio::co_spawn(ctx, second_runner(db.dsn(), &second, &b), [&](std::exception_ptr e) {
    eb = std::move(e);
    ++finished;
  });
  ctx.run_for(std::chrono::seconds(30));
  REQUIRE(finished == 2);  // no deadlock
  if (ea) std::rethrow_exception(ea);
  if (eb) std::rethrow_exception(eb);
  CHECK(a.steps.size() == 2);
  CHECK(b.steps.empty());
  CHECK(b.waited_for_lock >= std::chrono::milliseconds(200));  // it waited through the index build
  CHECK(query_text(db.dsn(), "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_idx'::regclass") == "t\n");
}

namespace {

asio::awaitable<void> wait_for_lock(pgq::connection* c, bool* done) {
  co_await c->query("SELECT pg_advisory_lock(42)");
  *done = true;
}

// The reason for polling: a session blocked in pg_advisory_lock() holds a
// snapshot, and CREATE INDEX CONCURRENTLY waits for it, so a runner that
// waited that way would deadlock with the holder's index build.
asio::awaitable<void> blocking_waiter_stalls_index(std::string dsn, std::string* index_error) {
  pgq::connection holder = co_await connect_to(dsn);
  pgq::connection waiter = co_await connect_to(dsn);
  pgq::connection builder = co_await connect_to(dsn);
  co_await builder.execute("CREATE TABLE t (a int)");
  co_await holder.query("SELECT pg_advisory_lock(42)");
  auto ex = co_await asio::this_coro::executor;
  bool waiter_done = false;
  asio::co_spawn(ex, wait_for_lock(&waiter, &waiter_done), [](const std::exception_ptr&) {});
  co_await sleep_ms(200);
  co_await builder.execute("SET statement_timeout = '1500ms'");
  try {
    co_await builder.execute("CREATE INDEX CONCURRENTLY t_a_idx ON t (a)");
  } catch (const pgq::sql_error& e) {
    *index_error = e.diag().sqlstate;
  }
  co_await holder.query("SELECT pg_advisory_unlock(42)");
  for (int i = 0; i < 100 && !waiter_done; ++i) co_await sleep_ms(20);
}

}  // namespace

TEST_CASE("migrate: why the lock is polled: a blocked pg_advisory_lock stalls CREATE INDEX CONCURRENTLY", "[migrate]") {
  scratch_database db;
  std::string index_error;
  run([&]() { return blocking_waiter_stalls_index(db.dsn(), &index_error); });
  CHECK(index_error == "57014");  // cancelled by statement_timeout: it was waiting for the blocked session
}

namespace {
asio::awaitable<void> up_later(pgq::migrator* m, pgq::run_report* r) {
  co_await sleep_ms(300);
  co_await do_up(m, std::nullopt, r);
}
}  // namespace

TEST_CASE("migrate: a runner gives up after lock_timeout and names the holder", "[migrate]") {
  scratch_database db;
  const auto files = std::vector<pgq::migration_file>{{"1_slow.up.sql", "SELECT pg_sleep(1.5);"}};
  pgq::migrator slow(db.dsn(), load(files));
  pgq::migrator_options o;
  o.lock_timeout = std::chrono::milliseconds(300);
  pgq::migrator impatient(db.dsn(), load(files), o);
  pgq::run_report a, b;
  std::string error;
  int finished = 0;
  asio::io_context ctx(1);
  asio::co_spawn(ctx, do_up(&slow, std::nullopt, &a), [&](const std::exception_ptr&) { ++finished; });
  asio::co_spawn(ctx, up_later(&impatient, &b), [&](const std::exception_ptr& e) {
    ++finished;
    try {
      if (e) std::rethrow_exception(e);
    } catch (const pgq::sql_error& err) {
      if (err.code() == pgq::errc::timeout) error = err.what();
    }
  });
  ctx.run_for(std::chrono::seconds(30));
  REQUIRE(finished == 2);
  CHECK_THAT(error, Catch::Contains("another migration run") && Catch::Contains("pgq migrate"));
  CHECK(a.steps.size() == 1);
}

// ================================================================ the CLI

#ifdef PGQ_CLI_PATH
namespace {

struct cli_result {
  int status = -1;
  std::string out;  // stdout only
};

// Runs `pgq migrate ARGS` against `dsn`; stderr goes to the test log.
cli_result pgq_migrate(const std::string& dsn, const std::string& args) {
  const std::string cmd =
      shell_quote(PGQ_CLI_PATH) + " migrate " + args + " --dsn " + shell_quote(dsn) + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  cli_result r;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p) != nullptr) r.out += buf;
  const int raw = ::pclose(p);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

void copy_migrations(const temp_dir& to) {
  for (const auto& e : fs::directory_iterator(project_migrations_dir())) {
    fs::copy_file(e.path(), to.path() / e.path().filename());
  }
}

}  // namespace

TEST_CASE("pgq migrate: exit codes for CI", "[migrate][cli]") {
  scratch_database db;
  temp_dir dir;
  copy_migrations(dir);
  const std::string d = "--dir " + shell_quote(dir.path().string());

  auto r = pgq_migrate(db.dsn(), "status " + d);
  CHECK(r.status == 5);  // pending
  CHECK_THAT(r.out, Catch::Contains("0001_demo_schema") && Catch::Contains("pending"));

  r = pgq_migrate(db.dsn(), "up --dry-run --to 2 " + d);
  CHECK(r.status == 0);
  CHECK(r.out == "would apply 0001_demo_schema (8 statements)\nwould apply 0002_demo_data (3 statements)\n");
  CHECK(query_text(db.dsn(), "SELECT to_regclass('pgq_migrations') IS NULL") == "t\n");  // ran nothing

  r = pgq_migrate(db.dsn(), "up " + d);
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("applied 0005_orders_by_account"));
  r = pgq_migrate(db.dsn(), "up " + d);
  CHECK(r.status == 0);
  CHECK(r.out == "nothing to do\n");

  r = pgq_migrate(db.dsn(), "status --format json " + d);
  CHECK(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["in_sync"] == true);
  CHECK(j["migrations"].size() == 5);
  CHECK(j["migrations"][4]["state"] == "applied");
  CHECK(pgq_migrate(db.dsn(), "verify " + d).status == 0);

  // An edited applied file: drift until repair.
  {
    std::ofstream f(dir.path() / "0003_accounts.down.sql", std::ios::app);
    f << "-- a comment in a down file is not drift\n";
  }
  CHECK(pgq_migrate(db.dsn(), "status " + d).status == 0);
  {
    std::ofstream f(dir.path() / "0003_accounts.up.sql", std::ios::app);
    f << "-- an edit\n";
  }
  r = pgq_migrate(db.dsn(), "status " + d);
  CHECK(r.status == 5);
  CHECK_THAT(r.out, Catch::Contains("drifted"));
  CHECK(pgq_migrate(db.dsn(), "verify " + d).status == 5);
  CHECK(pgq_migrate(db.dsn(), "up " + d).status == 1);
  CHECK(pgq_migrate(db.dsn(), "repair " + d).status == 0);
  CHECK(pgq_migrate(db.dsn(), "status " + d).status == 0);

  // new: the next number, both files; the new one is pending.
  r = pgq_migrate(db.dsn(), "new add_notes " + d);
  CHECK(r.status == 0);
  CHECK(fs::exists(dir.path() / "0006_add_notes.up.sql"));
  CHECK(fs::exists(dir.path() / "0006_add_notes.down.sql"));
  CHECK(pgq_migrate(db.dsn(), "status " + d).status == 5);
  CHECK(pgq_migrate(db.dsn(), "up " + d).status == 0);
  CHECK(pgq_migrate(db.dsn(), "new " + shell_quote("two words") + " " + d).status == 2);

  // down: one step by default, or --to.
  r = pgq_migrate(db.dsn(), "down " + d);
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::StartsWith("reverted 0006_add_notes"));
  CHECK(pgq_migrate(db.dsn(), "down --to 0 " + d).status == 0);
  CHECK(query_text(db.dsn(), "SELECT count(*) FROM pgq_migrations") == "0\n");

  // Usage errors and a server that is not there.
  CHECK(pgq_migrate(db.dsn(), "up --to abc " + d).status == 2);
  CHECK(pgq_migrate(db.dsn(), "status --to 3 " + d).status == 2);
  CHECK(pgq_migrate(db.dsn(), "status --format csv " + d).status == 2);
  CHECK(pgq_migrate(db.dsn(), "sideways " + d).status == 2);
  CHECK(pgq_migrate(db.dsn(), "status --dir /no/such/dir").status == 2);
  CHECK(pgq_migrate("postgresql://postgres@127.0.0.1:1/none?connect_timeout=5", "status " + d).status == 3);
}

TEST_CASE("pgq migrate: a failing migration exits 1 and says which statement", "[migrate][cli]") {
  scratch_database db;
  temp_dir dir;
  dir.write("1_ok.up.sql", "CREATE TABLE ok (a int);\n");
  dir.write("2_bad.up.sql", "CREATE TABLE bad (a int);\nSELECT no_such_column FROM ok;\n");
  const std::string cmd = shell_quote(PGQ_CLI_PATH) + " migrate up --dir " + shell_quote(dir.path().string()) +
                          " --dsn " + shell_quote(db.dsn()) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string all;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p) != nullptr) all += buf;
  const int raw = ::pclose(p);
  CHECK(WEXITSTATUS(raw) == 1);
  CHECK_THAT(all, Catch::Contains("applied 1_ok") && Catch::Contains("2_bad.up.sql") &&
                      Catch::Contains("statement 2 of 2, line 2") && Catch::Contains("no_such_column"));
  CHECK(query_text(db.dsn(), "SELECT version FROM pgq_migrations") == "1\n");
}
#endif
