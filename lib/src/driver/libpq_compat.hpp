// libpq 17 and 18 calls, found at run time. pgq builds against the oldest
// libpq it supports (Debian's 15) and uses a newer call only when the libpq
// loaded in the process has it: PQlibVersion() says which libpq that is and
// dlsym() finds each symbol. The prototypes below are copies of libpq's
// (part of its stable C ABI: a symbol, once exported, keeps its signature);
// they live here only, and nothing outside driver/ calls them.
#pragma once

struct pg_conn;
struct pg_result;
struct pg_cancel_conn;  // PGcancelConn, libpq 17

namespace pgq::detail {

/// ExecStatusType PGRES_TUPLES_CHUNK (libpq 17): a result holding a chunk of
/// rows in chunked-rows mode.
constexpr int pgres_tuples_chunk = 12;

/// The libpq in this process and what it has beyond libpq 15. Filled once,
/// on first use; read-only after (safe from any thread).
struct libpq_api {
  int version = 0;  // PQlibVersion(): 150012, 170005, 180000...

  // libpq 17.
  int (*send_pipeline_sync)(pg_conn*) = nullptr;                   // PQsendPipelineSync
  int (*set_chunked_rows_mode)(pg_conn*, int) = nullptr;           // PQsetChunkedRowsMode
  int (*send_close_prepared)(pg_conn*, const char*) = nullptr;     // PQsendClosePrepared
  pg_cancel_conn* (*cancel_create)(pg_conn*) = nullptr;            // PQcancelCreate
  int (*cancel_start)(pg_cancel_conn*) = nullptr;                  // PQcancelStart
  int (*cancel_poll)(pg_cancel_conn*) = nullptr;                   // PQcancelPoll (PostgresPollingStatusType)
  int (*cancel_socket)(const pg_cancel_conn*) = nullptr;           // PQcancelSocket
  int (*cancel_status)(const pg_cancel_conn*) = nullptr;           // PQcancelStatus (ConnStatusType)
  char* (*cancel_error_message)(const pg_cancel_conn*) = nullptr;  // PQcancelErrorMessage
  void (*cancel_finish)(pg_cancel_conn*) = nullptr;                // PQcancelFinish
  // libpq 18.
  int (*full_protocol_version)(const pg_conn*) = nullptr;  // PQfullProtocolVersion

  /// Every PQcancel* call above was found: cancels need no thread.
  bool has_cancel_conn() const noexcept {
    return cancel_create != nullptr && cancel_start != nullptr && cancel_poll != nullptr && cancel_socket != nullptr &&
           cancel_status != nullptr && cancel_error_message != nullptr && cancel_finish != nullptr;
  }
};

/// The loaded libpq (looked up on first call).
const libpq_api& libpq() noexcept;

}  // namespace pgq::detail
