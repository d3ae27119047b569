// Compiled, never run: the layering of the public headers (issue 14). A
// rule broken here is a build error.
//
// connection.hpp does not pull in copy, notify or stream: were their
// headers included, these definitions would be redefinitions.
#include <pgq/connection.hpp>

namespace pgq {
class copy_writer {};
class copy_reader {};
struct notification {};
class row_stream {};
class listener {};
class lease;
class pool {};
}  // namespace pgq

// result.hpp declares JSON through json_fwd.hpp only.
#include <pgq/result.hpp>
#ifdef INCLUDE_NLOHMANN_JSON_HPP_
#error "<pgq/result.hpp> (or what it includes) includes <nlohmann/json.hpp>, not only json_fwd.hpp"
#endif

// transaction.hpp stands on lease.hpp, not on pool.hpp (pgq::pool, defined
// above, would be redefined).
#include <pgq/transaction.hpp>

#include <type_traits>
static_assert(std::is_nothrow_move_constructible_v<pgq::lease>, "transaction.hpp includes lease.hpp");

// pgq's own build flags stay pgq's.
#ifdef BOOST_ASIO_NO_DEPRECATED
#error "BOOST_ASIO_NO_DEPRECATED reached a consumer of pgq::pgq"
#endif
