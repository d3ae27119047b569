// pgq::numeric and its codec: exact decimal text, numeric_send's base-10000
// binary form.
#include "codecs/common.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <vector>

namespace pgq::codecs {
namespace {

constexpr std::uint16_t numeric_pos = 0x0000, numeric_neg = 0x4000, numeric_nan = 0xC000, numeric_pinf = 0xD000,
                        numeric_ninf = 0xF000;
constexpr int numeric_max_dscale = 0x3FFF;
constexpr int numeric_max_exponent = 1000;  // as numeric_in

/// The canonical text of a numeric literal, or nullopt when it is not one.
std::optional<std::string> canonical_numeric(std::string_view s) {
  s = trim(s);
  if (iequals(s, "nan")) return "NaN";
  bool neg = false;
  std::string_view body = s;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  if (iequals(body, "infinity") || iequals(body, "inf")) return std::string(neg ? "-Infinity" : "Infinity");
  std::size_t i = 0;
  std::string digits;  // all mantissa digits, the point removed
  std::size_t int_digits = 0, frac_digits = 0;
  while (i < body.size() && is_digit(body[i])) digits += body[i++], ++int_digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && is_digit(body[i])) digits += body[i++], ++frac_digits;
  }
  if (digits.empty()) return std::nullopt;
  long exp = 0;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    bool eneg = false;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) eneg = body[i++] == '-';
    if (i >= body.size() || !is_digit(body[i])) return std::nullopt;
    while (i < body.size() && is_digit(body[i])) {
      exp = exp * 10 + (body[i++] - '0');
      if (exp > numeric_max_exponent) return std::nullopt;
    }
    if (eneg) exp = -exp;
  }
  if (i != body.size()) return std::nullopt;
  long dscale = std::max(0L, static_cast<long>(frac_digits) - exp);
  if (dscale > numeric_max_dscale) return std::nullopt;
  // The decimal point sits after `point` digits of `digits` (may be outside).
  long point = static_cast<long>(int_digits) + exp;
  std::string int_part, frac_part;
  if (point <= 0) {
    int_part = "0";
    frac_part.assign(static_cast<std::size_t>(-point), '0');
    frac_part += digits;
  } else if (static_cast<std::size_t>(point) >= digits.size()) {
    int_part = digits;
    int_part.append(static_cast<std::size_t>(point) - digits.size(), '0');
  } else {
    int_part = digits.substr(0, static_cast<std::size_t>(point));
    frac_part = digits.substr(static_cast<std::size_t>(point));
  }
  frac_part.resize(static_cast<std::size_t>(dscale), '0');
  auto nz = int_part.find_first_not_of('0');
  int_part = nz == std::string::npos ? "0" : int_part.substr(nz);
  bool zero = int_part == "0" && frac_part.find_first_not_of('0') == std::string::npos;
  std::string r;
  if (neg && !zero) r += '-';  // numeric has no negative zero
  r += int_part;
  if (!frac_part.empty()) r += '.' + frac_part;
  return r;
}

/// numeric_send's layout of a canonical numeric text.
void numeric_to_binary(const std::string& text, std::string& out) {
  auto header = [&](std::uint16_t ndigits, std::int16_t weight, std::uint16_t sign, std::uint16_t dscale) {
    put_be<std::uint16_t>(out, ndigits);
    put_be<std::uint16_t>(out, static_cast<std::uint16_t>(weight));
    put_be<std::uint16_t>(out, sign);
    put_be<std::uint16_t>(out, dscale);
  };
  if (text == "NaN") return header(0, 0, numeric_nan, 0);
  if (text == "Infinity") return header(0, 0, numeric_pinf, 0);
  if (text == "-Infinity") return header(0, 0, numeric_ninf, 0);
  std::string_view s = text;
  bool neg = s.front() == '-';
  if (neg) s.remove_prefix(1);
  auto dot = s.find('.');
  std::string_view ip = s.substr(0, dot);
  std::string_view fp = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  // Base-10000 groups aligned on the decimal point.
  std::string ipad((4 - ip.size() % 4) % 4, '0');
  ipad += ip;
  std::string fpad(fp);
  fpad.append((4 - fp.size() % 4) % 4, '0');
  std::vector<std::uint16_t> groups;
  auto group = [](std::string_view g) {
    return static_cast<std::uint16_t>((g[0] - '0') * 1000 + (g[1] - '0') * 100 + (g[2] - '0') * 10 + (g[3] - '0'));
  };
  for (std::size_t i = 0; i < ipad.size(); i += 4) groups.push_back(group({ipad.data() + i, 4}));
  for (std::size_t i = 0; i < fpad.size(); i += 4) groups.push_back(group({fpad.data() + i, 4}));
  long weight = static_cast<long>(ipad.size() / 4) - 1;
  std::size_t first = 0;
  while (first < groups.size() && groups[first] == 0) ++first, --weight;
  std::size_t last = groups.size();
  while (last > first && groups[last - 1] == 0) --last;
  if (first == last) return header(0, 0, numeric_pos, static_cast<std::uint16_t>(fp.size()));
  if (last - first > 0x7FFF || weight > 0x7FFF || weight < -0x8000)
    throw_encode("pgq::numeric", "value too large for the numeric wire format");
  header(static_cast<std::uint16_t>(last - first), static_cast<std::int16_t>(weight), neg ? numeric_neg : numeric_pos,
         static_cast<std::uint16_t>(fp.size()));
  for (std::size_t i = first; i < last; ++i) put_be<std::uint16_t>(out, groups[i]);
}

}  // namespace

/// numeric_out's text of a numeric_send value.
std::string numeric_from_binary(value_view v) {
  reader r(v);
  auto ndigits = r.get<std::uint16_t>("a numeric header");
  auto weight = static_cast<std::int16_t>(r.get<std::uint16_t>("a numeric header"));
  auto sign = r.get<std::uint16_t>("a numeric header");
  auto dscale = r.get<std::uint16_t>("a numeric header");
  if (sign == numeric_nan) return "NaN";
  if (sign == numeric_pinf) return "Infinity";
  if (sign == numeric_ninf) return "-Infinity";
  if (sign != numeric_pos && sign != numeric_neg) throw_invalid(v, "a valid numeric sign");
  if (dscale > numeric_max_dscale) throw_invalid(v, "a valid numeric scale");
  if (r.left() != 2u * ndigits) throw_invalid(v, std::to_string(ndigits) + " numeric digits");
  std::vector<std::uint16_t> d(ndigits);
  for (auto& g : d) {
    g = r.get<std::uint16_t>("numeric digits");
    if (g >= 10000) throw_invalid(v, "base-10000 numeric digits");
  }
  auto digit_at = [&](long w) -> std::uint16_t {  // the group of weight w
    long idx = weight - w;
    return idx >= 0 && idx < static_cast<long>(ndigits) ? d[static_cast<std::size_t>(idx)] : 0;
  };
  std::string ip;
  for (long w = weight; w >= 0; --w) append_padded(ip, digit_at(w), 4);
  auto nz = ip.find_first_not_of('0');
  ip = nz == std::string::npos ? "0" : ip.substr(nz);
  std::string fp;
  for (long k = 0; k < dscale; k += 4) append_padded(fp, digit_at(-1 - k / 4), 4);
  fp.resize(dscale);
  bool zero = ip == "0" && fp.find_first_not_of('0') == std::string::npos;
  std::string s = sign == numeric_neg && !zero ? "-" : "";
  s += ip;
  if (dscale > 0) s += '.' + fp;
  return s;
}

/// A binary numeric as the double nearest to it, without the text detour,
/// when that is exact to compute (Clinger's fast path): a mantissa below 2^53
/// and a power of ten up to 1e22 are both exact doubles, so one multiplication
/// or division rounds once, to the same double as parsing the decimal text.
/// False: take the text path (more digits, a larger exponent, NaN, bad bytes).
bool numeric_to_double_fast(value_view v, double& out) {
  static constexpr double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const std::string_view b = v.bytes;
  if (b.size() < 8) return false;
  const auto ndigits = get_be<std::uint16_t>(b.data());
  const auto weight = static_cast<std::int16_t>(get_be<std::uint16_t>(b.data() + 2));
  const auto sign = get_be<std::uint16_t>(b.data() + 4);
  if ((sign != numeric_pos && sign != numeric_neg) || b.size() != 8 + 2u * ndigits) return false;
  constexpr std::uint64_t limit = (std::uint64_t{1} << 53) / 10000;  // m * 10000 + 9999 stays below 2^53
  std::uint64_t m = 0;
  for (std::size_t i = 0; i < ndigits; ++i) {
    const auto d = get_be<std::uint16_t>(b.data() + 8 + 2 * i);
    if (d >= 10000 || m >= limit) return false;
    m = m * 10000 + d;
  }
  const int e = 4 * (weight - (static_cast<int>(ndigits) - 1));  // value = m * 10^e
  if (m == 0) {
    out = 0.0;
  } else if (e >= 0 && e <= 22) {
    out = static_cast<double>(m) * pow10[e];
  } else if (e < 0 && e >= -22) {
    out = static_cast<double>(m) / pow10[-e];
  } else {
    return false;
  }
  if (sign == numeric_neg) out = -out;
  return true;
}

}  // namespace pgq::codecs

namespace pgq {
using namespace codecs;

numeric::numeric(std::string_view text) {
  auto c = canonical_numeric(text);
  if (!c) throw sql_error(errc::invalid_value, "invalid numeric literal: " + snippet(text, format::text));
  text_ = std::move(*c);
}

void numeric::assign_signed(long long v) {
  text_.clear();
  append_int(text_, v);
}

void numeric::assign_unsigned(unsigned long long v) {
  text_.clear();
  append_int(text_, v);
}

double numeric::to_double() const noexcept {
  double d = 0;
  if (text_ == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (text_ == "Infinity") return std::numeric_limits<double>::infinity();
  if (text_ == "-Infinity") return -std::numeric_limits<double>::infinity();
  auto r = std::from_chars(text_.data(), text_.data() + text_.size(), d);
  if (r.ec == std::errc::result_out_of_range) {
    // Too big or too small for a double: saturate like strtod does.
    bool neg = text_.front() == '-';
    bool tiny =
        text_.find_first_not_of("-0.") != std::string::npos && (text_.starts_with("0.") || text_.starts_with("-0."));
    if (tiny) return neg ? -0.0 : 0.0;
    return neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }
  return d;
}

void codec<numeric>::encode(const numeric& v, format f, std::string& out) {
  if (f == format::text) out += v.str();
  else numeric_to_binary(v.str(), out);
}

numeric codec<numeric>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  if (v.type != oids::numeric) return numeric(detail::decode_integer(v, INT64_MIN, INT64_MAX, false, cpp_name));
  if (v.fmt == format::binary) return numeric(numeric_from_binary(v));
  auto c = canonical_numeric(v.bytes);
  if (!c) throw_invalid(v, "a numeric such as -12.50, NaN or Infinity");
  return numeric(*c);
}

}  // namespace pgq
