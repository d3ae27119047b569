// Records and composites on the wire: record_send's binary layout and
// record_out's text, split into fields (the caller renders each by type).
#include "codecs/record.hpp"

#include "codecs/common.hpp"

namespace pgq::codecs {

std::vector<binary_record_field> parse_binary_record(value_view v) {
  reader r(v);
  const std::int32_t count = r.i32("a record's field count");
  if (count < 0 || static_cast<std::size_t>(count) > max_record_fields)
    throw_invalid(v, "a field count from 0 to " + std::to_string(max_record_fields));
  // Each field takes at least 8 bytes (type and length): a count the bytes
  // cannot hold is a lie, refused before anything is allocated.
  if (static_cast<std::size_t>(count) > r.left() / 8) throw_invalid(v, "as many fields as the record says");
  std::vector<binary_record_field> fields(static_cast<std::size_t>(count));
  for (auto& f : fields) {
    f.type = r.get<std::uint32_t>("a field's type");
    const std::int32_t len = r.i32("a field's length");
    if (len == -1) continue;
    if (len < 0) throw_invalid(v, "field lengths >= -1");
    f.null = false;
    f.value = value_view{r.take(static_cast<std::size_t>(len), "field bytes"), f.type, format::binary};
  }
  r.end("no bytes after the last field");
  return fields;
}

std::vector<std::optional<std::string>> parse_text_record(value_view v) {
  const std::string_view s = v.bytes;
  auto fail = [&v](std::string_view what) { throw_invalid(v, "a record literal: " + std::string(what)); };
  std::size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  if (i >= s.size() || s[i] != '(') fail("'('");
  ++i;
  std::vector<std::optional<std::string>> fields;
  // record_in: "()" is a record of no fields; otherwise every comma starts
  // another field, and a field with no characters at all is NULL.
  if (i < s.size() && s[i] == ')') {
    ++i;
  } else {
    for (;;) {
      if (fields.size() >= max_record_fields) fail("at most 1664 fields");
      std::string f;
      bool any = false;
      while (i < s.size() && s[i] != ',' && s[i] != ')') {
        any = true;
        if (s[i] == '"') {
          ++i;
          for (;;) {
            if (i >= s.size()) fail("a closing '\"'");
            if (s[i] == '\\') {
              if (++i >= s.size()) fail("a character after '\\'");
              f += s[i++];
            } else if (s[i] == '"') {
              if (i + 1 < s.size() && s[i + 1] == '"') {
                f += '"';
                i += 2;
              } else {
                ++i;
                break;
              }
            } else {
              f += s[i++];
            }
          }
        } else if (s[i] == '\\') {
          if (++i >= s.size()) fail("a character after '\\'");
          f += s[i++];
        } else {
          f += s[i++];
        }
      }
      if (any) fields.emplace_back(std::move(f));
      else fields.emplace_back(std::nullopt);
      if (i >= s.size()) fail("')'");
      if (s[i++] == ')') break;
    }
  }
  while (i < s.size() && is_space(s[i])) ++i;
  if (i != s.size()) fail("nothing after the closing ')'");
  return fields;
}

}  // namespace pgq::codecs
