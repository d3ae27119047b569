// A statement parameter of a type no codec encodes must not compile, and the
// error must name the concept and the type.
#include <pgq/connection.hpp>

struct not_a_pg_type {};

#ifdef PGQ_CONTROL
using param = int;
#else
using param = not_a_pg_type;
#endif

boost::asio::awaitable<pgq::result> run(pgq::connection& c, const param& p) { return c.query("SELECT $1", p); }
