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

/// The parameter lines of --params-file: CSV with a header row (an empty
/// unquoted field is NULL, "" an empty string) or NDJSON (each line an array
/// of values, or an object whose values are taken in order; null is NULL,
/// strings as they are, anything else as its JSON text). The format is
/// chosen by the extension (.csv; .ndjson, .jsonl, .json) or else by the
/// first character. Throws usage_error naming the line.
std::vector<std::vector<std::optional<std::string>>> parse_params_file(std::string_view text,
                                                                       std::string_view name);

}  // namespace pgq::cli
