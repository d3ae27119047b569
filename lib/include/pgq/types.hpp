// pgq/types.hpp - the C++ value types of PostgreSQL values: type OIDs and
// wire formats, bytea, numeric, uuid, and the date and time types.
//
// How these (and the standard types) convert to and from the wire is the
// codec contract in <pgq/codec.hpp>, which this header includes so that
// code written before the split keeps compiling.
#pragma once

#include <array>
#include <chrono>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <pgq/error.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace pgq {

/// A PostgreSQL type OID.
using oid = std::uint32_t;

/// Wire format of a value.
enum class format : int { text = 0, binary = 1 };

/// One non-NULL value as it came from the server (or as a test builds it).
struct value_view {
  std::string_view bytes;
  oid type = 0;
  format fmt = format::text;
};

/// Well-known type OIDs (pg_type.dat).
namespace oids {
inline constexpr oid bool_ = 16, bytea = 17, char_ = 18, name = 19, int8 = 20, int2 = 21, int4 = 23, text = 25,
                     oid_ = 26, json = 114, xml = 142, float4 = 700, float8 = 701, unknown = 705, bpchar = 1042,
                     varchar = 1043, date = 1082, time = 1083, timestamp = 1114, timestamptz = 1184, interval = 1186,
                     numeric = 1700, uuid = 2950, jsonb = 3802;
/// Array types of the above (typarray in pg_type.dat).
inline constexpr oid bool_array = 1000, bytea_array = 1001, char_array = 1002, name_array = 1003, int2_array = 1005,
                     int4_array = 1007, text_array = 1009, bpchar_array = 1014, varchar_array = 1015, int8_array = 1016,
                     float4_array = 1021, float8_array = 1022, oid_array = 1028, json_array = 199, xml_array = 143,
                     timestamp_array = 1115, date_array = 1182, time_array = 1183, timestamptz_array = 1185,
                     interval_array = 1187, numeric_array = 1231, uuid_array = 2951, jsonb_array = 3807;
}  // namespace oids

/// The name of a type OID for messages ("int4", "text", "int4[]"), or
/// "oid 12345" for a type pgq does not know (user-defined types have
/// per-database OIDs). Never throws except std::bad_alloc.
std::string type_name(oid type);

/// The element type of a built-in array type (int4[] -> int4), or 0 when
/// `array_type` is not an array type pgq knows.
oid array_element_oid(oid array_type) noexcept;

namespace detail {
/// An integer type other than bool.
template <class T>
concept non_bool_integral = std::integral<T> && !std::same_as<T, bool>;
}  // namespace detail

/// A bytea value: raw bytes, embedded NULs included.
/// Use it (or `std::vector<std::byte>`) for binary data; `std::string`
/// parameters are sent as text and cannot carry a NUL.
struct bytea {
  std::vector<std::byte> data;

  bytea() = default;
  /// Takes the bytes over.
  explicit bytea(std::vector<std::byte> bytes) : data(std::move(bytes)) {}
  /// Copies the bytes of `bytes` (not a hex decoding: "\\x01" is 4 bytes).
  explicit bytea(std::string_view bytes);

  /// The bytes as characters; valid while this object is alive and unchanged.
  std::string_view view() const noexcept { return {reinterpret_cast<const char*>(data.data()), data.size()}; }
  /// The number of bytes.
  std::size_t size() const noexcept { return data.size(); }

  /// Byte-for-byte equality and order.
  friend bool operator==(const bytea&, const bytea&) = default;
  friend std::strong_ordering operator<=>(const bytea& a, const bytea& b) noexcept {
    return a.view() <=> b.view();  // bytewise, as the server orders bytea
  }
};

/// An arbitrary-precision PostgreSQL numeric that loses no digit: it holds
/// the canonical text the server prints ("-123.4500", "0.000001", "NaN",
/// "Infinity", "-Infinity"), so scale and trailing zeros survive a round
/// trip. Comparison is on that text: numeric("1.50") != numeric("1.5"),
/// as the values differ in scale.
class numeric {
 public:
  /// Zero ("0").
  numeric() = default;
  /// Parses and canonicalizes what numeric_in accepts: surrounding spaces,
  /// a sign, digits with an optional point and exponent ("1.5e3" -> "1500"),
  /// NaN and [+-]Infinity/inf case-insensitively; "-0" becomes "0".
  /// Throws sql_error(errc::invalid_value) on anything else.
  explicit numeric(std::string_view text);
  /// The exact value of an integer (bool excluded: it is not a number).
  template <detail::non_bool_integral I>
  numeric(I v) {  // NOLINT(google-explicit-constructor): integers convert exactly
    if constexpr (std::is_signed_v<I>) assign_signed(static_cast<long long>(v));
    else assign_unsigned(static_cast<unsigned long long>(v));
  }

  /// The canonical text.
  const std::string& str() const noexcept { return text_; }
  /// The nearest double (NaN and infinities map to the IEEE values; values
  /// beyond double's range become +-infinity).
  double to_double() const noexcept;
  /// Whether this is NaN.
  bool is_nan() const noexcept { return text_ == "NaN"; }
  /// Whether this is Infinity or -Infinity.
  bool is_infinite() const noexcept { return text_ == "Infinity" || text_ == "-Infinity"; }

  /// Equality of the canonical text (so of value and scale).
  friend bool operator==(const numeric&, const numeric&) = default;

 private:
  void assign_signed(long long v);
  void assign_unsigned(unsigned long long v);

  std::string text_ = "0";
};

/// A UUID: 16 bytes in network order.
struct uuid {
  /// The 16 bytes, most significant first; all zero by default.
  std::array<std::uint8_t, 16> bytes{};

  /// Parses what uuid_in accepts: 32 hex digits (any case), optionally
  /// hyphenated after any group of four digits, optionally in braces
  /// ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{A0EEBC99...}",
  /// "a0eebc999c0b4ef8bb6d6bb9bd380a11"). Throws sql_error(errc::invalid_value).
  static uuid parse(std::string_view text);
  /// Lowercase canonical form, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".
  std::string to_string() const;

  /// Bytewise equality and order (the server's uuid order).
  friend bool operator==(const uuid&, const uuid&) = default;
  friend auto operator<=>(const uuid&, const uuid&) = default;
};

/// timestamp with time zone: an instant, microsecond precision (oid 1184).
/// `max()` / `min()` stand for 'infinity' / '-infinity'.
using timestamptz = std::chrono::sys_time<std::chrono::microseconds>;
/// timestamp without time zone: a wall-clock reading (oid 1114).
/// `max()` / `min()` stand for 'infinity' / '-infinity'.
using timestamp = std::chrono::local_time<std::chrono::microseconds>;
/// date (oid 1082). year::max()/12/31 and year::min()/1/1 stand for
/// 'infinity' / '-infinity'; dates outside year's range (+-32767) do not
/// decode (errc::invalid_value): use std::chrono::sys_days for those.
using date = std::chrono::year_month_day;

}  // namespace pgq

// The codecs of these types (and of the standard ones). codec.hpp includes
// this header first, so included from there this line does nothing.
#include <pgq/codec.hpp>
