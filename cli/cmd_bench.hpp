// pgq bench: a pgbench-compatible load test with latency percentiles.
#pragma once

#include "common.hpp"

namespace CLI {
class App;
}

namespace pgq::cli {

/// `pgq bench [--builtin NAME | -f SCRIPT] [--init --scale N] [-j THREADS]
/// [-T SECONDS | -t N] [-R TPS] [--pipeline DEPTH] [-P SECONDS]`
void add_bench_command(CLI::App& app, const global_options& g, int& exit_code);

}  // namespace pgq::cli
