#include "driver/libpq_compat.hpp"

#include <libpq-fe.h>

#include <dlfcn.h>

namespace pgq::detail {

namespace {

// The symbol `name` of the libpq already loaded (pgq links it), or null.
template <class Fn>
void find(Fn& fn, const char* name) noexcept {
  // dlsym returns an object pointer; POSIX guarantees it converts to a
  // function pointer.
  fn = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, name));  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast)
}

libpq_api load() noexcept {
  libpq_api a;
  a.version = PQlibVersion();
  find(a.send_pipeline_sync, "PQsendPipelineSync");
  find(a.set_chunked_rows_mode, "PQsetChunkedRowsMode");
  find(a.send_close_prepared, "PQsendClosePrepared");
  find(a.cancel_create, "PQcancelCreate");
  find(a.cancel_start, "PQcancelStart");
  find(a.cancel_poll, "PQcancelPoll");
  find(a.cancel_socket, "PQcancelSocket");
  find(a.cancel_status, "PQcancelStatus");
  find(a.cancel_error_message, "PQcancelErrorMessage");
  find(a.cancel_finish, "PQcancelFinish");
  find(a.full_protocol_version, "PQfullProtocolVersion");
  return a;
}

}  // namespace

const libpq_api& libpq() noexcept {
  static const libpq_api api = load();
  return api;
}

}  // namespace pgq::detail
