// pgq/metrics.hpp - a registry of database-client metrics under
// OpenTelemetry's names, rendered in Prometheus text format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgq {

/// One finished database operation (a statement, a batch, a COPY).
/// The string views need only live for the call.
struct operation_sample {
  double seconds = 0;                 ///< how long it took, wall clock
  std::string_view db_namespace{};    ///< db.namespace: the database name
  std::string_view operation{};       ///< db.operation.name: SELECT, INSERT, ... (see operation_name())
  std::string_view status_code{};     ///< db.response.status_code: the SQLSTATE; empty on success
  std::string_view error_type{};      ///< error.type: e.g. the SQLSTATE or "timeout"; empty on success
  std::string_view server_address{};  ///< server.address: the host
};

/// Buckets of the histograms; the defaults are OpenTelemetry's advice for
/// db.client.operation.duration and the connection times.
struct metrics_options {
  std::vector<double> duration_buckets{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
  std::vector<double> pipeline_depth_buckets{1, 2, 4, 8, 16, 32, 64, 128, 256};
};

/// The first SQL keyword of `sql`, upper-cased ("SELECT", "INSERT",
/// "WITH", ...), skipping white space and comments; empty when there is no
/// keyword. This is the low-cardinality db.operation.name: never the text.
std::string operation_name(std::string_view sql);

/// The metrics of database clients as OpenTelemetry's semantic conventions
/// name them, plus pgq's own, kept in memory and rendered in the Prometheus
/// text exposition format (version 0.0.4) with the names the OpenTelemetry
/// Prometheus exporter gives them: dots become underscores, a unit of
/// seconds adds `_seconds`, counters end in `_total`, histograms are
/// `_bucket`/`_sum`/`_count`, attributes become labels (db.system.name →
/// db_system_name).
///
///   db.client.operation.duration           histogram (s): db.system.name,
///       db.namespace, db.operation.name, db.response.status_code,
///       error.type, server.address
///   db.client.connection.count             gauge: pool name, state idle|used
///   db.client.connection.max / .idle.max / .idle.min / .pending_requests   gauges
///   db.client.connection.timeouts          counter
///   db.client.connection.create_time / .wait_time / .use_time   histograms (s)
///   pgq.pipeline.depth                     histogram: requests in flight
///       on a connection when one is sent
///   pgq.statement_cache.hits / .misses     counters; .hit_ratio gauge
///   pgq.server_cancels, pgq.reconnects     counters
///
/// Every method is safe to call from any thread at any time (one mutex);
/// a registry outlives the pools and tracers that feed it. Series appear
/// at their first sample, and the attribute values come from the program
/// (pool names, SQLSTATEs, the first SQL keyword), never from user data.
class metrics {
 public:
  explicit metrics(metrics_options options = {});
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  void record_operation(const operation_sample& sample);

  /// The connections of pool `pool` now: idle and in use (opening ones count as used).
  void set_connection_count(std::string_view pool, std::size_t idle, std::size_t used);
  void set_connection_limits(std::string_view pool, std::size_t max, std::size_t idle_min, std::size_t idle_max);
  void set_pending_requests(std::string_view pool, std::size_t pending);
  void add_timeout(std::string_view pool);
  void record_create_time(std::string_view pool, double seconds);
  void record_wait_time(std::string_view pool, double seconds);
  void record_use_time(std::string_view pool, double seconds);

  void record_pipeline_depth(std::size_t depth);
  void add_statement_cache_lookup(bool hit);
  void add_server_cancel();
  void add_reconnect();

  /// Everything recorded so far, in the Prometheus text format.
  [[nodiscard]] std::string prometheus_text() const;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace pgq
