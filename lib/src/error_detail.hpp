// What error.cpp offers the rest of lib/src, not the user: libpq's errors
// turned into pgq::sql_error. The one place that maps a failed PGresult to
// SQLSTATE, severity, detail, hint and the other fields the server sent.
#pragma once

#include <pgq/error.hpp>

#include <string>
#include <string_view>

struct pg_conn;
struct pg_result;

namespace pgq::detail {

/// The sql_error for a failed libpq result: the server's SQLSTATE and every
/// field it sent, `statement` as the query; errc::connection_lost when libpq
/// made the error itself (no SQLSTATE: the connection dropped).
sql_error make_sql_error(const pg_result* res, std::string_view statement);

/// libpq's message, without its trailing newline.
std::string trim_message(const char* m);

/// libpq's message for the connection, trimmed.
std::string connection_error_message(pg_conn* conn);

}  // namespace pgq::detail
