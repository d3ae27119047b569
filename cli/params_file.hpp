// --params-file parsing, apart from the rest of the CLI so that the fuzz
// target can build it alone.
#pragma once

#include "usage_error.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgq::cli {

/// The parameter lines of --params-file: CSV with a header row (an empty
/// unquoted field is NULL, "" an empty string) or NDJSON (each line an array
/// of values, or an object whose values are taken in order; null is NULL,
/// strings as they are, anything else as its JSON text). The format is
/// chosen by the extension (.csv; .ndjson, .jsonl, .json) or else by the
/// first character. Throws usage_error naming the line.
std::vector<std::vector<std::optional<std::string>>> parse_params_file(std::string_view text, std::string_view name);

}  // namespace pgq::cli
