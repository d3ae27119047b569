// `pgq migrate`: the migration runner from a shell or a CI job.
#include "cmd_migrate.hpp"

#include <pgq/pgq.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
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

// A usage error: exit 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs one coroutine to completion on its own io_context; rethrows its
// exception.
template <class T>
T run_sync(asio::awaitable<T> op) {
  asio::io_context ctx(1);
  std::optional<T> value;
  std::exception_ptr failure;
  asio::co_spawn(ctx, std::move(op), [&](std::exception_ptr e, T v) {
    failure = e;
    if (!e) value = std::move(v);
  });
  ctx.run();
  if (failure) std::rethrow_exception(failure);
  return std::move(*value);
}

asio::awaitable<bool> probe(std::string dsn) {
  pgq::connection c(co_await asio::this_coro::executor);
  co_await c.connect(dsn);
  co_return true;
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

// An aligned table: a header row and the rows, left-aligned.
void write_aligned(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (std::size_t n = 0; n < rows.size(); ++n) {
    std::string line;
    for (std::size_t i = 0; i < rows[n].size(); ++i) {
      if (i > 0) line += "  ";
      line += rows[n][i];
      if (i + 1 < rows[n].size()) line += std::string(width[i] - rows[n][i].size(), ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
    if (n == 0) {
      std::string rule;
      for (std::size_t i = 0; i < width.size(); ++i) {
        if (i > 0) rule += "  ";
        rule += std::string(width[i], '-');
      }
      out << rule << '\n';
    }
  }
}

nlohmann::json status_json(const pgq::migrator& m, const pgq::migration_status& s) {
  nlohmann::json j;
  j["version"] = s.version;
  j["name"] = s.name;
  j["migration"] = label_of(m, s.version, s.name);
  j["state"] = std::string(pgq::to_string(s.state));
  j["out_of_order"] = s.out_of_order;
  j["checksum"] = s.file_checksum.empty() ? nlohmann::json() : nlohmann::json(s.file_checksum);
  j["recorded_checksum"] = s.recorded_checksum.empty() ? nlohmann::json() : nlohmann::json(s.recorded_checksum);
  j["applied_at"] = s.applied_at ? nlohmann::json(*s.applied_at) : nlohmann::json();
  j["execution_ms"] = s.execution_ms ? nlohmann::json(*s.execution_ms) : nlohmann::json();
  j["applied_by"] = s.applied_by ? nlohmann::json(*s.applied_by) : nlohmann::json();
  return j;
}

std::string state_text(const pgq::migration_status& s) {
  std::string t(pgq::to_string(s.state));
  if (s.out_of_order) t += " (out of order)";
  return t;
}

void write_statuses(std::ostream& out, bool json, const pgq::migrator& m,
                    const std::vector<pgq::migration_status>& list, nlohmann::json extra) {
  if (json) {
    nlohmann::json j = std::move(extra);
    j["migrations"] = nlohmann::json::array();
    for (const auto& s : list) j["migrations"].push_back(status_json(m, s));
    out << j.dump(2) << '\n';
    return;
  }
  std::vector<std::vector<std::string>> rows{{"migration", "state", "applied at", "took", "by"}};
  for (const auto& s : list) {
    rows.push_back({label_of(m, s.version, s.name), state_text(s), s.applied_at.value_or(""),
                    s.execution_ms ? std::to_string(*s.execution_ms) + " ms" : "", s.applied_by.value_or("")});
  }
  write_aligned(out, rows);
}

void write_steps(std::ostream& out, bool json, const pgq::migrator& m, const std::vector<pgq::migration_step>& steps,
                 bool dry_run, std::chrono::milliseconds waited) {
  if (json) {
    nlohmann::json j;
    j["dry_run"] = dry_run;
    if (!dry_run) j["waited_for_lock_ms"] = waited.count();
    j["steps"] = nlohmann::json::array();
    for (const auto& s : steps) {
      nlohmann::json e;
      e["version"] = s.version;
      e["migration"] = label_of(m, s.version, s.name);
      e["direction"] = s.direction == pgq::migration_direction::up ? "up" : "down";
      e["no_transaction"] = s.no_transaction;
      e["statements"] = s.statements;
      if (!dry_run) e["took_ms"] = s.took.count();
      j["steps"].push_back(e);
    }
    out << j.dump(2) << '\n';
    return;
  }
  if (steps.empty()) {
    out << "nothing to do\n";
    return;
  }
  for (const auto& s : steps) {
    const bool up = s.direction == pgq::migration_direction::up;
    out << (dry_run ? (up ? "would apply " : "would revert ") : (up ? "applied " : "reverted "))
        << label_of(m, s.version, s.name) << " (" << s.statements << (s.statements == 1 ? " statement" : " statements")
        << (s.no_transaction ? ", outside a transaction" : "");
    if (!dry_run) out << ", " << s.took.count() << " ms";
    out << ")\n";
  }
}

// `new NAME`: the next version (integer, or a UTC timestamp when the folder
// already uses timestamps) and an up and a down file.
int create_migration(const migrate_args& a, bool json) {
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
  if (json) {
    nlohmann::json j;
    j["version"] = version;
    j["up"] = up.string();
    j["down"] = down.string();
    std::cout << j.dump(2) << '\n';
  } else {
    std::cout << "created " << up.string() << "\ncreated " << down.string() << '\n';
  }
  return migrate_exit_ok;
}

int run_migrate(const migrate_args& a, const std::string& dsn, const std::string& format_option) {
  // No --format: a table (migrate's output is for people first).
  const std::string format = format_option.empty() ? std::string("table") : format_option;
  if (format != "table" && format != "json") {
    throw usage_error("migrate: --format must be table or json, not \"" + format + "\"");
  }
  const bool json = format == "json";
  const bool moves = a.action == "up" || a.action == "down";
  if (!a.to.empty() && !moves) throw usage_error("--to applies to up and down only");
  if (a.dry_run && !moves) throw usage_error("--dry-run applies to up and down only");
  if (a.lock_timeout_s < 0) throw usage_error("--lock-timeout must not be negative");
  const auto target = parse_version(a.to);

  if (a.action == "new") return create_migration(a, json);

  std::vector<pgq::migration> migrations;
  try {
    migrations = pgq::load_migrations(fs::path(a.dir));
  } catch (const pgq::sql_error& e) {  // bad_migration, sql_split_failed: the files
    std::cerr << "pgq migrate: " << e.what() << '\n';
    return migrate_exit_usage;
  }

  try {
    run_sync(probe(dsn));
  } catch (const pgq::sql_error& e) {
    std::cerr << "pgq migrate: could not connect: " << e.what() << '\n';
    return e.code() == pgq::errc::bad_conninfo ? migrate_exit_usage : migrate_exit_no_server;
  }

  pgq::migrator_options o;
  o.schema = a.schema;
  o.table = a.table;
  o.lock_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(a.lock_timeout_s * 1000));
  pgq::migrator m(dsn, std::move(migrations), o);

  if (a.action == "status") {
    const auto st = run_sync(m.status());
    nlohmann::json extra;
    extra["in_sync"] = st.in_sync();
    extra["history_exists"] = st.history_exists;
    write_statuses(std::cout, json, m, st.migrations, extra);
    std::cerr << "pgq migrate: " << st.count(pgq::migration_state::applied) << " applied, "
              << st.count(pgq::migration_state::pending) << " pending, " << st.count(pgq::migration_state::drifted)
              << " drifted, " << st.count(pgq::migration_state::missing_file) << " without a file\n";
    return st.in_sync() ? migrate_exit_ok : migrate_exit_not_in_sync;
  }
  if (a.action == "verify") {
    const auto problems = run_sync(m.verify());
    nlohmann::json extra;
    extra["ok"] = problems.empty();
    if (json || !problems.empty()) write_statuses(std::cout, json, m, problems, extra);
    if (problems.empty()) {
      std::cerr << "pgq migrate: verify: " << m.migrations().size()
                << " migration files parse, and every applied one matches its checksum\n";
      return migrate_exit_ok;
    }
    std::cerr << "pgq migrate: verify: " << problems.size()
              << " problem(s); drift is cleared by restoring the file or by `pgq migrate repair`\n";
    return migrate_exit_not_in_sync;
  }
  if (a.action == "repair") {
    const auto rep = run_sync(m.repair());
    if (json) {
      nlohmann::json j;
      j["repaired"] = rep.repaired;
      std::cout << j.dump(2) << '\n';
    } else if (rep.repaired.empty()) {
      std::cout << "nothing to repair\n";
    } else {
      for (auto v : rep.repaired) std::cout << "recorded the new checksum of " << label_of(m, v, "") << '\n';
    }
    return migrate_exit_ok;
  }
  if (a.action == "up" || a.action == "down") {
    const bool up = a.action == "up";
    std::int64_t down_target = 0;
    if (!up) {
      if (target) {
        down_target = *target;
      } else {
        // Without --to, down reverts the newest applied migration only.
        const auto st = run_sync(m.status());
        std::vector<std::int64_t> applied;
        for (const auto& s : st.migrations) {
          if (s.state != pgq::migration_state::pending) applied.push_back(s.version);
        }
        if (applied.size() >= 2) down_target = applied[applied.size() - 2];
      }
    }
    if (a.dry_run) {
      const auto steps = up ? run_sync(m.plan_up(target)) : run_sync(m.plan_down(down_target));
      write_steps(std::cout, json, m, steps, true, {});
      return migrate_exit_ok;
    }
    // Progress as it happens (table), or collected (json): what took effect
    // is reported even when a later migration fails.
    std::vector<pgq::migration_step> done;
    pgq::migrator_options with_progress = m.options();
    with_progress.on_step = [&done, json, &m](const pgq::migration_step& s) {
      done.push_back(s);
      if (!json) {
        write_steps(std::cout, false, m, {s}, false, {});
        std::cout.flush();
      }
    };
    pgq::migrator runner(dsn, m.migrations(), with_progress);
    std::chrono::milliseconds waited{0};
    std::exception_ptr failure;
    try {
      const auto rep = up ? run_sync(runner.up(target)) : run_sync(runner.down(down_target));
      waited = rep.waited_for_lock;
    } catch (...) {
      failure = std::current_exception();
    }
    if (json) {
      write_steps(std::cout, true, m, done, false, waited);
    } else if (done.empty() && !failure) {
      std::cout << "nothing to do\n";
    }
    if (failure) std::rethrow_exception(failure);
    return migrate_exit_ok;
  }
  throw usage_error("migrate: unknown action \"" + a.action + "\"");
}

}  // namespace

void add_migrate_command(CLI::App& app, std::string& dsn, std::string& format, int& exit_code) {
  auto args = std::make_shared<migrate_args>();
  auto* cmd = app.add_subcommand("migrate", "apply SQL migrations (NNNN_name.up.sql / .down.sql) under a lock");
  cmd->fallthrough();
  cmd->require_subcommand(1);
  cmd->footer(
      "Exit status: 0 ok; 1 a migration or check failed; 2 bad usage or bad migration files; "
      "3 could not connect; 5 status found pending, drifted or file-less migrations, or verify found problems.");
  cmd->add_option("--dir", args->dir, "folder of migration files (default: migrations)");
  cmd->add_option("--to", args->to, "up: apply up to this version; down: revert down to it (0: all)");
  cmd->add_flag("--dry-run", args->dry_run, "print what up or down would run, and run nothing");
  cmd->add_option("--schema", args->schema, "schema of the history table (default: public)");
  cmd->add_option("--table", args->table, "name of the history table (default: pgq_migrations)");
  cmd->add_option("--lock-timeout", args->lock_timeout_s,
                  "seconds to wait for another runner's lock (default: 60)");

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

  cmd->callback([args, cmd, &dsn, &format, &exit_code] {
    for (auto* sub : cmd->get_subcommands()) args->action = sub->get_name();
    try {
      exit_code = run_migrate(*args, dsn, format);
    } catch (const usage_error& e) {
      std::cerr << "pgq migrate: " << e.what() << '\n';
      exit_code = migrate_exit_usage;
    } catch (const std::exception& e) {  // a failed migration or check, a lost connection...
      std::cerr << "pgq migrate: " << e.what() << '\n';
      exit_code = migrate_exit_failed;
    }
  });
}

}  // namespace pgq::cli
