// Codecs: round trips in both formats, the server's exact wire bytes and
// text, and hostile input. Expected bytes and text come from a PostgreSQL 15
// server (e.g. `select numeric_send(12345.678)`).
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <optional>
#include <pgq/detail/params.hpp>
#include <pgq/json.hpp>
#include <pgq/types.hpp>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono;
using namespace std::string_literals;
using pgq::codec;
using pgq::errc;
using pgq::format;

namespace {

std::string unhex(std::string_view h) {
  std::string out;
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(nib(h[i]) * 16 + nib(h[i + 1]));
  return out;
}

std::string hex(std::string_view b) {
  constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (char c : b) {
    out += digits[static_cast<unsigned char>(c) >> 4];
    out += digits[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

template <class T>
std::string enc(const T& v, format f) {
  std::string out;
  codec<T>::encode(v, f, out);
  return out;
}

template <class T>
T dec(std::string_view bytes, pgq::oid type, format f) {
  return codec<T>::decode({bytes, type, f});
}

/// Encodes then decodes as the codec's own parameter type.
template <class T>
T round_trip(const T& v, format f, pgq::oid type = codec<T>::param_oid) {
  std::string bytes = enc(v, f);
  return dec<T>(bytes, type, f);
}

/// The pgq::errc a call throws, as an int (0: it did not throw sql_error,
/// -1: it threw something else), plus the message for checks on wording.
template <class F>
int thrown(F&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const pgq::sql_error& e) {
    if (message) *message = e.what();
    return e.code().category() == pgq::client_category() ? e.code().value() : -1;
  } catch (...) {
    return -1;
  }
  return 0;
}

int code(errc e) { return static_cast<int>(e); }

struct not_a_pg_type {};

}  // namespace

TEST_CASE("type names and array element types", "[codec]") {
  CHECK(pgq::type_name(pgq::oids::int4) == "int4");
  CHECK(pgq::type_name(pgq::oids::text) == "text");
  CHECK(pgq::type_name(pgq::oids::timestamptz) == "timestamptz");
  CHECK(pgq::type_name(pgq::oids::int4_array) == "int4[]");
  CHECK(pgq::type_name(pgq::oids::jsonb_array) == "jsonb[]");
  CHECK(pgq::type_name(12345) == "oid 12345");
  CHECK(pgq::array_element_oid(pgq::oids::text_array) == pgq::oids::text);
  CHECK(pgq::array_element_oid(pgq::oids::uuid_array) == pgq::oids::uuid);
  CHECK(pgq::array_element_oid(pgq::oids::int4) == 0);
  CHECK(pgq::array_element_oid(1020) == 0);  // box[]: ';'-separated, not walked
}

TEST_CASE("has_codec and decodable concepts", "[codec]") {
  CHECK(pgq::has_codec<std::int32_t>);
  CHECK(pgq::decodable<std::int32_t>);
  CHECK(pgq::has_codec<long long>);
  CHECK(pgq::decodable<long long>);
  CHECK(pgq::has_codec<const char*>);
  CHECK_FALSE(pgq::decodable<const char*>);
  CHECK(pgq::decodable<std::string_view>);
  CHECK(pgq::decodable<pgq::bytea>);
  CHECK(pgq::decodable<nlohmann::json>);
  CHECK(pgq::decodable<pgq::timestamptz>);
  CHECK(pgq::decodable<std::vector<std::optional<std::string>>>);
  CHECK(pgq::decodable<std::vector<pgq::bytea>>);
  CHECK(pgq::decodable<std::vector<std::vector<std::byte>>>);
  CHECK_FALSE(pgq::has_codec<not_a_pg_type>);
  CHECK_FALSE(pgq::has_codec<std::vector<not_a_pg_type>>);
  CHECK_FALSE(pgq::has_codec<std::vector<std::vector<int>>>);  // one dimension only
  CHECK_FALSE(pgq::has_codec<std::optional<int>>);             // NULL is the caller's
  // What a statement may bind: NULL (optional, nullopt) and string literals too.
  CHECK(pgq::encodable<std::int32_t>);
  CHECK(pgq::encodable<std::optional<std::string>>);
  CHECK(pgq::encodable<std::nullopt_t>);
  CHECK(pgq::encodable<char[6]>);
  CHECK(pgq::encodable<char*>);
  CHECK(pgq::encodable<std::vector<std::optional<pgq::uuid>>>);
  CHECK_FALSE(pgq::encodable<not_a_pg_type>);
  CHECK_FALSE(pgq::encodable<std::optional<not_a_pg_type>>);
  CHECK_FALSE(pgq::encodable<int[3]>);
}

TEST_CASE("bool", "[codec]") {
  CHECK(enc(true, format::text) == "t");
  CHECK(enc(false, format::text) == "f");
  CHECK(hex(enc(true, format::binary)) == "01");
  CHECK(hex(enc(false, format::binary)) == "00");
  for (format f : {format::text, format::binary}) {
    CHECK(round_trip(true, f) == true);
    CHECK(round_trip(false, f) == false);
  }
  for (const char* t : {"t", "true", "TRUE", "yes", "on", "1", " tr "}) CHECK(dec<bool>(t, 16, format::text));
  for (const char* t : {"f", "false", "no", "off", "0", "FA"}) CHECK_FALSE(dec<bool>(t, 16, format::text));
  CHECK(thrown([] { dec<bool>("maybe", 16, format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<bool>("o", 16, format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<bool>("\x01\x01", 16, format::binary); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<bool>("", 16, format::binary); }) == code(errc::invalid_value));
  std::string msg;
  CHECK(thrown([] { dec<bool>("1", pgq::oids::int4, format::text); }, &msg) == code(errc::type_mismatch));
  CHECK_THAT(msg, Catch::Contains("int4") && Catch::Contains("bool"));
}

TEST_CASE("integers: wire bytes and round trips", "[codec]") {
  CHECK(hex(enc(std::int32_t{42}, format::binary)) == "0000002a");
  CHECK(hex(enc(std::int16_t{-1}, format::binary)) == "ffff");
  CHECK(hex(enc(std::int64_t{1}, format::binary)) == "0000000000000001");
  CHECK(hex(enc(42LL, format::binary)) == "000000000000002a");
  CHECK(enc(std::int32_t{-42}, format::text) == "-42");
  for (format f : {format::text, format::binary}) {
    CHECK(round_trip(std::numeric_limits<std::int16_t>::min(), f) == INT16_MIN);
    CHECK(round_trip(std::numeric_limits<std::int16_t>::max(), f) == INT16_MAX);
    CHECK(round_trip(std::numeric_limits<std::int32_t>::min(), f) == INT32_MIN);
    CHECK(round_trip(std::numeric_limits<std::int32_t>::max(), f) == INT32_MAX);
    CHECK(round_trip(std::numeric_limits<std::int64_t>::min(), f) == INT64_MIN);
    CHECK(round_trip(std::numeric_limits<std::int64_t>::max(), f) == INT64_MAX);
    CHECK(round_trip(std::numeric_limits<long long>::min(), f) == LLONG_MIN);
    CHECK(round_trip(std::int32_t{0}, f) == 0);
  }
  CHECK(codec<long long>::param_oid == pgq::oids::int8);
  CHECK(codec<std::int16_t>::array_oid == pgq::oids::int2_array);
}

TEST_CASE("integers: widening, narrowing and range checks", "[codec]") {
  // Any integer type decodes into a wide enough C++ integer.
  CHECK(dec<std::int64_t>(unhex("ffff"), pgq::oids::int2, format::binary) == -1);
  CHECK(dec<std::int64_t>(unhex("0000002a"), pgq::oids::int4, format::binary) == 42);
  CHECK(dec<std::int16_t>("-32768", pgq::oids::int8, format::text) == -32768);
  CHECK(dec<std::int32_t>(unhex("000000000000002a"), pgq::oids::int8, format::binary) == 42);
  CHECK(dec<std::int64_t>(unhex("ffffffff"), pgq::oids::oid_, format::binary) == 4294967295);
  CHECK(dec<std::int64_t>("4294967295", pgq::oids::oid_, format::text) == 4294967295);
  CHECK(dec<std::int32_t>(" +42 ", pgq::oids::int4, format::text) == 42);

  std::string msg;
  CHECK(thrown([] { dec<std::int32_t>("2147483648", pgq::oids::int8, format::text); }, &msg) ==
        code(errc::invalid_value));
  CHECK_THAT(msg, Catch::Contains("2147483648") && Catch::Contains("int32"));
  CHECK(thrown([] { dec<std::int16_t>(unhex("00008000"), pgq::oids::int4, format::binary); }, &msg) ==
        code(errc::invalid_value));
  CHECK_THAT(msg, Catch::Contains("32768") && Catch::Contains("int16"));
  CHECK(thrown([] { dec<std::int32_t>("1", pgq::oids::oid_, format::text); }) == code(errc::type_mismatch));
  CHECK(thrown([] { dec<std::int32_t>("1", pgq::oids::text, format::text); }) == code(errc::type_mismatch));
  CHECK(thrown([] { dec<std::int64_t>("9223372036854775808", 20, format::text); }) == code(errc::invalid_value));
  for (const char* bad : {"", "12a", "1 2", "--1", "+-1", "0x10", "1.0"})
    CHECK(thrown([&] { dec<std::int32_t>(bad, pgq::oids::int4, format::text); }) == code(errc::invalid_value));
  // Truncated or overlong binary.
  CHECK(thrown([] { dec<std::int32_t>(unhex("00002a"), pgq::oids::int4, format::binary); }) ==
        code(errc::invalid_value));
  CHECK(thrown([] { dec<std::int64_t>(unhex("00000000002a"), pgq::oids::int8, format::binary); }) ==
        code(errc::invalid_value));
  CHECK(thrown([] { dec<std::int16_t>("", pgq::oids::int2, format::binary); }) == code(errc::invalid_value));
}

TEST_CASE("floats: server text, special values and round trips", "[codec]") {
  // float8out / float4out with the default extra_float_digits.
  CHECK(enc(0.1, format::text) == "0.1");
  CHECK(enc(1e15, format::text) == "1e+15");
  CHECK(enc(1e14, format::text) == "100000000000000");
  CHECK(enc(1e-5, format::text) == "1e-05");
  CHECK(enc(0.0001, format::text) == "0.0001");
  CHECK(enc(1.5e-7, format::text) == "1.5e-07");
  CHECK(enc(5e-324, format::text) == "5e-324");
  CHECK(enc(-0.0, format::text) == "-0");
  CHECK(enc(1234567.0f, format::text) == "1.234567e+06");
  CHECK(enc(100000.0f, format::text) == "100000");
  CHECK(enc(123456.7f, format::text) == "123456.7");
  CHECK(enc(3.4028235e38f, format::text) == "3.4028235e+38");
  CHECK(enc(std::numeric_limits<double>::quiet_NaN(), format::text) == "NaN");
  CHECK(enc(std::numeric_limits<double>::infinity(), format::text) == "Infinity");
  CHECK(enc(-std::numeric_limits<float>::infinity(), format::text) == "-Infinity");
  CHECK(hex(enc(1.5, format::binary)) == "3ff8000000000000");
  CHECK(hex(enc(1.5f, format::binary)) == "3fc00000");

  for (format f : {format::text, format::binary}) {
    for (double d : {0.1, -1.0 / 3, 1e300, 5e-324, std::numeric_limits<double>::max(),
                     std::numeric_limits<double>::lowest(), 1e15, 123456789012345.0})
      CHECK(round_trip(d, f) == d);
    for (float x :
         {0.1f, 1.1f, std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(), 1234567.0f})
      CHECK(round_trip(x, f) == x);
    CHECK(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN(), f)));
    CHECK(std::isnan(round_trip(std::numeric_limits<float>::quiet_NaN(), f)));
    CHECK(round_trip(std::numeric_limits<double>::infinity(), f) == std::numeric_limits<double>::infinity());
    CHECK(round_trip(-std::numeric_limits<double>::infinity(), f) == -std::numeric_limits<double>::infinity());
    double nz = round_trip(-0.0, f);
    CHECK(nz == 0.0);
    CHECK(std::signbit(nz));
  }
  // float8in's spellings.
  CHECK(dec<double>(" 1.5 ", pgq::oids::float8, format::text) == 1.5);
  CHECK(dec<double>("-inf", pgq::oids::float8, format::text) == -std::numeric_limits<double>::infinity());
  CHECK(dec<double>("+Infinity", pgq::oids::float8, format::text) == std::numeric_limits<double>::infinity());
  CHECK(std::isnan(dec<double>("nan", pgq::oids::float8, format::text)));
  CHECK(dec<double>("+2", pgq::oids::float8, format::text) == 2.0);
  for (const char* bad : {"", "1 1", "abc", "1e400", "--1", "1e", "0x10"})
    CHECK(thrown([&] { dec<double>(bad, pgq::oids::float8, format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<double>(unhex("3ff80000"), pgq::oids::float8, format::binary); }) == code(errc::invalid_value));
}

TEST_CASE("floats: reading other numeric types", "[codec]") {
  CHECK(dec<double>(unhex("3fc00000"), pgq::oids::float4, format::binary) == 1.5);
  CHECK(dec<double>(unhex("0000002a"), pgq::oids::int4, format::binary) == 42.0);
  CHECK(dec<double>("-7", pgq::oids::int8, format::text) == -7.0);
  CHECK(dec<double>("12345.678", pgq::oids::numeric, format::text) == 12345.678);
  CHECK(dec<double>(unhex("0003000100000003000109291a7c"), pgq::oids::numeric, format::binary) == 12345.678);
  CHECK(std::isnan(dec<double>(unhex("00000000c0000000"), pgq::oids::numeric, format::binary)));
  CHECK(dec<float>("1.1", pgq::oids::float8, format::text) == 1.1f);
  CHECK(thrown([] { dec<float>("1e300", pgq::oids::float8, format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<double>("1", pgq::oids::text, format::text); }) == code(errc::type_mismatch));
}

TEST_CASE("floats: a binary numeric reads as the same double as its text", "[codec]") {
  // Short numerics take a direct path (mantissa < 2^53, power of ten <= 22);
  // the others go through the text. Both must give the correctly rounded double.
  std::vector<std::string> texts = {"0",
                                    "1.5",
                                    "-1.5",
                                    "150000.0",
                                    "0.1",
                                    "0.3",
                                    "-0.0001",
                                    "123456789012345",
                                    "1234567890123456",
                                    "12345678901234567",
                                    "9007199254740993",
                                    "0.000000000001",
                                    "1e22",
                                    "1e23",
                                    "1e-22",
                                    "1e-23",
                                    "99999999.99999999",
                                    "3.141592653589793",
                                    "2.718281828459045235360287",
                                    "-12345.678",
                                    "1e300",
                                    "1e-300",
                                    "5e-324",
                                    "0.00000000000000000000000000001",
                                    "100000000000000000000000"};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string t = std::to_string(rng() % 1000000000000ULL);
    const auto point = static_cast<std::size_t>(rng() % (t.size() + 1));
    if (point < t.size()) t.insert(point, ".");
    if (rng() % 2 == 0) t.insert(0, "-");
    if (t.front() == '.' || (t.size() > 1 && t[0] == '-' && t[1] == '.')) t.insert(t.find('.'), "0");
    if (t.back() == '.') t.pop_back();
    texts.push_back(t);
  }
  for (const std::string& t : texts) {
    INFO("numeric " << t);
    const std::string binary = enc(pgq::numeric(t), format::binary);
    const double from_binary = dec<double>(binary, pgq::oids::numeric, format::binary);
    const double from_text = dec<double>(pgq::numeric(t).str(), pgq::oids::numeric, format::text);
    CHECK(std::bit_cast<std::uint64_t>(from_binary) == std::bit_cast<std::uint64_t>(from_text));
  }
}

TEST_CASE("strings: text, unicode and zero copy", "[codec]") {
  const std::string unicode = "h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89";
  for (format f : {format::text, format::binary}) {
    CHECK(round_trip(std::string{}, f, pgq::oids::text).empty());
    CHECK(round_trip(unicode, f, pgq::oids::text) == unicode);
    CHECK(round_trip(std::string("a\"b\\c,{}"), f, pgq::oids::varchar) == "a\"b\\c,{}");
  }
  CHECK(codec<std::string>::param_oid == 0);
  CHECK(codec<std::string>::array_oid == pgq::oids::text_array);
  std::string_view src = "zero copy";
  auto view = dec<std::string_view>(src, pgq::oids::text, format::binary);
  CHECK(view.data() == src.data());
  CHECK(view == "zero copy");
  CHECK(enc(std::string_view("sv"), format::text) == "sv");
  // Any type reads as its text in text format.
  CHECK(dec<std::string>("1 day", pgq::oids::interval, format::text) == "1 day");
  CHECK(dec<std::string_view>("(1,2)", 600, format::text) == "(1,2)");
  // A string literal is a parameter.
  const char* lit = "literal";
  CHECK(enc(lit, format::text) == "literal");
  char buf[] = "mutable";
  char* p = buf;
  CHECK(enc(p, format::text) == "mutable");
  CHECK(thrown([] { enc(static_cast<const char*>(nullptr), format::text); }) == code(errc::invalid_value));
}

TEST_CASE("strings: binary values rendered as the server prints them", "[codec]") {
  auto as_text = [](std::string_view hex_bytes, pgq::oid type) {
    return dec<std::string>(unhex(hex_bytes), type, format::binary);
  };
  CHECK(as_text("0000002a", pgq::oids::int4) == "42");
  CHECK(as_text("ffff", pgq::oids::int2) == "-1");
  CHECK(as_text("ffffffff", pgq::oids::oid_) == "4294967295");
  CHECK(as_text("01", pgq::oids::bool_) == "t");
  CHECK(as_text("3fb999999999999a", pgq::oids::float8) == "0.1");
  CHECK(as_text("3f8ccccd", pgq::oids::float4) == "1.1");
  CHECK(as_text("0003000100000003000109291a7c", pgq::oids::numeric) == "12345.678");
  CHECK(as_text("a0eebc999c0b4ef8bb6d6bb9bd380a11", pgq::oids::uuid) == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  CHECK(as_text("00002279", pgq::oids::date) == "2024-02-29");
  CHECK(as_text("7fffffff", pgq::oids::date) == "infinity");
  CHECK(as_text("0000000a0f029360", pgq::oids::time) == "12:00:01.5");
  CHECK(as_text("000000036c9361a0000000030000000e", pgq::oids::interval) == "1 year 2 mons 3 days 04:05:06.5");
  CHECK(as_text("00000001ad274800ffffffff00000000", pgq::oids::interval) == "-1 days +02:00:00");
  CHECK(as_text("000000000000000000000000fffffff2", pgq::oids::interval) == "-1 years -2 mons");
  CHECK(as_text("00000000000000000000000000000000", pgq::oids::interval) == "00:00:00");
  CHECK(as_text("0000000b867d5140ffffb2a8", 1266) == "13:45:01+05:30");
  CHECK(as_text("0000000b867d514000007080", 1266) == "13:45:01-08");
  CHECK(as_text("0000000000000000", pgq::oids::timestamp) == "2000-01-01 00:00:00");
  CHECK(as_text("0000000000000000", pgq::oids::timestamptz) == "2000-01-01 00:00:00+00");
  CHECK(as_text("fd0f7cc1411fa000", pgq::oids::timestamp) == "4714-11-24 00:00:00 BC");
  CHECK(as_text("7fffff5bb3b29fff", pgq::oids::timestamp) == "294276-12-31 23:59:59.999999");
  CHECK(as_text("00ff", pgq::oids::bytea) == "\\x00ff");
  CHECK(as_text("017b7d", pgq::oids::jsonb) == "{}");
  CHECK(as_text("61", pgq::oids::char_) == "a");
  CHECK(as_text("e9", pgq::oids::char_) == "\\351");
  CHECK(as_text("000000010000000100000019000000040000000100000001610000000361206200000000"
                "ffffffff",
                pgq::oids::text_array) == "{a,\"a b\",\"\",NULL}");
  CHECK(as_text("0000000100000000000000170000000300000000000000040000000100000004000000020000000400"
                "000003",
                pgq::oids::int4_array) == "[0:2]={1,2,3}");
  CHECK(as_text("00000002000000000000001700000002000000010000000200000001"
                "00000004000000010000000400000002000000040000000300000004"
                "00000004",
                pgq::oids::int4_array) == "{{1,2},{3,4}}");
  CHECK(thrown([] { dec<std::string>(unhex("0000000100000000"), 600, format::binary); }) == code(errc::type_mismatch));
  CHECK(thrown([] { dec<std::string_view>(unhex("0000002a"), pgq::oids::int4, format::binary); }) ==
        code(errc::type_mismatch));
  CHECK(dec<std::string_view>(unhex("017b7d"), pgq::oids::jsonb, format::binary) == "{}");
}

TEST_CASE("bytea: hex, escape format and embedded NULs", "[codec]") {
  const pgq::bytea b(std::string_view("\x00\x01\xff\x00z", 5));
  CHECK(b.size() == 5);
  CHECK(enc(b, format::text) == "\\x0001ff007a");
  CHECK(enc(b, format::binary) == std::string("\x00\x01\xff\x00z", 5));
  for (format f : {format::text, format::binary}) {
    CHECK(round_trip(b, f) == b);
    CHECK(round_trip(pgq::bytea{}, f) == pgq::bytea{});
    auto v = round_trip(b.data, f);
    CHECK(v == b.data);
  }
  CHECK(dec<pgq::bytea>("\\x 01 02", pgq::oids::bytea, format::text) == pgq::bytea("\x01\x02"));
  CHECK(dec<pgq::bytea>("\\xABcd", pgq::oids::bytea, format::text) == pgq::bytea("\xab\xcd"));
  // The legacy escape format: \\ and \ooo.
  CHECK(dec<pgq::bytea>("a\\\\b\\001\\000", pgq::oids::bytea, format::text) ==
        pgq::bytea(std::string_view("a\\b\x01\x00", 5)));
  for (const char* bad : {"\\x0", "\\xzz", "\\9", "a\\", "\\400"})
    CHECK(thrown([&] { dec<pgq::bytea>(bad, pgq::oids::bytea, format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<pgq::bytea>("abc", pgq::oids::text, format::text); }) == code(errc::type_mismatch));
  CHECK(pgq::bytea("a") < pgq::bytea("b"));
  CHECK(pgq::bytea("ab") > pgq::bytea("a"));
}

TEST_CASE("numeric: canonical text", "[codec]") {
  CHECK(pgq::numeric().str() == "0");
  CHECK(pgq::numeric("-123.4500").str() == "-123.4500");
  CHECK(pgq::numeric("1.50e1").str() == "15.0");
  CHECK(pgq::numeric("1e-3").str() == "0.001");
  CHECK(pgq::numeric("1E3").str() == "1000");
  CHECK(pgq::numeric(".5").str() == "0.5");
  CHECK(pgq::numeric("5.").str() == "5");
  CHECK(pgq::numeric("-0").str() == "0");
  CHECK(pgq::numeric(" -0.00 ").str() == "0.00");
  CHECK(pgq::numeric("+0012").str() == "12");
  CHECK(pgq::numeric(" nan ").str() == "NaN");
  CHECK(pgq::numeric("+inf").str() == "Infinity");
  CHECK(pgq::numeric("-Infinity").str() == "-Infinity");
  CHECK(pgq::numeric(INT64_MIN).str() == "-9223372036854775808");
  CHECK(pgq::numeric(UINT64_MAX).str() == "18446744073709551615");
  CHECK(pgq::numeric(42) == pgq::numeric("42"));
  CHECK(pgq::numeric("1.50") != pgq::numeric("1.5"));
  CHECK(pgq::numeric("NaN").is_nan());
  CHECK(pgq::numeric("-inf").is_infinite());
  CHECK(pgq::numeric("-123.45").to_double() == -123.45);
  CHECK(std::isnan(pgq::numeric("NaN").to_double()));
  CHECK(pgq::numeric("-Infinity").to_double() == -std::numeric_limits<double>::infinity());
  for (const char* bad : {"", "abc", "1.2.3", "1e", "--1", "1 2", "e5", ".", "0x10", "1e1001"})
    CHECK(thrown([&] { pgq::numeric n(bad); }) == code(errc::invalid_value));
}

TEST_CASE("numeric: binary wire format", "[codec]") {
  auto bin = [](const char* text) { return hex(enc(pgq::numeric(text), format::binary)); };
  // ndigits, weight, sign, dscale, base-10000 digits (numeric_send).
  CHECK(bin("12345.678") == "0003000100000003000109291a7c");
  CHECK(bin("0.000") == "0000000000000003");
  CHECK(bin("NaN") == "00000000c0000000");
  CHECK(bin("Infinity") == "00000000d0000000");
  CHECK(bin("-Infinity") == "00000000f0000000");
  CHECK(bin("-0.000000000000000000001") == "0001fffa4000001503e8");
  CHECK(bin("10000") ==
        "0001000100000000"
        "0001");
  const char* values[] = {"12345.678",
                          "0",
                          "-0",
                          "0.00",
                          "NaN",
                          "Infinity",
                          "-Infinity",
                          "0.000000000000000000001",
                          "-0.000000000000000000001",
                          "1234567890123456789012345678901234567890",
                          "1234567890123456789012345678901234567890.0123456789",
                          "-99999999999999999999.99999999999999999999",
                          "10000",
                          "0.0001",
                          "9999.9999",
                          "100000000",
                          "0.1000"};
  for (const char* t : values) {
    pgq::numeric n(t);
    for (format f : {format::text, format::binary}) CHECK(round_trip(n, f).str() == n.str());
  }
  CHECK(dec<pgq::numeric>(unhex("000000000000000a"), pgq::oids::numeric, format::binary).str() == "0.0000000000");
  CHECK(dec<pgq::numeric>(unhex("0000002a"), pgq::oids::int4, format::binary).str() == "42");
  CHECK(dec<pgq::numeric>("-5", pgq::oids::int8, format::text).str() == "-5");
  CHECK(codec<pgq::numeric>::param_format == format::text);
  // Hostile binary.
  for (const char* bad : {"000100000000", "0001000000000000", "00010000000000002710", "0001000012340000000a",
                          "0000000000004000", "000000000000ffff"})
    CHECK(thrown([&] { dec<pgq::numeric>(unhex(bad), pgq::oids::numeric, format::binary); }) ==
          code(errc::invalid_value));
  CHECK(thrown([] { dec<pgq::numeric>("1.5x", pgq::oids::numeric, format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<pgq::numeric>("1.5", pgq::oids::float8, format::text); }) == code(errc::type_mismatch));
}

TEST_CASE("uuid: the forms uuid_in accepts", "[codec]") {
  const auto u = pgq::uuid::parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  CHECK(u.bytes[0] == 0xa0);
  CHECK(u.bytes[15] == 0x11);
  CHECK(u.to_string() == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  for (const char* form : {"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
                           "a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
                           "{a0eebc999c0b4ef8bb6d6bb9bd380a11}"})
    CHECK(pgq::uuid::parse(form) == u);
  for (const char* bad :
       {"", "a0eebc99", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
        "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-", "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"})
    CHECK(thrown([&] { pgq::uuid::parse(bad); }) == code(errc::invalid_value));
  CHECK(hex(enc(u, format::binary)) == "a0eebc999c0b4ef8bb6d6bb9bd380a11");
  for (format f : {format::text, format::binary}) CHECK(round_trip(u, f) == u);
  CHECK(pgq::uuid{} < u);
  CHECK(thrown([] { dec<pgq::uuid>(unhex("a0eebc99"), pgq::oids::uuid, format::binary); }) ==
        code(errc::invalid_value));
  CHECK(thrown([] { dec<pgq::uuid>("xyz", pgq::oids::uuid, format::text); }) == code(errc::invalid_value));
}

TEST_CASE("json and jsonb codec", "[codec]") {
  const nlohmann::json doc = {{"a", 1}, {"b", {true, nullptr, "\xc3\xa9"}}};
  CHECK(codec<nlohmann::json>::param_oid == pgq::oids::jsonb);
  CHECK(codec<nlohmann::json>::param_format == format::text);
  CHECK(enc(doc, format::text) == doc.dump());
  CHECK(enc(doc, format::binary) == "\x01" + doc.dump());
  for (format f : {format::text, format::binary}) {
    CHECK(round_trip(doc, f) == doc);
    CHECK(round_trip(nlohmann::json(42), f) == 42);
  }
  CHECK(dec<nlohmann::json>("[1, 2]", pgq::oids::json, format::binary) == nlohmann::json({1, 2}));
  CHECK(dec<nlohmann::json>("\"x\"", pgq::oids::json, format::text) == "x");
  CHECK(thrown([] { dec<nlohmann::json>("{bad", pgq::oids::jsonb, format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<nlohmann::json>("\x02{}", pgq::oids::jsonb, format::binary); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<nlohmann::json>("", pgq::oids::jsonb, format::binary); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<nlohmann::json>("{}", pgq::oids::text, format::text); }) == code(errc::type_mismatch));
  CHECK(thrown([] { enc(nlohmann::json("\xff"), format::text); }) == code(errc::invalid_value));
}

TEST_CASE("timestamptz", "[codec]") {
  const pgq::timestamptz y2k = sys_days(2000y / January / 1);
  CHECK(hex(enc(y2k, format::binary)) == "0000000000000000");
  const pgq::timestamptz t = sys_days(2024y / February / 29) + 13h + 45min + 1s + 123456us;
  CHECK(enc(t, format::text) == "2024-02-29 13:45:01.123456+00");
  CHECK(enc(pgq::timestamptz(sys_days(2024y / February / 29) + 13h + 500ms), format::text) ==
        "2024-02-29 13:00:00.5+00");
  CHECK(enc(y2k, format::text) == "2000-01-01 00:00:00+00");
  auto tz = [](const char* text) { return dec<pgq::timestamptz>(text, pgq::oids::timestamptz, format::text); };
  CHECK(tz("2024-02-29 13:45:01.123456+00") == t);
  CHECK(tz("2024-02-29 19:15:01.123456+05:30") == t);
  CHECK(tz("2024-02-29 05:45:01.123456-08") == t);
  CHECK(tz("2024-02-29 13:45:01.123456+00:00:00") == t);
  CHECK(tz("2024-02-29T13:45:01.123456Z") == t);
  CHECK(tz("2024-02-29 14:38:29.123456+00:53:28") == t);
  CHECK(tz("2024-02-29 13:45:01.1234564+00") == t);  // rounded to the microsecond
  CHECK(tz("2024-02-29 13:45:01.1234565+00") == t + 1us);
  // BC: year 44 BC is astronomical year -43.
  const pgq::timestamptz bc = sys_days(year(-43) / March / 15) + 12h;
  CHECK(enc(bc, format::text) == "0044-03-15 12:00:00+00 BC");
  CHECK(tz("0044-03-15 12:00:00+00 BC") == bc);
  CHECK(tz("0044-03-15 12:53:28+00:53:28 BC") == bc);
  CHECK(tz("infinity") == pgq::timestamptz::max());
  CHECK(tz("-infinity") == pgq::timestamptz::min());
  CHECK(enc(pgq::timestamptz::max(), format::text) == "infinity");
  CHECK(enc(pgq::timestamptz::min(), format::text) == "-infinity");
  CHECK(hex(enc(pgq::timestamptz::max(), format::binary)) == "7fffffffffffffff");
  CHECK(hex(enc(pgq::timestamptz::min(), format::binary)) == "8000000000000000");
  for (format f : {format::text, format::binary})
    for (auto v : {t, y2k, bc, pgq::timestamptz::max(), pgq::timestamptz::min(),
                   pgq::timestamptz(sys_days(1969y / December / 31) + 23h + 59min + 59s + 999999us),
                   pgq::timestamptz(sys_days(year(-4713) / November / 24))})
      CHECK(round_trip(v, f) == v);
  for (const char* bad :
       {"", "2024-02-30 00:00:00+00", "2023-02-29 00:00:00+00", "2024-13-01 00:00:00+00", "0000-01-01 00:00:00+00",
        "2024-02-29 25:00:00+00", "2024-02-29 13:45:01+16", "2024-02-29 13:45:01+005", "yesterday",
        "2024-02-29 13:60:00+00", "2024-02-29 13:45:01+00 XX"})
    CHECK(thrown([&] { tz(bad); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<pgq::timestamptz>(unhex("00000000000000"), 1184, format::binary); }) ==
        code(errc::invalid_value));
  // Valid for the server, beyond sys_time<microseconds> after the 2000 epoch shift.
  CHECK(thrown([] { dec<pgq::timestamptz>(unhex("7fffff5bb3b29fff"), 1184, format::binary); }) ==
        code(errc::invalid_value));
  CHECK(thrown([] { dec<pgq::timestamptz>("2024-01-01", pgq::oids::timestamp, format::text); }) ==
        code(errc::type_mismatch));
}

TEST_CASE("timestamp without time zone", "[codec]") {
  const pgq::timestamp t = local_days(2024y / February / 29) + 13h + 45min + 1s + 123456us;
  CHECK(enc(t, format::text) == "2024-02-29 13:45:01.123456");
  CHECK(hex(enc(pgq::timestamp(local_days(2000y / January / 1)), format::binary)) == "0000000000000000");
  const pgq::timestamp bc = local_days(year(-4713) / November / 24);
  CHECK(hex(enc(bc, format::binary)) == "fd0f7cc1411fa000");
  CHECK(enc(bc, format::text) == "4714-11-24 00:00:00 BC");
  CHECK(dec<pgq::timestamp>("4714-11-24 00:00:00 BC", pgq::oids::timestamp, format::text) == bc);
  CHECK(dec<pgq::timestamp>("2024-02-29 13:45:01.123456", pgq::oids::timestamp, format::text) == t);
  CHECK(dec<pgq::timestamp>("2024-02-29 13:45:01.123456+05", pgq::oids::timestamp, format::text) == t);
  CHECK(dec<pgq::timestamptz>("2024-02-29 13:45:01.123456", pgq::oids::timestamptz, format::text) ==
        pgq::timestamptz(t.time_since_epoch()));
  CHECK(dec<pgq::timestamp>("2024-02-29 24:00:00", pgq::oids::timestamp, format::text) ==
        pgq::timestamp(local_days(2024y / March / 1)));
  CHECK(dec<pgq::timestamp>("10000-01-01 00:00:00", pgq::oids::timestamp, format::text) ==
        pgq::timestamp(local_days(year(10000) / January / 1)));
  for (format f : {format::text, format::binary})
    for (auto v : {t, bc, pgq::timestamp::max(), pgq::timestamp::min()}) CHECK(round_trip(v, f) == v);
  CHECK(thrown([] { dec<pgq::timestamp>("2024-02-29 24:00:01", pgq::oids::timestamp, format::text); }) ==
        code(errc::invalid_value));
}

TEST_CASE("system_clock::time_point as timestamptz", "[codec]") {
  using tp = system_clock::time_point;
  const tp t = sys_days(2024y / February / 29) + 13h + 1234567ns;
  // Floor to the microsecond, also before 1970.
  CHECK(round_trip(t, format::binary) == sys_days(2024y / February / 29) + 13h + 1234us);
  CHECK(round_trip(tp(-1ns), format::binary) == tp(-1us));
  CHECK(enc(t, format::text) == "2024-02-29 13:00:00.001234+00");
  CHECK(round_trip(tp::max(), format::binary) == tp::max());
  CHECK(round_trip(tp::min(), format::text) == tp::min());
  CHECK(thrown([] { dec<tp>("3000-01-01 00:00:00+00", 1184, format::text); }) == code(errc::invalid_value));
}

TEST_CASE("date", "[codec]") {
  const pgq::date leap = 2024y / February / 29;
  CHECK(enc(leap, format::text) == "2024-02-29");
  CHECK(hex(enc(leap, format::binary)) == "00002279");
  CHECK(hex(enc(pgq::date(2000y / January / 1), format::binary)) == "00000000");
  const pgq::date bc = year(-43) / March / 15;
  CHECK(enc(bc, format::text) == "0044-03-15 BC");
  CHECK(dec<pgq::date>("0044-03-15 BC", pgq::oids::date, format::text) == bc);
  CHECK(dec<pgq::date>("0001-01-01 BC", pgq::oids::date, format::text) == year(0) / January / 1);
  const pgq::date inf = year::max() / December / 31, ninf = year::min() / January / 1;
  CHECK(enc(inf, format::text) == "infinity");
  CHECK(hex(enc(inf, format::binary)) == "7fffffff");
  CHECK(hex(enc(ninf, format::binary)) == "80000000");
  CHECK(dec<pgq::date>("-infinity", pgq::oids::date, format::text) == ninf);
  for (format f : {format::text, format::binary})
    for (auto v : {leap, bc, inf, ninf, pgq::date(1970y / January / 1), pgq::date(1900y / March / 1)})
      CHECK(round_trip(v, f) == v);
  // 5874897-12-31, the server's last date: fine as sys_days, not as year_month_day.
  CHECK(thrown([] { dec<pgq::date>(unhex("7fda970c"), pgq::oids::date, format::binary); }) ==
        code(errc::invalid_value));
  const auto far = dec<sys_days>(unhex("7fda970c"), pgq::oids::date, format::binary);
  CHECK(enc(far, format::text) == "5874897-12-31");
  CHECK(dec<sys_days>("5874897-12-31", pgq::oids::date, format::text) == far);
  CHECK(round_trip(sys_days::max(), format::binary) == sys_days::max());
  CHECK(enc(sys_days::min(), format::text) == "-infinity");
  CHECK(round_trip(sys_days(2024y / February / 29), format::text) == sys_days(2024y / February / 29));
  for (const char* bad : {"2023-02-29", "2024-02-30", "0000-01-01", "2024-1-", "2024-01-01 BCE", "x"})
    CHECK(thrown([&] { dec<pgq::date>(bad, pgq::oids::date, format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { enc(pgq::date(2023y / February / 29), format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { enc(sys_days(days(INT64_MAX - 1)), format::text); }) == code(errc::invalid_value));
  CHECK(thrown([] { enc(sys_days(days(INT64_MIN + 1)), format::binary); }) == code(errc::invalid_value));
  CHECK(thrown([] { dec<pgq::date>(unhex("000000"), pgq::oids::date, format::binary); }) == code(errc::invalid_value));
}

TEST_CASE("arrays: metadata and acceptance", "[codec]") {
  using ints = std::vector<std::int32_t>;
  CHECK(codec<ints>::param_oid == pgq::oids::int4_array);
  CHECK(codec<ints>::param_format == format::binary);
  CHECK(codec<std::vector<std::string>>::param_oid == pgq::oids::text_array);
  CHECK(codec<std::vector<std::string>>::param_format == format::text);
  CHECK(codec<ints>::cpp_name == "std::vector<int32>");
  CHECK(codec<std::vector<std::optional<std::string>>>::cpp_name == "std::vector<std::optional<std::string>>");
  CHECK(codec<ints>::accepts(pgq::oids::int4_array));
  CHECK(codec<ints>::accepts(pgq::oids::int8_array));
  CHECK_FALSE(codec<ints>::accepts(pgq::oids::int4));
  CHECK_FALSE(codec<ints>::accepts(pgq::oids::text_array));
  CHECK(codec<std::vector<std::string>>::accepts(pgq::oids::int4_array));
  CHECK(codec<std::vector<std::string>>::accepts(98765));  // a user-defined array type
  CHECK_FALSE(codec<std::vector<std::string>>::accepts(pgq::oids::text));
}

TEST_CASE("arrays: binary wire format", "[codec]") {
  using opt_ints = std::vector<std::optional<std::int32_t>>;
  // array_send(array[1,null]::int[])
  const std::string one_null = unhex("00000001000000010000001700000002000000010000000400000001ffffffff");
  CHECK(enc(opt_ints{1, std::nullopt}, format::binary) == one_null);
  CHECK(dec<opt_ints>(one_null, pgq::oids::int4_array, format::binary) == opt_ints{1, std::nullopt});
  // array_send('{}'::int[])
  CHECK(hex(enc(std::vector<std::int32_t>{}, format::binary)) == "000000000000000000000017");
  CHECK(
      dec<std::vector<std::int32_t>>(unhex("000000000000000000000017"), pgq::oids::int4_array, format::binary).empty());
  CHECK(hex(enc(std::vector<std::string>{}, format::binary)) == "000000000000000000000019");
  // Elements of another integer type decode with range checks.
  CHECK(dec<std::vector<std::int64_t>>(unhex("00000001000000000000001700000001000000010000000400000007"),
                                       pgq::oids::int4_array, format::binary) == std::vector<std::int64_t>{7});
  std::string msg;
  CHECK(thrown([&] { dec<std::vector<std::int32_t>>(one_null, pgq::oids::int4_array, format::binary); }, &msg) ==
        code(errc::unexpected_null));
  CHECK_THAT(msg, Catch::Contains("element 2"));
  // The element type in the header is checked.
  CHECK(thrown([&] { dec<std::vector<pgq::uuid>>(one_null, pgq::oids::uuid_array, format::binary); }) ==
        code(errc::type_mismatch));
  // std::string elements render a binary array's elements.
  CHECK(dec<std::vector<std::optional<std::string>>>(one_null, pgq::oids::int4_array, format::binary) ==
        std::vector<std::optional<std::string>>{"1", std::nullopt});
  // A view of binary elements is zero copy.
  const std::string texts = enc(std::vector<std::string>{"ab", "c"}, format::binary);
  auto views = dec<std::vector<std::string_view>>(texts, pgq::oids::text_array, format::binary);
  REQUIRE(views.size() == 2);
  CHECK(views[1] == "c");
  CHECK(views[1].data() >= texts.data());
  CHECK(views[1].data() < texts.data() + texts.size());
}

TEST_CASE("arrays: hostile binary input", "[codec]") {
  using ints = std::vector<std::optional<std::int32_t>>;
  auto bad = [](const char* h) { return thrown([&] { dec<ints>(unhex(h), pgq::oids::int4_array, format::binary); }); };
  CHECK(bad("") == code(errc::invalid_value));
  CHECK(bad("00000001000000") == code(errc::invalid_value));                                        // short header
  CHECK(bad("ffffffff0000000000000017") == code(errc::invalid_value));                              // ndim -1
  CHECK(bad("000000070000000000000017") == code(errc::invalid_value));                              // ndim 7
  CHECK(bad("000000010000000200000017000000010000000100000004") == code(errc::invalid_value));      // flags 2
  CHECK(bad("0000000100000000000000170000000000000001ffff") == code(errc::invalid_value));          // trailing
  CHECK(bad("000000010000000000000017ffffffff00000001") == code(errc::invalid_value));              // dim -1
  CHECK(bad("0000000100000000000000177fffffff00000001") == code(errc::invalid_value));              // huge dim
  CHECK(bad("00000001000000000000001700000001000000017fffffff") == code(errc::invalid_value));      // huge len
  CHECK(bad("00000001000000000000001700000001000000010000000400") == code(errc::invalid_value));    // short elem
  CHECK(bad("00000001000000000000001700000001000000018000000000") == code(errc::invalid_value));    // len < -1
  CHECK(bad("000000010000000000000017000000010000000100000002ffff") == code(errc::invalid_value));  // int4 of 2 bytes
  // Two dimensions do not fit a vector.
  CHECK(bad("0000000200000000000000170000000100000001000000010000000100000004"
            "00000001") == code(errc::invalid_value));
}

namespace {

void put_be32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xFF);
}

/// A binary int4[] whose one element claims, in its header, to be an int4[]
/// again, `levels` arrays deep, the innermost holding the int4 7: what no
/// server sends, written outside in so that building it stays linear.
std::string nested_binary_array(int levels) {
  std::string out;
  out.reserve(static_cast<std::size_t>(levels) * 24 + 4);
  for (int level = levels; level >= 1; --level) {
    put_be32(out, 1);                                                                  // ndim
    put_be32(out, 0);                                                                  // flags
    put_be32(out, level > 1 ? pgq::oids::int4_array : pgq::oids::int4);                // element type
    put_be32(out, 1);                                                                  // length
    put_be32(out, 1);                                                                  // lower bound
    put_be32(out, level > 1 ? static_cast<std::uint32_t>(24 * (level - 1) + 4) : 4u);  // element bytes
  }
  put_be32(out, 7);
  return out;
}

}  // namespace

TEST_CASE("arrays: element types nested beyond the limit are refused, not followed", "[codec]") {
  constexpr int limit = pgq::detail::max_array_nesting;
  REQUIRE(limit == 6);
  const auto render = [](const std::string& bytes) {
    return pgq::detail::render_text({bytes, pgq::oids::int4_array, format::binary});
  };
  const auto json = [](const std::string& bytes) {
    return pgq::to_json_value({bytes, pgq::oids::int4_array, format::binary});
  };
  // Within the limit the bytes are followed (as array_out would print them).
  CHECK(render(nested_binary_array(1)) == "{7}");
  CHECK(render(nested_binary_array(2)) == "{\"{7}\"}");
  CHECK(json(nested_binary_array(2)).dump() == "[[7]]");
  // At the limit the quoting (doubled at every level) stays small.
  CHECK(render(nested_binary_array(limit)).size() < 1000);
  CHECK(json(nested_binary_array(limit)).dump() == "[[[[[[7]]]]]]");
  // One level more, and a depth that would overflow the stack if followed.
  for (int levels : {limit + 1, 64, 200'000}) {
    INFO(levels);
    const std::string bytes = nested_binary_array(levels);
    std::string message;
    CHECK(thrown([&] { render(bytes); }, &message) == code(errc::invalid_value));
    CHECK_THAT(message, Catch::Contains("int4[]") && Catch::Contains("deeper than 6 levels"));
    CHECK(thrown([&] { json(bytes); }, &message) == code(errc::invalid_value));
    CHECK_THAT(message, Catch::Contains("deeper than 6 levels"));
  }
}

TEST_CASE("parameters: more than 2 GiB is refused before a byte is read", "[codec][params]") {
  const char small[4] = {'a', 'b', 'c', 'd'};
  // A view that claims more than INT_MAX bytes over a 4-byte buffer: reading
  // it would crash (ASan) or send garbage; the size check comes first.
  const std::size_t huge = pgq::detail::max_param_bytes + 1;
  const std::string_view lying(small, huge);
  pgq::detail::param_set p;
  p.add(std::int32_t{1});
  std::string message;
  CHECK(thrown([&] { p.add(lying); }, &message) == code(errc::invalid_value));
  CHECK_THAT(message, Catch::Contains("parameter $2") && Catch::Contains(std::to_string(huge) + " bytes") &&
                          Catch::Contains("2147483647"));
  // The set is as it was: the refused parameter left nothing behind.
  CHECK(p.size() == 1);
  p.add(std::string_view("next"));
  REQUIRE(p.size() == 2);
  CHECK(std::string_view(p.value(1), static_cast<std::size_t>(p.lengths()[1])) == "next");
  // Exactly at the limit is not refused by the check (not encoded here: 2 GiB).
  CHECK(pgq::detail::max_param_bytes == static_cast<std::size_t>(std::numeric_limits<int>::max()));
}

TEST_CASE("parameters: at most 65535 per statement", "[codec][params]") {
  pgq::detail::param_set p;
  for (int i = 0; i < pgq::detail::max_param_count; ++i) p.add_null(0);
  CHECK_NOTHROW(pgq::detail::check_param_count(p));
  p.add(std::int32_t{1});
  std::string message;
  CHECK(thrown([&] { pgq::detail::check_param_count(p); }, &message) == code(errc::invalid_value));
  CHECK_THAT(message, Catch::Contains("65535") && Catch::Contains("65536"));
  CHECK_NOTHROW(pgq::detail::check_param_count(pgq::detail::make_params(1, "two", 3.0)));
}

TEST_CASE("arrays: text format and the server's quoting", "[codec]") {
  using strs = std::vector<std::optional<std::string>>;
  const strs tricky{"", std::nullopt, "NULL", "a\"b", "a\\b", "{x}", " s", "\xc3\xa9", "a,b", "null"};
  // As array_out prints array['',null,'NULL','a"b','a\b','{x}',' s','é','a,b','null'].
  const std::string server = R"({"",NULL,"NULL","a\"b","a\\b","{x}"," s",)"
                             "\xc3\xa9"
                             R"(,"a,b","null"})";
  CHECK(enc(tricky, format::text) == server);
  CHECK(dec<strs>(server, pgq::oids::text_array, format::text) == tricky);
  for (format f : {format::text, format::binary}) CHECK(round_trip(tricky, f, pgq::oids::text_array) == tricky);
  CHECK(enc(std::vector<std::int32_t>{1, -2, 3}, format::text) == "{1,-2,3}");
  CHECK(enc(std::vector<std::int32_t>{}, format::text) == "{}");
  CHECK(dec<std::vector<std::int32_t>>("{}", pgq::oids::int4_array, format::text).empty());
  CHECK(dec<std::vector<std::int32_t>>("[0:2]={1,2,3}", pgq::oids::int4_array, format::text) ==
        std::vector<std::int32_t>{1, 2, 3});
  CHECK(dec<std::vector<std::string>>("{ a b , \"c\" ,d\\ }", pgq::oids::text_array, format::text) ==
        std::vector<std::string>{"a b", "c", "d "});
  CHECK(dec<std::vector<std::string>>("{\\NULL,\"NULL\"}", pgq::oids::text_array, format::text) ==
        std::vector<std::string>{"NULL", "NULL"});
  CHECK(dec<std::vector<std::string>>("{mood_a,mood_b}", 98765, format::text) ==
        std::vector<std::string>{"mood_a", "mood_b"});
  // Elements in their own text format.
  CHECK(enc(std::vector<pgq::bytea>{pgq::bytea("\x01")}, format::text) == R"({"\\x01"})");
  CHECK(dec<std::vector<pgq::bytea>>(R"({"\\x01",\\x02})", pgq::oids::bytea_array, format::text) ==
        std::vector<pgq::bytea>{pgq::bytea("\x01"), pgq::bytea("\x02")});
  CHECK(enc(std::vector<double>{std::numeric_limits<double>::quiet_NaN(), -0.0, 1e100}, format::text) ==
        "{NaN,-0,1e+100}");
  CHECK(enc(std::vector<pgq::timestamptz>{sys_days(2000y / January / 1)}, format::text) ==
        R"({"2000-01-01 00:00:00+00"})");
  CHECK(enc(std::vector<bool>{true, false}, format::text) == "{t,f}");
  CHECK(dec<std::vector<pgq::numeric>>("{1.50,NaN,-3}", pgq::oids::numeric_array, format::text) ==
        std::vector<pgq::numeric>{pgq::numeric("1.50"), pgq::numeric("NaN"), pgq::numeric(-3)});
  // NULL into a non-optional element.
  CHECK(thrown([] { dec<std::vector<std::int32_t>>("{1,NULL}", pgq::oids::int4_array, format::text); }) ==
        code(errc::unexpected_null));
  // A view cannot point at an unescaped copy.
  CHECK(dec<std::vector<std::string_view>>("{a,\"b c\"}", pgq::oids::text_array, format::text) ==
        std::vector<std::string_view>{"a", "b c"});
  CHECK(thrown([] { dec<std::vector<std::string_view>>(R"({"a\"b"})", pgq::oids::text_array, format::text); }) ==
        code(errc::invalid_value));
}

TEST_CASE("arrays: round trips of every element type", "[codec]") {
  for (format f : {format::text, format::binary}) {
    CAPTURE(static_cast<int>(f));
    std::vector<std::optional<std::int64_t>> i64{INT64_MIN, std::nullopt, INT64_MAX};
    CHECK(round_trip(i64, f) == i64);
    std::vector<std::int16_t> i16{INT16_MIN, 0, INT16_MAX};
    CHECK(round_trip(i16, f) == i16);
    std::vector<long long> ll{1, -1};
    CHECK(round_trip(ll, f) == ll);
    std::vector<bool> bools{true, false, true};
    CHECK(round_trip(bools, f) == bools);
    std::vector<float> floats{1.5f, -0.25f, std::numeric_limits<float>::infinity()};
    CHECK(round_trip(floats, f) == floats);
    std::vector<double> doubles{0.1, -1e300};
    CHECK(round_trip(doubles, f) == doubles);
    std::vector<pgq::numeric> nums{pgq::numeric("0.000000000000000000001"), pgq::numeric("NaN"),
                                   pgq::numeric("-123.4500")};
    CHECK(round_trip(nums, f) == nums);
    std::vector<pgq::uuid> uuids{pgq::uuid::parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), pgq::uuid{}};
    CHECK(round_trip(uuids, f) == uuids);
    std::vector<std::optional<pgq::bytea>> blobs{pgq::bytea(std::string_view("\0\x01", 2)), std::nullopt, pgq::bytea{}};
    CHECK(round_trip(blobs, f) == blobs);
    std::vector<std::vector<std::byte>> raw{{std::byte{0}, std::byte{255}}};
    CHECK(round_trip(raw, f) == raw);
    std::vector<nlohmann::json> docs{nlohmann::json{{"k", "v \"q\""}}, nlohmann::json::array()};
    CHECK(round_trip(docs, f) == docs);
    std::vector<pgq::timestamptz> tss{sys_days(year(-43) / March / 15) + 1us, pgq::timestamptz::max()};
    CHECK(round_trip(tss, f) == tss);
    std::vector<pgq::timestamp> lts{local_days(2024y / February / 29) + 1h};
    CHECK(round_trip(lts, f) == lts);
    std::vector<pgq::date> dates{2024y / February / 29, year(-43) / March / 15};
    CHECK(round_trip(dates, f) == dates);
    std::vector<sys_days> days{sys_days(2024y / February / 29)};
    CHECK(round_trip(days, f) == days);
    std::vector<std::string> strings{"", "x y", "\xe6\x97\xa5"};
    CHECK(round_trip(strings, f) == strings);
  }
  const char* lits[] = {"a", "b c"};
  CHECK(enc(std::vector<const char*>(std::begin(lits), std::end(lits)), format::text) == R"({a,"b c"})");
}

TEST_CASE("arrays: malformed text", "[codec]") {
  for (const char* bad : {"", "1,2", "{1,2", "{1,,2}", "{,}", "{1}x", "{\"a}", "{a\"b\"}", "{{1,2},{3,4}}", "[1:2]={1}",
                          "[1:2]{1,2}", "{a{b}", "{1 2,}", "[a]={1}"}) {
    CAPTURE(bad);
    CHECK(thrown([&] { dec<std::vector<std::string>>(bad, pgq::oids::text_array, format::text); }) ==
          code(errc::invalid_value));
  }
  CHECK(thrown([] { dec<std::vector<std::int32_t>>("{1,x}", pgq::oids::int4_array, format::text); }) ==
        code(errc::invalid_value));
  CHECK(thrown([] { dec<std::vector<std::int32_t>>("{1}", pgq::oids::text_array, format::text); }) ==
        code(errc::type_mismatch));
}
