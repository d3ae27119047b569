// What every pgq subcommand shares: the global options, exit codes, error
// reports in psql's shape, and a session (event loop, pool, Ctrl-C).
//
// A subcommand lives in its own file and registers itself from main.cpp with
// a function of the shape
//   void add_xxx_command(CLI::App& app, const global_options& g, int& exit_code);
// whose CLI11 callback runs the command and stores its exit code.
#pragma once

#include "output.hpp"
#include "usage_error.hpp"

#include <pgq/pool.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <list>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pgq::cli {

/// The process's exit status, as documented in `pgq --help` and the README.
namespace exit_code {
constexpr int ok = 0;       ///< everything succeeded
constexpr int failed = 1;   ///< a statement failed (the server's error is on stderr)
constexpr int usage = 2;    ///< bad command line or unreadable input file
constexpr int connect = 3;  ///< could not connect (server down, authentication, bad DSN)
constexpr int timeout = 4;  ///< a statement timed out (--timeout) or was cancelled
/// `pgq migrate status`: migrations pending, drifted or without a file;
/// `pgq migrate verify`: drift, missing files or migrations out of order.
constexpr int not_in_sync = 5;
constexpr int interrupted = 130;  ///< SIGINT: running statements cancelled, transactions rolled back
}  // namespace exit_code

/// The help text's paragraph on exit codes.
extern const char* const exit_codes_help;

/// Options given before or after any subcommand.
struct global_options {
  std::string dsn;              ///< --dsn, default $PGQ_DSN, then libpq's PG* environment
  std::string format;           ///< --format; empty: table on a terminal, ndjson otherwise
  std::size_t connections = 4;  ///< --connections: pool size
  std::string timeout;          ///< --timeout, e.g. "500ms", "2s", "1m"; empty: none
  bool verbose = false;         ///< -v: per-statement timings on stderr
};

/// Parses "500ms", "2s", "1.5s", "1m", "1h" or a bare number of seconds.
/// Throws usage_error.
std::chrono::milliseconds parse_duration(std::string_view text);

/// The output format of `g`: its --format, else table when stdout is a
/// terminal and ndjson when it is not. Throws usage_error.
output_format resolve_format(const global_options& g);

/// The per-statement limit from --timeout, if any. Throws usage_error.
std::optional<std::chrono::milliseconds> statement_timeout(const global_options& g);

/// Reads a whole file ("-" is stdin). Throws usage_error naming the file.
std::string read_file(const std::string& path);

/// Writes `e` to `out` the way psql reports errors:
///   ERROR: 42601: syntax error at or near "SELEC"
///   LINE 1: SELEC 1
///           ^
///   DETAIL: ...   HINT: ...   CONTEXT: ...
/// `where` (e.g. "file.sql:12") prefixes the first line as "pgq:where: ".
/// Client errors read "pgq: <message>".
void print_error(std::ostream& out, const std::exception& e, std::string_view where = {});

/// The exit code a failure maps to (1, 3 or 4; 2 for usage_error).
int exit_code_of(const std::exception& e);
/// As above for an exception_ptr (0 for null).
int exit_code_of(const std::exception_ptr& e);

/// True when `e` is a cancellation (errc::cancelled or Asio's
/// operation_aborted), as seen by tasks stopped by Ctrl-C.
bool is_cancellation(const std::exception& e);

/// The event loop of one command: a pool of `--connections` connections on
/// one thread, SIGINT handling and the task group that SIGINT cancels.
///
/// On the first SIGINT every task started through gather() is cancelled:
/// statements not sent are dropped, running ones are cancelled on the
/// server, transactions roll back (their scope ends, or the pool rolls them
/// back before closing), and the command exits 130. A second SIGINT exits
/// at once.
class session {
 public:
  explicit session(const global_options& g);
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  const global_options& options() const noexcept { return g_; }
  boost::asio::io_context& context() noexcept { return ctx_; }
  /// The pool; valid inside run()'s body.
  pgq::pool& pool() { return *pool_; }
  /// The --timeout limit, if any.
  std::optional<std::chrono::milliseconds> timeout() const noexcept { return timeout_; }
  bool interrupted() const noexcept { return interrupted_; }

  /// Connects once (a failure is reported and gives exit code 3 at once,
  /// rather than after the pool's acquire timeout), opens the pool with
  /// `pool_size` connections (0: --connections), runs `body` under the
  /// SIGINT guard, closes the pool and returns body's exit code (130 after
  /// SIGINT; the code of an exception body let through, after reporting it).
  int run(std::function<boost::asio::awaitable<int>(session&)> body, std::size_t pool_size = 0);

  /// Runs `tasks` concurrently and waits for all of them; each is cancelled
  /// on SIGINT. Rethrows the first exception a task let through, after all
  /// have finished.
  boost::asio::awaitable<void> gather(std::vector<boost::asio::awaitable<void>> tasks);

  /// Awaits `op` under --timeout, if one was given.
  boost::asio::awaitable<pgq::result> timed(boost::asio::awaitable<pgq::result> op);

  /// A new cancellation slot that SIGINT triggers.
  boost::asio::cancellation_slot interrupt_slot();

 private:
  void on_interrupt();

  global_options g_;
  std::optional<std::chrono::milliseconds> timeout_;
  boost::asio::io_context ctx_{1};
  std::optional<pgq::pool> pool_;
  std::list<boost::asio::cancellation_signal> signals_;
  bool interrupted_ = false;
};

/// Seconds since `start`, for -v.
double elapsed_ms(std::chrono::steady_clock::time_point start);

}  // namespace pgq::cli
