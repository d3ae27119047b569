#include "driver/copy.hpp"

#include "error_detail.hpp"

#include <pgq/copy.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <charconv>

namespace asio = boost::asio;

namespace pgq::detail {

void copy_escape_text(std::string& out, std::string_view value) {
  const char* run = value.data();
  const char* const end = run + value.size();
  for (const char* p = run; p != end; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c > '\r' && c != '\\') continue;  // nothing to escape: the usual case
    const char* rep = nullptr;
    switch (c) {
      case '\\': rep = "\\\\"; break;
      case '\n': rep = "\\n"; break;
      case '\r': rep = "\\r"; break;
      case '\t': rep = "\\t"; break;
      default: continue;
    }
    out.append(run, static_cast<std::size_t>(p - run));
    out.append(rep, 2);
    run = p + 1;
  }
  out.append(run, static_cast<std::size_t>(end - run));
}

void copy_put_int16(std::string& out, std::int16_t v) {
  const auto u = static_cast<std::uint16_t>(v);
  out.push_back(static_cast<char>(u >> 8));
  out.push_back(static_cast<char>(u & 0xff));
}

void copy_put_int32(std::string& out, std::int32_t v) {
  const auto u = static_cast<std::uint32_t>(v);
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((u >> shift) & 0xff));
}

namespace {

using state_ptr = copy_state_ptr;

asio::awaitable<void> wait_socket(state_ptr st, asio::posix::stream_descriptor::wait_type w) {
  try {
    co_await st->d->socket().async_wait(w, asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    if (e.code() == asio::error::operation_aborted && st->d->is_open()) {
      throw sql_error(errc::cancelled, "COPY cancelled", st->core.statement());
    }
    throw sql_error(errc::connection_lost, "the connection was lost during COPY", st->core.statement());
  }
}

// Runs the operation started on the core to its end: waits where it asks,
// cancels on the server where it says, gives up a lost connection.
asio::awaitable<void> drive(state_ptr st) {
  while (true) {
    if (!st->d->is_open() || st->d->native_handle() == nullptr) {
      throw sql_error(errc::connection_lost, "the connection was lost during COPY", st->core.statement());
    }
    const copy_core::next n = st->core.step();
    if (st->core.take_server_cancel()) st->d->cancel_running();
    if (st->core.lost()) {
      const std::string message = st->core.lost_message();
      st->d->connection_lost(message);
      throw sql_error(errc::connection_lost, message, st->core.statement());
    }
    if (n == copy_core::next::done) co_return;
    co_await wait_socket(st, n == copy_core::next::wait_read ? asio::posix::stream_descriptor::wait_read
                                                             : asio::posix::stream_descriptor::wait_write);
  }
}

void give_back(copy_state& st) noexcept {
  if (!st.held) return;
  st.held = false;
  st.d->end_exclusive();
}

// Ends whatever COPY is open, in the background, and gives the connection
// back: what a writer or reader destroyed early, or a failed operation,
// leaves behind.
asio::awaitable<void> clean_up(state_ptr st) {
  try {
    st->core.abandon();
    co_await drive(st);
  } catch (...) {
    if (st->d->is_open()) st->d->connection_lost("could not end an abandoned COPY");
  }
  give_back(*st);
}

}  // namespace

void copy_release(const state_ptr& st) noexcept {
  if (!st || !st->held) return;
  try {
    asio::co_spawn(st->d->get_executor(), clean_up(st), asio::detached);
  } catch (...) {
    st->d->connection_lost("out of memory ending a COPY");
    give_back(*st);
  }
}

namespace {

asio::awaitable<bool> copy_start(state_ptr st, bool in) {
  st->core.start(in);
  co_await drive(st);
  if (std::exception_ptr failure = st->core.failure()) {
    give_back(*st);  // the core left the connection idle
    std::rethrow_exception(failure);
  }
  co_return st->core.binary();
}

struct initiate_exclusive {
  std::shared_ptr<driver> drv;
  template <class Handler>
  void operator()(Handler&& h) {
    auto req = std::make_unique<request>();
    req->id = drv->next_id();
    req->what = request::type::exclusive;
    req->awaited = true;
    req->caller.ex = io_executor_of(h, drv->get_executor());
    void_handler handler(std::forward<Handler>(h));
    connect_cancel(handler, drv, req->id);
    req->caller.on_grant.swap(handler);
    asio::dispatch(drv->get_executor(), [d = drv, r = std::move(req)]() mutable { d->enqueue(std::move(r)); });
  }
};

}  // namespace

asio::awaitable<state_ptr> begin_copy(std::shared_ptr<driver> d, std::string_view sql, bool in, bool* binary) {
  if (!d) throw sql_error(errc::not_connected, "connection was moved from", std::string(sql));
  auto st = std::make_shared<copy_state>(d, std::string(sql));
  initiate_exclusive init{d};  // named: GCC 12 destroys temporaries in a co_await twice
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr)>(std::move(init),
                                                                                          asio::use_awaitable);
  st->held = true;
  try {
    *binary = co_await asio::co_spawn(d->get_executor(), copy_start(st, in), asio::use_awaitable);
  } catch (...) {
    copy_release(st);
    throw;
  }
  co_return st;
}

namespace {

void check_mode(const copy_state& st, copy_core::mode m) {
  if (st.core.state() != m) throw sql_error(errc::protocol_error, "the COPY is over", st.core.statement());
}

}  // namespace

asio::awaitable<std::string> copy_put(state_ptr st, std::string data) {
  check_mode(*st, copy_core::mode::in);
  st->core.put(data);
  co_await drive(st);
  data.clear();
  co_return data;
}

// Ends a COPY FROM STDIN (with an error message: aborts it) and returns the
// rows the server took.
asio::awaitable<std::uint64_t> copy_end(state_ptr st, std::optional<std::string> error) {
  check_mode(*st, copy_core::mode::in);
  st->core.end(error ? error->c_str() : nullptr);
  co_await drive(st);
  give_back(*st);
  if (std::exception_ptr failure = st->core.failure()) std::rethrow_exception(failure);
  co_return st->core.rows();
}

asio::awaitable<copy_batch> copy_get(state_ptr st, copy_batch b) {
  b.data.clear();
  b.ends.clear();
  check_mode(*st, copy_core::mode::out);
  st->core.get(b);
  co_await drive(st);
  if (b.done) {
    give_back(*st);
    if (std::exception_ptr failure = st->core.failure()) std::rethrow_exception(failure);
    b.rows = st->core.rows();
  }
  co_return b;
}

}  // namespace pgq::detail
