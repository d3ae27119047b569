// Rows into structs: query_as<T>, query_one_as<T>, query_opt_as<T> on a
// connection, a pool and a transaction, and row_stream::next_as<T>; plain
// aggregates by position (Boost.PFR), described structs by name
// (Boost.Describe), and the errors that name the column, the field and both
// types.
#include "support.hpp"

#include <pgq/stream.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/describe/class.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

struct book {
  std::int64_t id = 0;
  std::string title;
  std::optional<double> price;
  std::vector<std::string> tags;
  pgq::timestamptz added{};
};

struct named_book {
  std::int64_t id = 0;
  std::string title;
  std::optional<double> price;
};
BOOST_DESCRIBE_STRUCT(named_book, (), (id, title, price))

// A class with a constructor is no aggregate: described, it is read by name.
class account {
 public:
  account() = default;
  std::string owner;
  std::int32_t balance = 0;
};
BOOST_DESCRIBE_STRUCT(account, (), (owner, balance))

const char* const books_sql =
    "SELECT * FROM (VALUES (1::int8, 'Dune', 9.5::float8, ARRAY['sf', 'classic'], "
    "'2024-02-29 13:45:01+00'::timestamptz), (2, 'Emma', NULL, '{}', '2024-03-01 00:00:00+00')) "
    "t(id, title, price, tags, added) ORDER BY id";

}  // namespace

TEST_CASE("query_as reads rows into a plain struct by position", "[api][rows_as]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::vector<book> books = co_await conn.query_as<book>(books_sql);
    REQUIRE(books.size() == 2);
    CHECK(books[0].id == 1);
    CHECK(books[0].title == "Dune");
    CHECK(books[0].price == 9.5);
    CHECK(books[0].tags == std::vector<std::string>{"sf", "classic"});
    CHECK(books[1].title == "Emma");
    CHECK_FALSE(books[1].price.has_value());
    CHECK(books[1].tags.empty());
    const auto added = co_await conn.query_one_as<pgq::timestamptz>("SELECT '2024-02-29 13:45:01+00'::timestamptz");
    CHECK(books[0].added == added);
  });
}

TEST_CASE("query_as reads a described struct by column name, in any order", "[api][rows_as]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const auto books = co_await conn.query_as<named_book>(
        "SELECT 12.5::float8 AS price, 'Ulysses' AS title, 7::int8 AS id UNION ALL SELECT NULL, 'Odyssey', 8");
    REQUIRE(books.size() == 2);
    CHECK(books[0].id == 7);
    CHECK(books[0].title == "Ulysses");
    CHECK(books[0].price == 12.5);
    CHECK(books[1].id == 8);
    CHECK_FALSE(books[1].price.has_value());
    const auto accounts = co_await conn.query_as<account>("SELECT 100 AS balance, 'ann' AS owner");
    REQUIRE(accounts.size() == 1);
    CHECK(accounts[0].owner == "ann");
    CHECK(accounts[0].balance == 100);
  });
}

TEST_CASE("query_as into a struct: mismatches name the column, the field and both types", "[api][rows_as]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    // A value of another type: column, field, Postgres type and C++ type.
    auto wrong =
        co_await error_of(conn.query_as<named_book>("SELECT 'abc'::text AS id, 'x' AS title, NULL::float8 AS price"));
    REQUIRE(wrong.has_value());
    CHECK(wrong->code() == pgq::errc::type_mismatch);
    CHECK_THAT(wrong->what(), Catch::Contains("named_book::id") && Catch::Contains("\"id\"") &&
                                  Catch::Contains("text") && Catch::Contains("int"));
    // By position: the field's index and the struct.
    auto pos = co_await error_of(conn.query_as<book>("SELECT 1::int8, 'x', 'not a number', ARRAY['a'], now()"));
    REQUIRE(pos.has_value());
    CHECK(pos->code() == pgq::errc::type_mismatch);
    CHECK_THAT(pos->what(), Catch::Contains("field 2 of") && Catch::Contains("book") && Catch::Contains("text"));
    // NULL into a field that is not optional.
    auto null =
        co_await error_of(conn.query_as<named_book>("SELECT NULL::int8 AS id, 'x' AS title, 1.0::float8 AS price"));
    REQUIRE(null.has_value());
    CHECK(null->code() == pgq::errc::unexpected_null);
    CHECK_THAT(null->what(), Catch::Contains("named_book::id"));
    // Columns that do not fit: the count by position, a member without its
    // column and a column without its member by name.
    auto count = co_await error_of(conn.query_as<book>("SELECT 1::int8, 'x'"));
    REQUIRE(count.has_value());
    CHECK(count->code() == pgq::errc::type_mismatch);
    CHECK_THAT(count->what(), Catch::Contains("2 columns") && Catch::Contains("5 fields"));
    auto missing =
        co_await error_of(conn.query_as<named_book>("SELECT 1::int8 AS id, 'x' AS name, 1.0::float8 AS price"));
    REQUIRE(missing.has_value());
    CHECK(missing->code() == pgq::errc::type_mismatch);
    CHECK_THAT(missing->what(), Catch::Contains("no column named \"title\"") && Catch::Contains("id, name, price"));
    auto extra = co_await error_of(
        conn.query_as<named_book>("SELECT 1::int8 AS id, 'x' AS title, 1.0::float8 AS price, 2 AS stock"));
    REQUIRE(extra.has_value());
    CHECK_THAT(extra->what(), Catch::Contains("\"stock\"") && Catch::Contains("matches no member"));
    // The connection goes on.
    auto ok = co_await conn.query_one_as<named_book>("SELECT 1::int8 AS id, 'x' AS title, NULL::float8 AS price");
    CHECK(ok.title == "x");
  });
}

TEST_CASE("query_one_as and query_opt_as: exactly one row, at most one", "[api][rows_as]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const book b = co_await conn.query_one_as<book>(books_sql + std::string(" LIMIT 1"));
    CHECK(b.title == "Dune");
    const int n = co_await conn.query_one_as<int>("SELECT 42");
    CHECK(n == 42);
    auto none = co_await error_of(conn.query_one_as<int>("SELECT 1 WHERE false"));
    REQUIRE(none.has_value());
    CHECK(none->code() == pgq::errc::row_count);
    CHECK_THAT(none->what(), Catch::Contains("0 rows"));
    auto two = co_await error_of(conn.query_one_as<book>(books_sql));
    REQUIRE(two.has_value());
    CHECK(two->code() == pgq::errc::row_count);
    CHECK_THAT(two->what(), Catch::Contains("2 rows"));

    const std::optional<named_book> found =
        co_await conn.query_opt_as<named_book>("SELECT 3::int8 AS id, 'Kim' AS title, NULL::float8 AS price");
    REQUIRE(found.has_value());
    CHECK(found->title == "Kim");
    const auto nothing = co_await conn.query_opt_as<named_book>(
        "SELECT 3::int8 AS id, 'Kim' AS title, NULL::float8 AS price WHERE false");
    CHECK_FALSE(nothing.has_value());
    auto several = co_await error_of(conn.query_opt_as<int>("SELECT 1 UNION ALL SELECT 2"));
    REQUIRE(several.has_value());
    CHECK(several->code() == pgq::errc::row_count);
    // Columns are checked even without rows.
    auto cols = co_await error_of(conn.query_opt_as<book>("SELECT 1 WHERE false"));
    REQUIRE(cols.has_value());
    CHECK(cols->code() == pgq::errc::type_mismatch);
  });
}

TEST_CASE("rows into structs on a pool, a transaction and a stream", "[api][rows_as][stream]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool_options o;
    o.conninfo = dsn();
    o.max_size = 2;
    pgq::pool pool(pool_executor(ex), o);
    const auto from_pool = co_await pool.query_as<book>(books_sql);
    CHECK(from_pool.size() == 2);
    const auto one = co_await pool.query_one_as<named_book>("SELECT 5::int8 AS id, 'p' AS title, 1.5::float8 AS price");
    CHECK(one.id == 5);
    const auto opt = co_await pool.query_opt_as<int>("SELECT 1 WHERE false");
    CHECK_FALSE(opt.has_value());
    {
      auto tx = co_await pool.begin();
      const auto in_tx = co_await tx.query_as<named_book>(
          "SELECT g::int8 AS id, 't' || g AS title, NULL::float8 AS price FROM generate_series(1, 3) g");
      CHECK(in_tx.size() == 3);
      const auto b = co_await tx.query_one_as<book>(books_sql + std::string(" LIMIT 1"));
      CHECK(b.id == 1);
      const auto o2 = co_await tx.query_opt_as<std::int64_t>("SELECT 9::int8");
      CHECK(o2 == 9);
      co_await tx.commit();
    }
    {
      auto lease = co_await pool.acquire();
      auto rows = co_await lease->stream(
          "SELECT g::int8 AS id, 'b' || g AS title, CASE WHEN g % 2 = 0 THEN g * 1.5 END::float8 AS price "
          "FROM generate_series(1, 2500) g");
      std::int64_t sum = 0;
      int with_price = 0;
      int read = 0;
      while (auto b = co_await rows.next_as<named_book>()) {
        ++read;
        sum += b->id;
        with_price += b->price.has_value() ? 1 : 0;
        if (read == 1) CHECK(b->title == "b1");
      }
      CHECK(read == 2500);
      CHECK(sum == 2500LL * 2501 / 2);
      CHECK(with_price == 1250);
      // A stream whose columns do not fit the struct fails at its first row.
      auto bad = co_await lease->stream("SELECT 1 AS id");
      auto e = co_await error_of(bad.next_as<named_book>());
      REQUIRE(e.has_value());
      CHECK(e->code() == pgq::errc::type_mismatch);
    }
    co_await pool.close();
  });
}
