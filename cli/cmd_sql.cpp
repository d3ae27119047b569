// pgq query, pgq run, pgq tx.
//
// Coroutines here are free functions taking pointers to state that outlives
// them (GCC 12 miscompiles capturing coroutine lambdas), and no brace-built
// temporary owning memory appears inside a co_await expression.
#include "cmd_sql.hpp"
#include "params_file.hpp"

#include <pgq/pool.hpp>
#include <pgq/sql_split.hpp>
#include <pgq/transaction.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <iostream>
#include <memory>
#include <unistd.h>

namespace asio = boost::asio;

namespace pgq::cli {
namespace {

using clock = std::chrono::steady_clock;
using param_line = std::vector<std::optional<std::string>>;

pgq::params make_param_set(const param_line& values) {
  pgq::params p;
  for (const auto& v : values) {
    if (v) p.add(*v);
    else p.add_null(0);
  }
  return p;
}

// Prints results in statement order as they complete (a later statement may
// finish first and waits here), so that output streams while work runs.
class ordered_output {
 public:
  ordered_output(output_format fmt, std::size_t count, bool always_list)
      : writer_(std::cout, fmt, count, always_list),
        slots_(count),
        progress_(::isatty(STDERR_FILENO) != 0 && count >= 100) {}

  void done(std::size_t i, pgq::result r) {
    slots_[i].res = std::move(r);
    slots_[i].st = state::ok;
    ++completed_;
    flush_ready();
  }
  void failed(std::size_t i) {
    slots_[i].st = state::failed;
    ++completed_;
    flush_ready();
  }
  // Everything still pending was never run (stopped at an error, or Ctrl-C).
  void finish() {
    for (auto& s : slots_) {
      if (s.st == state::pending) s.st = state::skipped;
    }
    flush_ready();
    writer_.finish();
    if (progress_) std::cerr << "\r\033[K";
    std::cout.flush();
  }

 private:
  enum class state { pending, ok, failed, skipped };
  struct slot {
    state st = state::pending;
    std::optional<pgq::result> res;
  };

  void flush_ready() {
    while (next_ < slots_.size() && slots_[next_].st != state::pending) {
      auto& s = slots_[next_];
      if (s.st == state::ok) writer_.write(*s.res);
      else writer_.write_failed();
      s.res.reset();  // the rows are printed: free them
      ++next_;
    }
    if (progress_ && (completed_ % 50 == 0 || completed_ == slots_.size())) {
      std::cerr << "\rpgq: " << completed_ << '/' << slots_.size() << " statements" << std::flush;
    }
  }

  result_writer writer_;
  std::vector<slot> slots_;
  std::size_t next_ = 0;
  std::size_t completed_ = 0;
  bool progress_;
};

// ---------------------------------------------------------------- query

struct query_args {
  std::vector<std::string> sql;
  std::vector<std::string> params;
  std::string params_file;
};

struct query_job {
  session* s = nullptr;
  std::vector<std::string> sql;    // one per item, or one for all items
  std::vector<param_line> params;  // one per item, or one for all items
  std::size_t items = 0;
  std::size_t next = 0;
  std::optional<ordered_output> out;
  std::vector<int> codes;         // exit code per item
  bool labelled_by_line = false;  // --params-file: errors name the input line
};

std::string item_label(const query_job& j, std::size_t i) {
  if (j.labelled_by_line) return "params line " + std::to_string(i + 1);
  if (j.items > 1) return "statement " + std::to_string(i + 1);
  return {};
}

asio::awaitable<void> query_worker(query_job* j) {
  while (j->next < j->items && !j->s->interrupted()) {
    const std::size_t i = j->next++;
    const std::string& sql = j->sql.size() == 1 ? j->sql[0] : j->sql[i];
    const param_line& line = j->params.size() == 1 ? j->params[0] : j->params[i];
    const auto start = clock::now();
    try {
      pgq::lease conn = co_await j->s->pool().acquire();
      auto op = conn->query_params(sql, make_param_set(line));
      pgq::result r = co_await j->s->timed(std::move(op));
      if (j->s->options().verbose) {
        std::cerr << "pgq: " << (j->items > 1 ? item_label(*j, i) + ": " : "") << elapsed_ms(start) << " ms\n";
      }
      j->out->done(i, std::move(r));
    } catch (const std::exception& e) {
      if (j->s->interrupted()) co_return;
      print_error(std::cerr, e, item_label(*j, i));
      j->codes[i] = exit_code_of(e);
      j->out->failed(i);
    }
  }
}

asio::awaitable<int> run_query(session& s, query_job* j) {
  j->s = &s;
  const std::size_t workers = std::min(j->items, s.options().connections);
  std::vector<asio::awaitable<void>> tasks;
  for (std::size_t w = 0; w < workers; ++w) tasks.push_back(query_worker(j));
  co_await s.gather(std::move(tasks));
  j->out->finish();
  for (int c : j->codes) {
    if (c != exit_code::ok) co_return c;
  }
  co_return exit_code::ok;
}

int query_command(const global_options& g, const query_args& a) {
  const output_format fmt = resolve_format(g);
  session s(g);
  auto j = std::make_unique<query_job>();
  if (!a.params_file.empty()) {
    if (a.sql.size() != 1) throw usage_error("--params-file runs exactly one SQL statement");
    if (!a.params.empty()) throw usage_error("give either -p or --params-file, not both");
    j->sql = a.sql;
    j->params = parse_params_file(read_file(a.params_file), a.params_file);
    j->items = j->params.size();
    j->labelled_by_line = true;
  } else {
    j->sql = a.sql;
    j->items = a.sql.size();
    param_line line;
    for (const auto& p : a.params) line.emplace_back(p);
    j->params.push_back(std::move(line));
  }
  j->codes.assign(j->items, exit_code::ok);
  j->out.emplace(fmt, j->items, j->labelled_by_line);
  query_job* jp = j.get();
  return s.run([jp](session& ss) { return run_query(ss, jp); });
}

// ---------------------------------------------------------------- run

struct run_args {
  std::vector<std::string> files;
  std::size_t jobs = 1;
  bool tx = false;
  bool continue_on_error = false;
};

struct script_statement {
  std::string file;
  pgq::sql_statement stmt;
  std::size_t index = 0;  // among all statements of all files
  std::string where() const { return file + ':' + std::to_string(stmt.line); }
};

struct run_unit {
  std::size_t first = 0;  // statements [first, first + count)
  std::size_t count = 0;
};

struct failure {
  std::string where;
  std::string message;
};

struct run_job {
  session* s = nullptr;
  const run_args* args = nullptr;
  std::vector<script_statement> statements;
  std::vector<run_unit> units;
  std::size_t next = 0;
  bool stop = false;
  std::optional<ordered_output> out;
  std::vector<failure> failures;
  int first_code = exit_code::ok;
};

std::string one_line(const std::exception& e) {
  if (const auto* se = dynamic_cast<const pgq::sql_error*>(&e); se != nullptr && !se->sqlstate().empty()) {
    return se->sqlstate() + ": " + se->diag().message;
  }
  return e.what();
}

void note_failure(run_job* j, const std::string& where, const std::exception& e) {
  print_error(std::cerr, e, where);
  j->failures.push_back({where, one_line(e)});
  if (j->first_code == exit_code::ok) j->first_code = exit_code_of(e);
  if (!j->args->continue_on_error) j->stop = true;
}

void log_time(const run_job* j, const script_statement& st, clock::time_point start) {
  if (j->s->options().verbose) std::cerr << "pgq: " << st.where() << ": " << elapsed_ms(start) << " ms\n";
}

// --tx: every statement of one file in one transaction, on the worker's
// connection. Results are printed only once it has committed.
struct file_tx {
  run_job* j;
  const run_unit* u;
  std::vector<pgq::result>* results;
  asio::awaitable<void> operator()(pgq::transaction& tx) const {
    results->clear();
    for (std::size_t k = 0; k < u->count; ++k) {
      const script_statement& st = j->statements[u->first + k];
      const auto start = clock::now();
      try {
        auto op = tx.query_params(st.stmt.text, {});
        results->push_back(co_await j->s->timed(std::move(op)));
      } catch (pgq::sql_error& e) {
        // Say where in the file it failed; the transaction then rolls back.
        if (!j->s->interrupted()) note_failure(j, st.where(), e);
        throw;
      }
      log_time(j, st, start);
    }
  }
};

asio::awaitable<void> run_worker(run_job* j) {
  pgq::lease conn;
  try {
    conn = co_await j->s->pool().acquire();
  } catch (const std::exception& e) {
    if (!j->s->interrupted()) note_failure(j, "connect", e);
    co_return;
  }
  while (j->next < j->units.size() && !j->stop && !j->s->interrupted()) {
    const run_unit& u = j->units[j->next++];
    if (!j->args->tx) {
      const script_statement& st = j->statements[u.first];
      const auto start = clock::now();
      try {
        auto op = conn->query_params(st.stmt.text, {});
        pgq::result r = co_await j->s->timed(std::move(op));
        log_time(j, st, start);
        j->out->done(st.index, std::move(r));
      } catch (const std::exception& e) {
        if (j->s->interrupted()) co_return;
        note_failure(j, st.where(), e);
        j->out->failed(st.index);
        if (!conn->is_open()) co_return;  // lost: the pool replaces it; this worker stops
      }
      continue;
    }
    std::vector<pgq::result> results;
    const std::size_t failures_before = j->failures.size();
    try {
      file_tx body{j, &u, &results};
      co_await pgq::transact(conn.get(), pgq::tx_options{}, body);
      for (std::size_t k = 0; k < u.count; ++k) j->out->done(u.first + k, std::move(results[k]));
    } catch (const std::exception& e) {
      if (j->s->interrupted()) co_return;
      // BEGIN or COMMIT itself failed (the statements report their own).
      if (j->failures.size() == failures_before) note_failure(j, j->statements[u.first].file, e);
      for (std::size_t k = 0; k < u.count; ++k) j->out->failed(u.first + k);
      if (!conn->is_open()) co_return;
    }
  }
}

asio::awaitable<int> run_files(session& s, run_job* j) {
  j->s = &s;
  std::vector<asio::awaitable<void>> tasks;
  const std::size_t workers = std::max<std::size_t>(1, std::min(j->args->jobs, j->units.size()));
  for (std::size_t w = 0; w < workers; ++w) tasks.push_back(run_worker(j));
  co_await s.gather(std::move(tasks));
  j->out->finish();
  if (j->args->continue_on_error && !j->failures.empty()) {
    std::cerr << "pgq: " << j->failures.size() << (j->failures.size() == 1 ? " statement" : " statements")
              << " failed:\n";
    for (const auto& f : j->failures) std::cerr << "  " << f.where << ": " << f.message << '\n';
  }
  co_return j->first_code;
}

int run_command(const global_options& g, const run_args& a) {
  const output_format fmt = resolve_format(g);
  if (a.jobs == 0) throw usage_error("--jobs must be at least 1");
  session s(g);
  auto j = std::make_unique<run_job>();
  j->args = &a;
  for (const auto& file : a.files) {
    const std::string text = read_file(file);
    std::vector<pgq::sql_statement> stmts;
    try {
      stmts = pgq::split_sql(text);
    } catch (const pgq::sql_error& e) {
      throw usage_error(file + ": " + e.what());
    }
    const std::size_t first = j->statements.size();
    for (auto& st : stmts) {
      const std::size_t index = j->statements.size();
      j->statements.push_back({file, std::move(st), index});
    }
    if (a.tx) {
      if (j->statements.size() > first) j->units.push_back({first, j->statements.size() - first});
    } else {
      for (std::size_t k = first; k < j->statements.size(); ++k) j->units.push_back({k, 1});
    }
  }
  j->out.emplace(fmt, j->statements.size(), false);
  run_job* jp = j.get();
  return s.run([jp](session& ss) { return run_files(ss, jp); },
               std::min(a.jobs, std::max<std::size_t>(1, j->units.size())));
}

// ---------------------------------------------------------------- tx

struct tx_args {
  std::vector<std::string> sql;
  std::vector<std::string> files;
  std::string isolation;
  bool read_only = false;
  int retries = 0;
};

struct tx_job {
  session* s = nullptr;
  std::vector<std::string> statements;
  std::vector<std::string> where;  // "statement N" or "file:line"
  pgq::tx_options opts;
  std::vector<pgq::result> results;
  int attempts = 0;
  bool reported = false;
};

struct tx_body {
  tx_job* j;
  asio::awaitable<void> operator()(pgq::transaction& tx) const {
    if (j->attempts++ > 0 && j->s->options().verbose) {
      std::cerr << "pgq: serialization failure or deadlock: attempt " << j->attempts << '\n';
    }
    j->results.clear();
    for (std::size_t i = 0; i < j->statements.size(); ++i) {
      const auto start = clock::now();
      try {
        auto op = tx.query_params(j->statements[i], {});
        j->results.push_back(co_await j->s->timed(std::move(op)));
      } catch (const pgq::sql_error& e) {
        const bool will_retry = pgq::is_retryable(e.code()) && j->attempts <= j->opts.retries;
        if (!will_retry && !j->s->interrupted()) {
          print_error(std::cerr, e, j->where[i]);
          j->reported = true;
        }
        throw;
      }
      if (j->s->options().verbose) std::cerr << "pgq: " << j->where[i] << ": " << elapsed_ms(start) << " ms\n";
    }
  }
};

asio::awaitable<int> run_tx(session& s, tx_job* j, output_format fmt) {
  j->s = &s;
  pgq::lease conn = co_await s.pool().acquire();
  try {
    tx_body body{j};
    co_await pgq::transact(conn.get(), j->opts, body);
  } catch (const std::exception& e) {
    if (s.interrupted()) co_return exit_code::interrupted;
    if (!j->reported) print_error(std::cerr, e);  // BEGIN or COMMIT failed
    co_return exit_code_of(e);
  }
  write_results(std::cout, fmt, j->results);
  std::cout.flush();
  co_return exit_code::ok;
}

pgq::isolation parse_isolation(const std::string& s) {
  if (s.empty()) return pgq::isolation::default_level;
  if (s == "read-committed") return pgq::isolation::read_committed;
  if (s == "repeatable-read") return pgq::isolation::repeatable_read;
  if (s == "serializable") return pgq::isolation::serializable;
  throw usage_error("unknown isolation level \"" + s + "\" (read-committed, repeatable-read, serializable)");
}

void add_split(tx_job& j, const std::string& text, const std::string& name, bool file) {
  std::vector<pgq::sql_statement> stmts;
  try {
    stmts = pgq::split_sql(text);
  } catch (const pgq::sql_error& e) {
    throw usage_error(name + ": " + e.what());
  }
  for (auto& st : stmts) {
    j.where.push_back(file ? name + ':' + std::to_string(st.line)
                           : "statement " + std::to_string(j.statements.size() + 1));
    j.statements.push_back(std::move(st.text));
  }
}

int tx_command(const global_options& g, const tx_args& a) {
  const output_format fmt = resolve_format(g);
  if (!a.sql.empty() && !a.files.empty()) throw usage_error("give SQL statements or -f FILE, not both");
  if (a.retries < 0) throw usage_error("--retries must not be negative");
  auto j = std::make_unique<tx_job>();
  j->opts.level = parse_isolation(a.isolation);
  j->opts.read_only = a.read_only;
  j->opts.retries = a.retries;
  for (const auto& sql : a.sql) add_split(*j, sql, "statement", false);
  for (const auto& f : a.files) add_split(*j, read_file(f), f, true);
  if (j->statements.empty()) throw usage_error("no statements to run (give SQL or -f FILE)");
  session s(g);
  tx_job* jp = j.get();
  return s.run([jp, fmt](session& ss) { return run_tx(ss, jp, fmt); }, 1);
}

}  // namespace

void add_query_command(CLI::App& app, const global_options& g, int& exit_code) {
  auto a = std::make_shared<query_args>();
  auto* cmd = app.add_subcommand("query",
                                 "Run each SQL concurrently over the pool; print the results in the order given.\n"
                                 "With --params-file, run the one SQL once per line of parameters.");
  cmd->add_option("sql", a->sql, "SQL statements (one statement each)")->required();
  cmd->add_option("-p,--param", a->params, "a text value bound to $1, $2, ... of every SQL (repeatable)");
  cmd->add_option("--params-file", a->params_file,
                  "CSV with a header row, or NDJSON (arrays or objects): one run per line, results in "
                  "input order; an empty unquoted CSV field or a JSON null binds NULL; - is stdin");
  cmd->footer(exit_codes_help);
  cmd->callback([a, &g, &exit_code] { exit_code = query_command(g, *a); });
}

void add_run_command(CLI::App& app, const global_options& g, int& exit_code) {
  auto a = std::make_shared<run_args>();
  auto* cmd = app.add_subcommand(
      "run",
      "Execute the statements of SQL files (split as psql does: dollar quotes, comments, E'' strings).\n"
      "N workers, each on its own connection, pull statements (with --tx: files) from one queue;\n"
      "with --jobs 1 (the default) they run in file order on one session, as psql -f would.\n"
      "With --jobs N statements run concurrently: use it for independent statements.");
  cmd->add_option("files", a->files, "SQL files (- is stdin)")->required();
  cmd->add_option("-j,--jobs", a->jobs, "workers (default 1)");
  cmd->add_flag("--tx", a->tx, "run each file as one transaction (all of it or none of it)");
  cmd->add_flag("--continue-on-error", a->continue_on_error,
                "go on after a failed statement and list the failures at the end (default: stop at the first)");
  cmd->footer(exit_codes_help);
  cmd->callback([a, &g, &exit_code] { exit_code = run_command(g, *a); });
}

void add_tx_command(CLI::App& app, const global_options& g, int& exit_code) {
  auto a = std::make_shared<tx_args>();
  auto* cmd = app.add_subcommand(
      "tx",
      "Run all statements in one transaction: commit on success; at the first error roll back and exit\n"
      "non-zero. Serialization failures (40001) and deadlocks (40P01) rerun the whole transaction up to\n"
      "--retries times. Results are printed after the commit.");
  cmd->add_option("sql", a->sql, "SQL (each argument may hold several statements separated by ;)");
  cmd->add_option("-f,--file", a->files, "read the statements from FILE (repeatable; - is stdin)");
  cmd->add_option("--isolation", a->isolation, "read-committed, repeatable-read or serializable")
      ->check(CLI::IsMember({"read-committed", "repeatable-read", "serializable"}));
  cmd->add_flag("--read-only", a->read_only, "BEGIN ... READ ONLY");
  cmd->add_option("--retries", a->retries, "reruns after a serialization failure or deadlock (default 0)");
  cmd->footer(exit_codes_help);
  cmd->callback([a, &g, &exit_code] { exit_code = tx_command(g, *a); });
}

}  // namespace pgq::cli
