// libFuzzer target: conninfo::parse on any text (key=value or URI). A parse
// either throws errc::bad_conninfo or gives entries that survive a round
// trip through to_string(), and redacted() never shows the password.
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
  const std::string hidden = ci.redacted();
  if (auto pw = ci.get("password"); pw && pw->size() >= 4 && hidden.find(*pw) != std::string::npos &&
                                    ci.to_string().find(*pw) == ci.to_string().rfind(*pw)) {
    // The password shows in the redacted text (and not merely because another
    // value happens to contain it).
    bool elsewhere = false;
    for (const auto& [k, v] : ci.entries()) elsewhere = elsewhere || (k != "password" && v.find(*pw) != std::string::npos) || k.find(*pw) != std::string::npos;
    if (!elsewhere) std::abort();
  }
  return 0;
}
