// The report of a pgq bench run: tps, latency percentiles (exact: every
// latency is kept), schedule lag, errors by SQLSTATE; as pgbench's text, or
// one JSON object, NDJSON line or CSV row.
#pragma once

#include "bench/runner.hpp"
#include "output.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

namespace pgq::cli::bench {

/// The report of `r`, a run of `script_name` under `a` (the effective
/// options: -t defaulted) with `clients` clients at `scale`, as one object
/// whose keys keep their order.
nlohmann::ordered_json make_report(const bench_args& a, std::int64_t scale, std::size_t clients,
                                   const std::string& script_name, const run_result& r);

/// Writes `report` in `fmt`: table is pgbench's text; json the object;
/// ndjson one line; csv a header and one row (nested figures flattened as
/// latency_ms_p99 and so on).
void print_report(std::ostream& out, output_format fmt, const nlohmann::ordered_json& report);

}  // namespace pgq::cli::bench
