// `pgq migrate`: status, up, down, verify, repair and new, over pgq::migrator.
#pragma once

#include "common.hpp"

namespace CLI {
class App;
}

namespace pgq::cli {

/// Adds the `migrate` subcommand to `app`. Its exit codes are the tool's
/// (common.hpp), with two of its own meanings: exit_code::not_in_sync (5)
/// when `status` finds migrations pending, drifted or without a file, or
/// `verify` finds problems; and exit_code::failed (1), not timeout, when the
/// migration lock was not obtained within --lock-timeout.
void add_migrate_command(CLI::App& app, const global_options& g, int& exit_code);

}  // namespace pgq::cli
