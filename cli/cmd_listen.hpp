// pgq listen: notifications as NDJSON, on a connection that survives loss.
#pragma once

#include "common.hpp"

namespace CLI {
class App;
}

namespace pgq::cli {

/// `pgq listen CHANNEL... [--count N] [--duration D]`
void add_listen_command(CLI::App& app, const global_options& g, int& exit_code);

}  // namespace pgq::cli
