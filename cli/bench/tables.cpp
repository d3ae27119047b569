#include "bench/tables.hpp"

#include "usage_error.hpp"

#include <pgq/connection.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>

namespace asio = boost::asio;

namespace pgq::cli::bench {
namespace {

asio::awaitable<void> statements_on_one_connection(std::string dsn, std::vector<std::string> sql, std::int64_t scale) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(dsn);
  for (const auto& s : sql) {
    if (s.find("$1") != std::string::npos) co_await conn.query(s, scale);
    else co_await conn.query_params(s, {});
  }
}

asio::awaitable<void> count_branches_on(std::string dsn, std::int64_t* scale) {
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
  asio::co_spawn(ctx, std::move(op), [&](std::exception_ptr e) { failure = std::move(e); });
  ctx.run();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

std::vector<std::string> init_statements() {
  // Long statements are split over two literals on purpose, not a missing comma.
  // NOLINTBEGIN(bugprone-suspicious-missing-comma)
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
  // NOLINTEND(bugprone-suspicious-missing-comma)
}

void run_statements(const std::string& dsn, std::vector<std::string> sql, std::int64_t scale) {
  run_sync(statements_on_one_connection(dsn, std::move(sql), scale));
}

std::int64_t count_branches(const std::string& dsn) {
  std::int64_t scale = 1;
  run_sync(count_branches_on(dsn, &scale));
  return scale;
}

}  // namespace pgq::cli::bench
