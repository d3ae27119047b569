// driver/resolve.hpp - host name resolution before libpq sees the conninfo.
//
// libpq looks host names up with a blocking getaddrinfo inside
// PQconnectPoll. To keep that off the event loop, pgq finds every host entry
// libpq would look up, wherever it comes from (the conninfo, a service file,
// the PG* environment), resolves it with Asio's resolver, and hands libpq the
// numeric addresses as `hostaddr`, keeping `host` as the name (libpq uses it
// for sslmode=verify-full, the password file and its messages).
//
// Two halves: plan_resolution() is synchronous and reads nothing but the
// environment and service files it is given, so that tests can script both;
// resolve_hosts() performs a plan with async_resolve.
#pragma once

#include <pgq/config.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pgq::detail {

/// A file as libpq's service lookup sees it.
struct file_contents {
  enum class state {
    missing,     ///< stat() fails: libpq skips the file (or fails, for PGSERVICEFILE)
    unreadable,  ///< it exists but fopen() fails: libpq fails
    ok,
  };
  state status = state::missing;
  std::string text;
};

/// What plan_resolution() may read. Copyable; the functions must not block on
/// anything but the local file system.
struct environment_view {
  /// getenv(): nullopt when unset, "" when set to the empty string (libpq
  /// tells the two apart, e.g. PGSERVICEFILE="" names a file that is missing).
  std::function<std::optional<std::string>(const char* name)> getenv;
  /// A file's contents.
  std::function<file_contents(const std::string& path)> read_file;
  /// The home directory libpq looks in for ~/.pg_service.conf: $HOME when
  /// set and not empty, else the password database entry of the effective
  /// user (libpq 15.18 as shipped by Debian 12). nullopt: none.
  std::function<std::optional<std::string>()> home_directory;
  /// libpq's compiled-in SYSCONFDIR (where pg_service.conf lives when
  /// PGSYSCONFDIR is unset); CMake takes it from `pg_config --sysconfdir`.
  std::string sysconfdir;

  /// The process's environment, the real file system and libpq's directories.
  static environment_view system();
};

/// One host entry of the conninfo libpq will use, in libpq's order.
struct host_slot {
  std::string host;      ///< the `host` entry ("" when none)
  std::string hostaddr;  ///< the `hostaddr` entry ("" when none)
  std::string port;      ///< the `port` entry, when per_host_ports
  /// `host` is a name libpq would pass to getaddrinfo: resolve it.
  bool resolve = false;
};

/// What resolve_hosts() will do to a conninfo.
struct resolve_plan {
  /// The host, hostaddr and port settings libpq will use, before splitting
  /// (conninfo over service over environment); "" when none.
  std::string host, hostaddr, port;
  /// The host entries libpq would try, after the conninfo, the service file
  /// and the environment have been combined as libpq combines them.
  std::vector<host_slot> slots;
  /// The port list names one port per host: it is rewritten along with the
  /// hosts. Otherwise (one port, or none) `port` is left alone: libpq applies
  /// it, from wherever it comes, to every host itself.
  bool per_host_ports = false;
  /// The conninfo cannot work (host, hostaddr and port counts that do not
  /// match); resolve_hosts() throws errc::bad_conninfo with this message.
  std::string bad_conninfo;
  /// Set when libpq will reject the connection before any lookup (a service
  /// it cannot find, a malformed service file) or when the values cannot be
  /// known here (an LDAP lookup in the service file): the conninfo is handed
  /// to libpq unchanged so that its own error is the one reported. Says why.
  std::string left_to_libpq;
  /// Some host entry gets a hostaddr from the plan (a numeric host copied,
  /// or a name to resolve): host and hostaddr are rewritten. Otherwise the
  /// conninfo goes to libpq unchanged.
  bool rewrite = false;
  /// The service file the service was read from, if any.
  std::string service_file;

  /// Whether some host entry needs resolving.
  bool needs_resolution() const noexcept;
};

/// Works out, as libpq 15 would (conninfo over service file over PGHOST,
/// PGHOSTADDR, PGPORT, an empty conninfo value counting as unset as it does
/// for PQconnectStartParams; the service from `service` or PGSERVICE, found in
/// PGSERVICEFILE else ~/.pg_service.conf, then PGSYSCONFDIR or SYSCONFDIR),
/// which host entries libpq would look up and how the host, hostaddr and port
/// lists are rebuilt around their addresses. Reads only what `env` gives it;
/// never throws for the contents of the files (see left_to_libpq).
resolve_plan plan_resolution(const conninfo& ci, const environment_view& env);

/// The conninfo to hand to libpq once the plan's names are resolved:
/// `addresses[i]` holds the numeric addresses of slots[i] (ignored for slots
/// that need no resolution; empty when the name did not resolve, and the slot
/// is then dropped). Each address becomes a host entry of its own, with the
/// name as `host`, so that libpq still tries them in turn. Throws
/// errc::bad_conninfo for plan.bad_conninfo, and errc::connect_failed with
/// `failure` when no host entry is left.
conninfo apply_plan(conninfo ci, const resolve_plan& plan, const std::vector<std::vector<std::string>>& addresses,
                    const std::string& failure);

/// Resolves, without blocking the calling executor, every host name libpq
/// would otherwise look up itself, and returns the conninfo to hand to libpq:
/// every TCP host entry carries a numeric `hostaddr`; Unix-domain sockets and
/// entries that already have one are untouched; a conninfo libpq will reject
/// on its own (see resolve_plan::left_to_libpq) comes back unchanged.
///
/// Throws pgq::sql_error: errc::bad_conninfo when the host, hostaddr and port
/// counts do not match; errc::connect_failed ("could not translate host name
/// ...") when no host resolves. A host that does not resolve among others
/// that do is dropped. Cancellation (of the coroutine, or resolver.cancel()):
/// boost::system::system_error with asio::error::operation_aborted
/// propagates, for the caller to map to its own cancelled or timeout error.
boost::asio::awaitable<conninfo> resolve_hosts(conninfo ci, boost::asio::ip::tcp::resolver& resolver,
                                               environment_view env = environment_view::system());

}  // namespace pgq::detail
