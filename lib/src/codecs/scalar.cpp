// The scalar codecs: bool, the integers, float4/float8, text, bytea, uuid.
#include "codecs/common.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace pgq::codecs {

/// Appends `v` as float4out/float8out print it: shortest round-trip digits,
/// fixed notation for decimal exponents in [-4, 15) (float4: [-4, 6)),
/// scientific with a two-digit exponent otherwise.
template <class F>
void append_float(std::string& out, F v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v < 0 ? "-Infinity" : "Infinity";
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));
  std::string_view body = sci;
  bool neg = body.front() == '-';
  if (neg) body.remove_prefix(1);
  auto epos = body.find('e');
  std::string_view exp_text = body.substr(epos + 1);
  if (exp_text.front() == '+') exp_text.remove_prefix(1);
  int exp = 0;
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp);
  constexpr int fixed_limit = std::is_same_v<F, float> ? 6 : 15;
  if (exp < -4 || exp >= fixed_limit) {
    out.append(sci);
    return;
  }
  // The significant digits without the point (at most 17 for a double): a
  // stack buffer, as this runs for every float of a COPY or a JSON render.
  char digit_buf[32];
  std::size_t n = 0;
  for (char c : body.substr(0, epos))
    if (c != '.' && n < sizeof digit_buf) digit_buf[n++] = c;
  const std::string_view digits(digit_buf, n);
  if (neg) out += '-';
  if (exp < 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-exp - 1), '0');
    out += digits;
    return;
  }
  auto int_len = static_cast<std::size_t>(exp) + 1;
  if (digits.size() <= int_len) {
    out += digits;
    out.append(int_len - digits.size(), '0');
  } else {
    out.append(digits.substr(0, int_len));
    out += '.';
    out.append(digits.substr(int_len));
  }
}

/// Parses what float4in/float8in accept: spaces, NaN, [+-]Infinity/inf
/// (any case), decimal or scientific notation. False on junk or overflow.
template <class F>
bool parse_float(std::string_view s, F& out) {
  s = trim(s);
  std::string_view body = s;
  bool neg = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  if (iequals(body, "nan") && s.size() == 3) {
    out = std::numeric_limits<F>::quiet_NaN();
    return true;
  }
  if (iequals(body, "infinity") || iequals(body, "inf")) {
    out = neg ? -std::numeric_limits<F>::infinity() : std::numeric_limits<F>::infinity();
    return true;
  }
  if (body.empty() || body[0] == '+' || body[0] == '-') return false;
  // from_chars takes a leading '-' but not '+': parse from the sign we kept.
  const char* first = neg ? body.data() - 1 : body.data();
  const char* last = s.data() + s.size();
  auto r = std::from_chars(first, last, out, std::chars_format::general);
  return r.ec == std::errc() && r.ptr == last && !std::isnan(out) && !std::isinf(out);
}

template void append_float<float>(std::string&, float);
template void append_float<double>(std::string&, double);
template bool parse_float<float>(std::string_view, float&);
template bool parse_float<double>(std::string_view, double&);

void append_hex(std::string& out, std::string_view bytes) {
  constexpr char hex[] = "0123456789abcdef";
  out += "\\x";
  for (char c : bytes) {
    auto b = static_cast<unsigned char>(c);
    out += hex[b >> 4];
    out += hex[b & 15];
  }
}

namespace {

std::vector<std::byte> decode_bytea_text(value_view v) {
  std::string_view s = v.bytes;
  std::vector<std::byte> r;
  if (s.size() >= 2 && s[0] == '\\' && s[1] == 'x') {
    r.reserve((s.size() - 2) / 2);
    for (std::size_t i = 2; i < s.size();) {
      if (is_space(s[i])) {
        ++i;
        continue;
      }
      int hi = hex_value(s[i]);
      int lo = i + 1 < s.size() ? hex_value(s[i + 1]) : -1;
      if (hi < 0 || lo < 0) throw_invalid(v, "pairs of hex digits after \\x");
      r.push_back(static_cast<std::byte>(hi * 16 + lo));
      i += 2;
    }
    return r;
  }
  // The escape format: '\\' is a backslash, '\ooo' an octal byte.
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] != '\\') {
      r.push_back(static_cast<std::byte>(s[i++]));
    } else if (i + 1 < s.size() && s[i + 1] == '\\') {
      r.push_back(std::byte{'\\'});
      i += 2;
    } else if (i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' &&
               s[i + 3] >= '0' && s[i + 3] <= '7') {
      r.push_back(static_cast<std::byte>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 4;
    } else {
      throw_invalid(v, "\\x hex or the escape format (\\\\, \\ooo)");
    }
  }
  return r;
}

}  // namespace

}  // namespace pgq::codecs

namespace pgq {
using namespace codecs;

bytea::bytea(std::string_view bytes)
    : data(reinterpret_cast<const std::byte*>(bytes.data()),
           reinterpret_cast<const std::byte*>(bytes.data()) + bytes.size()) {}

uuid uuid::parse(std::string_view text) {
  // uuid_in: optional braces, 16 hex pairs, a '-' allowed after any group
  // of two bytes but the last.
  uuid u;
  std::size_t i = 0;
  bool braces = !text.empty() && text[0] == '{';
  if (braces) ++i;
  auto bad = [&]() -> sql_error {
    return sql_error(errc::invalid_value, "invalid uuid: " + snippet(text, format::text));
  };
  for (std::size_t b = 0; b < 16; ++b) {
    if (i + 2 > text.size()) throw bad();
    int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) throw bad();
    u.bytes[b] = static_cast<std::uint8_t>(hi * 16 + lo);
    i += 2;
    if (i < text.size() && text[i] == '-' && b % 2 == 1 && b < 15) ++i;
  }
  if (braces) {
    if (i >= text.size() || text[i] != '}') throw bad();
    ++i;
  }
  if (i != text.size()) throw bad();
  return u;
}

std::string uuid::to_string() const {
  constexpr char hex[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (std::size_t b = 0; b < 16; ++b) {
    if (b == 4 || b == 6 || b == 8 || b == 10) s += '-';
    s += hex[bytes[b] >> 4];
    s += hex[bytes[b] & 15];
  }
  return s;
}

namespace detail {

void encode_integer(std::int64_t v, int width, format f, std::string& out) {
  if (f == format::text) return append_int(out, v);
  switch (width) {
    case 2: return put_be(out, static_cast<std::uint16_t>(v));
    case 4: return put_be(out, static_cast<std::uint32_t>(v));
    default: return put_be(out, static_cast<std::uint64_t>(v));
  }
}

std::int64_t decode_integer(value_view v, std::int64_t lo, std::int64_t hi, bool allow_oid, std::string_view cpp_name) {
  bool ok = v.type == oids::int2 || v.type == oids::int4 || v.type == oids::int8 || (allow_oid && v.type == oids::oid_);
  check_accepts(ok, v, cpp_name);
  std::int64_t r = 0;
  if (v.fmt == format::text) {
    if (!parse_int64(v.bytes, r)) throw_invalid(v, "an integer");
  } else {
    const char* p = v.bytes.data();
    switch (v.type) {
      case oids::int2:
        check_size(v, 2);
        r = static_cast<std::int16_t>(get_be<std::uint16_t>(p));
        break;
      case oids::int4:
        check_size(v, 4);
        r = static_cast<std::int32_t>(get_be<std::uint32_t>(p));
        break;
      case oids::oid_:
        check_size(v, 4);
        r = get_be<std::uint32_t>(p);
        break;
      default:
        check_size(v, 8);
        r = static_cast<std::int64_t>(get_be<std::uint64_t>(p));
        break;
    }
  }
  if (r < lo || r > hi) {
    std::string shown;
    append_int(shown, r);
    throw_out_of_range(v, shown, cpp_name);
  }
  return r;
}

}  // namespace detail

void codec<bool>::encode(const bool& v, format f, std::string& out) {
  if (f == format::text) out += v ? 't' : 'f';
  else out += static_cast<char>(v ? 1 : 0);
}

bool codec<bool>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  if (v.fmt == format::binary) {
    check_size(v, 1);
    return v.bytes[0] != 0;
  }
  // boolin: t/f, true/false, yes/no, on/off, 1/0, any case, unique prefixes.
  std::string_view s = trim(v.bytes);
  auto prefix_of = [&](std::string_view word, std::size_t min_len) {
    return s.size() >= min_len && s.size() <= word.size() && iequals(s, word.substr(0, s.size()));
  };
  if (prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || s == "1") return true;
  if (prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || s == "0") return false;
  throw_invalid(v, "t or f");
}

namespace {

/// Any float-accepted value as a double, from either format.
double decode_as_double(value_view v) {
  double d = 0;
  if (v.fmt == format::text) {
    if (!parse_float(v.bytes, d)) throw_invalid(v, "a number, NaN or [-]Infinity");
    return d;
  }
  switch (v.type) {
    case oids::float4: check_size(v, 4); return std::bit_cast<float>(get_be<std::uint32_t>(v.bytes.data()));
    case oids::float8: check_size(v, 8); return std::bit_cast<double>(get_be<std::uint64_t>(v.bytes.data()));
    case oids::numeric: {
      if (numeric_to_double_fast(v, d)) return d;
      std::string t = numeric_from_binary(v);
      if (!parse_float(t, d)) throw_out_of_range(v, t, "double");
      return d;
    }
    default: return static_cast<double>(detail::decode_integer(v, INT64_MIN, INT64_MAX, false, "double"));
  }
}

bool accepts_float(oid t) {
  return t == oids::float4 || t == oids::float8 || t == oids::int2 || t == oids::int4 || t == oids::int8 ||
         t == oids::numeric;
}

}  // namespace

bool codec<float>::accepts(oid t) noexcept { return accepts_float(t); }

void codec<float>::encode(const float& v, format f, std::string& out) {
  if (f == format::text) return append_float(out, v);
  put_be(out, std::bit_cast<std::uint32_t>(v));
}

float codec<float>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  if (v.type == oids::float4) {
    if (v.fmt == format::binary) {
      check_size(v, 4);
      return std::bit_cast<float>(get_be<std::uint32_t>(v.bytes.data()));
    }
    float f = 0;  // parsed as float directly: no double rounding
    if (!parse_float(v.bytes, f)) throw_invalid(v, "a number, NaN or [-]Infinity");
    return f;
  }
  double d = decode_as_double(v);
  auto f = static_cast<float>(d);
  if (std::isinf(f) && !std::isinf(d)) throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
  return f;
}

bool codec<double>::accepts(oid t) noexcept { return accepts_float(t); }

void codec<double>::encode(const double& v, format f, std::string& out) {
  if (f == format::text) return append_float(out, v);
  put_be(out, std::bit_cast<std::uint64_t>(v));
}

double codec<double>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  return decode_as_double(v);
}

std::string codec<std::string>::decode(value_view v) { return detail::render_text(v); }

bool codec<std::string_view>::accepts(oid t) noexcept {
  return is_text_like(t) || t == oids::jsonb || !detail::binary_renderable(t);
}

std::string_view codec<std::string_view>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  if (v.fmt == format::text || (is_text_like(v.type) && v.type != oids::char_)) return v.bytes;
  if (v.type == oids::char_) {
    check_size(v, 1);
    return v.bytes;
  }
  if (v.type == oids::jsonb) {
    if (v.bytes.empty() || v.bytes[0] != 1) throw_invalid(v, "jsonb version 1");
    return v.bytes.substr(1);
  }
  detail::throw_type_mismatch(v.type, "std::string_view (binary format; use std::string)");
}

void codec<const char*>::encode(const char* const& v, format, std::string& out) {
  if (v == nullptr) throw_encode(cpp_name, "null pointer (use std::optional for NULL)");
  out.append(v);
}

void codec<std::vector<std::byte>>::encode(const std::vector<std::byte>& v, format f, std::string& out) {
  std::string_view bytes(reinterpret_cast<const char*>(v.data()), v.size());
  if (f == format::text) append_hex(out, bytes);
  else out.append(bytes);
}

std::vector<std::byte> codec<std::vector<std::byte>>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  if (v.fmt == format::text) return decode_bytea_text(v);
  auto p = reinterpret_cast<const std::byte*>(v.bytes.data());
  return {p, p + v.bytes.size()};
}

void codec<uuid>::encode(const uuid& v, format f, std::string& out) {
  if (f == format::text) out += v.to_string();
  else out.append(reinterpret_cast<const char*>(v.bytes.data()), v.bytes.size());
}

uuid codec<uuid>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  if (v.fmt == format::text) {
    try {
      return uuid::parse(v.bytes);
    } catch (const sql_error&) {
      throw_invalid(v, "a uuid such as a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    }
  }
  check_size(v, 16);
  uuid u;
  std::memcpy(u.bytes.data(), v.bytes.data(), 16);
  return u;
}

}  // namespace pgq
