// `pgq migrate`: the migration runner from a shell or a CI job.
//
// It runs on the tool's session (the connect check that exits 3, Ctrl-C
// that cancels the running statement on the server and exits 130) and its
// output code; the migrator keeps connections of its own, so the session's
// pool stays empty. What differs from the other commands, and why:
// - the default format is table even when stdout is not a terminal
//   (migrate's output is for people first, and CI logs are not terminals);
//   csv is refused: a migration list is not a result set users feed on;
// - failures are reported as the migrator wrote them ("pgq migrate: ..."):
//   its message names the file, the statement and its line, and what the
//   failure left behind, which psql's error shape would drop;
// - every failure once connected is exit 1 (a migration failed, drift, a
//   refused plan, the lock not obtained in time, a lost connection), as
//   docs/migrations.md documents for CI, except bad migration files (2) and
//   a failed connect (3); `status` and `verify` exit 5 when not in sync.
#include "cmd_migrate.hpp"

#include <pgq/migrate.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace pgq::cli {

namespace {

struct migrate_args {
  std::string action;
  std::string new_name;
  std::string dir = "migrations";
  std::string to;
  bool dry_run = false;
  std::string schema = "public";
  std::string table = "pgq_migrations";
  double lock_timeout_s = 60;
};

// --format for migrate: table unless asked otherwise; csv refused.
output_format migrate_format(const global_options& g) {
  if (g.format.empty()) return output_format::table;
  output_format f{};
  if (!parse_format(g.format, f) || f == output_format::csv) {
    throw usage_error("migrate: --format must be table, json or ndjson, not \"" + g.format + "\"");
  }
  return f;
}

// The exit code of a failure once the session connected (see the top).
int migrate_exit_code_of(const std::exception& e) {
  if (dynamic_cast<const usage_error*>(&e) != nullptr) return exit_code::usage;
  if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e)) {
    const auto ec = se->code();
    if (ec == pgq::errc::bad_migration || ec == pgq::errc::sql_split_failed) return exit_code::usage;
    if (ec == pgq::errc::connect_failed || ec == pgq::errc::bad_conninfo) return exit_code::connect;
  }
  return exit_code::failed;
}

std::optional<std::int64_t> parse_version(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0) {
    throw usage_error("--to: \"" + text + "\" is not a version number");
  }
  return v;
}

std::string label_of(const pgq::migrator& m, std::int64_t version, const std::string& name) {
  for (const auto& mi : m.migrations()) {
    if (mi.version == version) return mi.label;
  }
  return std::to_string(version) + "_" + name;
}

nlohmann::json null_if_empty(const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); }

template <class T>
nlohmann::json null_if_unset(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

std::string state_text(const pgq::migration_status& s) {
  std::string t(pgq::to_string(s.state));
  if (s.out_of_order) t += " (out of order)";
  return t;
}

// A JSON document {"field": value, ..., "<key>": [records]}: the records
// written by the shared output code, one object per line.
void write_json_document(std::ostream& out, const std::vector<std::pair<std::string, nlohmann::json>>& fields,
                         const std::string& key, const record_set& records) {
  out << "{\n";
  for (const auto& [name, value] : fields) {
    out << "  " << nlohmann::json(name).dump() << ": " << value.dump() << ",\n";
  }
  out << "  " << nlohmann::json(key).dump() << ": ";
  write_records_json(out, records, "  ");
  out << "\n}\n";
}

// Migrations and their state: for people (table) the label, the state and
// when, how long and by whom it was applied; for programs (json, ndjson)
// every field.
void write_statuses(std::ostream& out, output_format fmt, const pgq::migrator& m,
                    const std::vector<pgq::migration_status>& list,
                    const std::vector<std::pair<std::string, nlohmann::json>>& json_fields) {
  record_set rs;
  if (fmt == output_format::table) {
    rs.columns = {"migration", "state", "applied at", "took", "by"};
    for (const auto& s : list) {
      rs.rows.push_back({label_of(m, s.version, s.name), state_text(s), null_if_unset(s.applied_at),
                         s.execution_ms ? nlohmann::json(std::to_string(*s.execution_ms) + " ms") : nlohmann::json(),
                         null_if_unset(s.applied_by)});
    }
    write_records(out, fmt, rs);
    return;
  }
  rs.columns = {"migration",  "version",      "name",       "state",    "out_of_order",
                "applied_at", "execution_ms", "applied_by", "checksum", "recorded_checksum"};
  for (const auto& s : list) {
    rs.rows.push_back({label_of(m, s.version, s.name), s.version, s.name, std::string(pgq::to_string(s.state)),
                       s.out_of_order, null_if_unset(s.applied_at), null_if_unset(s.execution_ms),
                       null_if_unset(s.applied_by), null_if_empty(s.file_checksum),
                       null_if_empty(s.recorded_checksum)});
  }
  if (fmt == output_format::json) write_json_document(out, json_fields, "migrations", rs);
  else write_records(out, fmt, rs);
}

// Migrations applied or reverted (or that would be, with --dry-run): one
// line each for people; records for programs.
void write_steps(std::ostream& out, output_format fmt, const pgq::migrator& m,
                 const std::vector<pgq::migration_step>& steps, bool dry_run, std::chrono::milliseconds waited) {
  if (fmt == output_format::table) {
    for (const auto& s : steps) {
      const bool up = s.direction == pgq::migration_direction::up;
      out << (dry_run ? (up ? "would apply " : "would revert ") : (up ? "applied " : "reverted "))
          << label_of(m, s.version, s.name) << " (" << s.statements
          << (s.statements == 1 ? " statement" : " statements") << (s.no_transaction ? ", outside a transaction" : "");
      if (!dry_run) out << ", " << s.took.count() << " ms";
      out << ")\n";
    }
    return;
  }
  record_set rs;
  rs.columns = {"migration", "version", "direction", "no_transaction", "statements"};
  if (!dry_run) rs.columns.emplace_back("took_ms");
  for (const auto& s : steps) {
    std::vector<nlohmann::json> row{label_of(m, s.version, s.name), s.version,
                                    s.direction == pgq::migration_direction::up ? "up" : "down", s.no_transaction,
                                    s.statements};
    if (!dry_run) row.emplace_back(s.took.count());
    rs.rows.push_back(std::move(row));
  }
  if (fmt == output_format::json) {
    std::vector<std::pair<std::string, nlohmann::json>> fields{{"dry_run", dry_run}};
    if (!dry_run) fields.emplace_back("waited_for_lock_ms", waited.count());
    write_json_document(out, fields, "steps", rs);
  } else {
    write_records(out, fmt, rs);
  }
}

// `new NAME`: the next version (integer, or a UTC timestamp when the folder
// already uses timestamps) and an up and a down file. Needs no server.
int create_migration(const migrate_args& a, output_format fmt) {
  const fs::path dir(a.dir);
  std::int64_t newest = 0;
  std::size_t digits = 4;
  bool timestamps = false;
  std::vector<pgq::migration> existing;
  if (fs::exists(dir)) {
    try {
      existing = pgq::load_migrations(dir);
    } catch (const pgq::sql_error& e) {  // bad_migration, sql_split_failed: the files
      throw usage_error(e.what());
    }
    for (const auto& m : existing) {
      newest = std::max(newest, m.version);
      const std::size_t d = m.label.size() - m.name.size() - 1;
      digits = std::max(digits, d);
      timestamps = timestamps || d >= 14;
    }
  }
  std::string version;
  if (timestamps) {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    std::ostringstream s;
    s << std::put_time(&utc, "%Y%m%d%H%M%S");
    version = s.str();
    if (std::stoll(version) <= newest) version = std::to_string(newest + 1);
  } else {
    version = std::to_string(newest + 1);
    if (version.size() < digits) version.insert(0, digits - version.size(), '0');
  }
  const std::string stem = version + "_" + a.new_name;
  try {
    pgq::parse_migration_file_name(stem + ".up.sql");
  } catch (const pgq::sql_error&) {
    throw usage_error("new: \"" + a.new_name + "\" is not a valid migration name: use letters, digits, _ and -");
  }
  fs::create_directories(dir);
  const fs::path up = dir / (stem + ".up.sql");
  const fs::path down = dir / (stem + ".down.sql");
  for (const auto& p : {up, down}) {
    if (fs::exists(p)) throw std::runtime_error("new: " + p.string() + " already exists");
  }
  {
    std::ofstream f(up, std::ios::binary);
    f << "-- " << stem << ": what this migration does and why.\n"
      << "-- It runs in one transaction with its history row. For CREATE INDEX\n"
      << "-- CONCURRENTLY, make the first line: -- pgq:no-transaction\n";
    if (!f) throw std::runtime_error("new: cannot write " + up.string());
  }
  {
    std::ofstream f(down, std::ios::binary);
    f << "-- Reverts " << stem << ".\n";
    if (!f) throw std::runtime_error("new: cannot write " + down.string());
  }
  if (fmt == output_format::table) {
    std::cout << "created " << up.string() << "\ncreated " << down.string() << '\n';
  } else {
    nlohmann::json j;
    j["version"] = version;
    j["up"] = up.string();
    j["down"] = down.string();
    std::cout << j.dump(fmt == output_format::json ? 2 : -1) << '\n';
  }
  return exit_code::ok;
}

struct migrate_run {
  const migrate_args* args = nullptr;
  output_format fmt = output_format::table;
  std::optional<std::int64_t> target;
  std::vector<pgq::migration> migrations;
};

asio::awaitable<int> run_status(pgq::migrator& m, output_format fmt) {
  const auto st = co_await m.status();
  const std::vector<std::pair<std::string, nlohmann::json>> fields{{"history_exists", st.history_exists},
                                                                   {"in_sync", st.in_sync()}};
  write_statuses(std::cout, fmt, m, st.migrations, fields);
  std::cerr << "pgq migrate: " << st.count(pgq::migration_state::applied) << " applied, "
            << st.count(pgq::migration_state::pending) << " pending, " << st.count(pgq::migration_state::drifted)
            << " drifted, " << st.count(pgq::migration_state::missing_file) << " without a file\n";
  co_return st.in_sync() ? exit_code::ok : exit_code::not_in_sync;
}

asio::awaitable<int> run_verify(pgq::migrator& m, output_format fmt) {
  const auto problems = co_await m.verify();
  if (fmt != output_format::table || !problems.empty()) {
    const std::vector<std::pair<std::string, nlohmann::json>> fields{{"ok", problems.empty()}};
    write_statuses(std::cout, fmt, m, problems, fields);
  }
  if (problems.empty()) {
    std::cerr << "pgq migrate: verify: " << m.migrations().size()
              << " migration files parse, and every applied one matches its checksum\n";
    co_return exit_code::ok;
  }
  std::cerr << "pgq migrate: verify: " << problems.size()
            << " problem(s); drift is cleared by restoring the file or by `pgq migrate repair`\n";
  co_return exit_code::not_in_sync;
}

asio::awaitable<int> run_repair(pgq::migrator& m, output_format fmt) {
  const auto rep = co_await m.repair();
  if (fmt == output_format::json) {
    nlohmann::json j;
    j["repaired"] = rep.repaired;
    std::cout << j.dump(2) << '\n';
  } else if (fmt == output_format::ndjson) {
    for (auto v : rep.repaired) {
      nlohmann::json j;
      j["migration"] = label_of(m, v, "");
      j["version"] = v;
      std::cout << j.dump() << '\n';
    }
  } else if (rep.repaired.empty()) {
    std::cout << "nothing to repair\n";
  } else {
    for (auto v : rep.repaired) std::cout << "recorded the new checksum of " << label_of(m, v, "") << '\n';
  }
  co_return exit_code::ok;
}

asio::awaitable<int> run_up_down(session& s, pgq::migrator& m, const migrate_run& run) {
  const migrate_args& a = *run.args;
  const output_format fmt = run.fmt;
  const bool up = a.action == "up";
  std::int64_t down_target = 0;
  if (!up) {
    if (run.target) {
      down_target = *run.target;
    } else {
      // Without --to, down reverts the newest applied migration only.
      const auto st = co_await m.status();
      std::vector<std::int64_t> applied;
      for (const auto& ms : st.migrations) {
        if (ms.state != pgq::migration_state::pending) applied.push_back(ms.version);
      }
      if (applied.size() >= 2) down_target = applied[applied.size() - 2];
    }
  }
  if (a.dry_run) {
    std::vector<pgq::migration_step> steps;
    if (up) steps = co_await m.plan_up(run.target);
    else steps = co_await m.plan_down(down_target);
    if (fmt == output_format::table && steps.empty()) std::cout << "nothing to do\n";
    write_steps(std::cout, fmt, m, steps, true, {});
    co_return exit_code::ok;
  }
  // Progress as it happens (table, ndjson), or collected (json): what took
  // effect is reported even when a later migration fails.
  std::vector<pgq::migration_step> done;
  pgq::migrator_options with_progress = m.options();
  with_progress.on_step = [&done, fmt, &m](const pgq::migration_step& step) {
    done.push_back(step);
    if (fmt != output_format::json) {
      const std::vector<pgq::migration_step> one(1, step);
      write_steps(std::cout, fmt, m, one, false, {});
      std::cout.flush();
    }
  };
  pgq::migrator runner(s.options().dsn, m.migrations(), with_progress);
  std::chrono::milliseconds waited{0};
  std::exception_ptr failure;
  try {
    pgq::run_report rep;
    if (up) rep = co_await runner.up(run.target);
    else rep = co_await runner.down(down_target);
    waited = rep.waited_for_lock;
  } catch (...) {
    failure = std::current_exception();
  }
  if (fmt == output_format::json) {
    write_steps(std::cout, fmt, m, done, false, waited);
  } else if (fmt == output_format::table && done.empty() && !failure) {
    std::cout << "nothing to do\n";
  }
  if (failure) std::rethrow_exception(failure);
  co_return exit_code::ok;
}

asio::awaitable<int> run_action(session& s, const migrate_run* run) {
  const migrate_args& a = *run->args;
  pgq::migrator_options o;
  o.schema = a.schema;
  o.table = a.table;
  o.lock_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(a.lock_timeout_s * 1000));
  try {
    pgq::migrator m(s.options().dsn, run->migrations, o);
    if (a.action == "status") co_return co_await run_status(m, run->fmt);
    if (a.action == "verify") co_return co_await run_verify(m, run->fmt);
    if (a.action == "repair") co_return co_await run_repair(m, run->fmt);
    co_return co_await run_up_down(s, m, *run);
  } catch (const std::exception& e) {
    if (s.interrupted()) co_return exit_code::interrupted;  // the session says so
    std::cerr << "pgq migrate: " << e.what() << '\n';
    co_return migrate_exit_code_of(e);
  }
}

int migrate_command(const global_options& g, const migrate_args& a) {
  migrate_run run;
  run.args = &a;
  run.fmt = migrate_format(g);
  const bool moves = a.action == "up" || a.action == "down";
  if (!moves && a.action != "status" && a.action != "verify" && a.action != "repair" && a.action != "new") {
    throw usage_error("migrate: unknown action \"" + a.action + "\"");
  }
  if (!a.to.empty() && !moves) throw usage_error("--to applies to up and down only");
  if (a.dry_run && !moves) throw usage_error("--dry-run applies to up and down only");
  if (a.lock_timeout_s < 0) throw usage_error("--lock-timeout must not be negative");
  run.target = parse_version(a.to);

  if (a.action == "new") return create_migration(a, run.fmt);

  // The files first: a bad folder is reported without a server.
  try {
    run.migrations = pgq::load_migrations(fs::path(a.dir));
  } catch (const pgq::sql_error& e) {  // bad_migration, sql_split_failed: the files
    throw usage_error(e.what());
  }
  session s(g);
  const migrate_run* rp = &run;
  // The pool stays empty: the migrator opens connections of its own.
  return s.run([rp](session& ss) { return run_action(ss, rp); }, 1);
}

}  // namespace

void add_migrate_command(CLI::App& app, const global_options& g, int& exit_code) {
  auto args = std::make_shared<migrate_args>();
  auto* cmd = app.add_subcommand("migrate", "apply SQL migrations (NNNN_name.up.sql / .down.sql) under a lock");
  cmd->fallthrough();
  cmd->require_subcommand(1);
  cmd->footer(
      "--format: table (the default, even when piped), json or ndjson.\n"
      "Exit status: 0 ok; 1 a migration or check failed, or the lock was not obtained in time;\n"
      "2 bad usage or bad migration files; 3 could not connect; 5 status found pending, drifted\n"
      "or file-less migrations, or verify found problems; 130 interrupted (Ctrl-C cancels the\n"
      "running statement on the server; a migration in a transaction rolls back).");
  cmd->add_option("--dir", args->dir, "folder of migration files (default: migrations)");
  cmd->add_option("--to", args->to, "up: apply up to this version; down: revert down to it (0: all)");
  cmd->add_flag("--dry-run", args->dry_run, "print what up or down would run, and run nothing");
  cmd->add_option("--schema", args->schema, "schema of the history table (default: public)");
  cmd->add_option("--table", args->table, "name of the history table (default: pgq_migrations)");
  cmd->add_option("--lock-timeout", args->lock_timeout_s, "seconds to wait for another runner's lock (default: 60)");

  struct action {
    const char* name;
    const char* help;
  };
  for (const action& act : {
           action{"status", "list migrations and their state; exit 5 unless all are applied and unchanged"},
           action{"up", "apply pending migrations (all, or --to VERSION)"},
           action{"down", "revert the newest applied migration, or down --to VERSION"},
           action{"verify", "check that applied files are unchanged; exit 5 on drift"},
           action{"repair", "record the current checksums of changed (drifted) applied files"},
           action{"new", "create NNNN_NAME.up.sql and .down.sql in --dir"},
       }) {
    auto* sub = cmd->add_subcommand(act.name, act.help);
    sub->fallthrough();
    if (std::string_view(act.name) == "new") {
      sub->add_option("name", args->new_name, "the migration's name (letters, digits, _ and -)")->required();
    }
  }

  cmd->callback([args, cmd, &g, &exit_code] {
    for (auto* sub : cmd->get_subcommands()) args->action = sub->get_name();
    exit_code = migrate_command(g, *args);
  });
}

}  // namespace pgq::cli
