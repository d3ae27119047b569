#include <pgq/error.hpp>

#include <catch2/catch.hpp>

TEST_CASE("SQLSTATE codes pack and compare", "[errors]") {
  const auto a = pgq::make_sqlstate_error("23505");
  const auto b = pgq::make_sqlstate_error("23505");
  const auto c = pgq::make_sqlstate_error("23503");
  CHECK(a == b);
  CHECK(a != c);
  CHECK(pgq::sqlstate_of(a) == "23505");
  CHECK(pgq::sqlstate_of(pgq::make_sqlstate_error("40P01")) == "40P01");
  CHECK(pgq::sqlstate_value("bad") == 0);
  CHECK(pgq::sqlstate_value("2350a") == 0);
  CHECK(pgq::sqlstate_of(pgq::make_error_code(pgq::errc::timeout)).empty());
  CHECK(a.message() == "SQLSTATE 23505");
}

TEST_CASE("client error codes have names and messages", "[errors]") {
  const pgq::error_code ec = pgq::errc::pool_timeout;
  CHECK(ec.category().name() == std::string("pgq"));
  CHECK(ec.message() == "timed out waiting for a pool connection");
  CHECK(pgq::make_error_code(pgq::errc::cancelled) != pgq::make_error_code(pgq::errc::timeout));
  CHECK(pgq::make_error_code(pgq::errc::connection_lost) != pgq::make_error_code(pgq::errc::cancelled));
}

TEST_CASE("is_fatal and is_retryable classify errors", "[errors]") {
  CHECK(pgq::is_fatal(pgq::errc::connection_lost));
  CHECK(pgq::is_fatal(pgq::make_sqlstate_error("08006")));
  CHECK(pgq::is_fatal(pgq::make_sqlstate_error("57P01")));
  CHECK_FALSE(pgq::is_fatal(pgq::make_sqlstate_error("57014")));
  CHECK_FALSE(pgq::is_fatal(pgq::make_sqlstate_error("23505")));
  CHECK_FALSE(pgq::is_fatal(pgq::errc::type_mismatch));
  CHECK(pgq::is_retryable(pgq::make_sqlstate_error("40001")));
  CHECK(pgq::is_retryable(pgq::make_sqlstate_error("40P01")));
  CHECK_FALSE(pgq::is_retryable(pgq::make_sqlstate_error("23505")));
  CHECK_FALSE(pgq::is_retryable(pgq::errc::timeout));
}

TEST_CASE("sql_error carries the diagnostics and a readable message", "[errors]") {
  pgq::diagnostics d;
  d.severity = "ERROR";
  d.sqlstate = "42601";
  d.message = "syntax error at or near \"SELEC\"";
  d.position = 1;
  d.statement = "SELEC 1";
  d.hint = "check the spelling";
  const pgq::sql_error e(pgq::make_sqlstate_error("42601"), d);
  CHECK(e.sqlstate() == "42601");
  CHECK(e.diag().position == 1);
  const std::string what = e.what();
  CHECK(what ==
        "ERROR 42601: syntax error at or near \"SELEC\" (position 1); HINT: check the spelling "
        "[in: SELEC 1]");
  // NOLINTNEXTLINE(performance-unnecessary-copy-initialization): the copy is what is tested
  const pgq::sql_error copy = e;  // exceptions copy cheaply and keep everything
  CHECK(copy.diag().hint == "check the spelling");
  const pgq::sql_error client(pgq::errc::timeout, "took too long");
  CHECK(client.sqlstate().empty());
  CHECK(std::string(client.what()) == "took too long");
}
