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
#include <string>

namespace pgq_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// The DSN of the server under test, from PGQ_TEST_DSN. Fails the test
/// (loudly, never skips) when it is not set.
std::string dsn();

/// Runs `body` as a coroutine on a fresh io_context and waits for it, failing
/// the test if it takes longer than `limit`. Exceptions from `body` propagate.
void run(std::function<asio::awaitable<void>()> body, std::chrono::milliseconds limit = 60s);

/// A connection to the server under test, on the current coroutine's executor.
asio::awaitable<pgq::connection> connect();

/// A unique name for this process, to keep tables of parallel test runs apart.
std::string unique_name(const std::string& prefix);

}  // namespace pgq_test
