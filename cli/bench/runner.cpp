#include "bench/runner.hpp"

#include "bench/random.hpp"

#include <pgq/connection.hpp>
#include <pgq/timeout.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <iostream>
#include <latch>
#include <list>
#include <memory>
#include <sstream>
#include <thread>

namespace asio = boost::asio;

namespace pgq::cli::bench {
namespace {

using clock = std::chrono::steady_clock;

double ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

// What one thread's clients measured. Counters the progress report reads
// while the run goes on are atomic; the rest is read after the threads end.
struct thread_stats {
  std::vector<std::int64_t> latencies_ns;
  std::map<std::string, std::uint64_t> errors;
  std::int64_t lag_sum_ns = 0;
  std::int64_t lag_max_ns = 0;
  std::size_t aborted_clients = 0;
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::int64_t> latency_sum_ns{0};
};

struct shared_run {
  const bench_args* args = nullptr;
  const std::vector<script>* scripts = nullptr;
  std::string dsn;
  std::optional<std::chrono::milliseconds> timeout;
  std::size_t clients = 0;
  std::int64_t scale = 1;
  clock::time_point start;
  clock::time_point deadline = clock::time_point::max();
  std::atomic<bool> stop{false};
};

struct client {
  shared_run* run = nullptr;
  thread_stats* stats = nullptr;
  std::size_t id = 0;
  pgq::connection* conn = nullptr;
  std::uint64_t rng = 0;
  std::int64_t transactions_left = 0;  // with -t: shared by the client's lanes
};

std::string error_key(const std::exception& e) {
  if (const auto* se = dynamic_cast<const pgq::sql_error*>(&e)) {
    if (!se->sqlstate().empty()) return se->sqlstate();
    return se->code().message();
  }
  return e.what();
}

asio::awaitable<pgq::result> timed(shared_run* r, asio::awaitable<pgq::result> op) {
  if (!r->timeout) co_return co_await std::move(op);
  co_return co_await pgq::with_timeout(std::move(op), *r->timeout);
}

pgq::detail::param_set bind_vars(const command& c, const std::vector<std::int64_t>& vars) {
  pgq::detail::param_set p;
  // As bigint: pgbench splices the digits into the text (an integer literal);
  // a typed parameter behaves the same ("unknown" would make :x - :y ambiguous).
  for (std::size_t v : c.params) p.add(vars[v]);
  return p;
}

// One run of the script, statement by statement. Returns false when the
// transaction failed (counted by SQLSTATE).
asio::awaitable<bool> run_script(client* c, const script& s, std::vector<std::int64_t>& vars) {
  for (const command& cmd : s.commands) {
    switch (cmd.k) {
      case command::kind::set: vars[cmd.target] = evaluate(cmd.value, vars, c->rng); break;
      case command::kind::sleep: {
        asio::steady_timer t(co_await asio::this_coro::executor,
                             std::chrono::microseconds(evaluate(cmd.value, vars, c->rng) * cmd.unit_us));
        co_await t.async_wait(asio::use_awaitable);
        break;
      }
      case command::kind::sql: {
        auto op = c->conn->query_params(cmd.sql, bind_vars(cmd, vars));
        co_await timed(c->run, std::move(op));
        break;
      }
    }
  }
  co_return true;
}

// One run of the script sent as one batch (--pipeline): all its statements
// go out back to back, so that several runs overlap on the connection.
asio::awaitable<void> run_script_batch(client* c, const script& s, std::vector<std::int64_t>& vars) {
  pgq::batch b;
  for (const command& cmd : s.commands) {
    if (cmd.k == command::kind::set) vars[cmd.target] = evaluate(cmd.value, vars, c->rng);
    else if (cmd.k == command::kind::sql) b.add(cmd.sql, bind_vars(cmd, vars));
  }
  co_await c->conn->run_batch(b);
}

bool keep_going(client* c) {
  shared_run* r = c->run;
  if (r->stop.load(std::memory_order_relaxed)) return false;
  if (r->args->transactions > 0) return c->transactions_left > 0;
  return clock::now() < r->deadline;
}

// A lane runs scripts one after another; a client has --pipeline lanes on
// its one connection.
asio::awaitable<void> lane(client* c, std::size_t lanes) {
  shared_run* r = c->run;
  const auto& scripts = *r->scripts;
  std::vector<std::vector<std::int64_t>> vars(scripts.size());
  for (std::size_t i = 0; i < scripts.size(); ++i) {
    vars[i].assign(scripts[i].variables.size(), 0);
    vars[i][0] = r->scale;
    vars[i][1] = static_cast<std::int64_t>(c->id);
  }
  const double mean_gap_us = r->args->rate > 0 ? 1e6 * static_cast<double>(r->clients * lanes) / r->args->rate : 0;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  clock::time_point schedule = clock::now();
  while (keep_going(c)) {
    if (r->args->transactions > 0) --c->transactions_left;
    if (mean_gap_us > 0) {
      const double u = uniform01(c->rng);
      schedule += std::chrono::microseconds(static_cast<std::int64_t>(-std::log(1.0 - u) * mean_gap_us));
      if (schedule >= r->deadline) break;
      timer.expires_at(schedule);
      co_await timer.async_wait(asio::use_awaitable);
    } else {
      schedule = clock::now();
    }
    const std::size_t which = scripts.size() == 1 ? 0 : pick(c->rng, scripts.size());
    const auto begun = clock::now();
    bool ok = false;
    try {
      if (lanes > 1) co_await run_script_batch(c, scripts[which], vars[which]);
      else co_await run_script(c, scripts[which], vars[which]);
      ok = true;
    } catch (const usage_error&) {
      throw;  // a script mistake (division by zero...): stop the run
    } catch (const std::exception& e) {
      if (is_cancellation(e) && r->stop.load()) throw;
      ++c->stats->errors[error_key(e)];
      c->stats->failed.fetch_add(1, std::memory_order_relaxed);
      if (!c->conn->is_open()) throw;  // the client is done
    }
    if (ok) {
      const auto end = clock::now();
      const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(end - schedule).count();
      c->stats->latencies_ns.push_back(ns);
      c->stats->latency_sum_ns.fetch_add(ns, std::memory_order_relaxed);
      c->stats->done.fetch_add(1, std::memory_order_relaxed);
      if (mean_gap_us > 0) {
        const std::int64_t lag = std::chrono::duration_cast<std::chrono::nanoseconds>(begun - schedule).count();
        c->stats->lag_sum_ns += lag;
        c->stats->lag_max_ns = std::max(c->stats->lag_max_ns, lag);
      }
    }
    if (lanes == 1) {
      // A failed script may leave its transaction open: end it before the next.
      const auto st = c->conn->transaction_status();
      if (st == pgq::tx_status::in_transaction || st == pgq::tx_status::in_error) {
        co_await c->conn->query_params("ROLLBACK", {});
      }
    }
  }
}

// A thread: its own io_context, its clients and their connections.
struct bench_thread {
  asio::io_context ctx{1};
  thread_stats stats;
  std::list<asio::cancellation_signal> signals;
  std::vector<std::unique_ptr<pgq::connection>> conns;
  std::vector<client> clients;
  std::string connect_error;
  int connect_code = exit_code::ok;
  std::string fatal;  // a script mistake found while running
  clock::time_point end;
  // Keeps run() going between connecting and the start signal.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{ctx.get_executor()};
};

asio::awaitable<void> connect_all(bench_thread* t, std::string dsn) {
  for (auto& c : t->clients) {
    auto conn = std::make_unique<pgq::connection>(co_await asio::this_coro::executor);
    try {
      co_await conn->connect(dsn);
    } catch (const std::exception& e) {
      std::ostringstream msg;
      print_error(msg, e);
      t->connect_error = msg.str();
      t->connect_code = exit_code::connect;
      co_return;
    }
    c.conn = conn.get();
    t->conns.push_back(std::move(conn));
  }
}

// Waits for what a cancelled client left on its connection: the server has
// then acknowledged the cancel and rolled back, before the process ends.
asio::awaitable<void> settle(pgq::connection* conn) {
  try {
    auto op = conn->query_params("", {});
    co_await pgq::with_timeout(std::move(op), std::chrono::seconds(2));
  } catch (const std::exception&) {
    // closing is all that is left
  }
}

// Ends a thread's work: closes its connections and lets its run() return.
void finish_thread(bench_thread* t) {
  t->conns.clear();
  t->guard.reset();
}

void after_lanes(bench_thread* t, shared_run* r) {
  t->end = clock::now();
  if (!r->stop.load() || t->conns.empty()) {
    finish_thread(t);
    return;
  }
  auto left = std::make_shared<std::size_t>(t->conns.size());
  for (auto& conn : t->conns) {
    asio::co_spawn(t->ctx, settle(conn.get()), [t, left](const std::exception_ptr&) {
      if (--*left == 0) finish_thread(t);
    });
  }
}

// Runs on the thread's context once every thread has connected.
void start_lanes(bench_thread* t, shared_run* r) {
  if (t->connect_code != exit_code::ok || r->stop.load() || t->clients.empty()) {
    finish_thread(t);
    return;
  }
  auto left = std::make_shared<std::size_t>(t->clients.size() * r->args->pipeline);
  for (auto& c : t->clients) {
    for (std::size_t l = 0; l < r->args->pipeline; ++l) {
      auto on_lane_done = [t, r, left](const std::exception_ptr& e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const usage_error& x) {
            if (t->fatal.empty()) t->fatal = x.what();
            r->stop.store(true);
          } catch (const std::exception& x) {
            if (!(r->stop.load() && is_cancellation(x))) ++t->stats.aborted_clients;
          }
        }
        if (--*left == 0) after_lanes(t, r);
      };
      asio::co_spawn(t->ctx, lane(&c, r->args->pipeline),
                     asio::bind_cancellation_slot(t->signals.emplace_back().slot(), std::move(on_lane_done)));
    }
  }
}

void thread_main(bench_thread* t, shared_run* r, std::latch* connected, const std::function<void()>& on_done) {
  asio::co_spawn(t->ctx, connect_all(t, r->dsn), [connected](const std::exception_ptr&) { connected->count_down(); });
  t->ctx.run();
  on_done();
}

}  // namespace

run_result run_load(const run_plan& plan) {
  const bench_args& a = *plan.args;
  shared_run r;
  r.args = plan.args;
  r.scripts = plan.scripts;
  r.dsn = plan.dsn;
  r.timeout = plan.timeout;
  r.clients = plan.clients;
  r.scale = plan.scale;

  std::vector<std::unique_ptr<bench_thread>> threads;
  for (std::size_t i = 0; i < a.threads; ++i) threads.push_back(std::make_unique<bench_thread>());
  std::uint64_t seed = static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
  for (std::size_t c = 0; c < r.clients; ++c) {
    client cl;
    cl.run = &r;
    cl.id = c;
    cl.rng = next_random_seed(seed);
    cl.transactions_left = a.transactions;
    threads[c % a.threads]->clients.push_back(cl);
  }
  for (auto& t : threads) {
    for (auto& c : t->clients) c.stats = &t->stats;
  }

  asio::io_context main_ctx(1);
  std::size_t running = threads.size();
  asio::signal_set sigs(main_ctx, SIGINT);
  asio::steady_timer progress_timer(main_ctx);
  bool interrupted = false;
  auto all_done = [&] {
    boost::system::error_code ignored;
    sigs.cancel(ignored);
    progress_timer.cancel();
  };
  std::latch connected(static_cast<std::ptrdiff_t>(threads.size()));
  std::vector<std::thread> workers;
  for (auto& t : threads) {
    bench_thread* tp = t.get();
    auto on_done = [&main_ctx, &running, &all_done] {
      asio::post(main_ctx, [&running, &all_done] {
        if (--running == 0) all_done();
      });
    };
    workers.emplace_back(thread_main, tp, &r, &connected, on_done);
  }
  connected.wait();
  int rc = exit_code::ok;
  for (auto& t : threads) {
    if (t->connect_code != exit_code::ok) {
      if (rc == exit_code::ok) std::cerr << t->connect_error;
      rc = t->connect_code;
      r.stop.store(true);
    }
  }
  r.start = clock::now();
  if (a.duration > 0) {
    r.deadline = r.start + std::chrono::microseconds(static_cast<std::int64_t>(a.duration * 1e6));
  }
  for (auto& t : threads) {
    bench_thread* tp = t.get();
    asio::post(tp->ctx, [tp, &r] { start_lanes(tp, &r); });
  }

  std::function<void(const boost::system::error_code&, int)> on_signal;
  on_signal = [&](const boost::system::error_code& ec, int) {
    if (ec) return;
    if (interrupted) std::_Exit(exit_code::interrupted);
    interrupted = true;
    std::cerr << "pgq: interrupted, cancelling\n";
    r.stop.store(true);
    for (auto& t : threads) {
      bench_thread* tp = t.get();
      asio::post(tp->ctx, [tp] {
        for (auto& s : tp->signals) s.emit(asio::cancellation_type::terminal);
      });
    }
    sigs.async_wait(on_signal);
  };
  sigs.async_wait(on_signal);

  std::uint64_t last_done = 0;
  std::int64_t last_sum = 0;
  auto last_time = r.start;
  std::function<void(const boost::system::error_code&)> on_progress;
  const auto period = std::chrono::microseconds(static_cast<std::int64_t>(a.progress * 1e6));
  on_progress = [&](const boost::system::error_code& ec) {
    if (ec) return;
    std::uint64_t done = 0;
    std::uint64_t failed = 0;
    std::int64_t sum = 0;
    for (auto& t : threads) {
      done += t->stats.done.load(std::memory_order_relaxed);
      failed += t->stats.failed.load(std::memory_order_relaxed);
      sum += t->stats.latency_sum_ns.load(std::memory_order_relaxed);
    }
    const auto now = clock::now();
    const double secs = std::chrono::duration<double>(now - last_time).count();
    const std::uint64_t n = done - last_done;
    std::cerr << std::fixed << std::setprecision(1)
              << "progress: " << std::chrono::duration<double>(now - r.start).count() << " s, "
              << (secs > 0 ? static_cast<double>(n) / secs : 0.0) << " tps, lat " << std::setprecision(3)
              << (n > 0 ? ms(sum - last_sum) / static_cast<double>(n) : 0.0) << " ms, " << failed << " failed\n";
    std::cerr.unsetf(std::ios::floatfield);
    last_done = done;
    last_sum = sum;
    last_time = now;
    progress_timer.expires_at(progress_timer.expiry() + period);
    progress_timer.async_wait(on_progress);
  };
  if (a.progress > 0 && rc == exit_code::ok) {
    progress_timer.expires_at(r.start + period);
    progress_timer.async_wait(on_progress);
  }
  main_ctx.run();
  for (auto& w : workers) w.join();

  run_result out;
  out.connect_code = rc;
  out.interrupted = interrupted;
  for (auto& t : threads) {
    if (!t->fatal.empty()) {
      out.fatal = t->fatal;
      break;
    }
  }
  clock::time_point end = r.start;
  for (auto& t : threads) end = std::max(end, t->end);
  out.elapsed_s = std::chrono::duration<double>(end - r.start).count();
  for (auto& t : threads) {
    out.latencies_ns.insert(out.latencies_ns.end(), t->stats.latencies_ns.begin(), t->stats.latencies_ns.end());
    for (const auto& [k, v] : t->stats.errors) out.errors[k] += v;
    out.failed += t->stats.failed.load();
    out.aborted_clients += t->stats.aborted_clients;
    out.lag_sum_ns += t->stats.lag_sum_ns;
    out.lag_max_ns = std::max(out.lag_max_ns, t->stats.lag_max_ns);
  }
  return out;
}

}  // namespace pgq::cli::bench
