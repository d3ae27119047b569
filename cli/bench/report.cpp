#include "bench/report.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <utility>

namespace pgq::cli::bench {
namespace {

double ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

double round3(double v) { return std::round(v * 1000) / 1000; }

}  // namespace

nlohmann::ordered_json make_report(const bench_args& a, std::int64_t scale, std::size_t clients,
                                   const std::string& script_name, const run_result& r) {
  std::vector<std::int64_t> all = r.latencies_ns;
  std::sort(all.begin(), all.end());
  auto pct = [&](double q) -> double {
    if (all.empty()) return 0;
    auto k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(all.size())));
    k = std::clamp<std::size_t>(k, 1, all.size());
    return round3(ms(all[k - 1]));
  };
  std::int64_t sum = 0;
  for (auto v : all) sum += v;
  nlohmann::ordered_json j;
  j["script"] = script_name;
  j["scale"] = scale;
  j["clients"] = clients;
  j["threads"] = a.threads;
  j["pipeline"] = a.pipeline;
  if (a.transactions > 0) j["transactions_per_client"] = a.transactions;
  else j["duration_s"] = a.duration;
  if (a.rate > 0) j["rate"] = a.rate;
  j["elapsed_s"] = round3(r.elapsed_s);
  j["transactions"] = all.size();
  j["failed"] = r.failed;
  j["tps"] = round3(r.elapsed_s > 0 ? static_cast<double>(all.size()) / r.elapsed_s : 0);
  nlohmann::ordered_json lat;
  lat["avg"] = all.empty() ? 0.0 : round3(ms(sum) / static_cast<double>(all.size()));
  lat["p50"] = pct(0.50);
  lat["p90"] = pct(0.90);
  lat["p99"] = pct(0.99);
  lat["p99_9"] = pct(0.999);
  lat["max"] = all.empty() ? 0.0 : round3(ms(all.back()));
  j["latency_ms"] = lat;
  if (a.rate > 0) {
    nlohmann::ordered_json lag;
    lag["avg"] = all.empty() ? 0.0 : round3(ms(r.lag_sum_ns) / static_cast<double>(all.size()));
    lag["max"] = round3(ms(r.lag_max_ns));
    j["schedule_lag_ms"] = lag;
  }
  j["errors"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : r.errors) j["errors"][k] = v;
  j["aborted_clients"] = r.aborted_clients;
  j["interrupted"] = r.interrupted;
  return j;
}

void print_report(std::ostream& out, output_format fmt, const nlohmann::ordered_json& j) {
  switch (fmt) {
    case output_format::json: out << j.dump(2) << '\n'; return;
    case output_format::ndjson: out << j.dump() << '\n'; return;
    case output_format::csv: {
      // One row; nested figures flattened as latency_ms_p99 and so on.
      std::vector<std::pair<std::string, std::string>> cols;
      for (const auto& [k, v] : j.items()) {
        if (v.is_object()) {
          for (const auto& [k2, v2] : v.items()) {
            std::string name = k;
            name += '_';
            name += k2;
            cols.emplace_back(std::move(name), v2.dump());
          }
        } else {
          cols.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
        }
      }
      for (std::size_t i = 0; i < cols.size(); ++i) out << (i ? "," : "") << cols[i].first;
      out << '\n';
      for (std::size_t i = 0; i < cols.size(); ++i) {
        const auto& v = cols[i].second;
        out << (i ? "," : "");
        if (v.find_first_of(",\"\n") != std::string::npos) {
          out << '"';
          for (char ch : v) out << (ch == '"' ? "\"\"" : std::string(1, ch));
          out << '"';
        } else {
          out << v;
        }
      }
      out << '\n';
      return;
    }
    case output_format::table: break;
  }
  const auto& lat = j["latency_ms"];
  out << std::fixed << std::setprecision(3);
  out << "transaction type: " << j["script"].get<std::string>() << '\n'
      << "scaling factor: " << j["scale"] << '\n'
      << "number of clients: " << j["clients"] << '\n'
      << "number of threads: " << j["threads"] << '\n'
      << "pipeline depth: " << j["pipeline"] << '\n';
  if (j.contains("transactions_per_client")) {
    out << "number of transactions per client: " << j["transactions_per_client"] << '\n';
  } else {
    out << "duration: " << j["duration_s"].get<double>() << " s\n";
  }
  if (j.contains("rate")) out << "target rate: " << j["rate"].get<double>() << " tps\n";
  const auto done = j["transactions"].get<std::uint64_t>();
  const auto failed = j["failed"].get<std::uint64_t>();
  out << "number of transactions actually processed: " << done << '\n'
      << "number of failed transactions: " << failed << " ("
      << (done + failed > 0 ? 100.0 * static_cast<double>(failed) / static_cast<double>(done + failed) : 0.0) << "%)\n";
  for (const char* k : {"avg", "p50", "p90", "p99", "p99_9", "max"}) {
    std::string name = k;
    if (name == "p99_9") name = "p99.9";
    if (name == "avg") name = "average";
    out << "latency " << name << " = " << lat[k].get<double>() << " ms\n";
  }
  if (j.contains("schedule_lag_ms")) {
    out << "schedule lag average = " << j["schedule_lag_ms"]["avg"].get<double>()
        << " ms, max = " << j["schedule_lag_ms"]["max"].get<double>() << " ms\n";
  }
  out << "tps = " << j["tps"].get<double>() << " (without initial connection time)\n";
  if (!j["errors"].empty()) {
    out << "errors by SQLSTATE:\n";
    for (const auto& [k, v] : j["errors"].items()) out << "  " << k << ": " << v << '\n';
  }
  if (j["aborted_clients"].get<std::size_t>() > 0) out << "aborted clients: " << j["aborted_clients"] << '\n';
  out.unsetf(std::ios::floatfield);
}

}  // namespace pgq::cli::bench
