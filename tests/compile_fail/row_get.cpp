// row::get<T> / field::as<T> of a type no codec decodes must not compile,
// and the error must name the concept and the type.
#include <pgq/result.hpp>

#include <optional>

struct not_a_pg_type {};

#ifdef PGQ_CONTROL
using wanted = int;
#else
using wanted = not_a_pg_type;
#endif

wanted read(const pgq::row& r) { return r.get<wanted>(0); }
std::optional<wanted> read_nullable(const pgq::row& r) { return r[0].as<std::optional<wanted>>(); }
