// Fault injection against a real server: connections black-holed, cut during
// COMMIT, backends killed under a pipeline, the pool exhausted, server-side
// timeouts and a server restart under load. Each test checks the promise the
// library makes for that fault, then that nothing leaked: no lease out, pool
// statistics that add up, no backend of ours left idle in a transaction.
#include "fault_proxy.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

#include <atomic>
#include <thread>

using namespace pgq_test;
namespace asio = boost::asio;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

std::uint16_t server_port() {
  const auto port = pgq::conninfo::parse(dsn()).get("port");
  if (!port) FAIL("PGQ_TEST_DSN names no port");
  return static_cast<std::uint16_t>(std::stoi(*port));
}

// Pool options for a pool whose connections go through `proxy`, tagged with
// `app` so that pg_stat_activity can tell them apart.
pgq::pool_options proxied_pool(const fault_proxy& proxy, const std::string& app, std::size_t max_size) {
  pgq::pool_options o;
  o.conninfo = with_setting(proxy.route(dsn()), "application_name", app);
  o.max_size = max_size;
  o.acquire_timeout = std::chrono::seconds(5);
  o.connect.connect_timeout = std::chrono::seconds(2);
  o.reset_timeout = milliseconds(300);
  o.backoff_initial = milliseconds(20);
  o.backoff_max = milliseconds(200);
  return o;
}

asio::awaitable<pgq::connection> connect_as(std::string conninfo) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(conninfo);
  co_return conn;
}

// Polls `pred` every 5 ms for up to `limit`; returns its last answer.
template <class Pred>
asio::awaitable<bool> eventually(Pred pred, milliseconds limit) {
  const auto until = steady_clock::now() + limit;
  while (!pred()) {
    if (steady_clock::now() >= until) co_return false;
    co_await pause(milliseconds(5));
  }
  co_return true;
}

asio::awaitable<bool> row_visible(pgq::connection& observer, const std::string& table, int id) {
  auto r = co_await observer.query("SELECT count(*)::int4 FROM " + table + " WHERE id = $1::int4", id);
  co_return r[0].get<int>(0) == 1;
}

enum class commit_outcome { pending, committed, unknown, other };

struct commit_report {
  commit_outcome outcome = commit_outcome::pending;
  std::string what;
};

asio::awaitable<void> commit_and_report(pgq::transaction* tx, commit_report* out) {
  try {
    co_await tx->commit();
    out->outcome = commit_outcome::committed;
  } catch (const pgq::sql_error& e) {
    out->what = e.what();
    out->outcome = e.code() == pgq::errc::commit_unknown ? commit_outcome::unknown : commit_outcome::other;
  }
}

struct pipeline_outcomes {
  int ok = 0;
  int fatal = 0;
  int other = 0;
  int done = 0;
  std::string other_what;
};

asio::awaitable<void> pipelined_query(pgq::connection* conn, int i, pipeline_outcomes* out) {
  try {
    // One slow statement early in the pipeline: everything behind it is
    // still pending when the backend dies.
    pgq::result r;
    if (i == 5) {
      r = co_await conn->query("SELECT pg_sleep(5), $1::int4", i);
    } else {
      r = co_await conn->query("SELECT 0, $1::int4", i);
    }
    if (r[0].get<int>(1) == i) ++out->ok;
  } catch (const pgq::sql_error& e) {
    if (pgq::is_fatal(e.code())) {
      ++out->fatal;
    } else {
      ++out->other;
      out->other_what = e.what();
    }
  }
  ++out->done;
}

struct acquire_outcomes {
  int timeouts = 0;
  int other = 0;
  int done = 0;
  milliseconds shortest{milliseconds::max()};
  milliseconds longest{0};
};

asio::awaitable<void> acquire_and_note(pgq::pool* pool, acquire_outcomes* out) {
  const auto start = steady_clock::now();
  try {
    auto l = co_await pool->acquire();
    ++out->other;  // nothing came back: a grant is wrong
  } catch (const pgq::sql_error& e) {
    if (e.code() == pgq::errc::pool_timeout) {
      ++out->timeouts;
    } else {
      ++out->other;
    }
  }
  const auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
  out->shortest = std::min(out->shortest, took);
  out->longest = std::max(out->longest, took);
  ++out->done;
}

struct load_outcomes {
  std::atomic<bool> restarting{false};
  int ok_before = 0;
  int ok_after = 0;
  int failed_fatal = 0;
  int failed_timeout = 0;
  int failed_other = 0;
  milliseconds longest{0};
  std::string other_what;
  bool stop = false;
  int workers_done = 0;
  std::string log;  // every failure: when, how long it took, what
  steady_clock::time_point t0 = steady_clock::now();
};

// A worker of the steady load: one query after another, each under a 2 s
// timeout, until told to stop.
asio::awaitable<void> load_worker(pgq::pool* pool, int worker, load_outcomes* out, const bool* restarted) {
  int i = 0;
  while (!out->stop) {
    const auto start = steady_clock::now();
    try {
      auto r =
          co_await pgq::with_timeout(pool->query("SELECT $1::int4 + 1", worker * 100000 + i), std::chrono::seconds(2));
      if (r[0].get<int>(0) == worker * 100000 + i + 1) {
        ++(*restarted ? out->ok_after : out->ok_before);
      }
    } catch (const pgq::sql_error& e) {
      out->log += std::to_string(std::chrono::duration_cast<milliseconds>(start - out->t0).count()) + " ms +" +
                  std::to_string(std::chrono::duration_cast<milliseconds>(steady_clock::now() - start).count()) +
                  " ms: " + e.what() + "\n";
      if (pgq::is_fatal(e.code())) {
        ++out->failed_fatal;
      } else if (e.code() == pgq::errc::timeout || e.code() == pgq::errc::pool_timeout) {
        ++out->failed_timeout;
      } else if (pgq::sqlstate_of(e.code()).starts_with("57P")) {
        ++out->failed_fatal;  // 57P01 admin shutdown and friends
      } else {
        ++out->failed_other;
        out->other_what = e.what();
      }
    }
    out->longest = std::max(out->longest, std::chrono::duration_cast<milliseconds>(steady_clock::now() - start));
    ++i;
    co_await pause(milliseconds(2));
  }
  ++out->workers_done;
}

}  // namespace

namespace {
asio::awaitable<void> restart_under_load(scoped_server* server_ptr);
}

TEST_CASE("the fault proxy forwards, delays, cuts and refuses", "[faults][proxy]") {
  run([]() -> asio::awaitable<void> {
    fault_proxy proxy(server_port());
    auto conn = co_await connect_as(proxy.route(dsn()));
    auto r = co_await conn.query("SELECT $1::text", std::string("through the proxy"));
    CHECK(r[0].get<std::string>(0) == "through the proxy");
    CHECK(proxy.accepted() == 1);
    CHECK(proxy.forwarded(direction::to_server) > 0);
    CHECK(proxy.forwarded(direction::to_client) > 0);

    proxy.set_latency(milliseconds(100));
    auto start = steady_clock::now();
    co_await conn.query("SELECT 1");
    CHECK(steady_clock::now() - start >= milliseconds(190));  // there and back
    proxy.set_latency(milliseconds(0));

    proxy.cut_after(direction::to_client, 3);
    try {
      co_await conn.query("SELECT 1");
      FAIL("no error after the cut");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::connection_lost);
    }
    CHECK_FALSE(conn.is_open());

    proxy.refuse(true);
    pgq::connection refused(co_await asio::this_coro::executor);
    try {
      co_await refused.connect(proxy.route(dsn()));
      FAIL("connected while refusing");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::connect_failed);
      CHECK_THAT(e.what(), Catch::Contains("refused"));
    }
    proxy.refuse(false);
    auto again = co_await connect_as(proxy.route(dsn()));
    auto one = co_await again.query("SELECT 1");
    CHECK(one[0].get<int>(0) == 1);
    proxy.cut_all();
    try {
      co_await again.query("SELECT 1");
      FAIL("no error after cut_all");
    } catch (const pgq::sql_error& e) {
      CHECK(pgq::is_fatal(e.code()));
    }
  });
}

TEST_CASE("a black-holed connection: the query times out in its bound, the pool discards the connection", "[faults]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    fault_proxy proxy(server_port());
    const std::string app = unique_name("pgq_blackhole");
    auto observer = co_await connect();
    {
      pgq::pool pool(ex, proxied_pool(proxy, app, 1));
      auto first = co_await pool.query("SELECT pg_backend_pid()");
      const int pid = first[0].get<int>(0);

      proxy.stall(direction::to_server, true);
      proxy.stall(direction::to_client, true);
      const auto start = steady_clock::now();
      try {
        co_await pgq::with_timeout(pool.query("SELECT 2"), milliseconds(300));
        FAIL("the query went through a black hole");
      } catch (const pgq::sql_error& e) {
        CHECK(e.code() == pgq::errc::timeout);
      }
      const auto took = steady_clock::now() - start;
      CHECK(took >= milliseconds(290));
      CHECK(took < milliseconds(600));

      // The connection is not handed out again: its reset cannot finish, so
      // the pool closes it after reset_timeout.
      const bool discarded = co_await eventually(
          [&] {
            const auto s = pool.stats();
            return s.closed_reset_failed + s.closed_broken == 1 && s.in_use == 0;
          },
          milliseconds(3000));
      CHECK(discarded);

      // The network heals; the stuck connection (and the cancel request
      // sent into the black hole) are gone for good.
      proxy.stall(direction::to_server, false);
      proxy.stall(direction::to_client, false);
      proxy.cut_all();
      auto again = co_await pgq::with_timeout(pool.query("SELECT pg_backend_pid()"), std::chrono::seconds(5));
      CHECK(again[0].get<int>(0) != pid);
      CHECK(pool.stats().created == 2);
      co_await check_pool_settled(pool);
    }
    co_await check_no_idle_in_transaction(observer, app);
  });
}

namespace {

struct timed_outcome {
  std::optional<int> value;  // the query's int4, when it succeeded
  boost::system::error_code error;
  std::string what;
  milliseconds took{0};
};

// Runs `sql` (one int4 column) on `conn` under `limit`.
// `sql` is a pointer: no temporary that owns memory sits in the caller's
// co_await expression (GCC 12).
asio::awaitable<timed_outcome> timed_query(pgq::connection* conn, const char* sql, milliseconds limit) {
  timed_outcome out;
  const auto start = steady_clock::now();
  try {
    auto r = co_await pgq::with_timeout(conn->query(sql), limit);
    out.value = r[0].get<int>(0);
  } catch (const pgq::sql_error& e) {
    out.error = e.code();
    out.what = e.what();
  }
  out.took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
  co_return out;
}

}  // namespace

TEST_CASE("a cancel lost in a black hole holds up no other connection's cancel, and its own connection goes on",
          "[faults][cancel]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    fault_proxy proxy(server_port());
    pgq::connect_options opts;
    opts.cancel_timeout = milliseconds(500);
    pgq::connection lost(ex);
    co_await lost.connect(proxy.route(dsn()), opts);
    auto healthy = co_await connect();

    // The cancel request opens a new connection: the proxy swallows it, so
    // PQcancel waits for the server's answer for ever.
    proxy.black_hole_new(true);
    const auto t0 = steady_clock::now();
    const auto first = co_await timed_query(&lost, "SELECT 1 FROM pg_sleep(1.5)", milliseconds(200));
    CHECK(first.error == pgq::errc::timeout);

    // Another connection's cancel goes through at once: its long statement
    // stops on the server, so the next statement runs promptly.
    const auto slow = co_await timed_query(&healthy, "SELECT 1 FROM pg_sleep(10)", milliseconds(200));
    CHECK(slow.error == pgq::errc::timeout);
    const auto after = co_await timed_query(&healthy, "SELECT 7", milliseconds(3000));
    REQUIRE(after.value);
    CHECK(*after.value == 7);
    CHECK(after.took < milliseconds(1000));

    // The connection whose cancel is lost stops waiting for it after
    // cancel_timeout and sends what was queued; it runs once the uncancelled
    // pg_sleep(1.5) is over.
    const auto next = co_await timed_query(&lost, "SELECT 2", milliseconds(5000));
    INFO(next.what);
    REQUIRE(next.value);
    CHECK(*next.value == 2);
    const auto since_start = std::chrono::duration_cast<milliseconds>(steady_clock::now() - t0);
    CHECK(since_start >= milliseconds(1400));
    CHECK(since_start < milliseconds(3000));
    const auto last = co_await timed_query(&lost, "SELECT 3", milliseconds(1000));
    REQUIRE(last.value);
    CHECK(*last.value == 3);
    CHECK(lost.is_open());
    proxy.black_hole_new(false);
  });
}

TEST_CASE("a connection cut during COMMIT gives commit_unknown, whatever the server did", "[faults][transaction]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    fault_proxy proxy(server_port());
    const std::string app = unique_name("pgq_commitcut");
    const std::string table = unique_name("commit_cut");
    auto observer = co_await connect();
    co_await observer.execute("CREATE TABLE " + table + " (id int PRIMARY KEY)");
    {
      pgq::pool pool(ex, proxied_pool(proxy, app, 1));

      // 1. The COMMIT reaches the server and commits; its answer is lost.
      {
        auto tx = co_await pool.begin();
        co_await tx.execute("INSERT INTO " + table + " VALUES (1)");
        proxy.stall(direction::to_client, true);
        const auto sent_before = proxy.forwarded(direction::to_server);
        commit_report report;
        asio::co_spawn(ex, commit_and_report(&tx, &report), asio::detached);
        const bool sent = co_await eventually([&] { return proxy.forwarded(direction::to_server) > sent_before; },
                                              milliseconds(2000));
        CHECK(sent);
        bool committed = false;
        for (int i = 0; i < 200 && !committed; ++i) {
          committed = co_await row_visible(observer, table, 1);
          if (!committed) co_await pause(milliseconds(10));
        }
        CHECK(committed);
        CHECK(report.outcome == commit_outcome::pending);  // the answer is held
        proxy.cut_all();
        co_await eventually([&] { return report.outcome != commit_outcome::pending; }, milliseconds(3000));
        INFO(report.what);
        CHECK(report.outcome == commit_outcome::unknown);
        CHECK_THAT(report.what, Catch::Contains("may or may not"));
        CHECK_FALSE(tx.active());
        proxy.stall(direction::to_client, false);
      }

      // 2. The COMMIT never reaches the server, which rolls back: the client
      // cannot tell this from case 1, and must say so.
      {
        auto tx = co_await pool.begin();
        co_await tx.execute("INSERT INTO " + table + " VALUES (2)");
        proxy.stall(direction::to_server, true);
        const auto read_before = proxy.received(direction::to_server);
        commit_report report;
        asio::co_spawn(ex, commit_and_report(&tx, &report), asio::detached);
        const bool sent =
            co_await eventually([&] { return proxy.received(direction::to_server) > read_before; }, milliseconds(2000));
        CHECK(sent);
        proxy.cut_all();
        co_await eventually([&] { return report.outcome != commit_outcome::pending; }, milliseconds(3000));
        INFO(report.what);
        CHECK(report.outcome == commit_outcome::unknown);
        proxy.stall(direction::to_server, false);
        const bool visible = co_await row_visible(observer, table, 2);
        CHECK_FALSE(visible);
      }

      // The pool replaced both broken connections and serves again.
      auto r = co_await pool.query("SELECT count(*)::int4 FROM " + table);
      CHECK(r[0].get<int>(0) == 1);
      co_await check_pool_settled(pool);
      CHECK(pool.stats().closed_broken == 2);
    }
    co_await check_no_idle_in_transaction(observer, app);
    co_await observer.execute("DROP TABLE " + table);
  });
}

TEST_CASE("a backend killed under a pipeline of 2,000 requests fails every one of them, none hangs",
          "[faults][pipeline]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    const std::string app = unique_name("pgq_pipekill");
    auto observer = co_await connect();
    pgq::pool_options o;
    o.conninfo = with_setting(dsn(), "application_name", app);
    o.max_size = 2;
    pgq::pool pool(ex, o);
    {
      // Concurrent queries from 2,000 coroutines on one leased connection.
      auto l = co_await pool.acquire();
      constexpr int n = 2000;
      pipeline_outcomes out;
      for (int i = 0; i < n; ++i) asio::co_spawn(ex, pipelined_query(&*l, i, &out), asio::detached);
      const bool queued = co_await eventually([&] { return l->pending_requests() >= n - 10; }, milliseconds(3000));
      CHECK(queued);
      co_await pause(milliseconds(100));
      co_await observer.query("SELECT pg_terminate_backend($1::int4)", l->backend_pid());
      const bool all_done = co_await eventually([&] { return out.done == n; }, milliseconds(5000));
      INFO("ok " << out.ok << " fatal " << out.fatal << " other " << out.other << ": " << out.other_what);
      REQUIRE(all_done);
      CHECK(out.other == 0);
      CHECK(out.ok == 5);  // the five ahead of the slow statement
      CHECK(out.fatal == n - 5);
      CHECK(l->pending_requests() == 0);
      CHECK_FALSE(l->is_open());
    }
    {
      // The same with an explicit batch of 1,000 statements in one round trip.
      auto l = co_await pool.acquire();
      pgq::batch b;
      b.add("SELECT pg_sleep(5)");
      for (int i = 0; i < 999; ++i) b.add("SELECT $1::int4", i);
      const int pid = l->backend_pid();
      auto killer = [](pgq::connection* observer, int pid) -> asio::awaitable<void> {
        co_await pause(milliseconds(200));
        co_await observer->query("SELECT pg_terminate_backend($1::int4)", pid);
      };
      asio::co_spawn(ex, killer(&observer, pid), asio::detached);
      const auto start = steady_clock::now();
      try {
        co_await l->run_batch(b, true);
        FAIL("the batch succeeded");
      } catch (const pgq::sql_error& e) {
        // Its COMMIT went out with the rest: lost on the wire, its outcome
        // is not known (commit_unknown); lost before, the loss itself.
        CHECK((pgq::is_fatal(e.code()) || e.code() == pgq::errc::commit_unknown));
      }
      CHECK(steady_clock::now() - start < std::chrono::seconds(3));
      CHECK(l->pending_requests() == 0);
    }
    auto r = co_await pool.query("SELECT 1");
    CHECK(r[0].get<int>(0) == 1);
    co_await check_pool_settled(pool);
    CHECK(pool.stats().closed_broken == 2);
    co_await check_no_idle_in_transaction(observer, app);
  });
}

TEST_CASE("an exhausted pool: waiters time out cleanly, the pool serves again when leases return", "[faults][pool]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    const std::string app = unique_name("pgq_exhaust");
    auto observer = co_await connect();
    pgq::pool_options o;
    o.conninfo = with_setting(dsn(), "application_name", app);
    o.max_size = 2;
    o.acquire_timeout = milliseconds(200);
    pgq::pool pool(ex, o);
    {
      auto a = co_await pool.acquire();
      auto b = co_await pool.begin();  // one holder inside a transaction
      co_await b.execute("SELECT 1");
      acquire_outcomes out;
      constexpr int waiters = 50;
      for (int i = 0; i < waiters; ++i) asio::co_spawn(ex, acquire_and_note(&pool, &out), asio::detached);
      const bool done = co_await eventually([&] { return out.done == waiters; }, milliseconds(3000));
      REQUIRE(done);
      CHECK(out.timeouts == waiters);
      CHECK(out.other == 0);
      CHECK(out.shortest >= milliseconds(190));
      CHECK(out.longest < milliseconds(1000));
      const auto s = pool.stats();
      CHECK(s.timeouts == static_cast<std::uint64_t>(waiters));
      CHECK(s.waiting == 0);
      CHECK(s.in_use == 2);
      CHECK(s.created == 2);
    }  // both leases return; the open transaction is rolled back
    for (int i = 0; i < 20; ++i) {
      auto r = co_await pool.query("SELECT $1::int4", i);
      CHECK(r[0].get<int>(0) == i);
    }
    // A waiter is served when a lease comes back, before its timeout: it
    // waits while both are out, and has its lease once one is returned.
    {
      auto a = co_await pool.acquire();
      auto b = co_await pool.acquire();
      pgq::lease c;
      bool served = false;
      std::string failure;
      auto wait_for_lease = [](pgq::pool* p, pgq::lease* out, bool* served,
                               std::string* failure) -> asio::awaitable<void> {
        try {
          *out = co_await p->acquire();
          *served = true;
        } catch (const std::exception& e) {
          *failure = e.what();
        }
      };
      asio::co_spawn(ex, wait_for_lease(&pool, &c, &served, &failure), asio::detached);
      const bool waiting = co_await eventually([&] { return pool.stats().waiting == 1; }, milliseconds(3000));
      REQUIRE(waiting);
      CHECK_FALSE(served);
      a.release();
      const bool finished = co_await eventually([&] { return served || !failure.empty(); }, milliseconds(3000));
      INFO("acquire failed: " << failure);
      REQUIRE(finished);
      CHECK(served);
      CHECK(c);
    }
    co_await check_pool_settled(pool);
    CHECK(pool.stats().created == 2);
    co_await check_no_idle_in_transaction(observer, app);
  });
}

TEST_CASE("server-set statement_timeout and idle_in_transaction_session_timeout give clear errors",
          "[faults][timeouts]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto admin = co_await connect();
    // The server sets the timeouts, for one role of our own: other tests
    // running on the same server are not touched.
    const std::string role = unique_name("pgq_timeouts");
    const std::string table = unique_name("idle_tx");
    co_await admin.execute("CREATE ROLE " + role + " LOGIN PASSWORD 'role-pw'");
    co_await admin.execute("ALTER ROLE " + role + " SET statement_timeout = '200ms'");
    co_await admin.execute("ALTER ROLE " + role + " SET idle_in_transaction_session_timeout = '300ms'");
    co_await admin.execute("CREATE TABLE " + table + " (id int)");
    co_await admin.execute("GRANT ALL ON " + table + " TO " + role);
    auto ci = pgq::conninfo::parse(dsn());
    ci.set("user", role);
    ci.set("password", "role-pw");
    ci.set("application_name", role);
    {
      pgq::pool_options o;
      o.conninfo = ci.to_string();
      o.max_size = 1;
      pgq::pool pool(ex, o);

      // statement_timeout: 57014 with the server's reason; the connection
      // stays usable, outside and inside a transaction.
      try {
        co_await pool.query("SELECT pg_sleep(2)");
        FAIL("no statement timeout");
      } catch (const pgq::sql_error& e) {
        CHECK(e.sqlstate() == "57014");
        CHECK_THAT(e.what(), Catch::Contains("statement timeout"));
        CHECK_FALSE(pgq::is_fatal(e.code()));
      }
      {
        auto tx = co_await pool.begin();
        try {
          co_await tx.query("SELECT pg_sleep(2)");
          FAIL("no statement timeout");
        } catch (const pgq::sql_error& e) {
          CHECK(e.sqlstate() == "57014");
        }
        CHECK(tx.conn().transaction_status() == pgq::tx_status::in_error);
        co_await tx.rollback();
        CHECK(tx.conn().transaction_status() == pgq::tx_status::idle);
      }
      auto r = co_await pool.query("SELECT 'still here'");
      CHECK(r[0].get<std::string>(0) == "still here");
      CHECK(pool.stats().created == 1);

      // idle_in_transaction_session_timeout: the server ends the session;
      // the next statement and the COMMIT say the connection is gone, the
      // insert is not kept, and the pool replaces the connection.
      {
        auto tx = co_await pool.begin();
        co_await tx.execute("INSERT INTO " + table + " VALUES (1)");
        co_await pause(milliseconds(700));
        try {
          co_await tx.execute("INSERT INTO " + table + " VALUES (2)");
          FAIL("the session outlived idle_in_transaction_session_timeout");
        } catch (const pgq::sql_error& e) {
          INFO(e.what());
          CHECK(pgq::is_fatal(e.code()));
          CHECK_THAT(e.what(), Catch::Contains("idle-in-transaction timeout") || Catch::Contains("25P03"));
        }
        CHECK_FALSE(tx.conn().is_open());
        try {
          co_await tx.commit();
          FAIL("commit succeeded on a dead session");
        } catch (const pgq::sql_error& e) {
          CHECK(e.code() == pgq::errc::connection_lost);
          CHECK_THAT(e.what(), Catch::Contains("rolled the transaction back"));
        }
      }
      auto rows = co_await admin.query("SELECT count(*)::int4 FROM " + table);
      CHECK(rows[0].get<int>(0) == 0);
      auto again = co_await pool.query("SELECT 1");
      CHECK(again[0].get<int>(0) == 1);
      co_await check_pool_settled(pool);
      CHECK(pool.stats().closed_broken == 1);
    }
    co_await check_no_idle_in_transaction(admin, role);
    co_await admin.execute("DROP TABLE " + table);
    co_await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role);
    co_await admin.execute("DROP ROLE " + role);
  });
}

TEST_CASE("a server restart under steady pool load: clear failures, no hang, throughput returns", "[faults][restart]") {
  // A server of our own: restarting the shared one would break other tests.
  scoped_server server("fault-restart-" + std::to_string(::getpid()));
  run([&server] { return restart_under_load(&server); }, std::chrono::seconds(60));
}

namespace {
asio::awaitable<void> restart_under_load(scoped_server* server_ptr) {
  scoped_server& server = *server_ptr;
  auto ex = co_await asio::this_coro::executor;
  const std::string app = unique_name("pgq_restart");
  pgq::pool_options o;
  o.conninfo = with_setting(server.dsn(), "application_name", app);
  o.max_size = 4;
  o.acquire_timeout = std::chrono::seconds(1);
  o.connect.connect_timeout = std::chrono::seconds(1);
  o.backoff_initial = milliseconds(20);
  o.backoff_max = milliseconds(250);
  pgq::pool pool(ex, o);
  load_outcomes out;
  bool restarted = false;
  constexpr int workers = 8;
  for (int w = 0; w < workers; ++w) {
    asio::co_spawn(ex, load_worker(&pool, w, &out, &restarted), asio::detached);
  }
  co_await pause(milliseconds(500));
  // The restart blocks (pg_ctl waits for the server): off the loop.
  std::atomic<bool> restart_done{false};
  std::string restart_error;
  std::thread restarter([&] {
    try {
      server.restart();
    } catch (const std::exception& e) {
      restart_error = e.what();
    }
    restart_done = true;
  });
  while (!restart_done) co_await pause(milliseconds(10));
  restarter.join();
  out.log += "restart done at " +
             std::to_string(std::chrono::duration_cast<milliseconds>(steady_clock::now() - out.t0).count()) + " ms\n";
  REQUIRE(restart_error.empty());
  restarted = true;
  const int failed_during = out.failed_fatal + out.failed_timeout;
  // Throughput returns: within a few seconds queries succeed again.
  const bool back = co_await eventually([&] { return out.ok_after >= 100; }, milliseconds(10000));
  out.stop = true;
  co_await eventually([&] { return out.workers_done == workers; }, milliseconds(5000));
  INFO("ok before " << out.ok_before << ", after " << out.ok_after << ", fatal " << out.failed_fatal << ", timeouts "
                    << out.failed_timeout << ", other " << out.failed_other << ": " << out.other_what
                    << "; longest query " << out.longest.count() << " ms\n"
                    << out.log);
  CHECK(out.ok_before > 100);
  CHECK(back);
  CHECK(failed_during >= 1);  // the restart cut in-flight work
  CHECK(out.failed_other == 0);
  CHECK(out.longest < milliseconds(3000));  // nothing waited past its 2 s timeout
  CHECK(out.workers_done == workers);
  co_await check_pool_settled(pool);
  CHECK(pool.stats().connect_failures + pool.stats().closed_broken + pool.stats().closed_health_check +
            pool.stats().closed_reset_failed >=
        1);
  auto observer = co_await connect_as(server.dsn());
  co_await check_no_idle_in_transaction(observer, app);
  WARN("restart under load: " << out.ok_before << " queries before, " << out.ok_after << " after, " << failed_during
                              << " failed with a connection error or timeout");
}
}  // namespace
