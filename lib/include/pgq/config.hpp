// pgq/config.hpp - connection options: conninfo strings, URIs, PG* environment.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgq {

/// A parsed connection string: libpq's `key=value` syntax or a
/// `postgresql://` URI, as the ordered list of keywords it sets. Settings it
/// does not name come from libpq's defaults and the `PG*` environment when the
/// connection is made.
class conninfo {
 public:
  conninfo() = default;

  /// Parses `text`. Throws `pgq::sql_error` with `errc::bad_conninfo` and
  /// libpq's explanation when the text is malformed or names an unknown key.
  static conninfo parse(std::string_view text);

  /// The value of `key` if the string set it.
  std::optional<std::string> get(std::string_view key) const;
  /// Sets (or replaces) `key`.
  void set(std::string_view key, std::string value);
  /// Removes `key` if present.
  void erase(std::string_view key);

  const std::vector<std::pair<std::string, std::string>>& entries() const noexcept { return entries_; }

  /// A `key=value` string libpq accepts (values quoted and escaped).
  std::string to_string() const;
  /// Like to_string() with the password hidden, for messages and logs.
  std::string redacted() const;

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

/// How to connect, beside the conninfo that names the server: the options
/// of each connection attempt. The one way to say it, taken by
/// `connection::connect()` and carried by `pool_options::connect`,
/// `listener_options::connect` and `migrator_options::connect`.
///
/// It owns no memory, on purpose: GCC 12 destroys a brace-initialised
/// temporary that owns memory twice when it is written inside a `co_await`
/// expression, and `co_await conn.connect(dsn, {.connect_timeout = 2s})` is
/// how it is used.
struct connect_options {
  /// Gives up after this long, for the whole attempt (name lookup included).
  /// Unset: the conninfo's `connect_timeout`, then `PGCONNECT_TIMEOUT`, then
  /// 10 seconds. Zero means no limit.
  std::optional<std::chrono::milliseconds> connect_timeout;
  /// Resolve host names with Asio's resolver and pass them to libpq as
  /// `hostaddr`, so that no lookup blocks the event loop. Off, libpq looks the
  /// names up itself (blocking).
  bool resolve_hosts = true;
  /// Statements kept prepared on the connection (least recently used ones
  /// are deallocated). A statement text seen again skips parsing and
  /// planning. 0 turns the cache off: use that behind PgBouncer in
  /// transaction mode, where a prepared statement may live on another
  /// server connection.
  std::size_t statement_cache_size = 256;
  /// Let cached statements return binary results when every column has a
  /// binary codec (numbers and timestamps then skip text parsing). A
  /// statement's first run on a connection is prepared and described before
  /// it runs (one more round trip, once per statement and connection), so
  /// that it too comes in binary: an anonymous record (`ROW(1, 'a')`) then
  /// carries its field types and to_json() gives what the server's to_json()
  /// gives. A record whose field has a type pgq cannot print from binary
  /// fails to print (cast that field to text). Off (or with the statement
  /// cache off): always text, and records' fields become JSON strings.
  bool binary_results = true;
  /// How long the connection waits for a server-side cancel request (sent
  /// when a running statement is cancelled, e.g. by a timeout) to reach the
  /// server. Requests made meanwhile wait, so that the cancel cannot hit them.
  /// Past this limit (a cancel lost in a black-holed network) they are sent
  /// anyway; should the cancel still arrive later, the statement it hits fails
  /// with SQLSTATE 57014. Zero waits as long as the cancel takes.
  std::chrono::milliseconds cancel_timeout{std::chrono::seconds(5)};
  /// Rows a `row_stream` receives from libpq at a time, with libpq 17 or
  /// newer (PQsetChunkedRowsMode): fewer results to allocate and hand over
  /// than one per row. 0 or 1, or an older libpq: one row at a time
  /// (single-row mode). A chunk is held whole in memory: up to this many
  /// rows at once, so lower it (1 at the least) for rows of many MiB. The
  /// stream's buffer (1024 rows) is unchanged.
  std::size_t stream_chunk_rows = 16;
};

}  // namespace pgq
