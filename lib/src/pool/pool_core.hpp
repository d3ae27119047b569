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
#include <string_view>
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
  /// Independent statements one connection may run at once when shared
  /// (acquire_shared()); 0 or 1: no sharing, acquire_shared() is acquire().
  std::size_t share_depth = 0;
  /// A shared connection whose oldest statement has run this long takes no
  /// more (it is probably stuck behind a slow one); 0: no limit.
  std::chrono::milliseconds share_stall{0};
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

/// Whether `sql` may share a connection with other tasks' statements: it
/// cannot change the transaction state (classify_statement() says
/// stmt_kind::other: no BEGIN, COMMIT, SAVEPOINT...), is no COPY, and starts
/// with none of the words of statements that change the session for the
/// statements after it or need one (SET, RESET, DISCARD, LISTEN, UNLISTEN,
/// PREPARE, DEALLOCATE, DECLARE, FETCH, MOVE, CLOSE, LOCK, LOAD, CALL, DO).
/// Functions called by a statement (set_config(), pg_advisory_lock()) are
/// not seen.
bool shareable_statement(std::string_view sql) noexcept;

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
  /// A task wants to run one independent statement (it changes no session or
  /// transaction state): it may share a connection with others like it.
  /// `id` names this use until release_shared(). Granted at once to the open
  /// connection with the fewest statements in flight that takes shared work
  /// (idle, or shared by fewer than share_depth and none of them older than
  /// share_stall), else queued with the exclusive acquirers, in one FIFO.
  /// Grow first, share when full: a busy connection is joined only when the
  /// pool cannot open another now (max_size reached, or connects backing
  /// off); otherwise the statement waits for a new connection, as an
  /// exclusive acquirer does.
  void acquire_shared(std::uint64_t id, pool_time now);
  /// acquire_shared() without queueing: the slot granted at once, or nullopt
  /// (then call acquire_shared()). Calls no action but close() (of expired
  /// idle connections).
  std::optional<std::size_t> try_acquire_shared(std::uint64_t id, pool_time now);
  /// Shared use `id` of `slot` ended. `kind` is what the driver saw of the
  /// connection: broken or dirty stop anyone else from joining it, and the
  /// last user's release then closes or resets it, as release() does.
  void release_shared(std::size_t slot, std::uint64_t id, release_kind kind, pool_time now);
  /// Statements sharing `slot` now (0 when it is not shared).
  std::size_t shared_users(std::size_t slot) const noexcept;
  /// The error of the last failed connect since the last success (empty if none).
  const std::string& last_connect_error() const noexcept { return last_connect_error_; }
  /// The task stopped waiting (cancellation). Returns false if it was not
  /// waiting (already granted or rejected).
  bool cancel(std::uint64_t waiter);
  /// cancel(), then serves the waiters behind it that the cancelled one held
  /// up (a shared acquirer behind an exclusive one may now join a connection).
  bool cancel(std::uint64_t waiter, pool_time now);
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
  enum class slot_state { empty, connecting, idle, leased, shared, resetting, checking };
  struct shared_user {
    std::uint64_t id;
    pool_time since;
  };
  struct slot {
    slot_state state = slot_state::empty;
    pool_time created{};
    pool_time expires = pool_time::max();
    pool_time idle_since{};
    pool_time last_checked{};
    std::vector<shared_user> users;            ///< state shared: who runs statements on it
    release_kind taint = release_kind::clean;  ///< worst release seen while shared
  };
  struct waiter {
    std::uint64_t id;
    pool_time since;
    pool_time deadline;
    bool shared = false;
  };

  bool sharing() const noexcept { return limits_.share_depth > 1; }
  void make_available(std::size_t s, pool_time now);
  void serve(pool_time now);
  void finish_release(std::size_t s, release_kind kind, pool_time now);
  std::optional<std::size_t> take_idle(pool_time now);
  std::optional<std::size_t> pick_idle(pool_time now);
  std::optional<std::size_t> pick_shared(pool_time now);
  void join(std::size_t s, std::uint64_t id, pool_time now);
  void close_slot(std::size_t s, close_reason why);
  void grow(pool_time now);
  /// Another connection could be opened now (a free slot, no backoff).
  bool can_grow(pool_time now) const noexcept;
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
