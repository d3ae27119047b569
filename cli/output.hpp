// Output formats of the pgq tool: aligned table, JSON, NDJSON, CSV; for the
// server's results and for rows the tool makes itself (record_set).
#pragma once

#include <pgq/result.hpp>

#include <nlohmann/json.hpp>

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

/// Writes results one at a time, in order, as write_results() does for a
/// whole vector: for streaming output while later statements still run.
class result_writer {
 public:
  /// `count` results will follow. With `always_list`, json wraps even a
  /// single result in an outer array (for --params-file, whose shape must
  /// not depend on the number of input lines).
  result_writer(std::ostream& out, output_format fmt, std::size_t count, bool always_list = false);
  /// The next result.
  void write(const pgq::result& r);
  /// The next statement failed (its error went to stderr): json writes
  /// null in its place, other formats nothing.
  void write_failed();
  /// Closes the json array. Call once, after the last result.
  void finish();

 private:
  void separate();

  std::ostream& out_;
  output_format fmt_;
  bool list_;
  std::size_t written_ = 0;
  bool last_had_columns_ = false;
};

/// Rows the tool makes itself rather than reads from the server (`pgq
/// migrate status`, say): named columns, each value a JSON null, string,
/// number or boolean.
struct record_set {
  std::vector<std::string> columns;
  std::vector<std::vector<nlohmann::json>> rows;  ///< each as long as `columns`
};

/// Writes `records` in `fmt` as write_results() writes one result: `table`
/// psql-like with "(N rows)" (a column of numbers right-aligned, null
/// empty); `json` an array of objects, one per line; `ndjson` one object
/// per line; `csv` a header and the rows (null an empty field, an empty
/// string ""). Object keys keep the column order.
void write_records(std::ostream& out, output_format fmt, const record_set& records);

/// The json array of write_records() without its final newline, every line
/// after the first prefixed with `indent`: for an array inside a larger
/// document.
void write_records_json(std::ostream& out, const record_set& records, std::string_view indent);

/// One result as an aligned table (exposed for tests).
void write_table(std::ostream& out, const pgq::result& r);
/// One result as CSV (RFC 4180; NULL is an empty unquoted field, an empty
/// string is "").
void write_csv(std::ostream& out, const pgq::result& r);

}  // namespace pgq::cli
