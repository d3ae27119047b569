// pgq_bench_workloads - pgq against hand-written libpq on three workloads.
//
//   W1  N sequential `SELECT 1` on one connection (latency bound);
//   W2  pgbench's point select on C connections, one query in flight on each;
//   W3  the point select on one connection with D queries in flight.
//   W4  N times a 100,000-row result (int, text, numeric, timestamptz), every
//       value decoded (pgq: binary results after the first run; libpq: text).
//
// --impl pgq runs them with pgq's coroutines; --impl libpq with the loops
// libpq users (and pgbench) write: blocking PQexecPrepared for W1, a poll()
// loop over non-blocking connections for W2, pipeline mode for W3. Every
// value is decoded and checked. Prints one JSON line. See bench/README.md.

#include <pgq/connection.hpp>
#include <pgq/error.hpp>
#include <pgq/pool.hpp>
#include <pgq/result.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libpq-fe.h>
#include <poll.h>
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
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
  bool single_thread_pool = false;  // W2: pool_options::strand_per_connection = false
};

struct measurement {
  std::uint64_t queries = 0;
  double seconds = 0;
  double cpu_seconds = 0;
};

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

// ------------------------------------------------------------------ pgq

// Counts finished workers; the coordinator sleeps on `timer` until all are.
struct join_state {
  explicit join_state(asio::any_io_executor ex) : timer(ex) {}
  asio::steady_timer timer;
  std::size_t remaining = 0;
  std::exception_ptr error;

  void done(std::exception_ptr e) {
    if (e && !error) error = e;
    if (--remaining == 0) timer.cancel();
  }
  asio::awaitable<void> wait() {
    while (remaining > 0) {
      timer.expires_at(asio::steady_timer::time_point::max());
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
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
asio::awaitable<void> point_worker(Target* target, std::uint64_t n, unsigned seed, int max_aid,
                                   join_state* join) {
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

asio::awaitable<void> pgq_w4(bench_options o, measurement* out) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(o.dsn);
  co_await conn.execute("SET TimeZone = 'UTC'");
  co_await wide_once(&conn);  // warm-up: prepared, later runs may use binary results
  stopwatch sw;
  sw.start();
  double total = 0;
  for (std::uint64_t k = 0; k < o.queries; ++k) total += co_await wide_once(&conn);
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
asio::awaitable<measurement> timed_point_selects(std::vector<Target*> targets, std::size_t workers,
                                                 bench_options o) {
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
  popts.dsn = o.dsn;
  popts.max_size = o.connections;
  popts.strand_per_connection = !o.single_thread_pool;
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
  for (auto& c : conns) targets.push_back(c.get());
  *out = co_await timed_point_selects(targets, o.connections, o);
}

measurement run_pgq(const bench_options& o) {
  asio::io_context ctx(1);
  measurement m;
  std::exception_ptr error;
  auto on_done = [&error](std::exception_ptr e) { error = e; };
  if (o.workload == "W1") {
    asio::co_spawn(ctx, pgq_w1(o, &m), on_done);
  } else if (o.workload == "W4") {
    asio::co_spawn(ctx, pgq_w4(o, &m), on_done);
  } else if (o.workload == "W2") {
    asio::co_spawn(ctx, pgq_w2(o, &m), on_done);
  } else if (o.workload == "W2d") {
    asio::co_spawn(ctx, pgq_w2_direct(o, &m), on_done);
  } else {
    asio::co_spawn(ctx, pgq_w3(o, &m), on_done);
  }
  ctx.run();
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
  if (!PQsendQueryPrepared(c, "point", 1, values, nullptr, nullptr, 0))
    fail(std::string("send: ") + PQerrorMessage(c));
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

measurement libpq_w3(const bench_options& o) {
  conn_ptr conn = pq_connect(o.dsn);
  PGconn* c = conn.get();
  pq_prepare(c, "point", point_sql);
  PQsetnonblocking(c, 1);
  if (!PQenterPipelineMode(c)) fail("cannot enter pipeline mode");
  aid_source aids(1, 100000 * o.scale);
  std::uint64_t sent = 0, done = 0;
  std::size_t in_flight = 0;
  bool want_write = false;
  stopwatch sw;
  sw.start();
  while (done < o.queries) {
    bool sent_some = false;
    while (in_flight < o.depth && sent < o.queries) {
      send_point(c, aids);
      if (!PQpipelineSync(c)) fail(PQerrorMessage(c));
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
      switch (PQresultStatus(r)) {
        case PGRES_PIPELINE_SYNC:
          --in_flight;
          ++done;
          break;
        case PGRES_TUPLES_OK:
          check_balance(pq_int(r));
          break;
        default:
          fail(PQerrorMessage(c));
      }
      PQclear(r);
    }
  }
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
  const sys_days day = year{num(0, 4)} / month{unsigned(num(5, 2))} / unsigned(num(8, 2));
  std::int64_t us = (day.time_since_epoch().count() * 86400LL + num(11, 2) * 3600LL + num(14, 2) * 60LL +
                     num(17, 2)) * 1000000LL;
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

measurement run_libpq(const bench_options& o) {
  if (o.workload == "W1") return libpq_w1(o);
  if (o.workload == "W4") return libpq_w4(o);
  if (o.workload == "W2") return libpq_w2(o);
  return libpq_w3(o);
}

// ------------------------------------------------------------------ main

[[noreturn]] void usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: pgq_bench_workloads --dsn DSN --workload W1|W2|W3|W4 --impl pgq|libpq\n"
               "       [--queries N] [--connections C] [--depth D] [--scale S] [--json]\n"
               "  W1: N sequential SELECT 1 on one connection (default N 20000)\n"
               "  W2: N point selects over C connections, one in flight each (200000, 10)\n"
               "  W2d: W2 with one pgq::connection per worker instead of a pool (pgq only)\n"
               "  --no-strands: W2's pool without a strand per connection (one thread runs it)\n"
               "  W3: N point selects on one connection, D in flight (200000, 100)\n"
               "  W4: N times 100000 rows (int, text, numeric, timestamptz), every value decoded (50);\n"
               "      reports rows, not queries\n");
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
    else if (a == "--help" || a == "-h") usage(0);
    else usage(2);
  }
  if (o.workload == "W2d" && o.impl != "pgq") usage(2);
  if (o.workload != "W1" && o.workload != "W2" && o.workload != "W2d" && o.workload != "W3" && o.workload != "W4")
    usage(2);
  if (o.impl != "pgq" && o.impl != "libpq") usage(2);
  if (o.queries == 0) o.queries = o.workload == "W1" ? 20000 : o.workload == "W4" ? 50 : 200000;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  bench_options o = parse(argc, argv);
  if (o.dsn.empty()) {
    std::fprintf(stderr, "pgq_bench_workloads: no --dsn and no $PGQ_DSN\n");
    return 2;
  }
  measurement m;
  try {
    m = o.impl == "pgq" ? run_pgq(o) : run_libpq(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgq_bench_workloads: %s %s: %s\n", o.workload.c_str(), o.impl.c_str(),
                 e.what());
    return 1;
  }
  double qps = m.seconds > 0 ? double(m.queries) / m.seconds : 0;
  double cpu_us = m.queries > 0 ? m.cpu_seconds * 1e6 / double(m.queries) : 0;
  // The line is JSON with or without --json; --json is accepted for symmetry
  // with the other benchmark.
  std::printf(
      "{\"workload\":\"%s\",\"impl\":\"%s\",\"queries\":%llu,\"seconds\":%.4f,\"qps\":%.1f,"
      "\"cpu_us_per_query\":%.3f}\n",
      o.workload.c_str(), o.impl.c_str(), static_cast<unsigned long long>(m.queries), m.seconds,
      qps, cpu_us);
  return 0;
}
