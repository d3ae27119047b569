// Host names from a service file are resolved by pgq, not by libpq's blocking
// getaddrinfo (issue 13, #10).
#include "support.hpp"

#include "driver/resolve.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <unistd.h>

using namespace pgq_test;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// A service file of its own, named by PGSERVICEFILE for the test's lifetime.
class scoped_service_file {
 public:
  explicit scoped_service_file(const std::string& text)
      : path_(fs::temp_directory_path() / (unique_name("pgq_service") + ".conf")) {
    std::ofstream(path_) << text;
    if (const char* old = std::getenv("PGSERVICEFILE")) old_ = old;
    ::setenv("PGSERVICEFILE", path_.c_str(), 1);
  }
  ~scoped_service_file() {
    if (old_) {
      ::setenv("PGSERVICEFILE", old_->c_str(), 1);
    } else {
      ::unsetenv("PGSERVICEFILE");
    }
    std::error_code ignored;
    fs::remove(path_, ignored);
  }
  scoped_service_file(const scoped_service_file&) = delete;
  scoped_service_file& operator=(const scoped_service_file&) = delete;

 private:
  fs::path path_;
  std::optional<std::string> old_;
};

// The service [name]: the test server's port, database and credentials, with
// `host` as given.
std::string service_for_test_server(const std::string& name, const std::string& host) {
  const pgq::conninfo server = pgq::conninfo::parse(dsn());
  std::string text = "# written by pgq's integration tests\n[" + name + "]\nhost=" + host + "\n";
  for (const char* key : {"port", "dbname", "user", "password"}) {
    if (auto v = server.get(key)) text += std::string(key) + "=" + *v + "\n";
  }
  return text;
}

bool numeric(const std::string& s) {
  boost::system::error_code ec;
  asio::ip::make_address(s, ec);
  return !ec;
}

asio::awaitable<void> connect_through_service(std::string conninfo_text) {
  // What pgq hands libpq: every host entry with a numeric hostaddr.
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  const pgq::conninfo out = co_await pgq::detail::resolve_hosts(pgq::conninfo::parse(conninfo_text), resolver);
  INFO("handed to libpq: " << out.redacted());
  REQUIRE(out.get("host"));
  REQUIRE(out.get("hostaddr"));
  const std::string hosts = *out.get("host");
  const std::string addrs = *out.get("hostaddr");
  std::size_t n_hosts = 1, n_addrs = 1;
  for (char c : hosts) n_hosts += c == ',';
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = addrs.find(',', start);
    const std::string a = addrs.substr(start, comma == std::string::npos ? comma : comma - start);
    CHECK(numeric(a));
    if (comma == std::string::npos) break;
    ++n_addrs;
    start = comma + 1;
  }
  CHECK(n_hosts == n_addrs);
  CHECK(hosts.find("localhost") != std::string::npos);  // the name stays, for TLS and messages

  // And the connection itself works.
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(conninfo_text);
  auto r = co_await conn.query("SELECT current_database(), host(inet_server_addr())");
  REQUIRE(r.size() == 1);
  CHECK(r[0].get<std::string>(0) == *pgq::conninfo::parse(dsn()).get("dbname"));
  CHECK(numeric(r[0].get<std::string>(1)));
}

struct failure_report {
  int ticks_during = 0;
  std::chrono::milliseconds elapsed{0};
  std::optional<pgq::error_code> code;
  std::string message;
};

asio::awaitable<void> tick(std::shared_ptr<int> ticks, std::shared_ptr<bool> stop) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!*stop) {
    // Due at once: it ticks whenever the event loop is free to run it.
    timer.expires_after(std::chrono::milliseconds(0));
    co_await timer.async_wait(asio::use_awaitable);
    ++*ticks;
  }
}

asio::awaitable<void> fail_to_connect(std::string conninfo_text, std::shared_ptr<failure_report> report,
                                      pgq::connect_options opts = {}) {
  auto ticks = std::make_shared<int>(0);
  auto stop = std::make_shared<bool>(false);
  asio::co_spawn(co_await asio::this_coro::executor, tick(ticks, stop), asio::detached);
  pgq::connection conn(co_await asio::this_coro::executor);
  const int before = *ticks;
  const auto start = std::chrono::steady_clock::now();
  try {
    co_await conn.connect(conninfo_text, opts);
  } catch (const pgq::sql_error& e) {
    report->code = e.code();
    report->message = e.what();
  }
  report->elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  report->ticks_during = *ticks - before;
  *stop = true;
}

}  // namespace

TEST_CASE("a host name from a service file reaches libpq as a numeric hostaddr", "[resolve][service]") {
  scoped_service_file file(service_for_test_server("pgq_resolve", "localhost"));
  run([] { return connect_through_service("service=pgq_resolve"); });
}

TEST_CASE("a host with an empty hostaddr entry is resolved by pgq", "[resolve]") {
  const pgq::conninfo server = pgq::conninfo::parse(dsn());
  const std::string port = server.get("port").value_or("5432");
  pgq::conninfo ci = server;
  ci.set("host", "localhost,localhost");
  ci.set("hostaddr", ",127.0.0.1");
  ci.set("port", port + "," + port);
  run([text = ci.to_string()] { return connect_through_service(text); });
}

TEST_CASE("a service whose host never resolves fails quickly without blocking the event loop", "[resolve][service]") {
  scoped_service_file file(service_for_test_server("pgq_unresolvable", "nonexistent.invalid"));
  auto report = std::make_shared<failure_report>();
  run([report] { return fail_to_connect("service=pgq_unresolvable connect_timeout=10", report); }, 15s);
  INFO("error: " << report->message);
  REQUIRE(report->code);
  CHECK(*report->code == pgq::errc::connect_failed);
  CHECK_THAT(report->message, Catch::Contains("could not translate host name \"nonexistent.invalid\""));
  CHECK(report->elapsed < std::chrono::seconds(5));
  // The resolution ran off the event loop: the timer ticked meanwhile.
  CHECK(report->ticks_during > 0);

  SECTION("what the test tells apart: libpq resolving the name itself blocks the loop") {
    auto blocking = std::make_shared<failure_report>();
    pgq::connect_options opts;
    opts.resolve_hosts = false;
    run([blocking, opts] { return fail_to_connect("service=pgq_unresolvable", blocking, opts); }, 15s);
    INFO("error: " << blocking->message);
    REQUIRE(blocking->code);
    CHECK(*blocking->code == pgq::errc::connect_failed);
    CHECK_THAT(blocking->message, Catch::Contains("nonexistent.invalid"));
    CHECK(blocking->ticks_during == 0);
  }
}

TEST_CASE("a service that does not exist keeps libpq's error", "[resolve][service]") {
  scoped_service_file file(service_for_test_server("pgq_present", "localhost"));
  auto report = std::make_shared<failure_report>();
  run([report] { return fail_to_connect("service=pgq_absent", report); });
  REQUIRE(report->code);
  CHECK(*report->code == pgq::errc::connect_failed);
  CHECK_THAT(report->message, Catch::Contains("definition of service \"pgq_absent\" not found"));
}
