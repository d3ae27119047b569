// pipeline_core driven by scripted libpq results (fake_pq): each rule of the
// driver, and the defects found in the old one, checked without a server.
#include "fake_pq.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace pgq_test;
using pgq::errc;

struct harness {
  fake_pq pq;
  pipeline_core core{pq};
  std::vector<completion> log;

  explicit harness(std::size_t cache = 0, pq_features features = {}, bool describe_first = false) {
    pq.feats = features;
    // Rule 12 has tests of its own; the others script first runs as one unit.
    core.set_describe_first(describe_first);
    core.opened(tx_idle, cache, true);
  }
  std::shared_ptr<stream_state> stream(std::string_view sql) {
    auto st = std::make_shared<stream_state>();
    auto r = std::make_unique<request>();
    r->id = core.next_id();
    st->id = r->id;
    r->what = request::type::stream;
    r->sql = sql;
    r->stream = st;
    core.enqueue(std::move(r));
    collect();
    return st;
  }

  std::uint64_t query(std::string_view sql) {
    auto r = std::make_unique<request>();
    r->id = core.next_id();
    r->sql = sql;
    r->awaited = true;
    const std::uint64_t id = r->id;
    core.enqueue(std::move(r));
    turn_ends();
    return id;
  }
  // With libpq 15 the driver's turn ends after each request of these tests
  // (rule 11's bursts close there); with libpq 17 the tests say when.
  bool turn_per_request = true;
  void turn_ends() {
    if (turn_per_request && !pq.feats.queued_sync) core.end_of_burst();
    collect();
  }
  void end_burst() {
    core.end_of_burst();
    collect();
  }
  std::uint64_t batch(const std::vector<std::string_view>& sqls, bool atomic) {
    auto g = std::make_shared<batch_group>();
    g->id = core.next_id();
    g->atomic = atomic;
    std::vector<std::unique_ptr<request>> items;
    for (auto s : sqls) {
      auto r = std::make_unique<request>();
      r->sql = s;
      items.push_back(std::move(r));
    }
    const std::uint64_t id = g->id;
    core.enqueue_batch(g, std::move(items));
    turn_ends();
    return id;
  }
  void collect() {
    for (auto& c : core.completions()) log.push_back(std::move(c));
    core.completions().clear();
  }
  void read() {
    core.on_readable();
    collect();
    while (core.more_buffered() && core.is_open()) {
      core.on_readable();
      collect();
    }
  }
  void cancel(std::uint64_t id) {
    core.cancel(id);
    collect();
  }
  int times_completed(std::uint64_t id) const {
    int n = 0;
    for (const auto& c : log) n += c.id == id ? 1 : 0;
    return n;
  }
  const completion* outcome(std::uint64_t id) const {
    for (const auto& c : log) {
      if (c.id == id) return &c;
    }
    return nullptr;
  }
  // The error's code, or a default error_code for success.
  pgq::error_code code(std::uint64_t id) const {
    const completion* c = outcome(id);
    REQUIRE(c != nullptr);
    if (!c->error) return {};
    try {
      std::rethrow_exception(c->error);
    } catch (const pgq::sql_error& e) {
      return e.code();
    }
    return {};
  }
  std::string message(std::uint64_t id) const {
    const completion* c = outcome(id);
    REQUIRE(c != nullptr);
    if (!c->error) return {};
    try {
      std::rethrow_exception(c->error);
    } catch (const pgq::sql_error& e) {
      return e.what();
    }
    return {};
  }
};

pgq::error_code state(const char* s) { return pgq::make_sqlstate_error(s); }

}  // namespace

TEST_CASE("pipeline_core classifies transaction statements", "[pipeline_core]") {
  CHECK(classify_statement("BEGIN") == stmt_kind::begin);
  CHECK(classify_statement("  start transaction isolation level serializable") == stmt_kind::begin);
  CHECK(classify_statement("/* a /* nested */ comment */ COMMIT") == stmt_kind::commit);
  CHECK(classify_statement("end") == stmt_kind::commit);
  CHECK(classify_statement(";; -- x\n rollback") == stmt_kind::rollback);
  CHECK(classify_statement("ABORT") == stmt_kind::rollback);
  CHECK(classify_statement("ROLLBACK TO SAVEPOINT a") == stmt_kind::rollback_to);
  CHECK(classify_statement("rollback work to a") == stmt_kind::rollback_to);
  CHECK(classify_statement("COMMIT AND CHAIN") == stmt_kind::chain);
  CHECK(classify_statement("COMMIT AND NO CHAIN") == stmt_kind::commit);
  CHECK(classify_statement("COMMIT PREPARED 'x'") == stmt_kind::other);
  CHECK(classify_statement("PREPARE TRANSACTION 'x'") == stmt_kind::prepare_tx);
  CHECK(classify_statement("SAVEPOINT s") == stmt_kind::savepoint);
  CHECK(classify_statement("RELEASE SAVEPOINT s") == stmt_kind::release);
  CHECK(classify_statement("SELECT 'COMMIT'") == stmt_kind::other);
  CHECK(classify_statement("committed_rows") == stmt_kind::other);
}

TEST_CASE("pipeline_core sees COPY behind comments, semicolons and nested comments", "[pipeline_core]") {
  CHECK(is_copy_via_client("COPY/**/t FROM STDIN"));
  CHECK(is_copy_via_client(";COPY t FROM STDIN"));
  CHECK(is_copy_via_client("/* a /* b */ c */ copy t to stdout"));
  CHECK(is_copy_via_client("COPY(SELECT 1) TO STDOUT"));
  CHECK_FALSE(is_copy_via_client("COPY t FROM '/tmp/x'"));
  CHECK_FALSE(is_copy_via_client("copyright"));
}

TEST_CASE("pipeline_core completes requests in order, once", "[pipeline_core]") {
  harness h;
  const auto a = h.query("SELECT 1");
  const auto b = h.query("SELECT 2");
  CHECK(h.pq.count("sync") == 2);
  h.pq.answer();
  h.pq.answer_error("22012");
  h.read();
  REQUIRE(h.log.size() == 2);
  CHECK(h.log[0].id == a);
  CHECK(h.log[1].id == b);
  CHECK(h.code(b) == state("22012"));
  CHECK(h.core.pending() == 0);
}

TEST_CASE("pipeline_core retries a stale cached plan only outside a transaction and when nothing follows",
          "[pipeline_core]") {
  SECTION("idle and alone: rerun, invisible to the caller") {
    harness h(16);
    h.query("INSERT INTO b VALUES (1) RETURNING *");
    h.pq.answer_prepared("INSERT 0 1");
    h.read();
    const auto id = h.query("INSERT INTO b VALUES (1) RETURNING *");
    h.pq.answer_error("0A000");
    h.read();
    CHECK(h.outcome(id) == nullptr);  // not completed: rerun
    CHECK(h.pq.count("prepare") == 2);
    h.pq.answer();  // DEALLOCATE of the stale statement
    h.pq.answer_prepared("INSERT 0 1");
    h.read();
    CHECK(h.code(id) == pgq::error_code());
    CHECK(h.core.cache().invalidations == 1);
  }
  SECTION("inside a transaction block: the server's error, no rerun") {
    harness h(16);
    h.query("INSERT INTO b VALUES (1) RETURNING *");
    h.pq.answer_prepared("INSERT 0 1");
    h.read();
    h.query("BEGIN");
    h.pq.answer("BEGIN", 0);
    h.read();
    const auto id = h.query("INSERT INTO b VALUES (1) RETURNING *");
    h.pq.answer_error("0A000");
    h.read();
    CHECK(h.code(id) == state("0A000"));
    CHECK(h.pq.count("prepare") == 1);
    CHECK(h.core.tracked_tx() == tx_failed);
  }
  SECTION("with a later request on the wire: the server's error, order kept") {
    harness h(16);
    h.query("INSERT INTO t VALUES (2)");
    h.pq.answer_prepared("INSERT 0 1");
    h.read();
    const auto s2 = h.query("INSERT INTO t VALUES (2)");
    const auto s3 = h.query("INSERT INTO t VALUES (3)");
    h.pq.answer_error("0A000");
    h.pq.answer_prepared("INSERT 0 1");
    h.read();
    CHECK(h.code(s2) == state("0A000"));
    CHECK(h.code(s3) == pgq::error_code());
    // Nothing was sent again behind s3.
    const auto st = h.pq.statements();
    CHECK(std::count(st.begin(), st.end(), "EXEC INSERT INTO t VALUES (2)") == 2);
  }
}

TEST_CASE("pipeline_core: an atomic batch with a stale plan fails whole and rolls back", "[pipeline_core]") {
  harness h(16);
  h.query("INSERT INTO b VALUES (1) RETURNING *");
  h.pq.answer_prepared("INSERT 0 1");
  h.read();
  const auto id = h.batch({"INSERT INTO a VALUES (1)", "INSERT INTO b VALUES (1) RETURNING *"}, true);
  // BEGIN, a (prepared), b (cached) sharing one Sync (rule 11), COMMIT.
  h.pq.answer_in_burst("BEGIN", 0);
  h.pq.answer_prepared_in_burst("INSERT 0 1");
  h.pq.error_in_burst("0A000");
  h.pq.sync_result();
  h.pq.answer("ROLLBACK", 0);  // COMMIT of the failed transaction
  h.read();
  CHECK(h.code(id) == state("0A000"));
  CHECK(h.message(id).find("statement 2 of 2") != std::string::npos);
  CHECK(h.pq.count("prepare") == 2);  // b was never prepared again
  CHECK(h.core.tracked_tx() == tx_idle);
  // Nothing of the batch ran again after its COMMIT.
  const auto st = h.pq.statements();
  const auto commit = std::find(st.begin(), st.end(), "COMMIT");
  REQUIRE(commit != st.end());
  for (auto it = commit + 1; it != st.end(); ++it) CHECK(it->rfind("DEALLOCATE ", 0) == 0);
}

TEST_CASE("pipeline_core: COMMIT answered ROLLBACK is an error", "[pipeline_core]") {
  harness h;
  h.query("BEGIN");
  const auto c = h.query("COMMIT");
  h.pq.answer("BEGIN", 0);
  h.pq.answer("ROLLBACK", 0);
  h.read();
  CHECK(h.code(c) == state("25P02"));
  CHECK(h.core.tracked_tx() == tx_idle);
}

TEST_CASE("pipeline_core: a cancel meant for another request is rerun only where invisible", "[pipeline_core]") {
  SECTION("alone, outside a transaction: rerun") {
    harness h;
    const auto a = h.query("SELECT pg_sleep(10)");
    const auto b = h.query("SELECT 2");
    h.cancel(a);
    CHECK(h.core.take_server_cancels() == 1);
    h.pq.answer_error("57014");  // a
    h.pq.answer_error("57014");  // b, hit by the cancel meant for a
    h.read();
    CHECK(h.outcome(b) == nullptr);
    h.core.on_server_cancel_done();
    h.pq.answer();
    h.read();
    CHECK(h.code(b) == pgq::error_code());
    CHECK(h.times_completed(a) == 1);
    CHECK(h.code(a) == errc::cancelled);
  }
  SECTION("in a transaction block: its error says whose cancel it was") {
    harness h;
    h.query("BEGIN");
    h.pq.answer("BEGIN", 0);
    h.read();
    const auto a = h.query("SELECT pg_sleep(10)");
    const auto b = h.query("SELECT 2");
    h.cancel(a);
    h.pq.answer_error("57014");
    h.pq.answer_error("57014");
    h.read();
    CHECK(h.code(b) == state("57014"));
    CHECK(h.message(b).find("meant for another statement") != std::string::npos);
  }
}

TEST_CASE("pipeline_core: an atomic batch decides BEGIN/COMMIT from the state it will start in", "[pipeline_core]") {
  SECTION("idle: wrapped") {
    harness h;
    h.batch({"INSERT 1", "INSERT 2"}, true);
    CHECK(h.pq.statements() == std::vector<std::string>{"BEGIN", "INSERT 1", "INSERT 2", "COMMIT"});
  }
  SECTION("inside the caller's transaction with a detached ROLLBACK TO SAVEPOINT in flight: not wrapped") {
    harness h;
    h.query("BEGIN");
    h.pq.answer("BEGIN", 0);
    h.read();
    h.core.enqueue([] {
      auto r = std::make_unique<request>();
      r->what = request::type::detached;
      r->owned_sql = "ROLLBACK TO SAVEPOINT s";
      r->sql = r->owned_sql;
      return r;
    }());
    h.batch({"INSERT 1"}, true);
    const auto st = h.pq.statements();
    CHECK(std::count(st.begin(), st.end(), "COMMIT") == 0);
    CHECK(std::count(st.begin(), st.end(), "BEGIN") == 1);  // the caller's
  }
  SECTION("a BEGIN in flight: the batch waits until its outcome is known") {
    harness h;
    h.query("BEGIN");
    const auto id = h.batch({"INSERT 1"}, true);
    CHECK(h.pq.statements() == std::vector<std::string>{"BEGIN"});
    h.pq.answer("BEGIN", 0);
    h.read();
    CHECK(h.pq.statements() == std::vector<std::string>{"BEGIN", "INSERT 1"});
    h.pq.answer("INSERT 0 1", 0);
    h.read();
    CHECK(h.code(id) == pgq::error_code());
    CHECK(h.core.tracked_tx() == tx_block);
  }
}

TEST_CASE("pipeline_core: COMMIT under cancellation", "[pipeline_core]") {
  SECTION("cancelled on the wire: commit_unknown, no server cancel") {
    harness h;
    h.query("BEGIN");
    const auto c = h.query("COMMIT");
    h.cancel(c);
    CHECK(h.code(c) == errc::commit_unknown);
    CHECK(h.core.take_server_cancels() == 0);
    h.pq.answer("BEGIN", 0);
    h.pq.answer("COMMIT", 0);
    h.read();
    CHECK(h.times_completed(c) == 1);
    CHECK(h.core.tracked_tx() == tx_idle);
  }
  SECTION("cancelled before it was sent: it becomes a ROLLBACK") {
    harness h;
    h.query("BEGIN");
    h.pq.answer("BEGIN", 0);
    h.read();
    const auto s = h.query("SELECT pg_sleep(1)");
    h.cancel(s);  // a server cancel holds back what follows
    const auto c = h.query("COMMIT");
    h.cancel(c);
    CHECK(h.code(c) == errc::cancelled);
    h.core.on_server_cancel_done();
    const auto st = h.pq.statements();
    CHECK(st.back() == "ROLLBACK");
    CHECK(std::count(st.begin(), st.end(), "COMMIT") == 0);
  }
  SECTION("lost on the wire: commit_unknown") {
    harness h;
    h.query("BEGIN");
    const auto c = h.query("COMMIT");
    h.core.lost("gone");
    h.collect();
    CHECK(h.code(c) == errc::commit_unknown);
  }
  SECTION("a BEGIN cancelled after it was sent is followed by a ROLLBACK") {
    harness h;
    const auto b = h.query("BEGIN");
    h.cancel(b);
    CHECK(h.code(b) == errc::cancelled);
    CHECK(h.pq.statements() == std::vector<std::string>{"BEGIN", "ROLLBACK"});
    h.pq.answer("BEGIN", 0);
    h.pq.answer("ROLLBACK", 0);
    h.read();
    CHECK(h.core.tracked_tx() == tx_idle);
    CHECK(h.core.pending() == 0);
  }
}

TEST_CASE("pipeline_core: a cancelled request stops referring to the caller's text", "[pipeline_core]") {
  harness h;
  auto text = std::make_unique<std::string>("SELECT pg_sleep(1) -- a long enough text to live on the heap");
  const auto id = h.query(*text);
  h.cancel(id);
  text.reset();         // the caller is gone
  h.core.lost("gone");  // fails what is in flight, reading its text
  h.collect();
  CHECK(h.times_completed(id) == 1);
}

TEST_CASE("pipeline_core: a cancelled request behind others is cancelled on the server when it runs",
          "[pipeline_core]") {
  harness h;
  h.query("SELECT pg_sleep(0.5)");
  const auto b = h.query("SELECT pg_sleep(600)");
  h.cancel(b);
  CHECK(h.code(b) == errc::cancelled);
  CHECK(h.core.take_server_cancels() == 0);  // it does not run yet
  h.pq.answer();                             // the first one ends: now b runs
  h.read();
  CHECK(h.core.take_server_cancels() == 1);
  h.pq.answer_error("57014");
  h.read();
  CHECK(h.times_completed(b) == 1);
  CHECK(h.core.pending() == 0);
}

TEST_CASE("pipeline_core: a COPY result nobody asked for ends cleanly", "[pipeline_core]") {
  SECTION("COPY FROM STDIN alone: CopyFail, the request fails, the connection goes on") {
    harness h;
    const auto id = h.query("EXECUTE copy_in_plan");
    h.pq.results.push_back(h.pq.make(pq_status::copy_in));
    h.read();
    CHECK(h.pq.count("copy_end") == 1);
    h.pq.answer_error("57014");
    h.read();
    CHECK(h.code(id) == errc::protocol_error);
    CHECK(h.core.is_open());
    const auto next = h.query("SELECT 1");
    h.pq.answer();
    h.read();
    CHECK(h.code(next) == pgq::error_code());
  }
  SECTION("COPY FROM STDIN with requests behind it: closed, nothing hangs") {
    harness h;
    const auto id = h.query("EXECUTE copy_in_plan");
    const auto next = h.query("SELECT 1");
    h.pq.results.push_back(h.pq.make(pq_status::copy_in));
    h.read();
    CHECK_FALSE(h.core.is_open());
    CHECK(h.code(id) == errc::protocol_error);
    CHECK(h.code(next) == errc::protocol_error);
  }
  SECTION("COPY TO STDOUT: its rows are dropped without spinning") {
    harness h;
    const auto id = h.query("EXECUTE copy_out_plan");
    h.pq.results.push_back(h.pq.make(pq_status::copy_out));
    h.pq.copy_out = {10, 10};  // then nothing: wait for input
    h.read();
    CHECK(h.core.take_server_cancels() == 1);
    CHECK(h.outcome(id) == nullptr);
    h.pq.copy_out = {10, -1};
    h.pq.results.push_back(h.pq.make(pq_status::command_ok, {}, "COPY 3"));
    h.pq.results.push_back(nullptr);
    h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
    h.read();
    CHECK(h.code(id) == errc::protocol_error);
    CHECK(h.core.is_open());
  }
}

TEST_CASE("pipeline_core refuses more than 65535 parameters before sending anything", "[pipeline_core]") {
  harness h;
  auto r = std::make_unique<request>();
  r->id = h.core.next_id();
  r->sql = "SELECT 1";
  r->awaited = true;
  for (int i = 0; i < 65536; ++i) r->params.add_null(0);
  const auto id = r->id;
  h.core.enqueue(std::move(r));
  h.collect();
  CHECK(h.code(id) == errc::invalid_value);
  CHECK(h.pq.sent.empty());
  CHECK(h.core.is_open());
}

TEST_CASE("pipeline_core: a lost connection fails everything once, and later requests say why", "[pipeline_core]") {
  harness h;
  const auto a = h.query("SELECT 1");
  h.core.lost("server closed the connection");
  h.collect();
  CHECK(h.code(a) == errc::connection_lost);
  const auto b = h.query("SELECT 2");
  CHECK(h.code(b) == errc::connection_lost);
  CHECK(h.message(b).find("server closed the connection") != std::string::npos);
  CHECK(h.times_completed(a) == 1);
}

TEST_CASE("pipeline_core: an atomic batch cancelled with its COMMIT on the wire waits for the COMMIT's answer",
          "[pipeline_core]") {
  SECTION("the cancel takes hold: cancelled, rolled back") {
    harness h;
    const auto id = h.batch({"SELECT pg_sleep(5)", "SELECT 1"}, true);
    h.pq.answer_in_burst("BEGIN", 0);
    h.read();
    h.cancel(id);
    CHECK(h.outcome(id) == nullptr);  // not yet: the COMMIT will tell
    CHECK(h.core.take_server_cancels() == 1);
    h.pq.error_in_burst("57014");
    h.pq.aborted_in_burst();
    h.pq.sync_result();
    h.pq.answer("ROLLBACK", 0);
    h.read();
    CHECK(h.code(id) == errc::cancelled);
    CHECK(h.times_completed(id) == 1);
  }
  SECTION("the statements were done before the cancel: it committed, so the results come") {
    harness h;
    const auto id = h.batch({"SELECT 1"}, true);
    h.pq.answer_in_burst("BEGIN", 0);
    h.read();
    h.cancel(id);
    h.pq.answer_in_burst();
    h.pq.sync_result();
    h.pq.answer("COMMIT", 0);
    h.read();
    CHECK(h.code(id) == pgq::error_code());
    REQUIRE(h.outcome(id) != nullptr);
    CHECK(h.outcome(id)->rows.size() == 1);
  }
  SECTION("the COMMIT itself runs: commit_unknown at once") {
    harness h;
    const auto id = h.batch({"SELECT 1"}, true);
    h.pq.answer_in_burst("BEGIN", 0);
    h.pq.answer_in_burst();
    h.pq.sync_result();
    h.read();
    h.cancel(id);
    CHECK(h.code(id) == errc::commit_unknown);
  }
}

TEST_CASE("pipeline_core: a cancel meant for a statement that lands on the COMMIT behind it is never rerun",
          "[pipeline_core]") {
  harness h;
  h.query("BEGIN");
  h.pq.answer("BEGIN", 0);
  h.read();
  const auto s = h.query("SELECT * FROM big");
  const auto c = h.query("COMMIT");
  h.cancel(s);
  CHECK(h.core.take_server_cancels() == 1);
  h.pq.answer_in_burst();      // s finished before the cancel arrived
  h.pq.sync_result();          // (its burst's Sync, forced before COMMIT)
  h.pq.answer_error("57014");  // ... which hit a deferred trigger of COMMIT
  h.read();
  CHECK(h.code(c) == state("57014"));
  CHECK(h.message(c).find("meant for another statement") != std::string::npos);
  const auto st = h.pq.statements();
  CHECK(std::count(st.begin(), st.end(), "COMMIT") == 1);  // not sent again
  CHECK(h.core.tracked_tx() == tx_idle);                   // a failed COMMIT ends the transaction
}

TEST_CASE("pipeline_core holds requests back while a cancel the driver started itself is on its way",
          "[pipeline_core]") {
  harness h;
  h.core.server_cancel_started();  // e.g. a COPY abandoned while its statement ran
  const auto id = h.query("SELECT 5");
  CHECK(h.pq.sent.empty());  // it would be the one the late cancel hits
  h.core.on_server_cancel_done();
  h.collect();
  CHECK(h.pq.statements() == std::vector<std::string>{"SELECT 5"});
  h.pq.answer();
  h.read();
  CHECK(h.code(id) == pgq::error_code());
}

// The server ignores a cancel that reaches the backend between the messages
// of a request (between Parse and Execute): the statement then runs on.
TEST_CASE("pipeline_core cancels again a request that still runs after its cancel was done", "[pipeline_core]") {
  harness h;
  const auto a = h.query("SELECT pg_sleep(30)");
  const auto b = h.query("SELECT 2");
  h.cancel(a);
  CHECK(h.code(a) == errc::cancelled);
  CHECK(h.core.take_server_cancels() == 1);
  CHECK(h.core.cancelled_but_running() == 0);  // that cancel is still on its way
  h.core.on_server_cancel_done();
  CHECK(h.core.cancelled_but_running() == a);  // ... done, and a still runs
  CHECK(h.core.recancel_delay() == std::chrono::milliseconds(50));
  h.core.recancel(b);  // not the one at the front: nothing
  CHECK(h.core.take_server_cancels() == 0);
  h.core.recancel(a);
  CHECK(h.core.take_server_cancels() == 1);
  h.core.recancel(a);  // one cancel at a time
  CHECK(h.core.take_server_cancels() == 0);
  h.core.on_server_cancel_done();
  CHECK(h.core.recancel_delay() == std::chrono::milliseconds(100));  // backs off
  h.pq.answer_error("57014");
  h.read();
  CHECK(h.times_completed(a) == 1);
  CHECK(h.core.cancelled_but_running() == 0);  // b was not cancelled
  h.core.recancel(a);                          // a late timer: nothing
  CHECK(h.core.take_server_cancels() == 0);
  h.pq.answer();
  h.read();
  CHECK(h.code(b) == pgq::error_code());
  CHECK(h.core.pending() == 0);
}

// ------------------------------------------------ libpq 17 calls (rules 8-10)

namespace {
constexpr pq_features libpq17{true, true, true};
}

TEST_CASE("pipeline_core: with PQsendPipelineSync a burst of requests goes out in one write, one Sync each",
          "[pipeline_core]") {
  harness h(0, libpq17);
  const auto a = h.query("SELECT 1");
  const auto b = h.query("SELECT 2");
  const auto c = h.query("SELECT 3");
  CHECK(h.pq.count("sync") == 3);  // each request isolated from the others' errors
  CHECK(h.pq.writes == 0);         // queued, not written
  CHECK(h.core.wants_flush());
  h.core.end_of_burst();
  CHECK(h.pq.writes == 1);
  CHECK(h.pq.written == h.pq.sent.size());
  CHECK_FALSE(h.core.wants_flush());
  h.pq.answer();
  h.pq.answer_error("22012");
  h.pq.answer();
  h.read();
  REQUIRE(h.log.size() == 3);
  CHECK(h.code(a) == pgq::error_code());
  CHECK(h.code(b) == state("22012"));
  CHECK(h.code(c) == pgq::error_code());
  CHECK(h.log[0].id == a);
  CHECK(h.log[2].id == c);
}

TEST_CASE("pipeline_core: with PQpipelineSync each request is written as it is sent", "[pipeline_core]") {
  harness h;
  h.query("SELECT 1");
  h.query("SELECT 2");
  h.query("SELECT 3");
  CHECK(h.pq.count("sync") == 3);
  CHECK(h.pq.writes == 3);
  CHECK_FALSE(h.core.wants_flush());
}

TEST_CASE("pipeline_core: what a read sends (a rerun) is written by the end of that read", "[pipeline_core]") {
  harness h(16, libpq17);
  h.query("INSERT INTO b VALUES (1) RETURNING *");
  h.core.end_of_burst();
  h.pq.answer_prepared("INSERT 0 1");
  h.read();
  const auto id = h.query("INSERT INTO b VALUES (1) RETURNING *");
  h.core.end_of_burst();
  const int before = h.pq.writes;
  h.pq.answer_error("0A000");
  h.read();
  CHECK(h.outcome(id) == nullptr);  // rerun
  CHECK(h.pq.count("prepare") == 2);
  CHECK(h.pq.written == h.pq.sent.size());  // no end_of_burst needed
  CHECK(h.pq.writes == before + 1);
  CHECK_FALSE(h.core.wants_flush());
  // The stale statement was closed with a protocol Close, not DEALLOCATE.
  CHECK(h.pq.count("close") == 1);
  h.pq.answer("", 0);  // the Close
  h.pq.answer_prepared("INSERT 0 1");
  h.read();
  CHECK(h.code(id) == pgq::error_code());
}

TEST_CASE("pipeline_core: requests held back behind a cancel are written once it is done", "[pipeline_core]") {
  harness h(0, libpq17);
  h.core.server_cancel_started();
  h.query("SELECT 1");
  h.query("SELECT 2");
  CHECK(h.pq.count("sync") == 0);  // held back: the cancel could hit them
  h.core.on_server_cancel_done();
  CHECK(h.pq.count("sync") == 2);
  CHECK(h.core.wants_flush());
  h.core.end_of_burst();
  CHECK(h.pq.writes == 1);
}

TEST_CASE("pipeline_core: an evicted statement is closed with PQsendClosePrepared when libpq has it",
          "[pipeline_core]") {
  SECTION("libpq 17: a protocol Close, after the request that evicted it") {
    harness h(1, libpq17);
    h.query("SELECT a");
    h.core.end_of_burst();
    h.pq.answer_prepared();
    h.read();
    h.query("SELECT b");
    REQUIRE(h.pq.count("close") == 1);
    CHECK(h.pq.sent.back().what == "sync");
    CHECK(h.pq.sent[h.pq.sent.size() - 2].what == "close");
    CHECK(h.pq.sent[h.pq.sent.size() - 2].sql == "pgq_1");
    for (const auto& st : h.pq.statements()) CHECK(st.rfind("DEALLOCATE", 0) != 0);
  }
  SECTION("libpq 15: DEALLOCATE") {
    harness h(1);
    h.query("SELECT a");
    h.pq.answer_prepared();
    h.read();
    h.query("SELECT b");
    CHECK(h.pq.count("close") == 0);
    const auto st = h.pq.statements();
    CHECK(std::count(st.begin(), st.end(), "DEALLOCATE pgq_1") == 1);
  }
}

TEST_CASE("pipeline_core: a stream asks for chunks of rows when libpq has chunked-rows mode", "[pipeline_core]") {
  SECTION("libpq 17 and a chunk size: chunks, and the buffer counts rows") {
    harness h(0, libpq17);
    h.core.set_stream_chunk_rows(100);
    auto st = h.stream("SELECT g FROM generate_series(1, 5000) g");
    h.core.end_of_burst();
    for (int i = 0; i < 20; ++i) h.pq.results.push_back(h.pq.make(pq_status::tuples_chunk, {}, {}, 100));
    h.read();
    REQUIRE(h.pq.row_modes == std::vector<int>{100});
    // Paused once 1024 rows were buffered: 11 chunks of 100.
    CHECK(st->rows.size() == 11);
    CHECK(st->buffered == 1100);
    CHECK_FALSE(h.core.wants_read());
    st->rows.clear();
    st->buffered = 0;
    h.core.stream_resume();
    CHECK(st->rows.size() == 9);
  }
  SECTION("the command tag libpq put on the last chunk reaches the closing result") {
    harness h(0, libpq17);
    h.core.set_stream_chunk_rows(256);
    auto st = h.stream("SELECT g FROM generate_series(1, 1000) g");
    h.core.end_of_burst();
    for (int i = 0; i < 3; ++i) h.pq.results.push_back(h.pq.make(pq_status::tuples_chunk, {}, {}, 256));
    h.pq.results.push_back(h.pq.make(pq_status::tuples_chunk, {}, "SELECT 1000", 232));
    h.pq.results.push_back(h.pq.make(pq_status::tuples_ok, {}, {}, 0));
    h.pq.results.push_back(nullptr);
    h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
    h.read();
    REQUIRE(st->done);
    CHECK_FALSE(st->error);
    CHECK(st->buffered == 1000);
    REQUIRE(st->final.native_handle() != nullptr);
    CHECK(h.pq.command_tag(st->final.native_handle()) == "SELECT 1000");
  }
  SECTION("chunk size 1: single-row mode") {
    harness h(0, libpq17);
    h.core.set_stream_chunk_rows(1);
    h.stream("SELECT 1");
    h.core.end_of_burst();
    h.pq.results.push_back(h.pq.make(pq_status::single_tuple, {}, {}, 1));
    h.read();
    CHECK(h.pq.row_modes == std::vector<int>{1});
  }
  SECTION("libpq 15: single-row mode whatever the chunk size") {
    harness h;
    h.core.set_stream_chunk_rows(100);
    auto st = h.stream("SELECT 1");
    for (int i = 0; i < 1100; ++i) h.pq.results.push_back(h.pq.make(pq_status::single_tuple, {}, {}, 1));
    h.read();
    CHECK(h.pq.row_modes == std::vector<int>{1});
    CHECK(st->rows.size() == 1024);
    CHECK_FALSE(h.core.wants_read());
  }
}

TEST_CASE("pipeline_core: a request cancelled while still in libpq's buffer is written before the cancel",
          "[pipeline_core]") {
  harness h(0, libpq17);
  const auto id = h.query("SELECT pg_sleep(10)");
  CHECK(h.pq.writes == 0);
  h.cancel(id);
  // On the wire first: a cancel that finds the backend idle does nothing.
  CHECK(h.pq.writes == 1);
  CHECK(h.core.take_server_cancels() == 1);
  CHECK(h.code(id) == pgq::errc::cancelled);
}

TEST_CASE("pipeline_core rule 12: a first run is described first, then executed in binary", "[pipeline_core]") {
  harness h(8, {}, true);
  h.pq.describe_binary = true;
  const auto a = h.query("SELECT 1");
  const auto b = h.query("SELECT 2");  // behind it: waits for a's Describe too
  // Parse + Describe on their own Sync; nothing executed yet.
  CHECK(h.pq.count("prepare") == 1);
  CHECK(h.times_completed(b) == 0);
  CHECK(h.pq.count("describe") == 1);
  CHECK(h.pq.count("execute") == 0);
  CHECK(h.pq.count("sync") == 1);
  CHECK(h.core.pending() == 3);
  // The Describe comes back: the statement runs in binary, and the one
  // behind it gets its own Describe.
  h.pq.results.push_back(h.pq.make(pq_status::command_ok));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::command_ok));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
  h.read();
  REQUIRE(h.pq.formats.size() == 1);
  CHECK(h.pq.formats[0] == 1);
  CHECK(h.pq.count("prepare") == 2);  // b's Describe, pipelined behind a's run
  CHECK(h.times_completed(a) == 0);
  h.pq.answer();
  h.read();
  CHECK(h.code(a) == pgq::error_code());
  CHECK(h.pq.count("execute") == 1);
  CHECK(h.core.cache().misses == 2);
  CHECK(h.core.cache().hits == 0);
  // A second run of a: straight from the cache, one unit, binary.
  const auto a2 = h.query("SELECT 1");
  CHECK(h.times_completed(a2) == 0);
  CHECK(h.pq.count("execute") == 1);  // still behind b's Describe
  h.pq.results.push_back(h.pq.make(pq_status::command_ok));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::command_ok));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
  h.read();
  CHECK(h.pq.count("execute") == 3);  // b, then a2 behind it
  h.pq.answer();
  h.pq.answer();
  h.read();
  CHECK(h.code(b) == pgq::error_code());
  CHECK(h.code(a2) == pgq::error_code());
  CHECK(h.core.cache().hits == 1);
  CHECK(h.pq.formats == std::vector<int>{1, 1, 1});
  CHECK(h.core.pending() == 0);
}

TEST_CASE("pipeline_core rule 12: a column without a binary codec keeps text", "[pipeline_core]") {
  harness h(8, {}, true);
  h.pq.describe_binary = false;
  const auto a = h.query("SELECT '(1,2)'::point");
  h.pq.results.push_back(h.pq.make(pq_status::command_ok));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::command_ok));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
  h.read();
  h.pq.answer();
  h.read();
  CHECK(h.code(a) == pgq::error_code());
  CHECK(h.pq.formats == std::vector<int>{0});
}

TEST_CASE("pipeline_core rule 12: a failed Parse is the statement's error, sent once", "[pipeline_core]") {
  harness h(8, {}, true);
  const auto a = h.query("SELEC 1");
  const auto b = h.query("SELECT 2");
  h.pq.results.push_back(h.pq.make(pq_status::fatal_error, "42601"));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::pipeline_aborted));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
  h.read();
  CHECK(h.code(a) == state("42601"));
  CHECK(h.times_completed(a) == 1);
  CHECK(h.pq.count("execute") == 0);  // a never executed
  // b goes on: its own Describe (the only statement cached), then its run.
  CHECK(h.pq.count("prepare") == 2);
  CHECK(h.core.cache().size() == 1);
  // Its Parse and Describe alone: no execution yet.
  h.pq.results.push_back(h.pq.make(pq_status::command_ok));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::command_ok));
  h.pq.results.push_back(nullptr);
  h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
  h.read();
  h.pq.answer();
  h.read();
  CHECK(h.code(b) == pgq::error_code());
}

TEST_CASE("pipeline_core rule 12: cancelled while its Describe is out, a first run never runs", "[pipeline_core]") {
  harness h(8, {}, true);
  const auto a = h.query("INSERT INTO t VALUES (1)");
  h.cancel(a);
  CHECK(h.code(a) == errc::cancelled);
  CHECK(h.core.take_server_cancels() == 0);  // nothing of it runs
  const auto b = h.query("SELECT 2");
  CHECK(h.pq.count("prepare") == 2);  // b's Describe follows a's at once
  CHECK(h.times_completed(b) == 0);
  for (int k = 0; k < 2; ++k) {  // both Describes come back
    h.pq.results.push_back(h.pq.make(pq_status::command_ok));
    h.pq.results.push_back(nullptr);
    h.pq.results.push_back(h.pq.make(pq_status::command_ok));
    h.pq.results.push_back(nullptr);
    h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
  }
  h.read();
  CHECK(h.times_completed(a) == 1);
  CHECK(h.pq.statements() == std::vector<std::string>{"EXEC SELECT 2"});  // a's INSERT never ran
  CHECK(h.core.cache().size() == 2);                                      // a's statement exists: a later run uses it
}

TEST_CASE("pipeline_core rule 12: a stray cancel on the Describe, or a loss, is not the statement's error",
          "[pipeline_core]") {
  SECTION("a cancel meant for the statement before hits the Describe: sent the usual way") {
    harness h(8, {}, true);
    const auto a = h.query("SELECT 1");
    h.pq.results.push_back(h.pq.make(pq_status::fatal_error, "57014"));
    h.pq.results.push_back(nullptr);
    h.pq.results.push_back(h.pq.make(pq_status::pipeline_aborted));
    h.pq.results.push_back(nullptr);
    h.pq.results.push_back(h.pq.make(pq_status::pipeline_sync));
    h.read();
    CHECK(h.times_completed(a) == 0);
    CHECK(h.pq.count("prepare") == 2);  // prepared again with its run
    CHECK(h.pq.count("execute") == 1);
    h.pq.answer_prepared();
    h.read();
    CHECK(h.code(a) == pgq::error_code());
  }
  SECTION("the connection is lost while the Describe is out") {
    harness h(8, {}, true);
    const auto a = h.query("SELECT 1");
    h.pq.bad = true;
    h.read();
    CHECK(h.code(a) == errc::connection_lost);
    CHECK(h.times_completed(a) == 1);
  }
}

// ------------------------------------------------ rule 11: one Sync per burst

namespace {

// The libpq calls made, as "query:<sql>", "execute", "sync"... in order,
// from entry `from` on.
std::vector<std::string> calls(const harness& h, std::size_t from = 0) {
  std::vector<std::string> out;
  for (std::size_t i = from; i < h.pq.sent.size(); ++i) {
    const auto& s = h.pq.sent[i];
    out.push_back(s.what == "query" ? "query:" + s.sql : s.what);
  }
  return out;
}

// A harness inside a transaction block begun (and answered) already.
void begin_block(harness& h) {
  h.query("BEGIN");
  h.end_burst();
  h.pq.answer("BEGIN", 0);
  h.read();
  REQUIRE(h.core.tracked_tx() == tx_block);
  REQUIRE(h.core.pending() == 0);
  REQUIRE(h.core.in_flight() == 0);
}

}  // namespace

TEST_CASE("pipeline_core rule 11: statements of a burst inside a block share one Sync", "[pipeline_core][burst]") {
  for (const pq_features f : {pq_features{}, libpq17}) {
    harness h(0, f);
    begin_block(h);
    h.turn_per_request = false;
    const std::size_t from = h.pq.sent.size();
    const int writes = h.pq.writes;
    std::vector<std::uint64_t> ids;
    ids.reserve(5);
    for (int i = 0; i < 5; ++i) ids.push_back(h.query("INSERT INTO t VALUES (1)"));
    CHECK(h.pq.count("sync") == 1);  // BEGIN's burst only
    CHECK(h.pq.writes == writes);    // nothing written before the burst ends, whatever the libpq
    CHECK(h.core.wants_flush());
    CHECK(h.core.burst_open());
    h.end_burst();
    std::vector<std::string> expected(5, "query:INSERT INTO t VALUES (1)");
    expected.emplace_back("sync");
    CHECK(calls(h, from) == expected);
    CHECK(h.pq.writes == writes + 1);
    CHECK((f.queued_sync ? h.pq.queued_syncs : h.pq.legacy_syncs) == 2);
    CHECK_FALSE(h.core.burst_open());
    for (int i = 0; i < 5; ++i) h.pq.answer_in_burst("INSERT 0 1", 1);
    h.pq.sync_result();
    h.read();
    REQUIRE(h.log.size() == 6);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      CHECK(h.log[i + 1].id == ids[i]);  // in order, once each
      CHECK(h.times_completed(ids[i]) == 1);
      CHECK(h.code(ids[i]) == pgq::error_code());
    }
    CHECK(h.core.pending() == 0);
    CHECK(h.core.in_flight() == 0);
    CHECK(h.core.tracked_tx() == tx_block);
  }
}

TEST_CASE("pipeline_core rule 11: a statement completes at its own results, before its burst's Sync",
          "[pipeline_core][burst]") {
  harness h;
  begin_block(h);
  const auto a = h.query("SELECT 1");
  h.pq.answer_in_burst();
  h.read();
  CHECK(h.code(a) == pgq::error_code());
  CHECK(h.core.pending() == 0);    // the Sync on its way is no request
  CHECK(h.core.in_flight() == 1);  // ... but is still awaited
  h.pq.sync_result();
  h.read();
  CHECK(h.core.in_flight() == 0);
  CHECK(h.times_completed(a) == 1);
}

TEST_CASE("pipeline_core rule 8: independent statements keep one Sync each", "[pipeline_core][burst]") {
  for (const pq_features f : {pq_features{}, libpq17}) {
    harness h(0, f);
    h.turn_per_request = false;
    h.query("SELECT 1");
    h.query("INSERT INTO t VALUES (1)");
    h.query("SELECT 3");
    CHECK(calls(h) == std::vector<std::string>{"query:SELECT 1", "sync", "query:INSERT INTO t VALUES (1)", "sync",
                                               "query:SELECT 3", "sync"});
    CHECK_FALSE(h.core.burst_open());
    // libpq 15 writes at each Sync; libpq 17 once at the end of the burst.
    CHECK(h.pq.writes == (f.queued_sync ? 0 : 3));
  }
}

TEST_CASE("pipeline_core rule 11: a Sync is forced before transaction control", "[pipeline_core][burst]") {
  for (const char* control : {"COMMIT", "ROLLBACK", "SAVEPOINT s1", "RELEASE SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s1",
                              "COMMIT AND CHAIN", "PREPARE TRANSACTION 'x'"}) {
    INFO(control);
    harness h;
    begin_block(h);
    h.turn_per_request = false;
    const std::size_t from = h.pq.sent.size();
    h.query("INSERT INTO t VALUES (1)");
    h.query("INSERT INTO t VALUES (2)");
    h.query(control);
    h.query("SELECT 1");  // after SAVEPOINT, ROLLBACK TO, RELEASE, CHAIN: in the block again
    h.end_burst();
    const std::string c = std::string("query:") + control;
    const auto got = calls(h, from);
    REQUIRE(got.size() >= 6);
    CHECK(std::vector<std::string>(got.begin(), got.begin() + 5) ==
          std::vector<std::string>{"query:INSERT INTO t VALUES (1)", "query:INSERT INTO t VALUES (2)", "sync", c,
                                   "sync"});
    CHECK(got.back() == "sync");
  }
}

TEST_CASE("pipeline_core rule 11: an error in a burst makes the rest report 25P02 naming it",
          "[pipeline_core][burst]") {
  harness h;
  begin_block(h);
  h.turn_per_request = false;
  const auto a = h.query("INSERT INTO t VALUES (1)");
  const auto b = h.query("INSERT INTO t VALUES (2) /* the duplicate */");
  const auto c = h.query("INSERT INTO t VALUES (3)");
  const auto d = h.query("SELECT 4");
  h.end_burst();
  CHECK(h.pq.count("sync") == 2);
  h.pq.answer_in_burst("INSERT 0 1", 1);
  h.pq.error_in_burst("23505");
  h.pq.aborted_in_burst();
  h.pq.aborted_in_burst();
  h.pq.sync_result();
  h.read();
  CHECK(h.code(a) == pgq::error_code());
  CHECK(h.code(b) == state("23505"));
  for (const auto id : {c, d}) {
    CHECK(h.code(id) == state("25P02"));
    CHECK_THAT(h.message(id), Catch::Contains("INSERT INTO t VALUES (2) /* the duplicate */") &&
                                  Catch::Contains("23505") && Catch::Contains("not run"));
    CHECK(h.times_completed(id) == 1);
  }
  CHECK(h.log.back().id == d);  // in order
  CHECK(h.core.tracked_tx() == tx_failed);
  // The next burst: the server's own 25P02 names it too.
  const auto e = h.query("SELECT 5");
  h.end_burst();
  h.pq.error_in_burst("25P02");
  h.pq.sync_result();
  h.read();
  CHECK(h.code(e) == state("25P02"));
  CHECK_THAT(h.message(e), Catch::Contains("INSERT INTO t VALUES (2)"));
  // COMMIT answered ROLLBACK says why; the block is over, and so is the name.
  const auto commit = h.query("COMMIT");
  h.end_burst();
  h.pq.answer("ROLLBACK", 0);
  h.read();
  CHECK(h.code(commit) == state("25P02"));
  CHECK_THAT(h.message(commit), Catch::Contains("INSERT INTO t VALUES (2)"));
  CHECK(h.core.tracked_tx() == tx_idle);
  const auto f = h.query("SELECT 6");
  h.pq.answer_error("42P01");
  h.read();
  CHECK(h.message(f).find("INSERT INTO t") == std::string::npos);
}

TEST_CASE("pipeline_core rule 11: a Parse failing in a burst aborts the rest, and no statement stays cached",
          "[pipeline_core][burst]") {
  harness h(16);
  begin_block(h);
  h.turn_per_request = false;
  const auto a = h.query("INSERT INTO missing VALUES (1)");
  const auto b = h.query("INSERT INTO t VALUES (2)");
  h.end_burst();
  CHECK(h.pq.count("prepare") == 2);
  CHECK(h.pq.count("sync") == 2);
  // a: Parse fails, its Describe and Execute are skipped; b: all three.
  h.pq.error_in_burst("42P01");
  h.pq.aborted_in_burst(2);
  h.pq.aborted_in_burst(3);
  h.pq.sync_result();
  h.read();
  CHECK(h.code(a) == state("42P01"));
  CHECK(h.code(b) == state("25P02"));
  CHECK_THAT(h.message(b), Catch::Contains("INSERT INTO missing"));
  CHECK(h.core.cache().size() == 0);  // neither was prepared on the server
  CHECK(h.core.pending() == 0);
  CHECK(h.core.in_flight() == 0);
  CHECK(h.core.tracked_tx() == tx_failed);
}

TEST_CASE("pipeline_core rule 11: BEGIN and an atomic batch's statements share one Sync, COMMIT has its own",
          "[pipeline_core][burst]") {
  harness h;
  const auto id = h.batch({"INSERT 1", "INSERT 2", "INSERT 3"}, true);
  CHECK(calls(h) == std::vector<std::string>{"query:BEGIN", "query:INSERT 1", "query:INSERT 2", "query:INSERT 3",
                                             "sync", "query:COMMIT", "sync"});
  h.pq.answer_in_burst("BEGIN", 0);
  for (int i = 0; i < 3; ++i) h.pq.answer_in_burst("INSERT 0 1", 1);
  h.pq.sync_result();
  h.pq.answer("COMMIT", 0);
  h.read();
  CHECK(h.code(id) == pgq::error_code());
  REQUIRE(h.outcome(id) != nullptr);
  CHECK(h.outcome(id)->rows.size() == 3);
  CHECK(h.core.tracked_tx() == tx_idle);
  CHECK(h.core.pending() == 0);
}

TEST_CASE("pipeline_core rule 11: an atomic batch failing in its burst rolls back and reports the first error",
          "[pipeline_core][burst]") {
  harness h;
  const auto id = h.batch({"INSERT 1", "INSERT 2", "INSERT 3"}, true);
  h.pq.answer_in_burst("BEGIN", 0);
  h.pq.answer_in_burst("INSERT 0 1", 1);
  h.pq.error_in_burst("23505");
  h.pq.aborted_in_burst();
  h.pq.sync_result();
  h.pq.answer("ROLLBACK", 0);  // the COMMIT, run (never skipped) in the failed block
  h.read();
  CHECK(h.code(id) == state("23505"));
  CHECK_THAT(h.message(id), Catch::Contains("statement 2 of 3"));
  CHECK(h.core.tracked_tx() == tx_idle);
  CHECK(h.times_completed(id) == 1);
}

TEST_CASE("pipeline_core rule 11: cancellation inside a burst", "[pipeline_core][burst]") {
  SECTION("queued: dropped, never sent") {
    harness h;
    begin_block(h);
    h.turn_per_request = false;
    h.core.server_cancel_started();  // holds what follows back
    const auto a = h.query("INSERT 1");
    const auto b = h.query("INSERT 2");
    h.cancel(b);
    CHECK(h.code(b) == errc::cancelled);
    h.core.on_server_cancel_done();
    h.end_burst();
    CHECK(calls(h, 2) == std::vector<std::string>{"query:INSERT 1", "sync"});
    h.pq.answer_in_burst("INSERT 0 1", 1);
    h.pq.sync_result();
    h.read();
    CHECK(h.code(a) == pgq::error_code());
    CHECK(h.times_completed(b) == 1);
  }
  SECTION("on the wire: written with the burst's Sync before the cancel; the rest report 25P02 naming it") {
    for (const pq_features f : {pq_features{}, libpq17}) {
      harness h(0, f);
      begin_block(h);
      h.turn_per_request = false;
      const auto a = h.query("SELECT pg_sleep(10)");
      const auto b = h.query("INSERT 2");
      CHECK(h.core.burst_open());
      h.cancel(a);
      CHECK(h.code(a) == errc::cancelled);
      CHECK_FALSE(h.core.burst_open());
      CHECK(h.pq.written == h.pq.sent.size());  // on the wire, Sync included, before the cancel
      CHECK(h.pq.sent.back().what == "sync");
      CHECK(h.core.take_server_cancels() == 1);
      h.pq.error_in_burst("57014");
      h.pq.aborted_in_burst();
      h.pq.sync_result();
      h.core.on_server_cancel_done();
      h.read();
      CHECK(h.times_completed(a) == 1);  // never completed again
      CHECK(h.code(b) == state("25P02"));
      CHECK_THAT(h.message(b), Catch::Contains("pg_sleep(10)"));
      CHECK(h.core.tracked_tx() == tx_failed);
      CHECK(h.core.pending() == 0);
    }
  }
  SECTION("behind another of its burst: cancelled on the server at once (whether it runs is not known)") {
    harness h;
    begin_block(h);
    h.turn_per_request = false;
    const auto a = h.query("INSERT 1");
    const auto b = h.query("SELECT pg_sleep(10)");
    h.end_burst();
    h.cancel(b);
    CHECK(h.code(b) == errc::cancelled);
    CHECK(h.core.take_server_cancels() == 1);
    // It landed on a, which was still running: the block fails, b is skipped.
    h.pq.error_in_burst("57014");
    h.pq.aborted_in_burst();
    h.pq.sync_result();
    h.core.on_server_cancel_done();
    h.read();
    CHECK(h.code(a) == state("57014"));
    CHECK_THAT(h.message(a), Catch::Contains("meant for another statement"));
    CHECK(h.times_completed(b) == 1);
    CHECK(h.core.tracked_tx() == tx_failed);
    CHECK(h.core.cancelled_but_running() == 0);
  }
  SECTION("behind statements that may run outside a block: cancelled only once it runs") {
    harness h;
    h.turn_per_request = false;
    const auto s = h.query("SELECT 1");  // independent, its own Sync
    h.query("BEGIN");
    h.query("INSERT 1");
    const auto b = h.query("SELECT pg_sleep(10)");
    h.end_burst();
    h.cancel(b);
    CHECK(h.core.take_server_cancels() == 0);  // it could hit s
    h.pq.answer();
    h.pq.answer_in_burst("BEGIN", 0);
    h.pq.answer_in_burst("INSERT 0 1", 1);
    h.read();
    CHECK(h.code(s) == pgq::error_code());
    CHECK(h.core.take_server_cancels() == 1);  // now b is the front
    h.pq.error_in_burst("57014");
    h.pq.sync_result();
    h.core.on_server_cancel_done();
    h.read();
    CHECK(h.times_completed(b) == 1);
    CHECK(h.core.pending() == 0);
  }
  SECTION("after its result came: no server cancel, which could only hit the next statement") {
    harness h;
    begin_block(h);
    h.turn_per_request = false;
    const auto a = h.query("SELECT 1");
    const auto b = h.query("SELECT 2");
    h.end_burst();
    h.pq.results.push_back(h.pq.make(pq_status::tuples_ok, {}, "SELECT 1", 1));  // a's result, not its NULL
    h.read();
    CHECK(h.outcome(a) == nullptr);
    h.cancel(a);
    CHECK(h.code(a) == errc::cancelled);
    CHECK(h.core.take_server_cancels() == 0);
    h.pq.results.push_back(nullptr);
    h.pq.answer_in_burst();
    h.pq.sync_result();
    h.read();
    CHECK(h.times_completed(a) == 1);
    CHECK(h.code(b) == pgq::error_code());
  }
  SECTION("a COMMIT cancelled before it was sent becomes a ROLLBACK, after the burst's Sync") {
    harness h;
    begin_block(h);
    h.turn_per_request = false;
    const auto s = h.query("SELECT pg_sleep(1)");
    h.cancel(s);  // its server cancel holds back what follows
    const auto c = h.query("COMMIT");
    h.cancel(c);
    CHECK(h.code(c) == errc::cancelled);
    h.core.on_server_cancel_done();
    h.end_burst();
    CHECK(calls(h, 2) == std::vector<std::string>{"query:SELECT pg_sleep(1)", "sync", "query:ROLLBACK", "sync"});
  }
}

TEST_CASE("pipeline_core rule 11: a connection lost mid-burst fails each request once", "[pipeline_core][burst]") {
  harness h;
  begin_block(h);
  h.turn_per_request = false;
  const auto a = h.query("INSERT 1");
  const auto b = h.query("INSERT 2");
  const auto c = h.query("INSERT 3");
  h.end_burst();
  h.pq.answer_in_burst("INSERT 0 1", 1);
  h.read();
  CHECK(h.code(a) == pgq::error_code());
  h.core.lost("gone");
  h.collect();
  CHECK(h.code(b) == errc::connection_lost);
  CHECK(h.code(c) == errc::connection_lost);
  for (const auto id : {a, b, c}) CHECK(h.times_completed(id) == 1);
  CHECK(h.core.pending() == 0);
  CHECK_FALSE(h.core.burst_open());
  // Lost while the burst was still open (nothing written yet) too.
  harness g;
  begin_block(g);
  g.turn_per_request = false;
  const auto x = g.query("INSERT 1");
  CHECK(g.core.burst_open());
  g.core.lost("gone");
  g.collect();
  CHECK(g.code(x) == errc::connection_lost);
  CHECK_FALSE(g.core.burst_open());
}

TEST_CASE("pipeline_core rule 11: streams and COPY behind a burst wait for its Sync", "[pipeline_core][burst]") {
  SECTION("a stream: the burst's Sync before it, and its own after") {
    harness h;
    begin_block(h);
    h.turn_per_request = false;
    h.query("INSERT 1");
    auto st = h.stream("SELECT g FROM generate_series(1, 3) g");
    CHECK(calls(h, 2) ==
          std::vector<std::string>{"query:INSERT 1", "sync", "query:SELECT g FROM generate_series(1, 3) g", "sync"});
  }
  SECTION("COPY (the connection handed over): only once the burst's Sync is answered") {
    harness h;
    begin_block(h);
    h.turn_per_request = false;
    const auto a = h.query("INSERT 1");
    auto r = std::make_unique<request>();
    r->id = h.core.next_id();
    r->what = request::type::exclusive;
    r->awaited = true;
    const auto copy = r->id;
    h.core.enqueue(std::move(r));
    h.collect();
    CHECK(h.outcome(copy) == nullptr);
    h.end_burst();
    h.pq.answer_in_burst("INSERT 0 1", 1);
    h.read();
    CHECK(h.code(a) == pgq::error_code());
    CHECK(h.outcome(copy) == nullptr);  // the Sync is not answered yet
    CHECK_FALSE(h.core.exclusive());
    h.pq.sync_result();
    h.read();
    REQUIRE(h.outcome(copy) != nullptr);
    CHECK(h.core.exclusive());
  }
}

TEST_CASE("pipeline_core rules 10 and 11: an evicted statement is closed after the burst's Sync, on its own",
          "[pipeline_core][burst]") {
  harness h(1);
  begin_block(h);
  h.turn_per_request = false;
  h.query("INSERT INTO a VALUES (1)");
  h.query("INSERT INTO b VALUES (1)");  // evicts a's statement
  h.end_burst();
  const auto got = calls(h, 2);
  REQUIRE(got.size() == 9);
  CHECK(std::vector<std::string>(got.begin(), got.begin() + 7) ==
        std::vector<std::string>{"prepare", "describe", "execute", "prepare", "describe", "execute", "sync"});
  CHECK(got[7].rfind("query:DEALLOCATE ", 0) == 0);
  CHECK(got[8] == "sync");
}
