#include "cluster/cluster_core.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <stdexcept>
#include <string>

using pgq::detail::cluster_core;
using pgq::detail::host_probe;
using pgq::detail::route_target;
using pgq::detail::routing_options;
using namespace std::chrono_literals;

namespace {

const cluster_core::clock::time_point t0{std::chrono::hours(1)};

host_probe primary_at(pgq::detail::wal_lsn lsn, std::chrono::microseconds rtt = 100us) {
  host_probe p;
  p.in_recovery = false;
  p.lsn = lsn;
  p.round_trip = rtt;
  return p;
}

host_probe standby_at(pgq::detail::wal_lsn lsn, std::chrono::milliseconds lag, std::chrono::microseconds rtt = 100us) {
  host_probe p;
  p.in_recovery = true;
  p.lsn = lsn;
  p.replay_lag = lag;
  p.round_trip = rtt;
  return p;
}

}  // namespace

TEST_CASE("cluster_core: LSNs parse and print as PostgreSQL writes them", "[cluster]") {
  CHECK(pgq::detail::parse_lsn("16/B374D848") == 0x16B374D848ULL);
  CHECK(pgq::detail::parse_lsn("0/0") == 0ULL);
  CHECK(pgq::detail::parse_lsn("FFFFFFFF/FFFFFFFF") == ~0ULL);
  CHECK(pgq::detail::format_lsn(0x16B374D848ULL) == "16/B374D848");
  for (const char* bad : {"", "/", "16/", "/1", "16B374D848", "1/2/3", "G/0", "123456789/0", "0/123456789", " 1/2"}) {
    INFO(bad);
    CHECK_FALSE(pgq::detail::parse_lsn(bad).has_value());
  }
}

TEST_CASE("cluster_core R1: only fresh answered probes count", "[cluster]") {
  cluster_core c(2, routing_options{});
  CHECK_FALSE(c.choose(route_target::primary, t0).host.has_value());  // nothing probed yet
  c.on_probe(0, primary_at(100), t0);
  CHECK(c.choose(route_target::primary, t0 + 1s).host == 0u);
  CHECK_FALSE(c.choose(route_target::primary, t0 + 4s).host.has_value());  // stale (3 s)
  c.on_probe(0, primary_at(100), t0 + 4s);
  CHECK(c.choose(route_target::primary, t0 + 4s).host == 0u);
  c.on_probe_failed(0, t0 + 5s);
  const auto r = c.choose(route_target::primary, t0 + 5s);
  CHECK_FALSE(r.host.has_value());
  CHECK(r.why == "no host is a reachable primary");
  c.on_probe(0, primary_at(100), t0 + 6s);
  c.on_connection_lost(0);
  CHECK_FALSE(c.choose(route_target::primary, t0 + 6s).host.has_value());
}

TEST_CASE("cluster_core R2: of two primaries, the one further ahead", "[cluster]") {
  cluster_core c(3, routing_options{});
  c.on_probe(0, primary_at(100), t0);  // the old primary, still up
  c.on_probe(1, primary_at(250), t0);  // the promoted standby, ahead
  c.on_probe(2, standby_at(240, 10ms), t0);
  CHECK(c.primary(t0) == 1u);
  CHECK(c.role(0, t0) == pgq::detail::host_role::unknown);  // not used for anything
  CHECK(c.role(1, t0) == pgq::detail::host_role::primary);
  CHECK(c.role(2, t0) == pgq::detail::host_role::standby);
  host_probe no_position = primary_at(0);
  no_position.lsn.reset();
  c.on_probe(0, no_position, t0);
  CHECK(c.primary(t0) == 1u);  // an unknown position loses
}

TEST_CASE("cluster_core R3: a host that refused a write as read-only is not the primary", "[cluster]") {
  cluster_core c(2, routing_options{});
  c.on_probe(0, primary_at(100), t0);
  c.on_probe(1, standby_at(100, 5ms), t0);
  c.on_read_only_error(0);
  auto r = c.choose(route_target::primary, t0);
  CHECK_FALSE(r.host.has_value());
  // Reads may still go to the standby; the refusing host takes nothing.
  r = c.choose(route_target::any, t0);
  CHECK(r.host == 1u);
  c.on_probe(0, standby_at(100, 5ms), t0 + 1s);  // it was demoted
  c.on_probe(1, primary_at(120), t0 + 1s);       // and the other promoted
  CHECK(c.primary(t0 + 1s) == 1u);
  c.on_probe(0, primary_at(130), t0 + 2s);  // a later probe says primary again
  CHECK(c.primary(t0 + 2s) == 0u);          // ahead of 1 (R2)
}

TEST_CASE("cluster_core R4: a lagging standby is skipped until it catches up", "[cluster]") {
  routing_options o;
  o.max_lag = 1s;
  o.max_lag_bytes = 1000;
  cluster_core c(2, o);
  c.on_probe(0, primary_at(10'000), t0);
  c.on_probe(1, standby_at(9'500, 200ms), t0);
  CHECK(c.standby_usable(1, t0));
  CHECK(c.lag_bytes(1, t0) == 500u);
  c.on_probe(1, standby_at(9'500, 1500ms), t0 + 1s);  // too late in time
  CHECK_FALSE(c.standby_usable(1, t0 + 1s));
  c.on_probe(1, standby_at(8'000, 100ms), t0 + 1s);  // too far behind in bytes
  CHECK_FALSE(c.standby_usable(1, t0 + 1s));
  c.on_probe(1, standby_at(9'999, 100ms), t0 + 2s);  // caught up
  CHECK(c.standby_usable(1, t0 + 2s));
  host_probe nothing_replayed = standby_at(9'999, 0ms);
  nothing_replayed.replay_lag.reset();
  c.on_probe(1, nothing_replayed, t0 + 2s);
  CHECK_FALSE(c.standby_usable(1, t0 + 2s));  // no known lag: not within the bound
}

TEST_CASE("cluster_core R5: standby falls back to the primary, primary never goes to a standby", "[cluster]") {
  routing_options o;
  o.max_lag = 1s;
  cluster_core c(3, o);
  c.on_probe(0, primary_at(100), t0);
  c.on_probe(1, standby_at(100, 10ms), t0);
  c.on_probe(2, standby_at(100, 5s), t0);  // lagging
  auto r = c.choose(route_target::standby, t0);
  CHECK(r.host == 1u);
  CHECK_FALSE(r.fell_back_to_primary);
  CHECK(c.choose(route_target::primary, t0).host == 0u);
  c.on_probe_failed(1, t0);
  r = c.choose(route_target::standby, t0);
  CHECK(r.host == 0u);
  CHECK(r.fell_back_to_primary);
  c.on_probe_failed(0, t0);
  r = c.choose(route_target::standby, t0);
  CHECK_FALSE(r.host.has_value());
  CHECK(r.why == "no standby within the lag bounds, and no primary is reachable");
  CHECK_FALSE(c.choose(route_target::any, t0).host.has_value());  // 2 lags, the others are down
}

TEST_CASE("cluster_core R6: read-your-writes goes only where the position was replayed", "[cluster]") {
  cluster_core c(3, routing_options{});
  c.on_probe(0, primary_at(500), t0);
  c.on_probe(1, standby_at(400, 10ms), t0);
  c.on_probe(2, standby_at(480, 10ms, 900us), t0);
  auto r = c.choose(route_target::standby, t0, 450);
  CHECK(r.host == 2u);  // 1 has not replayed 450
  r = c.choose(route_target::standby, t0, 490);
  CHECK(r.host == 0u);
  CHECK(r.fell_back_to_primary);
  r = c.choose(route_target::any, t0, 490);
  CHECK(r.host == 0u);
  r = c.choose(route_target::standby, t0, 300);
  CHECK(r.host == 1u);  // both qualify: 1 is nearer (R7)
}

TEST_CASE("cluster_core R7: fewest in flight, then nearest, then first", "[cluster]") {
  cluster_core c(4, routing_options{});
  c.on_probe(0, primary_at(100, 50us), t0);
  c.on_probe(1, standby_at(100, 1ms, 300us), t0);
  c.on_probe(2, standby_at(100, 1ms, 200us), t0);
  c.on_probe(3, standby_at(100, 1ms, 200us), t0);
  CHECK(c.choose(route_target::standby, t0).host == 2u);  // 2 and 3 tie on RTT: the first
  c.on_request_start(2);
  CHECK(c.choose(route_target::standby, t0).host == 3u);
  c.on_request_start(3);
  CHECK(c.choose(route_target::standby, t0).host == 1u);  // all others busier
  CHECK(c.choose(route_target::any, t0).host == 0u);      // the primary: idle and nearest
  c.on_request_end(2);
  c.on_request_end(2);  // more ends than starts do not wrap
  CHECK(c.host(2).in_flight == 0u);
  CHECK(c.choose(route_target::standby, t0).host == 2u);
}

TEST_CASE("cluster_core: a cluster of no hosts is refused", "[cluster]") {
  CHECK_THROWS_AS(cluster_core(0, routing_options{}), std::invalid_argument);
}

// Thousands of random event sequences; after each event, every route obeys
// the rules whatever happened before.
TEST_CASE("cluster_core: routes obey the rules over random histories", "[cluster][model]") {
  std::mt19937_64 rng(20261207);
  for (int round = 0; round < 2000; ++round) {
    const std::size_t n = 1 + rng() % 4;
    routing_options o;
    o.max_lag = std::chrono::milliseconds(100 + rng() % 900);
    if (rng() % 2 == 0) o.max_lag_bytes = 100 + rng() % 1000;
    cluster_core c(n, o);
    auto now = t0;
    for (int step = 0; step < 60; ++step) {
      now += std::chrono::milliseconds(rng() % 1500);
      const std::size_t h = rng() % n;
      switch (rng() % 7) {
        case 0:
        case 1: c.on_probe(h, primary_at(rng() % 5000, std::chrono::microseconds(rng() % 1000)), now); break;
        case 2:
        case 3:
          c.on_probe(h,
                     standby_at(rng() % 5000, std::chrono::milliseconds(rng() % 2000),
                                std::chrono::microseconds(rng() % 1000)),
                     now);
          break;
        case 4: c.on_probe_failed(h, now); break;
        case 5: c.on_read_only_error(h); break;
        default:
          if (rng() % 2 == 0) {
            c.on_request_start(h);
          } else {
            c.on_request_end(h);
          }
      }
      const std::optional<pgq::detail::wal_lsn> min_lsn =
          rng() % 3 == 0 ? std::optional<pgq::detail::wal_lsn>(rng() % 5000) : std::nullopt;
      const auto p = c.primary(now);
      if (p) {
        const auto& s = c.host(*p);
        REQUIRE(s.answered);
        REQUIRE_FALSE(s.last.in_recovery);
        REQUIRE_FALSE(s.refused_write);
        REQUIRE(now - s.probed_at <= o.stale_after);
      }
      for (const auto target : {route_target::primary, route_target::standby, route_target::any}) {
        const auto r = c.choose(target, now, min_lsn);
        if (!r.host) {
          REQUIRE_FALSE(r.why.empty());
          REQUIRE_FALSE(p.has_value());  // a primary can always take it
          continue;
        }
        const auto& s = c.host(*r.host);
        REQUIRE(s.answered);                          // R1
        REQUIRE(now - s.probed_at <= o.stale_after);  // R1
        if (*r.host == p) continue;                   // the primary qualifies for every target
        // Otherwise: a standby within the bounds that replayed min_lsn.
        REQUIRE(target != route_target::primary);
        REQUIRE_FALSE(r.fell_back_to_primary);
        REQUIRE(s.last.in_recovery);
        REQUIRE(s.last.replay_lag.has_value());
        REQUIRE(*s.last.replay_lag <= o.max_lag);  // R4
        if (o.max_lag_bytes) {
          const auto behind = c.lag_bytes(*r.host, now);
          REQUIRE(behind.has_value());
          REQUIRE(*behind <= *o.max_lag_bytes);
        }
        if (min_lsn) REQUIRE(*s.last.lsn >= *min_lsn);  // R6
        // R7: no usable standby is strictly less busy.
        for (std::size_t other = 0; other < n; ++other) {
          if (c.standby_usable(other, now, min_lsn)) REQUIRE(c.host(other).in_flight >= s.in_flight);
        }
      }
      // R5: standby falls back only when no standby qualifies.
      const auto sr = c.choose(route_target::standby, now, min_lsn);
      if (sr.fell_back_to_primary) {
        for (std::size_t other = 0; other < n; ++other) REQUIRE_FALSE(c.standby_usable(other, now, min_lsn));
      }
    }
  }
}
