// pgq/copy.hpp - COPY FROM STDIN and COPY TO STDOUT, streaming both ways.
#pragma once

#include <pgq/codec.hpp>
#include <pgq/connection.hpp>
#include <pgq/result.hpp>

#include <boost/asio/awaitable.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace pgq {

namespace detail {
struct copy_state;

/// Appends one value to a COPY row: text format (tab-separated, with COPY's
/// backslash escapes, `\N` for NULL) or binary format (length + bytes).
template <class T>
void copy_field(std::string& out, const T& v, bool binary, std::string& scratch);

void copy_escape_text(std::string& out, std::string_view value);
void copy_put_int16(std::string& out, std::int16_t v);
void copy_put_int32(std::string& out, std::int32_t v);

template <class T>
void copy_field(std::string& out, const T& v, bool binary, std::string& scratch) {
  if constexpr (std::is_same_v<T, std::nullopt_t>) {
    if (binary) {
      copy_put_int32(out, -1);
    } else {
      out += "\\N";
    }
  } else if constexpr (is_optional<T>::value) {
    if (v) {
      copy_field(out, *v, binary, scratch);
    } else {
      copy_field(out, std::nullopt, binary, scratch);
    }
  } else if constexpr (std::is_array_v<T>) {
    copy_field(out, static_cast<const std::remove_extent_t<T>*>(v), binary, scratch);
  } else if constexpr (std::is_same_v<T, char*>) {
    copy_field(out, static_cast<const char*>(v), binary, scratch);
  } else if constexpr (std::is_arithmetic_v<T>) {
    if (binary) {
      scratch.clear();
      codec<T>::encode(v, format::binary, scratch);
      copy_put_int32(out, static_cast<std::int32_t>(scratch.size()));
      out += scratch;
    } else if constexpr (std::is_floating_point_v<T>) {
      // The shortest text that reads back as v; float8in takes any form, so
      // the server's own layout (what codec<T> writes) is not needed here.
      char buf[64];
      const auto r = std::to_chars(buf, buf + sizeof buf, v);
      if (std::isfinite(v) && r.ec == std::errc()) {
        out.append(buf, static_cast<std::size_t>(r.ptr - buf));
      } else {
        codec<T>::encode(v, format::text, out);  // NaN, Infinity
      }
    } else {
      codec<T>::encode(v, format::text, out);  // digits and a sign: nothing to escape
    }
  } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) {
    if (binary) {
      copy_put_int32(out, static_cast<std::int32_t>(v.size()));
      out += v;
    } else {
      copy_escape_text(out, v);
    }
  } else {
    scratch.clear();
    codec<T>::encode(v, binary ? format::binary : format::text, scratch);
    if (binary) {
      copy_put_int32(out, static_cast<std::int32_t>(scratch.size()));
      out += scratch;
    } else {
      copy_escape_text(out, scratch);
    }
  }
}
}  // namespace detail

/// Writes the data of a `COPY ... FROM STDIN`. Get one from
/// `connection::copy_in()`. Data is buffered (64 KiB) and sent as the
/// buffer fills; a slow server makes write() wait, so memory stays bounded.
///
///     auto w = co_await conn.copy_in("COPY items (id, name, price) FROM STDIN");
///     for (auto& it : items) co_await w.write_row(it.id, it.name, it.price);
///     std::uint64_t n = co_await w.finish();
///
/// Nothing is committed unless finish() succeeds: destroying the writer
/// first, abort(), a failed write or a cancellation all abort the COPY (the
/// server rolls it back) and leave the connection usable. While the COPY
/// runs, other requests on the connection wait.
class copy_writer {
 public:
  copy_writer() = default;
  copy_writer(copy_writer&&) noexcept;
  copy_writer& operator=(copy_writer&&) noexcept;
  copy_writer(const copy_writer&) = delete;
  copy_writer& operator=(const copy_writer&) = delete;
  /// Aborts the COPY if finish() was not called.
  ~copy_writer();

  /// True when the statement asked for `FORMAT binary`: write_row() then
  /// writes binary rows (header and trailer included).
  bool binary() const noexcept { return binary_; }

  /// Appends a row of values, encoded with the parameter codecs, in the
  /// COPY's format (text or binary; CSV takes raw write()). `std::optional`
  /// and `std::nullopt` are NULL. Sends when the buffer is full.
  template <class... Ts>
  requires(encodable<Ts>&&...) [[nodiscard]] boost::asio::awaitable<void> write_row(const Ts&... values) {
    add_row(values...);
    return flush_if_full();
  }
  /// As write_row(), without ever waiting: the row stays in the buffer until
  /// the next write, flush() or finish().
  template <class... Ts>
  requires(encodable<Ts>&&...) void add_row(const Ts&... values) {
    if (binary_) {
      if (!header_written_) write_binary_header();
      detail::copy_put_int16(buffer_, static_cast<std::int16_t>(sizeof...(Ts)));
      (detail::copy_field(buffer_, values, true, scratch_), ...);
    } else {
      bool first = true;
      ((first ? void(first = false) : void(buffer_ += '\t'), detail::copy_field(buffer_, values, false, scratch_)),
       ...);
      buffer_ += '\n';
    }
  }
  /// Appends raw COPY data (any format, any split).
  [[nodiscard]] boost::asio::awaitable<void> write(std::string_view data);
  /// Sends what is buffered.
  [[nodiscard]] boost::asio::awaitable<void> flush();
  /// Ends the COPY and returns the rows the server took. Throws the server's
  /// error (a bad row: nothing is committed), errc::connection_lost.
  [[nodiscard]] boost::asio::awaitable<std::uint64_t> finish();
  /// Ends the COPY with an error: the server discards everything.
  [[nodiscard]] boost::asio::awaitable<void> abort(std::string_view reason = "aborted by the client");

  /// Bytes waiting in the buffer.
  std::size_t buffered() const noexcept { return buffer_.size(); }

 private:
  friend class connection;
  copy_writer(std::shared_ptr<detail::copy_state> st, bool binary) noexcept;
  boost::asio::awaitable<void> flush_if_full();
  void write_binary_header();

  static constexpr std::size_t buffer_limit = 64 * 1024;
  std::shared_ptr<detail::copy_state> st_;
  std::string buffer_;
  std::string scratch_;
  bool binary_ = false;
  bool header_written_ = false;
};

/// Reads the data of a `COPY ... TO STDOUT`, one row (one line in text and
/// CSV formats) per next(), as the server sends it. Get one from
/// `connection::copy_out()`. Destroying it before the end cancels the COPY on
/// the server; the connection stays usable.
class copy_reader {
 public:
  copy_reader() = default;
  copy_reader(copy_reader&&) noexcept;
  copy_reader& operator=(copy_reader&&) noexcept;
  copy_reader(const copy_reader&) = delete;
  copy_reader& operator=(const copy_reader&) = delete;
  ~copy_reader();

  /// The next row's bytes (with its newline in text/CSV), or nullopt at the
  /// end. The view is valid until the next call. Throws the server's error,
  /// errc::connection_lost, errc::cancelled.
  [[nodiscard]] boost::asio::awaitable<std::optional<std::string_view>> next();

  bool binary() const noexcept { return binary_; }
  /// Rows the server reported (COPY's command tag), once next() returned
  /// the end.
  std::uint64_t rows_affected() const noexcept { return rows_; }
  [[deprecated("use rows_affected()")]] std::uint64_t rows() const noexcept { return rows_; }

 private:
  friend class connection;
  copy_reader(std::shared_ptr<detail::copy_state> st, bool binary) noexcept;

  std::shared_ptr<detail::copy_state> st_;
  std::string data_;               // a batch of rows, back to back
  std::vector<std::size_t> ends_;  // where each row of the batch ends
  std::size_t next_ = 0;
  bool binary_ = false;
  bool ended_ = false;
  std::uint64_t rows_ = 0;
};

template <class Range>
boost::asio::awaitable<std::uint64_t> connection::copy_in(std::string_view sql, const Range& rows) {
  copy_writer w = co_await copy_in(sql);
  for (const auto& r : rows) {
    std::apply([&w](const auto&... v) { w.add_row(v...); }, r);
    if (w.buffered() >= 64 * 1024) co_await w.flush();
  }
  const std::uint64_t n = co_await w.finish();
  co_return n;
}

template <class Sink>
boost::asio::awaitable<std::uint64_t> connection::copy_out(std::string_view sql, Sink sink) {
  copy_reader r = co_await copy_out(sql);
  while (true) {
    std::optional<std::string_view> chunk = co_await r.next();
    if (!chunk) break;
    sink(*chunk);
  }
  co_return r.rows_affected();
}

}  // namespace pgq
