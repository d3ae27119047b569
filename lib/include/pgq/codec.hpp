// pgq/codec.hpp - codecs between C++ types and PostgreSQL types, and the
// concepts that say which types a statement can bind and a result can read.
//
// CONTRACT (the rest of the library relies on exactly this):
//
//   template <class T> struct codec;   // one specialization per supported T
//
// Every specialization provides:
//   static constexpr std::string_view cpp_name;   // "int32", "std::string", ...
//   static constexpr oid param_oid;               // OID sent with a parameter (0 = server infers)
//   static constexpr oid array_oid;               // OID of T[] (0 if T cannot be an array element)
//   static constexpr format param_format;         // format in which parameters are sent
//   static bool accepts(oid type) noexcept;       // can decode a value of that Postgres type
//   static void encode(const T& v, format f, std::string& out);  // appends the encoding
//   static T decode(value_view v);                // v is never NULL; throws pgq::sql_error
//                                                 //   with errc::invalid_value on bad bytes
//                                                 //   or a value out of T's range
//
// NULL is `std::optional<T>`, handled outside the codecs (field::as, params).
//
// Additions to the contract:
//   - `decode` checks `accepts(v.type)` itself and throws errc::type_mismatch
//     naming the Postgres type and the C++ type, so callers need not.
//   - `const char*` / `char*` are encode-only (no `decode`): `has_codec<T>`
//     holds for them, `decodable<T>` does not.
//   - Text format is what the server's output functions print with
//     DateStyle=ISO; binary format is what its *send functions produce.
//   - Decoding never has undefined behaviour on hostile bytes: short buffers,
//     huge lengths and negative dimensions all throw errc::invalid_value.
#pragma once

#include <pgq/error.hpp>
#include <pgq/types.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace pgq {

/// The codec of `T`: see the contract at the top of this header.
template <class T>
struct codec;

/// `codec<T>` exists, is complete and can encode: T can be a parameter.
template <class T>
concept has_codec = requires(const T& v, format f, std::string& out) {
  { codec<T>::cpp_name } -> std::convertible_to<std::string_view>;
  { codec<T>::param_oid } -> std::convertible_to<oid>;
  { codec<T>::array_oid } -> std::convertible_to<oid>;
  { codec<T>::param_format } -> std::convertible_to<format>;
  codec<T>::encode(v, f, out);
};

/// `codec<T>` can also decode: T can be read from a result. `field::as<T>`,
/// `row::get<T>` and `row::as<Ts...>` require it of `T` (of `U` for
/// `std::optional<U>`): reading a type without a codec is a compile error
/// naming this concept and the type.
template <class T>
concept decodable = has_codec<T> && requires(value_view v, oid t) {
  { codec<T>::accepts(t) } -> std::same_as<bool>;
  { codec<T>::decode(v) } -> std::same_as<T>;
};

namespace detail {
/// What a statement parameter of type `T` is encoded as: `U` for
/// `std::optional<U>` (NULL when empty), a pointer for a C string array
/// (a string literal is `char[N]`), `T` otherwise.
template <class T>
struct param_value {
  using type = T;
};
template <class T>
struct param_value<std::optional<T>> {
  using type = T;
};
template <class T, std::size_t N>
struct param_value<T[N]> {
  using type = const T*;
};
template <class T>
using param_value_t = typename param_value<T>::type;

/// What `field::as<T>` decodes: `U` for `std::optional<U>` (NULL reads as
/// nullopt), `T` otherwise.
template <class T>
struct read_value {
  using type = T;
};
template <class T>
struct read_value<std::optional<T>> {
  using type = T;
};
template <class T>
using read_value_t = typename read_value<T>::type;
}  // namespace detail

/// `T` can be bound as a statement parameter (`query()`, `execute()`,
/// `stream()`, `batch::add()`, `copy_writer::write_row()`): a type with a
/// codec, `std::optional` of one (NULL when empty), `std::nullopt`, or a
/// string literal. Passing anything else is a compile error naming this
/// concept and the type.
template <class T>
concept encodable = std::same_as<T, std::nullopt_t> || has_codec<detail::param_value_t<T>>;

// Non-template workers behind the thin templates below. Not API.
namespace detail {

/// Throws errc::type_mismatch: "cannot read <pg type> as <cpp_name>".
[[noreturn]] void throw_type_mismatch(oid type, std::string_view cpp_name);

void encode_integer(std::int64_t v, int width, format f, std::string& out);
/// Decodes int2/int4/int8 (and oid when `allow_oid`), checks [lo, hi].
std::int64_t decode_integer(value_view v, std::int64_t lo, std::int64_t hi, bool allow_oid, std::string_view cpp_name);

/// `long long` where it is not the type std::int64_t names.
template <class T>
concept distinct_long_long = std::same_as<T, long long> && !std::same_as<long long, std::int64_t>;

/// A type that can be the element of a one-dimensional array.
template <class T>
concept array_element = has_codec<T> && codec<T>::array_oid != 0;

/// What the integer codecs share: any integer type decodes (range-checked),
/// parameters go binary.
template <oid ParamOid, oid ArrayOid, bool AllowOid>
struct integer_codec {
  static constexpr oid param_oid = ParamOid;
  static constexpr oid array_oid = ArrayOid;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept {
    return t == oids::int2 || t == oids::int4 || t == oids::int8 || (AllowOid && t == oids::oid_);
  }
};

/// Receives array elements from decode_array: `elem` is null for a NULL;
/// `transient` says the bytes live in a scratch buffer (an unescaped text
/// element) and die when the call returns.
struct element_sink {
  void* ctx;
  void (*call)(void* ctx, const value_view* elem, bool transient);

  template <class F>
  static element_sink of(F& f) noexcept {
    return {&f, [](void* c, const value_view* e, bool t) { (*static_cast<F*>(c))(e, t); }};
  }
};

/// Whether a vector whose element codec accepts `element_accepts` can read
/// `type`: known array types by their element, unknown OIDs (user-defined
/// arrays) when the element codec accepts `unknown`.
bool array_accepts(oid type, bool (*element_accepts)(oid) noexcept) noexcept;

/// Parses a one-dimensional array (text or binary) and feeds its elements to
/// `sink` in order. Checks the type, the element type (binary) and throws
/// errc::unexpected_null for a NULL element unless `nulls_allowed`.
void decode_array(value_view v, bool (*element_accepts)(oid) noexcept, bool nulls_allowed, std::string_view cpp_name,
                  element_sink sink);

/// Writes an array element by element: begin_element(), append the element
/// (in the array's format), end_element(); or null_element(); then finish().
class array_encoder {
 public:
  array_encoder(format f, oid array_type, std::size_t count, std::string& out);
  void begin_element();
  void end_element();
  void null_element();
  void finish();

 private:
  format fmt_;
  std::string& out_;
  std::size_t header_pos_;  // where the binary flags word is, to set has-null
  std::size_t elem_pos_ = 0;
  std::size_t count_ = 0;
  std::size_t expected_;
  bool has_null_ = false;
};

/// True when pgq decodes and renders binary values of `type` (then results
/// may come in binary format): bool, integers, floats, numeric, uuid, dates
/// and times, interval, bytea, text-like types, json(b), and arrays of these.
bool binary_renderable(oid type) noexcept;

/// The server's text for a value: text-format bytes as they are; binary
/// values of the types codec<std::string> documents rendered as the server
/// prints them; other binary values throw errc::type_mismatch.
std::string render_text(value_view v);

/// How deep binary arrays may nest through the element type their headers
/// name when pgq walks them recursively (render_text(), to_json_value()).
/// The server never sends an array whose elements are arrays (more
/// dimensions are one array), but the element type is read from the bytes:
/// a hostile or corrupt value could nest until the stack overflows. Small on
/// purpose, not merely stack-safe: array_out's quoting doubles the escapes
/// of a nested array's text at every level, so rendered text grows as
/// 2^depth; 6 (PostgreSQL's MAXDIM) keeps that within 64 times the input.
inline constexpr int max_array_nesting = 6;

/// Throws errc::invalid_value, naming the type and the limit, when `depth`
/// (1 for an outermost array, 2 for an array that is its element...) is
/// beyond max_array_nesting.
void check_array_nesting(value_view v, int depth);

/// The shape of an array: length and lower bound of each dimension (none
/// for an empty array) and the element type (from the binary header, or
/// derived from the array type for text).
struct array_shape {
  std::vector<int> lengths;
  std::vector<int> lower_bounds;
  oid element_type = 0;
};

/// Walks an array of at most `max_dims` (<= 6) dimensions in either format,
/// feeding every element to `sink` in row-major order (NULLs included), and
/// returns its shape. Malformed input is errc::invalid_value.
array_shape for_each_array_element(value_view v, int max_dims, element_sink sink);

/// Throws errc::invalid_value: a string_view cannot point at an element
/// that had to be unescaped.
[[noreturn]] void throw_transient_view(std::string_view cpp_name);

/// Prefix + codec<T>::cpp_name + Suffix as a constant, for the cpp_name of
/// containers ("std::vector<int32>").
template <std::size_t N>
struct fixed_name {
  char chars[N]{};
  constexpr std::string_view view() const noexcept { return {chars, N}; }
};
template <const std::string_view& Prefix, class T, const std::string_view& Suffix>
inline constexpr auto wrapped_name = [] {
  constexpr std::string_view elem = codec<T>::cpp_name;
  fixed_name<Prefix.size() + elem.size() + Suffix.size()> r;
  std::size_t i = 0;
  for (char c : Prefix) r.chars[i++] = c;
  for (char c : elem) r.chars[i++] = c;
  for (char c : Suffix) r.chars[i++] = c;
  return r;
}();
inline constexpr std::string_view vector_prefix = "std::vector<";
inline constexpr std::string_view vector_suffix = ">";
inline constexpr std::string_view vector_optional_prefix = "std::vector<std::optional<";
inline constexpr std::string_view vector_optional_suffix = ">>";

}  // namespace detail

/// bool (oid 16). Text "t"/"f" (decode also takes true/false/yes/no/on/off/1/0).
template <>
struct codec<bool> {
  static constexpr std::string_view cpp_name = "bool";
  static constexpr oid param_oid = oids::bool_;
  static constexpr oid array_oid = oids::bool_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::bool_; }
  static void encode(const bool& v, format f, std::string& out);
  static bool decode(value_view v);
};

/// int16 (int2). Decodes int2/int4/int8 with a range check.
template <>
struct codec<std::int16_t> : detail::integer_codec<oids::int2, oids::int2_array, false> {
  static constexpr std::string_view cpp_name = "int16";
  static void encode(const std::int16_t& v, format f, std::string& out) { detail::encode_integer(v, 2, f, out); }
  static std::int16_t decode(value_view v) {
    return static_cast<std::int16_t>(detail::decode_integer(v, INT16_MIN, INT16_MAX, false, cpp_name));
  }
};

/// int32 (int4). Decodes int2/int4/int8 with a range check.
template <>
struct codec<std::int32_t> : detail::integer_codec<oids::int4, oids::int4_array, false> {
  static constexpr std::string_view cpp_name = "int32";
  static void encode(const std::int32_t& v, format f, std::string& out) { detail::encode_integer(v, 4, f, out); }
  static std::int32_t decode(value_view v) {
    return static_cast<std::int32_t>(detail::decode_integer(v, INT32_MIN, INT32_MAX, false, cpp_name));
  }
};

/// int64 (int8). Decodes int2/int4/int8 and oid.
template <>
struct codec<std::int64_t> : detail::integer_codec<oids::int8, oids::int8_array, true> {
  static constexpr std::string_view cpp_name = "int64";
  static void encode(const std::int64_t& v, format f, std::string& out) { detail::encode_integer(v, 8, f, out); }
  static std::int64_t decode(value_view v) { return detail::decode_integer(v, INT64_MIN, INT64_MAX, true, cpp_name); }
};

/// `long long` as int8, where it is a type distinct from std::int64_t
/// (LP64 Linux: int64_t is `long`), so `42LL` works as a parameter.
template <detail::distinct_long_long T>
struct codec<T> : detail::integer_codec<oids::int8, oids::int8_array, true> {
  static constexpr std::string_view cpp_name = "long long";
  static void encode(const long long& v, format f, std::string& out) {
    detail::encode_integer(static_cast<std::int64_t>(v), 8, f, out);
  }
  static long long decode(value_view v) {
    return static_cast<long long>(detail::decode_integer(v, INT64_MIN, INT64_MAX, true, cpp_name));
  }
};

/// float4. Text is the shortest round-trip form the server prints ("1.5",
/// "1e+15", "NaN", "Infinity"). Decodes float4/float8/int2/int4/int8/numeric
/// (rounding to nearest; a finite value beyond float's range is invalid_value).
template <>
struct codec<float> {
  static constexpr std::string_view cpp_name = "float";
  static constexpr oid param_oid = oids::float4;
  static constexpr oid array_oid = oids::float4_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept;
  static void encode(const float& v, format f, std::string& out);
  static float decode(value_view v);
};

/// float8. As float; decodes float4/float8/int2/int4/int8/numeric.
template <>
struct codec<double> {
  static constexpr std::string_view cpp_name = "double";
  static constexpr oid param_oid = oids::float8;
  static constexpr oid array_oid = oids::float8_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept;
  static void encode(const double& v, format f, std::string& out);
  static double decode(value_view v);
};

/// Text of any kind. Parameters are untyped text (oid 0: the server infers
/// the type from context, so a string can feed any column). Decodes every
/// type in text format (the server's text) and, in binary format, the
/// text-like types plus bool, integers, floats, numeric, uuid, date, time,
/// timetz, timestamp(tz), interval, bytea, json(b) and their arrays, rendered as the server
/// prints them (timestamptz in UTC, "+00", since the session zone is not
/// known here). Other binary values are errc::type_mismatch.
template <>
struct codec<std::string> {
  static constexpr std::string_view cpp_name = "std::string";
  static constexpr oid param_oid = 0;
  static constexpr oid array_oid = oids::text_array;
  static constexpr format param_format = format::text;
  static bool accepts(oid) noexcept { return true; }
  static void encode(const std::string& v, format, std::string& out) { out.append(v); }
  static std::string decode(value_view v);
};

/// A view of text: zero copy both ways. Decoding returns a view into
/// `v.bytes` (valid as long as the result it came from); it takes any type in
/// text format and text-like types (and jsonb, minus its version byte) in
/// binary; other binary values are errc::type_mismatch (use std::string).
template <>
struct codec<std::string_view> {
  static constexpr std::string_view cpp_name = "std::string_view";
  static constexpr oid param_oid = 0;
  static constexpr oid array_oid = oids::text_array;
  static constexpr format param_format = format::text;
  /// A view of the server's text: text-like types and json(b), and types
  /// pgq has no binary codec for (always sent as text). Numbers, dates and
  /// the like may arrive in binary format, so they are read as std::string
  /// (or their own type), never as a view.
  static bool accepts(oid t) noexcept;
  static void encode(const std::string_view& v, format, std::string& out) { out.append(v); }
  static std::string_view decode(value_view v);
};

/// A NUL-terminated string, encode only, so that string literals (decayed to
/// pointers) are parameters. A null pointer is invalid_value: use
/// std::optional for NULL.
template <>
struct codec<const char*> {
  static constexpr std::string_view cpp_name = "const char*";
  static constexpr oid param_oid = 0;
  static constexpr oid array_oid = oids::text_array;
  static constexpr format param_format = format::text;
  static bool accepts(oid) noexcept { return false; }
  static void encode(const char* const& v, format f, std::string& out);
};

/// A mutable C string, encode only, as `const char*`.
template <>
struct codec<char*> {
  static constexpr std::string_view cpp_name = "char*";
  static constexpr oid param_oid = 0;
  static constexpr oid array_oid = oids::text_array;
  static constexpr format param_format = format::text;
  static bool accepts(oid) noexcept { return false; }
  static void encode(char* const& v, format f, std::string& out) { codec<const char*>::encode(v, f, out); }
};

/// bytea as a byte vector. Text format is hex ("\x0a0b"); decoding also takes
/// the legacy escape format ("a\\b\000").
template <>
struct codec<std::vector<std::byte>> {
  static constexpr std::string_view cpp_name = "std::vector<std::byte>";
  static constexpr oid param_oid = oids::bytea;
  static constexpr oid array_oid = oids::bytea_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::bytea; }
  static void encode(const std::vector<std::byte>& v, format f, std::string& out);
  static std::vector<std::byte> decode(value_view v);
};

/// bytea, as std::vector<std::byte>.
template <>
struct codec<bytea> {
  static constexpr std::string_view cpp_name = "pgq::bytea";
  static constexpr oid param_oid = oids::bytea;
  static constexpr oid array_oid = oids::bytea_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::bytea; }
  static void encode(const bytea& v, format f, std::string& out) {
    codec<std::vector<std::byte>>::encode(v.data, f, out);
  }
  static bytea decode(value_view v) { return bytea(codec<std::vector<std::byte>>::decode(v)); }
};

/// numeric (oid 1700), exact. Sent as text; binary is numeric_send's form.
/// Decodes numeric and int2/int4/int8.
template <>
struct codec<numeric> {
  static constexpr std::string_view cpp_name = "pgq::numeric";
  static constexpr oid param_oid = oids::numeric;
  static constexpr oid array_oid = oids::numeric_array;
  static constexpr format param_format = format::text;
  static bool accepts(oid t) noexcept {
    return t == oids::numeric || t == oids::int2 || t == oids::int4 || t == oids::int8;
  }
  static void encode(const numeric& v, format f, std::string& out);
  static numeric decode(value_view v);
};

/// uuid (oid 2950): 16 bytes in binary, canonical lowercase text.
template <>
struct codec<uuid> {
  static constexpr std::string_view cpp_name = "pgq::uuid";
  static constexpr oid param_oid = oids::uuid;
  static constexpr oid array_oid = oids::uuid_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::uuid; }
  static void encode(const uuid& v, format f, std::string& out);
  static uuid decode(value_view v);
};

/// json and jsonb. Parameters are jsonb sent as text (compact dump()); the
/// binary encoding is jsonb's (version byte 1, then the text). Decoding
/// parses; malformed JSON is errc::invalid_value, and so is a document nested
/// deeper than `max_depth` arrays and objects: nlohmann::json prints, copies
/// and compares recursively, and a deeper document could overflow the stack
/// (the server's default limit lets jsonb nest about 10,000 deep). Defined in
/// lib/src/codecs/json.cpp.
template <>
struct codec<nlohmann::json> {
  static constexpr std::size_t max_depth = 1000;
  static constexpr std::string_view cpp_name = "nlohmann::json";
  static constexpr oid param_oid = oids::jsonb;
  static constexpr oid array_oid = oids::jsonb_array;
  static constexpr format param_format = format::text;
  static bool accepts(oid t) noexcept { return t == oids::json || t == oids::jsonb; }
  static void encode(const nlohmann::json& v, format f, std::string& out);
  static nlohmann::json decode(value_view v);
};

/// timestamptz. Binary is int64 microseconds since 2000-01-01 UTC; text is
/// ISO ("2024-02-29 13:45:01.123456+00", "... BC", "infinity"); decoding
/// takes any offset (+05:30, -08, +00:53:28; none means UTC). A value that
/// does not fit the 64-bit microsecond range after the epoch shift (years
/// beyond about 294000) is invalid_value.
template <>
struct codec<timestamptz> {
  static constexpr std::string_view cpp_name = "pgq::timestamptz";
  static constexpr oid param_oid = oids::timestamptz;
  static constexpr oid array_oid = oids::timestamptz_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::timestamptz; }
  static void encode(const timestamptz& v, format f, std::string& out);
  static timestamptz decode(value_view v);
};

/// timestamp without time zone, as timestamptz without an offset (an
/// offset in the text is ignored, as the server's timestamp_in does).
template <>
struct codec<timestamp> {
  static constexpr std::string_view cpp_name = "pgq::timestamp";
  static constexpr oid param_oid = oids::timestamp;
  static constexpr oid array_oid = oids::timestamp_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::timestamp; }
  static void encode(const timestamp& v, format f, std::string& out);
  static timestamp decode(value_view v);
};

/// system_clock::time_point as timestamptz. Encoding rounds down (floor) to
/// whole microseconds; decoding a value outside the nanosecond clock's
/// range (about 1677..2262) is invalid_value; infinities map to max()/min().
template <>
struct codec<std::chrono::system_clock::time_point> {
  static constexpr std::string_view cpp_name = "std::chrono::system_clock::time_point";
  static constexpr oid param_oid = oids::timestamptz;
  static constexpr oid array_oid = oids::timestamptz_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::timestamptz; }
  static void encode(const std::chrono::system_clock::time_point& v, format f, std::string& out);
  static std::chrono::system_clock::time_point decode(value_view v);
};

/// date. Binary is int32 days since 2000-01-01; text "2024-02-29",
/// "0044-03-15 BC" (astronomical year -43), "infinity". An invalid
/// year_month_day (!ok()) does not encode (invalid_value).
template <>
struct codec<date> {
  static constexpr std::string_view cpp_name = "pgq::date";
  static constexpr oid param_oid = oids::date;
  static constexpr oid array_oid = oids::date_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::date; }
  static void encode(const date& v, format f, std::string& out);
  static date decode(value_view v);
};

/// date as sys_days, which covers the server's whole date range;
/// max()/min() stand for 'infinity' / '-infinity'.
template <>
struct codec<std::chrono::sys_days> {
  static constexpr std::string_view cpp_name = "std::chrono::sys_days";
  static constexpr oid param_oid = oids::date;
  static constexpr oid array_oid = oids::date_array;
  static constexpr format param_format = format::binary;
  static bool accepts(oid t) noexcept { return t == oids::date; }
  static void encode(const std::chrono::sys_days& v, format f, std::string& out);
  static std::chrono::sys_days decode(value_view v);
};

/// One-dimensional arrays of any T with an array type. Sent as T[] in binary
/// when T's parameters are binary, else in text. Decoding takes both formats
/// (text: `{1,2,"a \"b\""}`, with an optional `[0:2]=` bounds prefix, which
/// is dropped); a NULL element is errc::unexpected_null (use
/// std::vector<std::optional<T>>); more than one dimension is invalid_value.
/// For T = std::string_view an element that had to be unescaped cannot be
/// viewed: that decode is invalid_value (use std::string).
template <detail::array_element T>
struct codec<std::vector<T>> {
  static constexpr std::string_view cpp_name =
      detail::wrapped_name<detail::vector_prefix, T, detail::vector_suffix>.view();
  static constexpr oid param_oid = codec<T>::array_oid;
  static constexpr oid array_oid = 0;  // no multi-dimensional arrays
  static constexpr format param_format = codec<T>::param_format;
  static bool accepts(oid t) noexcept { return detail::array_accepts(t, &codec<T>::accepts); }
  static void encode(const std::vector<T>& v, format f, std::string& out) {
    detail::array_encoder enc(f, codec<T>::array_oid, v.size(), out);
    for (const auto& e : v) {
      enc.begin_element();
      codec<T>::encode(e, f, out);
      enc.end_element();
    }
    enc.finish();
  }
  static std::vector<T> decode(value_view v) {
    std::vector<T> out;
    auto add = [&out](const value_view* e, bool transient) {
      if constexpr (std::same_as<T, std::string_view>)
        if (transient) detail::throw_transient_view(cpp_name);
      out.push_back(codec<T>::decode(*e));
    };
    detail::decode_array(v, &codec<T>::accepts, false, cpp_name, detail::element_sink::of(add));
    return out;
  }
};

/// One-dimensional arrays whose elements may be NULL (std::nullopt).
template <detail::array_element T>
struct codec<std::vector<std::optional<T>>> {
  static constexpr std::string_view cpp_name =
      detail::wrapped_name<detail::vector_optional_prefix, T, detail::vector_optional_suffix>.view();
  static constexpr oid param_oid = codec<T>::array_oid;
  static constexpr oid array_oid = 0;
  static constexpr format param_format = codec<T>::param_format;
  static bool accepts(oid t) noexcept { return detail::array_accepts(t, &codec<T>::accepts); }
  static void encode(const std::vector<std::optional<T>>& v, format f, std::string& out) {
    detail::array_encoder enc(f, codec<T>::array_oid, v.size(), out);
    for (const auto& e : v) {
      if (!e) {
        enc.null_element();
        continue;
      }
      enc.begin_element();
      codec<T>::encode(*e, f, out);
      enc.end_element();
    }
    enc.finish();
  }
  static std::vector<std::optional<T>> decode(value_view v) {
    std::vector<std::optional<T>> out;
    auto add = [&out](const value_view* e, bool transient) {
      if (!e) {
        out.emplace_back();
        return;
      }
      if constexpr (std::same_as<T, std::string_view>)
        if (transient) detail::throw_transient_view(cpp_name);
      out.emplace_back(codec<T>::decode(*e));
    };
    detail::decode_array(v, &codec<T>::accepts, true, cpp_name, detail::element_sink::of(add));
    return out;
  }
};

}  // namespace pgq
