#include "driver/resolve.hpp"

#include <pgq/error.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libpq-fe.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

#ifndef PGQ_LIBPQ_SYSCONFDIR
#define PGQ_LIBPQ_SYSCONFDIR "/usr/local/pgsql/etc"  // libpq's own default
#endif

namespace asio = boost::asio;

namespace pgq::detail {

namespace {

// libpq's lists: split on every comma, no trimming, no escapes
// (parse_comma_separated_list in fe-connect.c).
std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = s.find(',', start);
    out.emplace_back(s.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string join_list(const std::vector<std::string>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i != 0) out += ',';
    out += v[i];
  }
  return out;
}

// is_unixsock_path() in libpq: an absolute path, or '@' for Linux's abstract
// namespace.
bool is_unix_socket(std::string_view host) { return !host.empty() && (host.front() == '/' || host.front() == '@'); }

// isspace() in the C locale, which is what libpq's service file parser sees.
bool c_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

// The keywords a service file may set: all of libpq's connection options.
const std::vector<std::string>& libpq_keywords() {
  static const std::vector<std::string> keywords = [] {
    std::vector<std::string> out;
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse("", &err);
    if (err != nullptr) PQfreemem(err);
    if (opts == nullptr) throw std::bad_alloc();
    for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) out.emplace_back(o->keyword);
    PQconninfoFree(opts);
    return out;
  }();
  return keywords;
}

// The service's settings, as parseServiceInfo() in libpq 15 finds them.
struct service_lookup {
  enum class outcome { none, found, failed, ldap };
  outcome result = outcome::none;
  std::vector<std::pair<std::string, std::string>> values;  // the first value of each key wins
  std::string file;
  std::string message;  // why it failed

  std::optional<std::string> get(std::string_view key) const {
    for (const auto& [k, v] : values) {
      if (k == key) return v;
    }
    return std::nullopt;
  }
};

enum class parse_status { ok, failed, ldap };

// parseServiceFile(): reads lines as fgets() into a 1024-byte buffer does,
// and stops at the end of the service's first group.
parse_status parse_service_file(const std::string& path, const file_contents& file, const std::string& service,
                                service_lookup& out, bool& group_found) {
  group_found = false;
  if (file.status != file_contents::state::ok) {
    out.message = "service file \"" + path + "\" not found";
    return parse_status::failed;
  }
  constexpr std::size_t buffer_size = 1024;
  const std::string& text = file.text;
  std::size_t pos = 0;
  int line_number = 0;
  while (pos < text.size()) {
    const std::size_t newline = text.find('\n', pos);
    std::size_t end = newline == std::string::npos ? text.size() : newline + 1;
    end = std::min(end, pos + buffer_size - 1);
    std::string_view line(text.data() + pos, end - pos);
    pos = end;
    ++line_number;
    line = line.substr(0, line.find('\0'));  // libpq goes by strlen()
    if (line.size() >= buffer_size - 1) {
      out.message = "line " + std::to_string(line_number) + " too long in service file \"" + path + "\"";
      return parse_status::failed;
    }
    while (!line.empty() && c_space(line.back())) line.remove_suffix(1);
    while (!line.empty() && c_space(line.front())) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;

    if (line.front() == '[') {
      if (group_found) return parse_status::ok;  // the end of the service's group
      const std::string_view name = line.substr(1);
      group_found =
          name.size() > service.size() && name.compare(0, service.size(), service) == 0 && name[service.size()] == ']';
      continue;
    }
    if (!group_found) continue;
    // libpq (built with LDAP, as Debian's is) looks these up on an LDAP server.
    if (line.starts_with("ldap")) {
      out.message = "service \"";
      out.message += service;
      out.message += "\" in \"";
      out.message += path;
      out.message += "\" is looked up in LDAP";
      return parse_status::ldap;
    }
    const std::size_t eq = line.find('=');
    const std::string where = " in service file \"" + path + "\", line " + std::to_string(line_number);
    if (eq == std::string_view::npos) {
      out.message = "syntax error" + where;
      return parse_status::failed;
    }
    const std::string_view key = line.substr(0, eq);
    const std::string_view value = line.substr(eq + 1);
    if (key == "service") {
      out.message = "nested service specifications not supported" + where;
      return parse_status::failed;
    }
    const auto& keywords = libpq_keywords();
    if (std::find(keywords.begin(), keywords.end(), key) == keywords.end()) {
      out.message = "syntax error" + where;
      return parse_status::failed;
    }
    if (!out.get(key)) out.values.emplace_back(std::string(key), std::string(value));
  }
  return parse_status::ok;
}

// A setting of the conninfo. pgq hands libpq keyword and value arrays, and
// conninfo_array_parse() skips empty values: "host=''" is no setting at all.
std::optional<std::string> explicit_setting(const conninfo& ci, std::string_view key) {
  auto v = ci.get(key);
  if (v && v->empty()) v.reset();
  return v;
}

service_lookup lookup_service(const conninfo& ci, const environment_view& env) {
  service_lookup out;
  std::optional<std::string> service = explicit_setting(ci, "service");
  if (!service) service = env.getenv("PGSERVICE");
  if (!service) return out;

  auto finish = [&](parse_status st, const std::string& path) {
    out.file = path;
    out.result = st == parse_status::ok     ? service_lookup::outcome::found
                 : st == parse_status::ldap ? service_lookup::outcome::ldap
                                            : service_lookup::outcome::failed;
  };

  // PGSERVICEFILE is read whether or not it exists (a missing one is an
  // error); ~/.pg_service.conf only if it exists.
  std::optional<std::string> user_file = env.getenv("PGSERVICEFILE");
  std::optional<file_contents> user_contents;
  if (user_file) {
    user_contents = env.read_file(*user_file);
  } else if (auto home = env.home_directory()) {
    user_file = *home + "/.pg_service.conf";
    user_contents = env.read_file(*user_file);
    if (user_contents->status == file_contents::state::missing) user_contents.reset();
  }
  bool group_found = false;
  if (user_contents) {
    const parse_status st = parse_service_file(*user_file, *user_contents, *service, out, group_found);
    if (group_found || st != parse_status::ok) {
      finish(st, *user_file);
      return out;
    }
  }

  const std::string system_file = env.getenv("PGSYSCONFDIR").value_or(env.sysconfdir) + "/pg_service.conf";
  const file_contents system_contents = env.read_file(system_file);
  if (system_contents.status != file_contents::state::missing) {
    const parse_status st = parse_service_file(system_file, system_contents, *service, out, group_found);
    if (st != parse_status::ok) {
      finish(st, system_file);
      return out;
    }
  }
  if (!group_found) {
    out.result = service_lookup::outcome::failed;
    out.message = "definition of service \"" + *service + "\" not found";
    return out;
  }
  finish(parse_status::ok, system_file);
  return out;
}

bool is_numeric_address(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

bool resolve_plan::needs_resolution() const noexcept {
  return std::any_of(slots.begin(), slots.end(), [](const host_slot& s) { return s.resolve; });
}

resolve_plan plan_resolution(const conninfo& ci, const environment_view& env) {
  resolve_plan plan;
  const service_lookup service = lookup_service(ci, env);
  if (service.result == service_lookup::outcome::failed || service.result == service_lookup::outcome::ldap) {
    plan.left_to_libpq = service.message;
    plan.service_file = service.file;
    return plan;
  }
  plan.service_file = service.file;

  // conninfo_add_defaults(): the conninfo, then the service, then the
  // environment (set but empty counts as set).
  auto setting = [&](const char* key, const char* variable) -> std::string {
    if (auto v = explicit_setting(ci, key)) return *v;
    if (auto v = service.get(key)) return *v;
    return env.getenv(variable).value_or("");
  };
  const std::string& host = plan.host = setting("host", "PGHOST");
  const std::string& hostaddr = plan.hostaddr = setting("hostaddr", "PGHOSTADDR");
  const std::string& port = plan.port = setting("port", "PGPORT");

  // connectOptions2(): hostaddr, if not empty, says how many hosts there
  // are, then host; neither is one default host (the Unix socket directory).
  const std::vector<std::string> addrs = hostaddr.empty() ? std::vector<std::string>{} : split_list(hostaddr);
  const std::vector<std::string> hosts = host.empty() ? std::vector<std::string>{} : split_list(host);
  const std::size_t n = !addrs.empty() ? addrs.size() : !hosts.empty() ? hosts.size() : 1;
  if (!hosts.empty() && hosts.size() != n) {
    plan.bad_conninfo =
        "could not match " + std::to_string(hosts.size()) + " host names to " + std::to_string(n) + " hostaddr values";
    return plan;
  }
  std::vector<std::string> ports = port.empty() ? std::vector<std::string>{} : split_list(port);
  if (ports.size() > 1) {
    if (ports.size() != n) {
      plan.bad_conninfo =
          "could not match " + std::to_string(ports.size()) + " port numbers to " + std::to_string(n) + " hosts";
      return plan;
    }
    plan.per_host_ports = true;
  }
  for (std::size_t i = 0; i < n; ++i) {
    host_slot s;
    if (!hosts.empty()) s.host = hosts[i];
    if (!addrs.empty()) s.hostaddr = addrs[i];
    if (plan.per_host_ports) s.port = ports[i];
    // An empty hostaddr entry leaves libpq to look the host entry up.
    if (s.hostaddr.empty() && !s.host.empty() && !is_unix_socket(s.host)) {
      if (is_numeric_address(s.host)) {
        s.hostaddr = s.host;
      } else {
        s.resolve = true;
      }
      plan.rewrite = true;
    }
    plan.slots.push_back(std::move(s));
  }
  return plan;
}

conninfo apply_plan(conninfo ci, const resolve_plan& plan, const std::vector<std::vector<std::string>>& addresses,
                    const std::string& failure) {
  if (!plan.left_to_libpq.empty()) return ci;
  if (!plan.bad_conninfo.empty()) throw sql_error(errc::bad_conninfo, plan.bad_conninfo);
  if (!plan.rewrite) return ci;

  std::vector<std::string> hosts, addrs, ports;
  for (std::size_t i = 0; i < plan.slots.size(); ++i) {
    const host_slot& s = plan.slots[i];
    auto keep = [&](const std::string& addr) {
      hosts.push_back(s.host);
      addrs.push_back(addr);
      ports.push_back(s.port);
    };
    if (!s.resolve) {
      keep(s.hostaddr);
    } else if (i < addresses.size()) {
      for (const std::string& a : addresses[i]) keep(a);
    }
  }
  if (hosts.empty()) throw sql_error(errc::connect_failed, failure.empty() ? "no host to connect to" : failure);
  ci.set("host", join_list(hosts));
  ci.set("hostaddr", join_list(addrs));
  if (plan.per_host_ports) ci.set("port", join_list(ports));
  return ci;
}

asio::awaitable<conninfo> resolve_hosts(conninfo ci, asio::ip::tcp::resolver& resolver, environment_view env) {
  const resolve_plan plan = plan_resolution(ci, env);
  std::vector<std::vector<std::string>> addresses(plan.slots.size());
  std::string failure;
  if (plan.left_to_libpq.empty() && plan.bad_conninfo.empty()) {
    for (std::size_t i = 0; i < plan.slots.size(); ++i) {
      const std::string& name = plan.slots[i].host;
      if (!plan.slots[i].resolve) continue;
      try {
        auto results = co_await resolver.async_resolve(name, "", asio::use_awaitable);
        for (const auto& entry : results) addresses[i].push_back(entry.endpoint().address().to_string());
      } catch (const boost::system::system_error& e) {
        if (e.code() == asio::error::operation_aborted) throw;
        failure = "could not translate host name \"" + name + "\" to address: " + e.code().message();
      }
    }
  }
  co_return apply_plan(std::move(ci), plan, addresses, failure);
}

environment_view environment_view::system() {
  environment_view env;
  env.getenv = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  env.read_file = [](const std::string& path) {
    file_contents out;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return out;
    out.status = file_contents::state::unreadable;
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "r"), &std::fclose);
    if (!f) return out;
    out.status = file_contents::state::ok;
    char buf[4096];
    std::size_t got = 0;
    // A read error (a directory) reads as end of file, as fgets() does for libpq.
    while ((got = std::fread(buf, 1, sizeof buf, f.get())) > 0) out.text.append(buf, got);
    return out;
  };
  env.home_directory = []() -> std::optional<std::string> {
    // pqGetHomeDirectory(): $HOME if set and not empty (libpq 15.11 and
    // later; before, only the password database), else the password database.
    if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return std::string(home);
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* result = nullptr;
    if (::getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr) {
      return std::nullopt;
    }
    return std::string(result->pw_dir);
  };
  env.sysconfdir = PGQ_LIBPQ_SYSCONFDIR;
  return env;
}

}  // namespace pgq::detail
