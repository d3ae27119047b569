// End-to-end tests of `pgq migrate` on the tool's session and output code:
// output formats, exit codes (the tool's, plus 5 for status/verify), Ctrl-C.
// The exit codes CI relies on are also checked by the "[migrate][cli]"
// cases of tests/integration/test_migrate.cpp.
#include "support.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>

using namespace pgq_cli_test;
namespace fs = std::filesystem;

namespace {

const std::string tag = "pgq_cli_mig" + std::to_string(::getpid());

// A folder of migrations of its own, removed at the end.
struct migration_dir {
  fs::path path = fs::temp_directory_path() / (tag + "_" + std::to_string(counter()++));
  migration_dir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~migration_dir() { fs::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
  }
  std::string str() const { return path.string(); }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

// `pgq migrate ARGS --dir DIR --table HISTORY`: a history table of this
// test's own, so that tests running at once do not meet.
std::vector<std::string> migrate(std::vector<std::string> args, const migration_dir& dir, const std::string& history) {
  args.insert(args.begin(), "migrate");
  for (const char* a : {"--dir", "--table"}) args.emplace_back(a);
  args.insert(args.end() - 1, dir.str());
  args.push_back(history);
  return args;
}

void drop(const std::string& tables) { server_value("DROP TABLE IF EXISTS " + tables); }

}  // namespace

TEST_CASE("migrate: status as a table and as JSON or NDJSON through the shared output code", "[cli][migrate]") {
  const std::string history = tag + "_fmt";
  const std::string t = tag + "_fmt_t";
  drop(history + ", " + t);
  migration_dir dir;
  dir.write("0001_first.up.sql", "CREATE TABLE " + t + " (a int);\n");
  dir.write("0001_first.down.sql", "DROP TABLE " + t + ";\n");
  dir.write("0002_second.up.sql", "ALTER TABLE " + t + " ADD COLUMN b int;\n");

  // Not a terminal, yet a table: migrate's default, for people and CI logs.
  auto table = pgq(migrate({"status"}, dir, history));
  CHECK(table.code == 5);
  const auto rows = lines(table.out);
  REQUIRE(rows.size() == 5);
  CHECK(rows[0].find("migration") != std::string::npos);
  CHECK(rows[0].find(" |  state  | applied at | took | by") != std::string::npos);  // psql-like, centred
  CHECK(rows[1].rfind("-", 0) == 0);
  CHECK(rows[2].find(" 0001_first  | pending") == 0);
  CHECK(rows[4] == "(2 rows)");
  CHECK(table.err.find("0 applied, 2 pending") != std::string::npos);

  REQUIRE(pgq(migrate({"up", "--to", "1"}, dir, history)).code == 0);

  auto json = pgq(migrate({"--format", "json", "status"}, dir, history));
  CHECK(json.code == 5);
  const auto j = nlohmann::json::parse(json.out);
  CHECK(j["in_sync"] == false);
  CHECK(j["history_exists"] == true);
  REQUIRE(j["migrations"].size() == 2);
  CHECK(j["migrations"][0]["migration"] == "0001_first");
  CHECK(j["migrations"][0]["version"] == 1);
  CHECK(j["migrations"][0]["state"] == "applied");
  CHECK(j["migrations"][0]["checksum"].is_string());
  CHECK(j["migrations"][0]["execution_ms"].is_number());
  CHECK(j["migrations"][1]["state"] == "pending");
  CHECK(j["migrations"][1]["applied_at"].is_null());

  auto nd = pgq(migrate({"--format", "ndjson", "status"}, dir, history));
  CHECK(nd.code == 5);
  const auto objects = lines(nd.out);
  REQUIRE(objects.size() == 2);
  CHECK(objects[0].rfind("{\"migration\":\"0001_first\",\"version\":1,", 0) == 0);  // keys in column order
  CHECK(nlohmann::json::parse(objects[1])["state"] == "pending");

  // up and down in NDJSON: one line per migration, as each commits.
  auto up = pgq(migrate({"--format", "ndjson", "up"}, dir, history));
  CHECK(up.code == 0);
  REQUIRE(lines(up.out).size() == 1);
  const auto step = nlohmann::json::parse(up.out);
  CHECK(step["migration"] == "0002_second");
  CHECK(step["direction"] == "up");
  CHECK(step["took_ms"].is_number());
  CHECK(pgq(migrate({"status"}, dir, history)).code == 0);

  // csv stays refused, as before; so does a format nobody knows.
  auto csv = pgq(migrate({"--format", "csv", "status"}, dir, history));
  CHECK(csv.code == 2);
  CHECK(csv.err.find("table, json or ndjson") != std::string::npos);

  CHECK(pgq(migrate({"down", "--to", "0"}, dir, history)).code == 1);  // 0002 has no down file: nothing runs
  drop(history + ", " + t);
}

TEST_CASE("migrate: exit codes on the tool's session", "[cli][migrate]") {
  const std::string history = tag + "_codes";
  drop(history);
  migration_dir dir;
  dir.write("1_one.up.sql", "SELECT 1;\n");

  // Could not connect, or a conninfo libpq cannot parse: 3, as for every command.
  auto down = pgq(migrate({"--dsn", "postgresql://nobody@127.0.0.1:1/none", "status"}, dir, history));
  CHECK(down.code == 3);
  CHECK(down.err.find("Connection refused") != std::string::npos);
  CHECK(pgq(migrate({"--dsn", "host=127.0.0.1 no_such_option=1", "status"}, dir, history)).code == 3);

  // Bad migration files: 2, before any server is asked.
  migration_dir bad;
  bad.write("1_one.up.sql", "SELECT 1;\n");
  bad.write("1_other.up.sql", "SELECT 2;\n");  // the same version twice
  auto dup = pgq(migrate({"--dsn", "postgresql://nobody@127.0.0.1:1/none", "status"}, bad, history));
  CHECK(dup.code == 2);

  // The help names every code.
  auto help = pgq({"migrate", "--help"});
  CHECK(help.code == 0);
  for (const char* code : {"0 ok", "1 a migration", "2 bad usage", "3 could not connect", "5 status", "130"}) {
    CHECK(help.out.find(code) != std::string::npos);
  }
  drop(history);
}

TEST_CASE("migrate: the lock not obtained in time is 1, not the timeout code", "[cli][migrate]") {
  const std::string history = tag + "_lock";
  const std::string marker = tag + "_lock_sleep";
  drop(history);
  migration_dir dir;
  dir.write("1_slow.up.sql", "SELECT pg_sleep(30), '" + marker + "';\n");
  child holder(migrate({"up"}, dir, history));
  const std::string running = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" +
                              marker + "%' AND pid <> pg_backend_pid()";
  REQUIRE(wait_for_value(running, "1", 10s));
  auto late = pgq(migrate({"up", "--lock-timeout", "0.3"}, dir, history));
  CHECK(late.code == 1);
  CHECK(late.err.find("held the lock") != std::string::npos);
  holder.signal(SIGINT);
  CHECK(holder.wait(10s).code == 130);
  drop(history);
}

TEST_CASE("migrate: Ctrl-C cancels the running migration on the server, rolls it back and exits 130",
          "[cli][migrate]") {
  const std::string history = tag + "_sigint";
  const std::string t = tag + "_sigint_t";
  const std::string marker = tag + "_sigint_sleep";
  drop(history + ", " + t + ", " + t + "2");
  migration_dir dir;
  dir.write("1_first.up.sql", "CREATE TABLE " + t + " (a int);\n");
  dir.write("2_slow.up.sql", "CREATE TABLE " + t + "2 (a int);\nSELECT pg_sleep(30), '" + marker + "';\n");

  const auto start = std::chrono::steady_clock::now();
  child c(migrate({"up"}, dir, history));
  const std::string running = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" +
                              marker + "%' AND pid <> pg_backend_pid()";
  REQUIRE(wait_for_value(running, "1", 10s));
  c.signal(SIGINT);
  auto o = c.wait(10s);
  CHECK(o.code == 130);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK(o.out.find("applied 1_first") != std::string::npos);  // what committed before is reported
  CHECK(wait_for_value(running, "0"));                        // cancelled on the server, not left running
  CHECK(server_value("SELECT string_agg(version::text, ',') FROM " + history) == "1");
  CHECK(server_value("SELECT to_regclass('" + t + "2') IS NULL") == "t");  // its transaction rolled back
  // The lock went with the connections: the next run takes it at once.
  CHECK(pgq(migrate({"up", "--to", "1", "--lock-timeout", "1"}, dir, history)).code == 0);
  drop(history + ", " + t + ", " + t + "2");
}
