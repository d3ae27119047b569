// pgq copy in / pgq copy out: COPY between a table (or a query) and a file
// or the standard streams, streamed both ways.
#pragma once

#include "common.hpp"

#include <string>
#include <string_view>

namespace CLI {
class App;
}

namespace pgq::cli {

/// `pgq copy in TABLE [--file F] [--csv]` and `pgq copy out (TABLE|QUERY) [--file F] [--csv]`
void add_copy_command(CLI::App& app, const global_options& g, int& exit_code);

/// True when `target` of `copy out` is a query rather than a table: it
/// starts (after blanks and comments) with SELECT, WITH, VALUES or TABLE as
/// a whole word, in any case, or with "(".
bool is_copy_query(std::string_view target);

/// The COPY statement of `copy out`: `COPY (query) TO STDOUT` for a query
/// (a trailing `;` dropped), `COPY target TO STDOUT` for a table or a query
/// already in parentheses; `options` (e.g. " (FORMAT csv)") appended.
std::string copy_out_statement(std::string_view target, std::string_view options);

}  // namespace pgq::cli
