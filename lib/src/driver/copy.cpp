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

libpq_port& live(const copy_state& st) {
  if (!st.d->is_open() || st.d->native_handle() == nullptr) {
    throw sql_error(errc::connection_lost, "the connection was lost during COPY", st.statement);
  }
  return st.d->port();
}

[[noreturn]] void lost(const copy_state& st) {
  const std::string message = st.d->port().error_message();
  st.d->connection_lost(message);
  throw sql_error(errc::connection_lost, message, st.statement);
}

asio::awaitable<void> wait_socket(state_ptr st, asio::posix::stream_descriptor::wait_type w) {
  try {
    co_await st->d->socket().async_wait(w, asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    if (e.code() == asio::error::operation_aborted && st->d->is_open()) {
      throw sql_error(errc::cancelled, "COPY cancelled", st->statement);
    }
    throw sql_error(errc::connection_lost, "the connection was lost during COPY", st->statement);
  }
}

asio::awaitable<void> flush_all(state_ptr st) {
  while (true) {
    const int r = live(*st).flush();
    if (r == 0) co_return;
    if (r < 0) lost(*st);
    co_await wait_socket(st, asio::posix::stream_descriptor::wait_write);
  }
}

// The next result of the statement (null after the last), waiting for input.
asio::awaitable<pg_result*> read_result(state_ptr st) {
  while (true) {
    libpq_port& c = live(*st);
    if (!c.consume_input()) lost(*st);
    if (!c.is_busy()) co_return c.get_result();
    co_await wait_socket(st, asio::posix::stream_descriptor::wait_read);
  }
}

asio::awaitable<void> end_copy_in(state_ptr st, const char* error) {
  while (true) {
    const int r = live(*st).put_copy_end(error);
    if (r == 1) break;
    if (r < 0) lost(*st);
    co_await wait_socket(st, asio::posix::stream_descriptor::wait_write);
  }
  co_await flush_all(st);
}

// Reads results until libpq is idle, ending any COPY still open.
asio::awaitable<void> drain_to_idle(state_ptr st) {
  while (pg_result* r = co_await read_result(st)) {
    const int status = st->d->port().status(r);
    st->d->port().clear(r);
    if (status == pq_status::copy_in) {
      co_await end_copy_in(st, "pgq: COPY abandoned");
    } else if (status == pq_status::copy_out) {
      while (true) {
        char* buf = nullptr;
        const int n = live(*st).get_copy_data(&buf);
        if (n > 0) {
          st->d->port().free_copy_data(buf);
        } else if (n == 0) {
          co_await wait_socket(st, asio::posix::stream_descriptor::wait_read);
          if (!live(*st).consume_input()) lost(*st);
        } else if (n == -1) {
          break;
        } else {
          lost(*st);
        }
      }
    }
  }
  st->m = copy_state::mode::idle;
}

void give_back(copy_state& st) noexcept {
  if (!st.held) return;
  st.held = false;
  st.m = copy_state::mode::idle;
  st.d->end_exclusive();
}

// Ends whatever COPY is open, in the background, and gives the connection
// back: what a writer or reader destroyed early, or a failed operation,
// leaves behind.
asio::awaitable<void> clean_up(state_ptr st) {
  try {
    if (st->m == copy_state::mode::in) {
      co_await end_copy_in(st, "pgq: COPY abandoned");
    } else if (st->m == copy_state::mode::out || st->out_pending) {
      st->d->cancel_running();
    }
    co_await drain_to_idle(st);
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

asio::awaitable<bool> copy_start(state_ptr st, int want) {
  libpq_port& c = live(*st);
  static const param_set no_params;
  if (!c.send_query(st->statement.c_str(), no_params, 0)) {
    if (c.connection_bad()) lost(*st);
    throw sql_error(errc::protocol_error, c.error_message(), st->statement);
  }
  st->out_pending = want == pq_status::copy_out;
  co_await flush_all(st);
  pg_result* r = co_await read_result(st);
  st->out_pending = false;
  if (r == nullptr) throw sql_error(errc::protocol_error, "no result for the COPY statement", st->statement);
  libpq_port& p = st->d->port();
  const int status = p.status(r);
  if (status == want) {
    const bool binary = p.binary_tuples(r);
    p.clear(r);
    st->m = want == pq_status::copy_in ? copy_state::mode::in : copy_state::mode::out;
    co_return binary;
  }
  std::exception_ptr error;
  if (status == pq_status::fatal_error) {
    error = std::make_exception_ptr(make_sql_error(r, st->statement));
  } else {
    error = std::make_exception_ptr(sql_error(
        errc::protocol_error,
        want == pq_status::copy_in ? "not a COPY ... FROM STDIN statement" : "not a COPY ... TO STDOUT statement",
        st->statement));
  }
  p.clear(r);
  if (status == pq_status::copy_in) co_await end_copy_in(st, "pgq: not the COPY direction asked for");
  if (status == pq_status::copy_out) st->d->cancel_running();
  co_await drain_to_idle(st);
  give_back(*st);
  std::rethrow_exception(error);
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
  auto st = std::make_shared<copy_state>();
  st->d = d;
  st->statement = std::string(sql);
  initiate_exclusive init{d};  // named: GCC 12 destroys temporaries in a co_await twice
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr)>(std::move(init),
                                                                                          asio::use_awaitable);
  st->held = true;
  try {
    *binary = co_await asio::co_spawn(d->get_executor(), copy_start(st, in ? pq_status::copy_in : pq_status::copy_out),
                                      asio::use_awaitable);
  } catch (...) {
    copy_release(st);
    throw;
  }
  co_return st;
}

asio::awaitable<std::string> copy_put(state_ptr st, std::string data) {
  if (st->m != copy_state::mode::in) throw sql_error(errc::protocol_error, "the COPY is over", st->statement);
  // libpq takes an int: hand over at most 1 GiB at a time.
  constexpr std::size_t piece = std::size_t{1} << 30;
  for (std::size_t done = 0; done < data.size();) {
    const std::size_t n = std::min(piece, data.size() - done);
    const int r = live(*st).put_copy_data(data.data() + done, static_cast<int>(n));
    if (r == 1) {
      done += n;
      continue;
    }
    if (r < 0) lost(*st);
    co_await wait_socket(st, asio::posix::stream_descriptor::wait_write);
  }
  co_await flush_all(st);
  data.clear();
  co_return data;
}

// Ends a COPY FROM STDIN (with an error message: aborts it) and returns the
// rows the server took.
asio::awaitable<std::uint64_t> copy_end(state_ptr st, std::optional<std::string> error) {
  if (st->m != copy_state::mode::in) throw sql_error(errc::protocol_error, "the COPY is over", st->statement);
  co_await end_copy_in(st, error ? error->c_str() : nullptr);
  st->m = copy_state::mode::idle;
  std::uint64_t rows = 0;
  std::exception_ptr failure;
  if (pg_result* r = co_await read_result(st)) {
    libpq_port& p = st->d->port();
    if (p.status(r) == pq_status::command_ok) {
      const std::string_view n = p.command_rows(r);
      std::from_chars(n.data(), n.data() + n.size(), rows);
    } else if (p.status(r) == pq_status::fatal_error) {
      failure = std::make_exception_ptr(make_sql_error(r, st->statement));
    }
    p.clear(r);
  }
  co_await drain_to_idle(st);
  give_back(*st);
  if (failure && !error) std::rethrow_exception(failure);
  co_return rows;
}

asio::awaitable<copy_batch> copy_get(state_ptr st, copy_batch b) {
  b.data.clear();
  b.ends.clear();
  if (st->m != copy_state::mode::out) throw sql_error(errc::protocol_error, "the COPY is over", st->statement);
  constexpr std::size_t batch_bytes = 256 * 1024;
  while (true) {
    char* buf = nullptr;
    const int n = live(*st).get_copy_data(&buf);
    if (n > 0) {
      b.data.append(buf, static_cast<std::size_t>(n));
      st->d->port().free_copy_data(buf);
      b.ends.push_back(b.data.size());
      if (b.data.size() >= batch_bytes) co_return b;
    } else if (n == 0) {
      if (!b.ends.empty()) co_return b;
      co_await wait_socket(st, asio::posix::stream_descriptor::wait_read);
      if (!live(*st).consume_input()) lost(*st);
    } else if (n == -1) {
      st->m = copy_state::mode::idle;
      std::exception_ptr failure;
      if (pg_result* r = co_await read_result(st)) {
        libpq_port& p = st->d->port();
        if (p.status(r) == pq_status::command_ok) {
          const std::string_view t = p.command_rows(r);
          std::from_chars(t.data(), t.data() + t.size(), b.rows);
        } else if (p.status(r) == pq_status::fatal_error) {
          failure = std::make_exception_ptr(make_sql_error(r, st->statement));
        }
        p.clear(r);
      }
      co_await drain_to_idle(st);
      give_back(*st);
      if (failure) std::rethrow_exception(failure);
      b.done = true;
      co_return b;
    } else {
      lost(*st);
    }
  }
}


}  // namespace pgq::detail
