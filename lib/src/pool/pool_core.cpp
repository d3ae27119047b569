#include "pool/pool_core.hpp"

#include "driver/pipeline.hpp"

#include <algorithm>
#include <array>

namespace pgq::detail {

bool shareable_statement(std::string_view sql) noexcept {
  if (classify_statement(sql) != stmt_kind::other) return false;
  char buf[16];
  const std::string_view w = first_keyword(sql, buf);
  static constexpr std::array<std::string_view, 21> session{
      "set",     "reset", "discard", "listen", "unlisten", "prepare",  "deallocate",
      "declare", "fetch", "move",    "close",  "lock",     "load",     "call",
      "do",      "copy",  "begin",   "start",  "commit",   "rollback", "savepoint"};
  if (std::find(session.begin(), session.end(), w) != session.end()) return false;
  if (w == "end" || w == "abort" || w == "release") return false;
  return true;
}

pool_core::pool_core(pool_limits limits, pool_actions& actions, std::function<double()> random01)
    : limits_(limits), actions_(actions), random01_(std::move(random01)) {
  if (limits_.max_size == 0) limits_.max_size = 1;
  limits_.min_size = std::min(limits_.min_size, limits_.max_size);
  slots_.resize(limits_.max_size);
}

std::size_t pool_core::count(slot_state st) const noexcept {
  return static_cast<std::size_t>(
      std::count_if(slots_.begin(), slots_.end(), [st](const slot& s) { return s.state == st; }));
}

void pool_core::refresh_gauges() {
  // One pass: this runs several times per event.
  std::size_t idle = 0, leased = 0, shared = 0, in_flight = 0, connecting = 0, busy = 0;
  for (const slot& sl : slots_) {
    switch (sl.state) {
      case slot_state::idle: ++idle; break;
      case slot_state::leased: ++leased; break;
      case slot_state::shared:
        ++shared;
        in_flight += sl.users.size();
        break;
      case slot_state::connecting: ++connecting; break;
      case slot_state::resetting:
      case slot_state::checking: ++busy; break;
      case slot_state::empty: break;
    }
  }
  stats_.idle = idle;
  stats_.in_use = leased + shared;
  stats_.shared = shared;
  stats_.shared_in_flight = in_flight;
  stats_.connecting = connecting;
  stats_.size = idle + leased + shared + busy;
  stats_.waiting = waiters_.size();
}

bool pool_core::drained() const noexcept {
  return std::all_of(slots_.begin(), slots_.end(), [](const slot& s) { return s.state == slot_state::empty; });
}

// The most recently used idle connection (the others then age out), with
// expired ones closed on the way.
std::optional<std::size_t> pool_core::pick_idle(pool_time now) {
  while (true) {
    std::size_t best = slots_.size();
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].state == slot_state::idle &&
          (best == slots_.size() || slots_[i].idle_since > slots_[best].idle_since)) {
        best = i;
      }
    }
    if (best == slots_.size()) return std::nullopt;
    if (now >= slots_[best].expires) {
      close_slot(best, close_reason::lifetime);
      continue;
    }
    return best;
  }
}

// The connection with the fewest statements in flight that takes shared
// work: idle (the most recently used first), or shared by fewer than
// share_depth, clean, not due to retire, and not stuck behind a statement
// older than share_stall (head-of-line blocking). Expired idle ones are
// closed on the way.
std::optional<std::size_t> pool_core::pick_shared(pool_time now) {
  const std::size_t depth = std::max<std::size_t>(limits_.share_depth, 1);
  std::size_t best = slots_.size();
  std::size_t best_users = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slot& sl = slots_[i];
    std::size_t users = 0;
    if (sl.state == slot_state::idle) {
      if (now >= sl.expires) {
        close_slot(i, close_reason::lifetime);
        continue;
      }
    } else if (sl.state == slot_state::shared) {
      users = sl.users.size();
      if (users >= depth || sl.taint != release_kind::clean || now >= sl.expires) continue;
      if (limits_.share_stall.count() > 0) {
        const auto oldest = std::min_element(sl.users.begin(), sl.users.end(),
                                             [](const auto& a, const auto& b) { return a.since < b.since; });
        if (oldest != sl.users.end() && now - oldest->since >= limits_.share_stall) continue;
      }
    } else {
      continue;
    }
    const bool better = best == slots_.size() || users < best_users ||
                        (users == 0 && best_users == 0 && sl.idle_since > slots_[best].idle_since);
    if (better) {
      best = i;
      best_users = users;
    }
  }
  if (best == slots_.size()) return std::nullopt;
  return best;
}

void pool_core::join(std::size_t s, std::uint64_t id, pool_time now) {
  slot& sl = slots_[s];
  if (sl.state != slot_state::shared) {
    sl.state = slot_state::shared;
    sl.users.clear();
    sl.taint = release_kind::clean;
  }
  sl.users.push_back(shared_user{id, now});
  ++stats_.acquires;
  ++stats_.shared_acquires;
}

std::optional<std::size_t> pool_core::take_idle(pool_time now) {
  if (closed_ || !waiters_.empty()) return std::nullopt;  // first come, first served
  const std::optional<std::size_t> s = pick_idle(now);
  if (!s) return std::nullopt;
  slots_[*s].state = slot_state::leased;
  ++stats_.acquires;
  refresh_gauges();
  return s;
}

std::optional<std::size_t> pool_core::try_acquire(pool_time now) { return take_idle(now); }

void pool_core::acquire(std::uint64_t id, pool_time now) {
  if (closed_) {
    actions_.reject(id, errc::pool_closed, "the pool is closed");
    return;
  }
  if (std::optional<std::size_t> s = take_idle(now)) {
    actions_.grant(id, *s);
    return;
  }
  const pool_time deadline = limits_.acquire_timeout.count() > 0 ? now + limits_.acquire_timeout : pool_time::max();
  waiters_.push_back(waiter{id, now, deadline});
  grow(now);
  serve(now);  // one more waiter than opening connections: a shared waiter in front may join one
  schedule(now);
  refresh_gauges();
}

std::optional<std::size_t> pool_core::try_acquire_shared(std::uint64_t id, pool_time now) {
  if (closed_ || !waiters_.empty()) return std::nullopt;  // first come, first served
  const std::optional<std::size_t> s = pick_shared(now);
  if (!s) return std::nullopt;
  // Grow first, share when full: while the pool may open another
  // connection, a statement that finds none idle waits for a new one, as
  // without sharing, rather than queue behind statements it cannot see (a
  // slow one would hold it up). Sharing starts at max_size, or while
  // connects fail and back off.
  if (slots_[*s].state == slot_state::shared && can_grow(now)) return std::nullopt;
  join(*s, id, now);
  refresh_gauges();
  return s;
}

void pool_core::acquire_shared(std::uint64_t id, pool_time now) {
  if (closed_) {
    actions_.reject(id, errc::pool_closed, "the pool is closed");
    return;
  }
  if (std::optional<std::size_t> s = try_acquire_shared(id, now)) {
    actions_.grant(id, *s);
    return;
  }
  const pool_time deadline = limits_.acquire_timeout.count() > 0 ? now + limits_.acquire_timeout : pool_time::max();
  waiters_.push_back(waiter{id, now, deadline, true});
  grow(now);
  serve(now);  // waiters held back for opening connections now outnumber them: the front may join one
  schedule(now);
  refresh_gauges();
}

std::size_t pool_core::shared_users(std::size_t s) const noexcept {
  if (s >= slots_.size() || slots_[s].state != slot_state::shared) return 0;
  return slots_[s].users.size();
}

void pool_core::release_shared(std::size_t s, std::uint64_t id, release_kind kind, pool_time now) {
  if (s >= slots_.size() || slots_[s].state != slot_state::shared) return;
  slot& sl = slots_[s];
  auto it = std::find_if(sl.users.begin(), sl.users.end(), [id](const shared_user& u) { return u.id == id; });
  if (it == sl.users.end()) return;
  sl.users.erase(it);
  if (static_cast<int>(kind) > static_cast<int>(sl.taint)) sl.taint = kind;
  if (!sl.users.empty()) {
    // Room for one more: a waiting shared statement may join (a tainted
    // connection takes nobody and waits for its last user).
    if (sl.taint == release_kind::clean) serve(now);
    refresh_gauges();
    return;
  }
  const release_kind worst = sl.taint;
  sl.taint = release_kind::clean;
  sl.state = slot_state::leased;  // the last user returns it as one lease would
  finish_release(s, worst, now);
}
bool pool_core::cancel(std::uint64_t id) {
  auto it = std::find_if(waiters_.begin(), waiters_.end(), [id](const waiter& w) { return w.id == id; });
  if (it == waiters_.end()) return false;
  waiters_.erase(it);
  ++stats_.cancelled_waits;
  refresh_gauges();
  return true;
}

bool pool_core::cancel(std::uint64_t id, pool_time now) {
  if (!cancel(id)) return false;
  serve(now);
  refresh_gauges();
  return true;
}

void pool_core::release(std::size_t s, release_kind kind, pool_time now) {
  if (s >= slots_.size() || slots_[s].state != slot_state::leased) return;
  finish_release(s, kind, now);
}

void pool_core::finish_release(std::size_t s, release_kind kind, pool_time now) {
  if (closed_) {
    close_slot(s, close_reason::pool_closed);
  } else if (kind == release_kind::broken) {
    close_slot(s, close_reason::broken);
    grow(now);
  } else if (kind == release_kind::dirty) {
    slots_[s].state = slot_state::resetting;
    ++stats_.resets;
    refresh_gauges();
    actions_.reset(s);
    return;
  } else if (now >= slots_[s].expires) {
    close_slot(s, close_reason::lifetime);
    grow(now);
  } else {
    make_available(s, now);
  }
  schedule(now);
  refresh_gauges();
}

void pool_core::make_available(std::size_t s, pool_time now) {
  slot& sl = slots_[s];
  sl.state = slot_state::idle;
  sl.idle_since = now;
  sl.last_checked = now;  // it was just used: no need to check it soon
  sl.users.clear();
  sl.taint = release_kind::clean;
  serve(now);
}

// Grants waiters in FIFO order while the front one can be served: an
// exclusive waiter needs an idle connection, a shared one a connection that
// takes shared work. The front waiter that cannot be served stops the rest
// (no overtaking, so an exclusive waiter is not starved by shared traffic:
// shared connections drain while it waits).
void pool_core::serve(pool_time now) {
  const std::uint64_t retired = stats_.closed_lifetime;
  while (!closed_ && !waiters_.empty()) {
    const waiter w = waiters_.front();
    const std::optional<std::size_t> s = w.shared ? pick_shared(now) : pick_idle(now);
    if (!s) break;
    // A waiter for whom a connection is opening waits for it rather than
    // deepening a busy pipeline: a burst at start-up spreads over the
    // backends instead of piling onto the first connection.
    if (slots_[*s].state == slot_state::shared && waiters_.size() <= count(slot_state::connecting)) break;
    waiters_.pop_front();
    if (w.shared) {
      join(*s, w.id, now);
    } else {
      slots_[*s].state = slot_state::leased;
      ++stats_.acquires;
    }
    stats_.acquire_wait_total += std::chrono::duration_cast<std::chrono::nanoseconds>(now - w.since);
    refresh_gauges();
    actions_.grant(w.id, *s);
  }
  if (stats_.closed_lifetime != retired) grow(now);  // expired connections closed on the way
}

void pool_core::close_slot(std::size_t s, close_reason why) {
  slots_[s] = slot{};
  switch (why) {
    case close_reason::idle: ++stats_.closed_idle; break;
    case close_reason::lifetime: ++stats_.closed_lifetime; break;
    case close_reason::broken: ++stats_.closed_broken; break;
    case close_reason::health_check: ++stats_.closed_health_check; break;
    case close_reason::reset_failed: ++stats_.closed_reset_failed; break;
    case close_reason::pool_closed: ++stats_.closed_pool_closed; break;
  }
  refresh_gauges();
  actions_.close(s, why);
}

bool pool_core::can_grow(pool_time now) const noexcept {
  return !closed_ && now >= retry_after_ &&
         std::any_of(slots_.begin(), slots_.end(), [](const slot& x) { return x.state == slot_state::empty; });
}

void pool_core::grow(pool_time now) {
  if (closed_ || now < retry_after_) return;
  auto open_or_connecting = [&] {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(), [](const slot& x) { return x.state != slot_state::empty; }));
  };
  while (true) {
    const std::size_t connecting = count(slot_state::connecting);
    const bool for_waiters = waiters_.size() > connecting;
    const bool for_minimum = open_or_connecting() < limits_.min_size;
    if (!for_waiters && !for_minimum) return;
    auto empty = std::find_if(slots_.begin(), slots_.end(), [](const slot& x) { return x.state == slot_state::empty; });
    if (empty == slots_.end()) return;
    empty->state = slot_state::connecting;
    refresh_gauges();
    actions_.connect(static_cast<std::size_t>(empty - slots_.begin()));
  }
}

void pool_core::on_connected(std::size_t s, bool ok, pool_time now, const std::string& error) {
  if (s >= slots_.size() || slots_[s].state != slot_state::connecting) return;
  if (!ok) {
    slots_[s] = slot{};
    ++stats_.connect_failures;
    last_connect_error_ = error;
    backoff_ = backoff_.count() == 0 ? limits_.backoff_initial : std::min(backoff_ * 2, limits_.backoff_max);
    retry_after_ = now + backoff_;
    serve(now);  // a shared waiter that waited for this connection may join a busy one
    schedule(now);
    refresh_gauges();
    return;
  }
  ++stats_.created;
  backoff_ = std::chrono::milliseconds(0);
  retry_after_ = pool_time{};
  last_connect_error_.clear();
  slot& sl = slots_[s];
  sl.created = now;
  if (limits_.max_lifetime.count() > 0) {
    const double factor = 1.0 - limits_.max_lifetime_jitter * (random01_ ? random01_() : 0.0);
    sl.expires = now + std::chrono::duration_cast<pool_clock::duration>(limits_.max_lifetime * factor);
  } else {
    sl.expires = pool_time::max();
  }
  if (closed_) {
    close_slot(s, close_reason::pool_closed);
    return;
  }
  make_available(s, now);
  grow(now);  // the backoff is over: waiters that came during it need connects
  schedule(now);
  refresh_gauges();
}

void pool_core::on_reset(std::size_t s, bool ok, pool_time now) {
  if (s >= slots_.size() || slots_[s].state != slot_state::resetting) return;
  if (closed_) {
    close_slot(s, close_reason::pool_closed);
    return;
  }
  if (!ok) {
    close_slot(s, close_reason::reset_failed);
    grow(now);
  } else if (now >= slots_[s].expires) {
    close_slot(s, close_reason::lifetime);
    grow(now);
  } else {
    make_available(s, now);
  }
  schedule(now);
  refresh_gauges();
}

void pool_core::on_checked(std::size_t s, bool ok, pool_time now) {
  if (s >= slots_.size() || slots_[s].state != slot_state::checking) return;
  if (closed_) {
    close_slot(s, close_reason::pool_closed);
    return;
  }
  if (!ok) {
    close_slot(s, close_reason::health_check);
    grow(now);
  } else if (!waiters_.empty()) {
    make_available(s, now);
  } else {
    slots_[s].state = slot_state::idle;  // idle_since unchanged: a check is not a use
    slots_[s].last_checked = now;
  }
  schedule(now);
  refresh_gauges();
}

void pool_core::on_timer(pool_time now) {
  if (closed_) return;
  // Every waiter has the same timeout, so deadlines grow along the queue:
  // only the front can be due.
  while (!waiters_.empty() && waiters_.front().deadline <= now) {
    const std::uint64_t id = waiters_.front().id;
    waiters_.pop_front();
    ++stats_.timeouts;
    refresh_gauges();
    std::string msg = "no connection became available within " + std::to_string(limits_.acquire_timeout.count()) +
                      " ms (pool of " + std::to_string(limits_.max_size) + ", " + std::to_string(stats_.in_use) +
                      " in use)";
    if (!last_connect_error_.empty()) msg += "; last connection attempt failed: " + last_connect_error_;
    actions_.reject(id, errc::pool_timeout, msg);
  }
  serve(now);  // a shared waiter held up behind one that timed out may join a connection now
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slot& sl = slots_[i];
    if (sl.state != slot_state::idle) continue;
    const std::size_t open = stats_.size;
    if (now >= sl.expires) {
      close_slot(i, close_reason::lifetime);
    } else if (limits_.idle_timeout.count() > 0 && now - sl.idle_since >= limits_.idle_timeout &&
               open > limits_.min_size) {
      close_slot(i, close_reason::idle);
    } else if (limits_.health_check_period.count() > 0 && now - sl.last_checked >= limits_.health_check_period) {
      sl.state = slot_state::checking;
      refresh_gauges();
      actions_.check(i);
    }
  }
  grow(now);
  schedule(now);
  refresh_gauges();
}

void pool_core::schedule(pool_time now) {
  if (closed_) {
    actions_.wake_at(pool_time::max());
    return;
  }
  pool_time next = pool_time::max();
  if (!waiters_.empty()) next = std::min(next, waiters_.front().deadline);  // the earliest: see on_timer
  std::size_t open = 0, connecting = 0;                                     // one pass: this runs on every release
  for (const slot& sl : slots_) {
    if (sl.state == slot_state::connecting) {
      ++connecting;
    } else if (sl.state != slot_state::empty) {
      ++open;
    }
  }
  for (const slot& sl : slots_) {
    if (sl.state != slot_state::idle) continue;
    next = std::min(next, sl.expires);
    if (limits_.idle_timeout.count() > 0 && open > limits_.min_size) {
      next = std::min(next, sl.idle_since + limits_.idle_timeout);
    }
    if (limits_.health_check_period.count() > 0) {
      next = std::min(next, sl.last_checked + limits_.health_check_period);
    }
  }
  const bool needs_growth = waiters_.size() > connecting || open + connecting < limits_.min_size;
  if (needs_growth && retry_after_ > now) next = std::min(next, retry_after_);
  actions_.wake_at(next);
}

void pool_core::close() {
  if (closed_) return;
  closed_ = true;
  while (!waiters_.empty()) {
    const std::uint64_t id = waiters_.front().id;
    waiters_.pop_front();
    refresh_gauges();
    actions_.reject(id, errc::pool_closed, "the pool was closed");
  }
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].state == slot_state::idle) close_slot(i, close_reason::pool_closed);
  }
  actions_.wake_at(pool_time::max());
  refresh_gauges();
}

}  // namespace pgq::detail
