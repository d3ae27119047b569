// codecs/common.hpp - what the codec families share. Private to
// lib/src/codecs/ (see README.md there); the public contract is
// <pgq/codec.hpp>.
//
// Binary formats follow the server's *send/*recv functions (network byte
// order); text formats follow its output functions with DateStyle=ISO and
// extra_float_digits=1 (the defaults), so that a value rendered here reads
// exactly like one printed by the server.
#pragma once

#include <pgq/codec.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace pgq::codecs {

// ---------------------------------------------------------------- errors
// (common.cpp)

/// A bad value, shown safely: printable ASCII as is, the rest escaped, long
/// input cut (messages end up in logs; hostile bytes must not).
std::string snippet(std::string_view bytes, format fmt);

/// "binary" or "text".
const char* format_name(format f);

/// "invalid <type> value (<fmt>, expected <what>): <bytes>"
[[noreturn]] void throw_invalid(value_view v, std::string_view what);

/// "value <shown> of type <pg type> is out of range for <cpp_name>"
[[noreturn]] void throw_out_of_range(value_view v, std::string_view shown, std::string_view cpp_name);

/// "cannot encode <cpp_name>: <what>"
[[noreturn]] void throw_encode(std::string_view cpp_name, std::string_view what);

inline void check_accepts(bool ok, value_view v, std::string_view cpp_name) {
  if (!ok) detail::throw_type_mismatch(v.type, cpp_name);
}

// ------------------------------------------------------- byte order I/O

template <class U>
inline void put_be(std::string& out, U v) {
  static_assert(std::is_unsigned_v<U>);
  char b[sizeof(U)];
  for (std::size_t i = 0; i < sizeof(U); ++i)
    b[i] = static_cast<char>(static_cast<unsigned char>(v >> (8 * (sizeof(U) - 1 - i))));
  out.append(b, sizeof(U));
}

template <class U>
inline void patch_be(std::string& out, std::size_t pos, U v) {
  for (std::size_t i = 0; i < sizeof(U); ++i)
    out[pos + i] = static_cast<char>(static_cast<unsigned char>(v >> (8 * (sizeof(U) - 1 - i))));
}

template <class U>
U get_be(const char* p) {
  U v = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) v = static_cast<U>((v << 8) | static_cast<unsigned char>(p[i]));
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
  std::int32_t i32(std::string_view what) { return static_cast<std::int32_t>(get<std::uint32_t>(what)); }
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
inline void check_size(value_view v, std::size_t n) {
  if (v.bytes.size() != n) throw_invalid(v, std::to_string(n) + " bytes");
}

// ------------------------------------------------------------- text bits

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

template <class I>
inline void append_int(std::string& out, I v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

inline void append_padded(std::string& out, std::int64_t v, int width) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  for (auto n = r.ptr - buf; n < width; ++n) out += '0';
  out.append(buf, r.ptr);
}

/// Parses [+-]digits (with surrounding spaces, as int4in allows).
inline bool parse_int64(std::string_view s, std::int64_t& out) {
  s = trim(s);
  if (s.size() > 1 && s[0] == '+' && s[1] != '-') s.remove_prefix(1);
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// ------------------------------------------------------------ type table
// (common.cpp)

/// The name of a non-array type pgq knows, or nullptr.
const char* scalar_name(oid t);

/// The types whose binary format is their text (text, varchar, name, json...).
bool is_text_like(oid t);

// ---------------------------------------------------------------- floats
// (scalar.cpp, instantiated there for float and double)

/// Appends `v` as float4out/float8out print it: shortest round-trip digits,
/// fixed notation for decimal exponents in [-4, 15) (float4: [-4, 6)),
/// scientific with a two-digit exponent otherwise.
template <class F>
void append_float(std::string& out, F v);

/// Parses what float4in/float8in accept: spaces, NaN, [+-]Infinity/inf
/// (any case), decimal or scientific notation. False on junk or overflow.
template <class F>
bool parse_float(std::string_view s, F& out);

extern template void append_float<float>(std::string&, float);
extern template void append_float<double>(std::string&, double);
extern template bool parse_float<float>(std::string_view, float&);
extern template bool parse_float<double>(std::string_view, double&);

// ----------------------------------------------------------------- bytea
// (scalar.cpp)

/// Appends bytea's hex text form, "\\x0a0b".
void append_hex(std::string& out, std::string_view bytes);

// --------------------------------------------------------------- numeric
// (numeric.cpp)

/// numeric_out's text of a numeric_send value.
std::string numeric_from_binary(value_view v);

/// A binary numeric as the double nearest to it, without the text detour,
/// when that is exact to compute (Clinger's fast path): a mantissa below 2^53
/// and a power of ten up to 1e22 are both exact doubles, so one multiplication
/// or division rounds once, to the same double as parsing the decimal text.
/// False: take the text path (more digits, a larger exponent, NaN, bad bytes).
bool numeric_to_double_fast(value_view v, double& out);

// ------------------------------------------------------------------ time
// (time.cpp)

inline constexpr std::int64_t usecs_per_day = 86'400'000'000;
inline constexpr std::int64_t pg_epoch_days = 10'957;  // 2000-01-01 - 1970-01-01
inline constexpr std::int64_t pg_epoch_usecs = pg_epoch_days * usecs_per_day;

/// "HH:MM:SS[.ffffff]", trailing zeros of the fraction dropped.
void append_time_of_day(std::string& out, std::int64_t usecs);

/// The text of a timestamp given as microseconds since 1970 (`epoch_days`
/// 0) or since 2000 (`epoch_days` pg_epoch_days), INT64_MAX/MIN being the
/// infinities, with "+00" when `utc_offset`. Both epochs, because the
/// server's range does not fit 64-bit microseconds since 1970.
void append_timestamp(std::string& out, std::int64_t usecs, std::int64_t epoch_days, bool utc_offset);

/// Days since 1970 of a date value (INT64_MAX/MIN = infinities).
std::int64_t date_days(value_view v);

/// Appends a date given as days since 1970 (INT64_MAX/MIN = infinities) in
/// format `f`; throws invalid_value (naming `cpp_name`) beyond the server's range.
void encode_date_days(std::int64_t days, format f, std::string& out, std::string_view cpp_name);

/// An ISO offset as the server prints it: +HH, +HH:MM or +HH:MM:SS.
void append_offset(std::string& out, std::int64_t east_secs);

/// interval_out with IntervalStyle=postgres (the default): "1 year 2 mons
/// -3 days +04:05:06.5". A field after a negative one gets an explicit '+'.
void append_interval(value_view v, std::string& out);

// ---------------------------------------------------------------- arrays
// (array.cpp)

inline constexpr int max_array_dims = 6;  // MAXDIM

/// Whether array_out would quote element text `e`.
bool needs_quotes(std::string_view e);

/// Quotes an array element the way array_out does.
void append_quoted(std::string& out, std::string_view e);

/// array_send's layout: ndim, has-null flag, element type, (length, lower
/// bound) per dimension, then length-prefixed elements (-1 = NULL).
/// Checks the element type against `element_accepts` when given.
detail::array_shape parse_binary_array(value_view v, int max_dims, detail::element_sink sink,
                                       bool (*element_accepts)(oid), std::string_view cpp_name);

}  // namespace pgq::codecs
