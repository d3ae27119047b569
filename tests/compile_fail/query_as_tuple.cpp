// query_as<std::tuple<...>> with an element no codec decodes must not
// compile, and the error must name the concept and the type.
#include <pgq/pool.hpp>

#include <string>
#include <tuple>

struct not_a_pg_type {};

#ifdef PGQ_CONTROL
using wanted = std::tuple<int, std::string>;
#else
using wanted = std::tuple<int, not_a_pg_type>;
#endif

boost::asio::awaitable<std::vector<wanted>> read(pgq::pool& p) { return p.query_as<wanted>("SELECT 1, 2"); }
