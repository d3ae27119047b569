// Uses the installed pgq: parses a conninfo, loads migrations embedded with
// pgq_embed_migrations() and, when PGQ_TEST_DSN is set, runs a query.
#include "consumer_migrations.hpp"

#include <pgq/pgq.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <iostream>

boost::asio::awaitable<void> ask(std::string dsn, int* answer) {
  pgq::connection conn(co_await boost::asio::this_coro::executor);
  co_await conn.connect(dsn);
  auto r = co_await conn.query("SELECT $1::int4 * 2", 21);
  *answer = r[0].get<int>(0);
}

int main() {
  auto ci = pgq::conninfo::parse("host=localhost port=5432 dbname=app");
  if (ci.get("dbname") != "app") return 1;
  const auto migrations = pgq::load_migrations(consumer_migrations());
  if (migrations.size() != 1 || migrations[0].name != "hello" || !migrations[0].down) return 1;
  const char* dsn = std::getenv("PGQ_TEST_DSN");
  if (dsn == nullptr) {
    std::cout << "consumer: built and linked against pgq (no server given)\n";
    return 0;
  }
  boost::asio::io_context ctx;
  int answer = 0;
  boost::asio::co_spawn(ctx, ask(dsn, &answer), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  ctx.run();
  std::cout << "consumer: the answer is " << answer << '\n';
  return answer == 42 ? 0 : 1;
}
