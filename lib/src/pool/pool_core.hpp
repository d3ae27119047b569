// pool/pool_core.hpp - the pool's decisions, without I/O.
//
// pool_core is a state machine over a fixed number of slots (max_size). It
// never touches a socket or a clock: the caller feeds it events (a task wants
// a connection, a lease ended, a connect finished, time passed) with the
// current time, and it answers through `pool_actions` (connect slot N, grant
// slot N to waiter W, reject waiter W, wake me at T). pgq::pool drives it with
// Asio and real connections; unit tests drive it with a fake clock and
// scripted outcomes.
#pragma once

#include <pgq/error.hpp>
#include <pgq/pool_stats.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pgq::detail {

using pool_clock = std::chrono::steady_clock;
using pool_time = pool_clock::time_point;

/// Why a pool connection was closed (for statistics).
enum class close_reason { idle, lifetime, broken, health_check, reset_failed, pool_closed };

/// The numbers the pool's decisions depend on.
struct pool_limits {
  std::size_t min_size = 0;
  std::size_t max_size = 10;
  std::chrono::milliseconds acquire_timeout{30000};      ///< 0: wait forever
  std::chrono::milliseconds idle_timeout{600000};        ///< 0: never close idle ones
  std::chrono::milliseconds max_lifetime{3600000};       ///< 0: no limit
  double max_lifetime_jitter = 0.1;                      ///< up to this fraction earlier
  std::chrono::milliseconds health_check_period{30000};  ///< 0: no checks
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{10000};
};

/// What pool_core asks of its driver. Each call is made synchronously from
/// inside an event; the driver reports outcomes later through the matching
/// `on_*` event, never from inside the call.
class pool_actions {
 public:
  virtual ~pool_actions() = default;
  /// Open a connection for `slot`; answer with on_connected().
  virtual void connect(std::size_t slot) = 0;
  /// Make the connection of `slot` clean (drain, roll back); answer with on_reset().
  virtual void reset(std::size_t slot) = 0;
  /// Check that the idle connection of `slot` answers; answer with on_checked().
  virtual void check(std::size_t slot) = 0;
  /// Close the connection of `slot` now.
  virtual void close(std::size_t slot, close_reason why) = 0;
  /// Give `slot` to `waiter`: the waiter's acquire() completes with a lease.
  virtual void grant(std::uint64_t waiter, std::size_t slot) = 0;
  /// Complete `waiter`'s acquire() with an error (pool_timeout, pool_closed).
  virtual void reject(std::uint64_t waiter, errc why, const std::string& message) = 0;
  /// Call on_timer() at `when` (or a little after). A later call replaces an
  /// earlier one; pool_time::max() cancels.
  virtual void wake_at(pool_time when) = 0;
};

using pgq::pool_stats;

/// How a lease ended.
enum class release_kind {
  clean,   ///< idle, no transaction: reusable at once
  dirty,   ///< a transaction or a request may be open: reset before reuse
  broken,  ///< the connection failed (is_fatal): close it
};

class pool_core {
 public:
  /// `random01` returns numbers in [0, 1) for the lifetime jitter.
  pool_core(pool_limits limits, pool_actions& actions, std::function<double()> random01);

  /// A task wants a connection. Granted at once when one is idle, else
  /// queued (FIFO) until `now + acquire_timeout`.
  void acquire(std::uint64_t waiter, pool_time now);
  /// acquire() without a waiter: the slot of an idle connection granted at
  /// once (counted as acquire() counts it), or nullopt when acquire() would
  /// queue (call acquire() then). Calls no action but close() (of expired
  /// idle connections).
  std::optional<std::size_t> try_acquire(pool_time now);
  /// The task stopped waiting (cancellation). Returns false if it was not
  /// waiting (already granted or rejected).
  bool cancel(std::uint64_t waiter);
  /// A lease on `slot` ended.
  void release(std::size_t slot, release_kind kind, pool_time now);
  void on_connected(std::size_t slot, bool ok, pool_time now, const std::string& error = {});
  void on_reset(std::size_t slot, bool ok, pool_time now);
  void on_checked(std::size_t slot, bool ok, pool_time now);
  void on_timer(pool_time now);
  /// Stops granting: waiters are rejected with pool_closed, idle connections
  /// closed, leased ones closed when returned.
  void close();

  bool closed() const noexcept { return closed_; }
  /// True when no connection is open or opening and no lease is out.
  bool drained() const noexcept;
  const pool_stats& stats() const noexcept { return stats_; }
  const pool_limits& limits() const noexcept { return limits_; }

 private:
  enum class slot_state { empty, connecting, idle, leased, resetting, checking };
  struct slot {
    slot_state state = slot_state::empty;
    pool_time created{};
    pool_time expires = pool_time::max();
    pool_time idle_since{};
    pool_time last_checked{};
  };
  struct waiter {
    std::uint64_t id;
    pool_time since;
    pool_time deadline;
  };

  void make_available(std::size_t s, pool_time now);
  std::optional<std::size_t> take_idle(pool_time now);
  void close_slot(std::size_t s, close_reason why);
  void grow(pool_time now);
  void schedule(pool_time now);
  void refresh_gauges();
  std::size_t count(slot_state st) const noexcept;

  pool_limits limits_;
  pool_actions& actions_;
  std::function<double()> random01_;
  std::vector<slot> slots_;
  std::deque<waiter> waiters_;
  pool_stats stats_;
  bool closed_ = false;
  std::chrono::milliseconds backoff_{0};
  pool_time retry_after_{};
  std::string last_connect_error_;
};

}  // namespace pgq::detail
