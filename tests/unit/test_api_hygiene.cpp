// What the public API must not show (issue 14), read from the sources: no
// reach into asio::detail anywhere in the library, no helper that only pgq
// uses in a public header, and pool/transaction layered on lease.hpp.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<fs::path> files_under(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".hpp" || ext == ".cpp")) out.push_back(e.path());
  }
  return out;
}

const fs::path source_dir{PGQ_SOURCE_DIR};

}  // namespace

TEST_CASE("the library reaches into no asio::detail", "[api]") {
  const auto files = files_under(source_dir / "lib");
  REQUIRE(files.size() > 20);
  for (const auto& f : files) {
    INFO(f.string());
    CHECK(read_file(f).find("asio::detail") == std::string::npos);
  }
}

TEST_CASE("helpers only pgq uses are not in the public headers", "[api]") {
  const std::regex helper(
      R"(\b(begin_statement|quote_identifier|sha256_hex|normalize_line_endings|is_no_transaction)\b)");
  const auto headers = files_under(source_dir / "lib" / "include" / "pgq");
  REQUIRE(headers.size() > 15);
  for (const auto& f : headers) {
    INFO(f.string());
    CHECK_FALSE(std::regex_search(read_file(f), helper));
  }
}

TEST_CASE("pool.hpp and transaction.hpp stand on lease.hpp, and transaction.hpp never includes pool.hpp", "[api]") {
  const fs::path inc = source_dir / "lib" / "include" / "pgq";
  REQUIRE(fs::exists(inc / "lease.hpp"));
  const std::string pool = read_file(inc / "pool.hpp");
  const std::string tx = read_file(inc / "transaction.hpp");
  const std::string conn = read_file(inc / "connection.hpp");
  CHECK(pool.find("#include <pgq/lease.hpp>") != std::string::npos);
  CHECK(tx.find("#include <pgq/lease.hpp>") != std::string::npos);
  CHECK(tx.find("pgq/pool.hpp") == std::string::npos);
  CHECK(pool.find("class lease {") == std::string::npos);
  for (const char* h : {"#include <pgq/copy.hpp>", "#include <pgq/notify.hpp>", "#include <pgq/stream.hpp>"}) {
    INFO(h);
    CHECK(conn.find(h) == std::string::npos);
  }
  const std::string result = read_file(inc / "result.hpp");
  CHECK(result.find("<nlohmann/json_fwd.hpp>") != std::string::npos);
  CHECK(result.find("<nlohmann/json.hpp>") == std::string::npos);
}

TEST_CASE("BOOST_ASIO_NO_DEPRECATED is pgq's own, not its consumers'", "[api]") {
  const std::string cmake = read_file(source_dir / "lib" / "CMakeLists.txt");
  CHECK(cmake.find("PRIVATE BOOST_ASIO_NO_DEPRECATED") != std::string::npos);
  CHECK(cmake.find("PUBLIC BOOST_ASIO_NO_DEPRECATED") == std::string::npos);
  CHECK(cmake.find("INTERFACE BOOST_ASIO_NO_DEPRECATED") == std::string::npos);
}
