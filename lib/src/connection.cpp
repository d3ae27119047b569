#include <pgq/connection.hpp>

#include "detail/driver.hpp"
#include "driver/resolve.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libpq-fe.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace asio = boost::asio;

namespace pgq {
namespace detail {
namespace {

constexpr std::string_view query_canceled = "57014";

std::string trim_message(const char* m) {
  std::string s = m != nullptr ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string conn_error(pg_conn* conn) { return trim_message(PQerrorMessage(conn)); }

bool is_copy_via_client(std::string_view sql) {
  // COPY ... FROM STDIN / TO STDOUT cannot run in pipeline mode (libpq
  // breaks the connection); it has its own calls.
  std::size_t i = 0;
  while (i < sql.size()) {
    if (std::isspace(static_cast<unsigned char>(sql[i])) != 0) {
      ++i;
    } else if (sql.compare(i, 2, "--") == 0) {
      i = sql.find('\n', i);
      if (i == std::string_view::npos) return false;
    } else if (sql.compare(i, 2, "/*") == 0) {
      i = sql.find("*/", i + 2);
      if (i == std::string_view::npos) return false;
      i += 2;
    } else {
      break;
    }
  }
  // Every statement passes here: no allocation, no locale, unless it is a COPY.
  const std::string_view word = "copy";
  if (sql.size() - i <= word.size()) return false;
  for (std::size_t k = 0; k < word.size(); ++k) {
    if ((sql[i + k] | 0x20) != word[k]) return false;
  }
  const char after = sql[i + word.size()];
  if (std::isspace(static_cast<unsigned char>(after)) == 0 && after != '(' && after != '"') return false;
  std::string rest(sql.substr(i));
  for (char& c : rest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return rest.find("stdin") != std::string::npos || rest.find("stdout") != std::string::npos;
}

// Runs server-side cancels off the callers' event loops. PQcancel blocks
// (connect, send, wait for the server to close) with no time limit before
// libpq 17, so each runs on a thread of its own: one stuck on a black-holed
// network holds up no other connection's cancel. At most max_threads run at
// once; later ones queue until a thread is free. Threads end when the queue
// is empty. Never destroyed: a thread may still be stuck at exit.
class cancel_runner {
 public:
  static constexpr std::size_t max_threads = 64;

  static cancel_runner& instance() {
    static cancel_runner* runner = new cancel_runner;
    return *runner;
  }

  void post(std::function<void()> job) {
    std::lock_guard lock(mutex_);
    if (running_ >= max_threads) {
      queue_.push_back(std::move(job));
      return;
    }
    ++running_;
    std::thread([this, job = std::move(job)]() mutable { work(std::move(job)); }).detach();
  }

 private:
  void work(std::function<void()> job) {
    while (true) {
      job();
      std::lock_guard lock(mutex_);
      if (queue_.empty()) {
        --running_;
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
    }
  }

  std::mutex mutex_;
  std::deque<std::function<void()>> queue_;
  std::size_t running_ = 0;
};


std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::optional<std::chrono::milliseconds> parse_seconds(const std::string& s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  // libpq treats 1 as 2 seconds and <= 0 as "no limit".
  if (v <= 0) return std::chrono::milliseconds(0);
  return std::chrono::seconds(v == 1 ? 2 : v);
}

sql_error error_from_result(const pg_result* res, std::string_view statement) {
  diagnostics d;
  auto field = [&](int code) {
    const char* v = PQresultErrorField(res, code);
    return v != nullptr ? std::string(v) : std::string();
  };
  d.severity = field(PG_DIAG_SEVERITY_NONLOCALIZED);
  if (d.severity.empty()) d.severity = field(PG_DIAG_SEVERITY);
  d.sqlstate = field(PG_DIAG_SQLSTATE);
  d.message = field(PG_DIAG_MESSAGE_PRIMARY);
  if (d.message.empty()) d.message = trim_message(PQresultErrorMessage(res));
  d.detail = field(PG_DIAG_MESSAGE_DETAIL);
  d.hint = field(PG_DIAG_MESSAGE_HINT);
  auto to_int = [](const std::string& s) -> std::optional<int> {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc()) return std::nullopt;
    return v;
  };
  d.position = to_int(field(PG_DIAG_STATEMENT_POSITION));
  d.internal_position = to_int(field(PG_DIAG_INTERNAL_POSITION));
  d.internal_query = field(PG_DIAG_INTERNAL_QUERY);
  d.context = field(PG_DIAG_CONTEXT);
  d.schema = field(PG_DIAG_SCHEMA_NAME);
  d.table = field(PG_DIAG_TABLE_NAME);
  d.column = field(PG_DIAG_COLUMN_NAME);
  d.datatype = field(PG_DIAG_DATATYPE_NAME);
  d.constraint = field(PG_DIAG_CONSTRAINT_NAME);
  d.source_file = field(PG_DIAG_SOURCE_FILE);
  d.source_line = field(PG_DIAG_SOURCE_LINE);
  d.source_function = field(PG_DIAG_SOURCE_FUNCTION);
  d.statement = std::string(statement);
  if (d.sqlstate.empty()) {
    // libpq made this error itself (e.g. the connection dropped).
    return sql_error(make_error_code(errc::connection_lost), std::move(d));
  }
  const error_code ec = make_sqlstate_error(d.sqlstate);
  return sql_error(ec, std::move(d));
}

}  // namespace

sql_error make_sql_error(const pg_result* res, std::string_view statement) {
  return error_from_result(res, statement);
}

std::string connection_error_message(pg_conn* conn) { return conn_error(conn); }

void driver::cancel_running() { issue_server_cancel(); }

const statement_cache::entry* statement_cache::find(const std::string& key) {
  auto it = map_.find(key);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  ++hits;
  return &it->second;
}

const std::string& statement_cache::insert(const std::string& key, std::string& evicted) {
  ++misses;
  ++prepared;
  if (map_.size() >= capacity && !lru_.empty()) {
    auto victim = map_.find(lru_.back());
    evicted = std::move(victim->second.name);
    map_.erase(victim);
    lru_.pop_back();
  }
  lru_.push_front(key);
  auto [it, inserted] = map_.emplace(key, entry{"pgq_" + std::to_string(next_++), lru_.begin()});
  (void)inserted;
  return it->second.name;
}

void statement_cache::erase_name(const std::string& name) {
  for (auto it = map_.begin(); it != map_.end(); ++it) {
    if (it->second.name == name) {
      lru_.erase(it->second.lru);
      map_.erase(it);
      return;
    }
  }
}

void statement_cache::describe(const std::string& name, bool binary, bool needs_utc) {
  for (auto& [key, e] : map_) {
    if (e.name == name) {
      e.binary = binary;
      e.needs_utc = needs_utc;
      return;
    }
  }
}

void statement_cache::clear() noexcept {
  map_.clear();
  lru_.clear();
}

request::~request() {
  if (res != nullptr) PQclear(res);
  if (error != nullptr) PQclear(error);
  if (first_error != nullptr) PQclear(first_error);
}

driver::driver(asio::any_io_executor ex)
    : ex_(ex), sock_(ex), resolver_(ex), connect_timer_(ex) {}

driver::~driver() {
  release_socket();
  if (conn_ != nullptr) PQfinish(conn_);
}

void driver::release_socket() noexcept {
  if (sock_.is_open()) {
    error_code ignored;
    sock_.cancel(ignored);
    sock_.release();  // the descriptor is libpq's: never close it
  }
}

void driver::wrap_socket() {
  release_socket();
  const int fd = PQsocket(conn_);
  if (fd >= 0) sock_.assign(fd);
}

asio::awaitable<void> driver::connect(std::string conninfo_text, connect_options opts) {
  if (conn_ != nullptr) close(errc::not_connected);
  conninfo ci = conninfo::parse(conninfo_text);  // throws bad_conninfo

  std::chrono::milliseconds timeout(10000);
  if (opts.connect_timeout) {
    timeout = *opts.connect_timeout;
  } else if (auto v = ci.get("connect_timeout")) {
    auto parsed = parse_seconds(*v);
    if (!parsed) throw sql_error(errc::bad_conninfo, "invalid connect_timeout value: \"" + *v + "\"");
    timeout = *parsed;
  } else if (auto e = env("PGCONNECT_TIMEOUT")) {
    if (auto parsed = parse_seconds(*e)) timeout = *parsed;
  }

  auto self = shared_from_this();
  connect_timed_out_ = false;
  if (timeout.count() > 0) {
    connect_timer_.expires_after(timeout);
    connect_timer_.async_wait([self](const error_code& ec) {
      if (ec) return;
      self->connect_timed_out_ = true;
      self->resolver_.cancel();
      error_code ignored;
      self->sock_.cancel(ignored);
    });
  }
  try {
    co_await connect_steps(ci.to_string(), opts);
  } catch (...) {
    connect_timer_.cancel();
    const bool timed_out = connect_timed_out_;
    release_socket();
    if (conn_ != nullptr) {
      PQfinish(conn_);
      conn_ = nullptr;
    }
    if (timed_out) {
      throw sql_error(errc::timeout, "connection attempt timed out after " +
                                         std::to_string(timeout.count()) + " ms (" +
                                         ci.redacted() + ")");
    }
    throw;
  }
  connect_timer_.cancel();
}

asio::awaitable<void> driver::connect_steps(std::string text, connect_options opts) {
  conninfo ci = conninfo::parse(text);
  auto cs = co_await asio::this_coro::cancellation_state;
  auto rethrow_cancelled = [&](const boost::system::system_error& e) {
    if (cs.cancelled() != asio::cancellation_type::none && !connect_timed_out_) {
      throw sql_error(errc::cancelled, "connection attempt cancelled");
    }
    if (connect_timed_out_) throw sql_error(errc::timeout, "timed out");
    throw e;
  };

  // Resolve host names here, asynchronously, so that libpq never blocks in
  // getaddrinfo: those of the conninfo, the service file and the environment.
  if (opts.resolve_hosts) {
    try {
      ci = co_await resolve_hosts(std::move(ci), resolver_);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) rethrow_cancelled(e);
      throw;
    }
  }

  std::vector<const char*> keys, values;
  for (const auto& [k, v] : ci.entries()) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), 0);
  if (conn_ == nullptr) throw std::bad_alloc();
  if (PQstatus(conn_) == CONNECTION_BAD) throw sql_error(errc::connect_failed, conn_error(conn_));
  farewell_.clear();
  lost_reason_.clear();
  PQsetNoticeReceiver(conn_, &driver::note_notice, this);

  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    wrap_socket();  // libpq may open a new socket at any step
    try {
      co_await sock_.async_wait(st == PGRES_POLLING_READING ? asio::posix::stream_descriptor::wait_read
                                                            : asio::posix::stream_descriptor::wait_write,
                                asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) rethrow_cancelled(e);
      throw;
    }
    if (conn_ == nullptr) throw sql_error(errc::cancelled, "connection closed while connecting");
    st = PQconnectPoll(conn_);
    if (st == PGRES_POLLING_FAILED) throw sql_error(errc::connect_failed, conn_error(conn_));
  }
  wrap_socket();
  if (PQsetnonblocking(conn_, 1) != 0 || PQenterPipelineMode(conn_) != 1) {
    throw sql_error(errc::protocol_error, "could not enter pipeline mode: " + conn_error(conn_));
  }
  cancel_ = std::shared_ptr<pg_cancel>(PQgetCancel(conn_), &PQfreeCancel);
  cache_.clear();
  cache_.capacity = opts.statement_cache_size;
  binary_results_ = opts.binary_results;
  cancel_timeout_ = opts.cancel_timeout;
  open_.store(true, std::memory_order_release);
  arm_read();
}

void driver::note_notice(void* self, const pg_result* res) {
  const char* severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (severity == nullptr) return;
  const std::string_view sv(severity);
  if (sv == "FATAL" || sv == "PANIC") {
    static_cast<driver*>(self)->farewell_ = trim_message(PQresultErrorMessage(res));
  }
}

sql_error driver::not_open_error(std::string_view sql) const {
  if (!lost_reason_.empty()) {
    return sql_error(errc::connection_lost, "the connection was lost: " + lost_reason_, std::string(sql));
  }
  return sql_error(errc::not_connected, "the connection is not open", std::string(sql));
}

void driver::enqueue(std::unique_ptr<request> req, result_handler handler, asio::any_io_executor handler_ex) {
  req->id = next_id_++;
  req->handler_ex = std::move(handler_ex);
  const std::string_view sql = req->sql;
  // Boost 1.81's any_completion_handler move assignment recurses forever
  // (it copies from an lvalue through its converting constructor): swap.
  req->handler.swap(handler);
  if (!is_open()) {
    complete(*req, std::make_exception_ptr(not_open_error(sql)), {});
    return;
  }
  if (is_copy_via_client(sql)) {
    complete(*req, std::make_exception_ptr(sql_error(errc::protocol_error,
                                                     "COPY FROM STDIN / TO STDOUT needs copy_in() / copy_out()",
                                                     std::string(sql))),
             {});
    return;
  }
  start(std::move(req));
}

void driver::enqueue_detached(std::string sql) {
  if (!is_open()) return;
  auto req = std::make_unique<request>();
  req->id = next_id_++;
  req->detached = true;
  req->owned_sql = std::move(sql);
  req->sql = req->owned_sql;
  start(std::move(req));
}

std::vector<std::uint64_t> driver::enqueue_batch(
    const std::vector<std::pair<std::string_view, const param_set*>>& items,
    std::function<void(std::size_t, std::exception_ptr, result)> on_done) {
  std::vector<std::uint64_t> ids;
  ids.reserve(items.size());
  auto shared_done = std::make_shared<std::function<void(std::size_t, std::exception_ptr, result)>>(std::move(on_done));
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto req = std::make_unique<request>();
    req->id = next_id_++;
    req->sql = items[i].first;
    req->params = *items[i].second;
    result_handler h([shared_done, i](std::exception_ptr ep, result r) { (*shared_done)(i, std::move(ep), std::move(r)); });
    req->handler.swap(h);
    ids.push_back(req->id);
    if (!is_open()) {
      complete(*req, std::make_exception_ptr(not_open_error(req->sql)), {});
      continue;
    }
    start(std::move(req));
  }
  return ids;
}

void driver::cancel_ids(const std::vector<std::uint64_t>& ids) {
  for (std::uint64_t id : ids) cancel(id);
}

int driver::transaction_status() const noexcept {
  if (conn_ == nullptr || !is_open()) return PQTRANS_UNKNOWN;
  return PQtransactionStatus(conn_);
}

void driver::start(std::unique_ptr<request> req) {
  if (req->handler) {
    auto slot = asio::get_associated_cancellation_slot(req->handler);
    if (slot.is_connected()) {
    // Cancellation may be emitted from another thread, and the handler must
    // not clear its own slot while running: act on it from our executor.
    slot.assign([self = shared_from_this(), id = req->id](asio::cancellation_type) {
      asio::post(self->ex_, [self, id] { self->cancel(id); });
    });
    }
  }
  if (cancels_in_flight_ > 0 || !waiting_.empty() || exclusive_ || (req->exclusive && !inflight_.empty())) {
    waiting_.push_back(std::move(req));
    return;
  }
  if (req->exclusive) {
    waiting_.push_back(std::move(req));
    grant_exclusive();
    return;
  }
  request& r = *req;
  inflight_.push_back(std::move(req));
  if (send(r)) flush();
}

bool driver::send(request& req) {
  // libpq wants a NUL-terminated statement; reuse one buffer per thread.
  thread_local std::string sql_buffer;
  sql_buffer.assign(req.sql);
  const param_set& p = req.params;
  const int n = p.size();
  boost::container::small_vector<const char*, param_set::inline_count> values(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) values[static_cast<std::size_t>(i)] = p.value(i);
  bool ok = true;
  std::string evicted;
  if (cache_.capacity > 0 && !req.detached && !req.stream) {
    // The same text with other parameter types is another statement.
    thread_local std::string key;
    key.assign(req.sql);
    key.push_back('\0');
    key.append(reinterpret_cast<const char*>(p.types()), static_cast<std::size_t>(n) * sizeof(oid));
    int result_format = 0;
    if (const statement_cache::entry* e = cache_.find(key)) {
      req.statement = e->name;
      // Binary results skip text parsing of numbers and timestamps; the
      // codecs read both formats. timestamptz in binary has no zone, so it
      // is rendered in UTC: only ask for it when the session is in UTC too.
      if (e->binary && binary_results_ && (!e->needs_utc || session_in_utc())) result_format = 1;
    } else {
      req.prepared = cache_.insert(key, evicted);
      req.statement = req.prepared;
      // Parse once under a name, in the same round trip as the first run;
      // Describe tells which result format later runs can use.
      ok = PQsendPrepare(conn_, req.prepared.c_str(), sql_buffer.c_str(), n, p.types()) == 1 &&
           PQsendDescribePrepared(conn_, req.prepared.c_str()) == 1;
      req.described = true;
    }
    ok = ok && PQsendQueryPrepared(conn_, req.statement.c_str(), n, values.data(), p.lengths(), p.formats(),
                                   result_format) == 1;
  } else {
    ok = PQsendQueryParams(conn_, sql_buffer.c_str(), n, p.types(), values.data(), p.lengths(), p.formats(), 0) == 1;
  }
  if (!ok || PQpipelineSync(conn_) != 1) {
    fail_all(errc::connection_lost, conn_error(conn_));
    return false;
  }
  if (!evicted.empty()) send_detached_now("DEALLOCATE " + evicted);
  return true;
}

bool driver::session_in_utc() const noexcept {
  const char* tz = PQparameterStatus(conn_, "TimeZone");
  if (tz == nullptr) return false;
  const std::string_view z(tz);
  return z == "UTC" || z == "Etc/UTC" || z == "GMT" || z == "Etc/GMT" || z == "UCT" || z == "Etc/UCT" ||
         z == "Universal" || z == "Etc/Universal" || z == "Zulu" || z == "Etc/Zulu";
}

void driver::send_detached_now(std::string sql) {
  auto req = std::make_unique<request>();
  req->id = next_id_++;
  req->detached = true;
  req->owned_sql = std::move(sql);
  req->sql = req->owned_sql;
  request& r = *req;
  inflight_.push_back(std::move(req));
  send(r);
}

bool driver::retry(std::unique_ptr<request>& req) {
  if (req->retried) return false;
  // The statement failed, so it changed nothing: in an implicit transaction
  // that rolled back; in a transaction block the block is now failed and the
  // rerun meets 25P02, upon which the first error is reported instead. (The
  // server's transaction state cannot be read here: with other requests in
  // the pipeline libpq only says "active".)
  req->first_error = req->error;
  if (req->res != nullptr) PQclear(req->res);
  req->error = req->res = nullptr;
  req->retried = true;
  req->exposed = false;
  req->stage = 0;
  req->prepare_failed = false;
  req->prepared.clear();
  req->statement.clear();
  req->described = false;
  waiting_.push_front(std::move(req));
  if (cancels_in_flight_ == 0) send_waiting();
  return true;
}

void driver::flush() {
  if (!is_open()) return;
  const int r = PQflush(conn_);
  if (r < 0) {
    fail_all(errc::connection_lost, conn_error(conn_));
    return;
  }
  if (r == 1) arm_write();
  // A flush that could not write everything may have read input to make room;
  // that input no longer makes the socket readable, so look at it now.
  if (r == 1) drain_results();
}

void driver::arm_read() {
  if (reading_ || paused_ || exclusive_ || !is_open()) return;
  reading_ = true;
  sock_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [self = shared_from_this()](const error_code& ec) { self->on_readable(ec); });
}

void driver::arm_write() {
  if (writing_ || !is_open()) return;
  writing_ = true;
  sock_.async_wait(asio::posix::stream_descriptor::wait_write,
                   [self = shared_from_this()](const error_code& ec) { self->on_writable(ec); });
}

void driver::on_readable(const error_code& ec) {
  reading_ = false;
  if (ec || !is_open() || exclusive_) return;  // a COPY reads for itself
  in_io_ = true;
  process_input();
  in_io_ = false;
  deliver_ready();
  // drain_results() stops after a slice of completions, so that their callers
  // free those results before libpq makes the next ones: with 100 requests
  // in flight, holding every result of a read at once grew and trimmed the
  // heap (brk, page faults) on every round trip.
  while (slice_full_ && is_open() && !exclusive_) {
    slice_full_ = false;
    in_io_ = true;
    drain_results();
    in_io_ = false;
    deliver_ready();
  }
}

void driver::process_input() {
  if (PQconsumeInput(conn_) != 1) {
    fail_all(errc::connection_lost, conn_error(conn_));
    return;
  }
  drain_results();
  if (!is_open()) return;
  take_notifications();
  if (PQstatus(conn_) == CONNECTION_BAD) {
    fail_all(errc::connection_lost, conn_error(conn_));
    return;
  }
  arm_read();
}

void driver::on_writable(const error_code& ec) {
  writing_ = false;
  if (ec || !is_open() || exclusive_) return;
  in_io_ = true;
  flush();
  in_io_ = false;
  deliver_ready();
}

void driver::deliver_ready() {
  if (ready_.empty()) return;
  std::vector<ready_completion> items;
  items.swap(ready_);
  // Callers may add completions while these run; afterwards the emptied
  // vector goes back, so that its capacity serves the next round trip.
  struct give_back {
    std::vector<ready_completion>& items;
    std::vector<ready_completion>& ready;
    ~give_back() {
      items.clear();
      if (ready.empty()) ready.swap(items);
    }
  } back{items, ready_};
  for (auto& c : items) {
    asio::any_completion_executor erased;
    if (!c.handler_ex) erased = asio::get_associated_executor(c.handler, ex_);
    auto call = [h = std::move(c.handler), ep = std::move(c.error), res = std::move(c.res)]() mutable {
      std::move(h)(std::move(ep), std::move(res));
    };
    // dispatch: runs the caller now when its executor is running on this
    // thread (the usual case), else queues it there.
    if (c.handler_ex) {
      asio::dispatch(c.handler_ex, std::move(call));
    } else {
      asio::dispatch(ex_, asio::bind_executor(std::move(erased), std::move(call)));
    }
  }
}

void driver::drain_results() {
  int nulls = 0;
  while (is_open() && !inflight_.empty() && !paused_) {
    if (in_io_ && ready_.size() >= completion_slice) {
      slice_full_ = true;  // on_readable() delivers these, then comes back
      break;
    }
    request& current = *inflight_.front();
    if (current.stream && !current.single_row_set) {
      // Before libpq parses any of this statement's rows (PQisBusy would):
      // its results then come one row each.
      current.single_row_set = true;
      PQsetSingleRowMode(conn_);
    }
    if (PQisBusy(conn_) != 0) break;
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) {
      // One NULL ends a statement's results; a second in a row means libpq
      // has nothing more until more input arrives.
      if (++nulls > 1) break;
      ++inflight_.front()->stage;
      continue;
    }
    nulls = 0;
    request& front = *inflight_.front();
    switch (PQresultStatus(r)) {
      case PGRES_PIPELINE_SYNC:
        PQclear(r);
        complete_front();
        break;
      case PGRES_FATAL_ERROR:
      case PGRES_PIPELINE_ABORTED:
      case PGRES_BAD_RESPONSE:
        if (front.stage == 0 && !front.prepared.empty()) front.prepare_failed = true;
        if (front.error == nullptr) {
          front.error = r;
        } else {
          PQclear(r);
        }
        if (PQstatus(conn_) == CONNECTION_BAD) {
          fail_all(errc::connection_lost, conn_error(conn_));
          return;
        }
        break;
      case PGRES_SINGLE_TUPLE:
        if (front.stream) {
          stream_state& st = *front.stream;
          if (st.abandoned) {
            PQclear(r);
            break;
          }
          st.rows.emplace_back(r);
          wake_stream(st);
          // Leave the rest in the socket until the consumer catches up: the
          // server waits, memory stays flat.
          if (st.rows.size() >= stream_buffer_rows) paused_ = true;
          break;
        }
        [[fallthrough]];
      default:
        if (front.described && front.stage == 1) {
          note_description(front, r);
          PQclear(r);
          break;
        }
        if (front.stream && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
            !front.stream->abandoned) {
          // Single-row mode was refused: the rows came all at once.
          front.stream->rows.emplace_back(r);
          break;
        }
        if (front.res != nullptr) PQclear(front.res);
        front.res = r;
        break;
    }
  }
  after_drain();
}

void driver::after_drain() {
  // A COPY waiting for its turn starts once the pipeline is empty.
  if (is_open() && inflight_.empty() && !waiting_.empty() && !exclusive_ && cancels_in_flight_ == 0)
    send_waiting();
}

void driver::note_description(const request& req, const pg_result* d) {
  const int columns = PQnfields(d);
  bool binary = columns > 0;
  bool needs_utc = false;
  for (int c = 0; c < columns && binary; ++c) {
    const oid t = PQftype(d, c);
    binary = binary_renderable(t);
    needs_utc = needs_utc || t == oids::timestamptz || t == 1185;  // timestamptz[]
  }
  cache_.describe(req.prepared, binary, needs_utc);
}

void driver::complete_front() {
  std::unique_ptr<request> req = std::move(inflight_.front());
  inflight_.pop_front();
  if (req->prepare_failed) cache_.erase_name(req->prepared);  // it never existed
  if (req->res != nullptr && cache_.size() > 0) {
    // The caller's own DISCARD ALL / DEALLOCATE ALL dropped our statements.
    const std::string_view tag = PQcmdStatus(req->res);
    if (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL") cache_.clear();
  }
  if (req->abandoned()) return;  // cancelled by its caller: drop the result
  if (req->stream && req->error == nullptr) {
    pg_result* res = req->res;
    req->res = nullptr;
    complete(*req, nullptr, result(res));
    return;
  }
  if (req->error != nullptr) {
    const char* raw_state = PQresultErrorField(req->error, PG_DIAG_SQLSTATE);
    const std::string_view state = raw_state != nullptr ? raw_state : "";
    if (req->exposed && state == query_canceled && !req->stream && retry(req)) {
      // A cancel aimed at another request hit this one: it ran again.
      return;
    }
    if (!req->statement.empty() && !req->prepare_failed && (state == "0A000" || state == "26000")) {
      // "cached plan must not change result type" after a schema change, or
      // the statement is gone (DISCARD ALL sent behind our back): prepare
      // again and rerun once, when no transaction block makes that unsafe.
      ++cache_.invalidations;
      if (state == "26000") {
        cache_.clear();
      } else {
        cache_.erase_name(req->statement);
        send_detached_now("DEALLOCATE " + req->statement);
      }
      if (retry(req)) return;
    }
    if (req->first_error != nullptr && state == "25P02") {
      // The rerun found the transaction block failed: report why it failed.
      complete(*req, std::make_exception_ptr(error_from_result(req->first_error, req->sql)), {});
      return;
    }
    if (PQresultStatus(req->error) == PGRES_PIPELINE_ABORTED) {
      complete(*req, std::make_exception_ptr(sql_error(errc::protocol_error,
                                                       "statement skipped: the pipeline was aborted",
                                                       std::string(req->sql))),
               {});
      return;
    }
    complete(*req, std::make_exception_ptr(error_from_result(req->error, req->sql)), {});
    return;
  }
  pg_result* res = req->res;
  req->res = nullptr;
  complete(*req, nullptr, result(res));
}

void driver::complete(request& req, std::exception_ptr ep, result res) {
  if (req.stream) {
    stream_state& st = *req.stream;
    if (st.done) return;
    st.done = true;
    st.error = std::move(ep);
    st.final = std::move(res);
    wake_stream(st);
    return;
  }
  if (req.exclusive) {
    void_handler h = std::move(req.exclusive);
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) slot.clear();
    auto ex = asio::get_associated_executor(h, ex_);
    asio::post(ex_, asio::bind_executor(ex, [h = std::move(h), ep = std::move(ep)]() mutable { std::move(h)(ep); }));
    return;
  }
  if (!req.handler) return;
  auto slot = asio::get_associated_cancellation_slot(req.handler);
  if (slot.is_connected()) slot.clear();
  result_handler h = std::move(req.handler);
  if (in_io_) {
    ready_.push_back(ready_completion{std::move(h), std::move(req.handler_ex), std::move(ep), std::move(res)});
    return;
  }
  // Post, never call inline: this may run inside the caller's own request
  // (an initiating function must not complete), or inside the result loop.
  asio::any_completion_executor erased;
  if (!req.handler_ex) erased = asio::get_associated_executor(h, ex_);
  auto call = [h = std::move(h), ep = std::move(ep), res = std::move(res)]() mutable {
    std::move(h)(std::move(ep), std::move(res));
  };
  if (req.handler_ex) {
    asio::post(req.handler_ex, std::move(call));
  } else {
    asio::post(ex_, asio::bind_executor(std::move(erased), std::move(call)));
  }
}

void driver::cancel(std::uint64_t id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == id) {
      std::unique_ptr<request> req = std::move(*it);
      waiting_.erase(it);
      complete(*req, std::make_exception_ptr(sql_error(errc::cancelled, "statement cancelled before it was sent",
                                                       std::string(req->sql))),
               {});
      return;
    }
  }
  for (std::size_t i = 0; i < inflight_.size(); ++i) {
    request& req = *inflight_[i];
    if (req.id != id || req.abandoned()) continue;
    complete(req, std::make_exception_ptr(sql_error(errc::cancelled, "statement cancelled", std::string(req.sql))),
             {});
    // Only the statement the server is running now is cancelled there; one
    // queued behind it runs and its result is dropped.
    if (i == 0) issue_server_cancel();
    return;
  }
}

// One server-side cancel on its way, shared by the driver and the thread
// that sends it. Once `abandoned` (the driver stopped waiting), the thread
// touches nothing but the ticket: the driver and its io_context may be gone.
struct cancel_ticket {
  std::mutex mutex;
  bool abandoned = false;  // under mutex
  // A tracked executor: the caller's io_context::run() does not return (and
  // the context is not destroyed under the thread) while the cancel is on its
  // way. Under mutex; reset when the driver is done with the cancel.
  asio::any_io_executor work;
  std::shared_ptr<driver> owner;  // driver's executor only
};

void driver::issue_server_cancel() {
  if (!cancel_) return;
  ++cancels_in_flight_;
  for (std::size_t i = 1; i < inflight_.size(); ++i) inflight_[i]->exposed = true;
  auto ticket = std::make_shared<cancel_ticket>();
  ticket->work = asio::prefer(ex_, asio::execution::outstanding_work.tracked);
  ticket->owner = shared_from_this();
  pending_cancels_.emplace_back(ticket, ex_);
  if (cancel_timeout_.count() > 0) {
    // A cancel that does not arrive in time (a black-holed network) is not
    // waited for any longer: requests queued behind it go out.
    auto& timer = pending_cancels_.back().second;
    timer.expires_after(cancel_timeout_);
    timer.async_wait([ticket](const error_code& ec) {
      if (ec || !ticket->owner) return;
      const std::shared_ptr<driver> d = ticket->owner;  // settling the ticket drops its reference
      d->on_server_cancel_done(ticket);
    });
  }
  cancel_runner::instance().post([c = cancel_, ticket] {
    char errbuf[256];
    PQcancel(c.get(), errbuf, sizeof errbuf);
    std::lock_guard lock(ticket->mutex);
    if (ticket->abandoned) return;
    asio::post(ticket->work, [ticket] {
      if (!ticket->owner) return;  // timed out meanwhile
      const std::shared_ptr<driver> d = ticket->owner;
      d->on_server_cancel_done(ticket);
    });
  });
}

void driver::on_server_cancel_done(const std::shared_ptr<cancel_ticket>& ticket) {
  settle_cancel(ticket);
  if (--cancels_in_flight_ == 0) send_waiting();
}

void driver::settle_cancel(const std::shared_ptr<cancel_ticket>& ticket) noexcept {
  for (auto it = pending_cancels_.begin(); it != pending_cancels_.end(); ++it) {
    if (it->first == ticket) {
      it->second.cancel();
      pending_cancels_.erase(it);
      break;
    }
  }
  asio::any_io_executor work;
  {
    std::lock_guard lock(ticket->mutex);
    ticket->abandoned = true;
    work.swap(ticket->work);
  }
  ticket->owner.reset();
}

void driver::send_waiting() {
  bool sent = false;
  while (is_open() && !waiting_.empty() && cancels_in_flight_ == 0 && !exclusive_) {
    if (waiting_.front()->exclusive) {
      if (inflight_.empty()) grant_exclusive();
      break;
    }
    std::unique_ptr<request> req = std::move(waiting_.front());
    waiting_.pop_front();
    request& r = *req;
    inflight_.push_back(std::move(req));
    if (!send(r)) return;
    sent = true;
  }
  if (sent) flush();
}

void driver::enqueue_stream(std::string sql, param_set params, std::shared_ptr<stream_state> st) {
  auto req = std::make_unique<request>();
  req->id = next_id_++;
  st->id = req->id;
  req->owned_sql = std::move(sql);  // the stream may outlive the caller's text
  req->sql = req->owned_sql;
  req->params = std::move(params);
  req->stream = st;
  if (!is_open()) {
    complete(*req, std::make_exception_ptr(not_open_error(req->owned_sql)), {});
    return;
  }
  if (is_copy_via_client(req->sql)) {
    complete(*req, std::make_exception_ptr(sql_error(errc::protocol_error,
                                                     "COPY FROM STDIN / TO STDOUT needs copy_in() / copy_out()",
                                                     req->owned_sql)),
             {});
    return;
  }
  start(std::move(req));
}

void driver::wake_stream(stream_state& st) {
  if (!st.waiter || (st.rows.empty() && !st.done)) return;
  rows_handler h = std::move(st.waiter);
  auto slot = asio::get_associated_cancellation_slot(h);
  if (slot.is_connected()) slot.clear();
  std::vector<result> rows;
  rows.swap(st.rows);
  // Rows before an error first: the error comes with the next fetch.
  const bool error_now = st.done && st.error && rows.empty();
  std::exception_ptr ep = error_now ? st.error : nullptr;
  const bool done = st.done && (!st.error || error_now);
  auto ex = asio::get_associated_executor(h, ex_);
  asio::post(ex_, asio::bind_executor(ex, [h = std::move(h), ep, rows = std::move(rows), done]() mutable {
    std::move(h)(ep, std::move(rows), done);
  }));
}

void driver::stream_fetch(const std::shared_ptr<stream_state>& st, rows_handler h) {
  if (st->waiter) {
    auto ex = asio::get_associated_executor(h, ex_);
    asio::post(ex_, asio::bind_executor(ex, [h = std::move(h)]() mutable {
      std::move(h)(std::make_exception_ptr(sql_error(errc::protocol_error, "a stream is read by one task at a time")),
                   std::vector<result>{}, false);
    }));
    return;
  }
  st->waiter.swap(h);
  auto slot = asio::get_associated_cancellation_slot(st->waiter);
  if (slot.is_connected()) {
    slot.assign([self = shared_from_this(), st](asio::cancellation_type) {
      asio::post(self->ex_, [self, st] {
        if (!st->waiter) return;
        self->stream_abandon(st);
      });
    });
  }
  wake_stream(*st);
  if (paused_) resume_reading();
}

void driver::resume_reading() {
  paused_ = false;
  drain_results();
  if (!paused_) arm_read();
}

void driver::stream_abandon(const std::shared_ptr<stream_state>& st) {
  if (st->abandoned) return;
  st->abandoned = true;
  st->rows.clear();
  if (st->waiter) {
    rows_handler h = std::move(st->waiter);
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) slot.clear();
    auto ex = asio::get_associated_executor(h, ex_);
    asio::post(ex_, asio::bind_executor(ex, [h = std::move(h)]() mutable {
      std::move(h)(std::make_exception_ptr(sql_error(errc::cancelled, "stream cancelled")), std::vector<result>{},
                   true);
    }));
  }
  if (st->done) return;
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == st->id) {
      waiting_.erase(it);
      return;
    }
  }
  // The statement the server runs now is cancelled there; one queued behind
  // others runs and its rows are dropped as they come.
  if (!inflight_.empty() && inflight_.front()->id == st->id) issue_server_cancel();
  if (paused_) resume_reading();
}

void driver::enqueue_exclusive(std::uint64_t& id, void_handler h) {
  auto req = std::make_unique<request>();
  req->id = next_id_++;
  id = req->id;
  req->exclusive.swap(h);
  auto slot = asio::get_associated_cancellation_slot(req->exclusive);
  if (slot.is_connected()) {
    slot.assign([self = shared_from_this(), id = req->id](asio::cancellation_type) {
      asio::post(self->ex_, [self, id] { self->cancel(id); });
    });
  }
  if (!is_open()) {
    complete(*req, std::make_exception_ptr(sql_error(errc::not_connected, "the connection is not open")), {});
    return;
  }
  start(std::move(req));
}

void driver::grant_exclusive() {
  std::unique_ptr<request> req = std::move(waiting_.front());
  waiting_.pop_front();
  if (PQexitPipelineMode(conn_) != 1) {
    const std::string why = "could not leave pipeline mode: " + conn_error(conn_);
    complete(*req, std::make_exception_ptr(sql_error(errc::protocol_error, why)), {});
    fail_all(errc::protocol_error, why);
    return;
  }
  exclusive_ = true;
  complete(*req, nullptr, {});
}

void driver::end_exclusive() noexcept {
  if (!exclusive_) return;
  exclusive_ = false;
  if (!is_open() || conn_ == nullptr) return;
  if (PQenterPipelineMode(conn_) != 1) {
    fail_all(errc::protocol_error, "could not re-enter pipeline mode: " + conn_error(conn_));
    return;
  }
  try {
    take_notifications();
    arm_read();
    send_waiting();
  } catch (...) {
    fail_all(errc::protocol_error, "out of memory");
  }
}

void driver::take_notifications() {
  if (conn_ == nullptr) return;
  while (PGnotify* n = PQnotifies(conn_)) {
    pending_notification p{n->relname != nullptr ? n->relname : "", n->extra != nullptr ? n->extra : "",
                           n->be_pid};
    PQfreemem(n);
    if (notifications_.size() >= max_pending_notifications) {
      notifications_.pop_front();
      ++notifications_dropped_;
    }
    notifications_.push_back(std::move(p));
  }
  while (!notifications_.empty() && !notification_waiters_.empty()) {
    notification_handler h = std::move(notification_waiters_.front().second);
    notification_waiters_.pop_front();
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) slot.clear();
    auto ex = asio::get_associated_executor(h, ex_);
    asio::post(ex_, asio::bind_executor(ex, [h = std::move(h), n = std::move(notifications_.front())]() mutable {
      std::move(h)(nullptr, std::move(n));
    }));
    notifications_.pop_front();
  }
}

void driver::next_notification(notification_handler h) {
  if (!is_open() && notifications_.empty()) {
    auto ex = asio::get_associated_executor(h, ex_);
    asio::post(ex_, asio::bind_executor(ex, [h = std::move(h)]() mutable {
      std::move(h)(std::make_exception_ptr(sql_error(errc::not_connected, "the connection is not open")),
                   pending_notification{});
    }));
    return;
  }
  const std::uint64_t id = next_waiter_++;
  auto slot = asio::get_associated_cancellation_slot(h);
  if (slot.is_connected()) {
    slot.assign([self = shared_from_this(), id](asio::cancellation_type) {
      asio::post(self->ex_, [self, id] {
        auto& q = self->notification_waiters_;
        for (auto it = q.begin(); it != q.end(); ++it) {
          if (it->first != id) continue;
          notification_handler h = std::move(it->second);
          q.erase(it);
          auto ex = asio::get_associated_executor(h, self->ex_);
          asio::post(self->ex_, asio::bind_executor(ex, [h = std::move(h)]() mutable {
            std::move(h)(std::make_exception_ptr(sql_error(errc::cancelled, "wait for a notification cancelled")),
                         pending_notification{});
          }));
          return;
        }
      });
    });
  }
  notification_waiters_.emplace_back(id, std::move(h));
  take_notifications();
}

void driver::fail_all(errc why, const std::string& given) noexcept {
  open_.store(false, std::memory_order_release);
  std::string message = given;
  if (why == errc::connection_lost) {
    try {
      // The server's own reason first: "terminating connection due to
      // idle-in-transaction timeout" says more than "server closed the
      // connection unexpectedly".
      if (!farewell_.empty() && message.find(farewell_) == std::string::npos) {
        message = farewell_ + " (" + message + ")";
      }
      if (lost_reason_.empty()) lost_reason_ = message;
    } catch (...) {
      // Out of memory: report libpq's message alone.
    }
  }
  auto fail = [&](std::deque<std::unique_ptr<request>>& q) {
    while (!q.empty()) {
      std::unique_ptr<request> req = std::move(q.front());
      q.pop_front();
      try {
        complete(*req, std::make_exception_ptr(sql_error(why, message, std::string(req->sql))), {});
      } catch (...) {
        // Out of memory while failing: the handler is destroyed with req.
      }
    }
  };
  fail(inflight_);
  fail(waiting_);
  auto waiters = std::move(notification_waiters_);
  notification_waiters_.clear();
  for (auto& [id, h] : waiters) {
    try {
      auto ex = asio::get_associated_executor(h, ex_);
      asio::post(ex_, asio::bind_executor(ex, [h = std::move(h), why, message]() mutable {
        std::move(h)(std::make_exception_ptr(sql_error(why, message)), pending_notification{});
      }));
    } catch (...) {
    }
  }
  release_socket();
  reading_ = writing_ = false;
  paused_ = false;
}

void driver::close(errc why) noexcept {
  const bool was_open = conn_ != nullptr;
  fail_all(why, "the connection was closed");
  connect_timer_.cancel();
  resolver_.cancel();
  if (was_open) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  cancel_.reset();
  // Cancels still on their way concern a session that is gone.
  while (!pending_cancels_.empty()) {
    auto ticket = pending_cancels_.front().first;
    settle_cancel(ticket);
  }
  cancels_in_flight_ = 0;
}

}  // namespace detail

// Out of line: GCC 12 inlines the small_vector moves into coroutine frames
// and then warns (-Wstringop-overread) about sizes it cannot know.
batch& batch::add_params(std::string sql, detail::param_set params) {
  items_.push_back(item{std::move(sql), std::move(params)});
  return *this;
}

connection::connection(executor_type ex) : drv_(std::make_shared<detail::driver>(ex)) {}

connection::~connection() {
  if (drv_) drv_->close(errc::not_connected);
}

connection::connection(connection&&) noexcept = default;

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    if (drv_) drv_->close(errc::not_connected);
    drv_ = std::move(other.drv_);
  }
  return *this;
}

connection::executor_type connection::get_executor() const noexcept { return drv_->get_executor(); }

asio::awaitable<void> connection::connect(std::string_view conninfo, connect_options opts) {
  auto d = drv_;  // keeps the driver alive across the suspension
  co_await d->connect(std::string(conninfo), opts);
}

namespace {
struct initiate_query {
  std::shared_ptr<detail::driver> drv;
  template <class Handler>
  void operator()(Handler&& h, std::unique_ptr<detail::request> req) {
    asio::any_io_executor handler_ex;
    using handler_executor = asio::associated_executor_t<std::decay_t<Handler>, asio::any_io_executor>;
    if constexpr (std::is_convertible_v<handler_executor, asio::any_io_executor>) {
      handler_ex = asio::get_associated_executor(h, drv->get_executor());
    }
    // The driver's state belongs to its executor: run there (inline when the
    // caller already is).
    asio::dispatch(drv->get_executor(), [d = drv, r = std::move(req), hex = std::move(handler_ex),
                                         h = detail::result_handler(std::forward<Handler>(h))]() mutable {
      d->enqueue(std::move(r), std::move(h), std::move(hex));
    });
  }
};
}  // namespace

asio::awaitable<result> connection::query_params(std::string_view sql, detail::param_set params) {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from", std::string(sql));
  // One allocation for the request, which the parameters move into once.
  auto req = std::make_unique<detail::request>();
  req->sql = sql;
  req->params = std::move(params);
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, result)>(
      initiate_query{drv_}, asio::use_awaitable, std::move(req));
}

namespace {

// What a batch collects while its statements complete.
struct batch_state {
  std::vector<result> results;
  std::exception_ptr first_error;
  std::size_t remaining = 0;
  std::size_t offset = 0;  // 1 when a BEGIN goes first
  std::size_t statements = 0;
  asio::any_completion_handler<void(std::exception_ptr, std::vector<result>)> handler;
  std::vector<std::uint64_t> ids;
};

void finish_batch(const std::shared_ptr<batch_state>& st, const asio::any_io_executor& fallback) {
  auto h = std::move(st->handler);
  if (!h) return;
  auto slot = asio::get_associated_cancellation_slot(h);
  if (slot.is_connected()) slot.clear();
  auto ex = asio::get_associated_executor(h, fallback);
  asio::post(fallback, asio::bind_executor(ex, [h = std::move(h), ep = st->first_error,
                                                res = std::move(st->results)]() mutable {
    std::move(h)(ep, std::move(res));
  }));
}

struct initiate_batch {
  std::shared_ptr<detail::driver> drv;
  template <class Handler>
  void operator()(Handler&& handler, std::vector<std::pair<std::string_view, const detail::param_set*>> items,
                  bool atomic) {
    auto st = std::make_shared<batch_state>();
    asio::any_completion_handler<void(std::exception_ptr, std::vector<result>)> h(std::forward<Handler>(handler));
    st->handler.swap(h);  // not operator=: it recurses in Boost 1.81
    asio::dispatch(drv->get_executor(), [d = drv, st, items = std::move(items), atomic]() mutable {
      static const detail::param_set no_params;
      const int tx = d->transaction_status();
      // Wrap in BEGIN/COMMIT unless a transaction block already holds it.
      const bool wrap = atomic && tx != PQTRANS_INTRANS && tx != PQTRANS_INERROR;
      if (wrap) {
        items.insert(items.begin(), {std::string_view("BEGIN"), &no_params});
        items.emplace_back(std::string_view("COMMIT"), &no_params);
        st->offset = 1;
      }
      st->statements = items.size() - (wrap ? 2 : 0);
      st->results.resize(st->statements);
      st->remaining = items.size();
      if (items.empty()) {
        finish_batch(st, d->get_executor());
        return;
      }
      auto ex = d->get_executor();
      auto on_done = [st, ex, wrap, total = items.size()](std::size_t i, std::exception_ptr ep, result r) {
        const bool is_statement = !wrap || (i != 0 && i + 1 != total);
        if (is_statement) {
          if (ep && !st->first_error) {
            try {
              std::rethrow_exception(ep);
            } catch (const sql_error& e) {
              diagnostics diag = e.diag();
              diag.message = "statement " + std::to_string(i - st->offset + 1) + " of " +
                             std::to_string(st->statements) + " in the batch: " + diag.message;
              st->first_error = std::make_exception_ptr(sql_error(e.code(), std::move(diag)));
            } catch (...) {
              st->first_error = std::current_exception();
            }
          } else if (!ep) {
            st->results[i - st->offset] = std::move(r);
          }
        } else if (ep && !st->first_error) {
          st->first_error = ep;  // BEGIN or COMMIT itself failed
        }
        if (--st->remaining == 0) finish_batch(st, ex);
      };
      auto slot = asio::get_associated_cancellation_slot(st->handler);
      st->ids = d->enqueue_batch(items, on_done);
      if (slot.is_connected()) {
        slot.assign([d, st, wrap](asio::cancellation_type) {
          asio::post(d->get_executor(), [d, st, wrap] {
            d->cancel_ids(st->ids);
            // The COMMIT may have been dropped with the rest: do not leave
            // the connection inside the batch's transaction.
            if (wrap) d->enqueue_detached("ROLLBACK");
          });
        });
      }
    });
  }
};

}  // namespace

asio::awaitable<std::vector<result>> connection::run_batch(const batch& b, bool atomic) {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from");
  std::vector<std::pair<std::string_view, const detail::param_set*>> items;
  items.reserve(b.items_.size());
  for (const auto& it : b.items_) items.emplace_back(it.sql, &it.params);
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, std::vector<result>)>(
      initiate_batch{drv_}, asio::use_awaitable, std::move(items), atomic);
}

asio::awaitable<std::uint64_t> connection::execute_params(std::string_view sql, detail::param_set params) {
  result r = co_await query_params(sql, std::move(params));
  co_return r.rows_affected();
}

bool connection::is_open() const noexcept { return drv_ && drv_->is_open(); }

void connection::close() noexcept {
  if (drv_) drv_->close(errc::not_connected);
}

int connection::backend_pid() const noexcept {
  return is_open() ? PQbackendPID(drv_->native_handle()) : 0;
}

int connection::server_version() const noexcept {
  return is_open() ? PQserverVersion(drv_->native_handle()) : 0;
}

connection_stats connection::stats() const noexcept {
  connection_stats s;
  if (!drv_) return s;
  const auto& c = drv_->cache();
  s.statements_prepared = c.prepared;
  s.cache_hits = c.hits;
  s.cache_misses = c.misses;
  s.cache_invalidations = c.invalidations;
  s.cached_statements = c.size();
  return s;
}

std::size_t connection::pending_requests() const noexcept { return drv_ ? drv_->pending() : 0; }

tx_status connection::transaction_status() const noexcept {
  if (!drv_) return tx_status::unknown;
  if (drv_->pending() > 0) return tx_status::active;
  switch (drv_->transaction_status()) {
    case PQTRANS_IDLE: return tx_status::idle;
    case PQTRANS_ACTIVE: return tx_status::active;
    case PQTRANS_INTRANS: return tx_status::in_transaction;
    case PQTRANS_INERROR: return tx_status::in_error;
    default: return tx_status::unknown;
  }
}

void connection::send_detached(std::string sql) noexcept {
  if (!drv_) return;
  try {
    asio::dispatch(drv_->get_executor(), [d = drv_, s = std::move(sql)]() mutable { d->enqueue_detached(std::move(s)); });
  } catch (...) {
    // Out of memory: the pool's reset still rolls back before reuse.
  }
}

pg_conn* connection::native_handle() const noexcept { return drv_ ? drv_->native_handle() : nullptr; }

}  // namespace pgq
