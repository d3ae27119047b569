// Values, rows and results as PostgreSQL's to_json() renders them (the
// nlohmann::json codec itself is in codecs/json.cpp).
#include "codecs/common.hpp"
#include "codecs/record.hpp"
#include "type_catalog.hpp"

#include <pgq/json.hpp>

#include <charconv>
#include <cmath>
#include <limits>

namespace pgq {
namespace {

constexpr oid record_oid = 2249;  // record[] (2287) is a built-in array of it

/// How deep records and arrays may nest inside one value before pgq refuses
/// it: the server's own limit is far below (a row type cannot contain
/// itself), so only hostile bytes reach it.
constexpr int max_value_nesting = 64;

/// Where a value sits: the catalog to name its types, how many values
/// enclose it, and how many arrays enclose it directly (arrays of arrays).
struct json_ctx {
  const detail::type_catalog* types = nullptr;
  int levels = 0;
  int arrays = 0;
};

/// A decimal reduced to sign, significant digits and the exponent of the
/// first digit, so that "123.4500", "1.2345e+02" and "123.45" compare equal.
struct decimal_key {
  bool neg = false;
  std::string digits;
  long exp = 0;
  bool operator==(const decimal_key&) const = default;
};

std::optional<decimal_key> decimal_of(std::string_view s) {
  decimal_key k;
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) k.neg = s[i++] == '-';
  long point = -1, count = 0;
  for (; i < s.size() && s[i] != 'e' && s[i] != 'E'; ++i) {
    if (s[i] == '.') {
      if (point >= 0) return std::nullopt;
      point = count;
    } else if (s[i] >= '0' && s[i] <= '9') {
      k.digits += s[i];
      ++count;
    } else {
      return std::nullopt;
    }
  }
  if (point < 0) point = count;
  long e = 0;
  if (i < s.size()) {
    std::string_view es = s.substr(i + 1);
    if (!es.empty() && es[0] == '+') es.remove_prefix(1);
    auto r = std::from_chars(es.data(), es.data() + es.size(), e);
    if (r.ec != std::errc() || r.ptr != es.data() + es.size()) return std::nullopt;
  }
  auto lead = k.digits.find_first_not_of('0');
  if (lead == std::string::npos) return decimal_key{};  // zero, any sign
  k.digits.erase(0, lead);
  k.digits.erase(k.digits.find_last_not_of('0') + 1);
  k.exp = point - static_cast<long>(lead) - 1 + e;
  return k;
}

bool parsed_whole(std::from_chars_result r, const char* end) { return r.ec == std::errc() && r.ptr == end; }

/// See the numeric rule in json.hpp.
nlohmann::json numeric_json(std::string_view text) {
  if (text == "NaN" || text == "Infinity" || text == "-Infinity") return std::string(text);
  const char* end = text.data() + text.size();
  if (std::int64_t i; parsed_whole(std::from_chars(text.data(), end, i), end)) return i;
  if (std::uint64_t u; parsed_whole(std::from_chars(text.data(), end, u), end)) return u;
  double d = 0;
  if (parsed_whole(std::from_chars(text.data(), end, d), end) && std::isfinite(d)) {
    nlohmann::json j = d;
    // Compare against what nlohmann will actually print, not to_chars:
    // only then is the emitted JSON text the same decimal number.
    if (decimal_of(j.dump()) == decimal_of(text)) return j;
  }
  return std::string(text);
}

nlohmann::json float_json(value_view v) {
  std::string text = detail::render_text(v);
  if (text == "NaN" || text == "Infinity" || text == "-Infinity") return text;
  // Parsed from the shortest text, so a float4 1.1 stays 1.1 rather than
  // becoming 1.100000023841858.
  return codec<double>::decode({text, oids::float8, format::text});
}

/// "2024-02-29 13:45:01+05:30 BC" -> "2024-02-29T13:45:01+05:30 BC":
/// to_json's ISO 8601 with a T and (timestamptz) a full +HH:MM offset.
std::string datetime_json(std::string text, bool with_offset) {
  auto sp = text.find(' ');
  if (sp == std::string::npos || sp + 1 >= text.size() || text[sp + 1] < '0' || text[sp + 1] > '9')
    return text;  // infinity, or a bare date
  text[sp] = 'T';
  if (!with_offset) return text;
  auto off = text.find_first_of("+-", sp);
  if (off == std::string::npos) return text;
  auto off_end = text.find(' ', off);
  if (off_end == std::string::npos) off_end = text.size();
  if (off_end - off == 3) text.insert(off_end, ":00");  // "+05" -> "+05:00"
  return text;
}

nlohmann::json json_value(value_view v, json_ctx ctx);

/// An array; `element` names the element type of a text array whose type
/// pgq knows only from the catalog (0: from the array type or the bytes).
nlohmann::json array_json(value_view v, json_ctx ctx, oid element) {
  detail::check_array_nesting(v, ctx.arrays + 1);
  json_ctx inner = ctx;
  ++inner.arrays;
  ++inner.levels;
  std::vector<nlohmann::json> flat;
  auto add = [&flat, inner, element](const value_view* e, bool) {
    if (e == nullptr) {
      flat.emplace_back(nullptr);
      return;
    }
    value_view ev = *e;
    if (element != 0 && ev.fmt == format::text && ev.type == oids::unknown) ev.type = element;
    flat.push_back(json_value(ev, inner));
  };
  detail::array_shape shape = detail::for_each_array_element(v, 6, detail::element_sink::of(add));
  if (shape.lengths.empty()) return nlohmann::json::array();
  // Nest the row-major elements by dimension, innermost first.
  std::vector<nlohmann::json> level = std::move(flat);
  for (std::size_t d = shape.lengths.size(); d-- > 1;) {
    auto n = static_cast<std::size_t>(shape.lengths[d]);
    std::vector<nlohmann::json> outer;
    for (std::size_t k = 0; k < level.size(); k += n) {
      nlohmann::json a = nlohmann::json::array();
      for (std::size_t j = k; j < k + n; ++j) a.push_back(std::move(level[j]));
      outer.push_back(std::move(a));
    }
    level = std::move(outer);
  }
  nlohmann::json a = nlohmann::json::array();
  for (auto& e : level) a.push_back(std::move(e));
  return a;
}

std::string field_key(const detail::type_info* info, std::size_t count, std::size_t k) {
  if (info != nullptr && info->names.size() == count) return info->names[k];
  return "f" + std::to_string(k + 1);  // what to_json() calls an anonymous record's fields
}

/// A record or composite as to_json() renders it: an object whose keys are
/// the attribute names (f1..fN for an anonymous record), in which each field
/// is rendered as a value of its own type.
nlohmann::json record_json(value_view v, json_ctx ctx, const detail::type_info* info) {
  json_ctx inner = ctx;
  inner.arrays = 0;
  ++inner.levels;
  nlohmann::json obj = nlohmann::json::object();
  if (v.fmt == format::binary) {
    const auto fields = codecs::parse_binary_record(v);
    for (std::size_t k = 0; k < fields.size(); ++k) {
      const auto& f = fields[k];
      obj[field_key(info, fields.size(), k)] = f.null ? nlohmann::json(nullptr) : json_value(f.value, inner);
    }
    return obj;
  }
  const auto fields = codecs::parse_text_record(v);
  // The text carries no types: only a catalog entry with as many attributes
  // says how to read each field; without one they stay strings.
  const bool typed = info != nullptr && info->types.size() == fields.size();
  for (std::size_t k = 0; k < fields.size(); ++k) {
    const auto& f = fields[k];
    nlohmann::json j;
    if (!f) j = nullptr;
    else if (typed) j = json_value(value_view{*f, info->types[k], format::text}, inner);
    else j = *f;
    obj[field_key(info, fields.size(), k)] = std::move(j);
  }
  return obj;
}

}  // namespace

nlohmann::json to_json_value(value_view v) { return json_value(v, json_ctx{}); }

namespace detail {
bool known_without_catalog(oid t) noexcept {
  // box[] (1020) is a built-in array left out of pgq's table on purpose.
  return codecs::scalar_name(t) != nullptr || array_element_oid(t) != 0 || t == 1020;
}

nlohmann::json to_json_value(value_view v, const type_catalog* types) {
  json_ctx ctx;
  ctx.types = types;
  return json_value(v, ctx);
}
}  // namespace detail

namespace {

// to_json_value() for a value at `ctx`.
nlohmann::json json_value(value_view v, json_ctx ctx) {
  if (ctx.levels > max_value_nesting) {
    throw sql_error(errc::invalid_value, "invalid " + type_name(v.type) +
                                             " value: records and arrays nested deeper than " +
                                             std::to_string(max_value_nesting) + " levels, pgq's limit");
  }
  switch (v.type) {
    case oids::int2:
    case oids::int4:
    case oids::int8: return codec<std::int64_t>::decode(v);
    case oids::float4:
    case oids::float8: return float_json(v);
    case oids::numeric: return numeric_json(codec<numeric>::decode(v).str());
    case oids::bool_: return codec<bool>::decode(v);
    case oids::json:
    case oids::jsonb: return codec<nlohmann::json>::decode(v);
    case oids::timestamp: return datetime_json(detail::render_text(v), false);
    case oids::timestamptz: return datetime_json(detail::render_text(v), true);
    default: break;
  }
  if (v.type == record_oid) return record_json(v, ctx, nullptr);
  if (array_element_oid(v.type) != 0) return array_json(v, ctx, 0);
  if (const detail::type_info* info = ctx.types != nullptr ? ctx.types->find(v.type) : nullptr) {
    switch (info->k) {
      case detail::type_info::kind::composite: return record_json(v, ctx, info);
      case detail::type_info::kind::domain: {
        // A domain's value is its base type's, in both formats.
        value_view base = v;
        base.type = info->base;
        ++ctx.levels;
        return json_value(base, ctx);
      }
      case detail::type_info::kind::enumeration:
        return std::string(v.bytes);  // enum_send sends the label, as enum_out prints it
      case detail::type_info::kind::array: return array_json(v, ctx, info->base);
      case detail::type_info::kind::other: break;
    }
  }
  return detail::render_text(v);
}

}  // namespace

}  // namespace pgq
