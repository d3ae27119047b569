// pq_port on a real PGconn: the only place that sends, receives, flushes and
// copies through libpq.
#pragma once

#include "driver/pipeline.hpp"

struct pg_conn;

namespace pgq::detail {

class libpq_port final : public pq_port {
 public:
  pg_conn* conn = nullptr;
  // The server's last FATAL message (why it ends the session, e.g. an
  // idle-in-transaction timeout; libpq hands it to the notice receiver when
  // no request is running).
  std::string farewell;
  /// `message` with the server's farewell in front, when there was one.
  std::string with_farewell(const std::string& message) const;

  bool send_query(const char* sql, const param_set& p, int result_format) override;
  bool send_prepare(const char* name, const char* sql, const param_set& p) override;
  bool send_describe_prepared(const char* name) override;
  bool send_query_prepared(const char* name, const param_set& p, int result_format) override;
  pq_features features() override;
  bool pipeline_sync() override;
  bool send_pipeline_sync() override;
  bool send_close_prepared(const char* name) override;
  int flush() override;
  bool consume_input() override;
  bool is_busy() override;
  pg_result* get_result() override;
  void set_single_row_mode() override;
  bool set_chunked_rows_mode(int rows) override;
  bool connection_bad() override;
  std::string error_message() override;
  int transaction_status() override;
  bool exit_pipeline_mode() override;
  bool enter_pipeline_mode() override;
  int put_copy_data(const char* data, int size) override;
  int put_copy_end(const char* error) override;
  int get_copy_data(char** buffer) override;
  void free_copy_data(char* buffer) override;
  bool next_notification(pending_notification& out) override;
  bool session_in_utc() override;
  int status(const pg_result* r) override;
  std::string_view sqlstate(const pg_result* r) override;
  std::string_view command_tag(const pg_result* r) override;
  void set_command_tag(pg_result* r, std::string_view tag) override;
  int ntuples(const pg_result* r) override;
  std::string_view command_rows(const pg_result* r) override;
  bool binary_tuples(const pg_result* r) override;
  void describe(const pg_result* r, bool& binary, bool& needs_utc) override;
  sql_error make_error(const pg_result* r, std::string_view statement) override;
  void clear(pg_result* r) override;
};

}  // namespace pgq::detail
