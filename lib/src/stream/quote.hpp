// stream/quote.hpp - SQL quoting that only pgq's own statements need.
#pragma once

#include <string>
#include <string_view>

namespace pgq {

/// `"name"` quoted as an SQL identifier (double quotes doubled), for
/// LISTEN/UNLISTEN, which take no parameters.
std::string quote_identifier(std::string_view name);

}  // namespace pgq
