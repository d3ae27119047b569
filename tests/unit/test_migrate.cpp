// Migration files without a server: names, loading, checksums, directives,
// and the migrations embedded by pgq_embed_migrations().
#include "project_migrations.hpp"

#include <pgq/migrate.hpp>

#include "migrate/migrate_files.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

using pgq::errc;
using pgq::migration_direction;
using pgq::migration_file;

namespace {

// The sql_error that `f` throws (fails the test when it throws nothing).
template <class F>
pgq::sql_error error_of(F f) {
  try {
    f();
  } catch (const pgq::sql_error& e) {
    return e;
  }
  FAIL("no sql_error was thrown");
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("migration file names: versions, names and directions", "[migrate]") {
  auto a = pgq::parse_migration_file_name("0001_create_accounts.up.sql");
  REQUIRE(a);
  CHECK(a->version == 1);
  CHECK(a->version_text == "0001");
  CHECK(a->name == "create_accounts");
  CHECK(a->direction == migration_direction::up);

  auto b = pgq::parse_migration_file_name("20240131120000_add-index.down.sql");
  REQUIRE(b);
  CHECK(b->version == 20240131120000);
  CHECK(b->name == "add-index");
  CHECK(b->direction == migration_direction::down);

  // Names that are not migrations at all are not errors.
  CHECK_FALSE(pgq::parse_migration_file_name("README.md"));
  CHECK_FALSE(pgq::parse_migration_file_name(".gitkeep"));
}

TEST_CASE("malformed migration file names are errors that name the file", "[migrate]") {
  for (const char* bad :
       {"0001_accounts.sql", "accounts.up.sql", "0001.up.sql", "0001_.up.sql", "0001accounts.up.sql",
        "0000_zero.up.sql", "0001_two words.up.sql", "1234567890123456789_too_long.up.sql", "0001_x.UP.sql"}) {
    INFO(bad);
    const auto e = error_of([&] { pgq::parse_migration_file_name(bad); });
    CHECK(e.code() == errc::bad_migration);
    CHECK_THAT(e.what(), Catch::Contains(bad));
    CHECK(e.diag().script == bad);
  }
}

TEST_CASE("load_migrations orders by number, pairs up and down, rejects conflicts", "[migrate]") {
  std::vector<migration_file> files = {
      {"10_ten.up.sql", "SELECT 10;"},
      {"2_two.up.sql", "SELECT 2; SELECT 22;"},
      {"2_two.down.sql", "SELECT -2;"},
      {"notes.txt", "ignored"},
  };
  auto ms = pgq::load_migrations(files);
  REQUIRE(ms.size() == 2);
  CHECK(ms[0].version == 2);
  CHECK(ms[0].label == "2_two");
  CHECK(ms[0].up.statements.size() == 2);
  REQUIRE(ms[0].down);
  CHECK(ms[0].down->file == "2_two.down.sql");
  CHECK(ms[1].version == 10);
  CHECK_FALSE(ms[1].down);

  SECTION("two up files with one version") {
    files.push_back({"0002_other.up.sql", "SELECT 1;"});
    const auto e = error_of([&] { pgq::load_migrations(files); });
    CHECK(e.code() == errc::bad_migration);
    CHECK_THAT(e.what(), Catch::Contains("0002_other.up.sql"));
    CHECK(e.diag().script == "0002_other.up.sql");
    CHECK(e.diag().migration_version == 2);
  }
  SECTION("a down file whose name differs from its up file") {
    files.push_back({"10_eleven.down.sql", "SELECT 1;"});
    const auto e = error_of([&] { pgq::load_migrations(files); });
    CHECK(e.code() == errc::bad_migration);
    CHECK_THAT(e.what(), Catch::Contains("10_eleven.down.sql"));
  }
  SECTION("a down file without an up file") {
    files.push_back({"3_three.down.sql", "SELECT 1;"});
    const auto e = error_of([&] { pgq::load_migrations(files); });
    CHECK(e.code() == errc::bad_migration);
    CHECK_THAT(e.what(), Catch::Contains("3_three.down.sql"));
    CHECK(e.diag().migration_version == 3);
  }
  SECTION("a script that ends inside a string") {
    files.push_back({"4_open.up.sql", "SELECT 1;\nSELECT 'oops;\n"});
    const auto e = error_of([&] { pgq::load_migrations(files); });
    CHECK(e.code() == errc::sql_split_failed);
    CHECK_THAT(e.what(), Catch::Contains("4_open.up.sql") && Catch::Contains("line 2"));
    CHECK(e.diag().script == "4_open.up.sql");
    CHECK(e.diag().script_line == std::size_t{2});
    CHECK(e.diag().script_column == std::size_t{8});
    CHECK(e.diag().migration_version == 4);
  }
  SECTION("a transactional script that runs COMMIT itself") {
    files.push_back({"5_commit.up.sql", "CREATE TABLE t (a int);\nCOMMIT;\n"});
    const auto e = error_of([&] { pgq::load_migrations(files); });
    CHECK(e.code() == errc::bad_migration);
    CHECK_THAT(e.what(), Catch::Contains("5_commit.up.sql") && Catch::Contains("line 2"));
    CHECK(e.diag().script == "5_commit.up.sql");
    CHECK(e.diag().script_line == std::size_t{2});
  }
  SECTION("a no-transaction script may manage its own transactions") {
    files.push_back({"5_own.up.sql", "-- pgq:no-transaction\nBEGIN;\nSELECT 1;\nCOMMIT;\n"});
    auto more = pgq::load_migrations(files);
    REQUIRE(more.size() == 3);
    CHECK(more[1].up.no_transaction);
    CHECK(more[1].up.statements.size() == 3);
  }
}

TEST_CASE("SHA-256 matches the published test vectors", "[migrate]") {
  CHECK(pgq::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(pgq::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(pgq::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // 55, 56 and 64 bytes: the padding edge cases.
  CHECK(pgq::sha256_hex(std::string(55, 'a')) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  CHECK(pgq::sha256_hex(std::string(56, 'a')) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  CHECK(pgq::sha256_hex(std::string(64, 'a')) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
  CHECK(pgq::sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("checksums ignore line endings and nothing else", "[migrate]") {
  const std::string lf = "CREATE TABLE t (\n  a int\n);\n";
  const std::string crlf = "CREATE TABLE t (\r\n  a int\r\n);\r\n";
  const std::string cr = "CREATE TABLE t (\r  a int\r);\r";
  CHECK(pgq::normalize_line_endings(crlf) == lf);
  CHECK(pgq::normalize_line_endings(cr) == lf);
  CHECK(pgq::normalize_line_endings("a\r\n\r\nb\r") == "a\n\nb\n");
  CHECK(pgq::migration_checksum(crlf) == pgq::migration_checksum(lf));
  CHECK(pgq::migration_checksum(cr) == pgq::migration_checksum(lf));
  CHECK(pgq::migration_checksum(lf) == pgq::sha256_hex(lf));  // = sha256sum of the LF file
  CHECK(pgq::migration_checksum("CREATE TABLE t (\n  a bigint\n);\n") != pgq::migration_checksum(lf));
  CHECK(pgq::migration_checksum(lf + " ") != pgq::migration_checksum(lf));
}

TEST_CASE("the no-transaction directive counts only on the first line", "[migrate]") {
  CHECK(pgq::is_no_transaction("-- pgq:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);"));
  CHECK(pgq::is_no_transaction("-- pgq:no-transaction  \r\nSELECT 1;"));
  CHECK(pgq::is_no_transaction("-- pgq:no-transaction"));
  CHECK_FALSE(pgq::is_no_transaction("SELECT 1;\n-- pgq:no-transaction\n"));
  CHECK_FALSE(pgq::is_no_transaction(" -- pgq:no-transaction\n"));
  CHECK_FALSE(pgq::is_no_transaction("-- pgq:no-transactions\n"));
}

TEST_CASE("embedded migrations are byte for byte the files of migrations/", "[migrate]") {
  const std::filesystem::path dir = std::filesystem::path(PGQ_SOURCE_DIR) / "migrations";
  const auto embedded = pgq_test::project_migrations();
  std::size_t sql_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".sql") ++sql_files;
  }
  REQUIRE(embedded.size() == sql_files);
  for (std::size_t i = 0; i < embedded.size(); ++i) {
    INFO(embedded[i].name);
    if (i > 0) CHECK(embedded[i - 1].name < embedded[i].name);
    std::ifstream in(dir / embedded[i].name, std::ios::binary);
    REQUIRE(in);
    const std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(embedded[i].text == on_disk);
  }

  const auto from_dir = pgq::load_migrations(dir);
  const auto from_binary = pgq::load_migrations(embedded);
  REQUIRE(from_dir.size() == from_binary.size());
  REQUIRE(from_dir.size() >= 5);
  for (std::size_t i = 0; i < from_dir.size(); ++i) {
    CHECK(from_dir[i].version == from_binary[i].version);
    CHECK(from_dir[i].checksum == from_binary[i].checksum);
    CHECK(from_dir[i].down.has_value());  // every migration of the project can be reverted
  }
  // The concurrent index must run outside a transaction.
  bool any_no_transaction = false;
  for (const auto& m : from_dir) any_no_transaction = any_no_transaction || m.up.no_transaction;
  CHECK(any_no_transaction);
}

TEST_CASE("a missing migrations directory is an error naming it", "[migrate]") {
  const auto e = error_of([] { pgq::load_migrations(std::filesystem::path("/no/such/dir")); });
  CHECK(e.code() == errc::bad_migration);
  CHECK_THAT(e.what(), Catch::Contains("/no/such/dir"));
}

TEST_CASE("migration errors are sql_errors with codes of their own", "[migrate][errors]") {
  CHECK(pgq::error_code(errc::bad_migration).message() == "bad migration file or set");
  CHECK(pgq::error_code(errc::sql_split_failed) != pgq::error_code(errc::bad_migration));
  CHECK(pgq::error_code(errc::checksum_mismatch) != pgq::error_code(errc::migration_refused));
  for (auto e : {errc::sql_split_failed, errc::bad_migration, errc::checksum_mismatch, errc::migration_refused}) {
    INFO(static_cast<int>(e));
    CHECK_FALSE(pgq::is_fatal(e));
    CHECK_FALSE(pgq::is_retryable(e));
    CHECK(pgq::error_code(e).message() != "unknown pgq error");
  }
  // A migrator refuses an empty history table name before it connects.
  pgq::migrator_options o;
  o.table.clear();
  pgq::migrator m("host=/nonexistent", {}, o);
  boost::asio::io_context ctx;
  std::exception_ptr failure;
  boost::asio::co_spawn(ctx, m.status(),
                        [&](std::exception_ptr e, const pgq::status_report&) { failure = std::move(e); });
  ctx.run();
  REQUIRE(failure);
  const auto e = error_of([&] { std::rethrow_exception(failure); });
  CHECK(e.code() == errc::bad_migration);
}
