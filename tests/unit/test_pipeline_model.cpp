// The randomized model test of pipeline_core: thousands of interleavings of
// requests, batches, transaction statements, server results and errors,
// stale cached plans, cancels (by callers and on the server, landing late)
// and connection losses, against a model server that plays PostgreSQL's
// transaction rules. After every step and at the end it checks:
//  - every caller is completed exactly once, and callers not cancelled are
//    completed in the order they asked;
//  - when nothing is in flight, the tracked transaction state is the
//    server's, and it never disagreed with libpq's;
//  - a statement runs again only if it ran outside a transaction block and
//    nothing else ran in between (never behind a COMMIT);
//  - an atomic batch commits all of its rows or none, commits them when it
//    reports success, none when it reports a definite failure, and never
//    commits a transaction the caller opened;
//  - a COMMIT reported as done committed; one reported as cancelled never
//    ran;
//  - statements share a Sync (rule 11) only where none runs outside a
//    transaction block before the last of them, and one skipped after an
//    error of its burst fails with 25P02 naming a statement that failed (or
//    was cancelled) before it.
// The model server runs everything up to a Sync as PostgreSQL does: after an
// error it skips the rest (PGRES_PIPELINE_ABORTED for each libpq call).
#include "fake_pq.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace pgq_test;
using pgq::errc;

enum class op_kind { select, insert, begin, commit, rollback, savepoint, rollback_to, batch, atomic_batch };

struct op {
  int tag = 0;
  op_kind kind = op_kind::select;
  std::uint64_t id = 0;
  std::vector<std::string> texts;  // owned: the core keeps views
  std::vector<int> rows;           // the rows its inserts write
  int completions = 0;
  bool cancelled_by_caller = false;
  bool ok = false;
  pgq::error_code code;
  bool wrapped = false;        // the core's BEGIN ran right before its first statement
  bool commit_ran_ok = false;  // for commit: the model ran this COMMIT and it committed
  bool commit_ran = false;
  bool user_block_at_start = false;
};

struct model {
  std::mt19937 rng;
  fake_pq& pq;
  pipeline_core& core;
  std::size_t next_sent = 0;  // first entry of pq.sent not yet run by the server
  tx_set tx = tx_idle;
  bool user_block = false;  // the open block was begun by a caller's BEGIN
  std::set<int> committed;
  std::vector<int> pending;
  std::vector<std::pair<std::string, std::size_t>> savepoints;
  bool cancel_signal = false;
  int cancels_requested = 0;     // asked for by the core, not yet landed
  int cancels_landed = 0;        // landed, core not yet told
  std::vector<std::string> ran;  // tags of statements run, in order
  std::map<std::string, std::size_t> last_run_at;
  std::map<int, op*>* ops = nullptr;
  std::string last_unit_text;
  int violations = 0;
  std::vector<std::string> why;

  model(unsigned seed, fake_pq& p, pipeline_core& c) : rng(seed), pq(p), core(c) {}

  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
  void violation(const std::string& s) {
    ++violations;
    why.push_back(s);
  }

  // Only what was written reaches the server.
  bool has_unit() const {
    for (std::size_t i = next_sent; i < pq.written; ++i) {
      if (pq.sent[i].what == "sync") return true;
    }
    return false;
  }

  static int tag_of(const std::string& text) {
    const auto p = text.find("/*op");
    if (p == std::string::npos) return 0;
    return std::stoi(text.substr(p + 4));
  }
  static std::string full_tag(const std::string& text) {
    const auto p = text.find("/*op");
    if (p == std::string::npos) return {};
    return text.substr(p, text.find("*/", p) - p);
  }

  void push_error(const char* sqlstate) {
    pq.results.push_back(pq.make(pq_status::fatal_error, sqlstate));
    pq.results.push_back(nullptr);
    failed_ = true;
  }
  void push_ok(const std::string& tag) {
    pq.results.push_back(pq.make(pq_status::command_ok, {}, tag));
    pq.results.push_back(nullptr);
  }

  // Runs the next unit (everything up to a Sync) as PostgreSQL would: each
  // statement in turn, and after an error nothing until the Sync.
  void run_unit() {
    std::size_t end = next_sent;
    while (end < pq.written && pq.sent[end].what != "sync") ++end;
    auto is_statement = [&](std::size_t k) {
      const auto& w = pq.sent[k].what;
      return w == "query" || w == "execute" || w == "close";
    };
    std::size_t statements = 0;
    for (std::size_t k = next_sent; k < end; ++k) statements += is_statement(k) ? 1 : 0;
    if (statements > 1) ++shared_units;
    bool aborted = false;
    std::size_t seen = 0;
    for (std::size_t i = next_sent; i < end; ++i) {
      const auto& s = pq.sent[i];
      if (aborted) {
        pq.results.push_back(pq.make(pq_status::pipeline_aborted));
        pq.results.push_back(nullptr);
        continue;
      }
      if (s.what == "prepare" && statements == 0 && tx == tx_failed) {
        // Parse and Describe alone (rule 12) in a failed block: the Parse
        // fails, the Describe is skipped.
        push_error("25P02");
        aborted = true;
        continue;
      }
      if (s.what == "prepare" || s.what == "describe") {
        push_ok("");
        continue;
      }
      if (!is_statement(i)) continue;
      ++seen;
      std::string text;
      bool cached_exec = false;
      if (s.what == "close") {
        text = "DEALLOCATE " + s.sql;  // a protocol Close: works in any state
      } else if (s.what == "query") {
        text = s.sql;
      } else {
        text = pq.text_of(s.sql);
        // Prepared right before (Parse, Describe, Execute): not stale.
        cached_exec = !(i >= 1 && pq.sent[i - 1].what == "describe" && pq.sent[i - 1].sql == s.sql);
      }
      if (seen < statements && tx == tx_idle && text.rfind("BEGIN", 0) != 0) {
        violation("a statement outside a transaction block shared its Sync with what follows: " + text);
      }
      failed_ = false;
      execute(text, cached_exec);
      aborted = failed_;
    }
    next_sent = end + 1;
    pq.results.push_back(pq.make(pq_status::pipeline_sync));
  }

  void execute(const std::string& text, bool cached_exec) {
    const bool cancelled = std::exchange(cancel_signal, false);
    const std::string tag = full_tag(text);
    const int optag = tag_of(text);
    auto starts = [&](const char* w) { return text.rfind(w, 0) == 0; };
    if (starts("DEALLOCATE")) {
      push_ok("DEALLOCATE");
      return;
    }
    if (!tag.empty() && (starts("INSERT") || starts("SELECT"))) {
      // A rerun: only invisible ones.
      auto it = last_run_at.find(tag);
      if (it != last_run_at.end()) {
        if (it->second + 1 != ran.size()) violation("rerun of " + tag + " after other statements ran");
      }
      last_run_at[tag] = ran.size();
      ran.push_back(tag);
    } else {
      ran.push_back(text);
    }
    const bool is_begin = starts("BEGIN");
    if (wrapped_next_ && !is_begin) {
      // The statement right after the core's BEGIN is an atomic batch's first.
      wrapped_next_ = false;
      if (optag != 0 && ops->count(optag) != 0) ops->at(optag)->wrapped = true;
    }
    const bool is_commit = starts("COMMIT");
    const bool is_rollback_to = starts("ROLLBACK TO");
    const bool is_rollback = starts("ROLLBACK") && !is_rollback_to;
    const bool is_savepoint = starts("SAVEPOINT");
    auto fail = [&](const char* st) {
      push_error(st);
      if (tx == tx_block) tx = tx_failed;
    };
    if (tx == tx_failed && !is_commit && !is_rollback && !is_rollback_to) {
      fail("25P02");
      return;
    }
    if (is_begin) {
      if (tx == tx_idle) {
        tx = tx_block;
        user_block = optag != 0;
        pending.clear();
        savepoints.clear();
        // The core's own BEGIN opens an atomic batch's transaction.
        if (optag == 0) wrapped_next_ = true;
      }
      push_ok("BEGIN");
      return;
    }
    if (is_commit) {
      if (optag == 0 && user_block && tx != tx_idle) violation("a batch's COMMIT ran in the caller's transaction");
      op* o = optag != 0 && ops->count(optag) != 0 ? ops->at(optag) : nullptr;
      if (o != nullptr) o->commit_ran = true;
      if (tx == tx_block && !cancelled) {
        for (int r : pending) committed.insert(r);
        if (o != nullptr) o->commit_ran_ok = true;
        push_ok("COMMIT");
      } else if (tx == tx_block) {
        push_error("57014");  // a deferred trigger cancelled: rolled back
      } else {
        push_ok(tx == tx_failed ? "ROLLBACK" : "COMMIT");
      }
      tx = tx_idle;
      pending.clear();
      user_block = false;
      return;
    }
    if (is_rollback) {
      tx = tx_idle;
      pending.clear();
      user_block = false;
      push_ok("ROLLBACK");
      return;
    }
    if (is_savepoint || is_rollback_to) {
      const std::string name = text.substr(text.find("sp"), 3);
      if (tx == tx_idle) {
        push_error("25P01");
        return;
      }
      if (is_savepoint) {
        savepoints.emplace_back(name, pending.size());
        push_ok("SAVEPOINT");
        return;
      }
      auto it = std::find_if(savepoints.rbegin(), savepoints.rend(), [&](auto& s) { return s.first == name; });
      if (it == savepoints.rend()) {
        fail("3B001");
        return;
      }
      pending.resize(it->second);
      tx = tx_block;
      push_ok("ROLLBACK");
      return;
    }
    // SELECT or INSERT.
    if (cancelled) {
      fail("57014");
      return;
    }
    if (cached_exec && chance(0.08)) {
      fail("0A000");
      return;
    }
    if (chance(0.06)) {
      fail("22012");
      return;
    }
    if (starts("INSERT")) {
      const int row = std::stoi(text.substr(7));
      if (tx == tx_idle) {
        committed.insert(row);
      } else {
        pending.push_back(row);
      }
      pq.results.push_back(pq.make(pq_status::command_ok, {}, "INSERT 0 1"));
      pq.results.push_back(nullptr);
      return;
    }
    pq.results.push_back(pq.make(pq_status::tuples_ok, {}, "SELECT 1", 1));
    pq.results.push_back(nullptr);
  }

  // libpq says the state only when nothing is pending.
  void publish_tx() {
    const bool quiet = !has_unit() && pq.results.empty();
    pq.tx = !quiet           ? pq_trans::active
            : tx == tx_idle  ? pq_trans::idle
            : tx == tx_block ? pq_trans::intrans
                             : pq_trans::inerror;
  }

  bool wrapped_next_ = false;
  bool failed_ = false;  // the statement just run failed
  int shared_units = 0;  // units of more than one statement (rule 11)
};

struct runner {
  fake_pq pq;
  pipeline_core core{pq};
  model m;
  std::map<int, op*> by_tag;
  std::vector<std::unique_ptr<op>> ops;
  std::vector<std::uint64_t> completion_order;  // ids of callers not cancelled
  std::map<std::uint64_t, op*> by_id;
  int next_tag = 1;
  int next_row = 1;
  std::size_t cache;
  int skipped = 0;  // statements reported skipped after an error of their burst

  runner(unsigned seed, std::size_t cache_size, pq_features features) : m(seed, pq, core), cache(cache_size) {
    m.ops = &by_tag;
    pq.feats = features;
    // Half the runs describe a statement before its first run (rule 12).
    core.set_describe_first(seed % 4 < 2);
    core.opened(tx_idle, cache, true);
  }

  void collect() {
    for (auto& c : core.completions()) {
      auto it = by_id.find(c.id);
      if (it == by_id.end()) {
        m.violation("completion of an unknown id");
        continue;
      }
      op& o = *it->second;
      ++o.completions;
      if (trace) fprintf(stderr, "  completed op%d error=%d\n", o.tag, (int)(bool)c.error);
      o.ok = !c.error;
      if (c.error) {
        try {
          std::rethrow_exception(c.error);
        } catch (const pgq::sql_error& e) {
          o.code = e.code();
          const std::string what = e.diag().message;
          if (what.rfind("not run:", 0) == 0) {
            ++skipped;
            if (o.code != pgq::make_sqlstate_error("25P02")) m.violation("a skipped statement is not 25P02");
            const int first = model::tag_of(what);
            auto f = by_tag.find(first);
            if (f == by_tag.end() || first >= o.tag ||
                (f->second->completions > 0 && f->second->ok && !f->second->cancelled_by_caller)) {
              m.violation("op" + std::to_string(o.tag) + " skipped naming no earlier failure: " + what);
            }
          }
        }
      }
      if (!o.cancelled_by_caller) completion_order.push_back(c.id);
    }
    core.completions().clear();
    m.cancels_requested += core.take_server_cancels();
    m.publish_tx();
  }

  op& make(op_kind k) {
    ops.push_back(std::make_unique<op>());
    op& o = *ops.back();
    o.kind = k;
    o.tag = next_tag++;
    o.user_block_at_start = m.user_block;
    by_tag[o.tag] = &o;
    return o;
  }

  std::string tagged(const std::string& s, const op& o, int part = 0) {
    return s + " /*op" + std::to_string(o.tag) + (part != 0 ? "." + std::to_string(part) : "") + "*/";
  }

  void enqueue_random() {
    const int pick = std::uniform_int_distribution<int>(0, 99)(m.rng);
    op_kind k = pick < 22   ? op_kind::select
                : pick < 44 ? op_kind::insert
                : pick < 54 ? op_kind::begin
                : pick < 64 ? op_kind::commit
                : pick < 69 ? op_kind::rollback
                : pick < 74 ? op_kind::savepoint
                : pick < 78 ? op_kind::rollback_to
                : pick < 86 ? op_kind::batch
                            : op_kind::atomic_batch;
    op& o = make(k);
    if (k == op_kind::batch || k == op_kind::atomic_batch) {
      auto g = std::make_shared<batch_group>();
      g->id = core.next_id();
      g->atomic = k == op_kind::atomic_batch;
      o.id = g->id;
      by_id[o.id] = &o;
      const int n = std::uniform_int_distribution<int>(1, 3)(m.rng);
      std::vector<std::unique_ptr<request>> items;
      o.texts.reserve(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) {
        const int row = next_row++;
        o.rows.push_back(row);
        // Reused texts make cached statements, some of which go stale.
        o.texts.push_back(tagged("INSERT " + std::to_string(row), o, i + 1));
        auto r = std::make_unique<request>();
        r->sql = o.texts.back();
        items.push_back(std::move(r));
      }
      core.enqueue_batch(g, std::move(items));
      collect();
      return;
    }
    std::string text;
    switch (k) {
      case op_kind::select: text = "SELECT 1"; break;
      case op_kind::insert: {
        const int row = next_row++;
        o.rows.push_back(row);
        text = "INSERT " + std::to_string(row);
        break;
      }
      case op_kind::begin: text = "BEGIN"; break;
      case op_kind::commit: text = "COMMIT"; break;
      case op_kind::rollback: text = "ROLLBACK"; break;
      case op_kind::savepoint: text = "SAVEPOINT sp1"; break;
      case op_kind::rollback_to: text = "ROLLBACK TO SAVEPOINT sp1"; break;
      default: break;
    }
    o.texts.push_back(tagged(text, o));
    auto r = std::make_unique<request>();
    r->id = core.next_id();
    r->sql = o.texts.back();
    r->awaited = true;
    o.id = r->id;
    by_id[o.id] = &o;
    core.enqueue(std::move(r));
    collect();
  }

  void cancel_random() {
    std::vector<op*> open;
    for (auto& o : ops) {
      if (o->completions == 0 && !o->cancelled_by_caller) open.push_back(o.get());
    }
    if (open.empty()) return;
    op* o = open[std::uniform_int_distribution<std::size_t>(0, open.size() - 1)(m.rng)];
    o->cancelled_by_caller = true;
    core.cancel(o->id);
    collect();
  }

  void lose() {
    core.lost("fake: connection lost");
    collect();
    // A new session: the server rolled back what was open.
    m.tx = tx_idle;
    m.user_block = false;
    m.pending.clear();
    m.savepoints.clear();
    m.cancel_signal = false;
    m.wrapped_next_ = false;
    m.cancels_requested = m.cancels_landed = 0;
    for (pg_result* r : pq.results) {
      if (r != nullptr) pq.clear(r);
    }
    pq.results.clear();
    pq.sent.clear();
    pq.written = 0;
    m.next_sent = 0;
    m.last_run_at.clear();
    core.opened(tx_idle, cache, true);
    m.publish_tx();
  }

  bool trace = std::getenv("PGQ_MODEL_SEED") != nullptr;
  void step() {
    const int pick = std::uniform_int_distribution<int>(0, 99)(m.rng);
    if (trace)
      fprintf(stderr, "step %d sent=%zu results=%zu pending=%zu open=%d\n", pick, pq.sent.size(), pq.results.size(),
              core.pending(), (int)core.is_open());
    if (pick < 30) {
      enqueue_random();
      // With queued Syncs the driver writes at the end of its turn; another
      // request may come in the same turn.
      if (m.chance(0.6)) {
        core.end_of_burst();
        collect();
      }
    } else if (pick < 55) {
      if (m.has_unit()) m.run_unit();
      m.publish_tx();
    } else if (pick < 80) {
      core.on_readable();
      collect();
    } else if (pick < 88) {
      cancel_random();
    } else if (pick < 93) {
      if (m.cancels_requested > 0) {
        --m.cancels_requested;
        ++m.cancels_landed;
        // It hits what the server runs next, if anything is on its way; or
        // the server ignores it (it arrived between a request's messages).
        if (m.has_unit() && !m.chance(0.2)) m.cancel_signal = true;
      }
    } else if (pick < 98) {
      if (m.cancels_landed > 0) {
        --m.cancels_landed;
        core.on_server_cancel_done();
        collect();
      }
    } else if (pick < 99) {
      if (m.chance(0.3)) {
        lose();
      } else {
        core.end_of_burst();  // the driver's turn of the event loop ended
        collect();
      }
    } else if (const std::uint64_t id = core.cancelled_but_running(); id != 0) {
      core.recancel(id);  // the driver's timer, a while after a cancel was done
      collect();
    }
    check_state();
  }

  void check_state() {
    if (core.is_open() && core.in_flight() == 0 && core.cancels_in_flight() == 0 && !m.has_unit() &&
        core.tracked_tx() != m.tx) {
      m.violation("tracked transaction state differs from the server's");
    }
  }

  void settle() {
    for (int round = 0; round < 10000 && core.pending() > 0 && core.is_open(); ++round) {
      while (m.cancels_requested > 0) {
        --m.cancels_requested;
        ++m.cancels_landed;
      }
      while (m.cancels_landed > 0) {
        --m.cancels_landed;
        core.on_server_cancel_done();
        collect();
      }
      core.end_of_burst();
      collect();
      while (m.has_unit()) m.run_unit();
      m.publish_tx();
      core.on_readable();
      collect();
      check_state();
    }
  }

  void check_end() {
    if (core.pending() != 0) m.violation("requests left pending after settling");
    for (auto& o : ops) {
      if (o->completions != 1) {
        m.violation("op " + std::to_string(o->tag) + " completed " + std::to_string(o->completions) + " times");
      }
    }
    for (std::size_t i = 1; i < completion_order.size(); ++i) {
      if (completion_order[i] < completion_order[i - 1]) m.violation("callers completed out of order");
    }
    if (core.tx_mismatches() != 0) m.violation("the tracked state disagreed with libpq's");
    for (auto& o : ops) {
      if (o->kind == op_kind::atomic_batch) {
        std::size_t in = 0;
        for (int r : o->rows) in += m.committed.count(r);
        const bool uncertain = o->code == errc::commit_unknown || o->code == errc::connection_lost;
        if (o->wrapped && in != 0 && in != o->rows.size()) m.violation("an atomic batch committed part of itself");
        if (o->wrapped && o->ok && in != o->rows.size()) {
          std::string trace;
          for (auto& t : m.ran) trace += t + " | ";
          if (this->trace)
            fprintf(stderr, "RAN: %s\nwrapped op%d rows %zu in %zu\n", trace.c_str(), o->tag, o->rows.size(), in);
          m.violation("an atomic batch (op" + std::to_string(o->tag) + ") reported success uncommitted: " + trace);
        }
        if (o->wrapped && !o->ok && !uncertain && in != 0) m.violation("an atomic batch reported failure committed");
      }
      if (o->kind == op_kind::commit) {
        if (o->ok && !o->commit_ran) m.violation("COMMIT reported done but never ran");
        if (o->code == errc::cancelled && o->commit_ran) m.violation("COMMIT reported cancelled but it ran");
      }
    }
  }
};

}  // namespace

TEST_CASE("pipeline_core keeps its invariants over thousands of random interleavings", "[pipeline_core][model]") {
  int runs = 0;
  int closes_17 = 0;
  int shared_units = 0;
  int skipped = 0;
  const char* only = std::getenv("PGQ_MODEL_SEED");
  // PGQ_MODEL_RUNS=N: more interleavings than the suite's 400.
  const char* more = std::getenv("PGQ_MODEL_RUNS");
  const unsigned last = more != nullptr ? static_cast<unsigned>(std::atoi(more)) : 400U;
  for (unsigned seed = 1; seed <= last; ++seed) {
    if (only != nullptr && seed != static_cast<unsigned>(std::atoi(only))) continue;
    // Both libpq paths: 15's calls, and 17's (queued Syncs written per
    // burst, protocol Close for evicted statements).
    const bool newer = seed % 2 == 0;
    runner r(seed, seed % 3 == 0 ? 0 : 8, newer ? pq_features{true, true, true} : pq_features{});
    const int steps = 40 + static_cast<int>(seed % 60);
    for (int i = 0; i < steps; ++i) r.step();
    r.settle();
    r.check_end();
    INFO("seed " << seed << ": " << (r.m.why.empty() ? std::string() : r.m.why.front()));
    REQUIRE(r.m.violations == 0);
    // Each run used its libpq's calls only.
    REQUIRE((newer ? r.pq.legacy_syncs : r.pq.queued_syncs) == 0);
    REQUIRE((newer ? r.pq.queued_syncs : r.pq.legacy_syncs) > 0);
    if (newer) closes_17 += r.pq.closes;
    shared_units += r.m.shared_units;
    skipped += r.skipped;
    ++runs;
  }
  CHECK(runs == static_cast<int>(last));
  std::printf("model: %d runs, %d units of statements sharing a Sync, %d statements skipped after an error\n", runs,
              shared_units, skipped);
  CHECK(closes_17 > 0);  // evictions and stale plans met the protocol Close
  // The interleavings had statements sharing a Sync, and errors inside them.
  CHECK(shared_units > 100);
  CHECK(skipped > 10);
}
