// pgq/stream.hpp - rows as they arrive, with flat memory.
#pragma once

#include <pgq/result.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

namespace pgq {

namespace detail {
class driver;
struct stream_state;
}  // namespace detail

/// The rows of one statement, read as the server sends them (libpq's
/// single-row mode). Memory stays flat whatever the result's size: the
/// connection buffers at most a thousand rows and stops reading the socket
/// (so the server waits) until they are taken.
///
///     auto rows = co_await conn.stream("SELECT id, name FROM big WHERE x > $1", 10);
///     while (auto r = co_await rows.next()) use(r->get<int>(0), r->get<std::string_view>(1));
///
/// A stream is read by one task at a time. Requests made on the connection
/// meanwhile wait behind it. Destroying the stream (or cancel(), or
/// cancelling a next()) before the end cancels the statement on the server
/// and discards what is still coming; the connection stays usable. A
/// cancellation aimed at a coroutine that loops over next() (a timeout
/// around the whole loop) may land between two calls, where Asio stops the
/// coroutine without any next() seeing it: the stream then stays open until
/// it is destroyed or cancel() is called.
class row_stream {
 public:
  row_stream() = default;
  row_stream(row_stream&&) noexcept;
  row_stream& operator=(row_stream&&) noexcept;
  row_stream(const row_stream&) = delete;
  row_stream& operator=(const row_stream&) = delete;
  ~row_stream();

  /// The next row, or nullopt after the last one. The row is a view, valid
  /// until the next call to next() or the stream's end. Throws the
  /// statement's error (rows before it are delivered first),
  /// errc::connection_lost, errc::cancelled.
  [[nodiscard]] boost::asio::awaitable<std::optional<row>> next();

  /// The next row read as `T`, as `query_as<T>()` reads rows (one column, a
  /// tuple, or a struct), or nullopt after the last one. The columns are
  /// checked against `T` once per stream and type. Throws as next() and as
  /// query_as().
  template <class T>
  requires row_decodable<T>
  [[nodiscard]] boost::asio::awaitable<std::optional<T>> next_as() {
    std::optional<row> r = co_await next();
    if (!r) co_return std::nullopt;
    if (reader_type_ != &typeid(T)) {
      reader_ = std::make_shared<detail::row_reader<T>>(meta());
      reader_type_ = &typeid(T);
    }
    co_return (*static_cast<const detail::row_reader<T>*>(reader_.get()))(*r);
  }

  /// Column count, names and types (known once stream() returned).
  int columns() const noexcept { return meta().columns(); }
  std::string_view column_name(int col) const { return meta().column_name(col); }
  oid column_type(int col) const { return meta().column_type(col); }

  /// True once the last row was read.
  bool done() const noexcept { return finished_; }
  /// Rows returned by next() so far: once done(), the rows the statement
  /// returned (as `result::rows_affected()` for a SELECT).
  std::uint64_t rows_affected() const noexcept { return rows_read_; }
  [[deprecated("use rows_affected()")]] std::uint64_t rows_read() const noexcept { return rows_read_; }
  /// The command tag ("SELECT 10") once done.
  std::string_view command_tag() const noexcept { return final_.command_tag(); }

  /// Stops reading: cancels the rest of the statement on the server.
  void cancel() noexcept;

 private:
  friend class connection;
  friend class pool;
  // Keeps `owner` alive as long as the stream: the pool lease a pool's
  // stream runs on.
  void keep_alive(std::shared_ptr<void> owner) { owner_ = std::move(owner); }
  row_stream(std::shared_ptr<detail::driver> drv, std::shared_ptr<detail::stream_state> st) noexcept;
  boost::asio::awaitable<void> fetch();
  const result& meta() const noexcept;

  std::shared_ptr<detail::driver> drv_;
  std::shared_ptr<detail::stream_state> st_;
  std::vector<result> batch_;  // rows taken from the connection, not yet returned
  std::size_t next_in_batch_ = 0;
  result current_;  // the result of the row returned last
  int row_in_current_ = 0;
  result final_;
  bool ended_ = false;     // the connection has sent everything
  bool finished_ = false;  // ... and next() returned the end
  std::uint64_t rows_read_ = 0;
  std::shared_ptr<void> owner_;
  // next_as()'s reader for the type it read last.
  std::shared_ptr<const void> reader_;
  const std::type_info* reader_type_ = nullptr;
};

}  // namespace pgq
