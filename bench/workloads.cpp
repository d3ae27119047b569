// pgq_bench_workloads - pgq against hand-written libpq on three workloads.
//
//   W1  N sequential `SELECT 1` on one connection (latency bound);
//   W2  pgbench's point select on C connections, one query in flight on each;
//   W3  the point select on one connection with D queries in flight.
//   W4  N times a 100,000-row result (int, text, numeric, timestamptz), every
//       value decoded (pgq: binary results after the first run; libpq: text).
//   W5  N rows (int, text, float8) into an unlogged table: W5c by COPY, W5i by
//       multi-row INSERTs (R rows each) in one transaction, W5p by single-row
//       INSERTs pipelined in one transaction; W5o reads them back by COPY TO.
//   stream / result (pgq only): N rows (int, text, float8) read with
//       conn.stream() / as one pgq::result, for the peak-RSS figure.
//
// --impl pgq runs them with pgq's coroutines; --impl libpq with the loops
// libpq users (and pgbench) write: blocking PQexecPrepared for W1, a poll()
// loop over non-blocking connections for W2, pipeline mode for W3 and W5p,
// PQputCopyData / PQgetCopyData for W5c / W5o. Every
// value is decoded and checked. Prints one JSON line. See bench/README.md.

#include <pgq/connection.hpp>
#include <pgq/copy.hpp>
#include <pgq/error.hpp>
#include <pgq/pool.hpp>
#include <pgq/result.hpp>
#include <pgq/stream.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <dlfcn.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;

namespace {

constexpr std::string_view select_one_sql = "SELECT 1";
constexpr std::string_view point_sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
constexpr std::string_view wide_sql = "SELECT i, i::text, i * 1.5, now() FROM generate_series(1, 100000) i";
constexpr std::uint64_t wide_rows = 100000;

struct bench_options {
  std::string dsn;
  std::string workload = "W1";
  std::string impl = "pgq";
  std::uint64_t queries = 0;  // 0: the workload's default
  std::size_t connections = 10;
  std::size_t depth = 100;
  int scale = 1;
  bool json = false;
  bool single_thread_pool = false;         // W2: pool_options::strand_per_connection = false
  std::uint64_t rows_per_insert = 1000;    // W5i
  std::size_t threads = 1;                 // W2, pgq: threads running the io_context
  std::optional<std::size_t> share_depth;  // W2, W2s: pool_options::share_depth (unset: the pool's default)
};

struct measurement {
  std::uint64_t queries = 0;
  double seconds = 0;
  double cpu_seconds = 0;
};

long max_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

double cpu_now() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto of = [](const timeval& tv) { return double(tv.tv_sec) + double(tv.tv_usec) / 1e6; };
  return of(ru.ru_utime) + of(ru.ru_stime);
}

// Wall and CPU clocks of the timed section.
class stopwatch {
 public:
  void start() {
    cpu0_ = cpu_now();
    wall0_ = std::chrono::steady_clock::now();
  }
  measurement stop(std::uint64_t queries) const {
    auto wall = std::chrono::steady_clock::now() - wall0_;
    return {queries, std::chrono::duration<double>(wall).count(), cpu_now() - cpu0_};
  }

 private:
  double cpu0_ = 0;
  std::chrono::steady_clock::time_point wall0_{};
};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

// ------------------------------------------------------------------ W5 data

// Row i of every W5 workload and of the streams: (i, 'row <i>', i * 0.25).
constexpr std::string_view w5_copy_in_sql = "COPY pgq_bench_w5 (i, t, f) FROM STDIN";
constexpr std::string_view w5_copy_in_binary_sql = "COPY pgq_bench_w5 (i, t, f) FROM STDIN (FORMAT binary)";
constexpr std::string_view w5_copy_out_sql = "COPY pgq_bench_w5 (i, t, f) TO STDOUT";
constexpr std::string_view w5_insert_one_sql = "INSERT INTO pgq_bench_w5 (i, t, f) VALUES ($1, $2, $3)";
constexpr std::string_view rows_sql = "SELECT i, 'row ' || i, i * 0.25::float8 FROM generate_series(1, $1) i";

void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_label(std::string& out, std::uint64_t i) {
  out += "row ";
  append_number(out, i);
}

double row_float(std::uint64_t i) { return static_cast<double>(i) * 0.25; }

void append_float(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Row i in COPY's text format: what the libpq loop sends and what the file
// for `psql \copy` holds.
void append_copy_row(std::string& out, std::uint64_t i) {
  append_number(out, i);
  out += '\t';
  append_label(out, i);
  out += '\t';
  append_float(out, row_float(i));
  out += '\n';
}

// True when `label` is "row <i>".
bool label_is(std::string_view label, std::uint64_t i) {
  if (label.size() < 5 || label.substr(0, 4) != "row ") return false;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(label.data() + 4, label.data() + label.size(), v);
  return ec == std::errc() && p == label.data() + label.size() && v == i;
}

// "INSERT INTO pgq_bench_w5 (i, t, f) VALUES ($1, $2, $3), ($4, $5, $6), ..."
std::string multi_insert_sql(std::uint64_t rows) {
  std::string s = "INSERT INTO pgq_bench_w5 (i, t, f) VALUES ";
  for (std::uint64_t r = 0; r < rows; ++r) {
    if (r > 0) s += ", ";
    s += "($";
    append_number(s, 3 * r + 1);
    s += ", $";
    append_number(s, 3 * r + 2);
    s += ", $";
    append_number(s, 3 * r + 3);
    s += ')';
  }
  return s;
}

// The statement a W5 workload runs, made before the clock starts.
std::string w5_sql(const bench_options& o) {
  if (o.workload == "W5c") return std::string(w5_copy_in_sql);
  if (o.workload == "W5cb") return std::string(w5_copy_in_binary_sql);
  if (o.workload == "W5i") return multi_insert_sql(o.rows_per_insert);
  if (o.workload == "W5p") return std::string(w5_insert_one_sql);
  return std::string(w5_copy_out_sql);
}

// ------------------------------------------------------------------ pgq

// Counts finished workers; the coordinator sleeps on `timer` until all are.
// Workers report here, from any thread (W2 --threads); the waiter polls
// every 2 ms, which costs nothing measurable over a run of seconds.
struct join_state {
  explicit join_state(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  std::atomic<std::size_t> remaining{0};
  std::mutex mutex;
  std::exception_ptr error;

  void done(const std::exception_ptr& e) {
    if (e) {
      std::lock_guard lock(mutex);
      if (!error) error = e;
    }
    remaining.fetch_sub(1);
  }
  asio::awaitable<void> wait() {
    while (remaining.load() > 0) {
      timer.expires_after(std::chrono::milliseconds(2));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    std::lock_guard lock(mutex);
    if (error) std::rethrow_exception(error);
  }
};

asio::awaitable<void> select_one_loop(pgq::connection* conn, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) {
    pgq::result r = co_await conn->query(select_one_sql);
    if (r.size() != 1 || r[0].get<int>(0) != 1) fail("SELECT 1 returned something else");
  }
}

// `Target` is pgq::connection or pgq::pool: both have query().
template <class Target>
asio::awaitable<void> point_worker(Target* target, std::uint64_t n, unsigned seed, int max_aid, join_state* join) {
  std::exception_ptr error;
  try {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> aid(1, max_aid);
    for (std::uint64_t i = 0; i < n; ++i) {
      int id = aid(rng);
      pgq::result r = co_await target->query(point_sql, id);
      if (r.size() != 1) fail("point select: not one row for aid " + std::to_string(id));
      int balance = r[0].get<int>(0);
      if (balance < -100000000 || balance > 100000000) fail("point select: implausible abalance");
    }
  } catch (...) {
    error = std::current_exception();
  }
  join->done(error);
}

// W4: every value of every row decoded; returns a checksum so that nothing
// is optimised away.
asio::awaitable<double> wide_once(pgq::connection* conn) {
  pgq::result r = co_await conn->query(wide_sql);
  if (static_cast<std::uint64_t>(r.size()) != wide_rows) fail("W4: wrong row count");
  double sum = 0;
  for (auto row : r) {
    const int i = row.get<int>(0);
    const std::string_view text = row.get<std::string_view>(1);
    const double scaled = row.get<double>(2);
    const pgq::timestamptz at = row.get<pgq::timestamptz>(3);
    sum += i + static_cast<double>(text.size()) + scaled + static_cast<double>(at.time_since_epoch().count() & 1);
  }
  co_return sum;
}

// W4s: the same rows read into a plain struct by query_as<T> (Boost.PFR);
// the text is a std::string there (a struct owns its values).
struct wide_row {
  int i = 0;
  std::string text;
  double scaled = 0;
  pgq::timestamptz at{};
};

asio::awaitable<double> wide_once_struct(pgq::connection* conn) {
  const std::vector<wide_row> rows = co_await conn->query_as<wide_row>(wide_sql);
  if (static_cast<std::uint64_t>(rows.size()) != wide_rows) fail("W4s: wrong row count");
  double sum = 0;
  for (const wide_row& r : rows) {
    sum +=
        r.i + static_cast<double>(r.text.size()) + r.scaled + static_cast<double>(r.at.time_since_epoch().count() & 1);
  }
  co_return sum;
}

asio::awaitable<void> pgq_w4(bench_options o, measurement* out) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(o.dsn);
  co_await conn.execute("SET TimeZone = 'UTC'");
  const bool into_struct = o.workload == "W4s";
  auto once = [&conn, into_struct]() { return into_struct ? wide_once_struct(&conn) : wide_once(&conn); };
  co_await once();  // warm-up: prepared, later runs may use binary results
  stopwatch sw;
  sw.start();
  double total = 0;
  for (std::uint64_t k = 0; k < o.queries; ++k) total += co_await once();
  *out = sw.stop(o.queries * wide_rows);
  if (total <= 0) fail("W4: bad checksum");
  conn.close();
}

asio::awaitable<void> pgq_w1(bench_options o, measurement* out) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(o.dsn);
  co_await select_one_loop(&conn, 100);  // warm-up: the statement gets prepared
  stopwatch sw;
  sw.start();
  co_await select_one_loop(&conn, o.queries);
  *out = sw.stop(o.queries);
  conn.close();
}

// Spreads o.queries point selects over `workers` coroutines, worker i on
// targets[i % targets.size()], and times them together.
template <class Target>
asio::awaitable<measurement> timed_point_selects(std::vector<Target*> targets, std::size_t workers, bench_options o) {
  auto ex = co_await asio::this_coro::executor;
  join_state join(ex);
  join.remaining = workers;
  stopwatch sw;
  sw.start();
  for (std::size_t i = 0; i < workers; ++i) {
    std::uint64_t n = o.queries / workers + (i < o.queries % workers ? 1 : 0);
    asio::co_spawn(ex, point_worker(targets[i % targets.size()], n, unsigned(i + 1), 100000 * o.scale, &join),
                   asio::detached);
  }
  co_await join.wait();
  co_return sw.stop(o.queries);
}

asio::awaitable<void> pgq_w3(bench_options o, measurement* out) {
  auto ex = co_await asio::this_coro::executor;
  pgq::connection conn(ex);
  co_await conn.connect(o.dsn);
  join_state warm(ex);
  warm.remaining = 1;
  asio::co_spawn(ex, point_worker(&conn, 100, 1, 100000 * o.scale, &warm), asio::detached);
  co_await warm.wait();
  const std::vector<pgq::connection*> targets{&conn};
  *out = co_await timed_point_selects(targets, o.depth, o);
  conn.close();
}

asio::awaitable<void> pgq_w2(bench_options o, measurement* out) {
  auto ex = co_await asio::this_coro::executor;
  pgq::pool_options popts;
  popts.conninfo = o.dsn;
  popts.max_size = o.connections;
  popts.strand_per_connection = !o.single_thread_pool;
  if (o.share_depth) popts.share_depth = *o.share_depth;
  pgq::pool pool(ex, popts);
  {
    // Warm-up: every connection open and the statement prepared on each.
    std::vector<pgq::lease> leases;
    for (std::size_t i = 0; i < o.connections; ++i) leases.push_back(co_await pool.acquire());
    for (auto& l : leases) {
      pgq::result r = co_await l->query(point_sql, 1);
      if (r.size() != 1) fail("warm-up point select failed");
    }
  }
  const std::vector<pgq::pool*> targets{&pool};
  *out = co_await timed_point_selects(targets, o.connections, o);
  co_await pool.close();
}

// W2s: W2's point selects from D coroutines (--depth, 100) through a pool of
// C connections (--connections; 2 unless given) that they share
// (pool_options::share_depth, --share-depth: the pool's default unless given).
asio::awaitable<void> pgq_w2s(bench_options o, measurement* out) {
  auto ex = co_await asio::this_coro::executor;
  pgq::pool_options popts;
  popts.conninfo = o.dsn;
  popts.max_size = o.connections;
  popts.min_size = o.connections;
  popts.strand_per_connection = !o.single_thread_pool;
  if (o.share_depth) popts.share_depth = *o.share_depth;
  pgq::pool pool(ex, popts);
  co_await pool.wait_ready();
  {
    // Warm-up: the statement prepared on every connection.
    join_state warm(ex);
    warm.remaining = o.depth;
    for (std::size_t i = 0; i < o.depth; ++i) {
      asio::co_spawn(ex, point_worker(&pool, 4, unsigned(i + 1), 100000 * o.scale, &warm), asio::detached);
    }
    co_await warm.wait();
  }
  const std::vector<pgq::pool*> targets{&pool};
  *out = co_await timed_point_selects(targets, o.depth, o);
  const pgq::pool_stats st = pool.stats();
  if (st.created > o.connections) fail("W2s: the pool opened more than " + std::to_string(o.connections));
  std::fprintf(stderr, "W2s: %zu connections opened, %llu shared statements of %llu, share_depth %zu\n",
               static_cast<std::size_t>(st.created), static_cast<unsigned long long>(st.shared_acquires),
               static_cast<unsigned long long>(st.acquires), popts.share_depth);
  co_await pool.close();
}

// W2 without the pool: one connection per worker, to tell the pool's cost
// from the connection's.
asio::awaitable<void> pgq_w2_direct(bench_options o, measurement* out) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<std::unique_ptr<pgq::connection>> conns;
  for (std::size_t i = 0; i < o.connections; ++i) {
    conns.push_back(std::make_unique<pgq::connection>(ex));
    co_await conns.back()->connect(o.dsn);
    pgq::result r = co_await conns.back()->query(point_sql, 1);  // prepared from now on
    if (r.size() != 1) fail("warm-up point select failed");
  }
  std::vector<pgq::connection*> targets;
  targets.reserve(conns.size());
  for (auto& c : conns) targets.push_back(c.get());
  *out = co_await timed_point_selects(targets, o.connections, o);
}

// The timed part of a pgq W5 workload: o->queries rows by `sql` on `conn`,
// checked as they go.
using pgq_w5_rows = asio::awaitable<void> (*)(pgq::connection* conn, std::string_view sql, const bench_options* o);

// What every pgq W5 workload does around its rows: a connection of its own,
// the statement made untimed, `rows` timed and reported as o.queries rows.
asio::awaitable<void> pgq_w5(bench_options o, measurement* out, pgq_w5_rows rows) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(o.dsn);
  const std::string sql = w5_sql(o);
  stopwatch sw;
  sw.start();
  co_await rows(&conn, sql, &o);
  *out = sw.stop(o.queries);
  conn.close();
}

// W5c: write_row() per row, as an application copying its own values would;
// W5cb: the same in COPY's binary format.
asio::awaitable<void> pgq_w5_copy_in(pgq::connection* conn, std::string_view sql, const bench_options* o) {
  pgq::copy_writer w = co_await conn->copy_in(sql);
  std::string label;
  for (std::uint64_t i = 1; i <= o->queries; ++i) {
    label.clear();
    append_label(label, i);
    const int id = static_cast<int>(i);
    const double f = row_float(i);
    co_await w.write_row(id, label, f);
  }
  const std::uint64_t copied = co_await w.finish();
  if (copied != o->queries) fail("W5c: the server took " + std::to_string(copied) + " rows");
}

// W5i: multi-row INSERTs of o->rows_per_insert rows (`sql`), all in one
// transaction.
asio::awaitable<void> pgq_w5_batched(pgq::connection* conn, std::string_view sql, const bench_options* o) {
  co_await conn->execute("BEGIN");
  std::string label;
  for (std::uint64_t first = 1; first <= o->queries; first += o->rows_per_insert) {
    const std::uint64_t rows = std::min(o->rows_per_insert, o->queries - first + 1);
    const std::string tail_sql = rows == o->rows_per_insert ? std::string() : multi_insert_sql(rows);
    pgq::params params;
    for (std::uint64_t i = first; i < first + rows; ++i) {
      label.clear();
      append_label(label, i);
      params.add(static_cast<int>(i));
      params.add(std::string_view(label));
      params.add(row_float(i));
    }
    const std::string_view this_sql = rows == o->rows_per_insert ? sql : std::string_view(tail_sql);
    const std::uint64_t n = co_await conn->execute_params(this_sql, std::move(params));
    if (n != rows) fail("W5i: INSERT inserted " + std::to_string(n) + " rows");
  }
  co_await conn->execute("COMMIT");
}

// One of W5p's coroutines: rows first, first + step, ... up to last.
asio::awaitable<void> insert_worker(pgq::connection* conn, std::string_view sql, std::uint64_t first,
                                    std::uint64_t step, std::uint64_t last, join_state* join) {
  std::exception_ptr error;
  try {
    std::string label;
    for (std::uint64_t i = first; i <= last; i += step) {
      label.clear();
      append_label(label, i);
      const int id = static_cast<int>(i);
      const double f = row_float(i);
      const std::uint64_t n = co_await conn->execute(sql, id, label, f);
      if (n != 1) fail("W5p: INSERT did not insert one row");
    }
  } catch (...) {
    error = std::current_exception();
  }
  join->done(error);
}

// W5p: single-row INSERTs from o->depth coroutines on one connection (pgq
// pipelines them), between BEGIN and COMMIT.
asio::awaitable<void> pgq_w5_pipelined(pgq::connection* conn, std::string_view sql, const bench_options* o) {
  auto ex = co_await asio::this_coro::executor;
  co_await conn->execute("BEGIN");
  join_state join(ex);
  join.remaining = o->depth;
  for (std::size_t k = 0; k < o->depth; ++k)
    asio::co_spawn(ex, insert_worker(conn, sql, k + 1, o->depth, o->queries, &join), asio::detached);
  co_await join.wait();
  co_await conn->execute("COMMIT");
}

// W5o: COPY TO STDOUT, every row counted.
asio::awaitable<void> pgq_w5_copy_out(pgq::connection* conn, std::string_view sql, const bench_options* o) {
  std::uint64_t lines = 0, bytes = 0;
  auto count = [&lines, &bytes](std::string_view row) {
    ++lines;
    bytes += row.size();
  };
  const std::uint64_t rows = co_await conn->copy_out(sql, count);
  if (rows != o->queries || lines != o->queries || bytes < 10 * lines)
    fail("W5o: " + std::to_string(lines) + " lines, the server said " + std::to_string(rows));
}

// stream / result: the same N rows read row by row, or as one result; every
// value decoded and checked.
asio::awaitable<void> pgq_rows(bench_options o, measurement* out) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(o.dsn);
  const int n = static_cast<int>(o.queries);
  std::uint64_t count = 0, wrong = 0;
  stopwatch sw;
  sw.start();
  if (o.workload == "stream") {
    pgq::row_stream rows = co_await conn.stream(rows_sql, n);
    while (auto r = co_await rows.next()) {
      ++count;
      if (r->get<int>(0) != static_cast<int>(count) || !label_is(r->get<std::string_view>(1), count) ||
          r->get<double>(2) != row_float(count))
        ++wrong;
    }
  } else {
    pgq::result all = co_await conn.query(rows_sql, n);
    for (auto r : all) {
      ++count;
      if (r.get<int>(0) != static_cast<int>(count) || !label_is(r.get<std::string_view>(1), count) ||
          r.get<double>(2) != row_float(count))
        ++wrong;
    }
  }
  *out = sw.stop(count);
  if (count != o.queries || wrong != 0)
    fail(o.workload + ": " + std::to_string(count) + " rows, " + std::to_string(wrong) + " wrong");
  conn.close();
}

measurement run_pgq(const bench_options& o) {
  // Concurrency hint 1 promises one thread (the pool then uses no strands).
  asio::io_context ctx(o.threads > 1 ? static_cast<int>(o.threads) : 1);
  measurement m;
  std::exception_ptr error;
  auto on_done = [&error](std::exception_ptr e) { error = std::move(e); };
  if (o.workload == "W1") {
    asio::co_spawn(ctx, pgq_w1(o, &m), on_done);
  } else if (o.workload == "W4" || o.workload == "W4s") {
    asio::co_spawn(ctx, pgq_w4(o, &m), on_done);
  } else if (o.workload == "W2") {
    asio::co_spawn(ctx, pgq_w2(o, &m), on_done);
  } else if (o.workload == "W2d") {
    asio::co_spawn(ctx, pgq_w2_direct(o, &m), on_done);
  } else if (o.workload == "W2s") {
    asio::co_spawn(ctx, pgq_w2s(o, &m), on_done);
  } else if (o.workload == "W5c" || o.workload == "W5cb") {
    asio::co_spawn(ctx, pgq_w5(o, &m, pgq_w5_copy_in), on_done);
  } else if (o.workload == "W5i") {
    asio::co_spawn(ctx, pgq_w5(o, &m, pgq_w5_batched), on_done);
  } else if (o.workload == "W5p") {
    asio::co_spawn(ctx, pgq_w5(o, &m, pgq_w5_pipelined), on_done);
  } else if (o.workload == "W5o") {
    asio::co_spawn(ctx, pgq_w5(o, &m, pgq_w5_copy_out), on_done);
  } else if (o.workload == "stream" || o.workload == "result") {
    asio::co_spawn(ctx, pgq_rows(o, &m), on_done);
  } else {
    asio::co_spawn(ctx, pgq_w3(o, &m), on_done);
  }
  std::vector<std::thread> helpers;
  for (std::size_t i = 1; i < o.threads; ++i) helpers.emplace_back([&ctx] { ctx.run(); });
  ctx.run();
  for (auto& t : helpers) t.join();
  if (error) std::rethrow_exception(error);
  return m;
}

// ------------------------------------------------------------------ libpq

struct pg_conn_deleter {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using conn_ptr = std::unique_ptr<PGconn, pg_conn_deleter>;

conn_ptr pq_connect(const std::string& dsn) {
  conn_ptr c(PQconnectdb(dsn.c_str()));
  if (PQstatus(c.get()) != CONNECTION_OK) fail(std::string("connect: ") + PQerrorMessage(c.get()));
  return c;
}

void pq_prepare(PGconn* c, const char* name, std::string_view sql) {
  std::string text(sql);
  PGresult* r = PQprepare(c, name, text.c_str(), 0, nullptr);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) fail(std::string("prepare: ") + PQerrorMessage(c));
}

int pq_int(const PGresult* r) {
  if (PQntuples(r) != 1 || PQnfields(r) != 1) fail("not one row of one column");
  const char* v = PQgetvalue(r, 0, 0);
  const char* end = v + PQgetlength(r, 0, 0);
  int value = 0;
  auto [p, ec] = std::from_chars(v, end, value);
  if (ec != std::errc() || p != end) fail("undecodable value");
  return value;
}

void check_balance(int balance) {
  if (balance < -100000000 || balance > 100000000) fail("point select: implausible abalance");
}

measurement libpq_w1(const bench_options& o) {
  conn_ptr c = pq_connect(o.dsn);
  pq_prepare(c.get(), "s1", select_one_sql);
  stopwatch sw;
  sw.start();
  for (std::uint64_t i = 0; i < o.queries; ++i) {
    PGresult* r = PQexecPrepared(c.get(), "s1", 0, nullptr, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail(PQerrorMessage(c.get()));
    if (pq_int(r) != 1) fail("SELECT 1 returned something else");
    PQclear(r);
  }
  return sw.stop(o.queries);
}

// A point select with a random aid, in text format as pgbench sends it.
class aid_source {
 public:
  aid_source(unsigned seed, int max_aid) : rng_(seed), dist_(1, max_aid) {}
  const char* next() {
    auto [p, ec] = std::to_chars(buf_, buf_ + sizeof buf_ - 1, dist_(rng_));
    (void)ec;
    *p = '\0';
    return buf_;
  }

 private:
  std::mt19937 rng_;
  std::uniform_int_distribution<int> dist_;
  char buf_[16]{};
};

void send_point(PGconn* c, aid_source& aids) {
  const char* values[1] = {aids.next()};
  if (!PQsendQueryPrepared(c, "point", 1, values, nullptr, nullptr, 0)) fail(std::string("send: ") + PQerrorMessage(c));
}

measurement libpq_w2(const bench_options& o) {
  struct client {
    conn_ptr conn;
    aid_source aids;
    std::uint64_t left = 0;
    bool busy = false;
    bool want_write = false;
  };
  std::vector<client> clients;
  for (std::size_t i = 0; i < o.connections; ++i) {
    client cl{pq_connect(o.dsn), aid_source(unsigned(i + 1), 100000 * o.scale)};
    cl.left = o.queries / o.connections + (i < o.queries % o.connections ? 1 : 0);
    pq_prepare(cl.conn.get(), "point", point_sql);
    PQsetnonblocking(cl.conn.get(), 1);
    clients.push_back(std::move(cl));
  }
  std::vector<pollfd> fds(clients.size());
  stopwatch sw;
  sw.start();
  auto start_next = [](client& cl) {
    if (cl.left == 0) return;
    send_point(cl.conn.get(), cl.aids);
    cl.busy = true;
    cl.want_write = PQflush(cl.conn.get()) == 1;
  };
  for (auto& cl : clients) start_next(cl);
  std::size_t active = clients.size();
  while (active > 0) {
    for (std::size_t i = 0; i < clients.size(); ++i) {
      fds[i].fd = clients[i].busy ? PQsocket(clients[i].conn.get()) : -1;
      fds[i].events = short(POLLIN | (clients[i].want_write ? POLLOUT : 0));
      fds[i].revents = 0;
    }
    if (poll(fds.data(), fds.size(), -1) < 0) fail("poll");
    for (std::size_t i = 0; i < clients.size(); ++i) {
      client& cl = clients[i];
      PGconn* c = cl.conn.get();
      if (!cl.busy || fds[i].revents == 0) continue;
      if (cl.want_write) cl.want_write = PQflush(c) == 1;
      if (!PQconsumeInput(c)) fail(PQerrorMessage(c));
      while (cl.busy && !PQisBusy(c)) {
        PGresult* r = PQgetResult(c);
        if (r == nullptr) {
          cl.busy = false;
          --cl.left;
          start_next(cl);
          if (!cl.busy) --active;
          break;
        }
        if (PQresultStatus(r) != PGRES_TUPLES_OK) fail(PQerrorMessage(c));
        check_balance(pq_int(r));
        PQclear(r);
      }
    }
  }
  return sw.stop(o.queries);
}

// libpq 17's PQsendPipelineSync when the libpq loaded has it (bench/compare
// --libpq): it queues the sync without writing, and the loop below writes
// once per burst, as pgq does with it. Otherwise PQpipelineSync, which writes
// every query as it is queued.
bool pq_sync(PGconn* c) {
  using fn = int (*)(PGconn*);
  static const fn send_pipeline_sync = reinterpret_cast<fn>(dlsym(RTLD_DEFAULT, "PQsendPipelineSync"));
  return (send_pipeline_sync != nullptr ? send_pipeline_sync(c) : PQpipelineSync(c)) == 1;
}

// Runs n queries on `c`, which is non-blocking and in pipeline mode: up to
// `depth` in flight, a sync after each (as pgq does). send(k) sends query k
// (1-based); take(r) gets every result but the syncs, and clears it.
template <class Send, class Take>
void pq_pipeline(PGconn* c, std::uint64_t n, std::size_t depth, Send send, Take take) {
  std::uint64_t sent = 0, done = 0;
  std::size_t in_flight = 0;
  bool want_write = false;
  while (done < n) {
    bool sent_some = false;
    while (in_flight < depth && sent < n) {
      send(sent + 1);
      if (!pq_sync(c)) fail(PQerrorMessage(c));
      ++sent;
      ++in_flight;
      sent_some = true;
    }
    if (sent_some || want_write) want_write = PQflush(c) == 1;
    pollfd pfd{PQsocket(c), short(POLLIN | (want_write ? POLLOUT : 0)), 0};
    if (poll(&pfd, 1, -1) < 0) fail("poll");
    if (want_write && (pfd.revents & POLLOUT)) want_write = PQflush(c) == 1;
    if (!(pfd.revents & POLLIN)) continue;
    if (!PQconsumeInput(c)) fail(PQerrorMessage(c));
    while (in_flight > 0 && !PQisBusy(c)) {
      PGresult* r = PQgetResult(c);
      if (r == nullptr) continue;  // the end of one query's results
      if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
        --in_flight;
        ++done;
        PQclear(r);
      } else {
        take(r);
      }
    }
  }
}

measurement libpq_w3(const bench_options& o) {
  conn_ptr conn = pq_connect(o.dsn);
  PGconn* c = conn.get();
  pq_prepare(c, "point", point_sql);
  PQsetnonblocking(c, 1);
  if (!PQenterPipelineMode(c)) fail("cannot enter pipeline mode");
  aid_source aids(1, 100000 * o.scale);
  auto send = [c, &aids](std::uint64_t) { send_point(c, aids); };
  auto take = [c](PGresult* r) {
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail(PQerrorMessage(c));
    check_balance(pq_int(r));
    PQclear(r);
  };
  stopwatch sw;
  sw.start();
  pq_pipeline(c, o.queries, o.depth, send, take);
  return sw.stop(o.queries);
}

// The text a timestamptz prints in UTC with DateStyle ISO, e.g.
// "2024-02-29 13:45:01.123456+00", as microseconds since 1970.
std::int64_t parse_timestamptz(std::string_view s) {
  auto num = [&](std::size_t pos, std::size_t len) {
    int v = 0;
    std::from_chars(s.data() + pos, s.data() + pos + len, v);
    return v;
  };
  if (s.size() < 22) fail("W4: short timestamp");
  using namespace std::chrono;
  const sys_days day = year{num(0, 4)} / month{unsigned(num(5, 2))} / std::chrono::day{unsigned(num(8, 2))};
  std::int64_t us =
      (day.time_since_epoch().count() * 86400LL + num(11, 2) * 3600LL + num(14, 2) * 60LL + num(17, 2)) * 1000000LL;
  std::size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    std::size_t end = pos + 1;
    while (end < s.size() && s[end] >= '0' && s[end] <= '9') ++end;
    int frac = num(pos + 1, end - pos - 1);
    for (std::size_t d = end - pos - 1; d < 6; ++d) frac *= 10;
    us += frac;
  }
  return us;
}

measurement libpq_w4(const bench_options& o) {
  conn_ptr c = pq_connect(o.dsn);
  PQclear(PQexec(c.get(), "SET TimeZone = 'UTC'"));
  pq_prepare(c.get(), "w4", wide_sql);
  stopwatch sw;
  sw.start();
  double total = 0;
  for (std::uint64_t k = 0; k < o.queries; ++k) {
    PGresult* r = PQexecPrepared(c.get(), "w4", 0, nullptr, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || static_cast<std::uint64_t>(PQntuples(r)) != wide_rows)
      fail("W4: bad result");
    const int rows = PQntuples(r);
    for (int i = 0; i < rows; ++i) {
      int v = 0;
      const char* a = PQgetvalue(r, i, 0);
      std::from_chars(a, a + PQgetlength(r, i, 0), v);
      const std::string_view text(PQgetvalue(r, i, 1), static_cast<std::size_t>(PQgetlength(r, i, 1)));
      double scaled = 0;
      const char* b = PQgetvalue(r, i, 2);
      std::from_chars(b, b + PQgetlength(r, i, 2), scaled);
      const std::int64_t at =
          parse_timestamptz(std::string_view(PQgetvalue(r, i, 3), static_cast<std::size_t>(PQgetlength(r, i, 3))));
      total += v + static_cast<double>(text.size()) + scaled + static_cast<double>(at & 1);
    }
    PQclear(r);
  }
  measurement m = sw.stop(o.queries * wide_rows);
  if (total <= 0) fail("W4: bad checksum");
  return m;
}

void pq_exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  const ExecStatusType st = PQresultStatus(r);
  PQclear(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) fail(sql + ": " + PQerrorMessage(c));
}

// Takes the result of a finished command: COMMAND_OK with `rows` rows.
void pq_expect_rows(PGconn* c, PGresult* r, std::uint64_t rows, const char* what) {
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && std::strtoull(PQcmdTuples(r), nullptr, 10) == rows;
  PQclear(r);
  if (!ok) fail(std::string(what) + ": " + PQerrorMessage(c));
}

// Empties the W5 table (made on first use); with `fill`, puts rows 1..fill
// in it. Never timed.
void w5_prepare_table(const std::string& dsn, std::uint64_t fill) {
  conn_ptr c = pq_connect(dsn);
  pq_exec(c.get(), "SET client_min_messages = warning");
  pq_exec(c.get(),
          "CREATE UNLOGGED TABLE IF NOT EXISTS pgq_bench_w5 (i int NOT NULL, t text NOT NULL, f float8 NOT NULL)");
  pq_exec(c.get(), "TRUNCATE pgq_bench_w5");
  if (fill > 0) {
    pq_exec(c.get(), "INSERT INTO pgq_bench_w5 SELECT i, 'row ' || i, i * 0.25::float8 FROM generate_series(1, " +
                         std::to_string(fill) + ") i");
    pq_exec(c.get(), "VACUUM pgq_bench_w5");  // hint bits set: COPY TO only reads
  }
}

// Checks that the W5 table holds exactly the rows 1..n, each as written.
void w5_verify(const std::string& dsn, std::uint64_t n) {
  conn_ptr c = pq_connect(dsn);
  PGresult* r = PQexec(c.get(),
                       "SELECT count(*), count(DISTINCT i), coalesce(min(i), 0), coalesce(max(i), 0), "
                       "count(*) FILTER (WHERE t <> 'row ' || i OR f <> i * 0.25::float8) FROM pgq_bench_w5");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    fail(std::string("check: ") + PQerrorMessage(c.get()));
  }
  auto field = [r](int col) { return std::strtoull(PQgetvalue(r, 0, col), nullptr, 10); };
  const std::uint64_t count = field(0), distinct = field(1), lo = field(2), hi = field(3), wrong = field(4);
  PQclear(r);
  if (count != n || distinct != n || (n > 0 && (lo != 1 || hi != n)) || wrong != 0)
    fail("check: the table holds " + std::to_string(count) + " rows (" + std::to_string(distinct) + " distinct, " +
         std::to_string(lo) + ".." + std::to_string(hi) + ", " + std::to_string(wrong) + " wrong), expected 1.." +
         std::to_string(n));
}

// The timed part of a libpq W5 workload: o.queries rows by `sql` on `c`,
// checked as they go.
using libpq_w5_rows = void (*)(PGconn* c, const std::string& sql, const bench_options& o);

// What every libpq W5 workload does around its rows, as pgq_w5() does.
measurement libpq_w5(const bench_options& o, libpq_w5_rows rows) {
  conn_ptr conn = pq_connect(o.dsn);
  const std::string sql = w5_sql(o);
  stopwatch sw;
  sw.start();
  rows(conn.get(), sql, o);
  return sw.stop(o.queries);
}

// W5c: the COPY text built by hand, sent in 64 KiB PQputCopyData calls.
void libpq_w5_copy_in(PGconn* c, const std::string& sql, const bench_options& o) {
  PGresult* r = PQexec(c, sql.c_str());
  const bool copying = PQresultStatus(r) == PGRES_COPY_IN;
  PQclear(r);
  if (!copying) fail(std::string("W5c: ") + PQerrorMessage(c));
  std::string buf;
  buf.reserve(64 * 1024 + 128);
  for (std::uint64_t i = 1; i <= o.queries; ++i) {
    append_copy_row(buf, i);
    if (buf.size() >= 64 * 1024) {
      if (PQputCopyData(c, buf.data(), static_cast<int>(buf.size())) != 1) fail(PQerrorMessage(c));
      buf.clear();
    }
  }
  if (!buf.empty() && PQputCopyData(c, buf.data(), static_cast<int>(buf.size())) != 1) fail(PQerrorMessage(c));
  if (PQputCopyEnd(c, nullptr) != 1) fail(PQerrorMessage(c));
  pq_expect_rows(c, PQgetResult(c), o.queries, "W5c");
  while (PGresult* extra = PQgetResult(c)) PQclear(extra);
}

// The text parameters of rows first..first+rows-1, for PQexecParams and
// friends: `values` points into `text`.
struct text_params {
  std::string text;
  std::vector<std::size_t> offsets;
  std::vector<const char*> values;

  void fill(std::uint64_t first, std::uint64_t rows) {
    text.clear();
    offsets.clear();
    for (std::uint64_t i = first; i < first + rows; ++i) {
      offsets.push_back(text.size());
      append_number(text, i);
      text += '\0';
      offsets.push_back(text.size());
      append_label(text, i);
      text += '\0';
      offsets.push_back(text.size());
      append_float(text, row_float(i));
      text += '\0';
    }
    values.resize(offsets.size());
    for (std::size_t k = 0; k < offsets.size(); ++k) values[k] = text.data() + offsets[k];
  }
};

// W5i: the same multi-row INSERTs (`sql`), prepared once, text parameters.
void libpq_w5_batched(PGconn* c, const std::string& sql, const bench_options& o) {
  text_params params;
  pq_exec(c, "BEGIN");
  pq_prepare(c, "ins", sql);
  for (std::uint64_t first = 1; first <= o.queries; first += o.rows_per_insert) {
    const std::uint64_t rows = std::min(o.rows_per_insert, o.queries - first + 1);
    params.fill(first, rows);
    const int n = static_cast<int>(params.values.size());
    PGresult* r = rows == o.rows_per_insert ? PQexecPrepared(c, "ins", n, params.values.data(), nullptr, nullptr, 0)
                                            : PQexecParams(c, multi_insert_sql(rows).c_str(), n, nullptr,
                                                           params.values.data(), nullptr, nullptr, 0);
    pq_expect_rows(c, r, rows, "W5i");
  }
  pq_exec(c, "COMMIT");
}

// W5p: single-row INSERTs in pipeline mode, a sync after each (as W3 and as
// pgq do), up to o.depth in flight, between BEGIN and COMMIT.
void libpq_w5_pipelined(PGconn* c, const std::string& sql, const bench_options& o) {
  text_params params;
  pq_exec(c, "BEGIN");
  pq_prepare(c, "ins1", sql);
  PQsetnonblocking(c, 1);
  if (!PQenterPipelineMode(c)) fail("cannot enter pipeline mode");
  auto send = [c, &params](std::uint64_t k) {
    params.fill(k, 1);
    if (!PQsendQueryPrepared(c, "ins1", 3, params.values.data(), nullptr, nullptr, 0))
      fail(std::string("send: ") + PQerrorMessage(c));
  };
  auto take = [c](PGresult* r) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      PQclear(r);
      fail(PQerrorMessage(c));
    }
    pq_expect_rows(c, r, 1, "W5p");
  };
  pq_pipeline(c, o.queries, o.depth, send, take);
  if (!PQexitPipelineMode(c)) fail(std::string("exit pipeline mode: ") + PQerrorMessage(c));
  PQsetnonblocking(c, 0);
  pq_exec(c, "COMMIT");
}

// W5o: PQgetCopyData row by row (libpq hands out one row per call).
void libpq_w5_copy_out(PGconn* c, const std::string& sql, const bench_options& o) {
  std::uint64_t lines = 0, bytes = 0;
  PGresult* r = PQexec(c, sql.c_str());
  const bool copying = PQresultStatus(r) == PGRES_COPY_OUT;
  PQclear(r);
  if (!copying) fail(std::string("W5o: ") + PQerrorMessage(c));
  char* buf = nullptr;
  int len = 0;
  while ((len = PQgetCopyData(c, &buf, 0)) > 0) {
    ++lines;
    bytes += static_cast<std::uint64_t>(len);
    PQfreemem(buf);
  }
  if (len != -1) fail(std::string("W5o: ") + PQerrorMessage(c));
  pq_expect_rows(c, PQgetResult(c), o.queries, "W5o");
  while (PGresult* extra = PQgetResult(c)) PQclear(extra);
  if (lines != o.queries || bytes < 10 * lines) fail("W5o: " + std::to_string(lines) + " lines");
}

measurement run_libpq(const bench_options& o) {
  if (o.workload == "W1") return libpq_w1(o);
  if (o.workload == "W4") return libpq_w4(o);
  if (o.workload == "W2") return libpq_w2(o);
  if (o.workload == "W5c") return libpq_w5(o, libpq_w5_copy_in);
  if (o.workload == "W5i") return libpq_w5(o, libpq_w5_batched);
  if (o.workload == "W5p") return libpq_w5(o, libpq_w5_pipelined);
  if (o.workload == "W5o") return libpq_w5(o, libpq_w5_copy_out);
  return libpq_w3(o);
}

// ------------------------------------------------------------------ main

[[noreturn]] void usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: pgq_bench_workloads --dsn DSN --workload W --impl pgq|libpq\n"
               "       [--queries N] [--connections C] [--depth D] [--scale S] [--rows-per-insert R]\n"
               "       [--threads T] [--json]\n"
               "  W1: N sequential SELECT 1 on one connection (default N 20000)\n"
               "  W2: N point selects over C connections, one in flight each (200000, 10)\n"
               "  W2d: W2 with one pgq::connection per worker instead of a pool (pgq only)\n"
               "  W2s: W2 from D coroutines (100) sharing a pool of C connections (2) (pgq only)\n"
               "  --share-depth K: W2/W2s pool_options::share_depth (default: the pool's; 0: no sharing)\n"
               "  --no-strands: W2's pool without a strand per connection (one thread runs it)\n"
               "  --threads T: W2's pgq runs its io_context on T threads (default 1), as pgbench -j does\n"
               "  W3: N point selects on one connection, D in flight (200000, 100)\n"
               "  W4: N times 100000 rows (int, text, numeric, timestamptz), every value decoded (50);\n"
               "      reports rows, not queries\n"
               "  W4s: W4 read into a struct by query_as<T> (pgq only)\n"
               "  W5c: N rows (int, text, float8) into the unlogged table pgq_bench_w5 by COPY (200000)\n"
               "  W5cb: W5c in COPY's binary format (pgq only)\n"
               "  W5i: the same rows by INSERTs of R rows (1000) each, in one transaction (200000)\n"
               "  W5p: N single-row INSERTs, D in flight on one connection, in one transaction (50000)\n"
               "  W5o: N rows out of pgq_bench_w5 by COPY TO STDOUT (200000)\n"
               "      W5 workloads report rows; they empty (W5o: fill) the table first and check it after\n"
               "  stream: N rows (int, text, float8) read with conn.stream() (pgq only, 10000000)\n"
               "  result: the same rows read as one pgq::result (pgq only)\n"
               "  copydata: print rows 1..N in COPY text format (for psql \\copy); no --dsn needed\n"
               "  check: exit 0 if pgq_bench_w5 holds exactly rows 1..N, else 1\n"
               "  The JSON also has max_rss_kib: the process's peak resident set (getrusage), and libpq:\n"
               "  PQlibVersion() of the libpq loaded.\n");
  std::exit(status);
}

std::uint64_t parse_number(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0) usage(2);
  return v;
}

bench_options parse(int argc, char** argv) {
  bench_options o;
  if (const char* e = std::getenv("PGQ_DSN")) o.dsn = e;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--dsn") o.dsn = value();
    else if (a == "--workload") o.workload = value();
    else if (a == "--impl") o.impl = value();
    else if (a == "--queries") o.queries = parse_number(value());
    else if (a == "--connections") o.connections = parse_number(value());
    else if (a == "--depth") o.depth = parse_number(value());
    else if (a == "--scale") o.scale = int(parse_number(value()));
    else if (a == "--json") o.json = true;
    else if (a == "--no-strands") o.single_thread_pool = true;
    else if (a == "--rows-per-insert") o.rows_per_insert = parse_number(value());
    else if (a == "--threads") o.threads = parse_number(value());
    else if (a == "--share-depth") {
      const std::string_view v = value();
      o.share_depth = v == "0" ? 0 : parse_number(v);
    } else if (a == "--help" || a == "-h") usage(0);
    else usage(2);
  }
  static const std::string_view workloads[] = {"W1",   "W2",  "W2d", "W2s", "W3",     "W4",     "W4s",      "W5c",
                                               "W5cb", "W5i", "W5p", "W5o", "stream", "result", "copydata", "check"};
  if (std::find(std::begin(workloads), std::end(workloads), o.workload) == std::end(workloads)) usage(2);
  bool connections_given = false;
  for (int i = 1; i < argc; ++i) connections_given = connections_given || std::string_view(argv[i]) == "--connections";
  if (o.workload == "W2s" && !connections_given) o.connections = 2;
  const bool pgq_only = o.workload == "W2d" || o.workload == "W2s" || o.workload == "W4s" || o.workload == "W5cb" ||
                        o.workload == "stream" || o.workload == "result";
  if (pgq_only && o.impl != "pgq") usage(2);
  if (o.impl != "pgq" && o.impl != "libpq") usage(2);
  // Only W2's pool is safe on several threads (a strand per connection).
  if (o.threads == 0 || (o.threads > 1 && (o.workload != "W2" || o.impl != "pgq"))) usage(2);
  if ((o.workload == "copydata" || o.workload == "check") && o.queries == 0) usage(2);
  if (o.queries == 0) {
    if (o.workload == "W1") o.queries = 20000;
    else if (o.workload == "W4" || o.workload == "W4s") o.queries = 50;
    else if (o.workload == "W5p") o.queries = 50000;
    else if (o.workload == "stream" || o.workload == "result") o.queries = 10000000;
    else o.queries = 200000;
  }
  if (o.workload.starts_with("W5") && o.queries > 2147483647) usage(2);  // the table's i is an int
  return o;
}

}  // namespace

// copydata: rows 1..n on stdout in COPY text format.
int print_copy_data(std::uint64_t n) {
  std::string buf;
  for (std::uint64_t i = 1; i <= n; ++i) {
    append_copy_row(buf, i);
    if (buf.size() >= 64 * 1024 || i == n) {
      if (std::fwrite(buf.data(), 1, buf.size(), stdout) != buf.size()) return 1;
      buf.clear();
    }
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  bench_options o = parse(argc, argv);
  if (o.workload == "copydata") return print_copy_data(o.queries);
  if (o.dsn.empty()) {
    std::fprintf(stderr, "pgq_bench_workloads: no --dsn and no $PGQ_DSN\n");
    return 2;
  }
  measurement m;
  try {
    if (o.workload == "check") {
      w5_verify(o.dsn, o.queries);
      return 0;
    }
    const bool w5 = o.workload.starts_with("W5");
    if (w5) w5_prepare_table(o.dsn, o.workload == "W5o" ? o.queries : 0);
    m = o.impl == "pgq" ? run_pgq(o) : run_libpq(o);
    if (w5 && o.workload != "W5o") w5_verify(o.dsn, o.queries);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgq_bench_workloads: %s %s: %s\n", o.workload.c_str(), o.impl.c_str(), e.what());
    return 1;
  }
  double qps = m.seconds > 0 ? double(m.queries) / m.seconds : 0;
  double cpu_us = m.queries > 0 ? m.cpu_seconds * 1e6 / double(m.queries) : 0;
  // The line is JSON with or without --json; --json is accepted for symmetry
  // with the other benchmark.
  std::printf(
      "{\"workload\":\"%s\",\"impl\":\"%s\",\"queries\":%llu,\"seconds\":%.4f,\"qps\":%.1f,"
      "\"cpu_us_per_query\":%.3f,\"max_rss_kib\":%ld,\"libpq\":%d}\n",
      o.workload.c_str(), o.impl.c_str(), static_cast<unsigned long long>(m.queries), m.seconds, qps, cpu_us,
      max_rss_kib(), PQlibVersion());
  return 0;
}
