// pgq bench: the command. It checks the options, creates the pgbench tables
// (--init) or reads the scripts, hands the run to bench/runner and prints
// bench/report's report. The parts live in cli/bench/ (see its README.md).
#include "cmd_bench.hpp"

#include "bench/report.hpp"
#include "bench/runner.hpp"
#include "bench/script.hpp"
#include "bench/tables.hpp"

#include <pgq/error.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace pgq::cli {
namespace {

using bench::bench_args;
using bench::builtin_script;
using bench::count_branches;
using bench::init_statements;
using bench::make_report;
using bench::parse_script;
using bench::print_report;
using bench::run_load;
using bench::run_plan;
using bench::run_result;
using bench::run_statements;
using bench::script;

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
    const auto t0 = std::chrono::steady_clock::now();
    try {
      run_statements(g.dsn, init_statements(), scale);
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
    for (const auto& f : a.files) scripts.push_back(parse_script(read_file(f), f));
    script_name = a.files.size() == 1 ? a.files[0] : "multiple scripts";
  } else {
    const std::string name = a.builtin.empty() ? "tpcb-like" : a.builtin;
    scripts.push_back(parse_script(builtin_script(name), "builtin " + name));
    script_name = "builtin: " + name;
  }

  run_plan plan;
  plan.scripts = &scripts;
  plan.dsn = g.dsn;
  plan.timeout = statement_timeout(g);
  plan.clients = g.connections;
  if (a.threads > plan.clients) throw usage_error("--threads must not exceed --connections");
  bench_args effective = a;
  if (effective.duration == 0 && effective.transactions == 0) effective.transactions = 10;  // as pgbench
  plan.args = &effective;

  try {
    const bool builtin = a.files.empty();
    if (a.scale > 0) plan.scale = a.scale;
    else if (builtin) plan.scale = count_branches(g.dsn);
    if (builtin && !a.no_vacuum) {
      std::vector<std::string> prep = {"VACUUM pgbench_branches", "VACUUM pgbench_tellers", "TRUNCATE pgbench_history"};
      run_statements(g.dsn, std::move(prep), 0);
    }
  } catch (const usage_error&) {
    throw;
  } catch (const std::exception& e) {
    print_error(std::cerr, e);
    const auto* se = dynamic_cast<const pgq::sql_error*>(&e);
    return se != nullptr && se->sqlstate().empty() && exit_code_of(e) == exit_code::failed ? exit_code::connect
                                                                                           : exit_code_of(e);
  }

  const run_result result = run_load(plan);
  if (result.connect_code != exit_code::ok) return result.connect_code;
  if (!result.fatal.empty()) {
    std::cerr << "pgq: " << result.fatal << '\n';
    return exit_code::usage;
  }
  const auto report = make_report(effective, plan.scale, plan.clients, script_name, result);
  print_report(std::cout, fmt, report);
  std::cout.flush();
  if (result.interrupted) return exit_code::interrupted;
  if (report["aborted_clients"].get<std::size_t>() > 0 || report["failed"].get<std::uint64_t>() > 0) {
    return exit_code::failed;
  }
  return exit_code::ok;
}

}  // namespace

void add_bench_command(CLI::App& app, const global_options& g, int& exit_code) {
  auto a = std::make_shared<bench::bench_args>();
  auto* cmd =
      app.add_subcommand("bench",
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
