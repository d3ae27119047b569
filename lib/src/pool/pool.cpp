#include <pgq/pool.hpp>
#include <pgq/stream.hpp>
#include <pgq/timeout.hpp>

#include "pool/pool_core.hpp"
#include "transaction_sql.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <mutex>
#include <random>
#include <unordered_map>
#include <vector>

namespace asio = boost::asio;

namespace pgq {
namespace detail {

using lease_handler = asio::any_completion_handler<void(std::exception_ptr, lease)>;

// A statement's share of a pooled connection (pool_options::share_depth):
// a lease that others hold too, for one independent statement. Returns its
// share when destroyed. Internal: only pool's own functions hand one out.
class shared_use {
 public:
  shared_use() = default;
  shared_use(std::shared_ptr<pool_impl> pool, std::size_t slot, std::uint64_t id, connection* conn) noexcept
      : pool_(std::move(pool)), slot_(slot), id_(id), conn_(conn) {}
  shared_use(shared_use&& o) noexcept
      : pool_(std::move(o.pool_)), slot_(o.slot_), id_(o.id_), conn_(std::exchange(o.conn_, nullptr)) {}
  shared_use& operator=(shared_use&& o) noexcept {
    if (this != &o) {
      release();
      pool_ = std::move(o.pool_);
      slot_ = o.slot_;
      id_ = o.id_;
      conn_ = std::exchange(o.conn_, nullptr);
    }
    return *this;
  }
  shared_use(const shared_use&) = delete;
  shared_use& operator=(const shared_use&) = delete;
  ~shared_use() { release(); }

  connection* operator->() const noexcept { return conn_; }
  explicit operator bool() const noexcept { return conn_ != nullptr; }
  void release() noexcept;

 private:
  std::shared_ptr<pool_impl> pool_;
  std::size_t slot_ = 0;
  std::uint64_t id_ = 0;
  connection* conn_ = nullptr;
};

using share_handler = asio::any_completion_handler<void(std::exception_ptr, shared_use)>;

namespace {

// Starts `op` on `ex` later, never inline: actions run with the pool's mutex
// held, and co_spawn alone may start the coroutine at once.
void spawn_later(const asio::any_io_executor& ex, asio::awaitable<void> op) {
  asio::post(ex, [ex, op = std::move(op)]() mutable { asio::co_spawn(ex, std::move(op), asio::detached); });
}

// `opts` with the fields set under their old names moved to their new place.
pool_options normalized(pool_options opts) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (!opts.dsn.empty()) opts.conninfo = std::move(opts.dsn);
  if (opts.statement_cache_size) opts.connect.statement_cache_size = *opts.statement_cache_size;
  if (opts.connect_timeout) opts.connect.connect_timeout = *opts.connect_timeout;
#pragma GCC diagnostic pop
  return opts;
}

}  // namespace

// The pool's state: pool_core's decisions under a mutex, connections on
// strands of their own. Actions never call back into pool_core directly:
// outcomes come back later through post()ed work that takes the mutex again.
class pool_impl final : public std::enable_shared_from_this<pool_impl>, private pool_actions {
 public:
  pool_impl(asio::any_io_executor ex, pool_options opts)
      : ex_(std::move(ex)),
        opts_(normalized(std::move(opts))),
        core_(limits_of(opts_), *this, [this] { return jitter_(rng_); }),
        conns_(core_.limits().max_size),
        timer_(ex_),
        rng_(std::random_device{}()),
        use_strands_(opts_.strand_per_connection) {}

  void start() {
    std::lock_guard lock(mutex_);
    core_.on_timer(now());  // opens min_size connections
    publish();
  }

  const asio::any_io_executor& get_executor() const noexcept { return ex_; }
  std::size_t max_size() const noexcept { return opts_.max_size; }
  std::size_t min_size() const noexcept { return core_.limits().min_size; }
  std::chrono::milliseconds acquire_timeout() const noexcept { return opts_.acquire_timeout; }
  bool sharing() const noexcept { return opts_.share_depth > 1; }
  // Whether a statement may go the shared way.
  bool shares(std::string_view sql) const noexcept { return sharing() && shareable_statement(sql); }

  struct readiness {
    std::size_t open = 0;
    bool closed = false;
    std::string last_error;
  };
  readiness ready_state() {
    std::lock_guard lock(mutex_);
    return {core_.stats().size, core_.closed(), core_.last_connect_error()};
  }

  // A share of a connection now, without waiting, when one takes shared
  // work and nobody waits; an empty one otherwise (then acquire_shared()).
  shared_use try_share() {
    std::lock_guard lock(mutex_);
    const std::uint64_t id = next_waiter_++;
    std::optional<std::size_t> slot = core_.try_acquire_shared(id, now());
    publish();
    if (!slot) return {};
    return {shared_from_this(), *slot, id, conns_[*slot].get()};
  }

  void acquire_shared(share_handler handler, asio::any_io_executor hex) {
    std::lock_guard lock(mutex_);
    const std::uint64_t id = next_waiter_++;
    auto slot = asio::get_associated_cancellation_slot(handler);
    waiters_.emplace(id, waiter_entry{lease_handler(), std::move(handler), std::move(hex)});
    if (slot.is_connected()) {
      slot.assign([weak = weak_from_this(), id](asio::cancellation_type) {
        if (auto self = weak.lock()) {
          asio::post(self->ex_, [self, id] { self->cancel_waiter(id); });
        }
      });
    }
    core_.acquire_shared(id, now());
    publish();
  }

  // A shared_use ended, from any thread: the connection is looked at on its
  // own executor, then the share handed back to pool_core.
  void release_shared(std::size_t slot, std::uint64_t id, connection& c) noexcept {
    try {
      if (on_executor_of(c)) {
        classify_and_release_shared(slot, id, c);
        return;
      }
      std::shared_ptr<connection> conn;
      {
        std::lock_guard lock(mutex_);
        conn = conns_[slot];
      }
      if (!conn) return;
      asio::dispatch(conn->get_executor(), [self = shared_from_this(), slot, id, conn] {
        self->classify_and_release_shared(slot, id, *conn);
      });
    } catch (...) {
      // Out of memory: the share stays counted; the connection takes one less.
    }
  }

  // `hex`: the waiter's executor when it is an any_io_executor (empty:
  // the handler's associated one, reached through the pool's executor).
  void acquire(lease_handler handler, asio::any_io_executor hex) {
    std::lock_guard lock(mutex_);
    const std::uint64_t id = next_waiter_++;
    auto slot = asio::get_associated_cancellation_slot(handler);
    waiters_.emplace(id, waiter_entry{std::move(handler), share_handler(), std::move(hex)});
    if (slot.is_connected()) {
      slot.assign([weak = weak_from_this(), id](asio::cancellation_type) {
        if (auto self = weak.lock()) {
          asio::post(self->ex_, [self, id] { self->cancel_waiter(id); });
        }
      });
    }
    core_.acquire(id, now());
    publish();
  }

  // A lease now, without waiting, when a connection is idle and nobody
  // waits; an empty lease otherwise (then acquire()).
  lease try_acquire() {
    std::lock_guard lock(mutex_);
    std::optional<std::size_t> slot = core_.try_acquire(now());
    publish();
    if (!slot) return lease();
    return lease(shared_from_this(), *slot, conns_[*slot].get());
  }

  // Called by a lease, from any thread: the connection is classified on its
  // own executor, then handed back to pool_core.
  void release(std::size_t slot, connection& c) noexcept {
    try {
      if (on_executor_of(c)) {
        // The usual case: the lease ends right after its last request
        // completed, on the connection's executor. Whatever the holder sent
        // went out inline from here, so the classification sees it.
        classify_and_release(slot, c);
        return;
      }
      std::shared_ptr<connection> conn;
      {
        std::lock_guard lock(mutex_);
        conn = conns_[slot];
      }
      if (!conn) return;
      asio::dispatch(conn->get_executor(),
                     [self = shared_from_this(), slot, conn] { self->classify_and_release(slot, *conn); });
    } catch (...) {
      // Out of memory: the slot stays leased; the pool is one smaller.
    }
  }

  pool_stats stats() const {
    std::lock_guard lock(stats_mutex_);
    return stats_;
  }

  void shutdown() {
    std::lock_guard lock(mutex_);
    core_.close();
    publish();
  }

  bool drained() {
    std::lock_guard lock(mutex_);
    return core_.drained();
  }

  // Closes every connection, leased ones included (after a close deadline).
  void force_close() {
    std::vector<std::shared_ptr<connection>> all;
    {
      std::lock_guard lock(mutex_);
      core_.close();
      for (auto& c : conns_) {
        if (c) all.push_back(c);
      }
      publish();
    }
    for (auto& c : all) {
      asio::post(c->get_executor(), [c] { c->close(); });
    }
  }

 private:
  static pool_limits limits_of(const pool_options& o) {
    pool_limits l;
    l.min_size = o.min_size;
    l.max_size = o.max_size;
    l.acquire_timeout = o.acquire_timeout;
    l.idle_timeout = o.idle_timeout;
    l.max_lifetime = o.max_lifetime;
    l.max_lifetime_jitter = o.max_lifetime_jitter;
    l.health_check_period = o.health_check_period;
    l.backoff_initial = o.backoff_initial;
    l.backoff_max = o.backoff_max;
    l.share_depth = o.share_depth;
    l.share_stall = o.share_stall;
    return l;
  }

  static pool_time now() { return pool_clock::now(); }

  // On the connection's executor: clean, dirty (a transaction or a request
  // open, or a before_return hook) or broken, then back to pool_core.
  void classify_and_release(std::size_t slot, connection& conn) {
    release_kind kind = release_kind::clean;
    if (!conn.is_open()) {
      kind = release_kind::broken;
    } else if (opts_.before_return || conn.transaction_status() != tx_status::idle) {
      kind = release_kind::dirty;
    }
    std::lock_guard lock(mutex_);
    core_.release(slot, kind, now());
    publish();
  }

  // On the connection's executor. Other users' statements keep a shared
  // connection busy (transaction_status() says active), which is not dirt:
  // only a broken connection or an open transaction block taints it. The
  // last user returns it as a lease would be returned (a request left in
  // flight, a cancelled one say, or a before_return hook: reset).
  void classify_and_release_shared(std::size_t slot, std::uint64_t id, connection& conn) {
    const bool open = conn.is_open();
    const tx_status st = open ? conn.transaction_status() : tx_status::unknown;
    std::lock_guard lock(mutex_);
    const bool last = core_.shared_users(slot) <= 1;
    release_kind kind = release_kind::clean;
    if (!open) {
      kind = release_kind::broken;
    } else if (st == tx_status::in_transaction || st == tx_status::in_error || st == tx_status::unknown) {
      kind = release_kind::dirty;
    } else if (last && (st != tx_status::idle || opts_.before_return)) {
      kind = release_kind::dirty;
    }
    core_.release_shared(slot, id, kind, now());
    publish();
  }

  // Whether this thread runs the connection's executor now: inside its strand,
  // or (no strands: one thread runs everything) inside the io_context.
  bool on_executor_of(const connection& c) const {
    const asio::any_io_executor ex = c.get_executor();
    if (const auto* s = ex.target<asio::strand<asio::any_io_executor>>()) return s->running_in_this_thread();
    if (use_strands_) return false;
    return on_io_context(ex, [](const auto& e) { return e.running_in_this_thread(); });
  }

  // fn(the io_context executor inside `ex`) when `ex` holds one (work-tracked
  // or not), else false.
  template <class Fn>
  static bool on_io_context(const asio::any_io_executor& ex, Fn fn) {
    using plain = asio::io_context::executor_type;
    using tracked = decltype(asio::require(std::declval<plain>(), asio::execution::outstanding_work.tracked));
    if (const auto* e = ex.target<plain>()) return fn(*e);
    if (const auto* e = ex.target<tracked>()) return fn(*e);
    return false;
  }

  // Copies the numbers for stats(), which any thread may call.
  // With mutex_ held, at the end of every decision: the statistics first,
  // then the waiters granted or rejected by it, so that a task resumed on
  // another thread sees the statistics of what happened to it.
  void publish() {
    {
      std::lock_guard lock(stats_mutex_);
      stats_ = core_.stats();
    }
    if (outbox_.empty()) return;
    std::vector<outgoing> out;
    out.swap(outbox_);
    for (auto& o : out) deliver(std::move(o.handler), std::move(o.error), std::move(o.granted), std::move(o.shared));
  }

  void cancel_waiter(std::uint64_t id) {
    std::optional<waiter_entry> w;
    {
      std::lock_guard lock(mutex_);
      if (!core_.cancel(id, now())) return;
      w.emplace(take_waiter(id));
      publish();
    }
    deliver(std::move(*w),
            std::make_exception_ptr(sql_error(errc::cancelled, "cancelled while waiting for a pool connection")),
            lease(), shared_use());
  }

  // One of the handlers is set: `handler` for a lease, `shared` for a share.
  struct waiter_entry {
    lease_handler handler;
    share_handler shared;
    asio::any_io_executor ex;
  };

  waiter_entry take_waiter(std::uint64_t id) {
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return {};
    waiter_entry w{lease_handler(std::move(it->second.handler)), share_handler(std::move(it->second.shared)),
                   std::move(it->second.ex)};
    waiters_.erase(it);
    return w;
  }

  // Straight to the waiter's executor: waiters on one strand resume in the
  // order they were served (a hop through a multi-threaded pool executor
  // could swap them). The cancellation slot is cleared there, on the
  // waiter's side.
  void deliver(waiter_entry w, std::exception_ptr ep, lease l, shared_use u) {
    if (w.handler) {
      deliver_to(std::move(w.handler), std::move(w.ex), std::move(ep), std::move(l));
    } else if (w.shared) {
      deliver_to(std::move(w.shared), std::move(w.ex), std::move(ep), std::move(u));
    }
  }

  template <class Handler, class Value>
  void deliver_to(Handler h, asio::any_io_executor wex, std::exception_ptr ep, Value v) {
    asio::any_completion_executor handler_ex;
    if (!wex) handler_ex = asio::get_associated_executor(h, ex_);
    auto call = [h = std::move(h), ep, v = std::move(v)]() mutable {
      auto slot = asio::get_associated_cancellation_slot(h);
      if (slot.is_connected()) slot.clear();
      std::move(h)(ep, std::move(v));
    };
    if (wex) {
      asio::post(wex, std::move(call));
    } else {
      asio::post(ex_, asio::bind_executor(handler_ex, std::move(call)));
    }
  }

  // --- pool_actions: called with mutex_ held -------------------------------

  void connect(std::size_t slot) override {
    auto conn = use_strands_ ? std::make_shared<connection>(asio::make_strand(ex_)) : std::make_shared<connection>(ex_);
    conns_[slot] = conn;
    spawn_later(conn->get_executor(), open(shared_from_this(), slot, conn));
  }

  static asio::awaitable<void> open(std::shared_ptr<pool_impl> self, std::size_t slot,
                                    std::shared_ptr<connection> conn) {
    bool ok = true;
    std::string error;
    try {
      co_await conn->connect(self->opts_.conninfo, self->opts_.connect);
      if (self->opts_.on_connect) co_await self->opts_.on_connect(*conn);
    } catch (const std::exception& e) {
      ok = false;
      error = e.what();
    }
    if (!ok) conn->close();
    std::lock_guard lock(self->mutex_);
    if (!ok && self->conns_[slot] == conn) self->conns_[slot].reset();
    self->core_.on_connected(slot, ok, now(), error);
    self->publish();
  }

  void reset(std::size_t slot) override {
    auto conn = conns_[slot];
    spawn_later(conn->get_executor(), clean(shared_from_this(), slot, conn));
  }

  // Waits for whatever the last holder left running (its results are
  // dropped), rolls back an open transaction, runs before_return.
  static asio::awaitable<void> clean(std::shared_ptr<pool_impl> self, std::size_t slot,
                                     std::shared_ptr<connection> conn) {
    bool ok = false;
    try {
      co_await with_timeout(reset_steps(self, conn), self->opts_.reset_timeout);
      ok = conn->is_open() && conn->transaction_status() == tx_status::idle;
    } catch (const std::exception&) {
      ok = false;
    }
    std::lock_guard lock(self->mutex_);
    self->core_.on_reset(slot, ok, now());
    self->publish();
  }

  static asio::awaitable<void> reset_steps(std::shared_ptr<pool_impl> self, std::shared_ptr<connection> conn) {
    try {
      co_await conn->query_params("", {});  // completes after everything sent before it
    } catch (const sql_error& e) {
      if (is_fatal(e.code())) throw;
    }
    const tx_status st = conn->transaction_status();
    if (st == tx_status::in_transaction || st == tx_status::in_error) {
      co_await conn->query_params("ROLLBACK", {});
    }
    if (self->opts_.before_return) co_await self->opts_.before_return(*conn);
  }

  void check(std::size_t slot) override {
    auto conn = conns_[slot];
    spawn_later(conn->get_executor(), probe(shared_from_this(), slot, conn));
  }

  static asio::awaitable<void> probe(std::shared_ptr<pool_impl> self, std::size_t slot,
                                     std::shared_ptr<connection> conn) {
    bool ok = false;
    try {
      co_await with_timeout(conn->query_params("SELECT 1", {}), self->opts_.reset_timeout);
      ok = conn->is_open();
    } catch (const std::exception&) {
      ok = false;
    }
    std::lock_guard lock(self->mutex_);
    self->core_.on_checked(slot, ok, now());
    self->publish();
  }

  void close(std::size_t slot, close_reason) override {
    auto conn = std::move(conns_[slot]);
    if (conn) asio::post(conn->get_executor(), [conn] { conn->close(); });
  }

  void grant(std::uint64_t waiter, std::size_t slot) override {
    waiter_entry h = take_waiter(waiter);
    if (!h.handler && !h.shared) {
      // The waiter vanished (cannot happen: cancel removes it from the core
      // first); give the slot back rather than leak it (release() ignores a
      // shared slot, release_shared() a leased one).
      asio::post(ex_, [self = shared_from_this(), slot, waiter] {
        std::lock_guard lock(self->mutex_);
        self->core_.release(slot, release_kind::dirty, now());
        self->core_.release_shared(slot, waiter, release_kind::dirty, now());
        self->publish();
      });
      return;
    }
    connection* conn = conns_[slot].get();
    if (h.shared) {
      outbox_.push_back(outgoing{std::move(h), nullptr, lease(), shared_use(shared_from_this(), slot, waiter, conn)});
    } else {
      outbox_.push_back(outgoing{std::move(h), nullptr, lease(shared_from_this(), slot, conn), shared_use()});
    }
  }

  void reject(std::uint64_t waiter, errc why, const std::string& message) override {
    outbox_.push_back(
        outgoing{take_waiter(waiter), std::make_exception_ptr(sql_error(why, message)), lease(), shared_use()});
  }

  // The timer is re-armed only for an earlier time: most events move the
  // next deadline later (a released connection's idle timeout), and a timer
  // that fires early costs one on_timer() that finds nothing due, where
  // re-arming it costs a system call per event.
  // A closed pool cancels it, so that it keeps no io_context running.
  void wake_at(pool_time when) override {
    if (core_.closed()) {
      if (armed_ != pool_time::max()) timer_.cancel();
      armed_ = pool_time::max();
      return;
    }
    if (when >= armed_) return;
    armed_ = when;
    timer_.expires_at(when);
    timer_.async_wait([weak = weak_from_this(), when](const error_code& ec) {
      if (ec) return;
      if (auto self = weak.lock()) {
        std::lock_guard lock(self->mutex_);
        if (self->armed_ != when) return;  // re-armed earlier meanwhile
        self->armed_ = pool_time::max();
        self->core_.on_timer(now());
        self->publish();
      }
    });
  }

  asio::any_io_executor ex_;
  pool_options opts_;
  std::mutex mutex_;  // guards everything below
  pool_core core_;
  std::vector<std::shared_ptr<connection>> conns_;
  std::unordered_map<std::uint64_t, waiter_entry> waiters_;
  struct outgoing {
    waiter_entry handler;
    std::exception_ptr error;
    lease granted;
    shared_use shared;
  };
  std::vector<outgoing> outbox_;  // decided, delivered by publish()
  asio::steady_timer timer_;
  pool_time armed_ = pool_time::max();  // when timer_ fires; max: not armed
  std::uint64_t next_waiter_ = 1;
  std::mt19937 rng_;
  std::uniform_real_distribution<double> jitter_{0.0, 1.0};
  mutable std::mutex stats_mutex_;
  pool_stats stats_;
  bool use_strands_;
};

void shared_use::release() noexcept {
  if (pool_ && conn_ != nullptr) pool_->release_shared(slot_, id_, *conn_);
  pool_.reset();
  conn_ = nullptr;
}

}  // namespace detail

// --- lease -----------------------------------------------------------------

lease::lease(lease&& other) noexcept
    : pool_(std::move(other.pool_)), slot_(other.slot_), conn_(std::exchange(other.conn_, nullptr)) {}

lease& lease::operator=(lease&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = std::move(other.pool_);
    slot_ = other.slot_;
    conn_ = std::exchange(other.conn_, nullptr);
  }
  return *this;
}

lease::~lease() { release(); }

void lease::release() noexcept {
  if (pool_ && conn_ != nullptr) pool_->release(slot_, *conn_);
  pool_.reset();
  conn_ = nullptr;
}

// --- pool ------------------------------------------------------------------

pool::pool(executor_type ex, pool_options opts)
    : impl_(std::make_shared<detail::pool_impl>(std::move(ex), std::move(opts))) {
  impl_->start();
}

pool::~pool() {
  try {
    if (impl_) impl_->force_close();
  } catch (...) {
    // Out of memory closing: each connection still closes with its last owner.
  }
}

pool::executor_type pool::get_executor() const noexcept { return impl_->get_executor(); }

namespace {
struct initiate_acquire {
  std::shared_ptr<detail::pool_impl> impl;
  template <class Handler>
  void operator()(Handler&& h) {
    asio::any_io_executor hex;
    using handler_executor = asio::associated_executor_t<std::decay_t<Handler>, asio::any_io_executor>;
    if constexpr (std::is_convertible_v<handler_executor, asio::any_io_executor>) {
      hex = asio::get_associated_executor(h, impl->get_executor());
    }
    impl->acquire(detail::lease_handler(std::forward<Handler>(h)), std::move(hex));
  }
};

struct initiate_share {
  std::shared_ptr<detail::pool_impl> impl;
  template <class Handler>
  void operator()(Handler&& h) {
    asio::any_io_executor hex;
    using handler_executor = asio::associated_executor_t<std::decay_t<Handler>, asio::any_io_executor>;
    if constexpr (std::is_convertible_v<handler_executor, asio::any_io_executor>) {
      hex = asio::get_associated_executor(h, impl->get_executor());
    }
    impl->acquire_shared(detail::share_handler(std::forward<Handler>(h)), std::move(hex));
  }
};

asio::awaitable<detail::shared_use> wait_for_share(const std::shared_ptr<detail::pool_impl>& impl) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, detail::shared_use)>(
      initiate_share{impl}, asio::use_awaitable);
}

// A share of an open connection: as pool::acquire_open() for leases. A
// closed one goes back (as broken: nobody joins it any more) and the next is
// tried.
asio::awaitable<detail::shared_use> share_open(std::shared_ptr<detail::pool_impl> impl, detail::shared_use u) {
  const std::size_t tries = impl->max_size() + 1;
  for (std::size_t i = 0; i < tries; ++i) {
    if (!u) u = co_await wait_for_share(impl);
    if (u->is_open()) break;
    u = detail::shared_use();
    u = impl->try_share();
  }
  if (!u) u = co_await wait_for_share(impl);
  co_return u;
}

}  // namespace

// Waits in the pool's queue (acquire() without the fast path).
asio::awaitable<lease> pool::wait_for_lease() {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, lease)>(initiate_acquire{impl_},
                                                                                               asio::use_awaitable);
}

// A lease on an open connection. One found closed (its server ended the
// session while it sat idle) goes back as broken, to be replaced, and the
// next is tried: a dead connection is never handed out while the pool knows.
asio::awaitable<lease> pool::acquire_open(lease l) {
  const std::size_t tries = impl_->max_size() + 1;
  for (std::size_t i = 0; i < tries; ++i) {
    if (!l) l = co_await wait_for_lease();
    if (l->is_open()) break;
    l = lease();  // released as broken
    l = impl_->try_acquire();
  }
  if (!l) l = co_await wait_for_lease();
  co_return l;
}

asio::awaitable<lease> pool::acquire() {
  lease l = impl_->try_acquire();
  if (!l || !l->is_open()) l = co_await acquire_open(std::move(l));
  co_return l;
}

asio::awaitable<result> pool::query_params(std::string_view sql, params params) {
  if (impl_->shares(sql)) {
    detail::shared_use u = impl_->try_share();
    if (!u || !u->is_open()) u = co_await share_open(impl_, std::move(u));
    co_return co_await u->query_params(sql, std::move(params));
  }
  lease l = impl_->try_acquire();
  if (!l || !l->is_open()) l = co_await acquire_open(std::move(l));
  co_return co_await l->query_params(sql, std::move(params));
}

asio::awaitable<std::uint64_t> pool::execute_params(std::string_view sql, params params) {
  if (impl_->shares(sql)) {
    detail::shared_use u = impl_->try_share();
    if (!u || !u->is_open()) u = co_await share_open(impl_, std::move(u));
    co_return co_await u->execute_params(sql, std::move(params));
  }
  lease l = impl_->try_acquire();
  if (!l || !l->is_open()) l = co_await acquire_open(std::move(l));
  co_return co_await l->execute_params(sql, std::move(params));
}

asio::awaitable<std::vector<result>> pool::run_batch(const batch& b, bool atomic) {
  bool share = !atomic && !b.empty() && impl_->sharing();
  for (const auto& item : b.items_) {
    if (!share) break;
    share = detail::shareable_statement(item.sql);
  }
  if (share) {
    detail::shared_use u = impl_->try_share();
    if (!u || !u->is_open()) u = co_await share_open(impl_, std::move(u));
    co_return co_await u->run_batch(b, false);
  }
  lease l = impl_->try_acquire();
  if (!l || !l->is_open()) l = co_await acquire_open(std::move(l));
  co_return co_await l->run_batch(b, atomic);
}

asio::awaitable<void> pool::wait_ready() {
  const std::size_t want = impl_->min_size();
  if (want == 0) {
    lease l = co_await acquire();  // proves that a connection opens; it stays idle
    co_return;
  }
  const auto timeout = impl_->acquire_timeout();
  const auto start = std::chrono::steady_clock::now();
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (true) {
    const detail::pool_impl::readiness r = impl_->ready_state();
    if (r.closed) throw sql_error(errc::pool_closed, "the pool is closed");
    if (r.open >= want) co_return;
    if (timeout.count() > 0 && std::chrono::steady_clock::now() - start >= timeout) {
      std::string msg = "the pool opened " + std::to_string(r.open) + " of its " + std::to_string(want) +
                        " connections (min_size) within " + std::to_string(timeout.count()) + " ms";
      if (!r.last_error.empty()) msg += "; last connection attempt failed: " + r.last_error;
      throw sql_error(errc::pool_timeout, msg);
    }
    // Polled: connects finish in milliseconds, and this runs once per
    // service start.
    t.expires_after(std::chrono::milliseconds(2));
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) throw sql_error(errc::cancelled, "wait_ready() was cancelled");
  }
}

asio::awaitable<row_stream> pool::stream_params(std::string_view sql, params params) {
  auto l = std::make_shared<lease>(co_await acquire());
  row_stream s = co_await (*l)->stream_params(sql, std::move(params));
  s.keep_alive(std::move(l));  // the connection returns when the stream ends
  co_return s;
}

asio::awaitable<transaction> pool::begin(tx_options opts) {
  auto l = std::make_unique<lease>(co_await acquire());
  connection* conn = &**l;
  co_await conn->query_params(begin_statement(opts), {});
  co_return transaction(conn, {}, std::move(l));
}

pool_stats pool::stats() const { return impl_->stats(); }

asio::awaitable<void> pool::close(std::chrono::milliseconds deadline) {
  auto impl = impl_;
  impl->shutdown();
  asio::steady_timer t(co_await asio::this_coro::executor);
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!impl->drained() && std::chrono::steady_clock::now() < until) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(asio::use_awaitable);
  }
  impl->force_close();
}

}  // namespace pgq
