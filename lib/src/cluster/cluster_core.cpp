#include "cluster/cluster_core.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <stdexcept>
#include <tuple>

namespace pgq::detail {

std::optional<wal_lsn> parse_lsn(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size() || slash > 8 ||
      text.size() - slash - 1 > 8) {
    return std::nullopt;
  }
  std::uint32_t hi = 0;
  std::uint32_t lo = 0;
  const auto* const begin = text.data();
  const auto* const end = text.data() + text.size();
  auto r1 = std::from_chars(begin, begin + slash, hi, 16);
  if (r1.ec != std::errc{} || r1.ptr != begin + slash) return std::nullopt;
  auto r2 = std::from_chars(begin + slash + 1, end, lo, 16);
  if (r2.ec != std::errc{} || r2.ptr != end) return std::nullopt;
  return (static_cast<wal_lsn>(hi) << 32U) | lo;
}

std::string format_lsn(wal_lsn lsn) {
  char buf[24];
  const int n = std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32U),
                              static_cast<unsigned>(lsn & 0xFFFFFFFFU));
  return std::string(buf, static_cast<std::size_t>(n));
}

cluster_core::cluster_core(std::size_t hosts, routing_options options) : hosts_(hosts), options_(options) {
  if (hosts == 0) throw std::invalid_argument("pgq cluster: at least one host");
}

void cluster_core::on_probe(std::size_t h, const host_probe& probe, clock::time_point now) {
  host_state& s = hosts_.at(h);
  s.answered = true;
  s.probed_at = now;
  s.last = probe;
  // R3 ends here: the probe is newer than the refusal (the prober feeds only
  // probes it sent after the last event it was told of).
  s.refused_write = false;
}

void cluster_core::on_probe_failed(std::size_t h, clock::time_point now) {
  host_state& s = hosts_.at(h);
  s.answered = false;
  s.probed_at = now;
}

void cluster_core::on_connection_lost(std::size_t h) { hosts_.at(h).answered = false; }

void cluster_core::on_read_only_error(std::size_t h) { hosts_.at(h).refused_write = true; }

void cluster_core::on_request_start(std::size_t h) { ++hosts_.at(h).in_flight; }

void cluster_core::on_request_end(std::size_t h) {
  host_state& s = hosts_.at(h);
  if (s.in_flight > 0) --s.in_flight;
}

bool cluster_core::fresh(std::size_t h, clock::time_point now) const {
  const host_state& s = hosts_[h];
  return s.answered && now - s.probed_at <= options_.stale_after;
}

std::optional<std::size_t> cluster_core::primary(clock::time_point now) const {
  std::optional<std::size_t> best;
  for (std::size_t h = 0; h < hosts_.size(); ++h) {
    const host_state& s = hosts_[h];
    if (!fresh(h, now) || s.last.in_recovery || s.refused_write) continue;
    if (!best) {
      best = h;
      continue;
    }
    // R2: two claim it; the one further ahead wins (an unknown position loses).
    const auto& b = hosts_[*best].last.lsn;
    if (s.last.lsn && (!b || *s.last.lsn > *b)) best = h;
  }
  return best;
}

std::optional<std::uint64_t> cluster_core::lag_bytes(std::size_t h, clock::time_point now) const {
  const auto p = primary(now);
  if (!p || !hosts_[*p].last.lsn || !hosts_.at(h).last.lsn) return std::nullopt;
  const wal_lsn head = *hosts_[*p].last.lsn;
  const wal_lsn here = *hosts_[h].last.lsn;
  return head > here ? head - here : 0;
}

bool cluster_core::standby_usable(std::size_t h, clock::time_point now, std::optional<wal_lsn> min_lsn) const {
  const host_state& s = hosts_.at(h);
  if (!fresh(h, now) || !s.last.in_recovery) return false;
  // R4: time lag; a standby that has replayed nothing yet has no known lag.
  if (!s.last.replay_lag || *s.last.replay_lag > options_.max_lag) return false;
  if (options_.max_lag_bytes) {
    const auto behind = lag_bytes(h, now);
    if (!behind || *behind > *options_.max_lag_bytes) return false;
  }
  // R6
  if (min_lsn && (!s.last.lsn || *s.last.lsn < *min_lsn)) return false;
  return true;
}

host_role cluster_core::role(std::size_t h, clock::time_point now) const {
  if (!fresh(h, now)) return host_role::unknown;
  if (hosts_[h].last.in_recovery) return host_role::standby;
  return primary(now) == h ? host_role::primary : host_role::unknown;
}

std::optional<std::size_t> cluster_core::best_of(const std::vector<std::size_t>& candidates) const {
  std::optional<std::size_t> best;
  for (const std::size_t h : candidates) {
    if (!best) {
      best = h;
      continue;
    }
    const host_state& a = hosts_[h];
    const host_state& b = hosts_[*best];
    // R7: fewest in flight, then nearest, then lowest index (candidates come in order).
    if (std::tie(a.in_flight, a.last.round_trip) < std::tie(b.in_flight, b.last.round_trip)) best = h;
  }
  return best;
}

route cluster_core::choose(route_target target, clock::time_point now, std::optional<wal_lsn> min_lsn) const {
  route r;
  const auto p = primary(now);
  if (target == route_target::primary) {
    r.host = p;
    if (!p) r.why = "no host is a reachable primary";
    return r;
  }
  std::vector<std::size_t> standbys;
  for (std::size_t h = 0; h < hosts_.size(); ++h) {
    if (standby_usable(h, now, min_lsn)) standbys.push_back(h);
  }
  if (target == route_target::any) {
    std::vector<std::size_t> all = standbys;
    if (p) all.push_back(*p);
    // Keep index order for the tie-break.
    std::sort(all.begin(), all.end());
    r.host = best_of(all);
    if (!r.host) r.why = "no host is reachable";
    return r;
  }
  r.host = best_of(standbys);
  if (!r.host && p) {
    r.host = p;
    r.fell_back_to_primary = true;
  }
  if (!r.host)
    r.why = min_lsn ? "no standby has replayed the position asked for, and no primary is reachable"
                    : "no standby within the lag bounds, and no primary is reachable";
  return r;
}

}  // namespace pgq::detail
