// libFuzzer target: split_sql on any script. It either throws sql_error
// (errc::sql_split_failed) with a position inside the script, or returns statements
// that are non-empty slices of the script, in order, at the line and column
// it reports.
#include <pgq/sql_split.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view script(reinterpret_cast<const char*>(data), size);
  try {
    const auto statements = pgq::split_sql(script);
    std::size_t last_end = 0;
    for (const auto& s : statements) {
      if (s.text.empty()) std::abort();
      if (s.offset < last_end || s.offset + s.text.size() > script.size()) std::abort();
      if (script.substr(s.offset, s.text.size()) != s.text) std::abort();
      std::size_t line = 1, column = 1;
      for (std::size_t i = 0; i < s.offset; ++i) {
        if (script[i] == '\n') {
          ++line;
          column = 1;
        } else {
          ++column;
        }
      }
      if (line != s.line || column != s.column) std::abort();
      last_end = s.offset + s.text.size();
    }
  } catch (const pgq::sql_error& e) {
    if (e.code() != pgq::errc::sql_split_failed) std::abort();
    const auto& d = e.diag();
    if (!d.script_line || !d.script_column || *d.script_line == 0 || *d.script_column == 0) std::abort();
  }
  return 0;
}
