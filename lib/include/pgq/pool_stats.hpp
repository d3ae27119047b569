// pgq/pool_stats.hpp - what a pool reports about itself.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace pgq {

/// Counters and gauges of a pool (`pool::stats()`): a snapshot, consistent
/// with itself.
struct pool_stats {
  std::size_t size = 0;  ///< open connections (idle + in use + being reset or checked)
  std::size_t idle = 0;
  std::size_t in_use = 0;  ///< leased, or shared by independent statements (see `shared`)
  std::size_t connecting = 0;
  std::size_t waiting = 0;                         ///< tasks waiting for a connection
  std::uint64_t acquires = 0;                      ///< leases granted, shared uses included
  std::chrono::nanoseconds acquire_wait_total{0};  ///< summed over granted leases
  std::uint64_t timeouts = 0;                      ///< acquires that failed with pool_timeout
  std::uint64_t cancelled_waits = 0;               ///< acquires cancelled while waiting
  std::uint64_t created = 0;                       ///< connections opened
  std::uint64_t connect_failures = 0;
  std::uint64_t closed_idle = 0;
  std::uint64_t closed_lifetime = 0;
  std::uint64_t closed_broken = 0;
  std::uint64_t closed_health_check = 0;
  std::uint64_t closed_reset_failed = 0;
  std::uint64_t closed_pool_closed = 0;
  std::uint64_t resets = 0;  ///< returned connections that needed cleaning
  /// Connections running independent statements of several tasks at once
  /// (pool_options::share_depth), counted in `in_use`.
  std::size_t shared = 0;
  /// Statements in flight on those shared connections.
  std::size_t shared_in_flight = 0;
  /// Statements granted a connection to share (counted in `acquires`).
  std::uint64_t shared_acquires = 0;
};

}  // namespace pgq
