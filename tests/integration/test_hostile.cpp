// Huge and hostile values: a 100 MB text both ways, 1,600 columns, deeply
// nested jsonb, 256 MiB of bytea streamed in bounded memory, and invalid
// UTF-8 from a SQL_ASCII database.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>

#include <malloc.h>

#include <cstdio>
#include <fstream>
#include <sstream>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

// Peak resident memory since the last reset_peak_rss(), in MiB, from
// /proc/self/status (VmHWM).
long status_mib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(key.size())) / 1024;
  }
  FAIL("no " << field << " in /proc/self/status");
  return -1;
}

// Returns freed memory to the system and makes the peak the current size.
long reset_peak_rss() {
  malloc_trim(0);
  std::ofstream("/proc/self/clear_refs") << "5";
  return status_mib("VmRSS");
}

// What a stream of `total_mib` MiB may add to the peak: far less than the
// data itself. ASan keeps freed blocks in a quarantine (256 MiB by default),
// which counts as resident.
long allowed_growth_mib() {
#if defined(__SANITIZE_ADDRESS__)
  return 128 + 256;
#else
  return 128;
#endif
}

}  // namespace

TEST_CASE("hostile: a 100 MB text goes to the server and comes back intact", "[hostile]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    std::string big(100'000'000, 'x');  // NOLINT(bugprone-string-constructor): 100 MB on purpose
    for (std::size_t i = 0; i < big.size(); i += 4099) big[i] = static_cast<char>('a' + i % 26);
    big.back() = 'Z';
    auto r = co_await conn.query("SELECT $1::text, length($1::text), md5($1::text)", big);
    const auto back = r[0].get<std::string_view>(0);
    CHECK(back.size() == big.size());
    CHECK(back == big);
    CHECK(r[0].get<int>(1) == 100'000'000);

    // Made by the server: 100 MB in one field of the result.
    auto made = co_await conn.query("SELECT repeat('0123456789', 10000000) || 'end'");
    const auto text = made[0].get<std::string_view>(0);
    REQUIRE(text.size() == 100'000'003);
    CHECK(text.substr(0, 12) == "012345678901");
    CHECK(text.substr(text.size() - 5) == "89end");
    CHECK(text.find_first_not_of("0123456789", 0) == 100'000'000);
  });
}

TEST_CASE("hostile: 1,600 columns, the server's most, read and rendered, and 1,601 refused clearly", "[hostile]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    std::string create = "CREATE TEMP TABLE wide (";
    std::string values;
    for (int i = 1; i <= 1600; ++i) {
      create += (i > 1 ? ", c" : "c") + std::to_string(i) + " int4";
      values += (i > 1 ? ", " : "") + std::to_string(i * 7);
    }
    create += ")";
    co_await conn.query(create);
    const std::string insert = "INSERT INTO wide VALUES (" + values + ")";
    co_await conn.query(insert);
    for (int run = 0; run < 2; ++run) {  // the second run is prepared, in binary
      auto r = co_await conn.query("SELECT * FROM wide");
      REQUIRE(r.columns() == 1600);
      CHECK(r.column_name(1599) == "c1600");
      int wrong = 0;
      for (int i = 0; i < 1600; ++i) wrong += r[0].get<int>(i) != (i + 1) * 7;
      CHECK(wrong == 0);
      const nlohmann::json j = r[0].to_json();
      CHECK(j.size() == 1600);
      CHECK(j["c1600"] == 11200);
    }
    std::string too_wide = create;
    too_wide.replace(too_wide.find("wide"), 4, "too_wide");
    too_wide.insert(too_wide.size() - 1, ", c1601 int4");
    std::string state;
    try {
      co_await conn.query(too_wide);
    } catch (const pgq::sql_error& e) {
      state = e.diag().sqlstate;
    }
    CHECK(state == "54011");  // too many columns
    auto after = co_await conn.query("SELECT 1");
    CHECK(after[0].get<int>(0) == 1);
  });
}

TEST_CASE("hostile: deeply nested jsonb decodes up to pgq's limit, deeper gives a clear error", "[hostile]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    constexpr int limit = static_cast<int>(pgq::codec<nlohmann::json>::max_depth);
    auto ok = co_await conn.query("SELECT (repeat('[', $1) || '1' || repeat(']', $1))::jsonb", limit);
    const auto doc = ok[0].get<nlohmann::json>(0);
    const nlohmann::json* inner = &doc;
    int depth = 0;
    while (inner->is_array()) {
      inner = &inner->at(0);
      ++depth;
    }
    CHECK(depth == limit);
    CHECK(*inner == 1);

    // 5,000 deep: the server takes it; pgq refuses to build it (nlohmann
    // would recurse that deep to print or copy it), with an error that says
    // so, as a value and in row.to_json(). Its text is still readable.
    for (int run = 0; run < 2; ++run) {
      auto deep = co_await conn.query("SELECT (repeat('[', 5000) || repeat(']', 5000))::jsonb AS doc");
      std::string what;
      try {
        (void)deep[0].get<nlohmann::json>(0);
      } catch (const pgq::sql_error& e) {
        CHECK(e.code() == pgq::errc::invalid_value);
        what = e.what();
      }
      CHECK_THAT(what, Catch::Contains("nested deeper than 1000 levels"));
      bool refused = false;
      try {
        (void)deep[0].to_json();
      } catch (const pgq::sql_error& e) {
        refused = e.code() == pgq::errc::invalid_value;
      }
      CHECK(refused);
    }
    auto text = co_await conn.query("SELECT (repeat('[', 5000) || repeat(']', 5000))::jsonb::text");
    CHECK(text[0].get<std::string_view>(0).size() == 10000);
  });
}

namespace {

// 256 rows of 1 MiB: row i holds the byte i % 256 throughout.
constexpr const char* big_bytea_rows =
    "SELECT i, decode(repeat(lpad(to_hex(i % 256), 2, '0'), 1048576), 'hex') AS data "
    "FROM generate_series(1, 256) i";

}  // namespace

TEST_CASE("hostile: 256 MiB of bytea streamed row by row without holding it all", "[hostile]") {
  run(
      []() -> asio::awaitable<void> {
        auto conn = co_await connect();
        const long base = reset_peak_rss();
        auto rows = co_await conn.stream(big_bytea_rows);
        int count = 0;
        int wrong = 0;
        std::size_t bytes = 0;
        while (auto r = co_await rows.next()) {
          const int i = r->get<int>(0);
          const auto data = r->get<pgq::bytea>(1);
          bytes += data.data.size();
          const auto expect = static_cast<std::byte>(i % 256);
          if (i != count + 1 || data.data.size() != 1048576 || data.data.front() != expect ||
              data.data.back() != expect)
            ++wrong;
          ++count;
        }
        const long growth = status_mib("VmHWM") - base;
        INFO("peak grew by " << growth << " MiB while 256 MiB streamed");
        CHECK(count == 256);
        CHECK(wrong == 0);
        CHECK(bytes == 256u * 1048576u);
        CHECK(growth < allowed_growth_mib());
      },
      std::chrono::seconds(60));
}

TEST_CASE("hostile: 256 MiB of bytea through COPY TO STDOUT without holding it all", "[hostile]") {
  run(
      []() -> asio::awaitable<void> {
        auto conn = co_await connect();
        const long base = reset_peak_rss();
        const std::string sql = std::string("COPY (") + big_bytea_rows + ") TO STDOUT (FORMAT binary)";
        auto reader = co_await conn.copy_out(sql);
        std::size_t bytes = 0;
        std::size_t longest = 0;
        while (auto chunk = co_await reader.next()) {
          bytes += chunk->size();
          longest = std::max(longest, chunk->size());
        }
        const long growth = status_mib("VmHWM") - base;
        INFO("peak grew by " << growth << " MiB while 256 MiB were copied out");
        CHECK(reader.rows_affected() == 256);
        CHECK(bytes > 256u * 1048576u);
        CHECK(longest < 2u * 1048576u);  // a row at a time, not the whole
        CHECK(growth < allowed_growth_mib());
        auto after = co_await conn.query("SELECT 1");
        CHECK(after[0].get<int>(0) == 1);
      },
      std::chrono::seconds(60));
}

namespace {

std::string hex(std::string_view s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

namespace {

// A free coroutine, not a capturing coroutine lambda (GCC 12).
asio::awaitable<void> sql_ascii_round_trip(std::string db) {
  auto admin = co_await connect();
  const std::string create =
      "CREATE DATABASE " + db + " ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'";
  co_await admin.query(create);
  std::string failure;
  try {
    auto ex = co_await asio::this_coro::executor;
    pgq::connection conn(ex);
    co_await conn.connect(with_setting(dsn(), "dbname", db));
    // A lone continuation byte, a truncated sequence, an overlong
    // encoding, a UTF-16 surrogate, 0xFF: none of them UTF-8.
    const std::string bad = std::string("ok \x80 \xc3\x28 \xc0\xaf \xed\xa0\x80 \xff\xfe end");
    co_await conn.query("CREATE TABLE raw (id int4, t text)");
    co_await conn.query("INSERT INTO raw VALUES (1, $1::text)", bad);
    auto stored = co_await conn.query("SELECT encode(convert_to(t, 'SQL_ASCII'), 'hex') FROM raw");
    CHECK(stored[0].get<std::string>(0) == hex(bad));  // kept verbatim by the server
    for (int run = 0; run < 2; ++run) {                // text, then binary results
      auto r = co_await conn.query("SELECT t, id FROM raw");
      const auto back = r[0].get<std::string>(0);
      CHECK(hex(back) == hex(bad));

      const nlohmann::json j = r[0].to_json();
      CHECK(j["t"].get<std::string>() == bad);
      // Printing it strictly refuses with nlohmann's clear error (never
      // invalid JSON); printing with replacement (what the pgq CLI does)
      // gives valid JSON with U+FFFD in place of each bad byte.
      int error_id = 0;
      try {
        (void)j.dump();
      } catch (const nlohmann::json::type_error& e) {
        error_id = e.id;
      }
      CHECK(error_id == 316);
      const std::string replaced = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      const auto again = nlohmann::json::parse(replaced, nullptr, false);
      REQUIRE_FALSE(again.is_discarded());
      CHECK_THAT(again["t"].get<std::string>(), Catch::StartsWith("ok \xef\xbf\xbd"));
      CHECK_THAT(again["t"].get<std::string>(), Catch::EndsWith(" end"));
    }

    // The CLI's JSON output of the same row is valid JSON.
    const std::string out_file = "/tmp/" + unique_name("pgq_sql_ascii_out");
    const std::string cmd = std::string(PGQ_CLI_PATH) + " --dsn \"" + with_setting(dsn(), "dbname", db) +
                            "\" --format ndjson query 'SELECT t, id FROM raw' >" + out_file + " 2>&1";
    const int status = std::system(cmd.c_str());
    std::ifstream in(out_file);
    std::stringstream text;
    text << in.rdbuf();
    std::remove(out_file.c_str());
    INFO(text.str());
    CHECK(status == 0);
    const auto line = nlohmann::json::parse(text.str(), nullptr, false);
    REQUIRE_FALSE(line.is_discarded());
    CHECK(line["id"] == 1);
    CHECK_THAT(line["t"].get<std::string>(), Catch::StartsWith("ok "));
  } catch (const std::exception& e) {
    failure = e.what();
  }
  co_await drop_database(admin, db);
  if (!failure.empty()) FAIL(failure);
}

}  // namespace

TEST_CASE("hostile: invalid UTF-8 from a SQL_ASCII database, byte for byte, and JSON escapes or refuses it",
          "[hostile]") {
  const std::string db = unique_name("pgq_sql_ascii");
  run([db] { return sql_ascii_round_trip(db); });
}
