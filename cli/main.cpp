// pgq - run PostgreSQL queries concurrently and print their results.
#include "cmd_migrate.hpp"
#include "output.hpp"

#include <pgq/pgq.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

struct global_options {
  std::string dsn;
  std::string format = "table";
  bool verbose = false;
};

struct query_outcome {
  std::optional<pgq::result> result;
  std::string error;
  std::chrono::steady_clock::duration took{};
};

// One statement on its own connection. State is passed by value or pointer,
// not captured: GCC 12 miscompiles some capturing coroutine lambdas.
asio::awaitable<void> run_one(std::string dsn, std::string sql, const std::vector<std::string>* params,
                              query_outcome* out) {
  const auto start = std::chrono::steady_clock::now();
  try {
    pgq::connection conn(co_await asio::this_coro::executor);
    co_await conn.connect(dsn);
    pgq::detail::param_set p;
    for (const auto& v : *params) p.add(v);
    out->result = co_await conn.query_params(sql, std::move(p));
  } catch (const std::exception& e) {
    out->error = e.what();
  }
  out->took = std::chrono::steady_clock::now() - start;
}

// Runs every statement at once, each on its own connection, and keeps the
// outcomes in the order given.
int run_query(const global_options& g, const std::vector<std::string>& statements,
              const std::vector<std::string>& params) {
  pgq::cli::output_format fmt{};
  if (!pgq::cli::parse_format(g.format, fmt)) {
    std::cerr << "pgq: unknown format \"" << g.format << "\" (table, json, ndjson or csv)\n";
    return exit_usage;
  }
  asio::io_context ctx(1);
  std::vector<query_outcome> outcomes(statements.size());
  for (std::size_t i = 0; i < statements.size(); ++i) {
    asio::co_spawn(ctx, run_one(g.dsn, statements[i], &params, &outcomes[i]),
                   [](std::exception_ptr e) {
                     if (e) std::rethrow_exception(e);
                   });
  }
  ctx.run();

  std::vector<pgq::result> results;
  int status = exit_ok;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const auto& o = outcomes[i];
    if (g.verbose) {
      std::cerr << "pgq: statement " << i + 1 << " took "
                << std::chrono::duration<double, std::milli>(o.took).count() << " ms\n";
    }
    if (o.result) {
      results.push_back(*o.result);
    } else {
      std::cerr << "pgq: statement " << i + 1 << " failed: " << o.error << '\n';
      status = exit_failed;
    }
  }
  pgq::cli::write_results(std::cout, fmt, results);
  std::cout.flush();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pgq: run PostgreSQL queries concurrently and print the results"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  global_options g;
  if (const char* env = std::getenv("PGQ_DSN")) g.dsn = env;
  app.add_option("--dsn", g.dsn,
                 "libpq conninfo or postgresql:// URI (default: $PGQ_DSN, then libpq's PG* "
                 "environment and defaults)");
  app.add_option("--format", g.format, "output format: table, json, ndjson or csv")
      ->check(CLI::IsMember({"table", "json", "ndjson", "csv"}));
  app.add_flag("-v,--verbose", g.verbose, "print each statement's time on stderr");

  std::vector<std::string> statements;
  std::vector<std::string> params;
  auto* query = app.add_subcommand("query", "run each SQL concurrently and print the results in order");
  query->add_option("sql", statements, "SQL statements")->required();
  query->add_option("-p,--param", params, "a value bound to $1, $2, ... of every statement (text)");

  int migrate_exit = -1;  // set when `pgq migrate` ran
  pgq::cli::add_migrate_command(app, g.dsn, g.format, migrate_exit);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_usage;
  }
  if (migrate_exit >= 0) return migrate_exit;
  try {
    if (*query) return run_query(g, statements, params);
  } catch (const std::exception& e) {
    std::cerr << "pgq: " << e.what() << '\n';
    return exit_failed;
  }
  return exit_usage;
}
