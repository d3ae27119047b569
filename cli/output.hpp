// Output formats of the pgq tool: aligned table, JSON, NDJSON, CSV.
#pragma once

#include <pgq/result.hpp>

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace pgq::cli {

enum class output_format { table, json, ndjson, csv };

/// Parses "table", "json", "ndjson" or "csv".
bool parse_format(std::string_view name, output_format& out);

/// Writes the results of the statements in `results`, in order, in `fmt`.
/// `json` writes one document: the rows of a single statement as an array of
/// objects, or an array of such arrays for several statements. `ndjson` writes
/// one object per row. `csv` writes a header and the rows of each statement,
/// with a blank line between statements. `table` writes psql-like aligned
/// tables with a row count, or the command tag for statements without rows.
void write_results(std::ostream& out, output_format fmt, const std::vector<pgq::result>& results);

/// One result as an aligned table (exposed for tests).
void write_table(std::ostream& out, const pgq::result& r);
/// One result as CSV (RFC 4180; NULL is an empty unquoted field, an empty
/// string is "").
void write_csv(std::ostream& out, const pgq::result& r);

}  // namespace pgq::cli
