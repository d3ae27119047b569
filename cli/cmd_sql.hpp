// pgq query, pgq run, pgq tx: statements over the pool.
#pragma once

#include "common.hpp"

namespace CLI {
class App;
}

namespace pgq::cli {

/// `pgq query SQL... [-p VALUE]... [--params-file FILE]`
void add_query_command(CLI::App& app, const global_options& g, int& exit_code);
/// `pgq run FILE... [--jobs N] [--tx] [--continue-on-error]`
void add_run_command(CLI::App& app, const global_options& g, int& exit_code);
/// `pgq tx [SQL... | -f FILE] [--isolation L] [--read-only] [--retries N]`
void add_tx_command(CLI::App& app, const global_options& g, int& exit_code);

}  // namespace pgq::cli
