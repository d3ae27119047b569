// to_json_value: what the server's to_json() gives, type by type, from text
// and binary values. Expected JSON comes from PostgreSQL 15's to_json().
#include <catch2/catch.hpp>
#include <cmath>
#include <pgq/json.hpp>
#include <string>

using pgq::format;
using pgq::to_json_value;
using json = nlohmann::json;
namespace oids = pgq::oids;

namespace {

std::string unhex(std::string_view h) {
  std::string out;
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(nib(h[i]) * 16 + nib(h[i + 1]));
  return out;
}

json text(std::string_view bytes, pgq::oid type) { return to_json_value({bytes, type, format::text}); }

json binary(std::string_view hex_bytes, pgq::oid type) {
  std::string b = unhex(hex_bytes);
  return to_json_value({b, type, format::binary});
}

template <class F>
int thrown(F&& f) {
  try {
    f();
  } catch (const pgq::sql_error& e) {
    return e.code().category() == pgq::client_category() ? e.code().value() : -1;
  } catch (...) {
    return -1;
  }
  return 0;
}

int code(pgq::errc e) { return static_cast<int>(e); }

}  // namespace

TEST_CASE("integers are JSON integers, oid is a string", "[json]") {
  CHECK(text("42", oids::int4) == 42);
  CHECK(text("42", oids::int4).is_number_integer());
  CHECK(text("-32768", oids::int2) == -32768);
  CHECK(text("9223372036854775807", oids::int8) == INT64_MAX);
  CHECK(binary("0000002a", oids::int4) == 42);
  CHECK(binary("8000000000000000", oids::int8) == INT64_MIN);
  // to_json(26::oid) is "26": oid is not in to_json's numeric category.
  CHECK(text("26", oids::oid_) == "26");
  CHECK(binary("0000001a", oids::oid_) == "26");
  CHECK(thrown([] { text("4x", oids::int4); }) == code(pgq::errc::invalid_value));
}

TEST_CASE("floats are numbers, NaN and infinities strings", "[json]") {
  CHECK(text("1.5", oids::float8) == 1.5);
  CHECK(text("1.5", oids::float8).is_number_float());
  CHECK(text("1e+100", oids::float8) == 1e100);
  CHECK(text("NaN", oids::float8) == "NaN");
  CHECK(text("Infinity", oids::float4) == "Infinity");
  CHECK(text("-Infinity", oids::float8) == "-Infinity");
  json nz = text("-0", oids::float8);
  REQUIRE(nz.is_number_float());
  CHECK(std::signbit(nz.get<double>()));
  // float4 1.1 is 1.1 in JSON, not the float's exact 1.100000023841858.
  CHECK(binary("3f8ccccd", oids::float4).dump() == "1.1");
  CHECK(text("1.1", oids::float4).dump() == "1.1");
  CHECK(binary("3ff8000000000000", oids::float8) == 1.5);
  CHECK(binary("7ff8000000000000", oids::float8) == "NaN");
  CHECK(binary("fff0000000000000", oids::float8) == "-Infinity");
}

TEST_CASE("numeric keeps its value: number when exact, else string", "[json]") {
  CHECK(text("123", oids::numeric) == 123);
  CHECK(text("123", oids::numeric).is_number_integer());
  CHECK(text("-9223372036854775808", oids::numeric) == INT64_MIN);
  json big_unsigned = text("18446744073709551615", oids::numeric);
  CHECK(big_unsigned.is_number_unsigned());
  CHECK(big_unsigned == UINT64_MAX);
  // Exact as a double: a number (trailing zeros of the scale are not kept).
  CHECK(text("123.4500", oids::numeric) == 123.45);
  CHECK(text("123.4500", oids::numeric).dump() == "123.45");
  CHECK(text("0.1", oids::numeric).dump() == "0.1");
  CHECK(text("-0.000000000000000000001", oids::numeric).dump() == "-1e-21");
  CHECK(text("123.00", oids::numeric).is_number_float());
  CHECK(text("123.00", oids::numeric) == 123.0);
  CHECK(text("100000000000000000000", oids::numeric).is_number_float());  // 1e20 is exact
  // Digits a double would change: the exact text as a string.
  CHECK(text("12345678901234567890.123456789", oids::numeric) == "12345678901234567890.123456789");
  CHECK(text("1234567890123456789012345678901234567890", oids::numeric) == "1234567890123456789012345678901234567890");
  CHECK(text("0.12345678901234567890123", oids::numeric) == "0.12345678901234567890123");
  CHECK(text("NaN", oids::numeric) == "NaN");
  CHECK(text("Infinity", oids::numeric) == "Infinity");
  CHECK(text("-Infinity", oids::numeric) == "-Infinity");
  CHECK(binary("0003000100000003000109291a7c", oids::numeric) == 12345.678);
  CHECK(binary("00000000c0000000", oids::numeric) == "NaN");
  CHECK(thrown([] { text("12..3", oids::numeric); }) == code(pgq::errc::invalid_value));
}

TEST_CASE("bool, json and jsonb", "[json]") {
  CHECK(text("t", oids::bool_) == true);
  CHECK(text("f", oids::bool_) == false);
  CHECK(binary("01", oids::bool_) == true);
  CHECK(text("{\"a\": [1, null]}", oids::jsonb) == json{{"a", {1, nullptr}}});
  CHECK(text("\"s\"", oids::json) == "s");
  CHECK(binary("017b2261223a20317d", oids::jsonb) == json{{"a", 1}});
  CHECK(binary("5b315d", oids::json) == json::array({1}));
  CHECK(thrown([] { text("{", oids::json); }) == code(pgq::errc::invalid_value));
}

TEST_CASE("timestamps in ISO 8601 with T and a full offset", "[json]") {
  CHECK(text("2024-02-29 13:45:01.123456+05:30", oids::timestamptz) == "2024-02-29T13:45:01.123456+05:30");
  CHECK(text("2024-02-29 13:45:01+00", oids::timestamptz) == "2024-02-29T13:45:01+00:00");
  CHECK(text("2024-02-29 05:45:01-08", oids::timestamptz) == "2024-02-29T05:45:01-08:00");
  CHECK(text("0044-03-15 00:00:00+05:53:28 BC", oids::timestamptz) == "0044-03-15T00:00:00+05:53:28 BC");
  CHECK(text("0044-03-15 12:00:00+00 BC", oids::timestamptz) == "0044-03-15T12:00:00+00:00 BC");
  CHECK(text("infinity", oids::timestamptz) == "infinity");
  CHECK(text("-infinity", oids::timestamp) == "-infinity");
  CHECK(text("2024-02-29 13:45:01.5", oids::timestamp) == "2024-02-29T13:45:01.5");
  CHECK(text("0044-03-15 12:00:00 BC", oids::timestamp) == "0044-03-15T12:00:00 BC");
  // A binary timestamptz carries no zone: shown in UTC.
  CHECK(binary("0000000000000000", oids::timestamptz) == "2000-01-01T00:00:00+00:00");
  CHECK(binary("0000000000000001", oids::timestamp) == "2000-01-01T00:00:00.000001");
  CHECK(binary("7fffffffffffffff", oids::timestamptz) == "infinity");
}

TEST_CASE("dates, bytea, uuid and other types as their text", "[json]") {
  CHECK(text("2024-02-29", oids::date) == "2024-02-29");
  CHECK(text("0044-03-15 BC", oids::date) == "0044-03-15 BC");
  CHECK(text("infinity", oids::date) == "infinity");
  CHECK(binary("00002279", oids::date) == "2024-02-29");
  CHECK(binary("80000000", oids::date) == "-infinity");
  CHECK(text("\\x0102", oids::bytea) == "\\x0102");
  CHECK(binary("0102", oids::bytea) == "\\x0102");
  CHECK(text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", oids::uuid) == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  CHECK(binary("a0eebc999c0b4ef8bb6d6bb9bd380a11", oids::uuid) == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  CHECK(text("1 day", oids::interval) == "1 day");
  CHECK(text("13:45:01+00", 1266) == "13:45:01+00");  // timetz stays as printed
  CHECK(text("hello", oids::text) == "hello");
  CHECK(binary("68c3a9", oids::varchar) == "h\xc3\xa9");
  CHECK(text("happy", 98765) == "happy");  // a user-defined type (an enum)
  CHECK(binary("0000000a0f029360", oids::time) == "12:00:01.5");
  CHECK(thrown([] { binary("3ff00000000000003ff0000000000000", 600); }) == code(pgq::errc::type_mismatch));
}

TEST_CASE("arrays become JSON arrays", "[json]") {
  CHECK(text("{1,NULL,3}", oids::int4_array) == json::array({1, nullptr, 3}));
  CHECK(text("{}", oids::int4_array) == json::array());
  CHECK(text("[0:2]={1,2,3}", oids::int4_array) == json::array({1, 2, 3}));
  CHECK(text("{{1,2},{3,4}}", oids::int4_array) == json::array({json::array({1, 2}), json::array({3, 4})}));
  CHECK(text("{{{1},{2}},{{3},{4}}}", oids::int8_array).dump() == "[[[1],[2]],[[3],[4]]]");
  CHECK(text(R"({a,"b c",NULL,"NULL","q\"x"})", oids::text_array) ==
        json::array({"a", "b c", nullptr, "NULL", "q\"x"}));
  CHECK(text("{1.50,NaN,12345678901234567890.1}", oids::numeric_array) ==
        json::array({1.5, "NaN", "12345678901234567890.1"}));
  CHECK(text("{t,f}", oids::bool_array) == json::array({true, false}));
  CHECK(text(R"({"{\"a\": 1}",NULL})", oids::jsonb_array) == json::array({json{{"a", 1}}, nullptr}));
  CHECK(text(R"({"2024-02-29 13:45:01+05:30",infinity})", oids::timestamptz_array) ==
        json::array({"2024-02-29T13:45:01+05:30", "infinity"}));
  CHECK(text(R"({"\\x01"})", oids::bytea_array) == json::array({"\\x01"}));
  CHECK(text("{NaN,-Infinity,0.5}", oids::float8_array) == json::array({"NaN", "-Infinity", 0.5}));
  // Binary: array_send(array[1,null]::int[]) and a 2x2 int4 array.
  CHECK(binary("00000001000000010000001700000002000000010000000400000001ffffffff", oids::int4_array) ==
        json::array({1, nullptr}));
  CHECK(binary("00000002000000000000001700000002000000010000000200000001"
               "0000000400000001000000040000000200000004000000030000000400000004",
               oids::int4_array) == json::array({json::array({1, 2}), json::array({3, 4})}));
  CHECK(binary("000000000000000000000017", oids::int4_array) == json::array());
  // An array type pgq does not know is left as text.
  CHECK(text("{x,y}", 98766) == "{x,y}");
  CHECK(thrown([] { text("{1,2", oids::int4_array); }) == code(pgq::errc::invalid_value));
  CHECK(thrown([] { text("{{1},{2,3}}", oids::int4_array); }) == code(pgq::errc::invalid_value));
}

TEST_CASE("json nested deeper than the codec's limit is refused, not parsed", "[json]") {
  constexpr std::size_t limit = pgq::codec<json>::max_depth;
  const auto nested = [](std::size_t depth, char open, char close) {
    return std::string(depth, open) + std::string(depth, close);
  };
  // At the limit: decoded and printed back.
  const std::string deepest = nested(limit, '[', ']');
  CHECK(text(deepest, oids::jsonb).dump() == deepest);
  const std::string objects = [&] {
    std::string s;
    for (std::size_t i = 0; i < limit; ++i) s += "{\"k\":";
    s += "1";
    s += std::string(limit, '}');
    return s;
  }();
  CHECK(text(objects, oids::json).dump() == objects);
  // One more level: a clear error naming the limit, in text and binary.
  const std::string too_deep = nested(limit + 1, '[', ']');
  CHECK(thrown([&] { text(too_deep, oids::jsonb); }) == static_cast<int>(pgq::errc::invalid_value));
  const std::string binary_deep = "\x01" + too_deep;
  CHECK(thrown([&] {
          to_json_value({binary_deep, oids::jsonb, format::binary});
        }) == static_cast<int>(pgq::errc::invalid_value));
  try {
    pgq::codec<json>::decode({too_deep, oids::jsonb, format::text});
    FAIL("a document deeper than the limit was parsed");
  } catch (const pgq::sql_error& e) {
    CHECK(std::string(e.what()).find("nested deeper than 1000 levels") != std::string::npos);
  }
  // Brackets inside strings (escaped quotes too) are not nesting.
  const std::string in_strings = "[\"" + std::string(limit + 5, '[') + "\\\"" + std::string(limit + 5, '{') + "\"]";
  CHECK(text(in_strings, oids::jsonb).at(0).get<std::string>().size() == 2 * (limit + 5) + 1);
}
