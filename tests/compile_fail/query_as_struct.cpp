// query_as<T> of a struct with a field no codec decodes must not compile,
// and the error must name the concept and the struct (GCC names the struct,
// not the field: hence the struct's name below).
#include <pgq/connection.hpp>

struct not_a_pg_type {};

#ifdef PGQ_CONTROL
struct not_a_pg_type_row {
  int id;
  int other;
};
#else
struct not_a_pg_type_row {
  int id;
  not_a_pg_type other;
};
#endif

boost::asio::awaitable<std::vector<not_a_pg_type_row>> read(pgq::connection& c) {
  return c.query_as<not_a_pg_type_row>("SELECT 1, 2");
}
