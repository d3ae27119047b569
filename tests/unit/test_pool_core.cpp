// pool_core driven by scripted events, a fake clock and a recording
// pool_actions: every decision the pool makes is checked without I/O.
#include "pool/pool_core.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using pgq::errc;
using pgq::detail::close_reason;
using pgq::detail::pool_actions;
using pgq::detail::pool_core;
using pgq::detail::pool_limits;
using pgq::detail::pool_stats;
using pgq::detail::pool_time;
using pgq::detail::release_kind;

const pool_time t0 = pool_time{} + std::chrono::hours(1);
constexpr pool_time never = pool_time::max();

enum class act { connect, reset, check, close, grant, reject, wake_at };

/// One call pool_core made on its pool_actions.
struct action {
  act what = act::connect;
  std::size_t slot = 0;
  std::uint64_t waiter = 0;
  close_reason reason = close_reason::idle;
  errc error = errc::pool_timeout;
  std::string message;
  pool_time when{};

  // The reject message is free text: tests look at it on its own.
  friend bool operator==(const action& a, const action& b) {
    return a.what == b.what && a.slot == b.slot && a.waiter == b.waiter && a.reason == b.reason && a.error == b.error &&
           a.when == b.when;
  }
};
using actions = std::vector<action>;

action make_action(act what, std::size_t slot = 0, std::uint64_t waiter = 0) {
  action a;
  a.what = what;
  a.slot = slot;
  a.waiter = waiter;
  return a;
}
action a_connect(std::size_t s) { return make_action(act::connect, s); }
action a_reset(std::size_t s) { return make_action(act::reset, s); }
action a_check(std::size_t s) { return make_action(act::check, s); }
action a_close(std::size_t s, close_reason why) {
  auto a = make_action(act::close, s);
  a.reason = why;
  return a;
}
action a_grant(std::uint64_t w, std::size_t s) { return make_action(act::grant, s, w); }
action a_reject(std::uint64_t w, errc why) {
  auto a = make_action(act::reject, 0, w);
  a.error = why;
  return a;
}

const char* name_of(close_reason why) {
  switch (why) {
    case close_reason::idle: return "idle";
    case close_reason::lifetime: return "lifetime";
    case close_reason::broken: return "broken";
    case close_reason::health_check: return "health_check";
    case close_reason::reset_failed: return "reset_failed";
    case close_reason::pool_closed: return "pool_closed";
  }
  return "?";
}

std::string ms_since_t0(pool_time t) {
  if (t == never) return "never";
  return "t0+" + std::to_string(std::chrono::duration<double, std::milli>(t - t0).count()) + "ms";
}

std::string describe(const action& a) {
  std::ostringstream out;
  switch (a.what) {
    case act::connect: out << "connect(" << a.slot << ")"; break;
    case act::reset: out << "reset(" << a.slot << ")"; break;
    case act::check: out << "check(" << a.slot << ")"; break;
    case act::close: out << "close(" << a.slot << ", " << name_of(a.reason) << ")"; break;
    case act::grant: out << "grant(w" << a.waiter << ", " << a.slot << ")"; break;
    case act::reject:
      out << "reject(w" << a.waiter << ", " << pgq::make_error_code(a.error).message() << ", \"" << a.message << "\")";
      break;
    case act::wake_at: out << "wake_at(" << ms_since_t0(a.when) << ")"; break;
  }
  return out.str();
}

/// pool_actions that records every call, in order.
class recording_actions final : public pool_actions {
 public:
  void connect(std::size_t slot) override { log_.push_back(a_connect(slot)); }
  void reset(std::size_t slot) override { log_.push_back(a_reset(slot)); }
  void check(std::size_t slot) override { log_.push_back(a_check(slot)); }
  void close(std::size_t slot, close_reason why) override { log_.push_back(a_close(slot, why)); }
  void grant(std::uint64_t waiter, std::size_t slot) override { log_.push_back(a_grant(waiter, slot)); }
  void reject(std::uint64_t waiter, errc why, const std::string& message) override {
    auto a = a_reject(waiter, why);
    a.message = message;
    log_.push_back(std::move(a));
  }
  void wake_at(pool_time when) override {
    auto a = make_action(act::wake_at);
    a.when = when;
    log_.push_back(a);
    wake_ = when;
  }

  /// The calls since the last take, without the wake_at ones.
  actions take() {
    actions out;
    for (auto& a : log_)
      if (a.what != act::wake_at) out.push_back(std::move(a));
    log_.clear();
    return out;
  }
  /// The calls since the last take, wake_at included.
  actions take_all() {
    actions out = std::move(log_);
    log_.clear();
    return out;
  }
  /// The time of the latest wake_at (pool_time::max() if never asked).
  pool_time wake() const noexcept { return wake_.value_or(never); }

 private:
  actions log_;
  std::optional<pool_time> wake_;
};

/// The gauges of pool_stats, to compare in one go.
struct gauges {
  std::size_t size = 0;
  std::size_t idle = 0;
  std::size_t in_use = 0;
  std::size_t connecting = 0;
  std::size_t waiting = 0;
  bool operator==(const gauges&) const = default;
};

gauges gauges_of(const pool_stats& s) {
  return {.size = s.size, .idle = s.idle, .in_use = s.in_use, .connecting = s.connecting, .waiting = s.waiting};
}

}  // namespace

namespace Catch {
template <>
struct StringMaker<action> {
  static std::string convert(const action& a) { return describe(a); }
};
template <>
struct StringMaker<gauges> {
  static std::string convert(const gauges& g) {
    std::ostringstream out;
    out << "{size " << g.size << ", idle " << g.idle << ", in_use " << g.in_use << ", connecting " << g.connecting
        << ", waiting " << g.waiting << "}";
    return out.str();
  }
};
}  // namespace Catch

namespace {

/// Limits with every timer switched off, so a test turns on only what it
/// looks at.
pool_limits quiet(std::size_t max_size) {
  pool_limits l;
  l.min_size = 0;
  l.max_size = max_size;
  l.acquire_timeout = 0ms;
  l.idle_timeout = 0ms;
  l.max_lifetime = 0ms;
  l.max_lifetime_jitter = 0.0;
  l.health_check_period = 0ms;
  l.backoff_initial = 100ms;
  l.backoff_max = 10000ms;
  return l;
}

/// A pool_core with its recording actions, a scripted random01 and a clock.
struct harness {
  explicit harness(pool_limits limits) : core(limits, recorder, [this] { return next_random(); }) {}

  double next_random() {
    ++draws;
    if (randoms.empty()) return 0.0;
    const double r = randoms.front();
    randoms.pop_front();
    return r;
  }
  actions take() { return recorder.take(); }
  gauges now_gauges() const { return gauges_of(core.stats()); }

  recording_actions recorder;
  std::deque<double> randoms;  ///< what random01 returns next (then 0.0)
  int draws = 0;
  pool_core core;
  pool_time now = t0;
};

/// Expects exactly one action, a connect, and returns its slot.
std::size_t single_connect(const actions& got) {
  INFO("actions: " << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 1);
  REQUIRE(got[0].what == act::connect);
  return got[0].slot;
}

/// Leases a connection to `waiter` at h.now (opening one if none is idle) and
/// returns its slot.
std::size_t lease(harness& h, std::uint64_t waiter) {
  h.core.acquire(waiter, h.now);
  const auto got = h.take();
  INFO("acquire(w" << waiter << "): " << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 1);
  if (got[0].what == act::grant) {
    REQUIRE(got[0].waiter == waiter);
    return got[0].slot;
  }
  REQUIRE(got[0].what == act::connect);
  const auto s = got[0].slot;
  h.core.on_connected(s, true, h.now);
  REQUIRE(h.take() == actions{a_grant(waiter, s)});
  return s;
}

// Wake times computed with the lifetime jitter go through floating point:
// comparisons with an expiry allow a millisecond either way.
pool_time plus_slack(pool_time t) { return t == never ? never : t + 1ms; }

bool near(pool_time a, pool_time b) { return a - b <= 1ms && b - a <= 1ms; }

}  // namespace

TEST_CASE("pool_core grants an idle connection at once and opens one when none is idle", "[pool]") {
  harness h{quiet(4)};
  h.core.acquire(1, h.now);
  const auto s = single_connect(h.take());
  CHECK(s < 4);
  CHECK(h.now_gauges() == gauges{.connecting = 1, .waiting = 1});

  h.now += 250ms;
  h.core.on_connected(s, true, h.now);
  CHECK(h.take() == actions{a_grant(1, s)});
  CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1});
  CHECK(h.core.stats().created == 1);
  CHECK(h.core.stats().acquires == 1);
  CHECK(h.core.stats().acquire_wait_total == 250ms);

  h.now += 1s;
  h.core.release(s, release_kind::clean, h.now);
  CHECK(h.take().empty());
  CHECK(h.now_gauges() == gauges{.size = 1, .idle = 1});

  h.core.acquire(2, h.now);
  CHECK(h.take() == actions{a_grant(2, s)});
  CHECK(h.core.stats().acquires == 2);
  CHECK(h.core.stats().acquire_wait_total == 250ms);
  CHECK(h.core.stats().created == 1);
  CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1});
  CHECK_FALSE(h.core.drained());
}

TEST_CASE("pool_core try_acquire grants an idle connection and never queues or opens", "[pool]") {
  auto limits = quiet(2);
  limits.max_lifetime = 10s;
  harness h{limits};
  CHECK_FALSE(h.core.try_acquire(h.now).has_value());  // nothing open: acquire() must open one
  CHECK(h.take().empty());
  CHECK(h.now_gauges() == gauges{});

  const auto s = lease(h, 1);
  h.core.release(s, release_kind::clean, h.now);
  const std::optional<std::size_t> got = h.core.try_acquire(h.now);
  REQUIRE(got.has_value());
  CHECK(*got == s);
  CHECK(h.take().empty());
  CHECK(h.core.stats().acquires == 2);
  CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1});
  CHECK_FALSE(h.core.try_acquire(h.now).has_value());  // the only one is leased
  CHECK(h.take().empty());

  // An expired idle connection is closed, not handed out.
  h.core.release(s, release_kind::clean, h.now);
  CHECK_FALSE(h.core.try_acquire(t0 + 11s).has_value());
  CHECK(h.take() == actions{a_close(s, close_reason::lifetime)});
  CHECK(h.now_gauges() == gauges{});

  h.core.close();
  CHECK_FALSE(h.core.try_acquire(h.now).has_value());
}

TEST_CASE("pool_core hands out the most recently idle connection first", "[pool]") {
  harness h{quiet(3)};
  const auto a = lease(h, 1);
  const auto b = lease(h, 2);
  const auto c = lease(h, 3);
  REQUIRE(std::set<std::size_t>{a, b, c}.size() == 3);
  h.now += 1s;
  h.core.release(a, release_kind::clean, h.now);
  h.now += 1s;
  h.core.release(c, release_kind::clean, h.now);
  h.now += 1s;
  h.core.release(b, release_kind::clean, h.now);
  CHECK(h.take().empty());
  CHECK(h.now_gauges() == gauges{.size = 3, .idle = 3});

  h.core.acquire(4, h.now);
  CHECK(h.take() == actions{a_grant(4, b)});
  h.core.acquire(5, h.now);
  CHECK(h.take() == actions{a_grant(5, c)});
  h.core.acquire(6, h.now);
  CHECK(h.take() == actions{a_grant(6, a)});
}

TEST_CASE("pool_core serves waiters in FIFO order", "[pool]") {
  SECTION("as leases are returned") {
    harness h{quiet(1)};
    const auto s = lease(h, 1);
    for (std::uint64_t w = 2; w <= 4; ++w) {
      h.now += 100ms;
      h.core.acquire(w, h.now);
    }
    CHECK(h.take().empty());  // at max_size: nothing to open
    CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1, .waiting = 3});

    h.now = t0 + 1s;
    for (std::uint64_t w = 2; w <= 4; ++w) {
      h.core.release(s, release_kind::clean, h.now);
      CHECK(h.take() == actions{a_grant(w, s)});
    }
    // Waited 900ms, 800ms and 700ms.
    CHECK(h.core.stats().acquire_wait_total == 2400ms);
    CHECK(h.core.stats().acquires == 4);
    h.core.release(s, release_kind::clean, h.now);
    CHECK(h.take().empty());
    CHECK(h.now_gauges() == gauges{.size = 1, .idle = 1});
  }

  SECTION("as connects complete, whichever finishes first") {
    harness h{quiet(3)};
    std::vector<std::size_t> opening;
    for (std::uint64_t w = 1; w <= 3; ++w) {
      h.core.acquire(w, h.now);
      opening.push_back(single_connect(h.take()));
    }
    REQUIRE(std::set<std::size_t>(opening.begin(), opening.end()).size() == 3);
    h.core.on_connected(opening[2], true, h.now);
    CHECK(h.take() == actions{a_grant(1, opening[2])});
    h.core.on_connected(opening[0], true, h.now);
    CHECK(h.take() == actions{a_grant(2, opening[0])});
    h.core.on_connected(opening[1], true, h.now);
    CHECK(h.take() == actions{a_grant(3, opening[1])});
    CHECK(h.now_gauges() == gauges{.size = 3, .in_use = 3});
  }

  SECTION("through a reset") {
    harness h{quiet(1)};
    const auto s = lease(h, 1);
    h.core.acquire(2, h.now);
    h.core.acquire(3, h.now);
    CHECK(h.take().empty());
    h.core.release(s, release_kind::dirty, h.now);
    CHECK(h.take() == actions{a_reset(s)});
    h.core.on_reset(s, true, h.now);
    CHECK(h.take() == actions{a_grant(2, s)});
    CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1, .waiting = 1});
  }
}

TEST_CASE("pool_core never opens more than max_size connections", "[pool]") {
  harness h{quiet(2)};
  for (std::uint64_t w = 1; w <= 5; ++w) h.core.acquire(w, h.now);
  const auto got = h.take();
  REQUIRE(got.size() == 2);
  REQUIRE(got[0].what == act::connect);
  REQUIRE(got[1].what == act::connect);
  const auto x = got[0].slot;
  const auto y = got[1].slot;
  CHECK(x != y);
  CHECK(x < 2);
  CHECK(y < 2);
  CHECK(h.now_gauges() == gauges{.connecting = 2, .waiting = 5});

  h.core.on_connected(x, true, h.now);
  CHECK(h.take() == actions{a_grant(1, x)});
  h.core.on_connected(y, true, h.now);
  CHECK(h.take() == actions{a_grant(2, y)});
  CHECK(h.now_gauges() == gauges{.size = 2, .in_use = 2, .waiting = 3});

  // A broken connection frees a place: exactly one new connect for the waiters.
  h.core.release(x, release_kind::broken, h.now);
  const auto after = h.take();
  REQUIRE(after.size() == 2);
  CHECK(after[0] == a_close(x, close_reason::broken));
  REQUIRE(after[1].what == act::connect);
  CHECK(h.core.stats().closed_broken == 1);
  CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1, .connecting = 1, .waiting = 3});
  h.core.on_connected(after[1].slot, true, h.now);
  CHECK(h.take() == actions{a_grant(3, after[1].slot)});
  CHECK(h.now_gauges() == gauges{.size = 2, .in_use = 2, .waiting = 2});
}

TEST_CASE("pool_core opens connections only while waiters outnumber connects", "[pool]") {
  harness h{quiet(4)};
  h.core.acquire(1, h.now);
  const auto a = single_connect(h.take());
  h.core.acquire(2, h.now);
  const auto b = single_connect(h.take());
  CHECK(a != b);
  h.core.on_connected(a, true, h.now);
  CHECK(h.take() == actions{a_grant(1, a)});  // w2 still has b coming
  CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1, .connecting = 1, .waiting = 1});
  h.core.on_connected(b, true, h.now);
  CHECK(h.take() == actions{a_grant(2, b)});
}

TEST_CASE("pool_core rejects a waiter at its acquire deadline", "[pool]") {
  SECTION("with an acquire_timeout") {
    auto limits = quiet(1);
    limits.acquire_timeout = 1000ms;
    harness h{limits};
    const auto s = lease(h, 1);
    h.core.acquire(2, t0);
    h.core.acquire(3, t0 + 300ms);
    CHECK(h.take().empty());
    CHECK(h.recorder.wake() == t0 + 1000ms);

    h.core.on_timer(t0 + 999ms);
    CHECK(h.take().empty());
    h.core.on_timer(t0 + 1000ms);
    const auto got = h.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0] == a_reject(2, errc::pool_timeout));
    CHECK(h.core.stats().timeouts == 1);
    CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1, .waiting = 1});
    CHECK(h.recorder.wake() == t0 + 1300ms);
    CHECK_FALSE(h.core.cancel(2));

    h.core.release(s, release_kind::clean, t0 + 1100ms);
    CHECK(h.take() == actions{a_grant(3, s)});
    h.core.on_timer(t0 + 1200ms);
    CHECK(h.take().empty());
    CHECK(h.recorder.wake() == never);
    CHECK(h.core.stats().timeouts == 1);
  }

  SECTION("a zero acquire_timeout waits forever") {
    harness h{quiet(1)};
    const auto s = lease(h, 1);
    h.core.acquire(2, t0);
    h.core.on_timer(t0 + 24h);
    CHECK(h.take().empty());
    CHECK(h.recorder.wake() == never);
    CHECK(h.core.stats().timeouts == 0);
    h.core.release(s, release_kind::clean, t0 + 25h);
    CHECK(h.take() == actions{a_grant(2, s)});
  }
}

TEST_CASE("pool_core's timeout names the last connect error", "[pool]") {
  auto limits = quiet(1);
  limits.acquire_timeout = 1000ms;
  limits.backoff_initial = 5000ms;
  limits.backoff_max = 5000ms;
  harness h{limits};
  h.core.acquire(1, t0);
  const auto s = single_connect(h.take());
  h.core.on_connected(s, false, t0 + 100ms, "could not connect to server: Connection refused");
  CHECK(h.take().empty());
  CHECK(h.core.stats().connect_failures == 1);
  CHECK(h.now_gauges() == gauges{.waiting = 1});
  CHECK(h.recorder.wake() == t0 + 1000ms);  // the deadline comes before the retry

  h.core.on_timer(t0 + 1000ms);
  const auto got = h.take();
  REQUIRE(got.size() == 1);
  CHECK(got[0] == a_reject(1, errc::pool_timeout));
  CHECK_THAT(got[0].message, Catch::Contains("Connection refused"));
  CHECK(h.recorder.wake() == never);  // nobody needs a connection any more
}

TEST_CASE("pool_core cancels a waiting acquire", "[pool]") {
  harness h{quiet(2)};
  h.core.acquire(1, h.now);
  const auto s = single_connect(h.take());
  CHECK(h.core.cancel(1));
  CHECK(h.core.stats().cancelled_waits == 1);
  CHECK(h.now_gauges() == gauges{.connecting = 1});
  CHECK_FALSE(h.core.cancel(1));
  CHECK_FALSE(h.core.cancel(99));
  CHECK(h.core.stats().cancelled_waits == 1);

  SECTION("the connect started for it ends in an idle connection") {
    h.core.on_connected(s, true, h.now);
    CHECK(h.take().empty());
    CHECK(h.now_gauges() == gauges{.size = 1, .idle = 1});
    CHECK(h.core.stats().created == 1);
  }

  SECTION("a later waiter takes over the connect in flight") {
    h.core.acquire(2, h.now);
    CHECK(h.take().empty());
    h.core.on_connected(s, true, h.now);
    CHECK(h.take() == actions{a_grant(2, s)});
    CHECK_FALSE(h.core.cancel(2));
    CHECK(h.core.stats().cancelled_waits == 1);
  }
}

TEST_CASE("pool_core backs off after failed connects, doubling up to backoff_max", "[pool]") {
  SECTION("retries wait 100, 200, 400, 500, 500 ms, and a success resets the backoff") {
    auto limits = quiet(1);
    limits.backoff_initial = 100ms;
    limits.backoff_max = 500ms;
    harness h{limits};
    h.core.acquire(1, h.now);
    auto s = single_connect(h.take());
    for (const auto backoff : {100ms, 200ms, 400ms, 500ms, 500ms}) {
      INFO("backoff " << backoff.count() << "ms");
      h.core.on_connected(s, false, h.now, "refused");
      CHECK(h.take().empty());
      CHECK(h.recorder.wake() == h.now + backoff);
      h.core.on_timer(h.now + backoff - 1ms);
      CHECK(h.take().empty());
      h.now += backoff;
      h.core.on_timer(h.now);
      s = single_connect(h.take());
    }
    CHECK(h.core.stats().connect_failures == 5);
    CHECK(h.now_gauges() == gauges{.connecting = 1, .waiting = 1});

    h.core.on_connected(s, true, h.now);
    CHECK(h.take() == actions{a_grant(1, s)});
    h.core.release(s, release_kind::broken, h.now);
    CHECK(h.take() == actions{a_close(s, close_reason::broken)});
    h.core.acquire(2, h.now);
    s = single_connect(h.take());
    h.core.on_connected(s, false, h.now, "refused");
    CHECK(h.take().empty());
    CHECK(h.recorder.wake() == h.now + 100ms);
  }

  SECTION("no connect before the retry time, even for new waiters") {
    harness h{quiet(3)};
    h.core.acquire(1, t0);
    const auto s = single_connect(h.take());
    h.core.on_connected(s, false, t0, "refused");
    h.core.acquire(2, t0 + 50ms);
    CHECK(h.take().empty());
    CHECK(h.now_gauges() == gauges{.waiting = 2});
    CHECK(h.recorder.wake() == t0 + 100ms);
    h.core.on_timer(t0 + 100ms);
    const auto got = h.take();
    REQUIRE(got.size() == 2);
    CHECK(got[0].what == act::connect);
    CHECK(got[1].what == act::connect);
    CHECK(got[0].slot != got[1].slot);
  }
}

TEST_CASE("pool_core opens a connection for a waiter left over after a backoff ends in a success", "[pool]") {
  harness h{quiet(2)};
  h.core.acquire(1, t0);
  const auto a = single_connect(h.take());
  h.core.acquire(2, t0);
  const auto b = single_connect(h.take());
  h.core.on_connected(a, false, t0, "refused");
  CHECK(h.take().empty());
  h.core.on_connected(b, true, t0 + 10ms);
  const auto got = h.take();
  REQUIRE_FALSE(got.empty());
  CHECK(got[0] == a_grant(1, b));
  // w2 still waits and the pool has room: it must connect now, or ask to be
  // woken no later than the end of the backoff and connect then.
  if (got.size() == 1) {
    INFO("wake_at " << ms_since_t0(h.recorder.wake()));
    REQUIRE(h.recorder.wake() <= t0 + 100ms);
    h.core.on_timer(std::max(h.recorder.wake(), t0 + 10ms));
    single_connect(h.take());
  } else {
    CHECK(got.size() == 2);
    CHECK(got[1].what == act::connect);
  }
  CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1, .connecting = 1, .waiting = 1});
}

TEST_CASE("pool_core keeps min_size connections open", "[pool]") {
  auto limits = quiet(4);
  limits.min_size = 2;
  limits.idle_timeout = 1000ms;
  harness h{limits};
  h.core.on_timer(t0);  // the driver starts the pool with a timer event
  const auto first = h.take();
  REQUIRE(first.size() == 2);
  REQUIRE(first[0].what == act::connect);
  REQUIRE(first[1].what == act::connect);
  const auto a = first[0].slot;
  const auto b = first[1].slot;
  CHECK(a != b);
  CHECK(h.now_gauges() == gauges{.connecting = 2});

  h.core.on_connected(a, true, t0);
  CHECK(h.take().empty());
  h.core.on_connected(b, false, t0, "refused");
  CHECK(h.take().empty());
  CHECK(h.recorder.wake() == t0 + 100ms);
  h.core.on_timer(t0 + 99ms);
  CHECK(h.take().empty());
  h.core.on_timer(t0 + 100ms);
  const auto c = single_connect(h.take());
  h.core.on_connected(c, true, t0 + 100ms);
  CHECK(h.take().empty());
  CHECK(h.now_gauges() == gauges{.size = 2, .idle = 2});

  // Three leases make three connections; above min_size one is closed when idle.
  h.now = t0 + 200ms;
  std::vector<std::size_t> leased;
  for (std::uint64_t w = 1; w <= 3; ++w) leased.push_back(lease(h, w));
  for (auto s : leased) h.core.release(s, release_kind::clean, h.now);
  CHECK(h.take().empty());
  CHECK(h.now_gauges() == gauges{.size = 3, .idle = 3});
  h.core.on_timer(t0 + 1199ms);
  CHECK(h.take().empty());
  h.core.on_timer(t0 + 1201ms);
  const auto closed = h.take();
  REQUIRE(closed.size() == 1);
  CHECK(closed[0].what == act::close);
  CHECK(closed[0].reason == close_reason::idle);
  CHECK(h.core.stats().closed_idle == 1);
  CHECK(h.now_gauges() == gauges{.size = 2, .idle = 2});
  h.core.on_timer(t0 + 1h);
  CHECK(h.take().empty());
  CHECK(h.now_gauges() == gauges{.size = 2, .idle = 2});

  // Losing one of the min_size connections opens a new one with no waiter.
  h.now = t0 + 2h;
  const auto s = lease(h, 4);
  h.core.release(s, release_kind::broken, h.now);
  const auto replaced = h.take();
  REQUIRE(replaced.size() == 2);
  CHECK(replaced[0] == a_close(s, close_reason::broken));
  CHECK(replaced[1].what == act::connect);
  CHECK(h.now_gauges() == gauges{.size = 1, .idle = 1, .connecting = 1});
}

TEST_CASE("pool_core closes connections idle longer than idle_timeout", "[pool]") {
  auto limits = quiet(2);
  limits.idle_timeout = 1000ms;
  harness h{limits};
  const auto s = lease(h, 1);

  SECTION("an idle one") {
    h.core.release(s, release_kind::clean, t0 + 500ms);
    CHECK(h.recorder.wake() >= t0 + 1500ms);
    CHECK(h.recorder.wake() <= t0 + 1501ms);
    h.core.on_timer(t0 + 1499ms);
    CHECK(h.take().empty());
    h.core.on_timer(t0 + 1501ms);
    CHECK(h.take() == actions{a_close(s, close_reason::idle)});
    CHECK(h.core.stats().closed_idle == 1);
    CHECK(h.now_gauges() == gauges{});
    CHECK(h.core.drained());
    CHECK(h.recorder.wake() == never);
  }

  SECTION("never a leased one") {
    h.core.on_timer(t0 + 1h);
    CHECK(h.take().empty());
    CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1});
  }
}

TEST_CASE("pool_core retires connections after max_lifetime minus jitter", "[pool]") {
  auto limits = quiet(2);
  limits.max_lifetime = 10s;
  limits.max_lifetime_jitter = 0.2;

  SECTION("an idle connection closes when its lifetime ends") {
    harness h{limits};
    h.randoms = {0.5};  // 10s * (1 - 0.2 * 0.5) = 9s
    const auto s = lease(h, 1);
    CHECK(h.draws == 1);
    h.core.release(s, release_kind::clean, t0 + 1s);
    CHECK(near(h.recorder.wake(), t0 + 9s));
    h.core.on_timer(t0 + 8999ms);
    CHECK(h.take().empty());
    h.core.on_timer(t0 + 9001ms);
    CHECK(h.take() == actions{a_close(s, close_reason::lifetime)});
    CHECK(h.core.stats().closed_lifetime == 1);
    CHECK(h.now_gauges() == gauges{});
  }

  SECTION("a connection returned after its lifetime is closed") {
    harness h{limits};
    h.randoms = {0.5};
    const auto s = lease(h, 1);
    h.core.release(s, release_kind::clean, t0 + 8999ms);
    CHECK(h.take().empty());  // still young enough
    h.core.acquire(2, t0 + 8999ms);
    CHECK(h.take() == actions{a_grant(2, s)});
    h.core.release(s, release_kind::clean, t0 + 9001ms);
    CHECK(h.take() == actions{a_close(s, close_reason::lifetime)});
    CHECK(h.now_gauges() == gauges{});
  }

  SECTION("a waiter gets a new connection when an old one is retired") {
    auto one = limits;
    one.max_size = 1;
    harness h{one};
    h.randoms = {0.5};
    const auto s = lease(h, 1);
    h.core.acquire(2, t0 + 1s);
    CHECK(h.take().empty());
    h.core.release(s, release_kind::clean, t0 + 9001ms);
    const auto got = h.take();
    REQUIRE(got.size() == 2);
    CHECK(got[0] == a_close(s, close_reason::lifetime));
    REQUIRE(got[1].what == act::connect);
    h.core.on_connected(got[1].slot, true, t0 + 9002ms);
    CHECK(h.take() == actions{a_grant(2, got[1].slot)});
  }

  SECTION("acquire skips an expired idle connection and takes another") {
    harness h{limits};
    h.randoms = {0.0, 0.99};  // lifetimes 10s and 8.02s
    const auto a = lease(h, 1);
    const auto b = lease(h, 2);
    REQUIRE(a != b);
    CHECK(h.draws == 2);
    h.core.release(a, release_kind::clean, t0 + 1s);
    h.core.release(b, release_kind::clean, t0 + 2s);  // b is the most recently idle
    CHECK(h.take().empty());
    h.core.acquire(3, t0 + 8500ms);
    CHECK(h.take() == actions{a_close(b, close_reason::lifetime), a_grant(3, a)});
    CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1});
  }

  SECTION("max_lifetime 0 never retires a connection") {
    auto forever = limits;
    forever.max_lifetime = 0ms;
    harness h{forever};
    const auto s = lease(h, 1);
    h.core.release(s, release_kind::clean, t0 + 1000h);
    h.core.on_timer(t0 + 1001h);
    CHECK(h.take().empty());
    CHECK(h.recorder.wake() == never);
    h.core.acquire(2, t0 + 1002h);
    CHECK(h.take() == actions{a_grant(2, s)});
  }
}

TEST_CASE("pool_core checks idle connections every health_check_period", "[pool]") {
  auto limits = quiet(1);
  limits.health_check_period = 1000ms;
  harness h{limits};
  const auto s = lease(h, 1);
  h.core.release(s, release_kind::clean, t0);
  h.core.on_timer(t0 + 999ms);
  CHECK(h.take().empty());
  h.core.on_timer(t0 + 1000ms);
  CHECK(h.take() == actions{a_check(s)});
  CHECK(h.now_gauges() == gauges{.size = 1});

  SECTION("a connection that answers goes back to the pool and is checked again later") {
    h.core.on_checked(s, true, t0 + 1010ms);
    CHECK(h.take().empty());
    CHECK(h.now_gauges() == gauges{.size = 1, .idle = 1});
    h.core.on_timer(t0 + 1500ms);
    CHECK(h.take().empty());
    h.core.on_timer(t0 + 2020ms);
    CHECK(h.take() == actions{a_check(s)});
  }

  SECTION("a waiter that arrives during the check gets the connection") {
    h.core.acquire(2, t0 + 1005ms);
    CHECK(h.take().empty());
    h.core.on_checked(s, true, t0 + 1010ms);
    CHECK(h.take() == actions{a_grant(2, s)});
    CHECK(h.core.stats().acquire_wait_total == 5ms);
    CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1});
  }

  SECTION("a connection that fails is closed and replaced for a waiter") {
    h.core.acquire(2, t0 + 1005ms);
    h.core.on_checked(s, false, t0 + 1010ms);
    const auto got = h.take();
    REQUIRE(got.size() == 2);
    CHECK(got[0] == a_close(s, close_reason::health_check));
    CHECK(got[1].what == act::connect);
    CHECK(h.core.stats().closed_health_check == 1);
    CHECK(h.now_gauges() == gauges{.connecting = 1, .waiting = 1});
  }

  SECTION("a connection that fails with nobody waiting is just closed") {
    h.core.on_checked(s, false, t0 + 1010ms);
    CHECK(h.take() == actions{a_close(s, close_reason::health_check)});
    CHECK(h.now_gauges() == gauges{});
    CHECK(h.core.drained());
  }

  SECTION("a leased connection is not checked") {
    h.core.on_checked(s, true, t0 + 1010ms);
    h.core.acquire(2, t0 + 1020ms);
    CHECK(h.take() == actions{a_grant(2, s)});
    h.core.on_timer(t0 + 1h);
    CHECK(h.take().empty());
  }
}

TEST_CASE("pool_core health checks do not restart the idle timer", "[pool]") {
  auto limits = quiet(1);
  limits.health_check_period = 1000ms;
  limits.idle_timeout = 2500ms;
  harness h{limits};
  const auto s = lease(h, 1);
  h.core.release(s, release_kind::clean, t0);
  h.core.on_timer(t0 + 1000ms);
  CHECK(h.take() == actions{a_check(s)});
  h.core.on_checked(s, true, t0 + 1000ms);
  h.core.on_timer(t0 + 2000ms);
  CHECK(h.take() == actions{a_check(s)});
  h.core.on_checked(s, true, t0 + 2000ms);
  CHECK(h.take().empty());
  h.core.on_timer(t0 + 2600ms);
  CHECK(h.take() == actions{a_close(s, close_reason::idle)});
  CHECK(h.core.stats().closed_idle == 1);
}

TEST_CASE("pool_core resets connections returned dirty", "[pool]") {
  harness h{quiet(1)};
  const auto s = lease(h, 1);
  h.core.release(s, release_kind::dirty, h.now);
  CHECK(h.take() == actions{a_reset(s)});
  CHECK(h.core.stats().resets == 1);
  CHECK(h.now_gauges() == gauges{.size = 1});

  SECTION("a clean reset makes it idle") {
    h.core.on_reset(s, true, h.now);
    CHECK(h.take().empty());
    CHECK(h.now_gauges() == gauges{.size = 1, .idle = 1});
    h.core.acquire(2, h.now);
    CHECK(h.take() == actions{a_grant(2, s)});
  }

  SECTION("a clean reset goes to the first waiter") {
    h.core.acquire(2, h.now);
    h.core.acquire(3, h.now);
    CHECK(h.take().empty());
    h.core.on_reset(s, true, h.now);
    CHECK(h.take() == actions{a_grant(2, s)});
  }

  SECTION("a failed reset closes it and a waiter gets a new connection") {
    h.core.acquire(2, h.now);
    h.core.on_reset(s, false, h.now);
    const auto got = h.take();
    REQUIRE(got.size() == 2);
    CHECK(got[0] == a_close(s, close_reason::reset_failed));
    REQUIRE(got[1].what == act::connect);
    CHECK(h.core.stats().closed_reset_failed == 1);
    h.core.on_connected(got[1].slot, true, h.now);
    CHECK(h.take() == actions{a_grant(2, got[1].slot)});
  }

  SECTION("a failed reset with nobody waiting just closes") {
    h.core.on_reset(s, false, h.now);
    CHECK(h.take() == actions{a_close(s, close_reason::reset_failed)});
    CHECK(h.now_gauges() == gauges{});
    CHECK(h.core.drained());
  }
}

TEST_CASE("pool_core closes connections returned broken", "[pool]") {
  harness h{quiet(1)};
  const auto s = lease(h, 1);

  SECTION("and opens a fresh one for a waiter") {
    h.core.acquire(2, h.now);
    h.core.release(s, release_kind::broken, h.now);
    const auto got = h.take();
    REQUIRE(got.size() == 2);
    CHECK(got[0] == a_close(s, close_reason::broken));
    REQUIRE(got[1].what == act::connect);
    h.core.on_connected(got[1].slot, true, h.now);
    CHECK(h.take() == actions{a_grant(2, got[1].slot)});
  }

  SECTION("and nothing else when nobody waits") {
    h.core.release(s, release_kind::broken, h.now);
    CHECK(h.take() == actions{a_close(s, close_reason::broken)});
    CHECK(h.core.stats().closed_broken == 1);
    CHECK(h.core.drained());
  }
}

TEST_CASE("pool_core close rejects waiters and closes leased connections when returned", "[pool]") {
  harness h{quiet(2)};
  const auto a = lease(h, 1);
  const auto b = lease(h, 2);
  h.core.acquire(3, h.now);
  h.core.acquire(4, h.now);
  CHECK(h.take().empty());

  h.core.close();
  CHECK(h.core.closed());
  const auto got = h.take();
  REQUIRE(got.size() == 2);
  CHECK(got[0].error == errc::pool_closed);
  CHECK(got[1].error == errc::pool_closed);
  CHECK(std::set<std::uint64_t>{got[0].waiter, got[1].waiter} == std::set<std::uint64_t>{3, 4});
  CHECK(h.now_gauges() == gauges{.size = 2, .in_use = 2});
  CHECK_FALSE(h.core.drained());

  h.core.acquire(5, h.now);
  CHECK(h.take() == actions{a_reject(5, errc::pool_closed)});
  CHECK_FALSE(h.core.cancel(3));

  h.core.release(a, release_kind::clean, h.now);
  CHECK(h.take() == actions{a_close(a, close_reason::pool_closed)});
  CHECK_FALSE(h.core.drained());
  h.core.release(b, release_kind::clean, h.now);
  CHECK(h.take() == actions{a_close(b, close_reason::pool_closed)});
  CHECK(h.core.drained());
  CHECK(h.core.stats().closed_pool_closed == 2);
  CHECK(h.now_gauges() == gauges{});
  h.core.on_timer(h.now + 1s);
  CHECK(h.take().empty());
}

TEST_CASE("pool_core close closes idle connections at once and opening ones when they finish", "[pool]") {
  auto limits = quiet(3);
  limits.min_size = 2;
  harness h{limits};
  h.core.on_timer(t0);
  const auto got = h.take();
  REQUIRE(got.size() == 2);
  const auto a = got[0].slot;
  const auto b = got[1].slot;
  h.core.on_connected(a, true, t0);
  CHECK(h.take().empty());
  h.core.close();
  CHECK(h.take() == actions{a_close(a, close_reason::pool_closed)});
  CHECK(h.now_gauges() == gauges{.connecting = 1});
  CHECK_FALSE(h.core.drained());

  SECTION("a connect that succeeds") {
    h.core.on_connected(b, true, t0 + 10ms);
    CHECK(h.take() == actions{a_close(b, close_reason::pool_closed)});
  }
  SECTION("a connect that fails") {
    h.core.on_connected(b, false, t0 + 10ms, "refused");
    CHECK(h.take().empty());
  }
  CHECK(h.core.drained());
  CHECK(h.now_gauges() == gauges{});
  h.core.on_timer(t0 + 1h);  // min_size is not kept any more
  CHECK(h.take().empty());
}

TEST_CASE("pool_core close during a reset or a check closes the connection when it answers", "[pool]") {
  auto limits = quiet(1);
  limits.health_check_period = 1000ms;
  harness h{limits};
  const auto s = lease(h, 1);

  SECTION("a reset") {
    h.core.release(s, release_kind::dirty, t0);
    CHECK(h.take() == actions{a_reset(s)});
    h.core.close();
    CHECK(h.take().empty());
    CHECK_FALSE(h.core.drained());
    h.core.on_reset(s, true, t0 + 10ms);
  }
  SECTION("a check") {
    h.core.release(s, release_kind::clean, t0);
    h.core.on_timer(t0 + 1000ms);
    CHECK(h.take() == actions{a_check(s)});
    h.core.close();
    CHECK(h.take().empty());
    CHECK_FALSE(h.core.drained());
    h.core.on_checked(s, true, t0 + 1010ms);
  }
  CHECK(h.take() == actions{a_close(s, close_reason::pool_closed)});
  CHECK(h.core.drained());
}

TEST_CASE("pool_core asks for no wake-up when nothing is due", "[pool]") {
  harness h{pool_limits{}};
  h.core.on_timer(t0);
  CHECK(h.take().empty());
  CHECK(h.recorder.wake() == never);
  CHECK(h.core.drained());
  CHECK(h.now_gauges() == gauges{});
}

// ---------------------------------------------------------------------------
// Property test: random events against a model of the pool.

namespace {

enum class ev { acquire, cancel, release, connected, reset_done, checked, timer, close };

struct event {
  ev what = ev::timer;
  std::uint64_t waiter = 0;
  std::size_t slot = 0;
  release_kind kind = release_kind::clean;
  bool ok = true;
};

std::string describe(const event& e, pool_time now) {
  std::ostringstream out;
  const auto at = ms_since_t0(now);
  switch (e.what) {
    case ev::acquire: out << "acquire(w" << e.waiter << ", " << at << ")"; break;
    case ev::cancel: out << "cancel(w" << e.waiter << ")"; break;
    case ev::release: {
      const char* kinds[] = {"clean", "dirty", "broken"};
      out << "release(" << e.slot << ", " << kinds[static_cast<int>(e.kind)] << ", " << at << ")";
      break;
    }
    case ev::connected: out << "on_connected(" << e.slot << ", " << e.ok << ", " << at << ")"; break;
    case ev::reset_done: out << "on_reset(" << e.slot << ", " << e.ok << ", " << at << ")"; break;
    case ev::checked: out << "on_checked(" << e.slot << ", " << e.ok << ", " << at << ")"; break;
    case ev::timer: out << "on_timer(" << at << ")"; break;
    case ev::close: out << "close()"; break;
  }
  return out.str();
}

/// Drives a pool_core with random events like its driver would (on_timer at
/// each requested wake-up) and checks every action it takes against a model
/// of the rules, and its stats against the model's counts.
class simulation {
 public:
  simulation(pool_limits limits, unsigned seed)
      : limits_(limits),
        rng_(seed),
        jitter_rng_(seed * 7919u + 1u),
        core_(limits, recorder_, [this] { return draw(); }),
        slots_(limits.max_size) {}

  void run(int steps, bool close_midway) {
    step(event{.what = ev::timer});  // the driver starts the pool with a timer event
    for (int i = 0; i < steps; ++i) {
      step_ = i;
      advance_time();
      if (close_midway && i == steps * 3 / 4) {
        step(event{.what = ev::close});
        continue;
      }
      step(pick_event());
    }
    if (!closed_) step(event{.what = ev::close});
    drain();
  }

  std::uint64_t grants() const noexcept { return acquires_; }
  std::uint64_t timeouts() const noexcept { return timeouts_; }

 private:
  enum class state { empty, connecting, idle, leased, resetting, checking, returned };
  struct slot {
    state st = state::empty;
    pool_time idle_since{};
    pool_time expires = never;
    pool_time last_checked{};
    bool closed_now = false;
    bool reset_now = false;
  };
  struct waiter {
    std::uint64_t id;
    pool_time since;
  };

  double draw() {
    const double r = std::uniform_real_distribution<double>(0.0, 1.0)(jitter_rng_);
    draws_.push_back(r);
    return r;
  }

  std::size_t count(state st) const {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(), [st](const slot& s) { return s.st == st; }));
  }
  std::size_t open() const {
    return count(state::idle) + count(state::leased) + count(state::resetting) + count(state::checking) +
           count(state::returned);
  }
  std::size_t connecting() const { return count(state::connecting); }

  std::vector<std::size_t> slots_in(state st) const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].st == st) out.push_back(i);
    return out;
  }

  template <class T>
  T pick(const std::vector<T>& from) {
    return from[std::uniform_int_distribution<std::size_t>(0, from.size() - 1)(rng_)];
  }
  int percent() { return std::uniform_int_distribution<int>(0, 99)(rng_); }

  // The driver fires on_timer at each wake-up it was asked for.
  void advance_time() {
    const int roll = percent();
    std::chrono::milliseconds dt{0};
    if (roll >= 40 && roll < 80) dt = std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 200)(rng_));
    if (roll >= 80) dt = std::chrono::milliseconds(std::uniform_int_distribution<int>(200, 3000)(rng_));
    const auto target = now_ + dt;
    for (int i = 0; recorder_.wake() <= target; ++i) {
      INFO("the pool keeps asking to be woken at " << ms_since_t0(recorder_.wake()) << " while time is "
                                                   << ms_since_t0(now_));
      REQUIRE(i < 1000);
      now_ = std::max(now_, recorder_.wake());
      step(event{.what = ev::timer});
    }
    now_ = target;
  }

  event pick_event() {
    const int roll = percent();
    if (roll < 22) return event{.what = ev::acquire, .waiter = next_waiter_++};
    if (roll < 27) {
      const int which = percent();
      std::uint64_t w = next_waiter_ + 1000000;  // never used
      if (which < 60 && !queue_.empty()) w = pick(std::vector<waiter>(queue_.begin(), queue_.end())).id;
      else if (which < 80 && next_waiter_ > 1)
        w = std::uniform_int_distribution<std::uint64_t>(1, next_waiter_ - 1)(rng_);
      return event{.what = ev::cancel, .waiter = w};
    }
    if (roll < 47 && count(state::leased) > 0) {
      const int k = percent();
      const auto kind = k < 60 ? release_kind::clean : k < 85 ? release_kind::dirty : release_kind::broken;
      return event{.what = ev::release, .slot = pick(slots_in(state::leased)), .kind = kind};
    }
    if (roll < 67 && connecting() > 0)
      return event{.what = ev::connected, .slot = pick(slots_in(state::connecting)), .ok = percent() < 75};
    if (roll < 75 && count(state::resetting) > 0)
      return event{.what = ev::reset_done, .slot = pick(slots_in(state::resetting)), .ok = percent() < 80};
    if (roll < 83 && count(state::checking) > 0)
      return event{.what = ev::checked, .slot = pick(slots_in(state::checking)), .ok = percent() < 80};
    return event{.what = ev::timer};
  }

  // After close, everything still out comes back, and the pool drains.
  void drain() {
    for (int round = 0; open() + connecting() > 0; ++round) {
      REQUIRE(round < 10);
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        switch (slots_[i].st) {
          case state::leased: step(event{.what = ev::release, .slot = i, .kind = release_kind::clean}); break;
          case state::connecting: step(event{.what = ev::connected, .slot = i, .ok = percent() < 50}); break;
          case state::resetting: step(event{.what = ev::reset_done, .slot = i, .ok = true}); break;
          case state::checking: step(event{.what = ev::checked, .slot = i, .ok = true}); break;
          default: break;
        }
      }
    }
    CHECK(core_.drained());
    CHECK(gauges_of(core_.stats()) == gauges{});
  }

  void step(const event& e) {
    const auto text = describe(e, now_);
    history_.push_back(text);
    if (history_.size() > 8) history_.pop_front();
    std::string recent;
    for (const auto& h : history_) recent += "\n  " + h;
    INFO("step " << step_ << ", last events:" << recent);

    before(e);
    draws_.clear();
    bool cancelled = false;
    switch (e.what) {
      case ev::acquire: core_.acquire(e.waiter, now_); break;
      case ev::cancel: cancelled = core_.cancel(e.waiter); break;
      case ev::release: core_.release(e.slot, e.kind, now_); break;
      case ev::connected: core_.on_connected(e.slot, e.ok, now_, e.ok ? "" : "connection refused #" + text); break;
      case ev::reset_done: core_.on_reset(e.slot, e.ok, now_); break;
      case ev::checked: core_.on_checked(e.slot, e.ok, now_); break;
      case ev::timer: core_.on_timer(now_); break;
      case ev::close: core_.close(); break;
    }
    if (e.what == ev::connected && e.ok) {
      auto& s = slots_[e.slot];
      if (limits_.max_lifetime.count() > 0) {
        const double r = draws_.empty() ? 0.0 : draws_.back();
        const double ns = std::chrono::duration<double, std::nano>(limits_.max_lifetime).count() *
                          (1.0 - limits_.max_lifetime_jitter * r);
        s.expires = now_ + std::chrono::nanoseconds(std::llround(ns));
      }
    }
    const auto got = recorder_.take_all();
    INFO("actions: " << Catch::Detail::stringify(got));
    for (const auto& a : got) apply(a, e);
    after(e, cancelled);
  }

  void before(const event& e) {
    rejected_now_.clear();
    expires_before_ = e.what == ev::release ? slots_[e.slot].expires : never;
    for (auto& s : slots_) s.closed_now = s.reset_now = false;
    switch (e.what) {
      case ev::acquire:
        if (!closed_) queue_.push_back({e.waiter, now_});
        break;
      case ev::cancel: {
        auto it = std::find_if(queue_.begin(), queue_.end(), [&](const waiter& w) { return w.id == e.waiter; });
        expect_cancel_ = it != queue_.end();
        if (expect_cancel_) {
          queue_.erase(it);
          ++cancelled_;
        }
        break;
      }
      case ev::release:
        REQUIRE(slots_[e.slot].st == state::leased);
        slots_[e.slot].st = state::returned;
        break;
      case ev::connected: {
        auto& s = slots_[e.slot];
        REQUIRE(s.st == state::connecting);
        if (e.ok) {
          s.st = state::returned;
          s.last_checked = now_;
          s.expires = never;
          if (!closed_) ++created_;
          backoff_ = 0ms;
          retry_lo_ = pool_time{};  // may connect again at once, or keep the old retry time
        } else {
          s.st = state::empty;
          if (!closed_) ++failures_;
          backoff_ = backoff_.count() == 0 ? limits_.backoff_initial : std::min(backoff_ * 2, limits_.backoff_max);
          retry_lo_ = retry_hi_ = now_ + backoff_;
        }
        break;
      }
      case ev::reset_done:
        REQUIRE(slots_[e.slot].st == state::resetting);
        slots_[e.slot].st = state::returned;
        break;
      case ev::checked:
        REQUIRE(slots_[e.slot].st == state::checking);
        slots_[e.slot].st = state::returned;
        break;
      case ev::timer: break;
      case ev::close: closed_ = true; break;
    }
  }

  void apply(const action& a, const event& e) {
    INFO("checking " << describe(a));
    if (a.what == act::wake_at) return;
    if (a.what != act::reject) REQUIRE(a.slot < slots_.size());
    auto& s = slots_[a.what == act::reject ? 0 : a.slot];
    switch (a.what) {
      case act::connect:
        REQUIRE_FALSE(closed_);
        REQUIRE(s.st == state::empty);
        REQUIRE(now_ >= retry_lo_);  // backoff respected
        REQUIRE(open() + connecting() < limits_.max_size);
        REQUIRE((queue_.size() > connecting() || open() + connecting() < limits_.min_size));
        s.st = state::connecting;
        break;
      case act::reset:
        REQUIRE(e.what == ev::release);
        REQUIRE(e.kind == release_kind::dirty);
        REQUIRE(e.slot == a.slot);
        REQUIRE(s.st == state::returned);
        s.st = state::resetting;
        s.reset_now = true;
        ++resets_;
        break;
      case act::check:
        REQUIRE(e.what == ev::timer);
        REQUIRE_FALSE(closed_);
        REQUIRE(s.st == state::idle);
        REQUIRE(limits_.health_check_period.count() > 0);
        REQUIRE(now_ >= s.last_checked + limits_.health_check_period);
        s.st = state::checking;
        s.last_checked = now_;
        break;
      case act::close:
        REQUIRE((s.st == state::idle || s.st == state::returned));
        switch (a.reason) {
          case close_reason::lifetime: REQUIRE(now_ + 1ms >= s.expires); break;
          case close_reason::idle:
            REQUIRE(e.what == ev::timer);
            REQUIRE(s.st == state::idle);
            REQUIRE(limits_.idle_timeout.count() > 0);
            REQUIRE(now_ - s.idle_since >= limits_.idle_timeout);
            REQUIRE(open() > limits_.min_size);
            break;
          case close_reason::broken:
            REQUIRE(e.what == ev::release);
            REQUIRE(e.kind == release_kind::broken);
            REQUIRE(e.slot == a.slot);
            break;
          case close_reason::health_check:
            REQUIRE(e.what == ev::checked);
            REQUIRE_FALSE(e.ok);
            REQUIRE(e.slot == a.slot);
            break;
          case close_reason::reset_failed:
            REQUIRE(e.what == ev::reset_done);
            REQUIRE_FALSE(e.ok);
            REQUIRE(e.slot == a.slot);
            break;
          case close_reason::pool_closed: REQUIRE(closed_); break;
        }
        s.st = state::empty;
        s.expires = never;
        s.closed_now = true;
        ++closes_[static_cast<int>(a.reason)];
        break;
      case act::grant:
        REQUIRE_FALSE(closed_);
        REQUIRE_FALSE(queue_.empty());
        REQUIRE(queue_.front().id == a.waiter);                     // FIFO
        REQUIRE((s.st == state::idle || s.st == state::returned));  // never granted twice
        if (s.st == state::idle) {
          REQUIRE(plus_slack(s.expires) > now_);
          for (std::size_t o = 0; o < slots_.size(); ++o) {
            const auto& other = slots_[o];
            INFO("slot " << o << " is more recently idle");
            if (o != a.slot && other.st == state::idle && other.idle_since > s.idle_since)
              REQUIRE(other.expires <= now_ + 1ms);
          }
        }
        s.st = state::leased;
        wait_total_ += now_ - queue_.front().since;
        ++acquires_;
        queue_.pop_front();
        break;
      case act::reject: {
        auto it = std::find_if(queue_.begin(), queue_.end(), [&](const waiter& w) { return w.id == a.waiter; });
        if (a.error == errc::pool_closed) {
          REQUIRE(closed_);
          if (it == queue_.end()) {
            REQUIRE(e.what == ev::acquire);
            REQUIRE(e.waiter == a.waiter);
          }
        } else {
          REQUIRE(a.error == errc::pool_timeout);
          REQUIRE(e.what == ev::timer);
          REQUIRE(it != queue_.end());
          REQUIRE(limits_.acquire_timeout.count() > 0);
          REQUIRE(now_ >= it->since + limits_.acquire_timeout);
          ++timeouts_;
        }
        if (it != queue_.end()) queue_.erase(it);
        rejected_now_.insert(a.waiter);
        break;
      }
      case act::wake_at: break;
    }
  }

  void after(const event& e, bool cancelled) {
    // What each kind of event must have done to its slot.
    if (e.what == ev::release) {
      const auto& s = slots_[e.slot];
      const auto expires = expires_before_;
      if (closed_) {
        REQUIRE((s.closed_now || s.reset_now));
      } else if (e.kind == release_kind::clean) {
        if (now_ >= plus_slack(expires)) REQUIRE(s.closed_now);
        if (now_ + 1ms < expires) REQUIRE_FALSE(s.closed_now);
      } else if (e.kind == release_kind::dirty) {
        // Resetting a connection about to be retired would be wasted work.
        REQUIRE((s.reset_now || (s.closed_now && now_ + 1ms >= expires)));
      } else {
        REQUIRE(s.closed_now);
      }
    }
    if (e.what == ev::connected && e.ok && closed_) REQUIRE(slots_[e.slot].closed_now);
    if ((e.what == ev::reset_done || e.what == ev::checked) && (!e.ok || closed_)) REQUIRE(slots_[e.slot].closed_now);
    if (e.what == ev::acquire && closed_) REQUIRE(rejected_now_.count(e.waiter) == 1);
    if (e.what == ev::cancel) REQUIRE(cancelled == expect_cancel_);

    for (auto& s : slots_) {
      if (s.st != state::returned) continue;
      s.st = state::idle;
      if (e.what != ev::checked) s.idle_since = now_;  // a check does not make a connection less idle
    }

    REQUIRE(open() + connecting() <= limits_.max_size);
    const auto& st = core_.stats();
    const gauges model{.size = open(),
                       .idle = count(state::idle),
                       .in_use = count(state::leased),
                       .connecting = connecting(),
                       .waiting = queue_.size()};
    REQUIRE(gauges_of(st) == model);
    REQUIRE(core_.closed() == closed_);
    REQUIRE(core_.drained() == (open() + connecting() == 0));
    if (closed_) {
      REQUIRE(queue_.empty());
      REQUIRE(count(state::idle) == 0);
    }
    if (count(state::idle) > 0) REQUIRE(queue_.empty());

    REQUIRE(st.acquires == acquires_);
    REQUIRE(st.acquire_wait_total == wait_total_);
    REQUIRE(st.timeouts == timeouts_);
    REQUIRE(st.cancelled_waits == cancelled_);
    REQUIRE(st.resets == resets_);
    REQUIRE(st.closed_idle == closes_[static_cast<int>(close_reason::idle)]);
    REQUIRE(st.closed_lifetime == closes_[static_cast<int>(close_reason::lifetime)]);
    REQUIRE(st.closed_broken == closes_[static_cast<int>(close_reason::broken)]);
    REQUIRE(st.closed_health_check == closes_[static_cast<int>(close_reason::health_check)]);
    REQUIRE(st.closed_reset_failed == closes_[static_cast<int>(close_reason::reset_failed)]);
    REQUIRE(st.closed_pool_closed == closes_[static_cast<int>(close_reason::pool_closed)]);
    if (!closed_) {
      REQUIRE(st.created == created_);
      REQUIRE(st.connect_failures == failures_);
    }

    // The pool must ask to be woken in time for whatever falls due.
    const auto wake = recorder_.wake();
    INFO("wake_at " << ms_since_t0(wake) << ", now " << ms_since_t0(now_));
    if (e.what == ev::timer) REQUIRE(wake > now_);  // everything due now was handled
    if (closed_) return;
    const bool need = (queue_.size() > connecting() && open() + connecting() < limits_.max_size) ||
                      open() + connecting() < limits_.min_size;
    if (need) {
      INFO("connections are needed; retry allowed at " << ms_since_t0(retry_hi_));
      REQUIRE(wake <= std::max(retry_hi_, now_));
    }
    if (!queue_.empty() && limits_.acquire_timeout.count() > 0) {
      INFO("first waiter w" << queue_.front().id << " since " << ms_since_t0(queue_.front().since));
      REQUIRE(wake <= queue_.front().since + limits_.acquire_timeout);
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const auto& s = slots_[i];
      if (s.st != state::idle) continue;
      INFO("idle slot " << i << " since " << ms_since_t0(s.idle_since) << " expires " << ms_since_t0(s.expires));
      if (limits_.max_lifetime.count() > 0) REQUIRE(wake <= plus_slack(s.expires));
      if (limits_.idle_timeout.count() > 0 && open() > limits_.min_size)
        REQUIRE(wake <= s.idle_since + limits_.idle_timeout + 1ms);
    }
  }

  pool_limits limits_;
  std::mt19937 rng_;
  std::mt19937 jitter_rng_;
  recording_actions recorder_;
  pool_core core_;
  std::vector<slot> slots_;
  std::deque<waiter> queue_;
  std::vector<double> draws_;
  std::deque<std::string> history_;
  std::set<std::uint64_t> rejected_now_;
  pool_time now_ = t0;
  pool_time expires_before_ = never;  ///< of the slot an event releases
  int step_ = -1;
  std::uint64_t next_waiter_ = 1;
  bool closed_ = false;
  bool expect_cancel_ = false;
  std::chrono::milliseconds backoff_{0};
  pool_time retry_lo_{};
  pool_time retry_hi_{};
  std::uint64_t acquires_ = 0;
  std::chrono::nanoseconds wait_total_{0};
  std::uint64_t timeouts_ = 0;
  std::uint64_t cancelled_ = 0;
  std::uint64_t resets_ = 0;
  std::uint64_t created_ = 0;
  std::uint64_t failures_ = 0;
  std::array<std::uint64_t, 6> closes_{};
};

pool_limits random_limits(std::mt19937& rng) {
  auto between = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto maybe_ms = [&](int lo, int hi) { return std::chrono::milliseconds(between(0, 3) == 0 ? 0 : between(lo, hi)); };
  pool_limits l;
  l.max_size = static_cast<std::size_t>(between(1, 5));
  l.min_size = static_cast<std::size_t>(between(0, std::min(2, static_cast<int>(l.max_size))));
  l.acquire_timeout = maybe_ms(200, 5000);
  l.idle_timeout = maybe_ms(500, 8000);
  l.max_lifetime = maybe_ms(2000, 30000);
  l.max_lifetime_jitter = between(0, 50) / 100.0;
  l.health_check_period = maybe_ms(500, 6000);
  l.backoff_initial = std::chrono::milliseconds(between(50, 500));
  l.backoff_max = l.backoff_initial * between(1, 16);
  return l;
}

}  // namespace

TEST_CASE("pool_core keeps its invariants under random events", "[pool]") {
  std::uint64_t grants = 0;
  std::uint64_t timeouts = 0;
  for (unsigned seed = 1; seed <= 40; ++seed) {
    std::mt19937 config_rng(seed);
    const auto limits = random_limits(config_rng);
    INFO("seed " << seed << ": max_size " << limits.max_size << " min_size " << limits.min_size << " acquire_timeout "
                 << limits.acquire_timeout.count() << " idle_timeout " << limits.idle_timeout.count()
                 << " max_lifetime " << limits.max_lifetime.count() << " jitter " << limits.max_lifetime_jitter
                 << " health_check_period " << limits.health_check_period.count() << " backoff "
                 << limits.backoff_initial.count() << ".." << limits.backoff_max.count());
    simulation sim(limits, seed);
    sim.run(2500, seed % 2 == 0);
    grants += sim.grants();
    timeouts += sim.timeouts();
  }
  // The random events did exercise the pool.
  CHECK(grants > 1000);
  CHECK(timeouts > 0);
}

// --- shared connections (pool_options::share_depth) ---------------------

namespace {

pool_limits sharing(std::size_t max_size, std::size_t depth) {
  auto l = quiet(max_size);
  l.share_depth = depth;
  return l;
}

/// Opens `n` connections and returns them idle, in the order they were
/// released (1 ms apart: the last is the most recently idle).
std::vector<std::size_t> open_idle(harness& h, std::size_t n) {
  std::vector<std::size_t> slots;
  for (std::size_t i = 0; i < n; ++i) slots.push_back(lease(h, 1000 + i));
  for (const auto s : slots) {
    h.now += 1ms;
    h.core.release(s, release_kind::clean, h.now);
  }
  REQUIRE(h.take().empty());
  return slots;
}

}  // namespace

TEST_CASE("pool_core shares connections up to share_depth, fewest in flight first", "[pool][share]") {
  harness h{sharing(2, 3)};
  const auto open = open_idle(h, 2);
  const auto a = open[0];
  const auto b = open[1];  // idle since later: taken first

  h.core.acquire_shared(1, h.now);
  CHECK(h.take() == actions{a_grant(1, b)});
  h.core.acquire_shared(2, h.now);  // a has none in flight
  CHECK(h.take() == actions{a_grant(2, a)});
  h.core.acquire_shared(3, h.now);
  h.core.acquire_shared(4, h.now);
  h.core.acquire_shared(5, h.now);
  h.core.acquire_shared(6, h.now);
  const auto got = h.take();
  REQUIRE(got.size() == 4);
  std::map<std::size_t, int> per_slot;
  for (const auto& g : got) ++per_slot[g.slot];
  CHECK(per_slot[a] == 2);
  CHECK(per_slot[b] == 2);
  CHECK(h.core.shared_users(a) == 3);
  CHECK(h.core.shared_users(b) == 3);

  h.core.acquire_shared(7, h.now);  // both at depth: waits
  CHECK(h.take().empty());
  CHECK(h.now_gauges() == gauges{.size = 2, .in_use = 2, .waiting = 1});
  CHECK(h.core.stats().shared == 2);
  CHECK(h.core.stats().shared_in_flight == 6);
  CHECK(h.core.stats().shared_acquires == 6);
  CHECK(h.core.stats().acquires == 2 + 6);

  h.now += 5ms;
  h.core.release_shared(a, 2, release_kind::clean, h.now);  // room on a: the waiter joins it
  CHECK(h.take() == actions{a_grant(7, a)});
  CHECK(h.core.stats().acquire_wait_total == 5ms);
  CHECK(h.core.stats().shared_in_flight == 6);
}

TEST_CASE("pool_core grows before it shares: a busy connection is joined only when no other can open",
          "[pool][share]") {
  harness h{sharing(3, 8)};
  h.core.acquire_shared(1, h.now);
  const auto s0 = single_connect(h.take());
  h.core.on_connected(s0, true, h.now);
  CHECK(h.take() == actions{a_grant(1, s0)});

  // s0 is busy and the pool may grow: each waits for a connection of its own.
  h.core.acquire_shared(2, h.now);
  const auto s1 = single_connect(h.take());
  CHECK(h.core.try_acquire_shared(3, h.now) == std::nullopt);
  h.core.acquire_shared(3, h.now);
  const auto s2 = single_connect(h.take());
  CHECK(s1 != s0);
  CHECK(s2 != s1);
  h.core.on_connected(s1, true, h.now);
  CHECK(h.take() == actions{a_grant(2, s1)});
  h.core.on_connected(s2, true, h.now);
  CHECK(h.take() == actions{a_grant(3, s2)});

  // At max_size: the next ones join the connections with the fewest in flight.
  h.core.acquire_shared(4, h.now);
  h.core.acquire_shared(5, h.now);
  h.core.acquire_shared(6, h.now);
  const auto got = h.take();
  REQUIRE(got.size() == 3);
  std::map<std::size_t, int> per_slot;
  for (const auto& g : got) {
    CHECK(g.what == act::grant);
    ++per_slot[g.slot];
  }
  CHECK(per_slot.size() == 3);
  CHECK(h.core.stats().shared_in_flight == 6);
}

TEST_CASE("pool_core shares a busy connection while connects fail and back off", "[pool][share]") {
  harness h{sharing(2, 8)};
  h.core.acquire_shared(1, h.now);
  const auto s0 = single_connect(h.take());
  h.core.on_connected(s0, true, h.now);
  CHECK(h.take() == actions{a_grant(1, s0)});
  h.core.acquire_shared(2, h.now);  // waits for a second connection...
  const auto s1 = single_connect(h.take());
  h.core.on_connected(s1, false, h.now, "refused");  // ...which fails: it joins s0
  const auto got = h.take();
  REQUIRE_FALSE(got.empty());
  CHECK(got.back() == a_grant(2, s0));
  // During the backoff a new one joins at once.
  CHECK(h.core.try_acquire_shared(3, h.now) == std::optional<std::size_t>(s0));
}

TEST_CASE("pool_core gives exclusive acquirers only idle connections, and shared ones queue behind them",
          "[pool][share]") {
  harness h{sharing(1, 4)};
  const auto s = open_idle(h, 1)[0];
  h.core.acquire_shared(1, h.now);
  h.core.acquire_shared(2, h.now);
  CHECK(h.take() == actions{a_grant(1, s), a_grant(2, s)});
  CHECK_FALSE(h.core.try_acquire(h.now).has_value());
  h.core.acquire(10, h.now);  // exclusive: waits for the connection to drain
  h.core.acquire_shared(3, h.now);
  CHECK_FALSE(h.core.try_acquire_shared(4, h.now).has_value());  // FIFO: not past the waiters
  CHECK(h.take().empty());
  h.core.release_shared(s, 1, release_kind::clean, h.now);  // room, but an exclusive waiter is first
  CHECK(h.take().empty());
  h.core.release_shared(s, 2, release_kind::clean, h.now);  // drained: idle, leased to the exclusive waiter
  CHECK(h.take() == actions{a_grant(10, s)});
  CHECK(h.core.shared_users(s) == 0);
  CHECK(h.core.stats().shared == 0);
  h.core.release(s, release_kind::clean, h.now);
  CHECK(h.take() == actions{a_grant(3, s)});
  CHECK(h.core.shared_users(s) == 1);
  CHECK(h.now_gauges() == gauges{.size = 1, .in_use = 1});
}

TEST_CASE("pool_core takes no one onto a shared connection seen dirty or broken, and cleans it after its last user",
          "[pool][share]") {
  SECTION("dirty: reset when the last user leaves") {
    harness h{sharing(1, 4)};
    const auto s = open_idle(h, 1)[0];
    h.core.acquire_shared(1, h.now);
    h.core.acquire_shared(2, h.now);
    CHECK(h.take() == actions{a_grant(1, s), a_grant(2, s)});
    h.core.release_shared(s, 1, release_kind::dirty, h.now);
    CHECK(h.take().empty());
    h.core.acquire_shared(3, h.now);  // depth allows it, the taint does not
    CHECK(h.take().empty());
    CHECK(h.core.stats().waiting == 1);
    h.core.release_shared(s, 2, release_kind::clean, h.now);
    CHECK(h.take() == actions{a_reset(s)});
    CHECK(h.core.stats().resets == 1);
    h.core.on_reset(s, true, h.now);
    CHECK(h.take() == actions{a_grant(3, s)});
  }
  SECTION("broken: closed and replaced when the last user leaves") {
    harness h{sharing(1, 4)};
    const auto s = open_idle(h, 1)[0];
    h.core.acquire_shared(1, h.now);
    h.core.acquire_shared(2, h.now);
    h.take();
    h.core.release_shared(s, 2, release_kind::broken, h.now);
    h.core.acquire_shared(3, h.now);
    CHECK(h.take().empty());
    h.core.release_shared(s, 1, release_kind::clean, h.now);
    CHECK(h.take() == actions{a_close(s, close_reason::broken), a_connect(s)});
    h.core.on_connected(s, true, h.now);
    CHECK(h.take() == actions{a_grant(3, s)});
  }
  SECTION("a release of an unknown use changes nothing") {
    harness h{sharing(1, 4)};
    const auto s = open_idle(h, 1)[0];
    h.core.acquire_shared(1, h.now);
    h.take();
    h.core.release_shared(s, 99, release_kind::broken, h.now);
    h.core.release(s, release_kind::broken, h.now);  // not a lease
    CHECK(h.take().empty());
    CHECK(h.core.shared_users(s) == 1);
    h.core.release_shared(s, 1, release_kind::clean, h.now);
    CHECK(h.now_gauges() == gauges{.size = 1, .idle = 1});
  }
}

TEST_CASE("pool_core skips shared connections stuck behind an old statement", "[pool][share]") {
  auto limits = sharing(2, 8);
  limits.share_stall = 50ms;
  harness h{limits};
  const auto open = open_idle(h, 2);
  const auto a = open[0];
  const auto b = open[1];
  h.core.acquire_shared(1, h.now);  // b, the most recently idle
  h.now += 10ms;
  h.core.acquire_shared(2, h.now);  // a: none in flight
  h.core.acquire_shared(3, h.now);  // one each: the first slot
  CHECK(h.take() == actions{a_grant(1, b), a_grant(2, a), a_grant(3, a)});
  h.now += 45ms;  // b's oldest has run 55 ms, a's 45 ms
  h.core.acquire_shared(4, h.now);
  h.core.acquire_shared(5, h.now);
  CHECK(h.take() == actions{a_grant(4, a), a_grant(5, a)});  // a, although it has more in flight
  h.now += 10ms;                                             // both stuck now
  h.core.acquire_shared(6, h.now);
  CHECK(h.take().empty());
  h.core.release_shared(a, 3, release_kind::clean, h.now);  // a's oldest (w2) still runs
  CHECK(h.take().empty());
  h.core.release_shared(b, 1, release_kind::clean, h.now);  // b empty: idle again, the waiter takes it
  CHECK(h.take() == actions{a_grant(6, b)});
}

TEST_CASE("pool_core with share_depth 1 shares nothing", "[pool][share]") {
  harness h{sharing(1, 1)};
  const auto s = open_idle(h, 1)[0];
  h.core.acquire_shared(1, h.now);
  CHECK(h.take() == actions{a_grant(1, s)});
  h.core.acquire_shared(2, h.now);
  CHECK(h.take().empty());
  h.core.release_shared(s, 1, release_kind::clean, h.now);
  CHECK(h.take() == actions{a_grant(2, s)});
}

TEST_CASE("pool_core closes a shared connection when its last user returns after close()", "[pool][share]") {
  harness h{sharing(1, 4)};
  const auto s = open_idle(h, 1)[0];
  h.core.acquire_shared(1, h.now);
  h.core.acquire_shared(2, h.now);
  h.core.acquire_shared(3, h.now);  // depth 4: joins
  h.take();
  h.core.close();
  CHECK(h.take().empty());
  h.core.release_shared(s, 1, release_kind::clean, h.now);
  CHECK(h.take().empty());
  CHECK_FALSE(h.core.drained());
  h.core.release_shared(s, 2, release_kind::clean, h.now);
  h.core.release_shared(s, 3, release_kind::clean, h.now);
  CHECK(h.take() == actions{a_close(s, close_reason::pool_closed)});
  CHECK(h.core.drained());
  h.core.acquire_shared(4, h.now);
  const auto got = h.take();
  REQUIRE(got.size() == 1);
  CHECK(got[0] == a_reject(4, errc::pool_closed));
}

namespace {

/// Random exclusive and shared acquires and releases against the rules that
/// matter for sharing: never more than share_depth statements on a
/// connection, never shared and leased at once, exclusive grants only of
/// free connections, no one joins a connection seen dirty or broken, FIFO
/// grants, every acquire completes exactly once, gauges that add up.
class share_simulation {
 public:
  share_simulation(pool_limits limits, unsigned seed)
      : limits_(limits), rng_(seed), core_(limits, recorder_, [] { return 0.5; }), slots_(limits.max_size) {}

  void run(int steps) {
    step(kind::timer, 0, 0, release_kind::clean, true);
    for (int i = 0; i < steps; ++i) {
      const int roll = percent();
      if (roll < 40) now_ += std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 40)(rng_));
      while (recorder_.wake() <= now_) {
        const auto keep = now_;
        now_ = recorder_.wake();
        step(kind::timer, 0, 0, release_kind::clean, true);
        now_ = std::max(now_, keep);
      }
      random_step();
    }
    step(kind::close, 0, 0, release_kind::clean, true);
    for (int round = 0; round < 20 && !core_.drained(); ++round) {
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        auto& s = slots_[i];
        if (s.st == state::leased) step(kind::release, i, 0, release_kind::clean, true);
        while (!s.users.empty()) step(kind::release_shared, i, *s.users.begin(), release_kind::clean, true);
        if (s.st == state::connecting) step(kind::connected, i, 0, release_kind::clean, percent() < 50);
        if (s.st == state::resetting) step(kind::reset_done, i, 0, release_kind::clean, true);
        if (s.st == state::checking) step(kind::checked, i, 0, release_kind::clean, true);
      }
    }
    REQUIRE(core_.drained());
    REQUIRE(queue_.empty());
    for (const auto& [id, n] : completions_) {
      INFO("waiter w" << id);
      REQUIRE(n == 1);
    }
    REQUIRE(completions_.size() == next_id_ - 1);
  }

  std::uint64_t shared_grants() const noexcept { return shared_grants_; }
  std::size_t deepest() const noexcept { return deepest_; }

 private:
  enum class state { empty, connecting, free, leased, shared, resetting, checking };
  enum class kind {
    acquire,
    acquire_shared,
    try_shared,
    cancel,
    release,
    release_shared,
    connected,
    reset_done,
    checked,
    timer,
    close
  };
  struct slot {
    state st = state::empty;
    std::set<std::uint64_t> users;
    bool tainted = false;
  };
  struct waiter {
    std::uint64_t id;
    bool shared;
  };

  int percent() { return std::uniform_int_distribution<int>(0, 99)(rng_); }
  std::vector<std::size_t> in(state s) const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].st == s) out.push_back(i);
    return out;
  }
  template <class T>
  T pick(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng_)];
  }
  std::size_t depth() const { return std::max<std::size_t>(limits_.share_depth, 1); }

  void random_step() {
    const int roll = percent();
    const int k = percent();
    const auto how = k < 75 ? release_kind::clean : k < 90 ? release_kind::dirty : release_kind::broken;
    if (roll < 10) return step(kind::acquire, 0, 0, how, true);
    if (roll < 30) return step(kind::acquire_shared, 0, 0, how, true);
    if (roll < 40) return step(kind::try_shared, 0, 0, how, true);
    if (roll < 43 && !queue_.empty())
      return step(kind::cancel, 0, pick(std::vector(queue_.begin(), queue_.end())).id, how, true);
    if (roll < 53 && !in(state::leased).empty()) return step(kind::release, pick(in(state::leased)), 0, how, true);
    if (roll < 78 && !in(state::shared).empty()) {
      const auto s = pick(in(state::shared));
      const auto& u = slots_[s].users;
      return step(kind::release_shared, s, pick(std::vector<std::uint64_t>(u.begin(), u.end())), how, true);
    }
    if (roll < 88 && !in(state::connecting).empty())
      return step(kind::connected, pick(in(state::connecting)), 0, how, percent() < 85);
    if (roll < 94 && !in(state::resetting).empty())
      return step(kind::reset_done, pick(in(state::resetting)), 0, how, percent() < 85);
    if (!in(state::checking).empty()) return step(kind::checked, pick(in(state::checking)), 0, how, percent() < 85);
    step(kind::timer, 0, 0, how, true);
  }

  void complete(std::uint64_t id) { ++completions_[id]; }

  void step(kind what, std::size_t s, std::uint64_t id, release_kind how, bool ok) {
    INFO("step kind " << static_cast<int>(what) << " slot " << s << " id " << id << " how " << static_cast<int>(how)
                      << " ok " << ok << " at " << ms_since_t0(now_));
    switch (what) {
      case kind::acquire:
      case kind::acquire_shared: {
        id = next_id_++;
        queue_.push_back({id, what == kind::acquire_shared});
        if (what == kind::acquire) core_.acquire(id, now_);
        else core_.acquire_shared(id, now_);
        break;
      }
      case kind::try_shared: {
        id = next_id_++;
        const auto got = core_.try_acquire_shared(id, now_);
        if (got) {
          REQUIRE(queue_.empty());
          grant_shared(id, *got);
        } else {
          complete(id);  // the driver then calls acquire_shared() with a new id
        }
        break;
      }
      case kind::cancel: {
        const bool was = core_.cancel(id, now_);
        auto it = std::find_if(queue_.begin(), queue_.end(), [id](const waiter& w) { return w.id == id; });
        REQUIRE(was == (it != queue_.end()));
        if (was) {
          queue_.erase(it);
          complete(id);
        }
        break;
      }
      case kind::release:
        REQUIRE(slots_[s].st == state::leased);
        slots_[s].st = state::free;
        core_.release(s, how, now_);
        break;
      case kind::release_shared: {
        auto& sl = slots_[s];
        REQUIRE(sl.users.erase(id) == 1);
        if (how != release_kind::clean) sl.tainted = true;
        if (sl.users.empty()) {
          sl.st = state::free;
          sl.tainted = false;
        }
        core_.release_shared(s, id, how, now_);
        break;
      }
      case kind::connected:
        REQUIRE(slots_[s].st == state::connecting);
        slots_[s].st = ok ? state::free : state::empty;
        core_.on_connected(s, ok, now_, ok ? "" : "refused");
        break;
      case kind::reset_done:
        REQUIRE(slots_[s].st == state::resetting);
        slots_[s].st = state::free;
        core_.on_reset(s, ok, now_);
        break;
      case kind::checked:
        REQUIRE(slots_[s].st == state::checking);
        slots_[s].st = state::free;
        core_.on_checked(s, ok, now_);
        break;
      case kind::timer: core_.on_timer(now_); break;
      case kind::close: core_.close(); break;
    }
    const auto got = recorder_.take();
    INFO("actions: " << Catch::Detail::stringify(got));
    for (const auto& a : got) apply(a);
    check();
  }

  void grant_shared(std::uint64_t id, std::size_t s) {
    auto& sl = slots_[s];
    REQUIRE((sl.st == state::free || sl.st == state::shared));
    REQUIRE_FALSE(sl.tainted);
    REQUIRE(sl.users.size() < depth());
    sl.st = state::shared;
    sl.users.insert(id);
    deepest_ = std::max(deepest_, sl.users.size());
    ++shared_grants_;
    complete(id);
  }

  void apply(const action& a) {
    auto& sl = slots_[a.what == act::reject || a.what == act::wake_at ? 0 : a.slot];
    switch (a.what) {
      case act::connect:
        REQUIRE(sl.st == state::empty);
        sl.st = state::connecting;
        break;
      case act::reset:
        REQUIRE(sl.st == state::free);
        sl.st = state::resetting;
        break;
      case act::check:
        REQUIRE(sl.st == state::free);
        sl.st = state::checking;
        break;
      case act::close:
        REQUIRE(sl.st == state::free);
        REQUIRE(sl.users.empty());
        sl.st = state::empty;
        break;
      case act::grant: {
        REQUIRE_FALSE(queue_.empty());
        REQUIRE(queue_.front().id == a.waiter);  // FIFO, exclusive and shared alike
        const waiter w = queue_.front();
        queue_.pop_front();
        if (w.shared) {
          grant_shared(w.id, a.slot);
        } else {
          REQUIRE(sl.st == state::free);  // never shared and leased at once
          sl.st = state::leased;
          complete(w.id);
        }
        break;
      }
      case act::reject: {
        auto it = std::find_if(queue_.begin(), queue_.end(), [&](const waiter& w) { return w.id == a.waiter; });
        REQUIRE(it != queue_.end());
        queue_.erase(it);
        complete(a.waiter);
        break;
      }
      case act::wake_at: break;
    }
  }

  void check() {
    std::size_t leased = 0, shared = 0, in_flight = 0, free = 0, busy = 0, connecting = 0;
    for (const auto& sl : slots_) {
      REQUIRE(sl.users.size() <= depth());
      if (sl.st != state::shared) REQUIRE(sl.users.empty());
      switch (sl.st) {
        case state::leased: ++leased; break;
        case state::shared:
          ++shared;
          in_flight += sl.users.size();
          break;
        case state::free: ++free; break;
        case state::resetting:
        case state::checking: ++busy; break;
        case state::connecting: ++connecting; break;
        case state::empty: break;
      }
    }
    const auto& s = core_.stats();
    REQUIRE(s.in_use == leased + shared);
    REQUIRE(s.shared == shared);
    REQUIRE(s.shared_in_flight == in_flight);
    REQUIRE(s.idle == free);
    REQUIRE(s.size == free + leased + shared + busy);
    REQUIRE(s.connecting == connecting);
    REQUIRE(s.waiting == queue_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i) REQUIRE(core_.shared_users(i) == slots_[i].users.size());
    // Nobody waits while the front waiter could be served.
    if (!queue_.empty() && !core_.closed()) {
      REQUIRE(free == 0);
      // (unless a connection is opening for each waiter: they wait for those)
      if (queue_.front().shared && limits_.share_stall.count() == 0 && queue_.size() > connecting) {
        for (const auto& sl : slots_) {
          if (sl.st == state::shared && !sl.tainted && limits_.max_lifetime.count() == 0)
            REQUIRE(sl.users.size() == depth());
        }
      }
    }
  }

  pool_limits limits_;
  std::mt19937 rng_;
  recording_actions recorder_;
  pool_core core_;
  std::vector<slot> slots_;
  std::deque<waiter> queue_;
  std::map<std::uint64_t, int> completions_;
  std::uint64_t next_id_ = 1;
  pool_time now_ = t0;
  std::uint64_t shared_grants_ = 0;
  std::size_t deepest_ = 0;
};

}  // namespace

TEST_CASE("pool_core keeps the sharing rules under random exclusive and shared acquires", "[pool][share]") {
  std::uint64_t shared_grants = 0;
  std::size_t deepest = 0;
  for (unsigned seed = 1; seed <= 40; ++seed) {
    std::mt19937 config_rng(seed);
    auto limits = random_limits(config_rng);
    limits.share_depth = std::uniform_int_distribution<std::size_t>(1, 6)(config_rng);
    limits.share_stall = std::chrono::milliseconds(seed % 3 == 0 ? 0 : 30 * (seed % 5));
    INFO("seed " << seed << ": max_size " << limits.max_size << " depth " << limits.share_depth << " stall "
                 << limits.share_stall.count());
    share_simulation sim(limits, seed);
    sim.run(3000);
    shared_grants += sim.shared_grants();
    deepest = std::max(deepest, sim.deepest());
  }
  CHECK(shared_grants > 1000);
  CHECK(deepest >= 4);
}

TEST_CASE("pool_core spreads waiters over the connections opened for them before deepening a pipeline",
          "[pool][share]") {
  harness h{sharing(3, 8)};
  for (std::uint64_t w = 1; w <= 5; ++w) h.core.acquire_shared(w, h.now);
  const auto connects = h.take();
  REQUIRE(connects.size() == 3);
  h.core.on_connected(connects[0].slot, true, h.now);
  // w1 takes it idle; w2 and w3 join it (5 waiters, 2 connections opening:
  // two more than those); w4 and w5 wait for the two opening.
  CHECK(h.take() == actions{a_grant(1, connects[0].slot), a_grant(2, connects[0].slot), a_grant(3, connects[0].slot)});
  h.core.on_connected(connects[1].slot, true, h.now);
  CHECK(h.take() == actions{a_grant(4, connects[1].slot)});
  h.core.on_connected(connects[2].slot, true, h.now);
  CHECK(h.take() == actions{a_grant(5, connects[2].slot)});
}

TEST_CASE("pool_core: which statements may share a connection", "[pool][share]") {
  CHECK(pgq::detail::shareable_statement("SELECT 1"));
  CHECK(pgq::detail::shareable_statement("  /* a /* nested */ comment */ -- and a line\n insert into t values (1)"));
  CHECK(pgq::detail::shareable_statement("WITH x AS (SELECT 1) SELECT * FROM x"));
  CHECK_FALSE(pgq::detail::shareable_statement("SET search_path = x"));
  CHECK_FALSE(pgq::detail::shareable_statement("/* c */ set local x = 1"));
  CHECK_FALSE(pgq::detail::shareable_statement(";; Reset ALL"));
  CHECK_FALSE(pgq::detail::shareable_statement("LISTEN ch"));
  CHECK_FALSE(pgq::detail::shareable_statement("DECLARE c CURSOR FOR SELECT 1"));
  CHECK_FALSE(pgq::detail::shareable_statement("COPY t FROM STDIN"));
  CHECK_FALSE(pgq::detail::shareable_statement("BEGIN"));
  CHECK_FALSE(pgq::detail::shareable_statement("end"));
  CHECK_FALSE(pgq::detail::shareable_statement("-- x\nRELEASE SAVEPOINT a"));
}
