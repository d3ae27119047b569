// Helpers for integration tests: the server under test and a fresh event
// loop per test, every coroutine under a timeout.
//
// Never write co_await inside a Catch macro (CHECK(co_await f() == 1)):
// GCC 12 evaluates the operand several times. Await into a variable first.
#pragma once

#include <pgq/pgq.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace pgq_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// The DSN of the server under test, from PGQ_TEST_DSN. Fails the test
/// (loudly, never skips) when it is not set.
std::string dsn();

/// Runs `body` as a coroutine on a fresh io_context and waits for it, failing
/// the test if it takes longer than `limit`. Exceptions from `body` propagate.
///
/// PGQ_TEST_THREADS (default 1) threads run the io_context. With more than
/// one, `body` and everything it spawns on its executor run on one strand
/// (the tests' own state and Catch2's assertions are not thread-safe), while
/// connections from connect() and pools made on pool_executor() run on
/// strands of their own, in parallel: what the TSan run (scripts/test --tsan)
/// checks.
void run(const std::function<asio::awaitable<void>()>& body, std::chrono::milliseconds limit = 60s);

/// A connection to the server under test: on the current coroutine's
/// executor, or, when several threads run it, on a new strand of its own.
asio::awaitable<pgq::connection> connect();

/// The executor for a pool made in a test running on `ex`: the io_context's
/// own behind run()'s strand, so that the pool's connections run on strands
/// of their own on every thread; `ex` itself when one thread runs it.
asio::any_io_executor pool_executor(const asio::any_io_executor& ex);

/// A unique name for this process, to keep tables of parallel test runs apart.
std::string unique_name(const std::string& prefix);

/// The server under test's version as libpq reports it (150004 for 15.4,
/// 120022 for 12.22). Connects once, blocking, and remembers it: call it
/// outside run() (inside, a connection's server_version() says the same).
int server_version();

/// True when the server `conn` talks to is `min` (server_version() form,
/// e.g. 150000) or newer. Otherwise WARNs "skipped: WHAT needs PostgreSQL
/// N, the server is M" and returns false: Catch2 2.x has no SKIP(), so a
/// test of something an older server lacks returns (or leaves that part
/// out) after this, and still asserts what it can on every server.
bool server_version_at_least(const pgq::connection& conn, int min, const std::string& what);

/// The same for the server under test, outside run() (see server_version()).
bool server_version_at_least(int min, const std::string& what);

/// `DROP DATABASE IF EXISTS name`, ending its sessions first: WITH (FORCE)
/// from PostgreSQL 13; before, pg_terminate_backend() on each.
asio::awaitable<void> drop_database(pgq::connection& admin, const std::string& name);

// The sql_error `op` threw, or nullopt when it succeeded. Other exceptions
// pass through.
template <class T>
asio::awaitable<std::optional<pgq::sql_error>> error_of(asio::awaitable<T> op) {
  try {
    co_await std::move(op);
  } catch (const pgq::sql_error& e) {
    co_return e;
  }
  co_return std::nullopt;
}

}  // namespace pgq_test

namespace pgq_test {

/// Runs `command` with /bin/sh, returns its stdout; throws std::runtime_error
/// naming the command when it exits non-zero. Blocks: call it from a thread
/// other than the event loop's when the loop must keep running.
std::string run_command(const std::string& command);

/// The repository's scripts/ directory (to start servers of our own).
std::string scripts_dir();

/// A throwaway server of its own (`scripts/pg start --name NAME ARGS`),
/// stopped and deleted when destroyed. For tests that restart a server or
/// need one configured differently from the shared one.
class scoped_server {
 public:
  scoped_server(std::string name, const std::string& extra_args = {});
  ~scoped_server();
  scoped_server(const scoped_server&) = delete;
  scoped_server& operator=(const scoped_server&) = delete;

  const std::string& dsn() const noexcept { return dsn_; }
  /// `scripts/pg restart`: a fast restart (sessions are cut). Blocks.
  void restart();

 private:
  std::string name_;
  std::string dsn_;
};

/// `dsn` with `key` set to `value` (conninfo or URI in, conninfo out).
std::string with_setting(const std::string& dsn, const std::string& key, const std::string& value);

/// Waits up to `limit` for the pool to settle (no lease out, nobody waiting,
/// nothing connecting), then checks that its statistics add up: every
/// connection created is either open or counted as closed for a reason.
asio::awaitable<void> check_pool_settled(const pgq::pool& pool, std::chrono::milliseconds limit = 5s);

/// Waits up to `limit` until no backend with `application_name` = `app` is
/// `idle in transaction`, then checks that none is.
asio::awaitable<void> check_no_idle_in_transaction(pgq::connection& observer, const std::string& app,
                                                   std::chrono::milliseconds limit = 5s);

/// Sleeps on the current executor.
asio::awaitable<void> pause(std::chrono::milliseconds d);

}  // namespace pgq_test
