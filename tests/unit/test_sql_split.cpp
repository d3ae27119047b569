#include <catch2/catch.hpp>

#include <pgq/sql_split.hpp>

#include <string>
#include <vector>

namespace {

std::vector<std::string> texts(std::string_view script) {
  std::vector<std::string> out;
  for (auto& s : pgq::split_sql(script)) out.push_back(s.text);
  return out;
}

using v = std::vector<std::string>;

}  // namespace

TEST_CASE("split_sql: plain statements, space and empty statements", "[sql_split]") {
  CHECK(texts("") == v{});
  CHECK(texts("  ;;\n ; ") == v{});
  CHECK(texts("SELECT 1") == v{"SELECT 1"});
  CHECK(texts("SELECT 1;SELECT 2;\n\n  SELECT 3  ;  ") == v{"SELECT 1", "SELECT 2", "SELECT 3"});
}

TEST_CASE("split_sql: positions of each statement", "[sql_split]") {
  const auto s = pgq::split_sql("SELECT 1;\n  -- note\n  SELECT\n 2;");
  REQUIRE(s.size() == 2);
  CHECK(s[0].line == 1);
  CHECK(s[0].column == 1);
  CHECK(s[0].offset == 0);
  CHECK(s[1].text == "SELECT\n 2");
  CHECK(s[1].line == 3);
  CHECK(s[1].column == 3);
  CHECK(s[1].offset == 22);
}

TEST_CASE("split_sql: semicolons in strings, identifiers and comments", "[sql_split]") {
  CHECK(texts("SELECT 'a;b', 'it''s;'; SELECT 2") == v{"SELECT 'a;b', 'it''s;'", "SELECT 2"});
  CHECK(texts(R"(SELECT "we;ird"" col" FROM t; SELECT 2)") == v{R"(SELECT "we;ird"" col" FROM t)", "SELECT 2"});
  CHECK(texts("SELECT 1 -- not; here\n, 2; SELECT 3") == v{"SELECT 1 -- not; here\n, 2", "SELECT 3"});
  CHECK(texts("/* a; /* nested; */ still; */ SELECT 1; SELECT 2") == v{"SELECT 1", "SELECT 2"});
  CHECK(texts("SELECT 1 -- trailing; comment\n") == v{"SELECT 1"});
  CHECK(texts("-- only a comment;\n/* and; another */") == v{});
}

TEST_CASE("split_sql: E'' strings take backslash escapes, plain ones do not", "[sql_split]") {
  CHECK(texts(R"(SELECT E'a\';b'; SELECT 2)") == v{R"(SELECT E'a\';b')", "SELECT 2"});
  CHECK(texts(R"(SELECT e'\\'; SELECT 2)") == v{R"(SELECT e'\\')", "SELECT 2"});
  // With standard_conforming_strings a backslash is an ordinary character.
  CHECK(texts(R"(SELECT 'a\'; SELECT 2)") == v{R"(SELECT 'a\')", "SELECT 2"});
  // An identifier ending in e is not a prefix.
  CHECK(texts(R"(SELECT some'x\'; SELECT 2)") == v{R"(SELECT some'x\')", "SELECT 2"});
}

TEST_CASE("split_sql: dollar quotes", "[sql_split]") {
  const std::string fn = "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql";
  CHECK(texts(fn + ";\nSELECT f();") == v{fn, "SELECT f()"});
  const std::string tagged = "DO $body$ BEGIN PERFORM '$$;'; END $body$";
  CHECK(texts(tagged + "; SELECT 1") == v{tagged, "SELECT 1"});
  // $1 parameters and identifiers with $ are not quotes.
  CHECK(texts("SELECT $1; SELECT a$b$ FROM t; SELECT 3") == v{"SELECT $1", "SELECT a$b$ FROM t", "SELECT 3"});
}

TEST_CASE("split_sql: BEGIN ATOMIC bodies and parentheses", "[sql_split]") {
  const std::string fn =
      "CREATE OR REPLACE FUNCTION g(x int) RETURNS int LANGUAGE sql\n"
      "BEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND";
  CHECK(texts(fn + ";\nSELECT g(1);") == v{fn, "SELECT g(1)"});
  const std::string proc = "CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END";
  CHECK(texts(proc + "; CALL p()") == v{proc, "CALL p()"});
  // A transaction BEGIN is a statement of its own.
  CHECK(texts("BEGIN; SELECT 1; END;") == v{"BEGIN", "SELECT 1", "END"});
  CHECK(texts("CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); NOTIFY c); SELECT 1") ==
        v{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); NOTIFY c)", "SELECT 1"});
}

TEST_CASE("split_sql: unterminated quotes and comments are errors with a position", "[sql_split]") {
  const auto fails_at = [](std::string_view script, std::size_t line, std::size_t column) {
    try {
      pgq::split_sql(script);
    } catch (const pgq::sql_error& e) {
      INFO(e.what());
      CHECK(e.code() == pgq::errc::sql_split_failed);
      CHECK(e.diag().script_line == line);
      CHECK(e.diag().script_column == column);
      CHECK(e.diag().script.empty());  // not from a file
      CHECK(e.sqlstate().empty());
      return;
    }
    FAIL("no error for: " << script);
  };
  fails_at("SELECT 'abc", 1, 8);
  fails_at("SELECT 1;\nSELECT \"abc", 2, 8);
  fails_at("SELECT 1; /* open /* nested */", 1, 11);
  fails_at("SELECT $x$ abc $y$", 1, 8);
  fails_at("SELECT E'abc\\'", 1, 9);
  CHECK_THROWS_WITH(pgq::split_sql("\n  'x"), "line 2, column 3: unterminated quoted string");
}

TEST_CASE("split_sql: an unterminated dollar quote is errc::sql_split_failed where it opened", "[sql_split][errors]") {
  const std::string script =
      "SELECT 1;\nCREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
      "BEGIN RETURN 1; END;\n$bod$;\n";
  try {
    pgq::split_sql(script);
    FAIL("no error for an unterminated dollar quote");
  } catch (const pgq::sql_error& e) {
    CHECK(e.code() == pgq::errc::sql_split_failed);
    CHECK(e.code().category() == pgq::client_category());
    CHECK(e.diag().script_line == std::size_t{2});
    CHECK(e.diag().script_column == std::size_t{53});
    CHECK_THAT(e.what(), Catch::StartsWith("line 2, column 53: "));
    CHECK_FALSE(pgq::is_retryable(e.code()));
  }
  // Caught as the base classes too.
  CHECK_THROWS_AS(pgq::split_sql("SELECT $$"), boost::system::system_error);
}
