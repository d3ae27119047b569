// Connecting: the conninfo's host names resolved off the event loop
// (resolve.cpp), then libpq's non-blocking connect (PQconnectStartParams,
// PQconnectPoll) driven by waits on its socket, under the connect timeout.
#include "driver/driver.hpp"
#include "driver/libpq_compat.hpp"
#include "driver/resolve.hpp"

#include "config_detail.hpp"
#include "error_detail.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libpq-fe.h>

#include <fcntl.h>
#include <unistd.h>

#include <new>
#include <vector>

namespace asio = boost::asio;

namespace pgq::detail {

// Asio waits on a duplicate of libpq's descriptor, never on libpq's own:
// libpq closes its socket by itself when the connection breaks (inside
// PQconsumeInput), and the number may be reused at once by another
// connection on another thread; deregistering "our" number from epoll then
// would silence that connection. The duplicate keeps the socket and its
// number ours until we close it.
void driver::wrap_socket() {
  release_socket();
  const int fd = PQsocket(port_.conn);
  if (fd < 0) return;
  const int mine = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (mine < 0) throw sql_error(errc::connect_failed, "could not duplicate the connection's socket");
  error_code ec;
  sock_.assign(mine, ec);
  if (ec) {
    ::close(mine);
    throw sql_error(errc::connect_failed, "could not watch the connection's socket: " + ec.message());
  }
}

asio::awaitable<void> driver::connect(std::string conninfo_text, connect_options opts) {
  if (port_.conn != nullptr || core_.is_open()) close(errc::not_connected);
  conninfo ci = conninfo::parse(conninfo_text);  // throws bad_conninfo

  const std::chrono::milliseconds timeout = connect_timeout(ci, opts);  // throws bad_conninfo

  auto self = shared_from_this();
  const std::uint64_t attempt = ++connect_attempt_;
  connect_timed_out_ = false;
  if (timeout.count() > 0) {
    connect_timer_.expires_after(timeout);
    connect_timer_.async_wait([self, attempt](const error_code& ec) {
      // A handler queued before its attempt ended does nothing: it must not
      // cancel the reads of the open connection.
      if (ec || self->connect_attempt_ != attempt) return;
      self->connect_timed_out_ = true;
      self->resolver_.cancel();
      error_code ignored;
      self->sock_.cancel(ignored);
    });
  }
  try {
    co_await connect_steps(ci.to_string(), opts, attempt);
  } catch (...) {
    ++connect_attempt_;
    connect_timer_.cancel();
    const bool timed_out = connect_timed_out_;
    release_socket();
    if (port_.conn != nullptr) {
      PQfinish(port_.conn);
      port_.conn = nullptr;
    }
    if (timed_out) {
      throw sql_error(errc::timeout, "connection attempt timed out after " + std::to_string(timeout.count()) + " ms (" +
                                         ci.redacted() + ")");
    }
    throw;
  }
  ++connect_attempt_;
  connect_timer_.cancel();
}

asio::awaitable<void> driver::connect_steps(std::string text, connect_options opts, std::uint64_t attempt) {
  conninfo ci = conninfo::parse(text);
  auto cs = co_await asio::this_coro::cancellation_state;
  auto check = [&] {
    if (connect_timed_out_) throw sql_error(errc::timeout, "timed out");
    if (connect_attempt_ != attempt) throw sql_error(errc::cancelled, "connection attempt abandoned");
  };
  auto rethrow_cancelled = [&](const boost::system::system_error& e) {
    if (cs.cancelled() != asio::cancellation_type::none && !connect_timed_out_) {
      throw sql_error(errc::cancelled, "connection attempt cancelled");
    }
    if (connect_timed_out_) throw sql_error(errc::timeout, "timed out");
    throw e;
  };

  // Resolve host names here, asynchronously, so that libpq never blocks in
  // getaddrinfo: those of the conninfo, the service file and the environment.
  if (opts.resolve_hosts) {
    try {
      ci = co_await resolve_hosts(std::move(ci), resolver_);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) rethrow_cancelled(e);
      throw;
    }
  }

  std::vector<const char*> keys, values;
  for (const auto& [k, v] : ci.entries()) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  check();
  port_.conn = PQconnectStartParams(keys.data(), values.data(), 0);
  if (port_.conn == nullptr) throw std::bad_alloc();
  if (PQstatus(port_.conn) == CONNECTION_BAD)
    throw sql_error(errc::connect_failed, connection_error_message(port_.conn));
  port_.farewell.clear();
  PQsetNoticeReceiver(port_.conn, &driver::note_notice, this);

  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    wrap_socket();  // libpq may open a new socket at any step
    check();        // a timer that fired between two waits
    try {
      co_await sock_.async_wait(st == PGRES_POLLING_READING ? asio::posix::stream_descriptor::wait_read
                                                            : asio::posix::stream_descriptor::wait_write,
                                asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) rethrow_cancelled(e);
      throw;
    }
    if (port_.conn == nullptr) throw sql_error(errc::cancelled, "connection closed while connecting");
    check();
    st = PQconnectPoll(port_.conn);
    if (st == PGRES_POLLING_FAILED) throw sql_error(errc::connect_failed, connection_error_message(port_.conn));
  }
  wrap_socket();
  if (PQsetnonblocking(port_.conn, 1) != 0 || PQenterPipelineMode(port_.conn) != 1) {
    throw sql_error(errc::protocol_error, "could not enter pipeline mode: " + connection_error_message(port_.conn));
  }
  cancel_ = std::shared_ptr<pg_cancel>(PQgetCancel(port_.conn), &PQfreeCancel);
  cancel_timeout_ = opts.cancel_timeout;
  const libpq_api& api = libpq();
  protocol_version_.store(api.full_protocol_version != nullptr ? api.full_protocol_version(port_.conn)
                                                               : PQprotocolVersion(port_.conn) * 10000);
  core_.set_stream_chunk_rows(opts.stream_chunk_rows);
  backend_pid_.store(PQbackendPID(port_.conn));
  server_version_.store(PQserverVersion(port_.conn));
  const int tx = PQtransactionStatus(port_.conn);
  core_.opened(tx == PQTRANS_INTRANS   ? tx_block
               : tx == PQTRANS_INERROR ? tx_failed
                                       : tx_idle,
               opts.statement_cache_size, opts.binary_results);
  tx_.store(core_.tracked_tx(), std::memory_order_release);
  pending_.store(0, std::memory_order_release);
  open_.store(true, std::memory_order_release);
  arm_read();
}

void driver::note_notice(void* self, const pg_result* res) {
  const char* severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (severity == nullptr) return;
  const std::string_view sv(severity);
  if (sv == "FATAL" || sv == "PANIC")
    static_cast<driver*>(self)->port_.farewell = trim_message(PQresultErrorMessage(res));
}

}  // namespace pgq::detail
