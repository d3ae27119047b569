// A tour of pgq: a pool, typed rows, a transaction scope, a timeout.
// Run: quickstart "postgresql://user:pass@host/db" (or set PGQ_DSN).
#include <pgq/pgq.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>

#include <cstdlib>
#include <iostream>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<void> tour(std::string dsn) {
  // Options are named before use: GCC 12 destroys a brace-initialised
  // temporary that owns memory twice when it sits in a co_await expression.
  pgq::pool_options options{.max_size = 4};
  options.conninfo = dsn;
  auto ex = co_await asio::this_coro::executor;
  pgq::pool pool(ex, options);

  // Parameters are always bound, never spliced into the SQL.
  auto rows = co_await pool.query("SELECT g AS n, 'item ' || g AS label FROM generate_series(1, $1::int4) g", 3);
  for (auto row : rows) {
    auto [n, label] = row.as_tuple<int, std::string>();
    std::cout << n << ": " << label << '\n';
  }

  co_await pool.execute("CREATE TEMP TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance numeric)");

  // A transaction scope: committed when the function returns, rolled back if
  // it throws; serialization failures are retried.
  auto open_accounts = [](pgq::transaction& tx) -> asio::awaitable<void> {
    co_await tx.execute("INSERT INTO accounts VALUES ($1, $2), ($3, $4)", 1, pgq::numeric("100.00"), 2,
                        pgq::numeric("0.00"));
  };
  pgq::lease conn = co_await pool.acquire();  // temp tables live on one connection
  co_await pgq::transact(*conn, {.level = pgq::isolation::serializable, .retries = 3}, open_accounts);

  // A transaction object: dropped without commit, it rolls back.
  {
    auto tx = co_await conn->begin();
    co_await tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1");
  }
  auto r = co_await conn->query("SELECT balance FROM accounts WHERE id = 1");
  std::cout << "balance after the abandoned transfer: " << r[0].get<pgq::numeric>(0).str() << '\n';

  // Any operation can have a deadline; the connection stays usable.
  try {
    co_await pgq::with_timeout(conn->query("SELECT pg_sleep(5)"), 100ms);
  } catch (const pgq::sql_error& e) {
    std::cout << "timed out as asked: " << e.what() << '\n';
  }

  // Server errors carry the SQLSTATE and every field the server sent.
  try {
    co_await conn->execute("INSERT INTO accounts VALUES (1, 0)");
  } catch (const pgq::sql_error& e) {
    std::cout << "SQLSTATE " << e.sqlstate() << ", constraint " << e.diag().constraint << '\n';
  }
  std::cout << "rows as JSON: " << (co_await conn->query("SELECT * FROM accounts ORDER BY id")).to_json() << '\n';
}

// NOLINTNEXTLINE(bugprone-exception-escape): the tour's exceptions end in its completion handler below
int main(int argc, char** argv) {
  const char* env = std::getenv("PGQ_DSN");
  std::string dsn = argc > 1 ? argv[1] : env != nullptr ? env : "";
  asio::io_context ctx;
  int status = 0;
  asio::co_spawn(ctx, tour(dsn), [&](const std::exception_ptr& e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      std::cerr << "quickstart: " << ex.what() << '\n';
      status = 1;
    }
  });
  ctx.run();
  return status;
}
