// pgq bench: pgbench's scripts and tables, run by clients that each hold one
// connection, spread over --threads threads with one io_context each.
//
// Latency is measured per transaction (one run of the script), from its
// scheduled start under --rate (as pgbench does, so that a stalled server
// shows up as latency rather than as fewer transactions) or from its actual
// start otherwise. Every latency is kept, so percentiles are exact.
#include "cmd_bench.hpp"

#include <pgq/connection.hpp>
#include <pgq/sql_split.hpp>
#include <pgq/timeout.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <latch>
#include <list>
#include <mutex>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace asio = boost::asio;

namespace pgq::cli {
namespace bench {
namespace {

// ------------------------------------------------------------ script parsing

[[noreturn]] void script_error(const std::string& name, std::size_t line, const std::string& msg) {
  throw usage_error(name + ":" + std::to_string(line) + ": " + msg);
}

std::size_t variable_index(script& s, std::string_view name) {
  for (std::size_t i = 0; i < s.variables.size(); ++i) {
    if (s.variables[i] == name) return i;
  }
  s.variables.emplace_back(name);
  return s.variables.size() - 1;
}

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

// Parses the expression of one \set line.
class expr_parser {
 public:
  expr_parser(script& s, std::string_view text, const std::vector<bool>& defined, const std::string& file,
              std::size_t line)
      : s_(s), text_(text), defined_(defined), file_(file), line_(line) {}

  expr parse() {
    expr e = sum();
    skip_space();
    if (pos_ != text_.size()) fail("unexpected \"" + std::string(text_.substr(pos_)) + "\"");
    return e;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) { script_error(file_, line_, "\\set: " + msg); }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_])) != 0) ++pos_;
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  static expr binary(expr::kind k, expr a, expr b) {
    expr e;
    e.k = k;
    e.args.push_back(std::move(a));
    e.args.push_back(std::move(b));
    return e;
  }
  expr sum() {
    expr e = product();
    for (;;) {
      if (eat('+')) e = binary(expr::kind::add, std::move(e), product());
      else if (eat('-')) e = binary(expr::kind::sub, std::move(e), product());
      else return e;
    }
  }
  expr product() {
    expr e = unary();
    for (;;) {
      if (eat('*')) e = binary(expr::kind::mul, std::move(e), unary());
      else if (eat('/')) e = binary(expr::kind::div, std::move(e), unary());
      else if (eat('%')) e = binary(expr::kind::mod, std::move(e), unary());
      else return e;
    }
  }
  expr unary() {
    if (eat('-')) {
      expr e;
      e.k = expr::kind::negate;
      e.args.push_back(unary());
      return e;
    }
    if (eat('+')) return unary();
    return primary();
  }
  expr primary() {
    skip_space();
    if (pos_ >= text_.size()) fail("expression ends too soon");
    if (eat('(')) {
      expr e = sum();
      if (!eat(')')) fail("missing )");
      return e;
    }
    const char c = text_[pos_];
    if (std::isdigit(static_cast<unsigned char>(c)) != 0) {
      std::int64_t v = 0;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_])) != 0) {
        v = v * 10 + (text_[pos_++] - '0');
      }
      if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
        fail("only integer expressions are supported");
      }
      expr e;
      e.value = v;
      return e;
    }
    if (c == ':') {
      ++pos_;
      const std::size_t start = pos_;
      while (pos_ < text_.size() && ident_char(text_[pos_])) ++pos_;
      const std::string_view name = text_.substr(start, pos_ - start);
      if (name.empty()) fail("a variable name must follow ':'");
      expr e;
      e.k = expr::kind::variable;
      e.var = variable_index(s_, name);
      if (e.var >= defined_.size() || !defined_[e.var]) fail("variable :" + std::string(name) + " is not set before");
      return e;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) != 0) {
      const std::size_t start = pos_;
      while (pos_ < text_.size() && ident_char(text_[pos_])) ++pos_;
      const std::string name(text_.substr(start, pos_ - start));
      if (!eat('(')) fail("unknown word \"" + name + "\" (variables are written :name)");
      expr e;
      if (name == "random" || name == "random_uniform") e.k = expr::kind::random;
      else if (name == "abs") e.k = expr::kind::abs;
      else if (name == "least") e.k = expr::kind::least;
      else if (name == "greatest") e.k = expr::kind::greatest;
      else fail("unsupported function " + name + "() (random, abs, least, greatest)");
      if (!eat(')')) {
        do {
          e.args.push_back(sum());
        } while (eat(','));
        if (!eat(')')) fail("missing ) after the arguments of " + name + "()");
      }
      const std::size_t n = e.args.size();
      if ((e.k == expr::kind::random && n != 2) || (e.k == expr::kind::abs && n != 1) || n == 0) {
        fail("wrong number of arguments to " + name + "()");
      }
      return e;
    }
    fail("unexpected \"" + std::string(text_.substr(pos_)) + "\"");
  }

  script& s_;
  std::string_view text_;
  const std::vector<bool>& defined_;
  const std::string& file_;
  std::size_t line_;
  std::size_t pos_ = 0;
};

// Replaces the :variables of one statement with $1, $2... Quotes, quoted
// identifiers, comments and :: casts are left alone, and so is :name when no
// variable of that name is set before (an array slice a[1:n], say).
command sql_command(script& s, const std::string& text, const std::vector<bool>& defined) {
  command c;
  c.k = command::kind::sql;
  std::string out;
  std::size_t i = 0;
  const std::size_t n = text.size();
  auto copy_until = [&](std::size_t end) {
    out.append(text, i, end - i);
    i = end;
  };
  while (i < n) {
    const char ch = text[i];
    if (ch == '\'' || ch == '"') {
      const bool escapes = ch == '\'' && i > 0 && (text[i - 1] == 'E' || text[i - 1] == 'e');
      std::size_t j = i + 1;
      while (j < n) {
        if (escapes && text[j] == '\\') {
          j += 2;
          continue;
        }
        if (text[j] == ch) {
          if (j + 1 < n && text[j + 1] == ch) {
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      copy_until(std::min(n, j + 1));
    } else if (ch == '-' && i + 1 < n && text[i + 1] == '-') {
      const std::size_t e = text.find('\n', i);
      copy_until(e == std::string::npos ? n : e);
    } else if (ch == '/' && i + 1 < n && text[i + 1] == '*') {
      const std::size_t e = text.find("*/", i + 2);
      copy_until(e == std::string::npos ? n : e + 2);
    } else if (ch == '$' && (i == 0 || !ident_char(text[i - 1]))) {
      std::size_t j = i + 1;
      while (j < n && ident_char(text[j]) && std::isdigit(static_cast<unsigned char>(text[i + 1])) == 0) ++j;
      if (j < n && text[j] == '$') {
        const std::string tag = text.substr(i, j - i + 1);
        const std::size_t e = text.find(tag, j + 1);
        copy_until(e == std::string::npos ? n : e + tag.size());
      } else {
        copy_until(i + 1);
      }
    } else if (ch == ':' && i + 1 < n && text[i + 1] == ':') {
      copy_until(i + 2);
    } else if (ch == ':' && i + 1 < n && ident_char(text[i + 1])) {
      std::size_t j = i + 1;
      while (j < n && ident_char(text[j])) ++j;
      const std::string name = text.substr(i + 1, j - i - 1);
      const auto it = std::find(s.variables.begin(), s.variables.end(), name);
      const auto var = static_cast<std::size_t>(it - s.variables.begin());
      if (it == s.variables.end() || var >= defined.size() || !defined[var]) {
        copy_until(j);
        continue;
      }
      auto p = std::find(c.params.begin(), c.params.end(), var);
      if (p == c.params.end()) {
        c.params.push_back(var);
        p = c.params.end() - 1;
      }
      out += '$' + std::to_string(p - c.params.begin() + 1);
      i = j;
    } else {
      copy_until(i + 1);
    }
  }
  c.sql = std::move(out);
  return c;
}

std::uint64_t next_random(std::uint64_t& state) {
  // splitmix64: fast, good enough for picking rows.
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

double uniform01(std::uint64_t& state) {
  return static_cast<double>(next_random(state) >> 11) * 0x1.0p-53;
}

std::uint64_t next_random_seed(std::uint64_t& state) { return next_random(state); }

std::size_t pick(std::uint64_t& state, std::size_t n) {
  return static_cast<std::size_t>((static_cast<unsigned __int128>(n) * next_random(state)) >> 64);
}

script parse_script(std::string_view text, std::string name) {
  script s;
  s.name = std::move(name);
  s.variables = {"scale", "client_id"};
  std::vector<bool> defined = {true, true};
  std::string sql;             // SQL lines not yet split
  std::size_t sql_line = 1;    // where `sql` began
  auto flush_sql = [&] {
    std::vector<pgq::sql_statement> stmts;
    try {
      stmts = pgq::split_sql(sql);
    } catch (const pgq::sql_error& e) {
      script_error(s.name, sql_line + e.diag().script_line.value_or(1) - 1, e.what());
    }
    for (const auto& st : stmts) s.commands.push_back(sql_command(s, st.text, defined));
    sql.clear();
  };
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] != '\\') {
      if (sql.empty()) sql_line = line_no;
      sql.append(line);
      sql.push_back('\n');
      continue;
    }
    flush_sql();
    line = line.substr(first + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    const auto word_end = line.find_first_of(" \t");
    const std::string_view word = line.substr(0, word_end);
    std::string_view rest = word_end == std::string_view::npos ? std::string_view() : line.substr(word_end);
    rest.remove_prefix(std::min(rest.size(), rest.find_first_not_of(" \t")));
    if (word == "set") {
      const auto name_end = rest.find_first_of(" \t");
      if (name_end == std::string_view::npos) script_error(s.name, line_no, "\\set needs a name and an expression");
      const std::string_view var = rest.substr(0, name_end);
      if (!std::all_of(var.begin(), var.end(), ident_char)) {
        script_error(s.name, line_no, "invalid variable name \"" + std::string(var) + "\"");
      }
      command c;
      c.k = command::kind::set;
      c.target = variable_index(s, var);
      defined.resize(s.variables.size(), false);
      c.value = expr_parser(s, rest.substr(name_end), defined, s.name, line_no).parse();
      defined[c.target] = true;
      s.commands.push_back(std::move(c));
    } else if (word == "sleep") {
      command c;
      c.k = command::kind::sleep;
      std::string_view amount = rest;
      const auto unit_at = rest.find_last_of(" \t");
      if (unit_at != std::string_view::npos) {
        const std::string_view unit = rest.substr(unit_at + 1);
        if (unit == "us") c.unit_us = 1;
        else if (unit == "ms") c.unit_us = 1000;
        else if (unit == "s") c.unit_us = 1'000'000;
        else script_error(s.name, line_no, "\\sleep unit must be us, ms or s");
        amount = rest.substr(0, unit_at);
      }
      defined.resize(s.variables.size(), false);
      c.value = expr_parser(s, amount, defined, s.name, line_no).parse();
      s.commands.push_back(std::move(c));
    } else {
      script_error(s.name, line_no, "unsupported meta-command \\" + std::string(word) + " (\\set and \\sleep are)");
    }
  }
  flush_sql();
  if (std::none_of(s.commands.begin(), s.commands.end(), [](const command& c) { return c.k == command::kind::sql; })) {
    throw usage_error(s.name + ": the script has no SQL statement");
  }
  return s;
}

std::string builtin_script(std::string_view name) {
  if (name == "tpcb-like") {
    return "\\set aid random(1, 100000 * :scale)\n"
           "\\set bid random(1, 1 * :scale)\n"
           "\\set tid random(1, 10 * :scale)\n"
           "\\set delta random(-5000, 5000)\n"
           "BEGIN;\n"
           "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
           "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
           "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;\n"
           "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;\n"
           "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, "
           "CURRENT_TIMESTAMP);\n"
           "END;\n";
  }
  if (name == "simple-update") {
    return "\\set aid random(1, 100000 * :scale)\n"
           "\\set bid random(1, 1 * :scale)\n"
           "\\set tid random(1, 10 * :scale)\n"
           "\\set delta random(-5000, 5000)\n"
           "BEGIN;\n"
           "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
           "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
           "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, "
           "CURRENT_TIMESTAMP);\n"
           "END;\n";
  }
  if (name == "select-only") {
    return "\\set aid random(1, 100000 * :scale)\n"
           "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n";
  }
  throw usage_error("unknown builtin script \"" + std::string(name) +
                    "\" (tpcb-like, simple-update, select-only)");
}

std::int64_t evaluate(const expr& e, const std::vector<std::int64_t>& vars, std::uint64_t& rng) {
  auto arg = [&](std::size_t i) { return evaluate(e.args[i], vars, rng); };
  switch (e.k) {
    case expr::kind::number: return e.value;
    case expr::kind::variable: return vars[e.var];
    case expr::kind::negate: return -arg(0);
    case expr::kind::add: return arg(0) + arg(1);
    case expr::kind::sub: return arg(0) - arg(1);
    case expr::kind::mul: return arg(0) * arg(1);
    case expr::kind::div:
    case expr::kind::mod: {
      const std::int64_t a = arg(0);
      const std::int64_t b = arg(1);
      if (b == 0) throw usage_error("\\set: division by zero");
      return e.k == expr::kind::div ? a / b : a % b;
    }
    case expr::kind::random: {
      const std::int64_t lo = arg(0);
      const std::int64_t hi = arg(1);
      if (hi < lo) throw usage_error("\\set: random() with an empty range");
      const auto span = static_cast<unsigned __int128>(static_cast<std::uint64_t>(hi - lo)) + 1;
      const auto r = static_cast<std::uint64_t>((span * next_random(rng)) >> 64);
      return lo + static_cast<std::int64_t>(r);
    }
    case expr::kind::abs: return std::abs(arg(0));
    case expr::kind::least:
    case expr::kind::greatest: {
      std::int64_t v = arg(0);
      for (std::size_t i = 1; i < e.args.size(); ++i) {
        v = e.k == expr::kind::least ? std::min(v, arg(i)) : std::max(v, arg(i));
      }
      return v;
    }
  }
  return 0;
}

}  // namespace bench

namespace {

using clock = std::chrono::steady_clock;
using bench::command;
using bench::script;

struct bench_args {
  std::string builtin;
  std::vector<std::string> files;
  bool init = false;
  bool no_vacuum = false;
  std::int64_t scale = 0;  // 0: 1 for --init and scripts, counted from pgbench_branches for builtins
  std::size_t threads = 1;
  double duration = 0;
  std::int64_t transactions = 0;
  double rate = 0;
  std::size_t pipeline = 1;
  double progress = 0;
};

// What one thread's clients measured. Counters the progress report reads
// while the run goes on are atomic; the rest is read after the threads end.
struct thread_stats {
  std::vector<std::int64_t> latencies_ns;
  std::map<std::string, std::uint64_t> errors;
  std::int64_t lag_sum_ns = 0;
  std::int64_t lag_max_ns = 0;
  std::size_t aborted_clients = 0;
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::int64_t> latency_sum_ns{0};
};

struct shared_run {
  const bench_args* args = nullptr;
  const std::vector<script>* scripts = nullptr;
  std::string dsn;
  std::optional<std::chrono::milliseconds> timeout;
  std::size_t clients = 0;
  std::int64_t scale = 1;
  clock::time_point start;
  clock::time_point deadline = clock::time_point::max();
  std::atomic<bool> stop{false};
};

struct client {
  shared_run* run = nullptr;
  thread_stats* stats = nullptr;
  std::size_t id = 0;
  pgq::connection* conn = nullptr;
  std::uint64_t rng = 0;
  std::int64_t transactions_left = 0;  // with -t: shared by the client's lanes
};

std::string error_key(const std::exception& e) {
  if (const auto* se = dynamic_cast<const pgq::sql_error*>(&e)) {
    if (!se->sqlstate().empty()) return se->sqlstate();
    return se->code().message();
  }
  return e.what();
}

asio::awaitable<pgq::result> timed(shared_run* r, asio::awaitable<pgq::result> op) {
  if (!r->timeout) co_return co_await std::move(op);
  co_return co_await pgq::with_timeout(std::move(op), *r->timeout);
}

pgq::detail::param_set bind_vars(const command& c, const std::vector<std::int64_t>& vars) {
  pgq::detail::param_set p;
  // As bigint: pgbench splices the digits into the text (an integer literal);
  // a typed parameter behaves the same ("unknown" would make :x - :y ambiguous).
  for (std::size_t v : c.params) p.add(vars[v]);
  return p;
}

// One run of the script, statement by statement. Returns false when the
// transaction failed (counted by SQLSTATE).
asio::awaitable<bool> run_script(client* c, const script& s, std::vector<std::int64_t>& vars) {
  for (const command& cmd : s.commands) {
    switch (cmd.k) {
      case command::kind::set:
        vars[cmd.target] = bench::evaluate(cmd.value, vars, c->rng);
        break;
      case command::kind::sleep: {
        asio::steady_timer t(co_await asio::this_coro::executor,
                             std::chrono::microseconds(bench::evaluate(cmd.value, vars, c->rng) * cmd.unit_us));
        co_await t.async_wait(asio::use_awaitable);
        break;
      }
      case command::kind::sql: {
        auto op = c->conn->query_params(cmd.sql, bind_vars(cmd, vars));
        co_await timed(c->run, std::move(op));
        break;
      }
    }
  }
  co_return true;
}

// One run of the script sent as one batch (--pipeline): all its statements
// go out back to back, so that several runs overlap on the connection.
asio::awaitable<void> run_script_batch(client* c, const script& s, std::vector<std::int64_t>& vars) {
  pgq::batch b;
  for (const command& cmd : s.commands) {
    if (cmd.k == command::kind::set) vars[cmd.target] = bench::evaluate(cmd.value, vars, c->rng);
    else if (cmd.k == command::kind::sql) b.add_params(cmd.sql, bind_vars(cmd, vars));
  }
  co_await c->conn->run_batch(b);
}

bool keep_going(client* c) {
  shared_run* r = c->run;
  if (r->stop.load(std::memory_order_relaxed)) return false;
  if (r->args->transactions > 0) return c->transactions_left > 0;
  return clock::now() < r->deadline;
}

// A lane runs scripts one after another; a client has --pipeline lanes on
// its one connection.
asio::awaitable<void> lane(client* c, std::size_t lanes) {
  shared_run* r = c->run;
  const auto& scripts = *r->scripts;
  std::vector<std::vector<std::int64_t>> vars(scripts.size());
  for (std::size_t i = 0; i < scripts.size(); ++i) {
    vars[i].assign(scripts[i].variables.size(), 0);
    vars[i][0] = r->scale;
    vars[i][1] = static_cast<std::int64_t>(c->id);
  }
  const double mean_gap_us = r->args->rate > 0 ? 1e6 * static_cast<double>(r->clients * lanes) / r->args->rate : 0;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  clock::time_point schedule = clock::now();
  while (keep_going(c)) {
    if (r->args->transactions > 0) --c->transactions_left;
    if (mean_gap_us > 0) {
      const double u = bench::uniform01(c->rng);
      schedule += std::chrono::microseconds(static_cast<std::int64_t>(-std::log(1.0 - u) * mean_gap_us));
      if (schedule >= r->deadline) break;
      timer.expires_at(schedule);
      co_await timer.async_wait(asio::use_awaitable);
    } else {
      schedule = clock::now();
    }
    const std::size_t which = scripts.size() == 1 ? 0 : bench::pick(c->rng, scripts.size());
    const auto begun = clock::now();
    bool ok = false;
    try {
      if (lanes > 1) co_await run_script_batch(c, scripts[which], vars[which]);
      else co_await run_script(c, scripts[which], vars[which]);
      ok = true;
    } catch (const usage_error&) {
      throw;  // a script mistake (division by zero...): stop the run
    } catch (const std::exception& e) {
      if (is_cancellation(e) && r->stop.load()) throw;
      ++c->stats->errors[error_key(e)];
      c->stats->failed.fetch_add(1, std::memory_order_relaxed);
      if (!c->conn->is_open()) throw;  // the client is done
    }
    if (ok) {
      const auto end = clock::now();
      const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(end - schedule).count();
      c->stats->latencies_ns.push_back(ns);
      c->stats->latency_sum_ns.fetch_add(ns, std::memory_order_relaxed);
      c->stats->done.fetch_add(1, std::memory_order_relaxed);
      if (mean_gap_us > 0) {
        const std::int64_t lag = std::chrono::duration_cast<std::chrono::nanoseconds>(begun - schedule).count();
        c->stats->lag_sum_ns += lag;
        c->stats->lag_max_ns = std::max(c->stats->lag_max_ns, lag);
      }
    }
    if (lanes == 1) {
      // A failed script may leave its transaction open: end it before the next.
      const auto st = c->conn->transaction_status();
      if (st == pgq::tx_status::in_transaction || st == pgq::tx_status::in_error) {
        co_await c->conn->query_params("ROLLBACK", {});
      }
    }
  }
}


// A thread: its own io_context, its clients and their connections.
struct bench_thread {
  asio::io_context ctx{1};
  thread_stats stats;
  std::list<asio::cancellation_signal> signals;
  std::vector<std::unique_ptr<pgq::connection>> conns;
  std::vector<client> clients;
  std::string connect_error;
  int connect_code = exit_code::ok;
  std::string fatal;  // a script mistake found while running
  clock::time_point end;
  // Keeps run() going between connecting and the start signal.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{ctx.get_executor()};
};

asio::awaitable<void> connect_all(bench_thread* t, std::string dsn) {
  for (auto& c : t->clients) {
    auto conn = std::make_unique<pgq::connection>(co_await asio::this_coro::executor);
    try {
      co_await conn->connect(dsn);
    } catch (const std::exception& e) {
      std::ostringstream msg;
      print_error(msg, e);
      t->connect_error = msg.str();
      t->connect_code = exit_code::connect;
      co_return;
    }
    c.conn = conn.get();
    t->conns.push_back(std::move(conn));
  }
}

// Waits for what a cancelled client left on its connection: the server has
// then acknowledged the cancel and rolled back, before the process ends.
asio::awaitable<void> settle(pgq::connection* conn) {
  try {
    auto op = conn->query_params("", {});
    co_await pgq::with_timeout(std::move(op), std::chrono::seconds(2));
  } catch (const std::exception&) {
    // closing is all that is left
  }
}

// Ends a thread's work: closes its connections and lets its run() return.
void finish_thread(bench_thread* t) {
  t->conns.clear();
  t->guard.reset();
}

void after_lanes(bench_thread* t, shared_run* r) {
  t->end = clock::now();
  if (!r->stop.load() || t->conns.empty()) {
    finish_thread(t);
    return;
  }
  auto left = std::make_shared<std::size_t>(t->conns.size());
  for (auto& conn : t->conns) {
    asio::co_spawn(t->ctx, settle(conn.get()), [t, left](std::exception_ptr) {
      if (--*left == 0) finish_thread(t);
    });
  }
}

// Runs on the thread's context once every thread has connected.
void start_lanes(bench_thread* t, shared_run* r) {
  if (t->connect_code != exit_code::ok || r->stop.load() || t->clients.empty()) {
    finish_thread(t);
    return;
  }
  auto left = std::make_shared<std::size_t>(t->clients.size() * r->args->pipeline);
  for (auto& c : t->clients) {
    for (std::size_t l = 0; l < r->args->pipeline; ++l) {
      auto on_lane_done = [t, r, left](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const usage_error& x) {
            if (t->fatal.empty()) t->fatal = x.what();
            r->stop.store(true);
          } catch (const std::exception& x) {
            if (!(r->stop.load() && is_cancellation(x))) ++t->stats.aborted_clients;
          }
        }
        if (--*left == 0) after_lanes(t, r);
      };
      asio::co_spawn(t->ctx, lane(&c, r->args->pipeline),
                     asio::bind_cancellation_slot(t->signals.emplace_back().slot(), std::move(on_lane_done)));
    }
  }
}

void thread_main(bench_thread* t, shared_run* r, std::latch* connected, std::function<void()> on_done) {
  asio::co_spawn(t->ctx, connect_all(t, r->dsn), [connected](std::exception_ptr) { connected->count_down(); });
  t->ctx.run();
  on_done();
}

// ------------------------------------------------------------ init and set-up

asio::awaitable<void> run_statements(std::string dsn, std::vector<std::string> sql, std::int64_t scale) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(dsn);
  for (const auto& s : sql) {
    if (s.find("$1") != std::string::npos) co_await conn.query(s, scale);
    else co_await conn.query_params(s, {});
  }
}

asio::awaitable<void> count_branches(std::string dsn, std::int64_t* scale) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(dsn);
  pgq::result r;
  try {
    r = co_await conn.query("SELECT count(*) FROM pgbench_branches");
  } catch (const pgq::sql_error& e) {
    if (e.sqlstate() == "42P01") {
      throw usage_error("the pgbench tables do not exist: create them with pgq bench --init --scale N");
    }
    throw;
  }
  *scale = r[0].get<std::int64_t>(0);
  if (*scale < 1) throw usage_error("pgbench_branches is empty: run pgq bench --init again");
}

// Runs `op` on a fresh io_context; rethrows its failure.
void run_sync(asio::awaitable<void> op) {
  asio::io_context ctx(1);
  std::exception_ptr failure;
  asio::co_spawn(ctx, std::move(op), [&](std::exception_ptr e) { failure = e; });
  ctx.run();
  if (failure) std::rethrow_exception(failure);
}

// The tables of `pgbench -i` (server-side generation, as -I dtGvp does).
std::vector<std::string> init_statements() {
  return {
      "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
      "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))",
      "CREATE TABLE pgbench_tellers (tid int not null, bid int, tbalance int, filler char(84)) "
      "WITH (fillfactor = 100)",
      "CREATE TABLE pgbench_accounts (aid int not null, bid int, abalance int, filler char(84)) "
      "WITH (fillfactor = 100)",
      "CREATE TABLE pgbench_branches (bid int not null, bbalance int, filler char(88)) WITH (fillfactor = 100)",
      "INSERT INTO pgbench_branches (bid, bbalance) SELECT bid, 0 FROM generate_series(1, $1::int) AS bid",
      "INSERT INTO pgbench_tellers (tid, bid, tbalance) SELECT tid, (tid - 1) / 10 + 1, 0 "
      "FROM generate_series(1, 10 * $1::int) AS tid",
      "INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT aid, (aid - 1) / 100000 + 1, 0, '' "
      "FROM generate_series(1, 100000 * $1::int) AS aid",
      "VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history",
      "ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid)",
      "ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid)",
      "ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)",
  };
}

// ------------------------------------------------------------ report

double ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

double round3(double v) { return std::round(v * 1000) / 1000; }

nlohmann::ordered_json make_report(const bench_args& a, const shared_run& r, const std::string& script_name,
                                   std::vector<std::unique_ptr<bench_thread>>& threads, double elapsed_s,
                                   bool interrupted) {
  std::vector<std::int64_t> all;
  std::map<std::string, std::uint64_t> errors;
  std::uint64_t failed = 0;
  std::size_t aborted = 0;
  std::int64_t lag_sum = 0;
  std::int64_t lag_max = 0;
  for (auto& t : threads) {
    all.insert(all.end(), t->stats.latencies_ns.begin(), t->stats.latencies_ns.end());
    for (const auto& [k, v] : t->stats.errors) errors[k] += v;
    failed += t->stats.failed.load();
    aborted += t->stats.aborted_clients;
    lag_sum += t->stats.lag_sum_ns;
    lag_max = std::max(lag_max, t->stats.lag_max_ns);
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double q) -> double {
    if (all.empty()) return 0;
    auto k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(all.size())));
    k = std::clamp<std::size_t>(k, 1, all.size());
    return round3(ms(all[k - 1]));
  };
  std::int64_t sum = 0;
  for (auto v : all) sum += v;
  nlohmann::ordered_json j;
  j["script"] = script_name;
  j["scale"] = r.scale;
  j["clients"] = r.clients;
  j["threads"] = a.threads;
  j["pipeline"] = a.pipeline;
  if (a.transactions > 0) j["transactions_per_client"] = a.transactions;
  else j["duration_s"] = a.duration;
  if (a.rate > 0) j["rate"] = a.rate;
  j["elapsed_s"] = round3(elapsed_s);
  j["transactions"] = all.size();
  j["failed"] = failed;
  j["tps"] = round3(elapsed_s > 0 ? static_cast<double>(all.size()) / elapsed_s : 0);
  nlohmann::ordered_json lat;
  lat["avg"] = all.empty() ? 0.0 : round3(ms(sum) / static_cast<double>(all.size()));
  lat["p50"] = pct(0.50);
  lat["p90"] = pct(0.90);
  lat["p99"] = pct(0.99);
  lat["p99_9"] = pct(0.999);
  lat["max"] = all.empty() ? 0.0 : round3(ms(all.back()));
  j["latency_ms"] = lat;
  if (a.rate > 0) {
    nlohmann::ordered_json lag;
    lag["avg"] = all.empty() ? 0.0 : round3(ms(lag_sum) / static_cast<double>(all.size()));
    lag["max"] = round3(ms(lag_max));
    j["schedule_lag_ms"] = lag;
  }
  j["errors"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : errors) j["errors"][k] = v;
  j["aborted_clients"] = aborted;
  j["interrupted"] = interrupted;
  return j;
}

void print_report(std::ostream& out, output_format fmt, const nlohmann::ordered_json& j) {
  switch (fmt) {
    case output_format::json:
      out << j.dump(2) << '\n';
      return;
    case output_format::ndjson:
      out << j.dump() << '\n';
      return;
    case output_format::csv: {
      // One row; nested figures flattened as latency_ms_p99 and so on.
      std::vector<std::pair<std::string, std::string>> cols;
      for (const auto& [k, v] : j.items()) {
        if (v.is_object()) {
          for (const auto& [k2, v2] : v.items()) cols.emplace_back(k + "_" + k2, v2.dump());
        } else {
          cols.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
        }
      }
      for (std::size_t i = 0; i < cols.size(); ++i) out << (i ? "," : "") << cols[i].first;
      out << '\n';
      for (std::size_t i = 0; i < cols.size(); ++i) {
        const auto& v = cols[i].second;
        out << (i ? "," : "");
        if (v.find_first_of(",\"\n") != std::string::npos) {
          out << '"';
          for (char ch : v) out << (ch == '"' ? "\"\"" : std::string(1, ch));
          out << '"';
        } else {
          out << v;
        }
      }
      out << '\n';
      return;
    }
    case output_format::table:
      break;
  }
  const auto& lat = j["latency_ms"];
  out << std::fixed << std::setprecision(3);
  out << "transaction type: " << j["script"].get<std::string>() << '\n'
      << "scaling factor: " << j["scale"] << '\n'
      << "number of clients: " << j["clients"] << '\n'
      << "number of threads: " << j["threads"] << '\n'
      << "pipeline depth: " << j["pipeline"] << '\n';
  if (j.contains("transactions_per_client")) {
    out << "number of transactions per client: " << j["transactions_per_client"] << '\n';
  } else {
    out << "duration: " << j["duration_s"].get<double>() << " s\n";
  }
  if (j.contains("rate")) out << "target rate: " << j["rate"].get<double>() << " tps\n";
  const auto done = j["transactions"].get<std::uint64_t>();
  const auto failed = j["failed"].get<std::uint64_t>();
  out << "number of transactions actually processed: " << done << '\n'
      << "number of failed transactions: " << failed << " ("
      << (done + failed > 0 ? 100.0 * static_cast<double>(failed) / static_cast<double>(done + failed) : 0.0)
      << "%)\n";
  for (const char* k : {"avg", "p50", "p90", "p99", "p99_9", "max"}) {
    std::string name = k;
    if (name == "p99_9") name = "p99.9";
    if (name == "avg") name = "average";
    out << "latency " << name << " = " << lat[k].get<double>() << " ms\n";
  }
  if (j.contains("schedule_lag_ms")) {
    out << "schedule lag average = " << j["schedule_lag_ms"]["avg"].get<double>() << " ms, max = "
        << j["schedule_lag_ms"]["max"].get<double>() << " ms\n";
  }
  out << "tps = " << j["tps"].get<double>() << " (without initial connection time)\n";
  if (!j["errors"].empty()) {
    out << "errors by SQLSTATE:\n";
    for (const auto& [k, v] : j["errors"].items()) out << "  " << k << ": " << v << '\n';
  }
  if (j["aborted_clients"].get<std::size_t>() > 0) out << "aborted clients: " << j["aborted_clients"] << '\n';
  out.unsetf(std::ios::floatfield);
}

// ------------------------------------------------------------ the command

int bench_command(const global_options& g, const bench_args& a) {
  const output_format fmt = resolve_format(g);
  if (a.threads == 0) throw usage_error("--threads must be at least 1");
  if (a.pipeline == 0) throw usage_error("--pipeline must be at least 1");
  if (a.duration < 0 || a.transactions < 0 || a.rate < 0 || a.progress < 0 || a.scale < 0) {
    throw usage_error("negative numbers make no sense here");
  }
  if (a.duration > 0 && a.transactions > 0) throw usage_error("give --duration or --transactions, not both");
  if (!a.builtin.empty() && !a.files.empty()) throw usage_error("give --builtin or -f, not both");

  if (a.init) {
    const std::int64_t scale = a.scale > 0 ? a.scale : 1;
    const auto t0 = clock::now();
    try {
      run_sync(run_statements(g.dsn, init_statements(), scale));
    } catch (const std::exception& e) {
      print_error(std::cerr, e);
      return exit_code_of(e) == exit_code::failed && dynamic_cast<const pgq::sql_error*>(&e) != nullptr &&
                     static_cast<const pgq::sql_error&>(e).sqlstate().empty()
                 ? exit_code::connect
                 : exit_code_of(e);
    }
    std::cerr << "pgq bench: created the pgbench tables at scale " << scale << " in " << std::fixed
              << std::setprecision(2) << elapsed_ms(t0) / 1000 << " s\n";
    return exit_code::ok;
  }

  std::vector<script> scripts;
  std::string script_name;
  if (!a.files.empty()) {
    for (const auto& f : a.files) scripts.push_back(bench::parse_script(read_file(f), f));
    script_name = a.files.size() == 1 ? a.files[0] : "multiple scripts";
  } else {
    const std::string name = a.builtin.empty() ? "tpcb-like" : a.builtin;
    scripts.push_back(bench::parse_script(bench::builtin_script(name), "builtin " + name));
    script_name = "builtin: " + name;
  }

  shared_run r;
  r.args = &a;
  r.scripts = &scripts;
  r.dsn = g.dsn;
  r.timeout = statement_timeout(g);
  r.clients = g.connections;
  if (a.threads > r.clients) throw usage_error("--threads must not exceed --connections");
  bench_args effective = a;
  if (effective.duration == 0 && effective.transactions == 0) effective.transactions = 10;  // as pgbench
  r.args = &effective;

  try {
    const bool builtin = a.files.empty();
    if (a.scale > 0) r.scale = a.scale;
    else if (builtin) run_sync(count_branches(g.dsn, &r.scale));
    if (builtin && !a.no_vacuum) {
      std::vector<std::string> prep = {"VACUUM pgbench_branches", "VACUUM pgbench_tellers",
                                       "TRUNCATE pgbench_history"};
      run_sync(run_statements(g.dsn, std::move(prep), 0));
    }
  } catch (const usage_error&) {
    throw;
  } catch (const std::exception& e) {
    print_error(std::cerr, e);
    const auto* se = dynamic_cast<const pgq::sql_error*>(&e);
    return se != nullptr && se->sqlstate().empty() && exit_code_of(e) == exit_code::failed ? exit_code::connect
                                                                                            : exit_code_of(e);
  }

  std::vector<std::unique_ptr<bench_thread>> threads;
  for (std::size_t i = 0; i < a.threads; ++i) threads.push_back(std::make_unique<bench_thread>());
  std::uint64_t seed = static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
  for (std::size_t c = 0; c < r.clients; ++c) {
    client cl;
    cl.run = &r;
    cl.id = c;
    cl.rng = bench::next_random_seed(seed);
    cl.transactions_left = effective.transactions;
    threads[c % a.threads]->clients.push_back(cl);
  }
  for (auto& t : threads) {
    for (auto& c : t->clients) c.stats = &t->stats;
  }

  asio::io_context main_ctx(1);
  std::size_t running = threads.size();
  asio::signal_set sigs(main_ctx, SIGINT);
  asio::steady_timer progress_timer(main_ctx);
  bool interrupted = false;
  auto all_done = [&] {
    boost::system::error_code ignored;
    sigs.cancel(ignored);
    progress_timer.cancel();
  };
  std::latch connected(static_cast<std::ptrdiff_t>(threads.size()));
  std::vector<std::thread> workers;
  for (auto& t : threads) {
    bench_thread* tp = t.get();
    auto on_done = [&main_ctx, &running, &all_done] {
      asio::post(main_ctx, [&running, &all_done] {
        if (--running == 0) all_done();
      });
    };
    workers.emplace_back(thread_main, tp, &r, &connected, on_done);
  }
  connected.wait();
  int rc = exit_code::ok;
  for (auto& t : threads) {
    if (t->connect_code != exit_code::ok) {
      if (rc == exit_code::ok) std::cerr << t->connect_error;
      rc = t->connect_code;
      r.stop.store(true);
    }
  }
  r.start = clock::now();
  if (effective.duration > 0) {
    r.deadline = r.start + std::chrono::microseconds(static_cast<std::int64_t>(effective.duration * 1e6));
  }
  for (auto& t : threads) {
    bench_thread* tp = t.get();
    asio::post(tp->ctx, [tp, &r] { start_lanes(tp, &r); });
  }

  std::function<void(const boost::system::error_code&, int)> on_signal;
  on_signal = [&](const boost::system::error_code& ec, int) {
    if (ec) return;
    if (interrupted) std::_Exit(exit_code::interrupted);
    interrupted = true;
    std::cerr << "pgq: interrupted, cancelling\n";
    r.stop.store(true);
    for (auto& t : threads) {
      bench_thread* tp = t.get();
      asio::post(tp->ctx, [tp] {
        for (auto& s : tp->signals) s.emit(asio::cancellation_type::terminal);
      });
    }
    sigs.async_wait(on_signal);
  };
  sigs.async_wait(on_signal);

  std::uint64_t last_done = 0;
  std::int64_t last_sum = 0;
  auto last_time = r.start;
  std::function<void(const boost::system::error_code&)> on_progress;
  const auto period = std::chrono::microseconds(static_cast<std::int64_t>(a.progress * 1e6));
  on_progress = [&](const boost::system::error_code& ec) {
    if (ec) return;
    std::uint64_t done = 0;
    std::uint64_t failed = 0;
    std::int64_t sum = 0;
    for (auto& t : threads) {
      done += t->stats.done.load(std::memory_order_relaxed);
      failed += t->stats.failed.load(std::memory_order_relaxed);
      sum += t->stats.latency_sum_ns.load(std::memory_order_relaxed);
    }
    const auto now = clock::now();
    const double secs = std::chrono::duration<double>(now - last_time).count();
    const std::uint64_t n = done - last_done;
    std::cerr << std::fixed << std::setprecision(1) << "progress: "
              << std::chrono::duration<double>(now - r.start).count() << " s, "
              << (secs > 0 ? static_cast<double>(n) / secs : 0.0) << " tps, lat " << std::setprecision(3)
              << (n > 0 ? ms(sum - last_sum) / static_cast<double>(n) : 0.0) << " ms, " << failed << " failed\n";
    std::cerr.unsetf(std::ios::floatfield);
    last_done = done;
    last_sum = sum;
    last_time = now;
    progress_timer.expires_at(progress_timer.expiry() + period);
    progress_timer.async_wait(on_progress);
  };
  if (a.progress > 0 && rc == exit_code::ok) {
    progress_timer.expires_at(r.start + period);
    progress_timer.async_wait(on_progress);
  }
  main_ctx.run();
  for (auto& w : workers) w.join();
  if (rc != exit_code::ok) return rc;

  for (auto& t : threads) {
    if (!t->fatal.empty()) {
      std::cerr << "pgq: " << t->fatal << '\n';
      return exit_code::usage;
    }
  }
  clock::time_point end = r.start;
  for (auto& t : threads) end = std::max(end, t->end);
  const double elapsed = std::chrono::duration<double>(end - r.start).count();
  const auto report = make_report(effective, r, script_name, threads, elapsed, interrupted);
  print_report(std::cout, fmt, report);
  std::cout.flush();
  if (interrupted) return exit_code::interrupted;
  if (report["aborted_clients"].get<std::size_t>() > 0 || report["failed"].get<std::uint64_t>() > 0) {
    return exit_code::failed;
  }
  return exit_code::ok;
}

}  // namespace

void add_bench_command(CLI::App& app, const global_options& g, int& exit_code) {
  auto a = std::make_shared<bench_args>();
  auto* cmd = app.add_subcommand(
      "bench",
      "A pgbench-compatible load test: pgbench's builtin scripts and tables, or your own script\n"
      "(SQL ending in ;, and \\set name expr / \\sleep n [us|ms|s] lines). --connections clients,\n"
      "each on its own connection. Reports tps, latency avg/p50/p90/p99/p99.9/max and errors by\n"
      "SQLSTATE; --format json gives the whole report as one object. Exit code 1 when any\n"
      "transaction failed.");
  cmd->add_option("-b,--builtin", a->builtin, "tpcb-like (default), simple-update or select-only")
      ->check(CLI::IsMember({"tpcb-like", "simple-update", "select-only"}));
  cmd->add_option("-f,--file", a->files, "a pgbench script (repeatable: each transaction picks one at random)");
  cmd->add_flag("-i,--init", a->init, "create and fill the pgbench tables (drops them first), then exit");
  cmd->add_option("-s,--scale", a->scale,
                  "with --init: scale factor (100,000 accounts each; default 1); otherwise the :scale of "
                  "scripts (default: counted from pgbench_branches for builtins, 1 for -f)");
  cmd->add_flag("-n,--no-vacuum", a->no_vacuum, "skip the VACUUM and history TRUNCATE before a builtin run");
  cmd->add_option("-j,--threads", a->threads, "threads, each with its own event loop (default 1)");
  cmd->add_option("-T,--duration", a->duration, "run for this many seconds");
  cmd->add_option("-t,--transactions", a->transactions, "transactions per client (default 10, as pgbench)");
  cmd->add_option("-R,--rate", a->rate,
                  "target total transactions per second (Poisson arrivals); latency counts from the "
                  "scheduled start");
  cmd->add_option("--pipeline", a->pipeline,
                  "scripts in flight per connection; each script's statements go as one batch (default 1)");
  cmd->add_option("-P,--progress", a->progress, "print a progress line every this many seconds (stderr)");
  cmd->footer(exit_codes_help);
  cmd->callback([a, &g, &exit_code] { exit_code = bench_command(g, *a); });
}

}  // namespace pgq::cli
