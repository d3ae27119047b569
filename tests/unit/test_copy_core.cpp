// copy_core: COPY's decisions without a server, one test per rule in
// lib/src/driver/copy_core.hpp, over the scripted libpq of fake_pq.hpp.
#include "driver/copy_core.hpp"
#include "fake_pq.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pgq_test;
using pgq::errc;
using next = copy_core::next;
using mode = copy_core::mode;

namespace {

pgq::error_code code_of(const std::exception_ptr& ep) {
  if (!ep) return {};
  try {
    std::rethrow_exception(ep);
  } catch (const pgq::sql_error& e) {
    return e.code();
  }
}

// Steps until done, at most `limit` times (a spinning core fails the test).
next run(copy_core& c, int limit = 100) {
  next n = c.step();
  for (int i = 0; i < limit && n != next::done; ++i) {
    n = c.step();
    if (n != next::done) return n;  // it waits: the caller sees it
  }
  return n;
}

struct copy_fixture {
  fake_pq pq;
  copy_core core{pq, "COPY t FROM STDIN", 4};
  copy_fixture() { pq.in_pipeline = false; }
  void idle_after(pg_result* r) {
    pq.results.push_back(r);
    pq.results.push_back(nullptr);
  }
};

}  // namespace

TEST_CASE("copy_core opens a COPY answered in the direction asked for", "[copy_core]") {
  copy_fixture f;
  f.core.start(true);
  CHECK(f.core.step() == next::wait_read);  // sent and flushed; no answer yet
  CHECK(f.pq.statements() == std::vector<std::string>{"COPY t FROM STDIN"});
  f.pq.results.push_back(f.pq.make(pq_status::copy_in));
  CHECK(f.core.step() == next::done);
  CHECK(f.core.failure() == nullptr);
  CHECK(f.core.state() == mode::in);
  CHECK_FALSE(f.core.take_server_cancel());
}

TEST_CASE("copy_core: a COPY of the wrong direction fails and leaves the connection idle", "[copy_core]") {
  SECTION("asked for COPY OUT, the server wants COPY IN: CopyFail") {
    copy_fixture f;
    f.pq.results.push_back(f.pq.make(pq_status::copy_in));
    f.idle_after(f.pq.make(pq_status::fatal_error, "57014"));
    f.core.start(false);
    CHECK(run(f.core) == next::done);
    CHECK(code_of(f.core.failure()) == errc::protocol_error);
    REQUIRE(f.pq.count("copy_end") == 1);
    CHECK(f.pq.sent.back().sql == "pgq: not the COPY direction asked for");
    CHECK(f.core.state() == mode::idle);
    CHECK(f.pq.results.empty());
  }
  SECTION("asked for COPY IN, the server sends COPY OUT: cancelled, rows dropped") {
    copy_fixture f;
    f.pq.results.push_back(f.pq.make(pq_status::copy_out));
    f.pq.copy_out = {5, 5, 0, 7, -1};
    f.core.start(true);
    CHECK(f.core.step() == next::wait_read);  // the rows come in pieces
    CHECK(f.core.take_server_cancel());
    CHECK_FALSE(f.core.take_server_cancel());  // once
    CHECK(f.core.step() == next::wait_read);   // drained, waits for the end
    f.idle_after(f.pq.make(pq_status::fatal_error, "57014"));
    CHECK(f.core.step() == next::done);
    CHECK(code_of(f.core.failure()) == errc::protocol_error);
    CHECK(f.core.state() == mode::idle);
    CHECK(f.pq.copy_out.empty());
    CHECK(f.pq.results.empty());
  }
  SECTION("a plain statement") {
    copy_fixture f;
    f.idle_after(f.pq.make(pq_status::tuples_ok, {}, "SELECT 1", 1));
    f.core.start(true);
    CHECK(run(f.core) == next::done);
    CHECK(code_of(f.core.failure()) == errc::protocol_error);
    CHECK(f.pq.results.empty());
  }
  SECTION("a server error keeps its SQLSTATE") {
    copy_fixture f;
    f.idle_after(f.pq.make(pq_status::fatal_error, "42P01"));
    f.core.start(true);
    CHECK(run(f.core) == next::done);
    CHECK(code_of(f.core.failure()) == pgq::make_sqlstate_error("42P01"));
    CHECK(f.core.state() == mode::idle);
  }
}

TEST_CASE("copy_core hands data to libpq in pieces, and waits when its buffer is full", "[copy_core]") {
  copy_fixture f;
  f.pq.results.push_back(f.pq.make(pq_status::copy_in));
  f.core.start(true);
  REQUIRE(run(f.core) == next::done);
  const std::string data = "0123456789";  // pieces of 4 in this fixture
  f.pq.copy_data_full = 1;
  f.core.put(data);
  CHECK(f.core.step() == next::wait_write);
  CHECK(f.core.step() == next::done);
  CHECK(f.pq.copy_data_sizes == std::vector<int>{4, 4, 2});
  f.pq.flush_answer = 1;  // libpq could not send it all
  f.core.put("ab");
  CHECK(f.core.step() == next::wait_write);
  f.pq.flush_answer = 0;
  CHECK(f.core.step() == next::done);
  CHECK(f.core.state() == mode::in);
}

TEST_CASE("copy_core: ending a COPY IN reads its outcome", "[copy_core]") {
  copy_fixture f;
  f.pq.results.push_back(f.pq.make(pq_status::copy_in));
  f.core.start(true);
  REQUIRE(run(f.core) == next::done);
  SECTION("the rows taken") {
    f.idle_after(f.pq.make(pq_status::command_ok, {}, "COPY 3", 3));
    f.core.end(nullptr);
    CHECK(run(f.core) == next::done);
    CHECK(f.core.failure() == nullptr);
    CHECK(f.core.rows() == 3);
    CHECK(f.pq.sent.back().what == "copy_end");
    CHECK(f.pq.sent.back().sql.empty());
  }
  SECTION("the server's error") {
    f.idle_after(f.pq.make(pq_status::fatal_error, "22P02"));
    f.core.end(nullptr);
    CHECK(run(f.core) == next::done);
    CHECK(code_of(f.core.failure()) == pgq::make_sqlstate_error("22P02"));
  }
  SECTION("aborted by the caller: the abort is not an error") {
    f.idle_after(f.pq.make(pq_status::fatal_error, "57014"));
    f.core.end("changed my mind");
    CHECK(run(f.core) == next::done);
    CHECK(f.core.failure() == nullptr);
    CHECK(f.pq.sent.back().sql == "changed my mind");
  }
  CHECK(f.core.state() == mode::idle);
  CHECK(f.pq.results.empty());
}

TEST_CASE("copy_core hands out COPY OUT rows in batches, then its outcome", "[copy_core]") {
  copy_fixture f;
  f.pq.results.push_back(f.pq.make(pq_status::copy_out));
  f.core.start(false);
  REQUIRE(run(f.core) == next::done);
  REQUIRE(f.core.state() == mode::out);
  f.pq.copy_out = {3, 4, 0, 5, -1};
  copy_batch b;
  f.core.get(b);
  CHECK(f.core.step() == next::done);
  CHECK(b.ends == std::vector<std::size_t>{3, 7});
  CHECK_FALSE(b.done);
  copy_batch b2;
  f.core.get(b2);
  CHECK(f.core.step() == next::wait_read);  // the last row and the end are not read yet
  f.idle_after(f.pq.make(pq_status::command_ok, {}, "COPY 3", 3));
  CHECK(f.core.step() == next::done);
  CHECK(b2.ends == std::vector<std::size_t>{5});
  CHECK(b2.done);
  CHECK(f.core.rows() == 3);
  CHECK(f.core.state() == mode::idle);
}

TEST_CASE("copy_core: an abandoned COPY is ended and read until idle", "[copy_core]") {
  SECTION("COPY IN: CopyFail") {
    copy_fixture f;
    f.pq.results.push_back(f.pq.make(pq_status::copy_in));
    f.core.start(true);
    REQUIRE(run(f.core) == next::done);
    f.core.put("half a row");
    f.pq.flush_answer = 1;
    REQUIRE(f.core.step() == next::wait_write);  // the caller gives up here
    f.pq.flush_answer = 0;
    f.idle_after(f.pq.make(pq_status::fatal_error, "57014"));
    f.core.abandon();
    CHECK(run(f.core) == next::done);
    CHECK(f.pq.sent.back().sql == "pgq: COPY abandoned");
    CHECK_FALSE(f.core.take_server_cancel());
    CHECK(f.core.state() == mode::idle);
    CHECK(f.pq.results.empty());
  }
  SECTION("COPY OUT: cancelled on the server, rows dropped") {
    copy_fixture f;
    f.pq.results.push_back(f.pq.make(pq_status::copy_out));
    f.core.start(false);
    REQUIRE(run(f.core) == next::done);
    f.pq.copy_out = {9, 9, -1};
    f.idle_after(f.pq.make(pq_status::fatal_error, "57014"));
    f.core.abandon();
    CHECK(run(f.core) == next::done);
    CHECK(f.core.take_server_cancel());
    CHECK(f.pq.copy_out.empty());
    CHECK(f.pq.results.empty());
    CHECK(f.core.state() == mode::idle);
  }
  SECTION("a COPY TO still waiting for its first rows") {
    copy_fixture f;
    f.core.start(false);
    REQUIRE(f.core.step() == next::wait_read);  // a slow query before the first rows
    f.core.abandon();
    CHECK(f.core.step() == next::wait_read);
    CHECK(f.core.take_server_cancel());
    f.pq.results.push_back(f.pq.make(pq_status::copy_out));
    f.pq.copy_out = {4, -1};
    f.idle_after(f.pq.make(pq_status::fatal_error, "57014"));
    CHECK(run(f.core) == next::done);
    CHECK(f.pq.results.empty());
    CHECK(f.core.state() == mode::idle);
  }
  SECTION("a COPY result met while draining is ended too (the loop never spins)") {
    copy_fixture f;
    f.pq.results.push_back(f.pq.make(pq_status::copy_in));
    f.core.start(true);
    REQUIRE(run(f.core) == next::done);
    f.pq.results.push_back(f.pq.make(pq_status::copy_in));  // libpq hands out COPY IN again
    f.idle_after(f.pq.make(pq_status::fatal_error, "57014"));
    f.core.end(nullptr);
    CHECK(run(f.core) == next::done);
    CHECK(f.pq.count("copy_end") == 2);
    CHECK(f.core.state() == mode::idle);
    CHECK(f.pq.results.empty());
  }
}

TEST_CASE("copy_core: a broken connection ends the operation as lost", "[copy_core]") {
  copy_fixture f;
  f.pq.results.push_back(f.pq.make(pq_status::copy_in));
  f.core.start(true);
  REQUIRE(run(f.core) == next::done);
  f.pq.bad = true;
  f.core.put("row\n");
  CHECK(f.core.step() == next::done);
  CHECK(f.core.lost());
  CHECK(f.core.lost_message() == "fake: connection broken");
  const auto sent = f.pq.sent.size();
  f.core.abandon();  // nothing more is tried on it
  CHECK(f.core.step() == next::done);
  CHECK(f.pq.sent.size() == sent);
}
