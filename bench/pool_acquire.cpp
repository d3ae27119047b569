// pgq_bench_pool_acquire - what a pool lease costs when no query runs.
//
// Three phases, each on a fresh io_context and a fresh pool that is first
// warmed up (all max_size connections opened, then returned):
//   uncontended  one task: acquire, release, K times;
//   contended    many tasks on one thread: acquire, yield once, release;
//   threaded     the same on an io_context run by several threads.
// Each phase then checks the pool's statistics against what the benchmark
// did, and checks that no connection was ever leased twice at once. Any
// discrepancy makes the exit status 1; a phase that stops making progress is
// reported by a watchdog (exit status 3).
//
// See bench/README.md.

#include <pgq/connection.hpp>
#include <pgq/error.hpp>
#include <pgq/pool.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

using wall_clock = std::chrono::steady_clock;

struct bench_options {
  std::string dsn;
  std::size_t pool_size = 8;
  std::uint64_t cycles = 200000;
  std::size_t tasks = 1000;
  unsigned threads = 2;
  std::chrono::seconds timeout{120};
  std::chrono::milliseconds acquire_timeout{30000};  // the pool's default
  bool json = false;
};

struct phase_spec {
  std::string name;
  unsigned threads = 1;
  std::size_t tasks = 1;
  bool yield_while_held = false;
};

// User plus system time of the whole process (every thread).
std::chrono::nanoseconds cpu_time() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto of = [](const timeval& tv) { return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec); };
  return of(ru.ru_utime) + of(ru.ru_stime);
}

void raise_to(std::atomic<std::size_t>& peak, std::size_t value) {
  std::size_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

// What the tasks of one phase share. Only atomics are touched by several
// threads; `conns` is written before the tasks start.
struct run_state {
  explicit run_state(std::size_t pool_size) : busy(pool_size) {}

  std::atomic<std::int64_t> budget{0};  // cycles not yet started
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::size_t> alive{0};  // tasks not yet finished
  std::atomic<std::size_t> in_acquire{0};
  std::atomic<std::size_t> in_acquire_peak{0};
  std::atomic<std::size_t> held{0};
  std::atomic<std::size_t> held_peak{0};
  std::atomic<std::uint64_t> double_grants{0};  // a connection leased to two tasks at once
  std::atomic<std::uint64_t> unknown_conns{0};  // a connection not opened by the warm-up

  std::vector<const pgq::connection*> conns;  // the warm-up's connections
  std::vector<std::atomic<bool>> busy;        // per entry of `conns`: leased now

  // Written by the task that finishes last, published by `finished`.
  wall_clock::time_point end_wall;
  std::chrono::nanoseconds end_cpu{0};
  std::atomic<bool> finished{false};

  // Wakes the phase's driver early; lives here, not in the driver's frame,
  // because a task's last post() may run after the driver returned.
  std::optional<asio::steady_timer> wake;

  std::mutex errors_mutex;
  std::vector<std::string> errors;

  void fail(std::string what) {
    std::lock_guard lock(errors_mutex);
    if (errors.size() < 10) errors.push_back(std::move(what));
  }

  std::size_t hold(const pgq::connection* c) {
    raise_to(held_peak, held.fetch_add(1, std::memory_order_relaxed) + 1);
    auto it = std::find(conns.begin(), conns.end(), c);
    if (it == conns.end()) {
      unknown_conns.fetch_add(1, std::memory_order_relaxed);
      return conns.size();
    }
    const auto i = static_cast<std::size_t>(it - conns.begin());
    if (busy[i].exchange(true, std::memory_order_acq_rel)) double_grants.fetch_add(1, std::memory_order_relaxed);
    return i;
  }

  void unhold(std::size_t i) {
    if (i < busy.size()) busy[i].store(false, std::memory_order_release);
    held.fetch_sub(1, std::memory_order_relaxed);
  }
};

struct phase_result {
  phase_spec spec;
  std::uint64_t cycles = 0;  // asked for
  std::uint64_t done = 0;    // completed
  std::chrono::nanoseconds wall{0};
  std::chrono::nanoseconds cpu{0};
  pgq::pool_stats before;  // after the warm-up, settled
  pgq::pool_stats after;   // after the run, settled, before close()
  pgq::pool_stats closed;  // after close()
  std::size_t waiting_peak = 0;
  std::size_t held_peak = 0;
  std::uint64_t double_grants = 0;
  std::uint64_t unknown_conns = 0;
  std::vector<std::string> failures;

  std::uint64_t acquires() const { return after.acquires - before.acquires; }
  double ns_per_cycle() const { return done ? static_cast<double>(wall.count()) / static_cast<double>(done) : 0.0; }
  double cpu_ns_per_cycle() const { return done ? static_cast<double>(cpu.count()) / static_cast<double>(done) : 0.0; }
  double avg_wait_ns() const {
    const auto n = acquires();
    return n ? static_cast<double>((after.acquire_wait_total - before.acquire_wait_total).count()) /
                   static_cast<double>(n)
             : 0.0;
  }
};

// One task: acquire, optionally yield once while holding the lease, release;
// until the shared budget of cycles is spent. A free function with plain
// parameters: GCC 12 miscompiles some capturing coroutine lambdas.
asio::awaitable<void> cycle_task(pgq::pool* pool, run_state* st, bool yield_while_held) {
  while (st->budget.fetch_sub(1, std::memory_order_relaxed) > 0) {
    raise_to(st->in_acquire_peak, st->in_acquire.fetch_add(1, std::memory_order_relaxed) + 1);
    pgq::lease l = co_await pool->acquire();
    st->in_acquire.fetch_sub(1, std::memory_order_relaxed);
    const std::size_t i = st->hold(&l.get());
    if (yield_while_held) co_await asio::post(asio::use_awaitable);
    st->unhold(i);
    l.release();
    st->done.fetch_add(1, std::memory_order_relaxed);
  }
}

// Waits until every lease is back and nobody waits: releases are handed to
// the connection's strand, so the last ones land a little after the tasks end.
asio::awaitable<bool> settle(pgq::pool* pool, std::size_t pool_size) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  const auto deadline = wall_clock::now() + 5s;
  while (true) {
    const auto s = pool->stats();
    if (s.in_use == 0 && s.waiting == 0 && s.connecting == 0 && s.idle == pool_size) co_return true;
    if (wall_clock::now() > deadline) co_return false;
    t.expires_after(1ms);
    co_await t.async_wait(asio::use_awaitable);
  }
}

std::string stats_line(const pgq::pool_stats& s) {
  return "size=" + std::to_string(s.size) + " idle=" + std::to_string(s.idle) + " in_use=" + std::to_string(s.in_use) +
         " connecting=" + std::to_string(s.connecting) + " waiting=" + std::to_string(s.waiting) +
         " acquires=" + std::to_string(s.acquires) + " timeouts=" + std::to_string(s.timeouts) +
         " cancelled_waits=" + std::to_string(s.cancelled_waits) + " created=" + std::to_string(s.created) +
         " connect_failures=" + std::to_string(s.connect_failures) + " resets=" + std::to_string(s.resets);
}

asio::awaitable<void> measure(pgq::pool* pool, asio::io_context::executor_type task_ex, phase_spec spec,
                              std::uint64_t cycles, std::size_t pool_size, run_state* st, phase_result* out) {
  // Warm-up: hold max_size leases at once, so that every connection is open.
  {
    std::vector<pgq::lease> leases;
    for (std::size_t i = 0; i < pool_size; ++i) leases.push_back(co_await pool->acquire());
    for (const auto& l : leases) st->conns.push_back(&l.get());
    std::vector<const pgq::connection*> sorted = st->conns;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      out->failures.push_back("warm-up: the same connection was leased twice");
    }
  }
  if (!co_await settle(pool, pool_size)) {
    out->failures.push_back("warm-up: the pool did not settle within 5 s: " + stats_line(pool->stats()));
    co_return;
  }
  out->before = pool->stats();

  st->budget.store(static_cast<std::int64_t>(cycles));
  st->alive.store(spec.tasks);
  const auto driver_ex = co_await asio::this_coro::executor;
  const auto start_wall = wall_clock::now();
  const auto start_cpu = cpu_time();
  for (std::size_t i = 0; i < spec.tasks; ++i) {
    asio::co_spawn(task_ex, cycle_task(pool, st, spec.yield_while_held), [st, driver_ex](const std::exception_ptr& e) {
      if (e) st->fail(describe(e));
      if (st->alive.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        st->end_wall = wall_clock::now();
        st->end_cpu = cpu_time();
        st->finished.store(true, std::memory_order_release);
        asio::post(driver_ex, [st] { st->wake->cancel(); });
      }
    });
  }
  while (!st->finished.load(std::memory_order_acquire)) {
    st->wake->expires_after(100ms);
    co_await st->wake->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  out->wall = st->end_wall - start_wall;
  out->cpu = st->end_cpu - start_cpu;

  if (!co_await settle(pool, pool_size)) {
    out->failures.push_back("after the run: the pool did not settle within 5 s: " + stats_line(pool->stats()));
  }
  out->after = pool->stats();
}

// Runs a phase, then always closes the pool: its timer would otherwise keep
// the io_context running.
asio::awaitable<void> drive_phase(pgq::pool* pool, asio::io_context::executor_type task_ex, phase_spec spec,
                                  std::uint64_t cycles, std::size_t pool_size, run_state* st, phase_result* out) {
  try {
    co_await measure(pool, task_ex, spec, cycles, pool_size, st, out);
  } catch (const std::exception& e) {
    out->failures.push_back(std::string("phase aborted: ") + e.what());
  }
  co_await pool->close(10s);
  out->closed = pool->stats();
}

// Ends the process if a phase runs longer than `limit`, saying where it stood.
class watchdog {
 public:
  watchdog(std::string phase, const pgq::pool* pool, const run_state* st, std::chrono::seconds limit)
      : thread_([this, phase = std::move(phase), pool, st, limit] {
          std::unique_lock lock(mutex_);
          if (cv_.wait_for(lock, limit, [this] { return stopped_; })) return;
          std::fprintf(stderr,
                       "pgq_bench_pool_acquire: phase '%s' did not finish within %lld s (a hang?)\n"
                       "  bench: cycles done=%llu, tasks alive=%zu, tasks in acquire()=%zu, leases held=%zu\n"
                       "  pool:  %s\n",
                       phase.c_str(), static_cast<long long>(limit.count()),
                       static_cast<unsigned long long>(st->done.load()), st->alive.load(), st->in_acquire.load(),
                       st->held.load(), stats_line(pool->stats()).c_str());
          std::fflush(stderr);
          std::_Exit(3);
        }) {}
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopped_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

void check(phase_result& r, bool ok, const std::string& what) {
  if (!ok) r.failures.push_back(what);
}

// The invariants: the pool's numbers agree with what the tasks did.
void verify(phase_result& r, std::size_t pool_size) {
  const auto& a = r.after;
  auto n = [](auto v) { return std::to_string(v); };
  check(r, r.done == r.cycles, "cycles done " + n(r.done) + " != cycles asked " + n(r.cycles));
  check(r, r.acquires() == r.cycles, "acquires during the run " + n(r.acquires()) + " != cycles " + n(r.cycles));
  check(r, a.acquires == r.cycles + pool_size,
        "acquires " + n(a.acquires) + " != cycles + warm-up " + n(r.cycles + pool_size));
  check(r, a.timeouts == 0, "timeouts " + n(a.timeouts) + " != 0");
  check(r, a.cancelled_waits == 0, "cancelled_waits " + n(a.cancelled_waits) + " != 0");
  check(r, a.in_use == 0, "in_use at the end " + n(a.in_use) + " != 0");
  check(r, a.waiting == 0, "waiting at the end " + n(a.waiting) + " != 0");
  check(r, a.size == pool_size && a.idle == pool_size,
        "size/idle at the end " + n(a.size) + "/" + n(a.idle) + " != " + n(pool_size));
  check(r, a.created == pool_size, "connections created " + n(a.created) + " != " + n(pool_size));
  check(r, a.connect_failures == 0, "connect_failures " + n(a.connect_failures) + " != 0");
  const auto closed_early = a.closed_idle + a.closed_lifetime + a.closed_broken + a.closed_health_check +
                            a.closed_reset_failed + a.closed_pool_closed;
  check(r, closed_early == 0, "connections closed during the run: " + n(closed_early));
  check(r, a.resets == 0, "resets " + n(a.resets) + " != 0 (every release was clean)");
  check(r, a.acquire_wait_total >= r.before.acquire_wait_total, "acquire_wait_total went down");
  check(r, r.held_peak <= pool_size, "leases held at once " + n(r.held_peak) + " > max_size " + n(pool_size));
  check(r, r.double_grants == 0, "a connection was leased to two tasks at once, " + n(r.double_grants) + " times");
  check(r, r.unknown_conns == 0, "leases of connections not opened by the warm-up: " + n(r.unknown_conns));
  const auto& c = r.closed;
  check(r, c.size == 0 && c.in_use == 0 && c.idle == 0,
        "after close(): size/in_use/idle " + n(c.size) + "/" + n(c.in_use) + "/" + n(c.idle) + " != 0");
  check(r, c.closed_pool_closed == pool_size,
        "after close(): closed_pool_closed " + n(c.closed_pool_closed) + " != " + n(pool_size));
}

phase_result run_phase(const bench_options& opt, const phase_spec& spec) {
  phase_result res;
  res.spec = spec;
  res.cycles = opt.cycles;
  asio::io_context ctx(static_cast<int>(spec.threads));
  run_state st(opt.pool_size);  // after ctx: its timer must go first
  {
    pgq::pool_options po;
    po.conninfo = opt.dsn;
    po.strand_per_connection = spec.threads > 1;  // one thread runs ctx: strands would only cost
    po.max_size = opt.pool_size;
    po.acquire_timeout = opt.acquire_timeout;
    pgq::pool pool(ctx.get_executor(), std::move(po));
    auto driver_ex = asio::make_strand(ctx);
    st.wake.emplace(driver_ex);
    watchdog wd(spec.name, &pool, &st, opt.timeout);
    asio::co_spawn(driver_ex, drive_phase(&pool, ctx.get_executor(), spec, opt.cycles, opt.pool_size, &st, &res),
                   [&res](const std::exception_ptr& e) {
                     if (e) res.failures.push_back("driver: " + describe(e));
                   });
    std::vector<std::thread> helpers;
    for (unsigned i = 1; i < spec.threads; ++i) helpers.emplace_back([&ctx] { ctx.run(); });
    ctx.run();
    for (auto& t : helpers) t.join();
  }
  res.done = st.done.load();
  res.waiting_peak = st.in_acquire_peak.load();
  res.held_peak = st.held_peak.load();
  res.double_grants = st.double_grants.load();
  res.unknown_conns = st.unknown_conns.load();
  for (auto& e : st.errors) res.failures.push_back("task: " + e);
  verify(res, opt.pool_size);
  return res;
}

asio::awaitable<void> probe(std::string dsn, int* server_version) {
  pgq::connection c(co_await asio::this_coro::executor);
  co_await c.connect(dsn);
  *server_version = c.server_version();
  c.close();
}

// Fails fast on a bad DSN (the pool would retry until acquire_timeout).
int server_version_of(const std::string& dsn) {
  asio::io_context ctx(1);
  int version = 0;
  std::exception_ptr failure;
  asio::co_spawn(ctx, probe(dsn, &version), [&failure](std::exception_ptr e) { failure = std::move(e); });
  ctx.run();
  if (failure) std::rethrow_exception(failure);
  return version;
}

void print_table(const bench_options& opt, int server_version, const std::vector<phase_result>& results) {
  std::printf(
      "pool acquire/release, no queries: max_size %zu, %llu cycles per phase, acquire_timeout %lld ms, "
      "server %d\n\n",
      opt.pool_size, static_cast<unsigned long long>(opt.cycles), static_cast<long long>(opt.acquire_timeout.count()),
      server_version);
  std::printf("%-12s %7s %6s %9s %10s %12s %12s %9s %9s %8s  %s\n", "phase", "threads", "tasks", "cycles", "ns/cycle",
              "cpu ns/cycle", "avg wait ns", "wait peak", "held peak", "timeouts", "result");
  for (const auto& r : results) {
    std::printf("%-12s %7u %6zu %9llu %10.1f %12.1f %12.1f %9zu %9zu %8llu  %s\n", r.spec.name.c_str(), r.spec.threads,
                r.spec.tasks, static_cast<unsigned long long>(r.done), r.ns_per_cycle(), r.cpu_ns_per_cycle(),
                r.avg_wait_ns(), r.waiting_peak, r.held_peak, static_cast<unsigned long long>(r.after.timeouts),
                r.failures.empty() ? "ok" : "FAILED");
  }
  std::printf(
      "\nns/cycle: wall time / cycles; cpu ns/cycle: process user+sys (all threads) / cycles;\n"
      "avg wait: pool's acquire_wait_total / acquires during the run; wait peak: most tasks\n"
      "inside acquire() at once; held peak: most leases held at once (<= max_size).\n");
  for (const auto& r : results) {
    for (const auto& f : r.failures) std::printf("FAILED %s: %s\n", r.spec.name.c_str(), f.c_str());
  }
}

nlohmann::ordered_json stats_json(const pgq::pool_stats& s) {
  return {{"size", s.size},
          {"idle", s.idle},
          {"in_use", s.in_use},
          {"connecting", s.connecting},
          {"waiting", s.waiting},
          {"acquires", s.acquires},
          {"acquire_wait_total_ns", s.acquire_wait_total.count()},
          {"timeouts", s.timeouts},
          {"cancelled_waits", s.cancelled_waits},
          {"created", s.created},
          {"connect_failures", s.connect_failures},
          {"closed_idle", s.closed_idle},
          {"closed_lifetime", s.closed_lifetime},
          {"closed_broken", s.closed_broken},
          {"closed_health_check", s.closed_health_check},
          {"closed_reset_failed", s.closed_reset_failed},
          {"closed_pool_closed", s.closed_pool_closed},
          {"resets", s.resets}};
}

void print_json(const bench_options& opt, int server_version, const std::vector<phase_result>& results) {
  nlohmann::ordered_json phases = nlohmann::ordered_json::array();
  bool ok = true;
  for (const auto& r : results) {
    ok = ok && r.failures.empty();
    phases.push_back({{"name", r.spec.name},
                      {"threads", r.spec.threads},
                      {"tasks", r.spec.tasks},
                      {"yield_while_held", r.spec.yield_while_held},
                      {"cycles", r.done},
                      {"wall_ns", r.wall.count()},
                      {"cpu_ns", r.cpu.count()},
                      {"ns_per_cycle", r.ns_per_cycle()},
                      {"cpu_ns_per_cycle", r.cpu_ns_per_cycle()},
                      {"acquires", r.acquires()},
                      {"avg_acquire_wait_ns", r.avg_wait_ns()},
                      {"waiting_peak", r.waiting_peak},
                      {"held_peak", r.held_peak},
                      {"stats", stats_json(r.after)},
                      {"ok", r.failures.empty()},
                      {"failures", r.failures}});
  }
  nlohmann::ordered_json doc = {{"benchmark", "pool_acquire"},
                                {"pool_size", opt.pool_size},
                                {"cycles", opt.cycles},
                                {"acquire_timeout_ms", opt.acquire_timeout.count()},
                                {"server_version", server_version},
                                {"hardware_threads", std::thread::hardware_concurrency()},
                                {"phases", std::move(phases)},
                                {"ok", ok}};
  std::printf("%s\n", doc.dump(2).c_str());
}

constexpr const char* usage_text =
    "usage: pgq_bench_pool_acquire [--dsn DSN] [--size N] [--cycles K] [--tasks T]\n"
    "                              [--threads N] [--acquire-timeout MS]\n"
    "                              [--timeout SECONDS] [--json]\n"
    "  --dsn       libpq conninfo or URI (default: $PGQ_DSN, then $PGQ_TEST_DSN)\n"
    "  --size      pool max_size (default 8)\n"
    "  --cycles    acquire/release cycles per phase (default 200000)\n"
    "  --tasks     tasks of the contended phases (default 1000)\n"
    "  --threads   threads of the last phase (default 2)\n"
    "  --acquire-timeout  the pool's acquire_timeout in ms, 0: wait forever (default 30000)\n"
    "  --timeout   a phase running longer is reported as a hang (default 120)\n"
    "  --json      print one JSON object instead of the table\n"
    "exit status: 0 all invariants hold, 1 one failed, 2 usage or connection error, 3 hang\n";

template <class T>
bool parse_number(std::string_view text, T& out) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0) return false;
  out = value;
  return true;
}

// Returns false (after saying why) on a bad command line.
bool parse_args(int argc, char** argv, bench_options& opt) {
  std::optional<std::string> dsn;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto next = [&](std::string_view& v) {
      if (has_value) {
        v = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      v = argv[++i];
      return true;
    };
    std::string_view v;
    bool ok = true;
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    } else if (arg == "--json") {
      opt.json = true;
    } else if (arg == "--dsn") {
      ok = next(v);
      if (ok) dsn = std::string(v);
    } else if (arg == "--size") {
      ok = next(v) && parse_number(v, opt.pool_size);
    } else if (arg == "--cycles") {
      ok = next(v) && parse_number(v, opt.cycles);
    } else if (arg == "--tasks") {
      ok = next(v) && parse_number(v, opt.tasks);
    } else if (arg == "--threads") {
      ok = next(v) && parse_number(v, opt.threads);
    } else if (arg == "--acquire-timeout") {
      long long ms = 0;
      ok = next(v) && (v == "0" || parse_number(v, ms));
      if (ok) opt.acquire_timeout = std::chrono::milliseconds(ms);
    } else if (arg == "--timeout") {
      long long s = 0;
      ok = next(v) && parse_number(v, s);
      if (ok) opt.timeout = std::chrono::seconds(s);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "pgq_bench_pool_acquire: bad argument '%s'\n%s", argv[i], usage_text);
      return false;
    }
  }
  if (!dsn) {
    for (const char* var : {"PGQ_DSN", "PGQ_TEST_DSN"}) {
      if (const char* env = std::getenv(var); env != nullptr && *env != '\0') {
        dsn = env;
        break;
      }
    }
  }
  if (!dsn) {
    std::fprintf(stderr, "pgq_bench_pool_acquire: no server: pass --dsn or set PGQ_DSN\n%s", usage_text);
    return false;
  }
  opt.dsn = *dsn;
  return true;
}

}  // namespace

int main(int argc, char** argv) try {
  bench_options opt;
  if (!parse_args(argc, argv, opt)) return 2;

  int server_version = 0;
  try {
    server_version = server_version_of(opt.dsn);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgq_bench_pool_acquire: cannot connect: %s\n", e.what());
    return 2;
  }

  const std::vector<phase_spec> specs = {
      {"uncontended", 1, 1, false},
      {"contended", 1, opt.tasks, true},
      {"threaded", opt.threads, opt.tasks, true},
  };
  std::vector<phase_result> results;
  results.reserve(specs.size());
  for (const auto& spec : specs) results.push_back(run_phase(opt, spec));

  if (opt.json) {
    print_json(opt, server_version, results);
  } else {
    print_table(opt, server_version, results);
  }
  const bool ok = std::all_of(results.begin(), results.end(), [](const phase_result& r) { return r.failures.empty(); });
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "pgq_bench_pool_acquire: %s\n", e.what());
  return 1;
}
