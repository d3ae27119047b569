// The host resolution plan: which host entries libpq would look up (from the
// conninfo, service files and the environment) and how they are rewritten.
#include "driver/resolve.hpp"

#include <pgq/error.hpp>

#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

namespace {

using pgq::conninfo;
using pgq::detail::environment_view;
using pgq::detail::file_contents;
using pgq::detail::plan_resolution;
using pgq::detail::resolve_plan;

// A scripted environment and file system.
struct fake_env {
  std::map<std::string, std::string> vars;
  std::map<std::string, file_contents> files;
  std::optional<std::string> home = "/home/u";
  std::string sysconfdir = "/etc/pg";

  void file(const std::string& path, std::string text) {
    files[path] = file_contents{file_contents::state::ok, std::move(text)};
  }

  environment_view view() const {
    environment_view env;
    env.getenv = [vars = vars](const char* name) -> std::optional<std::string> {
      auto it = vars.find(name);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
    env.read_file = [files = files](const std::string& path) {
      auto it = files.find(path);
      return it == files.end() ? file_contents{} : it->second;
    };
    env.home_directory = [home = home] { return home; };
    env.sysconfdir = sysconfdir;
    return env;
  }

  resolve_plan plan(const char* text) const { return plan_resolution(conninfo::parse(text), view()); }
};

// "host|hostaddr|port|R" per slot, R when it needs resolving.
std::vector<std::string> slots(const resolve_plan& p) {
  std::vector<std::string> out;
  for (const auto& s : p.slots) out.push_back(s.host + "|" + s.hostaddr + "|" + s.port + (s.resolve ? "|R" : ""));
  return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_CASE("plan: names in the conninfo are resolved, numbers and sockets are not", "[resolve]") {
  fake_env env;
  SECTION("one name") {
    auto p = env.plan("host=db.example");
    CHECK(slots(p) == strings{"db.example|||R"});
    CHECK(p.rewrite);
    CHECK(p.needs_resolution());
  }
  SECTION("Unix sockets, abstract ones and the default stay with libpq") {
    auto p = env.plan("host=/run/postgresql,@abstract");
    CHECK(slots(p) == strings{"/run/postgresql||", "@abstract||"});
    CHECK_FALSE(p.rewrite);
    CHECK(slots(env.plan("dbname=x")) == strings{"||"});
    CHECK_FALSE(env.plan("dbname=x").rewrite);
  }
  SECTION("IPv4 and IPv6 literals become their own hostaddr") {
    auto p = env.plan("host=10.0.0.1,::1,fe80::1");
    CHECK(slots(p) == strings{"10.0.0.1|10.0.0.1|", "::1|::1|", "fe80::1|fe80::1|"});
    CHECK(p.rewrite);
    CHECK_FALSE(p.needs_resolution());
    CHECK(slots(env.plan("postgresql://[::1]:5433,[2001:db8::2]/db")) ==
          strings{"::1|::1|5433", "2001:db8::2|2001:db8::2|"});
  }
  SECTION("a complete hostaddr leaves nothing to do") {
    auto p = env.plan("host=a,b hostaddr=10.0.0.1,10.0.0.2");
    CHECK(slots(p) == strings{"a|10.0.0.1|", "b|10.0.0.2|"});
    CHECK_FALSE(p.rewrite);
    CHECK_FALSE(env.plan("hostaddr=10.0.0.1").rewrite);
  }
}

TEST_CASE("plan: empty hostaddr entries leave their host to be looked up", "[resolve]") {
  fake_env env;
  auto p = env.plan("host=a,b,c hostaddr=10.0.0.1,,");
  CHECK(slots(p) == strings{"a|10.0.0.1|", "b|||R", "c|||R"});
  // An empty entry with no host is libpq's default socket.
  CHECK(slots(env.plan("host=a, hostaddr=,")) == strings{"a|||R", "||"});
  CHECK(slots(env.plan("hostaddr=10.0.0.1,")) == strings{"|10.0.0.1|", "||"});
}

TEST_CASE("plan: host, hostaddr and port counts that libpq would reject", "[resolve]") {
  fake_env env;
  // libpq 15 (connectOptions2) counts hosts by hostaddr and requires as
  // many host entries: a shorter hostaddr list is an error, not a lookup.
  CHECK(env.plan("host=a,b hostaddr=10.0.0.1").bad_conninfo == "could not match 2 host names to 1 hostaddr values");
  CHECK(env.plan("host=a hostaddr=10.0.0.1,10.0.0.2").bad_conninfo ==
        "could not match 1 host names to 2 hostaddr values");
  CHECK(env.plan("host=a,b,c port=1,2").bad_conninfo == "could not match 2 port numbers to 3 hosts");
  CHECK(env.plan("port=1,2").bad_conninfo == "could not match 2 port numbers to 1 hosts");
  CHECK_THROWS_MATCHES(
      pgq::detail::apply_plan(conninfo::parse("host=a,b port=1,2,3"), env.plan("host=a,b port=1,2,3"), {}, ""),
      pgq::sql_error,
      Catch::Predicate<pgq::sql_error>([](const pgq::sql_error& e) { return e.code() == pgq::errc::bad_conninfo; }));
}

TEST_CASE("plan: multiple hosts and ports", "[resolve]") {
  fake_env env;
  SECTION("one port for all: left to libpq") {
    auto p = env.plan("host=a,b port=6000");
    CHECK(slots(p) == strings{"a|||R", "b|||R"});
    CHECK_FALSE(p.per_host_ports);
  }
  SECTION("a port per host travels with its host") {
    auto p = env.plan("host=a,/tmp,b port=6000,6001,");
    CHECK(slots(p) == strings{"a||6000|R", "/tmp||6001", "b|||R"});
    CHECK(p.per_host_ports);
  }
  SECTION("from the environment") {
    env.vars = {{"PGHOST", "a,b"}, {"PGPORT", "1,2"}};
    CHECK(slots(env.plan("")) == strings{"a||1|R", "b||2|R"});
    env.vars["PGHOSTADDR"] = "10.0.0.1,";
    CHECK(slots(env.plan("")) == strings{"a|10.0.0.1|1", "b||2|R"});
    // The conninfo wins; an empty value in it is no setting (PQconnectStartParams
    // skips empty values).
    CHECK(slots(env.plan("host=c,d port=3")) == strings{"c|10.0.0.1|", "d|||R"});
    CHECK(env.plan("host=c port='' hostaddr=''").bad_conninfo == "could not match 1 host names to 2 hostaddr values");
  }
}

TEST_CASE("apply_plan: one host entry per address, the name kept as host", "[resolve]") {
  fake_env env;
  const char* text = "host=a,/tmp,b,c port=1,2,3,4 dbname=d";
  auto p = env.plan(text);
  auto ci = pgq::detail::apply_plan(conninfo::parse(text), p, {{"10.0.0.1", "::1"}, {}, {}, {"10.0.0.3"}}, "b failed");
  CHECK(ci.get("host") == "a,a,/tmp,c");
  CHECK(ci.get("hostaddr") == "10.0.0.1,::1,,10.0.0.3");
  CHECK(ci.get("port") == "1,1,2,4");
  CHECK(ci.get("dbname") == "d");

  SECTION("a single port is not rewritten") {
    auto p1 = env.plan("host=a port=7");
    auto c1 = pgq::detail::apply_plan(conninfo::parse("host=a port=7"), p1, {{"10.0.0.1", "10.0.0.2"}}, "");
    CHECK(c1.get("host") == "a,a");
    CHECK(c1.get("port") == "7");
  }
  SECTION("nothing resolved: connect_failed with the failure") {
    auto p2 = env.plan("host=a,b");
    try {
      (void)pgq::detail::apply_plan(conninfo::parse("host=a,b"), p2, {{}, {}}, "could not translate host name \"b\"");
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::connect_failed);
      CHECK_THAT(e.what(), Catch::Contains("could not translate host name \"b\""));
    }
  }
  SECTION("nothing to rewrite: the conninfo is untouched") {
    auto c3 = pgq::detail::apply_plan(conninfo::parse("host=/tmp port=1"), env.plan("host=/tmp port=1"), {{}}, "");
    CHECK(c3.entries() == conninfo::parse("host=/tmp port=1").entries());
  }
}

TEST_CASE("plan: hosts from a service file", "[resolve][service]") {
  fake_env env;
  const std::string user = "/home/u/.pg_service.conf";
  const std::string system = "/etc/pg/pg_service.conf";
  env.file(user,
           "# comment\n"
           "[other]\nhost=elsewhere\n"
           "  [main]  \n"
           "host=db1,db2\n"
           "port=6001,6002\n"
           "host=ignored.second.value\n"
           "dbname=app\n"
           "[next]\n"
           "this line is not parsed\n");
  env.file(system, "[main]\nhost=system.example\n[sys]\nhost=sys.example\nhostaddr=10.9.9.9\nport=7000\n");

  SECTION("service= in the conninfo") {
    auto p = env.plan("service=main");
    CHECK(p.service_file == user);
    CHECK(p.host == "db1,db2");
    CHECK(slots(p) == strings{"db1||6001|R", "db2||6002|R"});
  }
  SECTION("PGSERVICE") {
    env.vars["PGSERVICE"] = "main";
    CHECK(slots(env.plan("")) == strings{"db1||6001|R", "db2||6002|R"});
    // service= in the conninfo wins over PGSERVICE.
    CHECK(slots(env.plan("service=sys")) == strings{"sys.example|10.9.9.9|"});
  }
  SECTION("~/.pg_service.conf first, then the system file") {
    CHECK(env.plan("service=sys").service_file == system);
    CHECK(env.plan("service=sys").port == "7000");
    env.files.erase(user);
    CHECK(slots(env.plan("service=main")) == strings{"system.example|||R"});
  }
  SECTION("PGSYSCONFDIR moves the system file") {
    env.vars["PGSYSCONFDIR"] = "/opt/pg";
    env.file("/opt/pg/pg_service.conf", "[sys]\nhost=opt.example\n");
    auto p = env.plan("service=sys");
    CHECK(p.service_file == "/opt/pg/pg_service.conf");
    CHECK(slots(p) == strings{"opt.example|||R"});
  }
  SECTION("PGSERVICEFILE replaces ~/.pg_service.conf") {
    env.vars["PGSERVICEFILE"] = "/srv/services.conf";
    env.file("/srv/services.conf", "[main]\nhost=srv.example\n");
    CHECK(slots(env.plan("service=main")) == strings{"srv.example|||R"});
    // Without the service there, the system file; ~ is not read at all.
    CHECK(env.plan("service=sys").service_file == system);
    env.files.erase(system);
    CHECK(env.plan("service=other").left_to_libpq == "definition of service \"other\" not found");
  }
  SECTION("a missing PGSERVICEFILE is an error, a missing ~/.pg_service.conf is not") {
    env.vars["PGSERVICEFILE"] = "/nowhere.conf";
    CHECK(env.plan("service=main").left_to_libpq == "service file \"/nowhere.conf\" not found");
    env.vars.erase("PGSERVICEFILE");
    env.files.erase(user);
    env.home.reset();
    CHECK(env.plan("service=sys").left_to_libpq.empty());
  }
  SECTION("a file that exists but cannot be read is an error") {
    env.files[user].status = file_contents::state::unreadable;
    CHECK(env.plan("service=sys").left_to_libpq == "service file \"" + user + "\" not found");
  }
  SECTION("the conninfo overrides the service, the service overrides the environment") {
    env.vars = {{"PGHOST", "env.example"}, {"PGPORT", "9"}, {"PGHOSTADDR", "10.1.1.1"}};
    CHECK(slots(env.plan("service=main host=mine port=5")) == strings{"mine|10.1.1.1|"});
    // hostaddr from PGHOSTADDR pairs with the service's host.
    CHECK(env.plan("service=sys").hostaddr == "10.9.9.9");
    CHECK(env.plan("service=main hostaddr=''").bad_conninfo == "could not match 2 host names to 1 hostaddr values");
    env.vars.erase("PGHOSTADDR");
    CHECK(slots(env.plan("service=main host=''")) == strings{"db1||6001|R", "db2||6002|R"});
    env.vars["PGSERVICE"] = "sys";
    CHECK(env.plan("service=''").service_file == "/etc/pg/pg_service.conf");
    env.vars["PGHOSTADDR"] = "10.1.1.1";
    // A service without host: PGHOST.
    env.file(user, "[nohost]\ndbname=x\n");
    CHECK(slots(env.plan("service=nohost")) == strings{"env.example|10.1.1.1|"});
  }
  SECTION("a service that sets hostaddr for some hosts only") {
    env.file(user, "[partial]\nhost=a,b\nhostaddr=10.0.0.1,\n");
    CHECK(slots(env.plan("service=partial")) == strings{"a|10.0.0.1|", "b|||R"});
  }
  SECTION("a missing service is left to libpq, which fails with its own error") {
    auto p = env.plan("service=nope host=a");
    CHECK(p.left_to_libpq == "definition of service \"nope\" not found");
    CHECK(p.slots.empty());
    auto ci = pgq::detail::apply_plan(conninfo::parse("service=nope host=a"), p, {}, "");
    CHECK(ci.get("hostaddr") == std::nullopt);
  }
  SECTION("the group name must match exactly; text after ] is ignored as libpq does") {
    env.file(user, "[mainx]\nhost=x\n[main]trailing\nhost=y\n");
    CHECK(env.plan("service=main").host == "y");
    CHECK(env.plan("service=mai").left_to_libpq.empty() == false);
  }
}

TEST_CASE("plan: malformed service files are left to libpq", "[resolve][service]") {
  fake_env env;
  const std::string user = "/home/u/.pg_service.conf";
  auto error_for = [&](std::string text) {
    env.file(user, std::move(text));
    return env.plan("service=s").left_to_libpq;
  };
  CHECK(error_for("[s]\nhost db\n") == "syntax error in service file \"" + user + "\", line 2");
  // libpq trims neither the key nor the start of the value.
  CHECK(error_for("[s]\nhost = db\n") == "syntax error in service file \"" + user + "\", line 2");
  CHECK(error_for("[s]\nhots=db\n") == "syntax error in service file \"" + user + "\", line 2");
  CHECK(error_for("[s]\nservice=t\n") ==
        "nested service specifications not supported in service file \"" + user + "\", line 2");
  CHECK(error_for("# x\n" + std::string(1022, 'x') + "\n[s]\nhost=a\n") ==
        "line 2 too long in service file \"" + user + "\"");
  CHECK(error_for("[s]\nhost=a\n" + std::string(1021, '#') + "\n").empty());
  CHECK(error_for("[s]\nldap://ldap.example/dc=x?y\n") == "service \"s\" in \"" + user + "\" is looked up in LDAP");
  // Lines outside the group are not parsed.
  CHECK(error_for("[t]\nnot a setting\n[s]\nhost=a\n[u]\nnor this\n").empty());
  CHECK(env.plan("service=s").host == "a");
  // The value keeps its leading spaces, as libpq does.
  CHECK(error_for("[s]\nhost=  a\n").empty());
  CHECK(env.plan("service=s").host == "  a");
}

// The same conninfo, environment and files given to libpq itself: it must
// agree with the plan on the host, hostaddr and port it ends up with. Only
// Unix sockets and numeric addresses, so that libpq looks nothing up.
TEST_CASE("plan: agrees with libpq on service files and the environment", "[resolve][service][libpq]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("pgq_resolve_" + std::to_string(::getpid()));
  fs::create_directories(dir / "sys");
  struct restore {
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
    void set(const char* name, const std::optional<std::string>& v) {
      const char* old = std::getenv(name);
      saved.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (v) {
        ::setenv(name, v->c_str(), 1);
      } else {
        ::unsetenv(name);
      }
    }
    ~restore() {
      for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
        if (it->second) {
          ::setenv(it->first.c_str(), it->second->c_str(), 1);
        } else {
          ::unsetenv(it->first.c_str());
        }
      }
    }
  } env;
  std::ofstream(dir / "user.conf") << "[a]\nhost=/nonexistent/a1,/nonexistent/a2\nport=1,2\n"
                                   << "[b]\nhostaddr=127.0.0.1\nport=1\n"
                                   << "[bad]\nhost /x\n";
  std::ofstream(dir / "sys" / "pg_service.conf") << "[a]\nhost=/nonexistent/sys\n"
                                                 << "[c]\nhost=/nonexistent/c\nhostaddr=127.0.0.2,\n";
  // ~/.pg_service.conf through $HOME, for the one case without PGSERVICEFILE.
  std::ofstream(dir / ".pg_service.conf") << "[home]\nhost=/nonexistent/home\n";
  env.set("HOME", dir.string());
  env.set("PGSERVICEFILE", (dir / "user.conf").string());
  env.set("PGSYSCONFDIR", (dir / "sys").string());
  env.set("PGSERVICE", std::nullopt);
  env.set("PGHOST", "/nonexistent/env");
  env.set("PGHOSTADDR", std::nullopt);
  env.set("PGPORT", "3");
  env.set("PGCONNECT_TIMEOUT", "1");

  const char* cases[] = {
      "service=a",
      "service=b",
      "service=c",
      "service=a host=/nonexistent/x",
      "service=b port=''",
      "dbname=x",
      "service=missing",
      "service=bad",
      "service=c hostaddr=127.0.0.3",
      "service=a host=''",
      "service='' dbname=x",
      "service=home",
  };
  for (const char* text : cases) {
    INFO("conninfo: " << text);
    const conninfo ci = conninfo::parse(text);
    if (std::string_view(text) == "service=home") ::unsetenv("PGSERVICEFILE");
    const resolve_plan plan = plan_resolution(ci, environment_view::system());
    std::vector<const char*> keys, values;
    for (const auto& [k, v] : ci.entries()) {
      keys.push_back(k.c_str());
      values.push_back(v.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    PGconn* conn = PQconnectStartParams(keys.data(), values.data(), 0);
    REQUIRE(conn != nullptr);
    const std::string error = PQerrorMessage(conn);
    std::map<std::string, std::string> used;
    if (PQconninfoOption* opts = PQconninfo(conn)) {
      for (auto* o = opts; o->keyword != nullptr; ++o) {
        if (o->val != nullptr) used[o->keyword] = o->val;
      }
      PQconninfoFree(opts);
    }
    PQfinish(conn);
    if (!plan.left_to_libpq.empty()) {
      CHECK_THAT(error, Catch::Contains(plan.left_to_libpq));
      continue;
    }
    if (!plan.bad_conninfo.empty()) {
      CHECK_THAT(error, Catch::Contains(plan.bad_conninfo));
      continue;
    }
    CHECK(used["host"] == plan.host);
    CHECK(used["hostaddr"] == plan.hostaddr);
    // libpq fills in its default port when none is set.
    CHECK((used["port"] == plan.port || (plan.port.empty() && used["port"] == "5432")));
  }
  fs::remove_all(dir);
}
