// The server's text for a binary value: what codec<std::string> returns and
// what the statement cache checks before asking for binary results.
#include "codecs/common.hpp"
#include "codecs/record.hpp"

#include <algorithm>
#include <bit>
#include <optional>
#include <vector>

namespace pgq::codecs {
namespace {

constexpr oid record_oid = 2249;  // an anonymous record (record[] is 2287)

// `depth`: how many arrays enclose `v` (0 for a value of its own).
std::string render_binary(value_view v, int depth);

/// Appends an array element the way array_out prints it.
void append_array_element(std::string& out, std::string_view e) {
  if (needs_quotes(e)) append_quoted(out, e);
  else out += e;
}

/// record_out's quoting of one field: quoted when empty or holding a quote,
/// a backslash, a parenthesis, a comma or white space; inside, a quote or a
/// backslash is doubled.
void append_record_field(std::string& out, std::string_view f) {
  const bool quote = f.empty() || f.find_first_of("\"\\(), \t\n\r\v\f") != std::string_view::npos;
  if (!quote) {
    out += f;
    return;
  }
  out += '"';
  for (char c : f) {
    if (c == '"' || c == '\\') out += c;
    out += c;
  }
  out += '"';
}

/// A binary record (record_send) as record_out prints it; each field is
/// rendered from its own type, which the bytes carry.
std::string render_binary_record(value_view v, int depth) {
  // Records and arrays nest inside each other; bound the recursion as the
  // JSON renderer does.
  if (depth >= 64) throw_invalid(v, "records and arrays nested at most 64 levels deep");
  const auto fields = parse_binary_record(v);
  std::string out = "(";
  for (std::size_t k = 0; k < fields.size(); ++k) {
    if (k > 0) out += ',';
    const binary_record_field& f = fields[k];
    if (f.null) continue;
    if (!detail::binary_renderable(f.value.type)) {
      throw sql_error(errc::type_mismatch, "field " + std::to_string(k + 1) + " of a record has type " +
                                               type_name(f.value.type) +
                                               ", whose binary form pgq cannot print: cast the field to text");
    }
    append_record_field(out, render_binary(f.value, depth + 1));
  }
  out += ')';
  return out;
}

// `depth`: how many arrays enclose this one. The element type comes from the
// bytes, so an element may claim to be an array again: bounded.
std::string render_binary_array(value_view v, int depth) {
  detail::check_array_nesting(v, depth + 1);
  std::vector<std::optional<std::string>> elems;
  auto add = [&](const value_view* e, bool) {
    if (e) elems.emplace_back(render_binary(*e, depth + 1));
    else elems.emplace_back();
  };
  detail::array_shape shape =
      parse_binary_array(v, max_array_dims, detail::element_sink::of(add), nullptr, "std::string");
  std::string out;
  bool default_bounds =
      std::all_of(shape.lower_bounds.begin(), shape.lower_bounds.end(), [](int lb) { return lb == 1; });
  if (!default_bounds) {
    for (std::size_t d = 0; d < shape.lengths.size(); ++d) {
      out += '[';
      append_int(out, shape.lower_bounds[d]);
      out += ':';
      append_int(out, static_cast<std::int64_t>(shape.lower_bounds[d]) + shape.lengths[d] - 1);
      out += ']';
    }
    out += '=';
  }
  if (shape.lengths.empty() || elems.empty()) return out + "{}";
  // Row-major: open a brace for every dimension whose index wraps to 0.
  std::size_t nd = shape.lengths.size();
  std::vector<int> idx(nd, 0);
  for (std::size_t k = 0; k < elems.size(); ++k) {
    std::size_t opened = nd;
    while (opened > 0 && idx[opened - 1] == 0) --opened;
    if (k > 0) out += ',';
    out.append(nd - opened, '{');
    if (elems[k]) append_array_element(out, *elems[k]);
    else out += "NULL";
    std::size_t d = nd;
    while (d > 0) {
      if (++idx[d - 1] < shape.lengths[d - 1]) break;
      idx[d - 1] = 0;
      out += '}';
      --d;
    }
  }
  return out;
}

/// The server's text for a binary value of a type pgq knows.
std::string render_binary(value_view v, int depth) {
  std::string out;
  switch (v.type) {
    case oids::bool_: check_size(v, 1); return v.bytes[0] ? "t" : "f";
    case oids::int2:
    case oids::int4:
    case oids::int8: append_int(out, detail::decode_integer(v, INT64_MIN, INT64_MAX, false, "std::string")); return out;
    case oids::oid_:
      check_size(v, 4);
      append_int(out, get_be<std::uint32_t>(v.bytes.data()));
      return out;
    case oids::float4:
      check_size(v, 4);
      append_float(out, std::bit_cast<float>(get_be<std::uint32_t>(v.bytes.data())));
      return out;
    case oids::float8:
      check_size(v, 8);
      append_float(out, std::bit_cast<double>(get_be<std::uint64_t>(v.bytes.data())));
      return out;
    case oids::numeric: return numeric_from_binary(v);
    case oids::uuid: return codec<uuid>::decode(v).to_string();
    case oids::date: {
      std::int64_t d = date_days(v);
      encode_date_days(d, format::text, out, "std::string");
      return out;
    }
    case oids::time: {
      check_size(v, 8);
      auto us = static_cast<std::int64_t>(get_be<std::uint64_t>(v.bytes.data()));
      if (us < 0 || us > usecs_per_day) throw_invalid(v, "microseconds within a day");
      append_time_of_day(out, us);
      return out;
    }
    case 1266: {  // timetz: time of day, then the zone in seconds west of UTC
      check_size(v, 12);
      auto us = static_cast<std::int64_t>(get_be<std::uint64_t>(v.bytes.data()));
      auto west = static_cast<std::int32_t>(get_be<std::uint32_t>(v.bytes.data() + 8));
      if (us < 0 || us > usecs_per_day || west < -57599 || west > 57599)
        throw_invalid(v, "a time of day and a zone offset");
      append_time_of_day(out, us);
      append_offset(out, -static_cast<std::int64_t>(west));
      return out;
    }
    case oids::interval: append_interval(v, out); return out;
    case oids::timestamp:
    case oids::timestamptz:
      check_size(v, 8);
      append_timestamp(out, static_cast<std::int64_t>(get_be<std::uint64_t>(v.bytes.data())), pg_epoch_days,
                       v.type == oids::timestamptz);
      return out;
    case oids::bytea: append_hex(out, v.bytes); return out;
    case oids::jsonb:
      if (v.bytes.empty() || v.bytes[0] != 1) throw_invalid(v, "jsonb version 1");
      return std::string(v.bytes.substr(1));
    case oids::char_: {
      // charout: a NUL is empty, a high-bit byte is \ooo.
      check_size(v, 1);
      auto c = static_cast<unsigned char>(v.bytes[0]);
      if (c == 0) return "";
      if (c < 0x80) return std::string(1, static_cast<char>(c));
      return {'\\', static_cast<char>('0' + (c >> 6)), static_cast<char>('0' + ((c >> 3) & 7)),
              static_cast<char>('0' + (c & 7))};
    }
    default: break;
  }
  if (is_text_like(v.type)) return std::string(v.bytes);
  if (array_element_oid(v.type) != 0) return render_binary_array(v, depth);
  if (v.type == record_oid) return render_binary_record(v, depth);
  detail::throw_type_mismatch(v.type, "std::string (binary format)");
}

}  // namespace
}  // namespace pgq::codecs

namespace pgq::detail {
using namespace codecs;

bool binary_renderable(oid t) noexcept {
  switch (t) {
    case oids::bool_:
    case oids::int2:
    case oids::int4:
    case oids::int8:
    case oids::oid_:
    case oids::float4:
    case oids::float8:
    case oids::numeric:
    case oids::uuid:
    case oids::date:
    case oids::time:
    case 1266:  // timetz
    case oids::interval:
    case oids::timestamp:
    case oids::timestamptz:
    case oids::bytea:
    case oids::jsonb:
    case 2249: return true;  // record: its fields are checked when it is printed
    default: break;
  }
  if (is_text_like(t)) return true;
  const oid element = array_element_oid(t);
  return element != 0 && binary_renderable(element);
}

std::string render_text(value_view v) {
  if (v.fmt == format::text) return std::string(v.bytes);
  return render_binary(v, 0);
}

}  // namespace pgq::detail
