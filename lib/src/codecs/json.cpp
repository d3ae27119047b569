// The nlohmann::json codec: json and jsonb, text and binary (jsonb's
// version byte), with a nesting limit checked before parsing.
#include <pgq/codec.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace pgq {
namespace {

[[noreturn]] void throw_bad_json(value_view v, std::string_view why) {
  std::string shown(v.bytes.substr(0, 48));
  throw sql_error(errc::invalid_value, "invalid " + type_name(v.type) + " value (" + std::string(why) + "): " + shown +
                                           (v.bytes.size() > 48 ? "..." : ""));
}

// Whether arrays and objects nest deeper than `limit` in `text`: a scan, so
// that a too-deep document is refused before it is parsed.
bool nests_deeper_than(std::string_view text, std::size_t limit) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace

void codec<nlohmann::json>::encode(const nlohmann::json& v, format f, std::string& out) {
  try {
    if (f == format::binary) out += '\x01';  // jsonb binary format version
    out += v.dump();
  } catch (const nlohmann::json::exception& e) {
    throw sql_error(errc::invalid_value, std::string("cannot encode nlohmann::json: ") + e.what());
  }
}

nlohmann::json codec<nlohmann::json>::decode(value_view v) {
  if (!accepts(v.type)) detail::throw_type_mismatch(v.type, cpp_name);
  std::string_view text = v.bytes;
  if (v.fmt == format::binary && v.type == oids::jsonb) {
    if (text.empty() || text[0] != '\x01') throw_bad_json(v, "jsonb binary version 1");
    text.remove_prefix(1);
  }
  if (nests_deeper_than(text, max_depth)) {
    throw_bad_json(v, "nested deeper than " + std::to_string(max_depth) + " levels, pgq's limit");
  }
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) throw_bad_json(v, "a JSON document");
  return j;
}

}  // namespace pgq
