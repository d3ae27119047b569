// Security: parameters are always bound (never spliced into SQL), SCRAM-SHA-256
// authentication, secrets kept out of messages, and TLS with verify-full
// against a server of our own with a self-signed CA.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

const std::vector<std::string>& injection_strings() {
  static const std::vector<std::string> v = {
      "'); DROP TABLE {t}; --",
      "' OR '1'='1",
      "1; DELETE FROM {t}",
      "\\'; DROP TABLE {t}; --",
      "'' OR 1=1 --",
      "$1",
      "$$; DROP TABLE {t}; $$",
      "$tag$ DROP TABLE {t} $tag$",
      "E'\\x27'; DROP TABLE {t}",
      "\"; DROP TABLE {t}; --",
      "/* */ DROP TABLE {t}",
      "-- comment\nDROP TABLE {t}",
      "\\\\",
      "%s%s%s%n",
      "Robert'); DROP TABLE Students;--",
      "\xe2\x80\x99; DROP TABLE {t}; --",  // a typographic apostrophe
      "'\r\n; DROP TABLE {t}",
      "{\"a\": \"'); DROP TABLE {t}; --\"}",
  };
  return v;
}

std::string with_table(std::string s, const std::string& table) {
  for (auto p = s.find("{t}"); p != std::string::npos; p = s.find("{t}")) s.replace(p, 3, table);
  return s;
}

// Connects with `conninfo`, expecting failure; returns the exception's text.
asio::awaitable<std::string> failed_connect(std::string conninfo, pgq::errc expected) {
  pgq::connection conn(co_await asio::this_coro::executor);
  try {
    co_await conn.connect(conninfo, pgq::connect_options{.connect_timeout = std::chrono::milliseconds(5000)});
  } catch (const pgq::sql_error& e) {
    CHECK(e.code() == expected);
    co_return std::string(e.what());
  }
  FAIL("connected with " << pgq::conninfo::parse(conninfo).redacted());
  co_return std::string();
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A self-signed CA, a server certificate it signed for "localhost", and a
// second, unrelated CA, in a fresh temporary directory.
struct tls_files {
  std::filesystem::path dir;
  std::filesystem::path ca() const { return dir / "ca.crt"; }
  std::filesystem::path other_ca() const { return dir / "other-ca.crt"; }

  tls_files() {
    dir = std::filesystem::temp_directory_path() / unique_name("pgq-tls");
    std::filesystem::create_directories(dir);
    const std::string d = dir.string();
    const std::string quiet = " >/dev/null 2>&1";
    run_command("cd " + d +
                " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pgq-test-ca"
                " -keyout ca.key -out ca.crt" +
                quiet +
                " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pgq-other-ca"
                " -keyout other-ca.key -out other-ca.crt" +
                quiet +
                " && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost"
                " -keyout server.key -out server.csr" +
                quiet +
                " && printf 'subjectAltName=DNS:localhost\\n' > san.ext"
                " && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
                " -extfile san.ext -out server.crt" +
                quiet);
  }
  ~tls_files() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

}  // namespace

TEST_CASE("classic injection strings passed as parameters are stored verbatim", "[security]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = co_await connect();
    const std::string table = unique_name("victims");
    co_await conn.execute("CREATE TABLE " + table + " (id int, name text, doc jsonb)");
    pgq::pool_options o;
    o.conninfo = dsn();
    o.max_size = 2;
    pgq::pool pool(ex, o);
    const auto& evil = injection_strings();
    // Through every path that takes parameters: a connection, a pool, a
    // transaction, a batch; cached (prepared) and not.
    int id = 0;
    for (const auto& raw : evil) {
      const std::string s = with_table(raw, table);
      co_await conn.execute("INSERT INTO " + table + " (id, name) VALUES ($1::int4, $2)", id++, s);
      co_await pool.execute("INSERT INTO " + table + " (id, name) VALUES ($1::int4, $2)", id++, s);
      auto tx = co_await conn.begin();
      co_await tx.execute("INSERT INTO " + table + " (id, name) VALUES ($1::int4, $2)", id++, s);
      co_await tx.commit();
    }
    pgq::batch b;
    for (const auto& raw : evil) {
      b.add("INSERT INTO " + table + " (id, name) VALUES ($1::int4, $2)", id++, with_table(raw, table));
    }
    co_await conn.run_batch(b, true);
    // A json document whose strings are injection attempts, bound as jsonb.
    nlohmann::json doc = {{"k", with_table(evil[0], table)}, {"list", evil}};
    co_await conn.execute("INSERT INTO " + table + " (id, doc) VALUES ($1::int4, $2::jsonb)", id++, doc);

    // The table is still there, holds every value, and each reads back
    // byte for byte; a lookup by the hostile value finds exactly its rows.
    auto count = co_await conn.query("SELECT count(*)::int4 FROM " + table);
    CHECK(count[0].get<int>(0) == id);
    for (std::size_t i = 0; i < evil.size(); ++i) {
      const std::string s = with_table(evil[i], table);
      auto r = co_await conn.query("SELECT name FROM " + table + " WHERE name = $1 ORDER BY id", s);
      REQUIRE(r.size() == 4);
      for (int k = 0; k < static_cast<int>(r.size()); ++k)
        CHECK(r[static_cast<std::size_t>(k)].get<std::string>(0) == s);
    }
    auto back = co_await conn.query("SELECT doc FROM " + table + " WHERE doc IS NOT NULL");
    REQUIRE(back.size() == 1);
    CHECK(back[0].get<nlohmann::json>(0) == doc);
    co_await conn.execute("DROP TABLE " + table);
  });
}

TEST_CASE("SCRAM-SHA-256: the right password connects, a wrong one is a clear error without it", "[security]") {
  run([]() -> asio::awaitable<void> {
    auto admin = co_await connect();
    // The test server asks TCP clients for scram-sha-256 (scripts/pg).
    auto rules = co_await admin.query(
        "SELECT count(*)::int4 FROM pg_hba_file_rules WHERE type = 'host' AND auth_method = 'scram-sha-256'");
    CHECK(rules[0].get<int>(0) >= 1);
    auto trusting = co_await admin.query(
        "SELECT count(*)::int4 FROM pg_hba_file_rules WHERE type = 'host' AND auth_method IN ('trust', 'md5', "
        "'password')");
    CHECK(trusting[0].get<int>(0) == 0);

    const std::string role = unique_name("pgq_scram");
    const std::string password = "Sw0rdfish-" + role;
    co_await admin.execute("SET password_encryption = 'scram-sha-256'");
    co_await admin.execute("CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'");
    auto stored = co_await admin.query("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role);
    CHECK(stored[0].get<std::string>(0).rfind("SCRAM-SHA-256$", 0) == 0);

    auto ci = pgq::conninfo::parse(dsn());
    ci.set("user", role);
    ci.set("password", password);
    {
      pgq::connection ok(co_await asio::this_coro::executor);
      co_await ok.connect(ci.to_string());
      auto who = co_await ok.query("SELECT current_user::text");
      CHECK(who[0].get<std::string>(0) == role);
    }
    const std::string wrong = "Wr0ng-" + password;
    ci.set("password", wrong);
    const std::string what = co_await failed_connect(ci.to_string(), pgq::errc::connect_failed);
    CHECK_THAT(what, Catch::Contains("password authentication failed for user \"" + role + "\""));
    CHECK_THAT(what, !Catch::Contains(wrong));
    CHECK_THAT(what, !Catch::Contains(password));
    co_await admin.execute("DROP ROLE " + role);
  });
}

TEST_CASE("passwords never appear in conninfo text, error messages or the CLI's output", "[security]") {
  const std::string secret = "pa55-Secret-Value";
  // redacted(), from both syntaxes.
  for (const std::string& text :
       {"host=127.0.0.1 user=u password=" + secret + " dbname=d", "postgresql://u:" + secret + "@127.0.0.1:5432/d",
        "postgresql://u@127.0.0.1/d?password=" + secret}) {
    const auto ci = pgq::conninfo::parse(text);
    CHECK(ci.get("password") == secret);
    CHECK_THAT(ci.redacted(), !Catch::Contains(secret));
    CHECK_THAT(ci.redacted(), Catch::Contains("password="));
  }
  // Malformed strings: libpq quotes the text it could not parse; pgq must
  // not pass a password on with it.
  // NOLINTNEXTLINE(performance-inefficient-string-concatenation): test data, built once
  for (const std::string& text :
       {"postgresql://u:" + secret + "@[::1/d", "postgresql://u:" + secret + "@h/d?sslmode=x&password=" + secret + "&x",
        "postgresql://u:" + secret + "@h/d?nonsense=1", "password=" + secret + " bogus", "password='" + secret}) {
    try {
      (void)pgq::conninfo::parse(text);
      FAIL("parsed: " << text);
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::bad_conninfo);
      CHECK_THAT(e.what(), !Catch::Contains(secret));
    }
  }
  run([&secret]() -> asio::awaitable<void> {
    // A connection attempt that times out names the target, not the secret.
    auto ex = co_await asio::this_coro::executor;
    asio::ip::tcp::acceptor silent(ex, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const std::string target = "host=127.0.0.1 port=" + std::to_string(silent.local_endpoint().port()) +
                               " user=x dbname=x sslmode=disable password=" + secret;
    pgq::connection conn(ex);
    try {
      co_await conn.connect(target, pgq::connect_options{.connect_timeout = std::chrono::milliseconds(200)});
      FAIL("no timeout");
    } catch (const pgq::sql_error& e) {
      CHECK(e.code() == pgq::errc::timeout);
      CHECK_THAT(e.what(), Catch::Contains("127.0.0.1"));
      CHECK_THAT(e.what(), !Catch::Contains(secret));
    }
    // A failing statement's message names the statement, never its parameters.
    auto c = co_await connect();
    try {
      co_await c.query("SELECT 1 / 0 WHERE $1::text IS NOT NULL", secret);
      FAIL("no error");
    } catch (const pgq::sql_error& e) {
      CHECK(e.sqlstate() == "22012");
      CHECK_THAT(e.what(), !Catch::Contains(secret));
      CHECK_THAT(e.diag().statement, !Catch::Contains(secret));
    }
  });
  // Everything a failing CLI run prints (stdout and stderr), with a wrong
  // password in --dsn.
  auto ci = pgq::conninfo::parse(dsn());
  ci.set("password", secret);
  const std::string out_file = (std::filesystem::temp_directory_path() / unique_name("pgq-cli-out")).string();
  const std::string cmd = std::string(PGQ_CLI_PATH) + " --dsn \"" + ci.to_string() + "\" query 'SELECT $1::text' -p " +
                          secret + " >" + out_file + " 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string output = read_file(out_file);
  std::filesystem::remove(out_file);
  INFO(output);
  CHECK(status != 0);
  CHECK_THAT(output, Catch::Contains("password authentication failed"));
  CHECK_THAT(output, !Catch::Contains(secret));
}

TEST_CASE("TLS: verify-full connects with the right CA and host name, fails clearly otherwise", "[security][tls]") {
  const tls_files files;
  scoped_server server("tls-" + std::to_string(::getpid()), "--ssl " + files.dir.string());
  auto base = pgq::conninfo::parse(server.dsn());
  run([&]() -> asio::awaitable<void> {
    auto ci = base;
    ci.set("host", "localhost");
    ci.set("sslmode", "verify-full");
    ci.set("sslrootcert", files.ca().string());
    {
      pgq::connection conn(co_await asio::this_coro::executor);
      co_await conn.connect(ci.to_string());
      auto r = co_await conn.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
      CHECK(r[0].get<bool>(0));
      CHECK_THAT(r[0].get<std::string>(1), Catch::StartsWith("TLS"));
    }
    // The wrong CA: the server's certificate cannot be verified.
    auto wrong_ca = ci;
    wrong_ca.set("sslrootcert", files.other_ca().string());
    const std::string ca_error = co_await failed_connect(wrong_ca.to_string(), pgq::errc::connect_failed);
    CHECK_THAT(ca_error, Catch::Contains("certificate verify failed"));
    // The right CA, but a host name the certificate does not name.
    auto wrong_host = ci;
    wrong_host.set("host", "127.0.0.1");
    const std::string host_error = co_await failed_connect(wrong_host.to_string(), pgq::errc::connect_failed);
    CHECK_THAT(host_error, Catch::Contains("does not match host name"));
    // No CA file at all is refused too (verify-full needs one).
    auto no_ca = ci;
    no_ca.set("sslrootcert", (files.dir / "missing.crt").string());
    const std::string missing_error = co_await failed_connect(no_ca.to_string(), pgq::errc::connect_failed);
    CHECK_THAT(missing_error, Catch::Contains("root certificate file"));
  });
}
