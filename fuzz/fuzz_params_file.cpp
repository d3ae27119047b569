// libFuzzer target: the CLI's --params-file parser (cli/params_file.cpp).
//
// The first byte picks the file name, and with it the format: CSV, NDJSON,
// or sniffed from the text. A parse either throws usage_error naming the
// file, or gives lines; every CSV line has the header's number of fields,
// and CSV lines written back out (every value quoted, NULL as an empty
// unquoted field) parse to the same lines.
#include "params_file.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using lines = std::vector<std::vector<std::optional<std::string>>>;

std::string to_csv(const lines& in) {
  std::string out;
  for (std::size_t i = 0; i < in.front().size(); ++i) out += (i ? ",c" : "c") + std::to_string(i);
  out += "\r\n";
  for (const auto& line : in) {
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (i) out += ',';
      if (!line[i]) continue;
      out += '"';
      for (char c : *line[i]) {
        if (c == '"') out += '"';
        out += c;
      }
      out += '"';
    }
    out += '\n';
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr std::string_view names[] = {"params.csv", "params.ndjson", "-"};
  const std::string_view name = names[data[0] % 3];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  lines parsed;
  try {
    parsed = pgq::cli::parse_params_file(text, name);
  } catch (const pgq::cli::usage_error& e) {
    if (!std::string_view(e.what()).starts_with(name)) std::abort();
    return 0;
  }
  const bool csv = name == "params.csv" || (name == "-" && [&] {
                     const auto first = text.find_first_not_of(" \t\r\n");
                     return first == std::string_view::npos || (text[first] != '[' && text[first] != '{');
                   }());
  if (!csv || parsed.empty()) return 0;
  for (const auto& line : parsed) {
    if (line.size() != parsed.front().size()) std::abort();
  }
  const std::string again = to_csv(parsed);
  if (pgq::cli::parse_params_file(again, "again.csv") != parsed) std::abort();
  return 0;
}
