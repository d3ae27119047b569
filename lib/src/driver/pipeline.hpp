// The per-connection pipeline state machine: it decides, it does no I/O.
//
// It owns the requests (waiting and in flight), the sync accounting, the
// transaction state the server will be in, retries, statement-cache
// invalidation, cancel decisions and the COPY hand-over. It reaches libpq only
// through `pq_port` (tests script a fake one) and never touches a socket, a
// timer or an executor: events come in as calls (a request arrived, the
// socket is readable or writable, a caller cancelled, a server-side cancel
// finished, the connection was lost), and what must happen next comes out as
// actions the Asio driver performs (complete these callers, wait for read or
// write, cancel on the server, the connection is closed).
//
// The rules it keeps (each a unit test, and the invariants of the randomized
// model test in tests/unit/test_pipeline_core.cpp):
//  1. Every request completes exactly once, and requests complete in the
//     order they were sent.
//  2. A retry (a cached plan the server dropped, or a cancel meant for
//     another request) happens only where it is invisible: outside a
//     transaction block, and when nothing was sent after the request.
//     Otherwise the request (and an atomic batch as a whole) fails with the
//     server's error. Nothing is re-sent behind a COMMIT.
//  3. The transaction state is tracked from what was sent and how it ended,
//     never read from a busy connection; an atomic batch decides whether to
//     add BEGIN/COMMIT only when that state is certain.
//  4. COMMIT answered with the tag ROLLBACK is an error. A COMMIT whose
//     outcome is not known (cancelled or lost after it was sent) is reported
//     as commit_unknown, never as cancelled. A COMMIT cancelled before it was
//     sent becomes a ROLLBACK; a ROLLBACK cancelled still runs; a BEGIN
//     cancelled after it was sent is followed by a ROLLBACK.
//  5. A caller told "cancelled" is never completed again; the request stops
//     referring to anything the caller owned.
//  6. A result status the request did not ask for (COPY) is a protocol
//     error for that request; the COPY is ended and the loop goes on.
//  7. A cancelled request is cancelled on the server when it is the one the
//     server runs (at once, or when the requests before it are done), and
//     again, after a pause, for as long as it still runs once a cancel was
//     done (the server ignores a cancel that arrives between the messages
//     of a request). A statement sharing its burst's Sync (rule 11) is not
//     known to run until its burst's results come (the server sends them at
//     the Sync): cancelled behind others of the same transaction block, it
//     is cancelled on the server at once, which may hit one of those (they
//     fail the block anyway: the caller cancelled one of its statements).
//  8. A request ends with its own Sync, which keeps it isolated from the
//     others' errors, unless rule 11 lets it share one. With a libpq that can
//     queue a Sync without flushing (PQsendPipelineSync, libpq 17), what a
//     burst of requests queued is written once, when the driver has nothing
//     more to send (end_of_burst(), or the end of a read); with
//     PQpipelineSync (libpq 15) each Sync writes what was queued before it,
//     so independent requests cost one write each there.
//  9. A stream asks for chunks of rows (PQsetChunkedRowsMode, libpq 17)
//     when libpq has it and the chunk size is above 1, single rows
//     otherwise; reading pauses once the rows buffered reach
//     stream_buffer_rows, however they came; the closing result carries
//     the command tag (libpq puts it on the last chunk).
// 10. A statement evicted from the cache (or gone stale) is closed with a
//     protocol Close (PQsendClosePrepared, libpq 17) when libpq has it, with
//     `DEALLOCATE` otherwise; either is sent after the request that evicted
//     it, on its own Sync (a burst's shared Sync, rule 11, goes before it).
// 11. One Sync per burst where isolation is not needed. A statement of kind
//     other or begin, sent as a query (not a stream, COPY, detached or
//     exclusive request), is sent without a Sync of its own when, whatever
//     the outcome of everything sent before it, it will run inside a
//     transaction block or be skipped after an error earlier in its burst
//     (an error there fails the block anyway: there is nothing to isolate).
//     The burst's one Sync is queued when anything is written (end_of_burst(),
//     the end of a read, a cancel, a full buffer) and before any request
//     that needs a Sync of its own: transaction control other than BEGIN
//     (COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO, AND CHAIN, PREPARE
//     TRANSACTION: they must run, never be skipped), a stream, a detached
//     statement, a protocol Close, a statement that may run outside a block.
//     Such a statement completes at the end of its own results (the NULL
//     libpq returns after them), not at a Sync; one skipped because an
//     earlier statement of its burst failed (PGRES_PIPELINE_ABORTED) fails
//     with 25P02 naming the statement that failed first. It is never
//     retried (rule 2 needs its own Sync), and a server cancel meant for it
//     may fail the block (the rest of the burst then reports 25P02).
// 12. A statement's first run on a connection (with the statement cache and
//     binary results on, outside a batch) is prepared and described on its own
//     Sync first (after a burst's Sync: rule 11); its Execute is sent when the
//     Describe is back, in binary when every column can be read in binary, so
//     that even a first run returns records with their field types (to_json()
//     of ROW(1,'a') gives {"f1":1,"f2":"a"}). What is behind it waits that one
//     round trip. A Parse that fails is the statement's error: it is not sent
//     again.
#pragma once

#include "driver/statement_cache.hpp"

#include <pgq/config.hpp>
#include <pgq/detail/params.hpp>
#include <pgq/error.hpp>
#include <pgq/result.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct pg_result;

namespace pgq::detail {

using result_handler = boost::asio::any_completion_handler<void(std::exception_ptr, result)>;
using batch_handler = boost::asio::any_completion_handler<void(std::exception_ptr, std::vector<result>)>;
using void_handler = boost::asio::any_completion_handler<void(std::exception_ptr)>;
using rows_handler = boost::asio::any_completion_handler<void(std::exception_ptr, std::vector<result>, bool)>;

/// What a statement does to the transaction state, from its text.
enum class stmt_kind : std::uint8_t {
  other,
  begin,        // BEGIN, START TRANSACTION
  commit,       // COMMIT, END
  rollback,     // ROLLBACK, ABORT
  rollback_to,  // ROLLBACK TO SAVEPOINT
  savepoint,    // SAVEPOINT
  release,      // RELEASE SAVEPOINT
  chain,        // COMMIT/ROLLBACK AND CHAIN
  prepare_tx,   // PREPARE TRANSACTION
};
stmt_kind classify_statement(std::string_view sql) noexcept;
/// The statement's first word, lower case (at most 15 letters), after blanks,
/// comments and empty statements, as classify_statement() reads it; empty
/// when it starts with something else.
std::string_view first_keyword(std::string_view sql, char (&buf)[16]) noexcept;
/// True for COPY ... FROM STDIN / TO STDOUT (a first check; the result
/// status is what decides).
bool is_copy_via_client(std::string_view sql);

/// Transaction states, as bits so that a set of possible states fits a byte.
enum tx_bits : std::uint8_t { tx_idle = 1, tx_block = 2, tx_failed = 4 };
using tx_set = std::uint8_t;
/// The state after a statement of kind `k` ran in state `s` (one bit) and
/// succeeded (`ok`) or failed.
tx_set tx_after(stmt_kind k, tx_set s, bool ok) noexcept;

/// The driver's side of a row_stream: rows received and not yet handed to
/// the consumer.
struct stream_state {
  std::uint64_t id = 0;
  std::vector<result> rows;  // each holds one row, a chunk of rows, or all of them
  std::size_t buffered = 0;  // rows in `rows` (the driver zeroes it when it hands them over)
  result final;              // the closing result (command tag), once done
  std::exception_ptr error;
  bool done = false;
  bool abandoned = false;
  rows_handler waiter;  // a fetch waiting for rows (the driver's)
};

/// A notification received and not yet taken.
struct pending_notification {
  std::string channel;
  std::string payload;
  int sender_pid = 0;
};

/// Who waits for a request: the Asio driver fills it and the core hands it
/// back, unopened, in a completion.
struct request_caller {
  result_handler on_result;
  batch_handler on_batch;
  void_handler on_grant;
  // The handler's executor, when it is (convertible to) an any_io_executor:
  // completing through it skips any_completion_handler's type-erased
  // executor, which allocates on every use. Empty: ask the handler.
  boost::asio::any_io_executor ex;

  request_caller() = default;
  request_caller(request_caller&&) noexcept = default;
  // Boost 1.81's any_completion_handler move assignment recurses forever
  // (it copies from an lvalue through its converting constructor): swap.
  request_caller& operator=(request_caller&& o) noexcept {
    on_result.swap(o.on_result);
    on_batch.swap(o.on_batch);
    on_grant.swap(o.on_grant);
    ex.swap(o.ex);
    return *this;
  }
};

struct batch_group;

struct request {
  enum class type : std::uint8_t { query, detached, stream, exclusive };
  std::uint64_t id = 0;
  type what = type::query;
  stmt_kind kind = stmt_kind::other;
  std::string_view sql;  // the caller's text while it waits; owned_sql after
  std::string owned_sql;
  param_set params;
  request_caller caller;
  bool awaited = false;                // a caller waits for the outcome
  std::shared_ptr<batch_group> group;  // set for the requests of a batch
  std::size_t index = 0;               // in the group; npos for the group's BEGIN/COMMIT
  std::shared_ptr<stream_state> stream;

  // --- the core's bookkeeping ---
  pg_result* res = nullptr;    // the statement's result (owned)
  pg_result* error = nullptr;  // its error result, if any (owned)
  std::exception_ptr failure;  // a client-side failure (protocol error)
  bool exposed = false;        // a server cancel meant for another may hit it
  bool retried = false;
  bool cancel_when_front = false;  // cancelled by its caller; cancel on the server when it runs
  bool server_cancelled = false;
  int server_cancels = 0;  // cancels sent for it (a second one when the first was ignored)
  std::string prepared;    // the statement this request prepared, if it did
  std::string statement;   // the cached statement it ran, if any
  bool described = false;  // it prepared with a Describe: stage 1 is its result
  int stage = 0;           // statements of this request finished so far
  bool prepare_failed = false;
  bool single_row_set = false;
  bool synced = true;              // a Sync of its own follows it (rule 8); false: it shares its burst's (rule 11)
  bool sync_marker = false;        // detached: no statement, only the Sync that ends a burst
  bool close_statement = false;    // detached: a protocol Close of statement `sql`
  std::uint64_t describe_for = 0;  // detached: Parse + Describe for request `describe_for` (rule 12)
  bool describing = false;         // waiting: its Parse + Describe are on the wire
  bool describe_tried = false;     // it had its Describe (or needs none)
  std::string chunk_tag;           // a stream's command tag, found on a chunk of rows

  request() = default;
  request(const request&) = delete;
  request& operator=(const request&) = delete;
  ~request();

  /// Stops referring to the caller's text (the caller is being completed
  /// while the request stays).
  void own_sql();
};

/// An atomic or plain batch: its requests share this.
struct batch_group {
  std::uint64_t id = 0;
  bool atomic = false;
  bool decided = false;  // BEGIN/COMMIT added or not
  bool wrapped = false;
  std::size_t statements = 0;
  std::size_t remaining = 0;  // requests of the group not yet finished
  std::vector<result> results;
  std::exception_ptr first_error;
  request_caller caller;
  bool awaited = true;
  bool commit_sent = false;  // its COMMIT is on the wire
  // Cancelled while its statements ran, COMMIT already sent: cancelled on
  // the server, and completed when the COMMIT says what happened.
  bool cancelling = false;
  bool lost = false;
};

/// What the loaded libpq has beyond libpq 15; the core picks its calls from
/// these.
struct pq_features {
  bool queued_sync = false;     // PQsendPipelineSync: a Sync queued, not flushed
  bool chunked_rows = false;    // PQsetChunkedRowsMode
  bool close_prepared = false;  // PQsendClosePrepared
};

/// libpq, as the core sees it. The real one calls libpq on a PGconn; the unit
/// tests' fake plays a server.
class pq_port {
 public:
  virtual ~pq_port() = default;
  /// Read by the core when the connection opens.
  virtual pq_features features() = 0;
  virtual bool send_query(const char* sql, const param_set& p, int result_format) = 0;
  virtual bool send_prepare(const char* name, const char* sql, const param_set& p) = 0;
  virtual bool send_describe_prepared(const char* name) = 0;
  virtual bool send_query_prepared(const char* name, const param_set& p, int result_format) = 0;
  /// PQpipelineSync: queues a Sync and flushes.
  virtual bool pipeline_sync() = 0;
  /// PQsendPipelineSync (only when features().queued_sync): queues a Sync,
  /// writes nothing.
  virtual bool send_pipeline_sync() = 0;
  /// PQsendClosePrepared (only when features().close_prepared).
  virtual bool send_close_prepared(const char* name) = 0;
  /// 0: all sent; 1: more to send (wait writable); -1: failed.
  virtual int flush() = 0;
  virtual bool consume_input() = 0;
  virtual bool is_busy() = 0;
  virtual pg_result* get_result() = 0;
  virtual void set_single_row_mode() = 0;
  /// PQsetChunkedRowsMode (only when features().chunked_rows); false when
  /// libpq refused.
  virtual bool set_chunked_rows_mode(int rows) = 0;
  virtual bool connection_bad() = 0;
  virtual std::string error_message() = 0;
  /// PQtransactionStatus (PQTRANS_*).
  virtual int transaction_status() = 0;
  virtual bool exit_pipeline_mode() = 0;
  virtual bool enter_pipeline_mode() = 0;
  /// PQputCopyEnd / PQgetCopyData (async) / PQfreemem.
  virtual int put_copy_data(const char* data, int size) = 0;
  virtual int put_copy_end(const char* error) = 0;
  virtual int get_copy_data(char** buffer) = 0;
  virtual void free_copy_data(char* buffer) = 0;
  virtual bool next_notification(pending_notification& out) = 0;
  virtual bool session_in_utc() = 0;
  // Reading results.
  virtual int status(const pg_result* r) = 0;  // ExecStatusType
  virtual std::string_view sqlstate(const pg_result* r) = 0;
  virtual std::string_view command_tag(const pg_result* r) = 0;
  /// Gives `r` the command tag `tag` (chunked-rows mode puts the tag on the
  /// last chunk, not on the closing result).
  virtual void set_command_tag(pg_result* r, std::string_view tag) = 0;
  virtual int ntuples(const pg_result* r) = 0;
  /// PQcmdTuples: rows affected, as text.
  virtual std::string_view command_rows(const pg_result* r) = 0;
  virtual bool binary_tuples(const pg_result* r) = 0;
  /// Describe's answer: can every column come in binary, and does one need
  /// the session in UTC for that.
  virtual void describe(const pg_result* r, bool& binary, bool& needs_utc) = 0;
  virtual sql_error make_error(const pg_result* r, std::string_view statement) = 0;
  virtual void clear(pg_result* r) = 0;
};

// libpq's result statuses the core tells apart (ExecStatusType values).
namespace pq_status {
constexpr int empty_query = 0, command_ok = 1, tuples_ok = 2, copy_out = 3, copy_in = 4, bad_response = 5,
              nonfatal_error = 6, fatal_error = 7, copy_both = 8, single_tuple = 9, pipeline_sync = 10,
              pipeline_aborted = 11, tuples_chunk = 12;
}
// PQtransactionStatus values.
namespace pq_trans {
constexpr int idle = 0, active = 1, intrans = 2, inerror = 3, unknown = 4;
}

/// A caller to complete, with its outcome.
struct completion {
  std::uint64_t id = 0;
  request_caller caller;
  std::exception_ptr error;
  result res;
  std::vector<result> rows;  // a batch's results
  bool batch = false;
  bool grant = false;  // an exclusive hand-over
};

class pipeline_core {
 public:
  /// Rows a stream buffers before reading stops.
  static constexpr std::size_t stream_buffer_rows = 1024;
  /// The protocol's limit on parameters of one statement.
  static constexpr int max_params = 65535;

  explicit pipeline_core(pq_port& port) : port_(port) {}
  ~pipeline_core();
  pipeline_core(const pipeline_core&) = delete;
  pipeline_core& operator=(const pipeline_core&) = delete;

  // --- lifecycle ---
  /// The connection is open, in pipeline mode, in transaction state `tx`.
  void opened(tx_set tx, std::size_t cache_capacity, bool binary_results);
  /// Rows a stream asks libpq for at a time (PQsetChunkedRowsMode) when
  /// libpq has chunked-rows mode; 0 or 1: single-row mode.
  void set_stream_chunk_rows(std::size_t rows) noexcept { chunk_rows_ = rows; }
  /// What the loaded libpq offers (read from the port by opened()).
  const pq_features& features() const noexcept { return features_; }
  /// Whether a statement's first run waits for its Describe (rule 12; on by
  /// default; the unit tests of other rules switch it off to script fewer
  /// round trips).
  void set_describe_first(bool on) noexcept { describe_first_ = on; }
  bool is_open() const noexcept { return mode_ != mode::closed; }
  /// The connection broke (libpq said so, or the socket failed): every
  /// request fails; a COMMIT on the wire as commit_unknown.
  void lost(const std::string& message);
  /// Closed by its owner: requests fail with `why`.
  void close(errc why, const std::string& message);
  /// Why it was lost (empty when it was not).
  const std::string& lost_reason() const noexcept { return lost_reason_; }

  // --- events ---
  /// A request from a caller (its id, sql, params, what, caller set). It is
  /// completed at once when it cannot run.
  void enqueue(std::unique_ptr<request> req);
  /// A batch: `items` in order; with `atomic`, wrapped in BEGIN/COMMIT unless
  /// a transaction block is open when it starts.
  void enqueue_batch(std::shared_ptr<batch_group> group, std::vector<std::unique_ptr<request>> items);
  /// The caller of request (or batch) `id` cancelled it.
  void cancel(std::uint64_t id);
  void on_readable();
  void on_writable();
  /// The driver has nothing more to send for now: write what was queued
  /// (see wants_flush()).
  void end_of_burst();
  /// A server-side cancel asked for by take_server_cancels() (or announced
  /// with server_cancel_started()) is done.
  void on_server_cancel_done();
  /// The driver cancels on the server by itself (a COPY it abandons): hold
  /// back what would be sent until it is done, or the cancel could hit it.
  void server_cancel_started() noexcept { ++cancels_in_flight_; }
  /// The request at the front was cancelled on the server, that cancel is
  /// done, and the request still runs: its id (0 when there is none). A
  /// cancel that reaches the backend while it reads the request's messages
  /// (between Parse and Execute, say) is ignored by the server, so the
  /// driver waits a little (recancel_delay()) and calls recancel(id).
  std::uint64_t cancelled_but_running() const noexcept;
  /// How long to wait before cancelling request `id` again: grows with each
  /// attempt (50 ms, doubling, at most a second).
  std::chrono::milliseconds recancel_delay() const noexcept;
  /// Cancels request `id` on the server again if it is still the one at the
  /// front and no cancel is on its way; otherwise nothing.
  void recancel(std::uint64_t id);
  /// A stream's consumer took its rows / gave up.
  void stream_resume();
  void stream_abandon(std::shared_ptr<stream_state> st);
  /// The COPY holding the connection is done: back to pipeline mode.
  void end_exclusive();

  // --- actions (the driver performs them, then clears) ---
  std::vector<completion>& completions() noexcept { return done_; }
  std::vector<std::shared_ptr<stream_state>>& woken_streams() noexcept { return woken_; }
  std::deque<pending_notification>& notifications() noexcept { return notes_; }
  /// Server-side cancels to start now.
  int take_server_cancels() noexcept { return std::exchange(cancels_to_start_, 0); }
  bool wants_read() const noexcept { return mode_ == mode::pipeline && !paused_; }
  bool wants_write() const noexcept { return want_write_ && mode_ == mode::pipeline; }
  /// Requests were queued (Syncs included) and not written: the driver calls
  /// end_of_burst() once it has nothing more to send.
  bool wants_flush() const noexcept { return need_flush_ && mode_ == mode::pipeline; }
  /// Stopped after a slice of completions (the driver delivers them and
  /// calls on_readable() again without waiting).
  bool more_buffered() const noexcept { return slice_full_; }
  void set_completion_slice(std::size_t n) noexcept { slice_ = n; }

  // --- state ---
  /// The transaction state after every completed request (exact when nothing
  /// is in flight).
  tx_set tracked_tx() const noexcept { return tx_; }
  /// The states the server may be in once everything sent so far is done.
  tx_set predicted_tx() const noexcept;
  /// Requests sent since the last Sync share the Sync not yet queued (rule 11).
  bool burst_open() const noexcept { return burst_open_; }
  bool exclusive() const noexcept { return mode_ == mode::exclusive; }
  /// Requests not completed yet (a first run's Describe and the driver's own
  /// Close or DEALLOCATE included: the connection is busy with them; a
  /// burst's Sync on its way is none: the state after the requests before it
  /// is known, rule 11).
  std::size_t pending() const noexcept { return waiting_.size() + inflight_.size() - syncs_in_flight_; }
  /// Requests and Syncs of bursts sent and not yet answered.
  std::size_t in_flight() const noexcept { return inflight_.size(); }
  const statement_cache& cache() const noexcept { return cache_; }
  int cancels_in_flight() const noexcept { return cancels_in_flight_; }
  /// A fresh request id; callable from any thread.
  std::uint64_t next_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  /// Times the tracked state disagreed with libpq's when it could be read.
  std::uint64_t tx_mismatches() const noexcept { return tx_mismatches_; }

 private:
  enum class mode : std::uint8_t { closed, pipeline, exclusive };

  void start(std::unique_ptr<request> req);
  void send_waiting();
  bool send(request& req);
  bool cacheable(const request& req) const noexcept;
  static const std::string& statement_key(const request& req);
  bool wants_describe(const request& req);
  void start_describe(request& req);
  void finish_describe(request& d);
  void flush();
  void drain();
  void finish_front();
  void apply_tx(const request& req, bool ok);
  void resync_tx();
  bool may_retry(const request& req) const;
  void retry(std::unique_ptr<request> req);
  void complete(request& req, std::exception_ptr ep, result res);
  void complete_group_item(request& req, std::exception_ptr ep, result res);
  void finish_group(batch_group& g);
  void emit(std::uint64_t id, request_caller& caller, std::exception_ptr ep, result res);
  void fail_everything(errc why, const std::string& message, bool lost);
  void issue_server_cancel(const request* target = nullptr);
  bool same_block_before(std::size_t i) const noexcept;
  void send_detached_now(std::string sql);
  bool sync();
  void close_burst();
  bool may_share_sync(const request& req) const;
  std::uint8_t paths_before(std::size_t n) const noexcept;
  std::exception_ptr skipped_error(const request& req) const;
  void evict(const std::string& statement);
  void sent_some();
  std::unique_ptr<request> make_detached(std::string sql, stmt_kind kind);
  bool decide_batch(batch_group& g);
  void grant_exclusive();
  void end_stray_copy(request& front, int status);
  void cancel_group(std::shared_ptr<batch_group> g);
  void note_notifications();
  void wake(const std::shared_ptr<stream_state>& st);

  pq_port& port_;
  pq_features features_;
  std::size_t chunk_rows_ = 0;
  mode mode_ = mode::closed;
  tx_set tx_ = tx_idle;
  bool binary_results_ = true;
  bool describe_first_ = true;
  bool paused_ = false;
  bool want_write_ = false;
  bool slice_full_ = false;
  bool in_drain_ = false;
  bool need_flush_ = false;      // something was sent without a flush
  bool stray_copy_out_ = false;  // dropping the rows of a COPY TO nobody asked for
  // Rule 11. burst_open_: statements were sent without a Sync and the Sync
  // that ends their burst is not queued yet. skipping_: a statement of the
  // burst being read failed, so the server skips the rest until its Sync.
  bool burst_open_ = false;
  bool skipping_ = false;
  // What the server may be doing once everything sent is done (see
  // paths_before()), kept up to date while requests are only sent; rebuilt
  // from inflight_ once one finished.
  std::uint8_t sent_paths_ = 0;
  std::size_t paths_n_ = 0;
  std::size_t syncs_in_flight_ = 0;  // bursts' Syncs (sync_marker requests) in inflight_  // sent_paths_ is after the
                                     // first paths_n_ requests in flight
  bool paths_valid_ = false;
  std::string failed_sql_;  // the statement that failed first in the block (or burst), shortened
  std::size_t slice_ = 0;   // 0: no limit
  int cancels_in_flight_ = 0;
  int cancels_to_start_ = 0;
  std::atomic<std::uint64_t> next_id_{1};
  std::uint64_t tx_mismatches_ = 0;
  std::string lost_reason_;
  std::deque<std::unique_ptr<request>> waiting_;   // not yet handed to libpq
  std::deque<std::unique_ptr<request>> inflight_;  // sent, results pending
  statement_cache cache_;
  std::vector<completion> done_;
  std::vector<std::shared_ptr<stream_state>> woken_;
  std::deque<pending_notification> notes_;
};

}  // namespace pgq::detail
