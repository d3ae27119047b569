#include "driver/pipeline.hpp"

#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <cctype>

namespace pgq::detail {
namespace {

constexpr std::size_t npos = static_cast<std::size_t>(-1);

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Skips blanks, comments (nested /* */ as the server reads them) and empty
// statements (a leading ';').
std::size_t skip_noise(std::string_view s, std::size_t i) noexcept {
  while (i < s.size()) {
    if (is_space(s[i]) || s[i] == ';') {
      ++i;
    } else if (s.compare(i, 2, "--") == 0) {
      i = s.find('\n', i);
      if (i == std::string_view::npos) return s.size();
    } else if (s.compare(i, 2, "/*") == 0) {
      int depth = 1;
      i += 2;
      while (i < s.size() && depth > 0) {
        if (s.compare(i, 2, "/*") == 0) {
          ++depth;
          i += 2;
        } else if (s.compare(i, 2, "*/") == 0) {
          --depth;
          i += 2;
        } else {
          ++i;
        }
      }
    } else {
      break;
    }
  }
  return i;
}

// The next word (letters and underscores) at `i`, lower-cased into `out`
// (up to its capacity); returns the index after it.
std::size_t next_word(std::string_view s, std::size_t i, char (&out)[16]) noexcept {
  i = skip_noise(s, i);
  std::size_t n = 0;
  while (i < s.size() && (std::isalpha(static_cast<unsigned char>(s[i])) != 0 || s[i] == '_')) {
    if (n + 1 < sizeof out) out[n++] = static_cast<char>(s[i] | 0x20);
    ++i;
  }
  out[n] = '\0';
  return i;
}

bool contains_word_pair(std::string_view s, std::size_t from, std::string_view a, std::string_view b) noexcept {
  char w[16];
  bool prev = false;
  while (from < s.size()) {
    const std::size_t before = from;
    from = next_word(s, from, w);
    if (from == before) ++from;  // not a word: step over it
    const std::string_view word(w);
    if (prev && word == b) return true;
    prev = word == a;
  }
  return false;
}

// Where the server may be once a sequence of statements is done, for rule 11:
// bits 0-2 the transaction states (tx_bits) in which it runs the next
// statement, bits 3-5 those in which it skips statements until a Sync (an
// earlier statement of the burst failed).
constexpr int skip_shift = 3;
constexpr std::uint8_t running_mask = 7;

std::uint8_t step_paths(std::uint8_t p, const request& r) noexcept {
  if (r.sync_marker) return static_cast<std::uint8_t>((p | (p >> skip_shift)) & running_mask);
  std::uint8_t out = 0;
  for (tx_set b : {tx_idle, tx_block, tx_failed}) {
    if ((p & b) != 0) {
      out |= tx_after(r.kind, b, true);
      const tx_set failed = tx_after(r.kind, b, false);
      out |= r.synced ? failed : static_cast<std::uint8_t>(failed << skip_shift);
    }
    if ((p & (b << skip_shift)) != 0) out |= r.synced ? b : static_cast<std::uint8_t>(b << skip_shift);
  }
  return out;
}

// A statement's text for a message about another statement.
std::string shorten(std::string_view sql) {
  constexpr std::size_t limit = 120;
  std::string out;
  out.reserve(std::min(sql.size(), limit) + 3);
  bool blank = false;
  for (const char c : sql) {
    if (out.size() >= limit) {
      out += "...";
      break;
    }
    if (is_space(c)) {
      blank = !out.empty();
      continue;
    }
    if (blank) out.push_back(' ');
    blank = false;
    out.push_back(c);
  }
  return out;
}

}  // namespace

stmt_kind classify_statement(std::string_view sql) noexcept {
  // Every statement passes here: most start with a letter that no
  // transaction statement starts with (SELECT, INSERT, UPDATE, WITH...).
  if (!sql.empty()) {
    const char c = static_cast<char>(sql[0] | 0x20);
    if (std::isalpha(static_cast<unsigned char>(sql[0])) != 0 && c != 'a' && c != 'b' && c != 'c' && c != 'e' &&
        c != 'p' && c != 'r' && c != 's') {
      return stmt_kind::other;
    }
    // SELECT / SET / SHOW: an 's' followed by 'e' or 'h'.
    if (c == 's' && sql.size() > 1 && ((sql[1] | 0x20) == 'e' || (sql[1] | 0x20) == 'h')) return stmt_kind::other;
  }
  char w[16];
  std::size_t i = next_word(sql, 0, w);
  const std::string_view first(w);
  switch (first.empty() ? '\0' : first[0]) {
    case 'a':
      if (first == "abort") return contains_word_pair(sql, i, "and", "chain") ? stmt_kind::chain : stmt_kind::rollback;
      break;
    case 'b':
      if (first == "begin") return stmt_kind::begin;
      break;
    case 'c':
    case 'e':
      if (first == "commit" || first == "end") {
        char second[16];
        next_word(sql, i, second);
        if (std::string_view(second) == "prepared") return stmt_kind::other;
        return contains_word_pair(sql, i, "and", "chain") ? stmt_kind::chain : stmt_kind::commit;
      }
      break;
    case 'p':
      if (first == "prepare") {
        char second[16];
        next_word(sql, i, second);
        if (std::string_view(second) == "transaction") return stmt_kind::prepare_tx;
      }
      break;
    case 'r':
      if (first == "rollback") {
        char second[16];
        std::size_t j = next_word(sql, i, second);
        std::string_view s2(second);
        if (s2 == "prepared") return stmt_kind::other;
        if (s2 == "work" || s2 == "transaction") {
          j = next_word(sql, j, second);
          s2 = second;
        }
        if (s2 == "to") return stmt_kind::rollback_to;
        (void)j;
        return contains_word_pair(sql, i, "and", "chain") ? stmt_kind::chain : stmt_kind::rollback;
      }
      if (first == "release") return stmt_kind::release;
      break;
    case 's':
      if (first == "savepoint") return stmt_kind::savepoint;
      if (first == "start") {
        char second[16];
        next_word(sql, i, second);
        if (std::string_view(second) == "transaction") return stmt_kind::begin;
      }
      break;
    default: break;
  }
  return stmt_kind::other;
}

std::string_view first_keyword(std::string_view sql, char (&buf)[16]) noexcept {
  next_word(sql, 0, buf);
  return buf;
}

bool is_copy_via_client(std::string_view sql) {
  // COPY ... FROM STDIN / TO STDOUT cannot run in pipeline mode; it has its
  // own calls. A friendly early refusal: the result status is what decides.
  const std::size_t i = skip_noise(sql, 0);
  const std::string_view word = "copy";
  if (sql.size() - i <= word.size()) return false;
  for (std::size_t k = 0; k < word.size(); ++k) {
    if ((sql[i + k] | 0x20) != word[k]) return false;
  }
  const char after = sql[i + word.size()];
  if (std::isalnum(static_cast<unsigned char>(after)) != 0 || after == '_') return false;
  std::string rest(sql.substr(i));
  for (char& c : rest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return rest.find("stdin") != std::string::npos || rest.find("stdout") != std::string::npos;
}

tx_set tx_after(stmt_kind k, tx_set s, bool ok) noexcept {
  if (s == tx_failed) {
    switch (k) {
      case stmt_kind::commit:
      case stmt_kind::rollback:
      case stmt_kind::prepare_tx: return tx_idle;
      case stmt_kind::rollback_to: return ok ? tx_block : tx_failed;
      case stmt_kind::chain: return ok ? tx_block : tx_idle;
      default: return tx_failed;  // 25P02
    }
  }
  if (s == tx_idle) {
    if (k == stmt_kind::begin && ok) return tx_block;
    return tx_idle;  // a failed statement's implicit transaction rolled back
  }
  // In a transaction block.
  switch (k) {
    case stmt_kind::commit:
    case stmt_kind::rollback:
    case stmt_kind::prepare_tx: return tx_idle;
    case stmt_kind::chain: return ok ? tx_block : tx_idle;
    case stmt_kind::begin: return tx_block;  // a warning only
    default: return ok ? tx_block : tx_failed;
  }
}

request::~request() = default;

void request::own_sql() {
  if (owned_sql.data() == sql.data() && owned_sql.size() == sql.size()) return;
  owned_sql.assign(sql);
  sql = owned_sql;
}

// ---------------------------------------------------------------- core

pipeline_core::~pipeline_core() {
  auto drop = [this](std::deque<std::unique_ptr<request>>& q) {
    for (auto& r : q) {
      if (r->res != nullptr) port_.clear(r->res);
      if (r->error != nullptr) port_.clear(r->error);
      r->res = r->error = nullptr;
    }
    q.clear();
  };
  drop(inflight_);
  drop(waiting_);
}

void pipeline_core::opened(tx_set tx, std::size_t cache_capacity, bool binary_results) {
  mode_ = mode::pipeline;
  features_ = port_.features();
  tx_ = tx;
  cache_.clear();
  cache_.capacity = cache_capacity;
  binary_results_ = binary_results;
  paused_ = false;
  want_write_ = false;
  slice_full_ = false;
  need_flush_ = false;
  stray_copy_out_ = false;
  burst_open_ = false;
  skipping_ = false;
  paths_valid_ = false;
  syncs_in_flight_ = 0;
  failed_sql_.clear();
  cancels_in_flight_ = 0;
  cancels_to_start_ = 0;
  lost_reason_.clear();
}

tx_set pipeline_core::predicted_tx() const noexcept {
  const std::uint8_t p = paths_before(inflight_.size());
  return static_cast<tx_set>((p | (p >> skip_shift)) & running_mask);
}

// Where the server may be once the first `n` requests in flight are done.
// Each finished request narrows it, so it is rebuilt once one has finished;
// sending only extends it.
std::uint8_t pipeline_core::paths_before(std::size_t n) const noexcept {
  if (paths_valid_ && n == paths_n_) return sent_paths_;
  std::uint8_t p = skipping_ ? static_cast<std::uint8_t>(tx_ << skip_shift) : tx_;
  for (std::size_t i = 0; i < n && i < inflight_.size(); ++i) p = step_paths(p, *inflight_[i]);
  return p;
}

bool pipeline_core::may_share_sync(const request& req) const {
  if (req.what != request::type::query || req.stream || req.retried) return false;
  if (req.kind == stmt_kind::begin) return true;  // it opens the block (or fails, and the rest is skipped)
  if (req.kind != stmt_kind::other) return false;
  // Never where it may run outside a block: there it would share the fate
  // of independent statements (and the Sync would commit them together).
  return (paths_before(inflight_.size() - 1) & tx_idle) == 0;
}

void pipeline_core::emit(std::uint64_t id, request_caller& caller, std::exception_ptr ep, result res) {
  completion c;
  c.id = id;
  c.caller = std::move(caller);
  c.error = std::move(ep);
  c.res = std::move(res);
  done_.push_back(std::move(c));
}

void pipeline_core::wake(const std::shared_ptr<stream_state>& st) {
  if (woken_.empty() || woken_.back() != st) woken_.push_back(st);
}

void pipeline_core::enqueue(std::unique_ptr<request> req) {
  if (req->id == 0) req->id = next_id();
  if (req->what != request::type::exclusive) req->kind = classify_statement(req->sql);
  auto refuse = [&](sql_error e) { complete(*req, std::make_exception_ptr(std::move(e)), {}); };
  if (!is_open()) {
    if (!lost_reason_.empty()) {
      refuse(sql_error(errc::connection_lost, "the connection was lost: " + lost_reason_, std::string(req->sql)));
    } else {
      refuse(sql_error(errc::not_connected, "the connection is not open", std::string(req->sql)));
    }
    return;
  }
  if (req->what == request::type::query || req->what == request::type::stream) {
    if (req->params.size() > max_params) {
      refuse(sql_error(errc::invalid_value,
                       std::to_string(req->params.size()) + " parameters: a statement takes at most 65535",
                       std::string(req->sql)));
      return;
    }
    if (is_copy_via_client(req->sql)) {
      refuse(sql_error(errc::protocol_error, "COPY FROM STDIN / TO STDOUT needs copy_in() / copy_out()",
                       std::string(req->sql)));
      return;
    }
  }
  start(std::move(req));
}

void pipeline_core::enqueue_batch(std::shared_ptr<batch_group> group, std::vector<std::unique_ptr<request>> items) {
  if (group->id == 0) group->id = next_id();
  group->statements = items.size();
  group->results.resize(items.size());
  group->remaining = items.size();
  group->decided = !group->atomic;
  auto fail_group = [&](sql_error e) {
    group->first_error = std::make_exception_ptr(std::move(e));
    finish_group(*group);
  };
  if (!is_open()) {
    fail_group(!lost_reason_.empty() ? sql_error(errc::connection_lost, "the connection was lost: " + lost_reason_)
                                     : sql_error(errc::not_connected, "the connection is not open"));
    return;
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    request& r = *items[i];
    r.kind = classify_statement(r.sql);
    if (r.params.size() > max_params || is_copy_via_client(r.sql)) {
      fail_group(sql_error(
          r.params.size() > max_params ? errc::invalid_value : errc::protocol_error,
          "statement " + std::to_string(i + 1) + " of " + std::to_string(items.size()) + " in the batch: " +
              (r.params.size() > max_params ? "more than 65535 parameters" : "COPY needs copy_in() / copy_out()"),
          std::string(r.sql)));
      return;
    }
  }
  if (items.empty()) {
    finish_group(*group);
    return;
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    items[i]->id = next_id();
    items[i]->group = group;
    items[i]->index = i;
    waiting_.push_back(std::move(items[i]));
  }
  send_waiting();
}

void pipeline_core::start(std::unique_ptr<request> req) {
  if (waiting_.empty() && cancels_in_flight_ == 0 && mode_ == mode::pipeline && req->what != request::type::exclusive &&
      !wants_describe(*req)) {
    request& r = *req;
    inflight_.push_back(std::move(req));
    if (send(r)) sent_some();
    return;
  }
  waiting_.push_back(std::move(req));
  send_waiting();
}

bool pipeline_core::decide_batch(batch_group& g) {
  const tx_set s = predicted_tx();
  if ((s & tx_idle) != 0 && s != tx_idle) return false;  // not known yet: wait
  g.decided = true;
  if (!g.atomic || s != tx_idle) return true;  // a transaction block holds it
  g.wrapped = true;
  // BEGIN before the group's first statement (the front), COMMIT after its last.
  auto it = waiting_.begin();
  while (it != waiting_.end() && (*it)->group.get() == &g) ++it;
  auto commit = make_detached("COMMIT", stmt_kind::commit);
  commit->group = waiting_.front()->group;
  commit->index = npos;
  commit->what = request::type::query;
  waiting_.insert(it, std::move(commit));
  auto begin = make_detached("BEGIN", stmt_kind::begin);
  begin->group = waiting_.front()->group;
  begin->index = npos;
  begin->what = request::type::query;
  waiting_.push_front(std::move(begin));
  g.remaining += 2;
  return true;
}

void pipeline_core::send_waiting() {
  bool sent = false;
  while (mode_ == mode::pipeline && cancels_in_flight_ == 0 && !waiting_.empty()) {
    request& front = *waiting_.front();
    if (front.what == request::type::exclusive) {
      if (inflight_.empty() && !burst_open_) grant_exclusive();
      break;
    }
    if (front.group && !front.group->decided) {
      if (!decide_batch(*front.group)) break;
      continue;
    }
    if (front.describing) break;  // its Describe is on the wire
    if (wants_describe(front)) {
      if (sent) sent_some();
      start_describe(front);
      return;
    }
    std::unique_ptr<request> req = std::move(waiting_.front());
    waiting_.pop_front();
    request& r = *req;
    inflight_.push_back(std::move(req));
    if (!send(r)) return;
    if (r.group && r.index == npos && r.kind == stmt_kind::commit) r.group->commit_sent = true;
    sent = true;
  }
  if (sent) sent_some();
}

void pipeline_core::sent_some() {
  // PQpipelineSync wrote each request already; a queued Sync waits for the
  // end of the burst, so that one write carries every request of it.
  // Statements sharing a Sync wait for it (rule 11) whatever the libpq.
  if (features_.queued_sync || burst_open_) {
    need_flush_ = true;
  } else {
    flush();
  }
}

bool pipeline_core::sync() { return features_.queued_sync ? port_.send_pipeline_sync() : port_.pipeline_sync(); }

void pipeline_core::close_burst() {
  if (!burst_open_ || !is_open()) return;
  burst_open_ = false;
  auto marker = make_detached(std::string(), stmt_kind::other);
  marker->sync_marker = true;
  ++syncs_in_flight_;
  const bool extend = paths_valid_ && paths_n_ == inflight_.size();
  inflight_.push_back(std::move(marker));
  if (extend) {
    sent_paths_ = step_paths(sent_paths_, *inflight_.back());
    paths_n_ = inflight_.size();
  } else {
    paths_valid_ = false;
  }
  need_flush_ = true;
  if (!sync()) lost(port_.error_message());
}

void pipeline_core::end_of_burst() {
  if (mode_ != mode::pipeline || !need_flush_) return;
  flush();
}

void pipeline_core::evict(const std::string& statement) {
  close_burst();  // the Close runs whatever happened in the burst before it
  if (!is_open()) return;
  paths_valid_ = false;
  if (!features_.close_prepared) {
    send_detached_now("DEALLOCATE " + statement);
    return;
  }
  // A protocol Close: no statement to parse, and it works in a failed
  // transaction block too (DEALLOCATE would fail there).
  auto req = make_detached(statement, stmt_kind::other);
  req->close_statement = true;
  request& r = *req;
  inflight_.push_back(std::move(req));
  if (!port_.send_close_prepared(r.owned_sql.c_str()) || !sync()) {
    lost(port_.error_message());
    return;
  }
  need_flush_ = true;
}

bool pipeline_core::cacheable(const request& req) const noexcept {
  // Transaction control gains nothing from a prepared statement.
  return cache_.capacity > 0 && req.what == request::type::query && req.kind == stmt_kind::other;
}

const std::string& pipeline_core::statement_key(const request& req) {
  // The same text with other parameter types is another statement.
  thread_local std::string key;
  key.assign(req.sql);
  key.push_back('\0');
  key.append(reinterpret_cast<const char*>(req.params.types()),
             static_cast<std::size_t>(req.params.size()) * sizeof(oid));
  return key;
}

bool pipeline_core::wants_describe(const request& req) {
  // Only where the answer can change the format: binary results on, a lone
  // statement (a batch keeps its single round trip), not yet described.
  return describe_first_ && binary_results_ && !req.describe_tried && !req.group && !req.stream && cacheable(req) &&
         !cache_.contains(statement_key(req));
}

void pipeline_core::start_describe(request& req) {
  // On its own Sync, after the burst before it (rule 11): its Parse may fail.
  close_burst();
  if (!is_open()) return;
  paths_valid_ = false;
  std::string evicted;
  const std::string name = cache_.insert(statement_key(req), evicted);
  auto d = make_detached(std::string(req.sql), stmt_kind::other);
  d->describe_for = req.id;
  d->prepared = name;
  d->statement = name;
  d->described = true;
  request& r = *d;
  inflight_.push_back(std::move(d));
  req.describing = true;
  req.describe_tried = true;
  if (!port_.send_prepare(name.c_str(), r.owned_sql.c_str(), req.params) ||
      !port_.send_describe_prepared(name.c_str()) || !sync()) {
    lost(port_.error_message());
    return;
  }
  if (!evicted.empty()) evict(evicted);
  if (is_open()) sent_some();
}

bool pipeline_core::send(request& req) {
  // `req` was just put at the back of inflight_.
  req.synced = !may_share_sync(req);
  if (req.synced && burst_open_) {
    // The burst's Sync goes before it: on the wire and in inflight_.
    std::unique_ptr<request> self = std::move(inflight_.back());
    inflight_.pop_back();
    close_burst();
    inflight_.push_back(std::move(self));
    if (!is_open()) return false;
  }
  const std::uint8_t before = paths_before(inflight_.size() - 1);
  // libpq wants a NUL-terminated statement; reuse one buffer per thread.
  thread_local std::string sql_buffer;
  sql_buffer.assign(req.sql);
  const param_set& p = req.params;
  bool ok = true;
  std::string evicted;
  if (cacheable(req)) {
    const std::string& key = statement_key(req);
    int result_format = 0;
    // A statement described just before its first run was a miss already.
    if (const statement_cache::entry* e = cache_.find(key, !req.describe_tried)) {
      req.statement = e->name;
      // Binary results skip text parsing of numbers and timestamps; the
      // codecs read both formats. timestamptz in binary has no zone, so it
      // is rendered in UTC: only ask for it when the session is in UTC too.
      if (e->binary && binary_results_ && (!e->needs_utc || port_.session_in_utc())) result_format = 1;
    } else {
      req.prepared = cache_.insert(key, evicted);
      req.statement = req.prepared;
      // Parse once under a name, in the same round trip as the first run;
      // Describe tells which result format later runs can use.
      ok = port_.send_prepare(req.prepared.c_str(), sql_buffer.c_str(), p) &&
           port_.send_describe_prepared(req.prepared.c_str());
      req.described = true;
    }
    ok = ok && port_.send_query_prepared(req.statement.c_str(), p, result_format);
  } else {
    ok = port_.send_query(sql_buffer.c_str(), p, 0);
  }
  if (!ok || (req.synced && !sync())) {
    lost(port_.error_message());
    return false;
  }
  if (!req.synced) {
    burst_open_ = true;
    need_flush_ = true;
  }
  sent_paths_ = step_paths(before, req);
  paths_n_ = inflight_.size();
  paths_valid_ = true;
  if (!evicted.empty()) evict(evicted);
  return true;
}

std::unique_ptr<request> pipeline_core::make_detached(std::string sql, stmt_kind kind) {
  auto req = std::make_unique<request>();
  req->id = next_id();
  req->what = request::type::detached;
  req->kind = kind;
  req->owned_sql = std::move(sql);
  req->sql = req->owned_sql;
  return req;
}

void pipeline_core::send_detached_now(std::string sql) {
  close_burst();
  if (!is_open()) return;
  paths_valid_ = false;
  auto req = make_detached(std::move(sql), stmt_kind::other);
  request& r = *req;
  inflight_.push_back(std::move(req));
  if (!port_.send_query(r.owned_sql.c_str(), r.params, 0) || !sync()) {
    lost(port_.error_message());
    return;
  }
  need_flush_ = true;
}

void pipeline_core::flush() {
  if (!is_open()) return;
  // Whatever is written ends with a Sync: the server sends the burst's
  // results only then.
  close_burst();
  if (!is_open()) return;
  const int r = port_.flush();
  if (r < 0) {
    lost(port_.error_message());
    return;
  }
  want_write_ = r == 1;
  need_flush_ = false;
  // A flush that could not write everything may have read input to make room;
  // that input no longer makes the socket readable, so look at it now.
  if (r == 1) drain();
}

void pipeline_core::on_writable() {
  if (mode_ != mode::pipeline) return;
  want_write_ = false;
  flush();
}

void pipeline_core::on_readable() {
  if (mode_ != mode::pipeline) return;
  if (!slice_full_ && !port_.consume_input()) {
    lost(port_.error_message());
    return;
  }
  slice_full_ = false;
  drain();
  if (!is_open()) return;
  note_notifications();
  if (!slice_full_ && port_.connection_bad()) lost(port_.error_message());
}

void pipeline_core::note_notifications() {
  pending_notification n;
  while (port_.next_notification(n)) notes_.push_back(std::move(n));
}

void pipeline_core::drain() {
  if (in_drain_) return;  // flush() inside a drain: the outer loop goes on
  in_drain_ = true;
  int nulls = 0;
  while (mode_ == mode::pipeline && !inflight_.empty() && !paused_) {
    if (slice_ != 0 && done_.size() >= slice_) {
      slice_full_ = true;  // the driver delivers these, then comes back
      break;
    }
    if (stray_copy_out_) {
      char* buf = nullptr;
      const int n = port_.get_copy_data(&buf);
      if (n > 0) {
        port_.free_copy_data(buf);
        continue;
      }
      if (n == 0) break;  // more when the socket is readable
      if (n == -1) {
        stray_copy_out_ = false;  // the statement's result follows
        continue;
      }
      in_drain_ = false;
      lost(port_.error_message());
      return;
    }
    request& front = *inflight_.front();
    if (front.stream && !front.single_row_set) {
      // Before libpq parses any of this statement's rows (PQisBusy would):
      // its results then come a chunk of rows each, or one row each.
      front.single_row_set = true;
      const bool chunked = features_.chunked_rows && chunk_rows_ > 1 &&
                           port_.set_chunked_rows_mode(static_cast<int>(std::min<std::size_t>(chunk_rows_, 1 << 30)));
      if (!chunked) port_.set_single_row_mode();
    }
    if (port_.is_busy()) break;
    pg_result* r = port_.get_result();
    if (r == nullptr) {
      // One NULL ends a statement's results; a second in a row means libpq
      // has nothing more until more input arrives.
      if (++nulls > 1) break;
      ++front.stage;
      // A statement sharing its burst's Sync is done at the end of its own
      // results (rule 11): Parse, Describe and Execute each end with a NULL.
      if (!front.synced && front.stage >= (front.described ? 3 : 1)) finish_front();
      continue;
    }
    nulls = 0;
    const int status = port_.status(r);
    switch (status) {
      case pq_status::pipeline_sync:
        port_.clear(r);
        skipping_ = false;
        if (!front.synced) {
          // Its results did not end as its commands say: nothing that
          // follows can be matched to its request any more.
          in_drain_ = false;
          fail_everything(errc::protocol_error, "a Sync arrived before the end of a statement's results", true);
          return;
        }
        finish_front();
        break;
      case pq_status::fatal_error:
      case pq_status::pipeline_aborted:
      case pq_status::bad_response:
        if (front.stage == 0 && !front.prepared.empty()) front.prepare_failed = true;
        if (front.error == nullptr) {
          front.error = r;
        } else {
          port_.clear(r);
        }
        if (port_.connection_bad()) {
          in_drain_ = false;
          lost(port_.error_message());
          return;
        }
        break;
      case pq_status::copy_in:
      case pq_status::copy_out:
      case pq_status::copy_both:
        port_.clear(r);
        end_stray_copy(front, status);
        if (!is_open()) {
          in_drain_ = false;
          return;
        }
        break;
      case pq_status::single_tuple:
      case pq_status::tuples_chunk:
        if (front.stream) {
          stream_state& st = *front.stream;
          if (st.abandoned) {
            port_.clear(r);
            break;
          }
          st.buffered += status == pq_status::single_tuple ? 1 : static_cast<std::size_t>(port_.ntuples(r));
          if (status == pq_status::tuples_chunk) {
            // libpq puts the command tag on the last chunk, and leaves the
            // closing result (no rows) without one.
            const std::string_view tag = port_.command_tag(r);
            if (!tag.empty()) front.chunk_tag.assign(tag);
          }
          st.rows.emplace_back(r);
          wake(front.stream);
          // Leave the rest in the socket until the consumer catches up: the
          // server waits, memory stays flat.
          if (st.buffered >= stream_buffer_rows) paused_ = true;
          break;
        }
        [[fallthrough]];
      default:
        if (front.described && front.stage == 1) {
          bool binary = false;
          bool needs_utc = false;
          port_.describe(r, binary, needs_utc);
          cache_.describe(front.prepared, binary, needs_utc);
          port_.clear(r);
          break;
        }
        if (front.stream && status == pq_status::tuples_ok && port_.ntuples(r) > 0 && !front.stream->abandoned) {
          // Single-row mode was refused: the rows came all at once.
          front.stream->buffered += static_cast<std::size_t>(port_.ntuples(r));
          front.stream->rows.emplace_back(r);
          wake(front.stream);
          break;
        }
        if (front.stream && !front.chunk_tag.empty() && port_.command_tag(r).empty()) {
          port_.set_command_tag(r, front.chunk_tag);
        }
        if (front.res != nullptr) port_.clear(front.res);
        front.res = r;
        break;
    }
  }
  in_drain_ = false;
  if (!is_open()) return;
  if (!waiting_.empty()) send_waiting();
  if (need_flush_) {
    need_flush_ = false;
    flush();
    if (!is_open()) return;
  }
  // A request its caller cancelled while others ran before it: now it is the
  // one the server runs, so cancel it there.
  if (!inflight_.empty() && cancels_in_flight_ == 0) {
    request& front = *inflight_.front();
    const bool group_failed = front.group && front.group->cancelling && front.group->first_error;
    if (front.cancel_when_front && !front.server_cancelled && !group_failed) issue_server_cancel();
  }
}

void pipeline_core::end_stray_copy(request& front, int status) {
  // COPY FROM STDIN / TO STDOUT that the text check missed: libpq would hand
  // out a COPY result on every call. End it; the request fails.
  if (!front.failure) {
    front.failure = std::make_exception_ptr(sql_error(
        errc::protocol_error, "COPY FROM STDIN / TO STDOUT needs copy_in() / copy_out()", std::string(front.sql)));
  }
  if (status == pq_status::copy_out) {
    // The server sends the rows and then goes on with what follows: drop
    // them (drain() reads them off), and stop it early.
    stray_copy_out_ = true;
    if (!front.server_cancelled && cancels_in_flight_ == 0) issue_server_cancel();
    return;
  }
  if (status == pq_status::copy_in && inflight_.size() == 1) {
    // Nothing behind it: CopyFail ends it and the server skips to our Sync.
    if (port_.put_copy_end("pgq: COPY FROM STDIN needs copy_in()") != 1) {
      lost(port_.error_message());
      return;
    }
    flush();
    return;
  }
  // COPY IN with requests behind it: the server would read them as COPY data
  // and the Sync accounting could no longer be trusted. COPY BOTH
  // (replication) has no place here either. Close.
  const std::string why = status == pq_status::copy_both
                              ? "the server started COPY BOTH (replication), which pgq does not drive"
                              : "COPY FROM STDIN sent in a pipeline with other requests behind it";
  fail_everything(errc::protocol_error, why + ": the connection was closed", true);
}

void pipeline_core::apply_tx(const request& req, bool ok) {
  if (req.kind == stmt_kind::other && ok && tx_ != tx_failed) return;  // the usual case: no change
  tx_set out = 0;
  for (tx_set b : {tx_idle, tx_block, tx_failed}) {
    if ((tx_ & b) != 0) out |= tx_after(req.kind, b, ok);
  }
  tx_ = out;
}

void pipeline_core::resync_tx() {
  tx_set t = 0;
  switch (port_.transaction_status()) {
    case pq_trans::idle: t = tx_idle; break;
    case pq_trans::intrans: t = tx_block; break;
    case pq_trans::inerror: t = tx_failed; break;
    default: return;
  }
  if (t != tx_) {
    ++tx_mismatches_;
    tx_ = t;
  }
}

std::exception_ptr pipeline_core::skipped_error(const request& req) const {
  diagnostics d;
  d.severity = "ERROR";
  d.sqlstate = "25P02";
  d.message = "not run: an earlier statement sent with it failed";
  if (!failed_sql_.empty()) d.message += ": " + failed_sql_;
  d.statement = std::string(req.sql);
  return std::make_exception_ptr(sql_error(make_sqlstate_error("25P02"), std::move(d)));
}

bool pipeline_core::may_retry(const request& req) const {
  // Invisible only: it failed in an implicit transaction (so it changed
  // nothing), and nothing sent after it can depend on it.
  return req.synced && !req.retried && tx_ == tx_idle && inflight_.empty() && req.kind == stmt_kind::other &&
         req.what == request::type::query && req.awaited && (!req.group || !req.group->atomic) && is_open();
}

void pipeline_core::retry(std::unique_ptr<request> req) {
  if (req->error != nullptr) port_.clear(req->error);
  if (req->res != nullptr) port_.clear(req->res);
  req->error = req->res = nullptr;
  req->retried = true;
  req->exposed = false;
  req->stage = 0;
  req->prepare_failed = false;
  req->prepared.clear();
  req->statement.clear();
  req->described = false;
  waiting_.push_front(std::move(req));
  send_waiting();
}

void pipeline_core::finish_front() {
  std::unique_ptr<request> req = std::move(inflight_.front());
  inflight_.pop_front();
  paths_valid_ = false;
  if (req->sync_marker) {
    --syncs_in_flight_;
    if ((tx_ & tx_failed) == 0) failed_sql_.clear();
    if (inflight_.empty() && !burst_open_ && mode_ == mode::pipeline) resync_tx();
    return;
  }
  // The server skips the rest of the burst until its Sync.
  if (!req->synced && req->error != nullptr) skipping_ = true;
  if (req->prepare_failed) cache_.erase_name(req->prepared);  // it never existed
  if (req->describe_for != 0) {
    finish_describe(*req);
    return;
  }
  if (req->res != nullptr && cache_.size() > 0) {
    // The caller's own DISCARD ALL / DEALLOCATE ALL dropped our statements.
    const std::string_view tag = port_.command_tag(req->res);
    if (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL") cache_.clear();
  }
  const bool ok = req->error == nullptr && !req->failure;
  std::string_view state;
  if (req->error != nullptr) state = port_.sqlstate(req->error);
  bool stray_cancel = false;
  std::string deallocate;  // a stale statement to close
  if (req->error != nullptr && !req->failure) {
    const bool stale_plan = !req->statement.empty() && !req->prepare_failed && (state == "0A000" || state == "26000");
    if (stale_plan) {
      // "cached plan must not change result type" after a schema change, or
      // the statement is gone (DISCARD ALL behind our back): forget it.
      ++cache_.invalidations;
      if (state == "26000") {
        cache_.clear();
      } else {
        cache_.erase_name(req->statement);
        deallocate = req->statement;
      }
    }
    // A cancel aimed at the request before it hit this one.
    stray_cancel = state == "57014" && req->exposed && !req->server_cancelled && !req->stream;
    if ((stale_plan || stray_cancel) && may_retry(*req)) {
      if (!deallocate.empty()) evict(std::exchange(deallocate, {}));
      if (is_open()) {
        retry(std::move(req));
        return;
      }
    }
  }
  const bool commit_rolled_back =
      ok && (req->kind == stmt_kind::commit) && req->res != nullptr && port_.command_tag(req->res) == "ROLLBACK";
  apply_tx(*req, ok);
  if (inflight_.empty() && !burst_open_ && mode_ == mode::pipeline) resync_tx();

  std::exception_ptr ep;
  if (!is_open()) {
    ep = std::make_exception_ptr(
        sql_error(errc::connection_lost, "the connection was lost: " + lost_reason_, std::string(req->sql)));
  } else if (req->failure) {
    ep = req->failure;
  } else if (req->error != nullptr) {
    if (port_.status(req->error) == pq_status::pipeline_aborted) {
      ep = skipped_error(*req);
    } else if (stray_cancel) {
      sql_error e = port_.make_error(req->error, req->sql);
      diagnostics d = e.diag();
      d.message =
          "cancelled on the server by a cancel meant for another statement on this connection (" + d.message + ")";
      ep = std::make_exception_ptr(sql_error(e.code(), std::move(d)));
    } else if (state == "25P02" && !failed_sql_.empty()) {
      sql_error e = port_.make_error(req->error, req->sql);
      diagnostics d = e.diag();
      d.message += " (the statement that failed first: " + failed_sql_ + ")";
      ep = std::make_exception_ptr(sql_error(e.code(), std::move(d)));
    } else {
      ep = std::make_exception_ptr(port_.make_error(req->error, req->sql));
    }
  } else if (commit_rolled_back) {
    diagnostics d;
    d.severity = "ERROR";
    d.sqlstate = "25P02";
    d.message = "the transaction had failed: COMMIT rolled it back";
    if (!failed_sql_.empty()) d.message += " (the statement that failed first: " + failed_sql_ + ")";
    d.statement = std::string(req->sql);
    ep = std::make_exception_ptr(sql_error(make_sqlstate_error("25P02"), std::move(d)));
  }
  // Remember the first failure of a block (or burst) for the statements it
  // aborts; forget it once the block is over and no burst skips.
  if (req->error != nullptr && failed_sql_.empty() && state != "25P02" &&
      port_.status(req->error) != pq_status::pipeline_aborted) {
    failed_sql_ = "\"" + shorten(req->sql) + "\"";
    if (!state.empty()) failed_sql_ += " (SQLSTATE " + std::string(state) + ")";
  }
  if (req->synced && (tx_ & tx_failed) == 0) failed_sql_.clear();
  if (ep) {
    complete(*req, std::move(ep), {});
  } else {
    pg_result* res = req->res;
    req->res = nullptr;
    complete(*req, nullptr, result(res));
  }
  // After the caller's outcome: a failure to send it must not lose that.
  if (!deallocate.empty() && is_open()) evict(deallocate);
}

void pipeline_core::finish_describe(request& d) {
  const bool ok = d.error == nullptr && !d.failure;
  apply_tx(d, ok);
  if (inflight_.empty() && mode_ == mode::pipeline) resync_tx();
  // The request it was for waits at the front (unless its caller gave up).
  if (!waiting_.empty() && waiting_.front()->id == d.describe_for) {
    waiting_.front()->describing = false;
    // A cancel meant for the request before it is not the statement's
    // error: it is then sent the usual way (prepared with its first run).
    const bool stray_cancel = d.error != nullptr && port_.sqlstate(d.error) == "57014";
    if (!ok && is_open() && !stray_cancel) {
      // Its Parse failed: that is the statement's error; sending it again
      // would only repeat it (or, in a transaction block, hide it behind
      // 25P02).
      std::unique_ptr<request> w = std::move(waiting_.front());
      waiting_.pop_front();
      std::exception_ptr ep = d.failure;
      if (!ep && port_.status(d.error) == pq_status::pipeline_aborted) {
        ep = std::make_exception_ptr(
            sql_error(errc::protocol_error, "statement skipped: the pipeline was aborted", std::string(w->sql)));
      } else if (!ep) {
        ep = std::make_exception_ptr(port_.make_error(d.error, w->sql));
      }
      complete(*w, std::move(ep), {});
    }
  }
  complete(d, nullptr, {});
}

void pipeline_core::complete(request& req, std::exception_ptr ep, result res) {
  if (req.res != nullptr) {
    port_.clear(req.res);
    req.res = nullptr;
  }
  if (req.error != nullptr) {
    port_.clear(req.error);
    req.error = nullptr;
  }
  if (req.stream) {
    stream_state& st = *req.stream;
    if (st.done) return;
    st.done = true;
    st.error = std::move(ep);
    st.final = std::move(res);
    wake(req.stream);
    return;
  }
  if (req.group) {
    complete_group_item(req, std::move(ep), std::move(res));
    return;
  }
  if (!req.awaited) return;
  req.awaited = false;
  if (req.what == request::type::exclusive) {
    completion c;
    c.id = req.id;
    c.caller = std::move(req.caller);
    c.error = std::move(ep);
    c.grant = true;
    done_.push_back(std::move(c));
    return;
  }
  emit(req.id, req.caller, std::move(ep), std::move(res));
}

void pipeline_core::complete_group_item(request& req, std::exception_ptr ep, result res) {
  batch_group& g = *req.group;
  if (!g.awaited) return;  // its caller was told already (cancelled, lost)
  if (req.index != npos) {
    if (ep && !g.first_error) {
      try {
        std::rethrow_exception(ep);
      } catch (const sql_error& e) {
        diagnostics diag = e.diag();
        diag.message = "statement " + std::to_string(req.index + 1) + " of " + std::to_string(g.statements) +
                       " in the batch: " + diag.message;
        g.first_error = std::make_exception_ptr(sql_error(e.code(), std::move(diag)));
      } catch (...) {
        g.first_error = std::current_exception();
      }
    } else if (!ep && req.index < g.results.size()) {
      g.results[req.index] = std::move(res);
    }
  } else if (ep && !g.first_error) {
    g.first_error = std::move(ep);  // BEGIN or COMMIT itself failed
  }
  if (g.remaining > 0 && --g.remaining == 0) {
    if (g.cancelling && g.first_error) {
      // The cancel took hold: the transaction rolled back.
      g.first_error =
          std::make_exception_ptr(sql_error(errc::cancelled, "batch cancelled: its transaction was rolled back"));
    }
    finish_group(g);
  }
}

void pipeline_core::finish_group(batch_group& g) {
  if (!g.awaited) return;
  g.awaited = false;
  completion c;
  c.id = g.id;
  c.caller = std::move(g.caller);
  c.error = g.first_error;
  c.batch = true;
  if (!c.error) c.rows = std::move(g.results);
  g.results.clear();
  done_.push_back(std::move(c));
}

void pipeline_core::cancel(std::uint64_t id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    request& r = **it;
    if (r.group && r.group->id == id) {
      cancel_group(r.group);
      return;
    }
    if (r.id != id || r.group) continue;
    if (r.stream) {
      stream_abandon(r.stream);
      return;
    }
    if (!r.awaited) return;
    const std::string sql(r.sql);
    if (r.kind == stmt_kind::commit || r.kind == stmt_kind::chain) {
      // Not sent: roll back instead, so that the outcome is known.
      complete(r,
               std::make_exception_ptr(sql_error(
                   errc::cancelled, "COMMIT cancelled before it was sent: the transaction was rolled back", sql)),
               {});
      *it = make_detached("ROLLBACK", stmt_kind::rollback);
      return;
    }
    if (r.kind == stmt_kind::rollback || r.kind == stmt_kind::rollback_to) {
      // The rollback still happens; only the wait for it ends.
      complete(r,
               std::make_exception_ptr(
                   sql_error(errc::cancelled, "cancelled before it was sent: the rollback still runs", sql)),
               {});
      r.own_sql();
      r.what = request::type::detached;
      return;
    }
    std::unique_ptr<request> gone = std::move(*it);
    waiting_.erase(it);
    complete(*gone, std::make_exception_ptr(sql_error(errc::cancelled, "statement cancelled before it was sent", sql)),
             {});
    if (!waiting_.empty()) send_waiting();  // a batch may wait on nothing now
    return;
  }
  for (std::size_t i = 0; i < inflight_.size(); ++i) {
    request& r = *inflight_[i];
    if (r.group && r.group->id == id) {
      cancel_group(r.group);
      return;
    }
    if (r.id != id || r.group) continue;
    if (r.stream) {
      stream_abandon(r.stream);
      return;
    }
    if (!r.awaited) return;
    const std::string sql(r.sql);
    r.own_sql();  // the caller and its text go away now
    if (r.kind == stmt_kind::commit || r.kind == stmt_kind::chain) {
      complete(r,
               std::make_exception_ptr(
                   sql_error(errc::commit_unknown,
                             "COMMIT was cancelled after it was sent: it may or may not have taken effect", sql)),
               {});
      return;  // not cancelled on the server: its outcome is decided there
    }
    // Its results are in (complete() frees them): the server is done with
    // it, and a cancel would only hit what runs after it.
    const bool answered = r.error != nullptr || (r.res != nullptr && r.stage + 1 >= (r.described ? 3 : 1));
    complete(r,
             std::make_exception_ptr(
                 sql_error(errc::cancelled, "statement cancelled after it was sent (it may have run)", sql)),
             {});
    if (r.kind == stmt_kind::begin) {
      // BEGIN may have run: the transaction must not stay open with no owner.
      waiting_.push_front(make_detached("ROLLBACK", stmt_kind::rollback));
      send_waiting();
      return;
    }
    if (answered) return;
    // Only the statement the server is running now is cancelled there; one
    // queued behind others is cancelled when it becomes the front.
    r.cancel_when_front = true;
    if (cancels_in_flight_ != 0) return;
    if (i == 0) {
      issue_server_cancel();
    } else if (!r.synced && same_block_before(i)) {
      // Its burst's results come at the Sync, so whether it runs is not
      // known: cancel now (rule 7).
      issue_server_cancel(&r);
    }
    return;
  }
}

// Everything in flight before request `i` runs in the transaction block it
// runs in.
bool pipeline_core::same_block_before(std::size_t i) const noexcept {
  if ((tx_ & tx_idle) != 0) return false;
  for (std::size_t k = 0; k < i && k < inflight_.size(); ++k) {
    switch (inflight_[k]->kind) {
      case stmt_kind::commit:
      case stmt_kind::rollback:
      case stmt_kind::chain:
      case stmt_kind::prepare_tx: return false;
      default: break;
    }
  }
  return true;
}

// By value: completing the group's requests must not free it here.
void pipeline_core::cancel_group(std::shared_ptr<batch_group> g) {  // NOLINT(performance-unnecessary-value-param)
  if (!g->awaited || g->cancelling) return;
  if (g->wrapped && g->commit_sent) {
    const request* front = inflight_.empty() ? nullptr : inflight_.front().get();
    const bool commit_running =
        front != nullptr && front->group == g && front->index == npos && front->kind == stmt_kind::commit;
    if (!commit_running) {
      // Its COMMIT is on the wire but not running: cancel what runs on the
      // server and let the COMMIT tell (ROLLBACK: cancelled; COMMIT: done).
      g->cancelling = true;
      for (auto& r : inflight_) {
        if (r->group != g) continue;
        r->own_sql();
        if (r->index != npos) r->cancel_when_front = true;
      }
      if (front != nullptr && front->group == g && cancels_in_flight_ == 0) issue_server_cancel();
      return;
    }
  }
  bool any_sent = false;
  bool front_is_ours = !inflight_.empty() && inflight_.front()->group == g;
  for (auto& r : inflight_) {
    if (r->group == g) {
      any_sent = true;
      r->own_sql();
      r->cancel_when_front = r->index != npos;
    }
  }
  // Drop what was not sent; a COMMIT not sent becomes a ROLLBACK (only when
  // the BEGIN went out).
  bool need_rollback = false;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->group == g) {
      if ((*it)->index == npos && (*it)->kind == stmt_kind::commit && any_sent) need_rollback = true;
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  if (need_rollback) {
    // Right behind the group's requests on the wire: the front of waiting_.
    waiting_.push_front(make_detached("ROLLBACK", stmt_kind::rollback));
  }
  g->remaining = 0;
  if (g->commit_sent) {
    g->first_error = std::make_exception_ptr(sql_error(
        errc::commit_unknown, "the batch was cancelled after its COMMIT was sent: it may or may not have committed"));
  } else {
    g->first_error = std::make_exception_ptr(
        sql_error(errc::cancelled, g->wrapped ? "batch cancelled: its transaction was rolled back"
                                              : (any_sent ? "batch cancelled (statements already sent may have run)"
                                                          : "batch cancelled before it was sent")));
  }
  finish_group(*g);
  if (front_is_ours && !g->commit_sent && cancels_in_flight_ == 0) issue_server_cancel();
  send_waiting();
}

void pipeline_core::issue_server_cancel(const request* target) {
  // The request to cancel must be on the wire, not in libpq's buffer behind
  // a queued Sync: a cancel that finds the backend idle is lost.
  if (need_flush_) {
    flush();
    if (!is_open()) return;
  }
  if (inflight_.empty()) return;
  request* aimed = inflight_.front().get();
  if (target != nullptr) {
    aimed = nullptr;
    for (auto& r : inflight_) {
      if (r.get() == target) aimed = r.get();
    }
    if (aimed == nullptr) return;  // done meanwhile
  }
  ++cancels_in_flight_;
  ++cancels_to_start_;
  aimed->server_cancelled = true;
  ++aimed->server_cancels;
  for (auto& r : inflight_) {
    if (r.get() != aimed) r->exposed = true;
  }
}

void pipeline_core::on_server_cancel_done() {
  if (cancels_in_flight_ > 0) --cancels_in_flight_;
  if (cancels_in_flight_ != 0 || !is_open()) return;
  send_waiting();
  if (!inflight_.empty()) {
    request& front = *inflight_.front();
    const bool group_failed = front.group && front.group->cancelling && front.group->first_error;
    if (front.cancel_when_front && !front.server_cancelled && !group_failed) issue_server_cancel();
  }
}

std::uint64_t pipeline_core::cancelled_but_running() const noexcept {
  if (!is_open() || mode_ != mode::pipeline || cancels_in_flight_ != 0 || inflight_.empty()) return 0;
  const request& front = *inflight_.front();
  return front.server_cancelled ? front.id : 0;
}

std::chrono::milliseconds pipeline_core::recancel_delay() const noexcept {
  const int sent = inflight_.empty() ? 1 : inflight_.front()->server_cancels;
  const int doublings = std::min(std::max(sent - 1, 0), 5);
  return std::min(std::chrono::milliseconds(50) * (1 << doublings), std::chrono::milliseconds(1000));
}

void pipeline_core::recancel(std::uint64_t id) {
  if (id == 0 || cancelled_but_running() != id) return;
  issue_server_cancel();
}

void pipeline_core::stream_resume() {
  if (!paused_) return;
  paused_ = false;
  drain();
}

// By value: erasing the request that holds `st` must not free it here.
void pipeline_core::stream_abandon(std::shared_ptr<stream_state> st) {  // NOLINT(performance-unnecessary-value-param)
  if (st->abandoned) return;
  st->abandoned = true;
  st->rows.clear();
  st->buffered = 0;
  if (!st->done) {
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      if ((*it)->stream == st) {
        waiting_.erase(it);
        st->done = true;
        if (!waiting_.empty()) send_waiting();
        return;
      }
    }
    for (std::size_t i = 0; i < inflight_.size(); ++i) {
      request& r = *inflight_[i];
      if (r.stream != st) continue;
      r.own_sql();
      r.cancel_when_front = true;
      if (i == 0 && cancels_in_flight_ == 0 && !r.server_cancelled) issue_server_cancel();
      break;
    }
  }
  if (paused_) stream_resume();
}

void pipeline_core::grant_exclusive() {
  std::unique_ptr<request> req = std::move(waiting_.front());
  waiting_.pop_front();
  if (!port_.exit_pipeline_mode()) {
    const std::string why = "could not leave pipeline mode: " + port_.error_message();
    complete(*req, std::make_exception_ptr(sql_error(errc::protocol_error, why)), {});
    fail_everything(errc::protocol_error, why, true);
    return;
  }
  mode_ = mode::exclusive;
  want_write_ = false;
  complete(*req, nullptr, {});
}

void pipeline_core::end_exclusive() {
  if (mode_ != mode::exclusive) return;
  if (!port_.enter_pipeline_mode()) {
    mode_ = mode::pipeline;
    lost("could not re-enter pipeline mode: " + port_.error_message());
    return;
  }
  mode_ = mode::pipeline;
  resync_tx();
  note_notifications();
  send_waiting();
}

void pipeline_core::fail_everything(errc why, const std::string& message, bool lost) {
  if (mode_ == mode::closed && inflight_.empty() && waiting_.empty()) return;
  mode_ = mode::closed;
  paused_ = false;
  want_write_ = false;
  slice_full_ = false;
  burst_open_ = false;
  skipping_ = false;
  paths_valid_ = false;
  syncs_in_flight_ = 0;
  failed_sql_.clear();
  cancels_in_flight_ = 0;
  cancels_to_start_ = 0;
  auto fail = [&](std::deque<std::unique_ptr<request>>& q, bool sent) {
    while (!q.empty()) {
      std::unique_ptr<request> req = std::move(q.front());
      q.pop_front();
      const std::string sql(req->sql);
      if (req->group) {
        batch_group& g = *req->group;
        if (g.awaited) {
          if (g.commit_sent && lost) {
            g.first_error = std::make_exception_ptr(sql_error(
                errc::commit_unknown,
                "the connection was lost while the batch's COMMIT was on its way: it may or may not have committed: " +
                    message));
          } else {
            g.first_error = std::make_exception_ptr(sql_error(why, message, sql));
          }
          finish_group(g);
        }
        complete(*req, nullptr, {});  // frees its results
        continue;
      }
      if (sent && lost && (req->kind == stmt_kind::commit || req->kind == stmt_kind::chain)) {
        complete(*req,
                 std::make_exception_ptr(sql_error(
                     errc::commit_unknown,
                     "the connection was lost during COMMIT, which may or may not have taken effect: " + message, sql)),
                 {});
        continue;
      }
      complete(*req, std::make_exception_ptr(sql_error(why, message, sql)), {});
    }
  };
  fail(inflight_, true);
  fail(waiting_, false);
}

void pipeline_core::lost(const std::string& message) {
  if (lost_reason_.empty()) lost_reason_ = message;
  fail_everything(errc::connection_lost, message, true);
}

void pipeline_core::close(errc why, const std::string& message) { fail_everything(why, message, false); }

}  // namespace pgq::detail
