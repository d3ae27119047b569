// query_as<T> of a type no codec decodes must not compile, and the error
// must name the concept and the type.
#include <pgq/connection.hpp>

struct not_a_pg_type {};

#ifdef PGQ_CONTROL
using wanted = int;
#else
using wanted = not_a_pg_type;
#endif

boost::asio::awaitable<std::vector<wanted>> read(pgq::connection& c) { return c.query_as<wanted>("SELECT 1"); }
