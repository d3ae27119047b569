// The migration runner: the history table and the advisory lock (the files
// are read in migrate_files.cpp).
#include <pgq/migrate.hpp>

#include <pgq/connection.hpp>
#include <pgq/error.hpp>
#include <pgq/transaction.hpp>

#include <utility>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

namespace asio = boost::asio;

namespace pgq {

// ================================================================ the runner

namespace {

std::string quote_ident(std::string_view id) {
  std::string out = "\"";
  for (char c : id) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// The advisory lock key: FNV-1a 64 of the history table's name, so that
// runners of different history tables in one database do not exclude each
// other.
std::int64_t lock_key(const migrator_options& o) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const std::string text = "pgq_migrations:" + o.schema + "." + o.table;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return static_cast<std::int64_t>(h);
}

struct history_row {
  std::int64_t version = 0;
  std::string name;
  std::string checksum;
  std::string applied_at;
  std::int64_t execution_ms = 0;
  std::string applied_by;
};

// What a run needs: the options, the qualified table name, the migrations.
struct context {
  std::string conninfo;
  const std::vector<migration>* migrations = nullptr;
  migrator_options opts;
  std::string table;  // "schema"."table", quoted
  std::int64_t key = 0;
};

asio::awaitable<connection> open(const context* c) {
  connection conn(co_await asio::this_coro::executor);
  auto ci = conninfo::parse(c->conninfo);
  if (!ci.get("application_name")) ci.set("application_name", "pgq migrate");
  connect_options o = c->opts.connect;
  o.statement_cache_size = 0;
  o.binary_results = false;
  const std::string text = ci.to_string();
  co_await conn.connect(text, o);
  co_return conn;
}

asio::awaitable<bool> history_exists(connection* conn, const context* c) {
  auto r = co_await conn->query("SELECT to_regclass($1) IS NOT NULL", c->table);
  co_return r[0].get<bool>(0);
}

asio::awaitable<std::vector<history_row>> read_history(connection* conn, const context* c) {
  const std::string sql = "SELECT version, name, checksum, applied_at::text, execution_ms, applied_by FROM " +
                          c->table + " ORDER BY version";
  auto r = co_await conn->query(sql);
  std::vector<history_row> rows;
  for (auto row : r) {
    history_row h;
    h.version = row.get<std::int64_t>(0);
    h.name = row.get<std::string>(1);
    h.checksum = row.get<std::string>(2);
    h.applied_at = row.get<std::string>(3);
    h.execution_ms = row.get<std::int64_t>(4);
    h.applied_by = row.get<std::string>(5);
    rows.push_back(std::move(h));
  }
  co_return rows;
}

status_report compare(const context* c, bool exists, const std::vector<history_row>& history) {
  status_report rep;
  rep.history_exists = exists;
  std::map<std::int64_t, const history_row*> applied;
  std::int64_t newest_applied = 0;
  for (const auto& h : history) {
    applied[h.version] = &h;
    newest_applied = std::max(newest_applied, h.version);
  }
  for (const auto& m : *c->migrations) {
    migration_status s;
    s.version = m.version;
    s.name = m.name;
    s.file_checksum = m.checksum;
    if (auto it = applied.find(m.version); it != applied.end()) {
      const history_row& h = *it->second;
      s.recorded_checksum = h.checksum;
      s.applied_at = h.applied_at;
      s.execution_ms = h.execution_ms;
      s.applied_by = h.applied_by;
      s.state = h.checksum == m.checksum ? migration_state::applied : migration_state::drifted;
      applied.erase(it);
    } else {
      s.state = migration_state::pending;
      s.out_of_order = m.version < newest_applied;
    }
    rep.migrations.push_back(std::move(s));
  }
  for (const auto& [version, h] : applied) {
    migration_status s;
    s.version = version;
    s.name = h->name;
    s.state = migration_state::missing_file;
    s.recorded_checksum = h->checksum;
    s.applied_at = h->applied_at;
    s.execution_ms = h->execution_ms;
    s.applied_by = h->applied_by;
    rep.migrations.push_back(std::move(s));
  }
  std::sort(rep.migrations.begin(), rep.migrations.end(),
            [](const migration_status& a, const migration_status& b) { return a.version < b.version; });
  return rep;
}

asio::awaitable<status_report> read_status(connection* conn, const context* c) {
  const bool exists = co_await history_exists(conn, c);
  std::vector<history_row> history;
  if (exists) history = co_await read_history(conn, c);
  co_return compare(c, exists, history);
}

const migration* find(const context* c, std::int64_t version) {
  for (const auto& m : *c->migrations) {
    if (m.version == version) return &m;
  }
  return nullptr;
}

std::string short_sum(const std::string& s) { return s.size() > 12 ? s.substr(0, 12) : s; }

// A client error `e` with `message`, naming the migration at fault (when
// there is one) in diag().
[[noreturn]] void refuse(errc e, std::string message, const migration* m = nullptr,
                         std::optional<std::int64_t> version = {}) {
  diagnostics d;
  d.message = std::move(message);
  if (m != nullptr) {
    d.script = m->up.file;
    version = m->version;
  }
  d.migration_version = version;
  throw sql_error(make_error_code(e), std::move(d));
}

void check_no_drift(const context* c, const status_report& rep, const char* what) {
  std::string msg;
  const migration* first = nullptr;
  for (const auto& s : rep.migrations) {
    if (s.state != migration_state::drifted) continue;
    const migration* m = find(c, s.version);
    if (first == nullptr) first = m;
    msg += "\n  " + m->up.file + ": applied with checksum " + short_sum(s.recorded_checksum) +
           "..., the file now has " + short_sum(s.file_checksum) + "...";
  }
  if (msg.empty()) return;
  refuse(errc::checksum_mismatch,
         std::string("drift: applied migrations changed since they ran; ") + what +
             " refuses to run until they are restored, or until `repair` records the new "
             "checksums (when the change is harmless, e.g. a comment):" +
             msg,
         first);
}

std::vector<migration_step> plan_up_from(const context* c, const status_report& rep,
                                         std::optional<std::int64_t> target) {
  if (target && find(c, *target) == nullptr) {
    refuse(errc::migration_refused, "up: no migration file has version " + std::to_string(*target), nullptr, target);
  }
  check_no_drift(c, rep, "up");
  std::vector<migration_step> steps;
  std::string out_of_order;
  const migration* first_out_of_order = nullptr;
  for (const auto& s : rep.migrations) {
    if (s.state != migration_state::pending) continue;
    if (target && s.version > *target) continue;
    const migration* m = find(c, s.version);
    if (s.out_of_order && !c->opts.allow_out_of_order) {
      if (first_out_of_order == nullptr) first_out_of_order = m;
      out_of_order += "\n  " + m->up.file;
    }
    migration_step st;
    st.version = m->version;
    st.name = m->name;
    st.direction = migration_direction::up;
    st.no_transaction = m->up.no_transaction;
    st.statements = m->up.statements.size();
    steps.push_back(std::move(st));
  }
  if (!out_of_order.empty()) {
    refuse(errc::migration_refused,
           "up: pending migrations are older than the newest applied one (merged from another branch?); "
           "give them versions above the newest applied, or allow out-of-order migrations:" +
               out_of_order,
           first_out_of_order);
  }
  return steps;
}

std::vector<migration_step> plan_down_from(const context* c, const status_report& rep, std::int64_t target) {
  if (target < 0) refuse(errc::migration_refused, "down: the target version must be 0 or more");
  if (target != 0 && find(c, target) == nullptr &&
      std::none_of(rep.migrations.begin(), rep.migrations.end(),
                   [target](const migration_status& s) { return s.version == target; })) {
    refuse(errc::migration_refused, "down: no migration has version " + std::to_string(target), nullptr, target);
  }
  check_no_drift(c, rep, "down");
  std::vector<migration_step> steps;
  for (auto it = rep.migrations.rbegin(); it != rep.migrations.rend(); ++it) {
    if (it->version <= target || it->state == migration_state::pending) continue;
    const migration* m = find(c, it->version);
    if (m == nullptr) {
      refuse(errc::migration_refused,
             "down: migration " + std::to_string(it->version) + "_" + it->name +
                 " is applied but has no file here, so it cannot be reverted; nothing was run",
             nullptr, it->version);
    }
    if (!m->down) {
      refuse(errc::migration_refused,
             "down: " + m->up.file + " has no down file (" + m->label +
                 ".down.sql), so it cannot be reverted; nothing was run",
             m);
    }
    migration_step st;
    st.version = m->version;
    st.name = m->name;
    st.direction = migration_direction::down;
    st.no_transaction = m->down->no_transaction;
    st.statements = m->down->statements.size();
    steps.push_back(std::move(st));
  }
  return steps;
}

// The 1-based line in the file of a server error's position (a 1-based
// character offset into the statement).
std::size_t error_line(const sql_statement& st, const diagnostics& d) {
  std::size_t line = st.line;
  if (!d.position || *d.position < 1) return line;
  std::size_t chars = 0;
  for (char c : st.text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80 && ++chars >= static_cast<std::size_t>(*d.position)) break;
    if (c == '\n') ++line;
  }
  return line;
}

std::string server_error_text(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const sql_error& err) {
    const auto& d = err.diag();
    if (d.sqlstate.empty()) return err.what();
    std::string s = (d.severity.empty() ? "ERROR" : d.severity) + " " + d.sqlstate + ": " + d.message;
    if (!d.detail.empty()) s += "; DETAIL: " + d.detail;
    if (!d.hint.empty()) s += "; HINT: " + d.hint;
    return s;
  } catch (const std::exception& err) {
    return err.what();
  }
}

std::string sqlstate_of_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const sql_error& err) {
    return err.diag().sqlstate;
  } catch (...) {
    return {};
  }
}

bool is_fatal_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const sql_error& err) {
    return is_fatal(err.code());
  } catch (...) {
    return true;
  }
}

std::size_t error_line_of(const sql_statement& st, const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const sql_error& err) {
    return error_line(st, err.diag());
  } catch (...) {
    return st.line;
  }
}

bool is_concurrent_index(const std::string& text) {
  std::string up;
  for (char c : text.substr(0, 200)) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return (up.starts_with("CREATE") || up.starts_with("REINDEX")) && up.find("CONCURRENTLY") != std::string::npos;
}

// What applying a script's statements and its history row came to: the
// first failure, if any, and where it happened.
struct script_outcome {
  std::exception_ptr failure;
  std::size_t failed = 0;  // index of the failing statement; the statement count: the history row or COMMIT
};

// Runs the script's statements one by one on `on`, then writes (up) or
// deletes (down) its history row there; stops at the first failure and
// returns it. `Session` is the script's transaction, or the connection for a
// no-transaction script: both have execute().
template <class Session>
asio::awaitable<script_outcome> apply_script(Session& on, const context* c, const migration* m,
                                             const migration_script& script, bool up,
                                             std::chrono::steady_clock::time_point started) {
  const std::size_t total = script.statements.size();
  script_outcome out;
  out.failed = total;
  for (std::size_t i = 0; i < total && !out.failure; ++i) {
    try {
      co_await on.execute(script.statements[i].text);
    } catch (...) {
      out.failure = std::current_exception();
      out.failed = i;
    }
  }
  if (out.failure) co_return out;
  try {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    const std::int64_t took = ms.count();
    if (up) {
      const std::string sql = "INSERT INTO " + c->table +
                              " (version, name, checksum, execution_ms, applied_by, no_transaction) "
                              "VALUES ($1, $2, $3, $4, coalesce(nullif($5, ''), current_user), $6)";
      co_await on.execute(sql, m->version, m->name, m->checksum, took, c->opts.applied_by, script.no_transaction);
    } else {
      const std::string sql = "DELETE FROM " + c->table + " WHERE version = $1";
      co_await on.execute(sql, m->version);
    }
  } catch (...) {
    out.failure = std::current_exception();
  }
  co_return out;
}

// "migration <label> (<file>) failed at statement 2 of 5, line 14: ERROR ...\n":
// what failed and why; what it left behind is for the caller to add.
std::string failure_head(const migration* m, const migration_script& script, const script_outcome& o, bool up) {
  const std::size_t total = script.statements.size();
  std::string msg = "migration " + m->label + " (" + script.file +
                    (script.no_transaction ? ", run outside a transaction" : "") + ") failed";
  if (o.failed < total) {
    msg += " at statement " + std::to_string(o.failed + 1) + " of " + std::to_string(total) + ", line " +
           std::to_string(error_line_of(script.statements[o.failed], o.failure));
  } else {
    msg += up ? " while recording it in the history" : " while removing it from the history";
  }
  return msg + ": " + server_error_text(o.failure) + ".\n";
}

// The sql_error for a failed migration: the failure's own code (SQLSTATE or
// pgq::errc) and diagnostics, with the migration added to diag() and `what`
// as its message. A failure that is no system_error is not ours to wrap: it
// is rethrown as it is.
sql_error migration_failure(const script_outcome& o, const migration* m, const migration_script& script, bool up,
                            std::string what) {
  const std::size_t total = script.statements.size();
  error_code ec;
  diagnostics d;
  try {
    std::rethrow_exception(o.failure);
  } catch (const sql_error& e) {
    ec = e.code();
    d = e.diag();
  } catch (const boost::system::system_error& e) {
    ec = e.code();
    d.message = e.what();
  }
  // Appended as PostgreSQL appends the callers of a failing PL/pgSQL
  // function: innermost first.
  std::string where = "migration " + m->label + " (" + script.file + "), ";
  if (o.failed < total) {
    const sql_statement& st = script.statements[o.failed];
    where += "statement " + std::to_string(o.failed + 1) + " of " + std::to_string(total);
    d.script_line = error_line(st, d);
    if (d.statement.empty()) d.statement = st.text;
  } else {
    where += up ? "recording it in the history" : "removing it from the history";
  }
  if (!d.context.empty()) d.context += '\n';
  d.context += where;
  d.script = script.file;
  d.migration_version = m->version;
  return sql_error(ec, std::move(d), std::move(what));
}

// Runs one script and writes (up) or deletes (down) its history row. Throws
// sql_error saying what failed and what state it left (see migration_failure).
asio::awaitable<migration_step> run_script(connection* conn, const context* c, const migration* m,
                                           migration_direction dir) {
  const bool up = dir == migration_direction::up;
  const migration_script& script = up ? m->up : *m->down;
  const auto started = std::chrono::steady_clock::now();
  migration_step step;
  step.version = m->version;
  step.name = m->name;
  step.direction = dir;
  step.no_transaction = script.no_transaction;
  step.statements = script.statements.size();
  const std::size_t total = script.statements.size();

  if (!script.no_transaction) {
    auto tx = co_await conn->begin();
    script_outcome o = co_await apply_script(tx, c, m, script, up, started);
    if (!o.failure) {
      try {
        co_await tx.commit();
      } catch (...) {
        o.failure = std::current_exception();
      }
    }
    if (o.failure) {
      if (tx.active() && !is_fatal_exception(o.failure)) co_await tx.rollback();
      std::string msg = failure_head(m, script, o, up);
      if (is_fatal_exception(o.failure) && o.failed == total) {
        msg += "The connection was lost at COMMIT: check the history table to see whether it was applied.";
      } else {
        msg +=
            "Nothing of it took effect: its transaction rolled back and the history is unchanged. "
            "Fix the file and run again.";
      }
      if (sqlstate_of_exception(o.failure) == "25001") {
        msg +=
            "\nThis statement cannot run inside a transaction: make \"-- pgq:no-transaction\" the "
            "file's first line (its statements then run one by one, each on its own).";
      }
      throw migration_failure(o, m, script, up, std::move(msg));
    }
  } else {
    const script_outcome o = co_await apply_script(*conn, c, m, script, up, started);
    if (o.failure) {
      std::string msg = failure_head(m, script, o, up);
      if (o.failed < total) {
        if (o.failed == 0) {
          msg += "No statement of it took effect. ";
        } else {
          msg += "Statements 1 to " + std::to_string(o.failed) + " took effect and stay; ";
        }
        msg += "statements " + std::to_string(o.failed + 1) + " to " + std::to_string(total) +
               " did not run, and the migration is not recorded as " + (up ? "applied" : "reverted") +
               ". Fix the cause, then make the file safe to run again from its first statement "
               "(IF NOT EXISTS / IF EXISTS) or undo what took effect by hand, and run again.";
        if (is_concurrent_index(script.statements[o.failed].text)) {
          msg +=
              "\nA failed CREATE INDEX CONCURRENTLY (or REINDEX CONCURRENTLY) leaves an INVALID index "
              "behind: drop it with DROP INDEX CONCURRENTLY before running again.";
        }
      } else {
        msg += std::string("All its statements took effect, but the history does not say so: ") +
               (up ? "insert its row by hand, or make the file safe to run again, then run up again."
                   : "delete its row by hand.");
      }
      throw migration_failure(o, m, script, up, std::move(msg));
    }
  }
  step.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  co_return step;
}

asio::awaitable<std::string> lock_holder(connection* conn, const context* c) {
  const auto k = static_cast<std::uint64_t>(c->key);
  const std::int64_t hi = static_cast<std::int64_t>(k >> 32);
  const std::int64_t lo = static_cast<std::int64_t>(k & 0xFFFFFFFFu);
  auto r = co_await conn->query(
      "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local') "
      "FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid "
      "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int8 = $1 AND l.objid::int8 = $2 "
      "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      hi, lo);
  if (r.empty()) co_return std::string("(it has just been released)");
  co_return "server process " + std::to_string(r[0].get<int>(0)) + ", application \"" + r[0].get<std::string>(1) +
      "\", client " + r[0].get<std::string>(2);
}

// Takes the advisory lock on `conn`, polling. Polling (rather than
// pg_advisory_lock, which waits inside a statement) keeps the waiting
// session idle between tries, so CREATE INDEX CONCURRENTLY in the holder's
// migration never waits for the waiter's transaction.
asio::awaitable<std::chrono::milliseconds> take_lock(connection* conn, const context* c) {
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + c->opts.lock_timeout;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    auto r = co_await conn->query("SELECT pg_try_advisory_lock($1)", c->key);
    if (r[0].get<bool>(0)) break;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      const std::string holder = co_await lock_holder(conn, c);
      throw sql_error(errc::timeout, "another migration run held the lock on " + c->table + " for longer than " +
                                         std::to_string(c->opts.lock_timeout.count()) + " ms: " + holder);
    }
    timer.expires_after(std::min<std::chrono::steady_clock::duration>(c->opts.lock_poll_interval, deadline - now));
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
}

asio::awaitable<void> release_lock(connection* conn, const context* c) {
  co_await conn->query("SELECT pg_advisory_unlock($1)", c->key);
  conn->close();
}

asio::awaitable<void> ensure_history(connection* conn, const context* c) {
  const std::string schema = quote_ident(c->opts.schema);
  auto r = co_await conn->query("SELECT to_regnamespace($1) IS NOT NULL", schema);
  if (!r[0].get<bool>(0)) {
    const std::string sql = "CREATE SCHEMA IF NOT EXISTS " + quote_ident(c->opts.schema);
    co_await conn->execute(sql);
  }
  const std::string sql = "CREATE TABLE IF NOT EXISTS " + c->table +
                          " (\n"
                          "  version        bigint PRIMARY KEY,\n"
                          "  name           text NOT NULL,\n"
                          "  checksum       text NOT NULL,\n"
                          "  applied_at     timestamptz NOT NULL DEFAULT now(),\n"
                          "  execution_ms   bigint NOT NULL,\n"
                          "  applied_by     text NOT NULL DEFAULT current_user,\n"
                          "  no_transaction boolean NOT NULL DEFAULT false\n"
                          ")";
  co_await conn->execute(sql);
}

enum class action { up, down, repair };

asio::awaitable<run_report> locked_run(const context* c, action what, std::optional<std::int64_t> target) {
  run_report rep;
  connection lock_conn = co_await open(c);
  rep.waited_for_lock = co_await take_lock(&lock_conn, c);
  connection conn = co_await open(c);
  if (what == action::up) co_await ensure_history(&conn, c);
  // Read after the lock: a runner that waited sees what the holder did.
  const status_report st = co_await read_status(&conn, c);
  if (what == action::repair) {
    const std::string sql = "UPDATE " + c->table + " SET checksum = $2, name = $3 WHERE version = $1";
    for (const auto& s : st.migrations) {
      if (s.state != migration_state::drifted) continue;
      const migration* m = find(c, s.version);
      co_await conn.execute(sql, m->version, m->checksum, m->name);
      rep.repaired.push_back(m->version);
    }
  } else {
    const auto steps = what == action::up ? plan_up_from(c, st, target) : plan_down_from(c, st, *target);
    for (const auto& s : steps) {
      const migration* m = find(c, s.version);
      auto done = co_await run_script(&conn, c, m, s.direction);
      if (c->opts.on_step) c->opts.on_step(done);
      rep.steps.push_back(std::move(done));
    }
  }
  conn.close();
  co_await release_lock(&lock_conn, c);
  co_return rep;
}

context make_context(const std::string& conninfo, const std::vector<migration>* ms, const migrator_options& o) {
  if (o.schema.empty() || o.table.empty()) {
    throw sql_error(errc::bad_migration, "the history table's schema and name must not be empty");
  }
  context c;
  c.conninfo = conninfo;
  c.migrations = ms;
  c.opts = o;
  c.table = quote_ident(o.schema) + "." + quote_ident(o.table);
  c.key = lock_key(o);
  return c;
}

}  // namespace

migrator::migrator(std::string conninfo, std::vector<migration> migrations, migrator_options opts)
    : conninfo_(std::move(conninfo)), migrations_(std::move(migrations)), opts_(std::move(opts)) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (opts_.connection) opts_.connect = *std::exchange(opts_.connection, std::nullopt);
#pragma GCC diagnostic pop
}

asio::awaitable<status_report> migrator::status() {
  const context c = make_context(conninfo_, &migrations_, opts_);
  connection conn = co_await open(&c);
  auto rep = co_await read_status(&conn, &c);
  co_return rep;
}

asio::awaitable<run_report> migrator::up(std::optional<std::int64_t> target) {
  const context c = make_context(conninfo_, &migrations_, opts_);
  auto rep = co_await locked_run(&c, action::up, target);
  co_return rep;
}

asio::awaitable<run_report> migrator::down(std::int64_t target) {
  const context c = make_context(conninfo_, &migrations_, opts_);
  const std::optional<std::int64_t> t = target;
  auto rep = co_await locked_run(&c, action::down, t);
  co_return rep;
}

asio::awaitable<run_report> migrator::repair() {
  const context c = make_context(conninfo_, &migrations_, opts_);
  const std::optional<std::int64_t> none;
  auto rep = co_await locked_run(&c, action::repair, none);
  co_return rep;
}

asio::awaitable<std::vector<migration_step>> migrator::plan_up(std::optional<std::int64_t> target) {
  const context c = make_context(conninfo_, &migrations_, opts_);
  connection conn = co_await open(&c);
  const auto st = co_await read_status(&conn, &c);
  co_return plan_up_from(&c, st, target);
}

asio::awaitable<std::vector<migration_step>> migrator::plan_down(std::int64_t target) {
  const context c = make_context(conninfo_, &migrations_, opts_);
  connection conn = co_await open(&c);
  const auto st = co_await read_status(&conn, &c);
  co_return plan_down_from(&c, st, target);
}

asio::awaitable<std::vector<migration_status>> migrator::verify() {
  const context c = make_context(conninfo_, &migrations_, opts_);
  connection conn = co_await open(&c);
  const auto st = co_await read_status(&conn, &c);
  std::vector<migration_status> problems;
  for (const auto& s : st.migrations) {
    const bool bad = s.state == migration_state::drifted || s.state == migration_state::missing_file ||
                     (s.state == migration_state::pending && s.out_of_order && !opts_.allow_out_of_order);
    if (bad) problems.push_back(s);
  }
  co_return problems;
}

}  // namespace pgq
