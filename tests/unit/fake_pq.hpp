// A scripted libpq for pipeline_core: records what the core sends and hands
// back the results a test (or the model server of the randomized test)
// queues, as libpq would in pipeline mode.
#pragma once

#include "driver/pipeline.hpp"

#include <catch2/catch.hpp>
#include <libpq-fe.h>

#include <deque>
#include <map>
#include <string>
#include <vector>

namespace pgq_test {

using namespace pgq::detail;

class fake_pq final : public pq_port {
 public:
  /// One libpq send call: "query", "prepare", "describe", "execute", "sync",
  /// "close", "copy_end".
  struct sent_item {
    std::string what;
    std::string sql;  // query/prepare: the text; describe/execute: the name
  };
  std::vector<sent_item> sent;
  std::deque<pg_result*> results;  // what get_result() returns; nullptr = NULL
  int tx = pq_trans::active;       // what transaction_status() says
  bool bad = false;
  int flush_answer = 0;
  // COPY OUT rows still to hand out, then -1; 0 in between means "wait".
  std::deque<int> copy_out;
  bool in_pipeline = true;
  // put_copy_data: the sizes libpq took; the next calls answering 0 (full).
  std::vector<int> copy_data_sizes;
  int copy_data_full = 0;
  // What this libpq has beyond libpq 15 (libpq 17's calls).
  pq_features feats;
  // The first `written` entries of `sent` went out on the socket (the
  // server can see them); `writes`: how many writes that took. PQpipelineSync
  // writes at once; PQsendPipelineSync leaves it to a flush.
  std::size_t written = 0;
  int writes = 0;
  int flushes = 0;
  // Calls of libpq 15's and libpq 17's variants (never reset).
  int legacy_syncs = 0;
  int queued_syncs = 0;
  int closes = 0;
  // What set_chunked_rows_mode / set_single_row_mode were asked for.
  std::vector<int> row_modes;  // 1: single row; N: chunks of N
  // The result format of each execute; what describe() says of columns.
  std::vector<int> formats;
  bool describe_binary = false;

  ~fake_pq() override {
    for (pg_result* r : results) {
      if (r != nullptr) PQclear(r);
    }
  }

  pg_result* make(int status, std::string sqlstate = {}, std::string tag = {}, int rows = 0) {
    pg_result* r = PQmakeEmptyPGresult(nullptr, static_cast<ExecStatusType>(status));
    info_[r] = info{std::move(sqlstate), std::move(tag), rows, std::to_string(rows)};
    return r;
  }
  /// What libpq returns for a statement sent with PQsendQueryParams.
  void answer(std::string tag = "SELECT 1", int rows = 1) {
    results.push_back(make(pq_status::tuples_ok, {}, std::move(tag), rows));
    results.push_back(nullptr);
    results.push_back(make(pq_status::pipeline_sync));
  }
  void answer_error(std::string sqlstate) {
    results.push_back(make(pq_status::fatal_error, std::move(sqlstate)));
    results.push_back(nullptr);
    results.push_back(make(pq_status::pipeline_sync));
  }
  /// A first run of a cached statement: Parse, Describe, Execute.
  void answer_prepared(std::string tag = "SELECT 1") {
    results.push_back(make(pq_status::command_ok));
    results.push_back(nullptr);
    results.push_back(make(pq_status::command_ok));
    results.push_back(nullptr);
    answer(std::move(tag));
  }
  // Rule 11: statements sharing one Sync end with their NULL; the Sync
  // comes once, after the last of them.
  void answer_in_burst(std::string tag = "SELECT 1", int rows = 1) {
    results.push_back(make(pq_status::tuples_ok, {}, std::move(tag), rows));
    results.push_back(nullptr);
  }
  void answer_prepared_in_burst(std::string tag = "SELECT 1") {
    results.push_back(make(pq_status::command_ok));
    results.push_back(nullptr);
    results.push_back(make(pq_status::command_ok));
    results.push_back(nullptr);
    answer_in_burst(std::move(tag));
  }
  void error_in_burst(std::string sqlstate) {
    results.push_back(make(pq_status::fatal_error, std::move(sqlstate)));
    results.push_back(nullptr);
  }
  /// A command libpq skipped after an earlier error, until the next Sync
  /// (one per libpq call: a first run of a cached statement has three).
  void aborted_in_burst(int commands = 1) {
    for (int i = 0; i < commands; ++i) {
      results.push_back(make(pq_status::pipeline_aborted));
      results.push_back(nullptr);
    }
  }
  void sync_result() { results.push_back(make(pq_status::pipeline_sync)); }
  std::size_t count(const std::string& what) const {
    std::size_t n = 0;
    for (const auto& s : sent) n += s.what == what ? 1 : 0;
    return n;
  }
  /// What was run, in order: the text of each PQsendQueryParams, and
  /// "EXEC " + the text of each prepared statement executed.
  std::vector<std::string> statements() const {
    std::vector<std::string> out;
    for (const auto& s : sent) {
      if (s.what == "query") out.push_back(s.sql);
      if (s.what == "execute") out.push_back("EXEC " + names_.at(s.sql));
    }
    return out;
  }

  bool send_query(const char* sql, const param_set&, int) override { return push("query", sql); }
  bool send_prepare(const char* name, const char* sql, const param_set&) override {
    names_[name] = sql;
    return push("prepare", sql);
  }
  bool send_describe_prepared(const char* name) override { return push("describe", name); }
  bool send_query_prepared(const char* name, const param_set&, int format) override {
    formats.push_back(format);
    return push("execute", name);
  }
  pq_features features() override { return feats; }
  bool pipeline_sync() override {
    if (!push("sync", "")) return false;
    ++legacy_syncs;
    write_out();
    return true;
  }
  bool send_pipeline_sync() override {
    REQUIRE(feats.queued_sync);
    ++queued_syncs;
    return push("sync", "");
  }
  bool send_close_prepared(const char* name) override {
    REQUIRE(feats.close_prepared);
    ++closes;
    return push("close", name);
  }
  int flush() override {
    if (bad) return -1;
    ++flushes;
    if (flush_answer == 0) write_out();
    return flush_answer;
  }
  bool consume_input() override { return !bad; }
  bool is_busy() override { return results.empty() && copy_out.empty(); }
  pg_result* get_result() override {
    if (results.empty()) return nullptr;
    pg_result* r = results.front();
    results.pop_front();
    return r;
  }
  void set_single_row_mode() override { row_modes.push_back(1); }
  bool set_chunked_rows_mode(int rows) override {
    REQUIRE(feats.chunked_rows);
    row_modes.push_back(rows);
    return true;
  }
  bool connection_bad() override { return bad; }
  std::string error_message() override { return "fake: connection broken"; }
  int transaction_status() override { return tx; }
  bool exit_pipeline_mode() override {
    in_pipeline = false;
    return true;
  }
  bool enter_pipeline_mode() override {
    in_pipeline = true;
    return true;
  }
  int put_copy_data(const char*, int size) override {
    if (bad) return -1;
    if (copy_data_full > 0) {
      --copy_data_full;
      return 0;
    }
    copy_data_sizes.push_back(size);
    return 1;
  }
  int put_copy_end(const char* error) override {
    if (bad) return -1;
    push("copy_end", error != nullptr ? error : "");
    return 1;
  }
  int get_copy_data(char** buffer) override {
    if (copy_out.empty()) return 0;
    const int n = copy_out.front();
    copy_out.pop_front();
    if (n > 0) *buffer = new char[static_cast<std::size_t>(n)];
    return n;
  }
  void free_copy_data(char* buffer) override { delete[] buffer; }
  bool next_notification(pending_notification&) override { return false; }
  bool session_in_utc() override { return true; }
  int status(const pg_result* r) override { return PQresultStatus(r); }
  std::string_view sqlstate(const pg_result* r) override { return info_.at(r).sqlstate; }
  std::string_view command_tag(const pg_result* r) override { return info_.at(r).tag; }
  void set_command_tag(pg_result* r, std::string_view tag) override { info_.at(r).tag = std::string(tag); }
  int ntuples(const pg_result* r) override { return info_.at(r).rows; }
  std::string_view command_rows(const pg_result* r) override { return info_.at(r).rows_text; }
  bool binary_tuples(const pg_result*) override { return false; }
  void describe(const pg_result*, bool& binary, bool& needs_utc) override {
    binary = describe_binary;
    needs_utc = false;
  }
  pgq::sql_error make_error(const pg_result* r, std::string_view statement) override {
    pgq::diagnostics d;
    d.severity = "ERROR";
    d.sqlstate = info_.at(r).sqlstate;
    d.message = "fake error " + d.sqlstate;
    d.statement = std::string(statement);
    const pgq::error_code ec = pgq::make_sqlstate_error(d.sqlstate);
    return pgq::sql_error(ec, std::move(d));
  }
  void clear(pg_result* r) override {
    info_.erase(r);
    PQclear(r);
  }

  const std::string& text_of(const std::string& name) const { return names_.at(name); }

 private:
  struct info {
    std::string sqlstate;
    std::string tag;
    int rows = 0;
    std::string rows_text;
  };
  void write_out() {
    if (written < sent.size()) {
      ++writes;
      written = sent.size();
    }
  }
  bool push(const char* what, std::string sql) {
    if (bad) return false;
    sent.push_back(sent_item{what, std::move(sql)});
    return true;
  }
  std::map<const pg_result*, info> info_;
  std::map<std::string, std::string> names_;
};

}  // namespace pgq_test
