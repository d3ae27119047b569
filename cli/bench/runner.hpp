// The load loop of pgq bench: --connections clients, each on a connection of
// its own, spread over --threads threads with one io_context each; each
// client runs scripts back to back (or --pipeline of them at once) until
// the duration or the transaction count is reached, or Ctrl-C.
//
// Latency is measured per transaction (one run of the script), from its
// scheduled start under --rate (as pgbench does, so that a stalled server
// shows up as latency rather than as fewer transactions) or from its actual
// start otherwise. Every latency is kept, so percentiles are exact.
#pragma once

#include "bench/script.hpp"
#include "common.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pgq::cli::bench {

/// The options of one `pgq bench` invocation.
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

/// What to run.
struct run_plan {
  const bench_args* args = nullptr;  ///< with -t or -T set (neither given: -t 10, as pgbench)
  const std::vector<script>* scripts = nullptr;
  std::string dsn;
  std::optional<std::chrono::milliseconds> timeout;  ///< --timeout, per statement
  std::size_t clients = 0;
  std::int64_t scale = 1;  ///< the scripts' :scale
};

/// What a run measured, merged over its threads.
struct run_result {
  /// exit_code::connect when a client could not connect (the error is
  /// already on stderr; nothing ran).
  int connect_code = exit_code::ok;
  /// A script mistake found while running (division by zero...): the run
  /// stopped.
  std::string fatal;
  bool interrupted = false;                     ///< stopped by Ctrl-C
  double elapsed_s = 0;                         ///< from the start signal to the last thread's end
  std::vector<std::int64_t> latencies_ns;       ///< every completed transaction's, unsorted
  std::map<std::string, std::uint64_t> errors;  ///< failed transactions by SQLSTATE (or message)
  std::uint64_t failed = 0;
  std::size_t aborted_clients = 0;
  std::int64_t lag_sum_ns = 0;  ///< --rate: start behind schedule, summed
  std::int64_t lag_max_ns = 0;
};

/// Connects every client, starts them together, prints -P progress lines
/// on stderr, and returns when every client is done. On SIGINT the clients
/// are cancelled (their statements cancelled on the server, their
/// transactions rolled back) and the result says `interrupted`; a second
/// SIGINT exits at once.
run_result run_load(const run_plan& plan);

}  // namespace pgq::cli::bench
