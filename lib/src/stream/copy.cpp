// The public COPY objects, copy_writer and copy_reader: buffers on the
// caller's side. COPY cannot run in pipeline mode, so the driver hands the
// connection over (pipeline mode off) and lib/src/driver/copy.cpp drives
// libpq from coroutines spawned on the driver's executor; these wrappers
// only hand it buffers.
#include <pgq/connection.hpp>
#include <pgq/copy.hpp>

#include "driver/copy.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <optional>

namespace asio = boost::asio;

namespace pgq {

namespace {
using detail::copy_batch;
using detail::copy_end;
using detail::copy_get;
using detail::copy_put;
void release(const detail::copy_state_ptr& st) noexcept { detail::copy_release(st); }
}  // namespace

copy_writer::copy_writer(std::shared_ptr<detail::copy_state> st, bool binary) noexcept
    : st_(std::move(st)), binary_(binary) {}
copy_writer::copy_writer(copy_writer&&) noexcept = default;
copy_writer& copy_writer::operator=(copy_writer&& other) noexcept {
  if (this != &other) {
    release(st_);
    st_ = std::move(other.st_);
    buffer_ = std::move(other.buffer_);
    binary_ = other.binary_;
    header_written_ = other.header_written_;
  }
  return *this;
}
copy_writer::~copy_writer() { release(st_); }

void copy_writer::write_binary_header() {
  static constexpr char signature[] = "PGCOPY\n\377\r\n";
  buffer_.append(signature, sizeof signature);  // with its NUL: 11 bytes
  detail::copy_put_int32(buffer_, 0);           // flags
  detail::copy_put_int32(buffer_, 0);           // header extension length
  header_written_ = true;
}

asio::awaitable<void> copy_writer::write(std::string_view data) {
  buffer_.append(data);
  co_await flush_if_full();
}

asio::awaitable<void> copy_writer::flush_if_full() {
  if (buffer_.size() >= buffer_limit) co_await flush();
}

asio::awaitable<void> copy_writer::flush() {
  if (!st_ || !st_->held) throw sql_error(errc::protocol_error, "the COPY is over");
  if (buffer_.empty()) co_return;
  try {
    buffer_ = co_await asio::co_spawn(st_->d->get_executor(), copy_put(st_, std::move(buffer_)), asio::use_awaitable);
  } catch (...) {
    buffer_.clear();
    release(st_);
    throw;
  }
}

asio::awaitable<std::uint64_t> copy_writer::finish() {
  if (!st_ || !st_->held) throw sql_error(errc::protocol_error, "the COPY is over");
  if (binary_ && header_written_) detail::copy_put_int16(buffer_, -1);  // the trailer
  co_await flush();
  try {
    const std::uint64_t n =
        co_await asio::co_spawn(st_->d->get_executor(), copy_end(st_, std::nullopt), asio::use_awaitable);
    co_return n;
  } catch (...) {
    release(st_);
    throw;
  }
}

asio::awaitable<void> copy_writer::abort(std::string_view reason) {
  if (!st_ || !st_->held) co_return;
  buffer_.clear();
  std::optional<std::string> why(std::string{reason});
  try {
    co_await asio::co_spawn(st_->d->get_executor(), copy_end(st_, std::move(why)), asio::use_awaitable);
  } catch (...) {
    release(st_);
    throw;
  }
}

copy_reader::copy_reader(std::shared_ptr<detail::copy_state> st, bool binary) noexcept
    : st_(std::move(st)), binary_(binary) {}
copy_reader::copy_reader(copy_reader&&) noexcept = default;
copy_reader& copy_reader::operator=(copy_reader&& other) noexcept {
  if (this != &other) {
    release(st_);
    st_ = std::move(other.st_);
    data_ = std::move(other.data_);
    ends_ = std::move(other.ends_);
    next_ = other.next_;
    binary_ = other.binary_;
    ended_ = other.ended_;
    rows_ = other.rows_;
  }
  return *this;
}
copy_reader::~copy_reader() { release(st_); }

asio::awaitable<std::optional<std::string_view>> copy_reader::next() {
  if (!st_) throw sql_error(errc::not_connected, "the COPY reader is empty");
  while (true) {
    if (next_ < ends_.size()) {
      const std::size_t begin = next_ == 0 ? 0 : ends_[next_ - 1];
      const std::size_t end = ends_[next_++];
      co_return std::string_view(data_.data() + begin, end - begin);
    }
    if (ended_) co_return std::nullopt;
    copy_batch b;
    b.data = std::move(data_);
    b.ends = std::move(ends_);
    try {
      b = co_await asio::co_spawn(st_->d->get_executor(), copy_get(st_, std::move(b)), asio::use_awaitable);
    } catch (...) {
      ended_ = true;
      data_.clear();
      ends_.clear();
      release(st_);
      throw;
    }
    data_ = std::move(b.data);
    ends_ = std::move(b.ends);
    next_ = 0;
    if (b.done) {
      ended_ = true;
      rows_ = b.rows;
    }
  }
}

asio::awaitable<copy_writer> connection::copy_in(std::string_view sql) {
  bool binary = false;
  auto st = co_await detail::begin_copy(drv_, sql, true, &binary);
  co_return copy_writer(std::move(st), binary);
}

asio::awaitable<copy_reader> connection::copy_out(std::string_view sql) {
  bool binary = false;
  auto st = co_await detail::begin_copy(drv_, sql, false, &binary);
  co_return copy_reader(std::move(st), binary);
}

}  // namespace pgq
