// Compiled, never run: what the public API promises at compile time
// (issue 14). A broken promise is a build error.
#include <pgq/pgq.hpp>

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

struct no_codec {};

// Helpers only pgq uses are not reachable: row_stream::keep_alive is private.
template <class S>
concept can_keep_alive = requires(S& s) {
  s.keep_alive(std::shared_ptr<void>{});
};
static_assert(!can_keep_alive<pgq::row_stream>);

// query_as<T> takes one decodable column or a tuple of them, nothing else.
static_assert(pgq::row_decodable<int>);
static_assert(pgq::row_decodable<std::optional<std::string>>);
static_assert(pgq::row_decodable<std::tuple<int, std::string, std::optional<double>>>);
static_assert(!pgq::row_decodable<no_codec>);
static_assert(!pgq::row_decodable<std::tuple<int, no_codec>>);

template <class T>
concept query_as_compiles = requires(pgq::connection& c) {
  c.query_as<T>("SELECT 1");
};
static_assert(query_as_compiles<int>);
static_assert(!query_as_compiles<no_codec>);

// pgq::params is the public set of run-time parameters every statement
// runner takes in place of the arguments; it is no parameter value itself.
static_assert(!pgq::encodable<pgq::params>);
template <class R>
concept takes_params = requires(R& r, pgq::params p) {
  { r.query("SELECT $1", std::move(p)) } -> std::same_as<boost::asio::awaitable<pgq::result>>;
  { r.execute("SELECT $1", std::move(p)) } -> std::same_as<boost::asio::awaitable<std::uint64_t>>;
  { r.template query_as<int>("SELECT $1", std::move(p)) } -> std::same_as<boost::asio::awaitable<std::vector<int>>>;
};
static_assert(takes_params<pgq::connection>);
static_assert(takes_params<pgq::pool>);
static_assert(takes_params<pgq::transaction>);

// One way to say how to connect: pool, listener and migrator all carry a
// connect_options.
static_assert(std::is_same_v<decltype(pgq::pool_options::connect), pgq::connect_options>);
static_assert(std::is_same_v<decltype(pgq::listener_options::connect), pgq::connect_options>);
static_assert(std::is_same_v<decltype(pgq::migrator_options::connect), pgq::connect_options>);
static_assert(std::is_same_v<decltype(pgq::pool_options::conninfo), std::string>);
// ... and owns no memory, so that a brace-initialised one inside a co_await
// expression is safe from GCC 12's double destruction.
static_assert(std::is_trivially_copyable_v<pgq::connect_options>);

// One name for the reconnect backoff.
static_assert(
    std::is_same_v<decltype(pgq::listener_options::backoff_initial), decltype(pgq::pool_options::backoff_initial)>);
static_assert(std::is_same_v<decltype(pgq::listener_options::backoff_max), decltype(pgq::pool_options::backoff_max)>);

// begin(opts = {}) is the same on connection and pool.
static_assert(
    std::is_same_v<decltype(std::declval<pgq::connection&>().begin()), decltype(std::declval<pgq::pool&>().begin())>);

// pool::stats() returns the public pgq::pool_stats.
static_assert(std::is_same_v<decltype(std::declval<const pgq::pool&>().stats()), pgq::pool_stats>);

}  // namespace
