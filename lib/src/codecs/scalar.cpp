// Codecs: the wire formats of PostgreSQL's built-in types.
//
// Binary formats follow the server's *send/*recv functions (network byte
// order); text formats follow its output functions with DateStyle=ISO and
// extra_float_digits=1 (the defaults), so that a value rendered here reads
// exactly like one printed by the server.
#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <pgq/types.hpp>

namespace pgq {
namespace {

// ---------------------------------------------------------------- errors

/// A bad value, shown safely: printable ASCII as is, the rest escaped, long
/// input cut (messages end up in logs; hostile bytes must not).
std::string snippet(std::string_view bytes, format fmt) {
  constexpr std::size_t max_text = 48, max_binary = 24;
  constexpr char hex[] = "0123456789abcdef";
  std::string s;
  if (fmt == format::binary) {
    s = "\\x";
    for (std::size_t i = 0; i < bytes.size() && i < max_binary; ++i) {
      auto b = static_cast<unsigned char>(bytes[i]);
      s += hex[b >> 4];
      s += hex[b & 15];
    }
    if (bytes.size() > max_binary) s += "... (" + std::to_string(bytes.size()) + " bytes)";
    return s;
  }
  s = "\"";
  for (std::size_t i = 0; i < bytes.size() && i < max_text; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '"' || c == '\\') {
      s += '\\';
      s += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      s += static_cast<char>(c);
    } else {
      s += "\\x";
      s += hex[c >> 4];
      s += hex[c & 15];
    }
  }
  s += '"';
  if (bytes.size() > max_text) s += "... (" + std::to_string(bytes.size()) + " bytes)";
  return s;
}

const char* format_name(format f) { return f == format::binary ? "binary" : "text"; }

/// "invalid <type> value (<fmt>, expected <what>): <bytes>"
[[noreturn]] void throw_invalid(value_view v, std::string_view what) {
  throw sql_error(errc::invalid_value, "invalid " + type_name(v.type) + " value (" +
                                           format_name(v.fmt) + ", expected " + std::string(what) +
                                           "): " + snippet(v.bytes, v.fmt));
}

[[noreturn]] void throw_out_of_range(value_view v, std::string_view shown,
                                     std::string_view cpp_name) {
  throw sql_error(errc::invalid_value, "value " + std::string(shown) + " of type " +
                                           type_name(v.type) + " is out of range for " +
                                           std::string(cpp_name));
}

[[noreturn]] void throw_encode(std::string_view cpp_name, std::string_view what) {
  throw sql_error(errc::invalid_value,
                  "cannot encode " + std::string(cpp_name) + ": " + std::string(what));
}

void check_accepts(bool ok, value_view v, std::string_view cpp_name) {
  if (!ok) detail::throw_type_mismatch(v.type, cpp_name);
}

// ------------------------------------------------------- byte order I/O

template <class U>
void put_be(std::string& out, U v) {
  static_assert(std::is_unsigned_v<U>);
  char b[sizeof(U)];
  for (std::size_t i = 0; i < sizeof(U); ++i)
    b[i] = static_cast<char>(static_cast<unsigned char>(v >> (8 * (sizeof(U) - 1 - i))));
  out.append(b, sizeof(U));
}

template <class U>
void patch_be(std::string& out, std::size_t pos, U v) {
  for (std::size_t i = 0; i < sizeof(U); ++i)
    out[pos + i] = static_cast<char>(static_cast<unsigned char>(v >> (8 * (sizeof(U) - 1 - i))));
}

template <class U>
U get_be(const char* p) {
  U v = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i)
    v = static_cast<U>((v << 8) | static_cast<unsigned char>(p[i]));
  return v;
}

/// Reads fixed-size big-endian fields from a binary value, throwing
/// invalid_value (never reading past the end) when it is too short.
class reader {
 public:
  explicit reader(value_view v) : v_(v), p_(v.bytes.data()), left_(v.bytes.size()) {}
  template <class U>
  U get(std::string_view what) {
    need(sizeof(U), what);
    U r = get_be<U>(p_);
    p_ += sizeof(U);
    left_ -= sizeof(U);
    return r;
  }
  std::int32_t i32(std::string_view what) {
    return static_cast<std::int32_t>(get<std::uint32_t>(what));
  }
  std::string_view take(std::size_t n, std::string_view what) {
    need(n, what);
    std::string_view r(p_, n);
    p_ += n;
    left_ -= n;
    return r;
  }
  std::size_t left() const { return left_; }
  void need(std::size_t n, std::string_view what) const {
    if (left_ < n) throw_invalid(v_, what);
  }
  void end(std::string_view what) const {
    if (left_ != 0) throw_invalid(v_, what);
  }

 private:
  value_view v_;
  const char* p_;
  std::size_t left_;
};

/// The whole value must be exactly `n` bytes.
void check_size(value_view v, std::size_t n) {
  if (v.bytes.size() != n) throw_invalid(v, std::to_string(n) + " bytes");
}

// ------------------------------------------------------------- text bits

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

template <class I>
void append_int(std::string& out, I v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_padded(std::string& out, std::int64_t v, int width) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  for (auto n = r.ptr - buf; n < width; ++n) out += '0';
  out.append(buf, r.ptr);
}

/// Parses [+-]digits (with surrounding spaces, as int4in allows).
bool parse_int64(std::string_view s, std::int64_t& out) {
  s = trim(s);
  if (s.size() > 1 && s[0] == '+' && s[1] != '-') s.remove_prefix(1);
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// ------------------------------------------------------------ type table

struct type_entry {
  oid id;
  const char* name;
};

// From pg_catalog.pg_type of PostgreSQL 15 (base, range and multirange
// types, plus the pseudo-types a result column can have).
// clang-format off
constexpr type_entry scalar_types[] = {
    {16, "bool"}, {17, "bytea"}, {18, "char"}, {19, "name"}, {20, "int8"}, {21, "int2"},
    {22, "int2vector"}, {23, "int4"}, {24, "regproc"}, {25, "text"}, {26, "oid"}, {27, "tid"},
    {28, "xid"}, {29, "cid"}, {30, "oidvector"}, {114, "json"}, {142, "xml"}, {194, "pg_node_tree"},
    {600, "point"}, {601, "lseg"}, {602, "path"}, {603, "box"}, {604, "polygon"}, {628, "line"},
    {650, "cidr"}, {700, "float4"}, {701, "float8"}, {705, "unknown"}, {718, "circle"},
    {774, "macaddr8"}, {790, "money"}, {829, "macaddr"}, {869, "inet"}, {1033, "aclitem"},
    {1042, "bpchar"}, {1043, "varchar"}, {1082, "date"}, {1083, "time"}, {1114, "timestamp"},
    {1184, "timestamptz"}, {1186, "interval"}, {1266, "timetz"}, {1560, "bit"}, {1562, "varbit"},
    {1700, "numeric"}, {1790, "refcursor"}, {2202, "regprocedure"}, {2203, "regoper"},
    {2204, "regoperator"}, {2205, "regclass"}, {2206, "regtype"}, {2249, "record"},
    {2275, "cstring"}, {2278, "void"}, {2950, "uuid"}, {2970, "txid_snapshot"}, {3220, "pg_lsn"},
    {3361, "pg_ndistinct"}, {3402, "pg_dependencies"}, {3614, "tsvector"}, {3615, "tsquery"},
    {3642, "gtsvector"}, {3734, "regconfig"}, {3769, "regdictionary"}, {3802, "jsonb"},
    {3904, "int4range"}, {3906, "numrange"}, {3908, "tsrange"}, {3910, "tstzrange"},
    {3912, "daterange"}, {3926, "int8range"}, {4072, "jsonpath"}, {4089, "regnamespace"},
    {4096, "regrole"}, {4191, "regcollation"}, {4451, "int4multirange"}, {4532, "nummultirange"},
    {4533, "tsmultirange"}, {4534, "tstzmultirange"}, {4535, "datemultirange"},
    {4536, "int8multirange"}, {5038, "pg_snapshot"}, {5069, "xid8"},
};
// clang-format on

struct array_entry {
  oid array;
  oid element;
};

// Array type -> element type. box[] (1020) is left out on purpose: its
// elements are separated by ';', which the text parser does not handle.
// clang-format off
constexpr array_entry array_types[] = {
    {143, 142}, {199, 114}, {271, 5069}, {629, 628}, {651, 650}, {719, 718}, {775, 774}, {791, 790},
    {1000, 16}, {1001, 17}, {1002, 18}, {1003, 19}, {1005, 21}, {1006, 22}, {1007, 23}, {1008, 24},
    {1009, 25}, {1010, 27}, {1011, 28}, {1012, 29}, {1013, 30}, {1014, 1042}, {1015, 1043},
    {1016, 20}, {1017, 600}, {1018, 601}, {1019, 602}, {1021, 700}, {1022, 701}, {1027, 604},
    {1028, 26}, {1034, 1033}, {1040, 829}, {1041, 869}, {1115, 1114}, {1182, 1082}, {1183, 1083},
    {1185, 1184}, {1187, 1186}, {1231, 1700}, {1263, 2275}, {1270, 1266}, {1561, 1560},
    {1563, 1562}, {2201, 1790}, {2207, 2202}, {2208, 2203}, {2209, 2204}, {2210, 2205},
    {2211, 2206}, {2287, 2249}, {2949, 2970}, {2951, 2950}, {3221, 3220}, {3643, 3614},
    {3644, 3642}, {3645, 3615}, {3735, 3734}, {3770, 3769}, {3807, 3802}, {3905, 3904},
    {3907, 3906}, {3909, 3908}, {3911, 3910}, {3913, 3912}, {3927, 3926}, {4073, 4072},
    {4090, 4089}, {4097, 4096}, {4192, 4191}, {5039, 5038}, {6150, 4451}, {6151, 4532},
    {6152, 4533}, {6153, 4534}, {6155, 4535}, {6157, 4536},
};
// clang-format on

const char* scalar_name(oid t) {
  for (const auto& e : scalar_types)
    if (e.id == t) return e.name;
  return nullptr;
}

bool is_text_like(oid t) {
  switch (t) {
    case oids::text:
    case oids::varchar:
    case oids::bpchar:
    case oids::name:
    case oids::unknown:
    case oids::json:
    case oids::xml:
    case oids::char_:
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------- floats

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

// --------------------------------------------------------------- numeric

constexpr std::uint16_t numeric_pos = 0x0000, numeric_neg = 0x4000, numeric_nan = 0xC000,
                        numeric_pinf = 0xD000, numeric_ninf = 0xF000;
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
  if (iequals(body, "infinity") || iequals(body, "inf"))
    return std::string(neg ? "-Infinity" : "Infinity");
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
  auto header = [&](std::uint16_t ndigits, std::int16_t weight, std::uint16_t sign,
                    std::uint16_t dscale) {
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
    return static_cast<std::uint16_t>((g[0] - '0') * 1000 + (g[1] - '0') * 100 + (g[2] - '0') * 10 +
                                      (g[3] - '0'));
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
  header(static_cast<std::uint16_t>(last - first), static_cast<std::int16_t>(weight),
         neg ? numeric_neg : numeric_pos, static_cast<std::uint16_t>(fp.size()));
  for (std::size_t i = first; i < last; ++i) put_be<std::uint16_t>(out, groups[i]);
}

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

// ------------------------------------------------------------------ time

constexpr std::int64_t usecs_per_day = 86'400'000'000;
constexpr std::int64_t pg_epoch_days = 10'957;  // 2000-01-01 - 1970-01-01
constexpr std::int64_t pg_epoch_usecs = pg_epoch_days * usecs_per_day;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// Howard Hinnant's days_from_civil / civil_from_days, on 64 bits so that the
// server's whole range (4713 BC .. 5874897 AD) works. `y` is astronomical.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = floor_div(y, 400);
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = floor_div(z, 146097);
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
}

bool is_leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(std::int64_t y, unsigned m) {
  constexpr unsigned len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/// "YYYY-MM-DD" (years below 1 as " BC" is added by the caller).
void append_date_part(std::string& out, std::int64_t days, bool& bc) {
  std::int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  bc = y <= 0;
  append_padded(out, bc ? 1 - y : y, 4);
  out += '-';
  append_padded(out, m, 2);
  out += '-';
  append_padded(out, d, 2);
}

void append_time_of_day(std::string& out, std::int64_t usecs) {
  append_padded(out, usecs / 3'600'000'000, 2);
  out += ':';
  append_padded(out, usecs / 60'000'000 % 60, 2);
  out += ':';
  append_padded(out, usecs / 1'000'000 % 60, 2);
  if (auto frac = usecs % 1'000'000; frac != 0) {
    std::string f;
    append_padded(f, frac, 6);
    f.erase(f.find_last_not_of('0') + 1);
    out += '.' + f;
  }
}

/// The text of a timestamp given as microseconds since 1970 (`epoch_days`
/// 0) or since 2000 (`epoch_days` pg_epoch_days), INT64_MAX/MIN being the
/// infinities, with "+00" when `utc_offset`. Both epochs, because the
/// server's range does not fit 64-bit microseconds since 1970.
void append_timestamp(std::string& out, std::int64_t usecs, std::int64_t epoch_days,
                      bool utc_offset) {
  if (usecs == INT64_MAX) return void(out += "infinity");
  if (usecs == INT64_MIN) return void(out += "-infinity");
  std::int64_t days = floor_div(usecs, usecs_per_day);
  bool bc = false;
  append_date_part(out, days + epoch_days, bc);
  out += ' ';
  // The floored remainder, not usecs - days * usecs_per_day: near INT64_MIN
  // that product overflows.
  std::int64_t time_of_day = usecs % usecs_per_day;
  if (time_of_day < 0) time_of_day += usecs_per_day;
  append_time_of_day(out, time_of_day);
  if (utc_offset) out += "+00";
  if (bc) out += " BC";
}

void append_date(std::string& out, std::int64_t days_since_1970) {
  bool bc = false;
  append_date_part(out, days_since_1970, bc);
  if (bc) out += " BC";
}

/// A cursor over date/time text.
struct scanner {
  std::string_view s;
  std::size_t i = 0;

  bool done() const { return i >= s.size(); }
  char peek() const { return done() ? '\0' : s[i]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++i;
    return true;
  }
  /// 1..max_len digits as a number; false when there is no digit.
  bool number(std::int64_t& v, std::size_t max_len, std::size_t* len = nullptr) {
    std::size_t start = i;
    v = 0;
    while (!done() && is_digit(s[i]) && i - start < max_len) v = v * 10 + (s[i++] - '0');
    if (len) *len = i - start;
    return i > start;
  }
};

enum class special { none, pos_infinity, neg_infinity };

special parse_special(std::string_view s) {
  if (iequals(s, "infinity") || iequals(s, "+infinity")) return special::pos_infinity;
  if (iequals(s, "-infinity")) return special::neg_infinity;
  return special::none;
}

/// Parses "YYYY-MM-DD" at the scanner; the year is as written (the era
/// suffix comes later, see finish_date).
bool scan_date(scanner& sc, std::int64_t& year, std::int64_t& month, std::int64_t& day) {
  return sc.number(year, 9) && sc.eat('-') && sc.number(month, 2) && sc.eat('-') &&
         sc.number(day, 2);
}

/// Reads an optional " BC"/" AD" era; turns `year` astronomical; validates.
bool finish_date(scanner& sc, std::int64_t& year, std::int64_t month, std::int64_t day,
                 std::int64_t& days) {
  std::size_t save = sc.i;
  while (!sc.done() && is_space(sc.peek())) ++sc.i;
  std::string_view rest = sc.s.substr(sc.i);
  if (iequals(rest, "BC")) {
    year = 1 - year;
    sc.i = sc.s.size();
  } else if (iequals(rest, "AD")) {
    sc.i = sc.s.size();
  } else {
    sc.i = save;
  }
  if (month < 1 || month > 12 || day < 1) return false;
  if (day > static_cast<std::int64_t>(days_in_month(year, static_cast<unsigned>(month))))
    return false;
  days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  return true;
}

struct parsed_timestamp {
  special sp = special::none;
  std::int64_t local_usecs = 0;  // since 1970, wall clock
  std::int64_t offset_secs = 0;  // east of UTC
};

/// Parses an ISO timestamp: "YYYY-MM-DD[ |T]HH:MM[:SS[.frac]][offset][ BC]",
/// a bare date, or an infinity. The offset is [+-]HH[:MM[:SS]] or Z.
std::optional<parsed_timestamp> parse_timestamp(std::string_view text) {
  text = trim(text);
  parsed_timestamp r;
  if ((r.sp = parse_special(text)) != special::none) return r;
  scanner sc{text};
  std::int64_t year, month, day, hh = 0, mi = 0, ss = 0, usec = 0;
  if (!scan_date(sc, year, month, day) || year == 0) return std::nullopt;
  if (sc.eat(' ') || sc.eat('T')) {
    if (!sc.number(hh, 2) || !sc.eat(':') || !sc.number(mi, 2)) return std::nullopt;
    if (sc.eat(':')) {
      if (!sc.number(ss, 2)) return std::nullopt;
      if (sc.eat('.')) {
        std::size_t n = 0;
        std::int64_t frac;
        if (!sc.number(frac, 6, &n)) return std::nullopt;
        for (std::size_t k = n; k < 6; ++k) frac *= 10;
        // Round to the microsecond, as the server does on input.
        if (!sc.done() && is_digit(sc.peek()) && sc.peek() >= '5') ++frac;
        while (!sc.done() && is_digit(sc.peek())) ++sc.i;
        usec = frac;
      }
    }
    if (hh > 24 || mi > 59 || ss > 60 || (hh == 24 && (mi != 0 || ss != 0 || usec != 0)))
      return std::nullopt;
    char c = sc.peek();
    if (c == 'Z' || c == 'z') {
      ++sc.i;
    } else if (c == '+' || c == '-') {
      ++sc.i;
      std::int64_t oh = 0, om = 0, os = 0;
      std::size_t n = 0;
      if (!sc.number(oh, 2)) return std::nullopt;
      if (sc.eat(':')) {
        if (!sc.number(om, 2, &n) || n != 2) return std::nullopt;
        if (sc.eat(':') && (!sc.number(os, 2, &n) || n != 2)) return std::nullopt;
      }
      if (oh > 15 || om > 59 || os > 59) return std::nullopt;
      r.offset_secs = (oh * 3600 + om * 60 + os) * (c == '-' ? -1 : 1);
    }
  }
  std::int64_t days;
  if (!finish_date(sc, year, month, day, days) || !sc.done()) return std::nullopt;
  std::int64_t t;
  if (__builtin_mul_overflow(days, usecs_per_day, &t) ||
      __builtin_add_overflow(t, ((hh * 60 + mi) * 60 + ss) * 1'000'000 + usec, &t))
    return std::nullopt;
  r.local_usecs = t;
  return r;
}

/// Microseconds since 1970 of a timestamp value (INT64_MAX/MIN = infinities).
std::int64_t timestamp_usecs(value_view v, bool with_offset, std::string_view cpp_name) {
  if (v.fmt == format::binary) {
    check_size(v, 8);
    auto pg = static_cast<std::int64_t>(get_be<std::uint64_t>(v.bytes.data()));
    if (pg == INT64_MAX || pg == INT64_MIN) return pg;
    std::int64_t r;
    if (__builtin_add_overflow(pg, pg_epoch_usecs, &r) || r == INT64_MAX || r == INT64_MIN)
      throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
    return r;
  }
  auto p = parse_timestamp(v.bytes);
  if (!p) throw_invalid(v, "an ISO timestamp such as 2024-02-29 13:45:01.5+00");
  if (p->sp == special::pos_infinity) return INT64_MAX;
  if (p->sp == special::neg_infinity) return INT64_MIN;
  std::int64_t r;
  // Without time zone, an offset is ignored, as timestamp_in does; with
  // one, a missing offset means UTC (the server always sends one).
  std::int64_t offset_usecs = with_offset ? p->offset_secs * 1'000'000 : 0;
  if (__builtin_sub_overflow(p->local_usecs, offset_usecs, &r) || r == INT64_MAX || r == INT64_MIN)
    throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
  return r;
}

void encode_timestamp(std::int64_t usecs, bool utc_offset, format f, std::string& out,
                      std::string_view cpp_name) {
  if (f == format::text) return append_timestamp(out, usecs, 0, utc_offset);
  std::int64_t pg = usecs;
  if (usecs != INT64_MAX && usecs != INT64_MIN &&
      (__builtin_sub_overflow(usecs, pg_epoch_usecs, &pg) || pg == INT64_MIN))
    throw_encode(cpp_name, "timestamp out of range");
  put_be<std::uint64_t>(out, static_cast<std::uint64_t>(pg));
}

/// Days since 1970 of a date value (INT64_MAX/MIN = infinities).
std::int64_t date_days(value_view v) {
  if (v.fmt == format::binary) {
    check_size(v, 4);
    auto pg = static_cast<std::int32_t>(get_be<std::uint32_t>(v.bytes.data()));
    if (pg == INT32_MAX) return INT64_MAX;
    if (pg == INT32_MIN) return INT64_MIN;
    return pg + pg_epoch_days;
  }
  std::string_view text = trim(v.bytes);
  switch (parse_special(text)) {
    case special::pos_infinity:
      return INT64_MAX;
    case special::neg_infinity:
      return INT64_MIN;
    case special::none:
      break;
  }
  scanner sc{text};
  std::int64_t year, month, day, days;
  if (!scan_date(sc, year, month, day) || year == 0 || !finish_date(sc, year, month, day, days) ||
      !sc.done())
    throw_invalid(v, "an ISO date such as 2024-02-29");
  return days;
}

void encode_date_days(std::int64_t days, format f, std::string& out, std::string_view cpp_name) {
  bool finite = days != INT64_MAX && days != INT64_MIN;
  std::int64_t pg = days == INT64_MAX ? INT32_MAX : days == INT64_MIN ? INT32_MIN : 0;
  // Beyond int32 days the server has no such date (and the calendar maths
  // would overflow): refuse rather than send garbage.
  if (finite &&
      (__builtin_sub_overflow(days, pg_epoch_days, &pg) || pg <= INT32_MIN || pg >= INT32_MAX))
    throw_encode(cpp_name, "date out of range");
  if (f == format::binary)
    return put_be<std::uint32_t>(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(pg)));
  if (days == INT64_MAX) return void(out += "infinity");
  if (days == INT64_MIN) return void(out += "-infinity");
  append_date(out, days);
}

// ----------------------------------------------------------------- bytea

void append_hex(std::string& out, std::string_view bytes) {
  constexpr char hex[] = "0123456789abcdef";
  out += "\\x";
  for (char c : bytes) {
    auto b = static_cast<unsigned char>(c);
    out += hex[b >> 4];
    out += hex[b & 15];
  }
}

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
    } else if (i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
               s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      r.push_back(
          static_cast<std::byte>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 4;
    } else {
      throw_invalid(v, "\\x hex or the escape format (\\\\, \\ooo)");
    }
  }
  return r;
}

// ---------------------------------------------------------------- arrays

constexpr int max_array_dims = 6;  // MAXDIM

using detail::array_shape;

/// array_in's grammar: an optional "[lb:ub]..." = prefix, nested braces,
/// elements quoted ("...", backslash escapes) or not (NULL is a NULL unless
/// quoted or escaped; surrounding spaces dropped).
class text_array_parser {
 public:
  text_array_parser(value_view v, oid element_type, int max_dims, detail::element_sink sink)
      : v_(v), s_(v.bytes), elem_type_(element_type), max_dims_(max_dims), sink_(sink) {}

  array_shape parse() {
    array_shape shape;
    shape.element_type = elem_type_;
    skip_space();
    std::vector<int> declared_len, declared_lb;
    while (peek() == '[') {
      ++i_;
      std::int64_t lb = 1, ub;
      if (!signed_number(ub)) fail("a dimension such as [1:3]");
      if (peek() == ':') {
        ++i_;
        lb = ub;
        if (!signed_number(ub)) fail("a dimension such as [1:3]");
      }
      if (peek() != ']' || ub < lb - 1 || ub - lb + 1 > INT32_MAX || lb < INT32_MIN ||
          lb > INT32_MAX)
        fail("a dimension such as [1:3]");
      ++i_;
      declared_len.push_back(static_cast<int>(ub - lb + 1));
      declared_lb.push_back(static_cast<int>(lb));
      if (declared_len.size() > static_cast<std::size_t>(max_array_dims))
        fail("at most 6 dimensions");
    }
    if (!declared_len.empty()) {
      skip_space();
      if (peek() != '=') fail("'=' after the dimensions");
      ++i_;
      skip_space();
    }
    if (peek() != '{') fail("'{'");
    level(0);
    skip_space();
    if (i_ != s_.size()) fail("nothing after the closing '}'");
    if (ndims_ < 0) ndims_ = 0;  // '{}'
    lengths_.resize(static_cast<std::size_t>(ndims_));
    if (!declared_len.empty() && (declared_len != lengths_))
      fail("dimensions matching the elements");
    shape.lengths = lengths_;
    shape.lower_bounds = declared_lb.empty() ? std::vector<int>(lengths_.size(), 1) : declared_lb;
    return shape;
  }

 private:
  [[noreturn]] void fail(std::string_view what) {
    throw_invalid(v_, "an array literal: " + std::string(what));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() {
    while (i_ < s_.size() && is_space(s_[i_])) ++i_;
  }
  bool signed_number(std::int64_t& v) {
    bool neg = false;
    if (peek() == '-' || peek() == '+') neg = s_[i_++] == '-';
    std::size_t start = i_;
    v = 0;
    while (i_ < s_.size() && is_digit(s_[i_]) && i_ - start < 10) v = v * 10 + (s_[i_++] - '0');
    if (neg) v = -v;
    return i_ > start;
  }

  // At a '{' of nesting depth `depth`.
  void level(int depth) {
    ++i_;
    int count = 0;
    skip_space();
    if (peek() == '}') {
      ++i_;
      if (depth > 0) fail("no empty sub-array");
      return;
    }
    for (;;) {
      skip_space();
      if (peek() == '{') {
        if (depth + 1 >= max_dims_)
          fail(max_dims_ == 1 ? "one dimension (multi-dimensional arrays are not supported here)"
                              : "at most 6 dimensions");
        if (ndims_ >= 0 && depth + 1 >= ndims_) fail("sub-arrays of the same depth");
        level(depth + 1);
      } else {
        if (ndims_ < 0) ndims_ = depth + 1;
        if (ndims_ != depth + 1) fail("sub-arrays of the same depth");
        element();
      }
      ++count;
      skip_space();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() == '}') {
        ++i_;
        break;
      }
      fail("',' or '}'");
    }
    if (lengths_.size() <= static_cast<std::size_t>(depth))
      lengths_.resize(static_cast<std::size_t>(depth) + 1, -1);
    auto& len = lengths_[static_cast<std::size_t>(depth)];
    if (len < 0)
      len = count;
    else if (len != count)
      fail("sub-arrays of the same length");
  }

  void element() {
    bool escaped = false;
    std::string_view raw;
    if (peek() == '"') {
      std::size_t start = ++i_;
      while (i_ < s_.size() && s_[i_] != '"') {
        if (s_[i_] == '\\') {
          escaped = true;
          ++i_;
        }
        ++i_;
      }
      if (i_ >= s_.size()) fail("a closing '\"'");
      raw = s_.substr(start, i_ - start);
      ++i_;
      emit(raw, escaped);
      return;
    }
    std::size_t start = i_, end = i_;
    while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}') {
      char c = s_[i_];
      if (c == '{' || c == '"') fail("'\"' or '{' only at the start of an element");
      if (c == '\\') {
        if (i_ + 1 >= s_.size()) fail("a character after '\\'");
        escaped = true;
        i_ += 2;
        end = i_;
        continue;
      }
      if (!is_space(c)) end = i_ + 1;
      ++i_;
    }
    raw = s_.substr(start, end - start);
    if (raw.empty()) fail("an element before ',' or '}'");
    if (!escaped && iequals(raw, "NULL")) {
      sink_.call(sink_.ctx, nullptr, false);
      return;
    }
    emit(raw, escaped);
  }

  void emit(std::string_view raw, bool escaped) {
    if (!escaped) {
      value_view e{raw, elem_type_, format::text};
      sink_.call(sink_.ctx, &e, false);
      return;
    }
    scratch_.clear();
    for (std::size_t k = 0; k < raw.size(); ++k) {
      if (raw[k] == '\\') ++k;
      if (k < raw.size()) scratch_ += raw[k];
    }
    value_view e{scratch_, elem_type_, format::text};
    sink_.call(sink_.ctx, &e, true);
  }

  value_view v_;
  std::string_view s_;
  std::size_t i_ = 0;
  oid elem_type_;
  int max_dims_;
  detail::element_sink sink_;
  int ndims_ = -1;
  std::vector<int> lengths_;
  std::string scratch_;
};

/// array_send's layout: ndim, has-null flag, element type, (length, lower
/// bound) per dimension, then length-prefixed elements (-1 = NULL).
array_shape parse_binary_array(value_view v, int max_dims, detail::element_sink sink,
                               bool (*element_accepts)(oid), std::string_view cpp_name) {
  reader r(v);
  array_shape shape;
  std::int32_t ndim = r.i32("an array header");
  std::int32_t flags = r.i32("an array header");
  shape.element_type = r.get<std::uint32_t>("an array header");
  if (ndim < 0 || ndim > max_array_dims) throw_invalid(v, "0 to 6 array dimensions");
  if (flags != 0 && flags != 1) throw_invalid(v, "array flags 0 or 1");
  if (ndim > max_dims)
    throw sql_error(errc::invalid_value, "a " + std::to_string(ndim) +
                                             "-dimensional array cannot be read as " +
                                             std::string(cpp_name));
  if (element_accepts && !element_accepts(shape.element_type))
    throw sql_error(errc::type_mismatch, "cannot read an array of " +
                                             type_name(shape.element_type) + " as " +
                                             std::string(cpp_name));
  std::uint64_t total = ndim > 0 ? 1 : 0;
  for (std::int32_t d = 0; d < ndim; ++d) {
    std::int32_t len = r.i32("array dimensions");
    std::int32_t lb = r.i32("array dimensions");
    if (len < 0) throw_invalid(v, "non-negative array dimensions");
    total *= static_cast<std::uint64_t>(len);
    // Each element takes at least its 4-byte length: a count beyond what the
    // bytes can hold is a lie, caught before anything is allocated.
    if (total > r.left() / 4) throw_invalid(v, "as many elements as the array header says");
    shape.lengths.push_back(len);
    shape.lower_bounds.push_back(lb);
  }
  for (std::uint64_t k = 0; k < total; ++k) {
    std::int32_t len = r.i32("an element length");
    if (len == -1) {
      sink.call(sink.ctx, nullptr, false);
      continue;
    }
    if (len < 0) throw_invalid(v, "element lengths >= -1");
    value_view e{r.take(static_cast<std::size_t>(len), "element bytes"), shape.element_type,
                 format::binary};
    sink.call(sink.ctx, &e, false);
  }
  r.end("no bytes after the last element");
  return shape;
}

// ----------------------------------------------------- rendering as text

// `depth`: how many arrays enclose `v` (0 for a value of its own).
std::string render_binary(value_view v, int depth);

/// Quotes an array element the way array_out does.
/// Whether array_out would quote element text `e`.
bool needs_quotes(std::string_view e) {
  if (e.empty() || iequals(e, "NULL")) return true;
  for (char c : e)
    if (c == '"' || c == '\\' || c == '{' || c == '}' || c == ',' || is_space(c)) return true;
  return false;
}

void append_quoted(std::string& out, std::string_view e) {
  out += '"';
  for (char c : e) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

/// Appends an array element the way array_out prints it.
void append_array_element(std::string& out, std::string_view e) {
  if (needs_quotes(e))
    append_quoted(out, e);
  else
    out += e;
}

// `depth`: how many arrays enclose this one. The element type comes from the
// bytes, so an element may claim to be an array again: bounded.
std::string render_binary_array(value_view v, int depth) {
  detail::check_array_nesting(v, depth + 1);
  std::vector<std::optional<std::string>> elems;
  auto add = [&](const value_view* e, bool) {
    if (e)
      elems.emplace_back(render_binary(*e, depth + 1));
    else
      elems.emplace_back();
  };
  array_shape shape =
      parse_binary_array(v, max_array_dims, detail::element_sink::of(add), nullptr, "std::string");
  std::string out;
  bool default_bounds = std::all_of(shape.lower_bounds.begin(), shape.lower_bounds.end(),
                                    [](int lb) { return lb == 1; });
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
    if (elems[k])
      append_array_element(out, *elems[k]);
    else
      out += "NULL";
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

/// An ISO offset as the server prints it: +HH, +HH:MM or +HH:MM:SS.
void append_offset(std::string& out, std::int64_t east_secs) {
  out += east_secs < 0 ? '-' : '+';
  std::int64_t a = east_secs < 0 ? -east_secs : east_secs;
  append_padded(out, a / 3600, 2);
  if (a % 3600 != 0) {
    out += ':';
    append_padded(out, a / 60 % 60, 2);
    if (a % 60 != 0) {
      out += ':';
      append_padded(out, a % 60, 2);
    }
  }
}

/// interval_out with IntervalStyle=postgres (the default): "1 year 2 mons
/// -3 days +04:05:06.5". A field after a negative one gets an explicit '+'.
void append_interval(value_view v, std::string& out) {
  check_size(v, 16);
  auto time = static_cast<std::int64_t>(get_be<std::uint64_t>(v.bytes.data()));
  auto days = static_cast<std::int32_t>(get_be<std::uint32_t>(v.bytes.data() + 8));
  auto months = static_cast<std::int32_t>(get_be<std::uint32_t>(v.bytes.data() + 12));
  bool is_zero = true, is_before = false;
  auto part = [&](std::int64_t value, const char* unit) {
    if (value == 0) return;
    if (!is_zero) out += ' ';
    if (is_before && value > 0) out += '+';
    append_int(out, value);
    out += ' ';
    out += unit;
    if (value != 1) out += 's';
    is_before = value < 0;
    is_zero = false;
  };
  part(months / 12, "year");
  part(months % 12, "mon");
  part(days, "day");
  if (is_zero || time != 0) {
    if (!is_zero) out += ' ';
    // The magnitude as unsigned: INT64_MIN microseconds has no positive twin.
    bool minus = time < 0;
    std::uint64_t mag =
        minus ? 0 - static_cast<std::uint64_t>(time) : static_cast<std::uint64_t>(time);
    out += minus ? "-" : (is_before ? "+" : "");
    std::uint64_t hours = mag / 3'600'000'000u;
    if (hours < 10) out += '0';
    append_int(out, hours);
    mag %= 3'600'000'000u;
    out += ':';
    append_padded(out, static_cast<std::int64_t>(mag / 60'000'000u), 2);
    out += ':';
    append_padded(out, static_cast<std::int64_t>(mag / 1'000'000u % 60), 2);
    if (auto frac = static_cast<std::int64_t>(mag % 1'000'000u); frac != 0) {
      std::string f;
      append_padded(f, frac, 6);
      f.erase(f.find_last_not_of('0') + 1);
      out += '.' + f;
    }
  }
}

/// The server's text for a binary value of a type pgq knows.
std::string render_binary(value_view v, int depth) {
  std::string out;
  switch (v.type) {
    case oids::bool_:
      check_size(v, 1);
      return v.bytes[0] ? "t" : "f";
    case oids::int2:
    case oids::int4:
    case oids::int8:
      append_int(out, detail::decode_integer(v, INT64_MIN, INT64_MAX, false, "std::string"));
      return out;
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
    case oids::numeric:
      return numeric_from_binary(v);
    case oids::uuid:
      return codec<uuid>::decode(v).to_string();
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
    case oids::interval:
      append_interval(v, out);
      return out;
    case oids::timestamp:
    case oids::timestamptz:
      check_size(v, 8);
      append_timestamp(out, static_cast<std::int64_t>(get_be<std::uint64_t>(v.bytes.data())),
                       pg_epoch_days, v.type == oids::timestamptz);
      return out;
    case oids::bytea:
      append_hex(out, v.bytes);
      return out;
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
    default:
      break;
  }
  if (is_text_like(v.type)) return std::string(v.bytes);
  if (array_element_oid(v.type) != 0) return render_binary_array(v, depth);
  detail::throw_type_mismatch(v.type, "std::string (binary format)");
}

}  // namespace

// ============================================================ public API

std::string type_name(oid type) {
  if (const char* n = scalar_name(type)) return n;
  if (oid e = array_element_oid(type)) return type_name(e) + "[]";
  if (type == 1020) return "box[]";
  return "oid " + std::to_string(type);
}

oid array_element_oid(oid array_type) noexcept {
  for (const auto& e : array_types)
    if (e.array == array_type) return e.element;
  return 0;
}

bytea::bytea(std::string_view bytes)
    : data(reinterpret_cast<const std::byte*>(bytes.data()),
           reinterpret_cast<const std::byte*>(bytes.data()) + bytes.size()) {}

numeric::numeric(std::string_view text) {
  auto c = canonical_numeric(text);
  if (!c)
    throw sql_error(errc::invalid_value, "invalid numeric literal: " + snippet(text, format::text));
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
    bool tiny = text_.find_first_not_of("-0.") != std::string::npos &&
                (text_.starts_with("0.") || text_.starts_with("-0."));
    if (tiny) return neg ? -0.0 : 0.0;
    return neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }
  return d;
}

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

void throw_type_mismatch(oid type, std::string_view cpp_name) {
  throw sql_error(errc::type_mismatch, "cannot read a value of type " + type_name(type) + " as " +
                                           std::string(cpp_name));
}

void throw_transient_view(std::string_view cpp_name) {
  throw sql_error(errc::invalid_value, "an escaped array element cannot be viewed in place by " +
                                           std::string(cpp_name) +
                                           "; read it as std::vector<std::string>");
}

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
      return true;
    default:
      break;
  }
  if (is_text_like(t)) return true;
  const oid element = array_element_oid(t);
  return element != 0 && binary_renderable(element);
}

std::string render_text(value_view v) {
  if (v.fmt == format::text) return std::string(v.bytes);
  return render_binary(v, 0);
}

void check_array_nesting(value_view v, int depth) {
  if (depth <= max_array_nesting) return;
  throw sql_error(errc::invalid_value,
                  "invalid " + type_name(v.type) + " value (" + format_name(v.fmt) + "): arrays nested through " +
                      "their element type deeper than " + std::to_string(max_array_nesting) +
                      " levels, pgq's limit (the server never sends an array whose elements are arrays)");
}

void encode_integer(std::int64_t v, int width, format f, std::string& out) {
  if (f == format::text) return append_int(out, v);
  switch (width) {
    case 2:
      return put_be(out, static_cast<std::uint16_t>(v));
    case 4:
      return put_be(out, static_cast<std::uint32_t>(v));
    default:
      return put_be(out, static_cast<std::uint64_t>(v));
  }
}

std::int64_t decode_integer(value_view v, std::int64_t lo, std::int64_t hi, bool allow_oid,
                            std::string_view cpp_name) {
  bool ok = v.type == oids::int2 || v.type == oids::int4 || v.type == oids::int8 ||
            (allow_oid && v.type == oids::oid_);
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

bool array_accepts(oid type, bool (*element_accepts)(oid) noexcept) noexcept {
  if (oid e = array_element_oid(type)) return element_accepts(e);
  if (scalar_name(type) != nullptr || type == 1020) return false;
  return element_accepts(oids::unknown);  // a user-defined array type
}

array_shape for_each_array_element(value_view v, int max_dims, element_sink sink) {
  if (v.fmt == format::binary) return parse_binary_array(v, max_dims, sink, nullptr, "an array");
  oid elem = array_element_oid(v.type);
  return text_array_parser(v, elem ? elem : oids::unknown, max_dims, sink).parse();
}

void decode_array(value_view v, bool (*element_accepts)(oid) noexcept, bool nulls_allowed,
                  std::string_view cpp_name, element_sink sink) {
  if (!array_accepts(v.type, element_accepts)) throw_type_mismatch(v.type, cpp_name);
  std::size_t index = 0;
  auto check = [&](const value_view* e, bool transient) {
    if (!e && !nulls_allowed)
      throw sql_error(errc::unexpected_null, "NULL array element " + std::to_string(index + 1) +
                                                 " cannot be read as " + std::string(cpp_name) +
                                                 "; use std::optional elements");
    ++index;
    sink.call(sink.ctx, e, transient);
  };
  auto checked = element_sink::of(check);
  if (v.fmt == format::binary) {
    parse_binary_array(v, 1, checked, element_accepts, cpp_name);
  } else {
    oid elem = array_element_oid(v.type);
    text_array_parser(v, elem ? elem : oids::unknown, 1, checked).parse();
  }
}

array_encoder::array_encoder(format f, oid array_type, std::size_t count, std::string& out)
    : fmt_(f), out_(out), header_pos_(out.size()), expected_(count) {
  if (fmt_ == format::text) {
    out_ += '{';
    return;
  }
  if (count > static_cast<std::size_t>(INT32_MAX)) throw_encode("array", "too many elements");
  put_be<std::uint32_t>(out_, count > 0 ? 1 : 0);
  header_pos_ = out_.size();
  put_be<std::uint32_t>(out_, 0);
  put_be<std::uint32_t>(out_, array_element_oid(array_type));
  if (count > 0) {
    put_be<std::uint32_t>(out_, static_cast<std::uint32_t>(count));
    put_be<std::uint32_t>(out_, 1);
  }
}

void array_encoder::begin_element() {
  if (fmt_ == format::text) {
    if (count_ > 0) out_ += ',';
    elem_pos_ = out_.size();
    return;
  }
  elem_pos_ = out_.size();
  put_be<std::uint32_t>(out_, 0);
}

void array_encoder::end_element() {
  ++count_;
  if (fmt_ == format::text) {
    // Most elements need no quotes: only those pay for a copy.
    if (!needs_quotes(std::string_view(out_).substr(elem_pos_))) return;
    std::string e = out_.substr(elem_pos_);
    out_.resize(elem_pos_);
    append_quoted(out_, e);
    return;
  }
  std::size_t len = out_.size() - elem_pos_ - 4;
  if (len > static_cast<std::size_t>(INT32_MAX)) throw_encode("array", "element too large");
  patch_be<std::uint32_t>(out_, elem_pos_, static_cast<std::uint32_t>(len));
}

void array_encoder::null_element() {
  if (fmt_ == format::text) {
    if (count_ > 0) out_ += ',';
    out_ += "NULL";
  } else {
    put_be<std::uint32_t>(out_, 0xFFFFFFFFu);
    has_null_ = true;
  }
  ++count_;
}

void array_encoder::finish() {
  if (count_ != expected_) throw_encode("array", "element count changed while encoding");
  if (fmt_ == format::text) {
    out_ += '}';
    return;
  }
  if (has_null_) patch_be<std::uint32_t>(out_, header_pos_, 1);
}

}  // namespace detail

// ----------------------------------------------------------------- codecs

void codec<bool>::encode(const bool& v, format f, std::string& out) {
  if (f == format::text)
    out += v ? 't' : 'f';
  else
    out += static_cast<char>(v ? 1 : 0);
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
    case oids::float4:
      check_size(v, 4);
      return std::bit_cast<float>(get_be<std::uint32_t>(v.bytes.data()));
    case oids::float8:
      check_size(v, 8);
      return std::bit_cast<double>(get_be<std::uint64_t>(v.bytes.data()));
    case oids::numeric: {
      if (numeric_to_double_fast(v, d)) return d;
      std::string t = numeric_from_binary(v);
      if (!parse_float(t, d)) throw_out_of_range(v, t, "double");
      return d;
    }
    default:
      return static_cast<double>(detail::decode_integer(v, INT64_MIN, INT64_MAX, false, "double"));
  }
}

bool accepts_float(oid t) {
  return t == oids::float4 || t == oids::float8 || t == oids::int2 || t == oids::int4 ||
         t == oids::int8 || t == oids::numeric;
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

void codec<std::vector<std::byte>>::encode(const std::vector<std::byte>& v, format f,
                                           std::string& out) {
  std::string_view bytes(reinterpret_cast<const char*>(v.data()), v.size());
  if (f == format::text)
    append_hex(out, bytes);
  else
    out.append(bytes);
}

std::vector<std::byte> codec<std::vector<std::byte>>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  if (v.fmt == format::text) return decode_bytea_text(v);
  auto p = reinterpret_cast<const std::byte*>(v.bytes.data());
  return {p, p + v.bytes.size()};
}

void codec<numeric>::encode(const numeric& v, format f, std::string& out) {
  if (f == format::text)
    out += v.str();
  else
    numeric_to_binary(v.str(), out);
}

numeric codec<numeric>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  if (v.type != oids::numeric)
    return numeric(detail::decode_integer(v, INT64_MIN, INT64_MAX, false, cpp_name));
  if (v.fmt == format::binary) return numeric(numeric_from_binary(v));
  auto c = canonical_numeric(v.bytes);
  if (!c) throw_invalid(v, "a numeric such as -12.50, NaN or Infinity");
  return numeric(*c);
}

void codec<uuid>::encode(const uuid& v, format f, std::string& out) {
  if (f == format::text)
    out += v.to_string();
  else
    out.append(reinterpret_cast<const char*>(v.bytes.data()), v.bytes.size());
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

namespace {

std::int64_t usecs_of(timestamptz t) {
  if (t == timestamptz::max()) return INT64_MAX;
  if (t == timestamptz::min()) return INT64_MIN;
  return t.time_since_epoch().count();
}

template <class TimePoint>
TimePoint time_point_of(std::int64_t usecs) {
  if (usecs == INT64_MAX) return TimePoint::max();
  if (usecs == INT64_MIN) return TimePoint::min();
  return TimePoint(std::chrono::microseconds(usecs));
}

}  // namespace

void codec<timestamptz>::encode(const timestamptz& v, format f, std::string& out) {
  encode_timestamp(usecs_of(v), true, f, out, cpp_name);
}

timestamptz codec<timestamptz>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  return time_point_of<timestamptz>(timestamp_usecs(v, true, cpp_name));
}

void codec<timestamp>::encode(const timestamp& v, format f, std::string& out) {
  std::int64_t us = v == timestamp::max()   ? INT64_MAX
                    : v == timestamp::min() ? INT64_MIN
                                            : v.time_since_epoch().count();
  encode_timestamp(us, false, f, out, cpp_name);
}

timestamp codec<timestamp>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  return time_point_of<timestamp>(timestamp_usecs(v, false, cpp_name));
}

void codec<std::chrono::system_clock::time_point>::encode(
    const std::chrono::system_clock::time_point& v, format f, std::string& out) {
  using tp = std::chrono::system_clock::time_point;
  std::int64_t us =
      v == tp::max() ? INT64_MAX
      : v == tp::min()
          ? INT64_MIN
          : std::chrono::floor<std::chrono::microseconds>(v).time_since_epoch().count();
  encode_timestamp(us, true, f, out, cpp_name);
}

std::chrono::system_clock::time_point codec<std::chrono::system_clock::time_point>::decode(
    value_view v) {
  using tp = std::chrono::system_clock::time_point;
  check_accepts(accepts(v.type), v, cpp_name);
  std::int64_t us = timestamp_usecs(v, true, cpp_name);
  if (us == INT64_MAX) return tp::max();
  if (us == INT64_MIN) return tp::min();
  constexpr auto per_us =
      std::chrono::duration_cast<tp::duration>(std::chrono::microseconds(1)).count();
  tp::rep ticks;
  if (__builtin_mul_overflow(static_cast<tp::rep>(us), per_us, &ticks))
    throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
  return tp(tp::duration(ticks));
}

void codec<date>::encode(const date& v, format f, std::string& out) {
  using namespace std::chrono;
  if (v == year::max() / December / 31) return encode_date_days(INT64_MAX, f, out, cpp_name);
  if (v == year::min() / January / 1) return encode_date_days(INT64_MIN, f, out, cpp_name);
  if (!v.ok()) throw_encode(cpp_name, "invalid year_month_day");
  encode_date_days(sys_days(v).time_since_epoch().count(), f, out, cpp_name);
}

date codec<date>::decode(value_view v) {
  using namespace std::chrono;
  check_accepts(accepts(v.type), v, cpp_name);
  std::int64_t d = date_days(v);
  if (d == INT64_MAX) return year::max() / December / 31;
  if (d == INT64_MIN) return year::min() / January / 1;
  std::int64_t y;
  unsigned m, dd;
  civil_from_days(d, y, m, dd);
  if (y < static_cast<int>(year::min()) || y > static_cast<int>(year::max()))
    throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
  return year(static_cast<int>(y)) / month(m) / day(dd);
}

void codec<std::chrono::sys_days>::encode(const std::chrono::sys_days& v, format f,
                                          std::string& out) {
  using sd = std::chrono::sys_days;
  std::int64_t d = v == sd::max()   ? INT64_MAX
                   : v == sd::min() ? INT64_MIN
                                    : static_cast<std::int64_t>(v.time_since_epoch().count());
  encode_date_days(d, f, out, cpp_name);
}

std::chrono::sys_days codec<std::chrono::sys_days>::decode(value_view v) {
  using sd = std::chrono::sys_days;
  check_accepts(accepts(v.type), v, cpp_name);
  std::int64_t d = date_days(v);
  if (d == INT64_MAX) return sd::max();
  if (d == INT64_MIN) return sd::min();
  return sd(sd::duration(static_cast<sd::rep>(d)));
}

}  // namespace pgq
