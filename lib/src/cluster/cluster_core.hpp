// cluster_core: the routing decisions of a client over several hosts
// (issue 17), without I/O. The prober feeds it what each host said; calls
// ask it where to go. Unit and randomized tests drive it with no server.
//
// Rules (each has a unit test in tests/unit/test_cluster_core.cpp):
//  R1 A host is usable only when its last probe answered and is fresh
//     (newer than `stale_after`); a failed probe, a lost connection or a
//     stale probe makes it unusable until a probe answers again.
//  R2 The primary is the usable host not in recovery. When two claim it
//     (an old primary still up after a standby was promoted), the one whose
//     WAL position is further ahead wins; the other is not used for
//     anything until a probe shows it in recovery or a single primary.
//  R3 A host that refused a write as read-only (SQLSTATE 25006) is no longer
//     taken as the primary until a later probe says it is one again.
//  R4 A standby is usable when it is in recovery, its replay lag is at most
//     `max_lag` (time) and, when set, at most `max_lag_bytes` behind the
//     primary's WAL position; a lagging standby is used again as soon as a
//     probe shows it within the bounds.
//  R5 `standby` goes to a usable standby, else falls back to the primary
//     (the route says so); `primary` only to the primary; `any` to any
//     usable host (standbys within the lag bounds, or the primary).
//  R6 Read-your-writes: with `min_lsn`, a standby qualifies only when it has
//     replayed that position; the primary always has.
//  R7 Among hosts that qualify: fewest requests in flight first, then the
//     shortest round trip, then the lowest index.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgq::detail {

/// A WAL position (pg_lsn) as a number.
using wal_lsn = std::uint64_t;
/// "16/B374D848" → the position; nullopt when it is not one.
std::optional<wal_lsn> parse_lsn(std::string_view text);
std::string format_lsn(wal_lsn lsn);

enum class route_target { primary, standby, any };

struct host_probe {
  bool in_recovery = false;
  /// Standby: now() - pg_last_xact_replay_timestamp() (nullopt: nothing
  /// replayed yet, or a primary).
  std::optional<std::chrono::milliseconds> replay_lag;
  /// Primary: pg_current_wal_lsn(); standby: pg_last_wal_replay_lsn().
  std::optional<wal_lsn> lsn;
  std::chrono::microseconds round_trip{0};
};

struct routing_options {
  std::chrono::milliseconds max_lag{std::chrono::seconds(5)};
  std::optional<std::uint64_t> max_lag_bytes;
  /// A probe older than this no longer counts (R1): three probe periods.
  std::chrono::milliseconds stale_after{std::chrono::seconds(3)};
};

enum class host_role { unknown, primary, standby };

struct host_state {
  bool answered = false;  ///< the last probe answered
  std::chrono::steady_clock::time_point probed_at{};
  host_probe last{};
  bool refused_write = false;  ///< R3, until a probe shows a primary again
  std::size_t in_flight = 0;
};

struct route {
  std::optional<std::size_t> host;  ///< nullopt: no host can take it
  bool fell_back_to_primary = false;
  std::string why;  ///< when no host: the reason, for the error message
};

class cluster_core {
 public:
  using clock = std::chrono::steady_clock;
  cluster_core(std::size_t hosts, routing_options options);

  void on_probe(std::size_t host, const host_probe& probe, clock::time_point now);
  void on_probe_failed(std::size_t host, clock::time_point now);
  void on_connection_lost(std::size_t host);
  void on_read_only_error(std::size_t host);
  void on_request_start(std::size_t host);
  void on_request_end(std::size_t host);

  [[nodiscard]] route choose(route_target target, clock::time_point now,
                             std::optional<wal_lsn> min_lsn = std::nullopt) const;

  /// The host taken as the primary now (R2, R3), if any.
  [[nodiscard]] std::optional<std::size_t> primary(clock::time_point now) const;
  [[nodiscard]] bool standby_usable(std::size_t host, clock::time_point now,
                                    std::optional<wal_lsn> min_lsn = std::nullopt) const;
  [[nodiscard]] host_role role(std::size_t host, clock::time_point now) const;
  /// Bytes host `h` is behind the primary, when both positions are known.
  [[nodiscard]] std::optional<std::uint64_t> lag_bytes(std::size_t h, clock::time_point now) const;

  [[nodiscard]] std::size_t size() const noexcept { return hosts_.size(); }
  [[nodiscard]] const host_state& host(std::size_t h) const { return hosts_.at(h); }
  [[nodiscard]] const routing_options& options() const noexcept { return options_; }

 private:
  [[nodiscard]] bool fresh(std::size_t h, clock::time_point now) const;
  [[nodiscard]] std::optional<std::size_t> best_of(const std::vector<std::size_t>& candidates) const;

  std::vector<host_state> hosts_;
  routing_options options_;
};

}  // namespace pgq::detail
