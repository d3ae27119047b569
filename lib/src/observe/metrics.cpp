#include <pgq/metrics.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace pgq {

namespace {

// Counts per bucket (not cumulative), and one more for +Inf.
struct histogram {
  std::vector<std::uint64_t> counts;
  double sum = 0;
  std::uint64_t count = 0;

  void observe(const std::vector<double>& bounds, double v) {
    if (counts.empty()) counts.assign(bounds.size() + 1, 0);
    const auto at = std::lower_bound(bounds.begin(), bounds.end(), v);  // le: v <= bound
    ++counts[static_cast<std::size_t>(at - bounds.begin())];
    sum += v;
    ++count;
  }
};

std::vector<double> checked_buckets(std::vector<double> b, const char* what) {
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (!(b[i] == b[i]) || (i > 0 && !(b[i - 1] < b[i]))) {
      throw std::invalid_argument(std::string("pgq::metrics: ") + what + " must be increasing numbers");
    }
  }
  return b;
}

void append_number(std::string& out, double v) {
  if (v == static_cast<double>(static_cast<std::int64_t>(v)) && v < 9.0e15 && v > -9.0e15) {
    out += std::to_string(static_cast<std::int64_t>(v));
    return;
  }
  std::array<char, 32> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

void append_number(std::string& out, std::uint64_t v) { out += std::to_string(v); }

// Label values: backslash, double quote and line feed escaped (the format's rule).
void append_label_value(std::string& out, std::string_view v) {
  for (const char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
}

using label_list = std::vector<std::pair<std::string_view, std::string_view>>;

// {a="x",b="y"} with empty values left out (an absent attribute), plus `extra`.
void append_labels(std::string& out, const label_list& labels, std::string_view extra = {}) {
  bool any = false;
  for (const auto& [k, v] : labels) {
    if (v.empty()) continue;
    out += any ? ',' : '{';
    any = true;
    out += k;
    out += "=\"";
    append_label_value(out, v);
    out += '"';
  }
  if (!extra.empty()) {
    out += any ? ',' : '{';
    any = true;
    out += extra;
  }
  if (any) out += '}';
}

void append_header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void append_sample(std::string& out, std::string_view name, const label_list& labels, double v) {
  out += name;
  append_labels(out, labels);
  out += ' ';
  append_number(out, v);
  out += '\n';
}

void append_histogram(std::string& out, std::string_view name, const label_list& labels,
                      const std::vector<double>& bounds, const histogram& h) {
  std::uint64_t cumulative = 0;
  std::string le;
  for (std::size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += h.counts.empty() ? 0 : h.counts[i];
    le = "le=\"";
    if (i < bounds.size()) {
      append_number(le, bounds[i]);
    } else {
      le += "+Inf";
    }
    le += '"';
    out += name;
    out += "_bucket";
    append_labels(out, labels, le);
    out += ' ';
    append_number(out, cumulative);
    out += '\n';
  }
  append_sample(out, std::string(name) + "_sum", labels, h.sum);
  append_sample(out, std::string(name) + "_count", labels, static_cast<double>(h.count));
}

constexpr std::string_view pool_label = "db_client_connection_pool_name";

}  // namespace

struct metrics::state {
  std::vector<double> duration_bounds;
  std::vector<double> depth_bounds;

  mutable std::mutex mutex;
  // namespace, operation, status code, error type, server address
  std::map<std::array<std::string, 5>, histogram, std::less<>> operations;
  std::map<std::pair<std::string, std::string>, double, std::less<>> connection_count;  // pool, state
  std::map<std::string, double, std::less<>> connection_max, idle_max, idle_min, pending;
  std::map<std::string, std::uint64_t, std::less<>> timeouts;
  std::map<std::string, histogram, std::less<>> create_time, wait_time, use_time;
  histogram pipeline_depth;
  std::uint64_t cache_hits = 0, cache_misses = 0, server_cancels = 0, reconnects = 0;
};

metrics::metrics(metrics_options options) : state_(std::make_unique<state>()) {
  state_->duration_bounds = checked_buckets(std::move(options.duration_buckets), "duration_buckets");
  state_->depth_bounds = checked_buckets(std::move(options.pipeline_depth_buckets), "pipeline_depth_buckets");
}

metrics::~metrics() = default;

namespace {

template <class Map>
auto& slot(Map& m, std::string_view key) {
  auto it = m.find(key);
  if (it == m.end()) it = m.emplace(std::string(key), typename Map::mapped_type{}).first;
  return it->second;
}

}  // namespace

void metrics::record_operation(const operation_sample& s) {
  std::array<std::string, 5> key{std::string(s.db_namespace), std::string(s.operation), std::string(s.status_code),
                                 std::string(s.error_type), std::string(s.server_address)};
  const std::lock_guard lock(state_->mutex);
  state_->operations[std::move(key)].observe(state_->duration_bounds, s.seconds);
}

void metrics::set_connection_count(std::string_view pool, std::size_t idle, std::size_t used) {
  const std::lock_guard lock(state_->mutex);
  state_->connection_count[{std::string(pool), "idle"}] = static_cast<double>(idle);
  state_->connection_count[{std::string(pool), "used"}] = static_cast<double>(used);
}

void metrics::set_connection_limits(std::string_view pool, std::size_t max, std::size_t idle_min,
                                    std::size_t idle_max) {
  const std::lock_guard lock(state_->mutex);
  slot(state_->connection_max, pool) = static_cast<double>(max);
  slot(state_->idle_min, pool) = static_cast<double>(idle_min);
  slot(state_->idle_max, pool) = static_cast<double>(idle_max);
}

void metrics::set_pending_requests(std::string_view pool, std::size_t pending) {
  const std::lock_guard lock(state_->mutex);
  slot(state_->pending, pool) = static_cast<double>(pending);
}

void metrics::add_timeout(std::string_view pool) {
  const std::lock_guard lock(state_->mutex);
  ++slot(state_->timeouts, pool);
}

void metrics::record_create_time(std::string_view pool, double seconds) {
  const std::lock_guard lock(state_->mutex);
  slot(state_->create_time, pool).observe(state_->duration_bounds, seconds);
}

void metrics::record_wait_time(std::string_view pool, double seconds) {
  const std::lock_guard lock(state_->mutex);
  slot(state_->wait_time, pool).observe(state_->duration_bounds, seconds);
}

void metrics::record_use_time(std::string_view pool, double seconds) {
  const std::lock_guard lock(state_->mutex);
  slot(state_->use_time, pool).observe(state_->duration_bounds, seconds);
}

void metrics::record_pipeline_depth(std::size_t depth) {
  const std::lock_guard lock(state_->mutex);
  state_->pipeline_depth.observe(state_->depth_bounds, static_cast<double>(depth));
}

void metrics::add_statement_cache_lookup(bool hit) {
  const std::lock_guard lock(state_->mutex);
  ++(hit ? state_->cache_hits : state_->cache_misses);
}

void metrics::add_server_cancel() {
  const std::lock_guard lock(state_->mutex);
  ++state_->server_cancels;
}

void metrics::add_reconnect() {
  const std::lock_guard lock(state_->mutex);
  ++state_->reconnects;
}

std::string metrics::prometheus_text() const {
  const state& s = *state_;
  const std::lock_guard lock(s.mutex);
  std::string out;
  out.reserve(4096);

  if (!s.operations.empty()) {
    constexpr std::string_view name = "db_client_operation_duration_seconds";
    append_header(out, name, "histogram", "Duration of database client operations.");
    for (const auto& [k, h] : s.operations) {
      const label_list labels{{"db_system_name", "postgresql"},  {"db_namespace", k[0]}, {"db_operation_name", k[1]},
                              {"db_response_status_code", k[2]}, {"error_type", k[3]},   {"server_address", k[4]}};
      append_histogram(out, name, labels, s.duration_bounds, h);
    }
  }

  auto per_pool_gauge = [&](std::string_view name, std::string_view help,
                            const std::map<std::string, double, std::less<>>& m) {
    if (m.empty()) return;
    append_header(out, name, "gauge", help);
    for (const auto& [pool, v] : m) append_sample(out, name, {{pool_label, pool}}, v);
  };
  if (!s.connection_count.empty()) {
    constexpr std::string_view name = "db_client_connection_count";
    append_header(out, name, "gauge",
                  "The number of connections that are currently in state described by the state attribute.");
    for (const auto& [k, v] : s.connection_count) {
      append_sample(out, name, {{pool_label, k.first}, {"db_client_connection_state", k.second}}, v);
    }
  }
  per_pool_gauge("db_client_connection_max", "The maximum number of open connections allowed.", s.connection_max);
  per_pool_gauge("db_client_connection_idle_max", "The maximum number of idle open connections allowed.", s.idle_max);
  per_pool_gauge("db_client_connection_idle_min", "The minimum number of idle open connections allowed.", s.idle_min);
  per_pool_gauge("db_client_connection_pending_requests",
                 "The number of current pending requests for an open connection.", s.pending);
  if (!s.timeouts.empty()) {
    constexpr std::string_view name = "db_client_connection_timeouts_total";
    append_header(out, name, "counter",
                  "The number of connection timeouts that have occurred trying to obtain a connection from the pool.");
    for (const auto& [pool, v] : s.timeouts) append_sample(out, name, {{pool_label, pool}}, static_cast<double>(v));
  }
  auto per_pool_histogram = [&](std::string_view name, std::string_view help,
                                const std::map<std::string, histogram, std::less<>>& m) {
    if (m.empty()) return;
    append_header(out, name, "histogram", help);
    for (const auto& [pool, h] : m) append_histogram(out, name, {{pool_label, pool}}, s.duration_bounds, h);
  };
  per_pool_histogram("db_client_connection_create_time_seconds", "The time it took to create a new connection.",
                     s.create_time);
  per_pool_histogram("db_client_connection_wait_time_seconds",
                     "The time it took to obtain an open connection from the pool.", s.wait_time);
  per_pool_histogram("db_client_connection_use_time_seconds",
                     "The time between borrowing a connection and returning it to the pool.", s.use_time);

  if (s.pipeline_depth.count > 0) {
    constexpr std::string_view name = "pgq_pipeline_depth";
    append_header(out, name, "histogram", "Requests in flight on a connection when one more is sent.");
    append_histogram(out, name, {}, s.depth_bounds, s.pipeline_depth);
  }
  auto counter = [&](std::string_view name, std::string_view help, std::uint64_t v) {
    append_header(out, name, "counter", help);
    append_sample(out, name, {}, static_cast<double>(v));
  };
  counter("pgq_statement_cache_hits_total", "Statements found prepared in a connection's cache.", s.cache_hits);
  counter("pgq_statement_cache_misses_total", "Statements prepared because the cache did not have them.",
          s.cache_misses);
  const std::uint64_t lookups = s.cache_hits + s.cache_misses;
  append_header(out, "pgq_statement_cache_hit_ratio", "gauge", "Cache hits over lookups so far (0 before any).");
  append_sample(out, "pgq_statement_cache_hit_ratio", {},
                lookups == 0 ? 0.0 : static_cast<double>(s.cache_hits) / static_cast<double>(lookups));
  counter("pgq_server_cancels_total", "Cancel requests sent to the server.", s.server_cancels);
  counter("pgq_reconnects_total", "Connections opened again after one was lost.", s.reconnects);
  return out;
}

std::string operation_name(std::string_view sql) {
  std::size_t i = 0;
  const std::size_t n = sql.size();
  while (i < n) {
    const char c = sql[i];
    if (std::isspace(static_cast<unsigned char>(c)) != 0 || c == '(' || c == ';') {
      ++i;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      int depth = 0;  // PostgreSQL's block comments nest
      while (i < n) {
        if (sql[i] == '/' && i + 1 < n && sql[i + 1] == '*') {
          ++depth;
          i += 2;
        } else if (sql[i] == '*' && i + 1 < n && sql[i + 1] == '/') {
          i += 2;
          if (--depth == 0) break;
        } else {
          ++i;
        }
      }
    } else {
      break;
    }
  }
  std::string word;
  while (i < n && word.size() < 32 && std::isalpha(static_cast<unsigned char>(sql[i])) != 0) {
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i])));
    ++i;
  }
  return word;
}

}  // namespace pgq
