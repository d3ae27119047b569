// pgq - PostgreSQL from the shell: concurrent queries, transactions, files
// of statements, load tests; output as a table, JSON, NDJSON or CSV.
//
// main() parses the global options and hands over to the subcommand's
// callback, which stores the exit code. Each subcommand registers itself
// below; its implementation lives in its own cmd_*.cpp.
#include "cmd_bench.hpp"
#include "cmd_copy.hpp"
#include "cmd_listen.hpp"
#include "cmd_migrate.hpp"
#include "cmd_sql.hpp"
#include "common.hpp"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

namespace {

int run(int argc, char** argv) {
  namespace cli = pgq::cli;
  CLI::App app{
      "pgq: run PostgreSQL statements concurrently, in transactions, from files, or as a load test;\n"
      "print the results as a table, JSON, NDJSON or CSV."};
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  app.footer(cli::exit_codes_help);

  cli::global_options g;
  if (const char* env = std::getenv("PGQ_DSN")) g.dsn = env;
  app.add_option("--dsn", g.dsn,
                 "libpq conninfo or postgresql:// URI (default: $PGQ_DSN, then libpq's PG* environment "
                 "and defaults; ~/.pgpass is honoured)");
  app.add_option("--format", g.format,
                 "table, json, ndjson or csv (default: table when stdout is a terminal, ndjson otherwise)")
      ->check(CLI::IsMember({"table", "json", "ndjson", "csv"}));
  app.add_option("-c,--connections", g.connections, "connections in the pool (default 4)")->check(CLI::PositiveNumber);
  app.add_option("--timeout", g.timeout, "limit per statement, e.g. 500ms, 2s, 1m (exit code 4 when hit)");
  app.add_flag("-v,--verbose", g.verbose,
               "print each statement's time, and the pool's statistics at the end, on stderr");

  int exit_code = cli::exit_code::usage;
  // Subcommands. Each add_* function creates its subcommand, binds its
  // options and sets a callback that runs it and stores the exit code.
  cli::add_query_command(app, g, exit_code);
  cli::add_run_command(app, g, exit_code);
  cli::add_tx_command(app, g, exit_code);
  cli::add_bench_command(app, g, exit_code);
  cli::add_listen_command(app, g, exit_code);
  cli::add_copy_command(app, g, exit_code);
  cli::add_migrate_command(app, g, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? cli::exit_code::ok : cli::exit_code::usage;
  } catch (const std::exception& e) {
    // Raised by a subcommand before or after its session: bad input files,
    // an unknown isolation level, ...
    cli::print_error(std::cerr, e);
    return cli::exit_code_of(e);
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    // Setting up the options themselves failed (out of memory, ...).
    std::cerr << "pgq: " << e.what() << '\n';
  } catch (...) {
    std::cerr << "pgq: unexpected error\n";
  }
  return 1;
}
