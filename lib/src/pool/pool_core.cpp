#include "pool/pool_core.hpp"

#include <algorithm>

namespace pgq::detail {

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
  std::size_t idle = 0, leased = 0, connecting = 0, busy = 0;
  for (const slot& sl : slots_) {
    switch (sl.state) {
      case slot_state::idle: ++idle; break;
      case slot_state::leased: ++leased; break;
      case slot_state::connecting: ++connecting; break;
      case slot_state::resetting:
      case slot_state::checking: ++busy; break;
      case slot_state::empty: break;
    }
  }
  stats_.idle = idle;
  stats_.in_use = leased;
  stats_.connecting = connecting;
  stats_.size = idle + leased + busy;
  stats_.waiting = waiters_.size();
}

bool pool_core::drained() const noexcept {
  return std::all_of(slots_.begin(), slots_.end(), [](const slot& s) { return s.state == slot_state::empty; });
}

// The most recently used idle connection (the others then age out), with
// expired ones closed on the way; leased and counted.
std::optional<std::size_t> pool_core::take_idle(pool_time now) {
  if (closed_ || !waiters_.empty()) return std::nullopt;  // first come, first served
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
    slots_[best].state = slot_state::leased;
    ++stats_.acquires;
    refresh_gauges();
    return best;
  }
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
  schedule(now);
  refresh_gauges();
}

bool pool_core::cancel(std::uint64_t id) {
  auto it = std::find_if(waiters_.begin(), waiters_.end(), [id](const waiter& w) { return w.id == id; });
  if (it == waiters_.end()) return false;
  waiters_.erase(it);
  ++stats_.cancelled_waits;
  refresh_gauges();
  return true;
}

void pool_core::release(std::size_t s, release_kind kind, pool_time now) {
  if (s >= slots_.size() || slots_[s].state != slot_state::leased) return;
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
  if (!waiters_.empty()) {
    const waiter w = waiters_.front();
    waiters_.pop_front();
    sl.state = slot_state::leased;
    ++stats_.acquires;
    stats_.acquire_wait_total += std::chrono::duration_cast<std::chrono::nanoseconds>(now - w.since);
    refresh_gauges();
    actions_.grant(w.id, s);
    return;
  }
  sl.state = slot_state::idle;
  sl.idle_since = now;
  sl.last_checked = now;  // it was just used: no need to check it soon
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
