#include "driver/libpq_port.hpp"
#include "driver/libpq_compat.hpp"

#include "error_detail.hpp"

#include <pgq/codec.hpp>

#include <boost/container/small_vector.hpp>

#include <libpq-fe.h>

#include <algorithm>
#include <cstring>

namespace pgq::detail {

namespace {
using values_t = boost::container::small_vector<const char*, param_set::inline_count>;
values_t values_of(const param_set& p) {
  values_t v(static_cast<std::size_t>(p.size()));
  for (int i = 0; i < p.size(); ++i) v[static_cast<std::size_t>(i)] = p.value(i);
  return v;
}
}  // namespace

bool libpq_port::send_query(const char* sql, const param_set& p, int result_format) {
  const values_t v = values_of(p);
  return PQsendQueryParams(conn, sql, p.size(), p.types(), v.data(), p.lengths(), p.formats(), result_format) == 1;
}

bool libpq_port::send_prepare(const char* name, const char* sql, const param_set& p) {
  return PQsendPrepare(conn, name, sql, p.size(), p.types()) == 1;
}

bool libpq_port::send_describe_prepared(const char* name) { return PQsendDescribePrepared(conn, name) == 1; }

bool libpq_port::send_query_prepared(const char* name, const param_set& p, int result_format) {
  const values_t v = values_of(p);
  return PQsendQueryPrepared(conn, name, p.size(), v.data(), p.lengths(), p.formats(), result_format) == 1;
}

pq_features libpq_port::features() {
  const libpq_api& api = libpq();
  pq_features f;
  f.queued_sync = api.send_pipeline_sync != nullptr;
  f.chunked_rows = api.set_chunked_rows_mode != nullptr;
  f.close_prepared = api.send_close_prepared != nullptr;
  return f;
}

bool libpq_port::pipeline_sync() { return PQpipelineSync(conn) == 1; }
bool libpq_port::send_pipeline_sync() {
  const libpq_api& api = libpq();
  return api.send_pipeline_sync != nullptr && api.send_pipeline_sync(conn) == 1;
}
bool libpq_port::send_close_prepared(const char* name) {
  const libpq_api& api = libpq();
  return api.send_close_prepared != nullptr && api.send_close_prepared(conn, name) == 1;
}
bool libpq_port::set_chunked_rows_mode(int rows) {
  const libpq_api& api = libpq();
  return api.set_chunked_rows_mode != nullptr && api.set_chunked_rows_mode(conn, rows) == 1;
}
int libpq_port::flush() { return PQflush(conn); }
bool libpq_port::consume_input() { return PQconsumeInput(conn) == 1; }
bool libpq_port::is_busy() { return PQisBusy(conn) != 0; }
pg_result* libpq_port::get_result() { return PQgetResult(conn); }
void libpq_port::set_single_row_mode() { PQsetSingleRowMode(conn); }
bool libpq_port::connection_bad() { return PQstatus(conn) == CONNECTION_BAD; }
std::string libpq_port::error_message() { return with_farewell(trim_message(PQerrorMessage(conn))); }

std::string libpq_port::with_farewell(const std::string& message) const {
  // The server's own reason first: "terminating connection due to
  // idle-in-transaction timeout" says more than "server closed the
  // connection unexpectedly".
  if (!farewell.empty() && message.find(farewell) == std::string::npos) return farewell + " (" + message + ")";
  return message;
}
int libpq_port::transaction_status() { return PQtransactionStatus(conn); }
bool libpq_port::exit_pipeline_mode() { return PQexitPipelineMode(conn) == 1; }
bool libpq_port::enter_pipeline_mode() { return PQenterPipelineMode(conn) == 1; }
int libpq_port::put_copy_data(const char* data, int size) { return PQputCopyData(conn, data, size); }
int libpq_port::put_copy_end(const char* error) { return PQputCopyEnd(conn, error); }
int libpq_port::get_copy_data(char** buffer) { return PQgetCopyData(conn, buffer, 1); }
void libpq_port::free_copy_data(char* buffer) { PQfreemem(buffer); }

bool libpq_port::next_notification(pending_notification& out) {
  PGnotify* n = PQnotifies(conn);
  if (n == nullptr) return false;
  out.channel = n->relname != nullptr ? n->relname : "";
  out.payload = n->extra != nullptr ? n->extra : "";
  out.sender_pid = n->be_pid;
  PQfreemem(n);
  return true;
}

bool libpq_port::session_in_utc() {
  const char* tz = PQparameterStatus(conn, "TimeZone");
  if (tz == nullptr) return false;
  const std::string_view z(tz);
  return z == "UTC" || z == "Etc/UTC" || z == "GMT" || z == "Etc/GMT" || z == "UCT" || z == "Etc/UCT" ||
         z == "Universal" || z == "Etc/Universal" || z == "Zulu" || z == "Etc/Zulu";
}

int libpq_port::status(const pg_result* r) { return PQresultStatus(r); }

std::string_view libpq_port::sqlstate(const pg_result* r) {
  const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return s != nullptr ? std::string_view(s) : std::string_view();
}

std::string_view libpq_port::command_tag(const pg_result* r) {
  const char* s = PQcmdStatus(const_cast<pg_result*>(r));
  return s != nullptr ? std::string_view(s) : std::string_view();
}

void libpq_port::set_command_tag(pg_result* r, std::string_view tag) {
  // PQcmdStatus hands out the result's own tag buffer (CMDSTATUS_LEN, 64
  // bytes, in every libpq); a tag the server sent fits it.
  char* s = PQcmdStatus(r);
  if (s == nullptr) return;
  const std::size_t n = std::min<std::size_t>(tag.size(), 63);
  std::memcpy(s, tag.data(), n);
  s[n] = '\0';
}

int libpq_port::ntuples(const pg_result* r) { return PQntuples(r); }

std::string_view libpq_port::command_rows(const pg_result* r) {
  const char* s = PQcmdTuples(const_cast<pg_result*>(r));
  return s != nullptr ? std::string_view(s) : std::string_view();
}

bool libpq_port::binary_tuples(const pg_result* r) { return PQbinaryTuples(r) == 1; }

void libpq_port::describe(const pg_result* d, bool& binary, bool& needs_utc) {
  const int columns = PQnfields(d);
  binary = columns > 0;
  needs_utc = false;
  for (int c = 0; c < columns && binary; ++c) {
    const oid t = PQftype(d, c);
    binary = binary_renderable(t);
    // timestamptz[] too; a record may hold a timestamptz field.
    needs_utc = needs_utc || t == oids::timestamptz || t == 1185 || t == 2249 || t == 2287;
  }
}

sql_error libpq_port::make_error(const pg_result* r, std::string_view statement) {
  return make_sql_error(r, statement);
}

void libpq_port::clear(pg_result* r) { PQclear(r); }

}  // namespace pgq::detail
