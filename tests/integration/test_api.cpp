// The public API's one way of saying each thing: query_as<T>, pgq::params,
// connect_options inside pool_options, begin(opts = {}) on connection and
// pool alike.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/this_coro.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

using namespace pgq_test;
namespace asio = boost::asio;

namespace {

pgq::pool_options pool_opts(std::size_t max_size) {
  pgq::pool_options o;
  o.conninfo = dsn();
  o.max_size = max_size;
  return o;
}

}  // namespace

TEST_CASE("query_as reads one column into a vector of T", "[api]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    const std::vector<std::int64_t> ids =
        co_await conn.query_as<std::int64_t>("SELECT g::int8 FROM generate_series(1, $1::int4) g", 4);
    CHECK(ids == std::vector<std::int64_t>{1, 2, 3, 4});
    const auto none = co_await conn.query_as<std::string>("SELECT 'x' WHERE false");
    CHECK(none.empty());
    const auto maybe = co_await conn.query_as<std::optional<int>>("SELECT v FROM (VALUES (1), (NULL)) t(v)");
    REQUIRE(maybe.size() == 2);
    CHECK(maybe[0] == 1);
    CHECK_FALSE(maybe[1].has_value());
  });
}

TEST_CASE("query_as reads a std::tuple, one column per element", "[api]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    using person = std::tuple<int, std::string, std::optional<double>>;
    const auto people = co_await conn.query_as<person>(
        "SELECT * FROM (VALUES (1, 'ada', 1.5::float8), (2, 'bob', NULL)) t(id, name, score) ORDER BY id");
    REQUIRE(people.size() == 2);
    CHECK(people[0] == person{1, "ada", 1.5});
    CHECK(people[1] == person{2, "bob", std::nullopt});
  });
}

TEST_CASE("query_as refuses a result whose column count is not the row type's", "[api]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto e = co_await error_of(conn.query_as<int>("SELECT 1, 2"));
    REQUIRE(e.has_value());
    CHECK(e->code() == pgq::errc::type_mismatch);
    CHECK_THAT(e->what(), Catch::Contains("2 columns"));
    auto t = co_await error_of(conn.query_as<std::tuple<int, int, int>>("SELECT 1, 2"));
    REQUIRE(t.has_value());
    CHECK(t->code() == pgq::errc::type_mismatch);
    // A value the type cannot hold fails as field::as<T> does.
    auto v = co_await error_of(conn.query_as<int>("SELECT 'text'::text"));
    REQUIRE(v.has_value());
    CHECK(v->code() == pgq::errc::type_mismatch);
    // The connection is still usable.
    const auto seven = co_await conn.query_as<int>("SELECT 7");
    CHECK(seven == std::vector<int>{7});
  });
}

TEST_CASE("query_as on a pool and in a transaction", "[api][pool][transaction]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    const pgq::pool_options o = pool_opts(2);
    pgq::pool pool(pool_executor(ex), o);
    const auto answer = co_await pool.query_as<int>("SELECT $1::int4 + 1", 41);
    CHECK(answer == std::vector<int>{42});
    auto tx = co_await pool.begin();
    co_await tx.execute("CREATE TEMP TABLE qa (id int, name text)");
    co_await tx.execute("INSERT INTO qa VALUES (1, 'one'), (2, 'two')");
    const auto rows = co_await tx.query_as<std::tuple<int, std::string>>("SELECT id, name FROM qa ORDER BY id");
    REQUIRE(rows.size() == 2);
    CHECK(std::get<1>(rows[1]) == "two");
    co_await tx.rollback();
    co_await pool.close();
  });
}

TEST_CASE("pgq::params carries parameters known only at run time", "[api]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    pgq::params p;
    CHECK(p.empty());
    const std::vector<int> values{3, 4, 5};
    for (int v : values) p.add(v);
    p.add(std::optional<std::string>{});
    p.add("label");
    CHECK(p.size() == 5);
    const pgq::params copy = p;
    auto r = co_await conn.query("SELECT $1::int4 + $2 + $3, $4::text IS NULL, $5::text", std::move(p));
    CHECK(r[0].get<int>(0) == 12);
    CHECK(r[0].get<bool>(1));
    CHECK(r[0].get<std::string>(2) == "label");
    // The same set through execute(), query_as() and a batch.
    co_await conn.execute("CREATE TEMP TABLE params_t (a int, b int, c int, d text, e text)");
    const std::uint64_t inserted = co_await conn.execute("INSERT INTO params_t VALUES ($1, $2, $3, $4, $5)", copy);
    CHECK(inserted == 1);
    const auto product =
        co_await conn.query_as<int>("SELECT $1::int4 * $2 * $3 + 0 * length(coalesce($4::text, $5::text))", copy);
    CHECK(product == std::vector<int>{60});
    pgq::batch b;
    b.add("INSERT INTO params_t VALUES ($1, $2, $3, $4, $5)", copy);
    const auto results = co_await conn.run_batch(b);
    REQUIRE(results.size() == 1);
    CHECK(results[0].rows_affected() == 1);
    const auto nulls = co_await conn.query_as<std::int64_t>("SELECT count(*) FROM params_t WHERE d IS NULL");
    CHECK(nulls == std::vector<std::int64_t>{2});
    // The same helper query(sql, args...) uses.
    const pgq::params made = pgq::make_params(1, std::string("two"), std::nullopt);
    CHECK(made.size() == 3);
    CHECK(made.value(2) == nullptr);
  });
}

TEST_CASE("a pool connects with the connect_options it carries", "[api][pool]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::pool_options o = pool_opts(1);
    o.conninfo = with_setting(dsn(), "application_name", "pgq_api_pool");
    o.connect.statement_cache_size = 0;
    pgq::pool pool(pool_executor(ex), o);
    const auto app = co_await pool.query_as<std::string>("SELECT current_setting('application_name')");
    CHECK(app == std::vector<std::string>{"pgq_api_pool"});
    for (int i = 0; i < 3; ++i) co_await pool.execute("SELECT $1::int4", i);
    auto l = co_await pool.acquire();
    CHECK(l->stats().statements_prepared == 0);  // the cache is off, as connect.statement_cache_size says
    l.release();
    const pgq::pool_stats s = pool.stats();
    CHECK(s.created == 1);
    co_await pool.close();
  });
}

TEST_CASE("a listener connects with the connect_options it carries", "[api][notify]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::listener_options lo;
    lo.connect.connect_timeout = std::chrono::seconds(5);
    lo.backoff_initial = std::chrono::milliseconds(10);
    pgq::listener l(ex, with_setting(dsn(), "application_name", "pgq_api_listener"), lo);
    co_await l.listen("pgq_api_channel");
    CHECK(l.backend_pid() != 0);
    auto conn = co_await connect();
    const auto apps = co_await conn.query_as<std::string>(
        "SELECT application_name FROM pg_stat_activity WHERE pid = $1", l.backend_pid());
    CHECK(apps == std::vector<std::string>{"pgq_api_listener"});
    l.close();
  });
}

TEST_CASE("begin(opts = {}) is the same call on a connection and a pool", "[api][transaction]") {
  static_assert(
      std::is_same_v<decltype(std::declval<pgq::connection&>().begin()), decltype(std::declval<pgq::pool&>().begin())>);
  static_assert(std::is_same_v<decltype(std::declval<pgq::connection&>().begin(pgq::tx_options{})),
                               decltype(std::declval<pgq::pool&>().begin(pgq::tx_options{}))>);
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto tx = co_await conn.begin();
    CHECK(conn.transaction_status() == pgq::tx_status::in_transaction);
    co_await tx.commit();
    const pgq::tx_options ro{.read_only = true};
    auto tx2 = co_await conn.begin(ro);
    auto e = co_await error_of(tx2.execute("CREATE TEMP TABLE nope (a int)"));
    REQUIRE(e.has_value());
    CHECK(e->sqlstate() == "25006");  // read-only transaction
    co_await tx2.rollback();
  });
}

TEST_CASE("row::as_tuple reads the first columns and rows_affected counts rows everywhere", "[api]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto r = co_await conn.query("SELECT 1::int4 AS a, 'b'::text AS b, 3::int4 AS c");
    const auto [a, b] = r[0].as_tuple<int, std::string>();
    CHECK(a == 1);
    CHECK(b == "b");
    CHECK(r.rows_affected() == 1);
    auto s = co_await conn.stream("SELECT g FROM generate_series(1, 5) g");
    while (co_await s.next()) {
    }
    CHECK(s.rows_affected() == 5);
  });
}
