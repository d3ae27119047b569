// libFuzzer target: conninfo::parse on any text (key=value or URI). A parse
// either throws errc::bad_conninfo or gives entries that survive a round
// trip through to_string(), and redacted() reads back as the same entries
// with the password masked.
#include <pgq/config.hpp>
#include <pgq/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  pgq::conninfo ci;
  try {
    ci = pgq::conninfo::parse(text);
  } catch (const pgq::sql_error& e) {
    if (e.code() != pgq::errc::bad_conninfo) std::abort();
    return 0;
  }
  const pgq::conninfo again = pgq::conninfo::parse(ci.to_string());
  if (again.entries() != ci.entries()) std::abort();  // to_string() lost or changed a value
  // redacted() reads back as the same entries with the password masked. (A
  // substring search for the password is no oracle: a password such as
  // "port='5" also matches the key and value of `port='5432'`.)
  const pgq::conninfo shown = pgq::conninfo::parse(ci.redacted());
  if (shown.entries().size() != ci.entries().size()) std::abort();
  for (const auto& [k, v] : ci.entries()) {
    const auto seen = shown.get(k);
    if (!seen) std::abort();
    if (k == "password" ? *seen != "********" : *seen != v) std::abort();
  }
  return 0;
}
