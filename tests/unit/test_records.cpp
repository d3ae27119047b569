// Records and composites without a server: record_send's binary layout and
// record_out's text split into fields, rendered as to_json() renders them
// (expected JSON from PostgreSQL's to_json()), and malformed input refused
// with errc::invalid_value, never read past its end.
#include "codecs/record.hpp"
#include "type_catalog.hpp"

#include <catch2/catch.hpp>
#include <pgq/json.hpp>

#include <nlohmann/json.hpp>

#include <string>

using pgq::format;
using json = nlohmann::json;
namespace oids = pgq::oids;

namespace {

constexpr pgq::oid record_oid = 2249;

std::string be32(std::uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>(v >> (24 - 8 * i));
  return s;
}

// One field of a binary record: its type, its length (-1: NULL) and bytes.
std::string field(pgq::oid type, const std::string& bytes) {
  return be32(type) + be32(static_cast<std::uint32_t>(bytes.size())) + bytes;
}
std::string null_field(pgq::oid type) { return be32(type) + be32(0xFFFFFFFFu); }
std::string record(const std::vector<std::string>& fields) {
  std::string s = be32(static_cast<std::uint32_t>(fields.size()));
  for (const auto& f : fields) s += f;
  return s;
}

json binary(const std::string& bytes, const pgq::detail::type_catalog* cat = nullptr) {
  return pgq::detail::to_json_value({bytes, record_oid, format::binary}, cat);
}

// The errc value of the pgq::sql_error `f` throws; -1 for anything else.
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

const int invalid = static_cast<int>(pgq::errc::invalid_value);

// ROW(1, 'a', NULL)
const std::string row_1_a_null = record({field(oids::int4, be32(1)), field(oids::text, "a"), null_field(oids::text)});

}  // namespace

TEST_CASE("records: a binary anonymous record renders with keys f1..fN", "[records][json]") {
  CHECK(binary(row_1_a_null) == json::parse(R"~({"f1": 1, "f2": "a", "f3": null})~"));
  CHECK(binary(record({})) == json::object());
  // ROW(ROW(1, 2), ARRAY[ROW(3, 'x')]): a record and an array of records.
  const std::string inner = record({field(oids::int4, be32(1)), field(oids::int4, be32(2))});
  const std::string elem = record({field(oids::int4, be32(3)), field(oids::text, "x")});
  const std::string arr =
      be32(1) + be32(0) + be32(record_oid) + be32(1) + be32(1) + be32(static_cast<std::uint32_t>(elem.size())) + elem;
  const std::string outer = record({field(record_oid, inner), field(2287, arr)});
  CHECK(binary(outer) == json::parse(R"~({"f1": {"f1": 1, "f2": 2}, "f2": [{"f1": 3, "f2": "x"}]})~"));
  // Fields of other types as to_json() renders them: bool, jsonb, bytea.
  const std::string mixed = record({field(oids::bool_, std::string(1, '\1')), field(oids::jsonb, "\1{\"k\": [1]}"),
                                    field(oids::bytea, std::string("\x00\xff", 2))});
  CHECK(binary(mixed) == json::parse(R"~({"f1": true, "f2": {"k": [1]}, "f3": "\\x00ff"})~"));
}

TEST_CASE("records: malformed binary records are refused with invalid_value", "[records][json]") {
  // Every proper prefix of a good record is truncated somewhere.
  for (std::size_t n = 0; n < row_1_a_null.size(); ++n) {
    INFO("first " << n << " bytes");
    CHECK(thrown([&] { binary(row_1_a_null.substr(0, n)); }) == invalid);
  }
  CHECK(thrown([&] { binary(row_1_a_null + "x"); }) == invalid);                         // bytes after the last field
  CHECK(thrown([&] { binary(be32(4) + row_1_a_null.substr(4)); }) == invalid);           // more fields than bytes
  CHECK(thrown([&] { binary(be32(2) + row_1_a_null.substr(4)); }) == invalid);           // fewer fields than bytes
  CHECK(thrown([&] { binary(be32(0xFFFFFFFFu)); }) == invalid);                          // a negative count
  CHECK(thrown([&] { binary(be32(0x7FFFFFFFu) + std::string(64, '\0')); }) == invalid);  // a huge count
  CHECK(thrown([&] { binary(be32(1) + be32(oids::int4) + be32(0xFFFFFFFEu)); }) == invalid);  // length -2
  CHECK(thrown([&] { binary(be32(1) + be32(oids::int4) + be32(0x80000000u)); }) == invalid);  // INT32_MIN
  CHECK(thrown([&] { binary(be32(1) + be32(oids::int4) + be32(0x7FFFFFFFu) + "abcd"); }) == invalid);
  // A field's bytes are checked by its own type.
  CHECK(thrown([&] { binary(record({field(oids::int4, "abc")})); }) == invalid);
  // Records nested through their fields beyond pgq's limit: refused, no
  // stack exhaustion.
  std::string deep = record({});
  for (int i = 0; i < 200; ++i) deep = record({field(record_oid, deep)});
  CHECK(thrown([&] { binary(deep); }) == invalid);
  std::string fine = record({});
  for (int i = 0; i < 30; ++i) fine = record({field(record_oid, fine)});
  CHECK(binary(fine).is_object());
}

TEST_CASE("records: record_out text is split into fields with its quoting rules", "[records][json]") {
  using pgq::codecs::parse_text_record;
  auto fields = [](std::string_view s) { return parse_text_record({s, record_oid, format::text}); };
  using opt = std::optional<std::string>;
  CHECK(fields("(1,a,)") == std::vector<opt>{"1", "a", std::nullopt});
  CHECK(fields("()") == std::vector<opt>{});
  CHECK(fields("(,)") == std::vector<opt>{std::nullopt, std::nullopt});
  CHECK(fields(R"~(("a,b","x""y","",\,,"(1,\"2\")"))~") == std::vector<opt>{"a,b", "x\"y", "", ",", "(1,\"2\")"});
  CHECK(fields(R"~(("\\x0102"))~") == std::vector<opt>{"\\x0102"});
  for (std::string_view bad : {"", "1,a)", "(1,a", "(1,a)x", "(\"abc)", "(a\\", "(\"a\\"}) {
    INFO(bad);
    CHECK(thrown([&] { fields(bad); }) == invalid);
  }
  // Without a catalog entry the text's fields stay strings, named f1..fN.
  CHECK(pgq::to_json_value({"(1,a,)", record_oid, format::text}) ==
        json::parse(R"~({"f1": "1", "f2": "a", "f3": null})~"));
}

TEST_CASE("records: the catalog names composites and types their text fields", "[records][json]") {
  pgq::detail::type_catalog cat;
  using kind = pgq::detail::type_info::kind;
  const pgq::oid comp = 70000, comp_array = 70001, mood = 70002, posint = 70003;
  cat.types[comp] = {kind::composite, 0, {"a", "c", "d"}, {oids::int4, oids::numeric, oids::jsonb}};
  cat.types[comp_array] = {kind::array, comp, {}, {}};
  cat.types[mood] = {kind::enumeration, 0, {}, {}};
  cat.types[posint] = {kind::domain, oids::int4, {}, {}};
  auto text = [&cat](std::string_view s, pgq::oid t) { return pgq::detail::to_json_value({s, t, format::text}, &cat); };
  CHECK(text("(1,2.50,)", comp) == json::parse(R"~({"a": 1, "c": 2.50, "d": null})~"));
  CHECK(text(R"~((1,2.5,"{""x"": ""(,)""}"))~", comp) == json::parse(R"~({"a": 1, "c": 2.5, "d": {"x": "(,)"}})~"));
  CHECK(text(R"~({"(1,2,)",NULL,"(,,)"})~", comp_array) ==
        json::parse(R"~([{"a": 1, "c": 2, "d": null}, null, {"a": null, "c": null, "d": null}])~"));
  CHECK(text("not ok", mood) == "not ok");
  CHECK(text("5", posint) == 5);
  // A record whose field count no longer matches the catalog (the type was
  // altered since): f1..fN and strings rather than wrong names.
  CHECK(text("(1,2)", comp) == json::parse(R"~({"f1": "1", "f2": "2"})~"));
  // Binary: names from the catalog, types from the bytes.
  const std::string b = record({field(oids::int4, be32(1)), null_field(oids::numeric), null_field(oids::jsonb)});
  CHECK(pgq::detail::to_json_value({b, comp, format::binary}, &cat) ==
        json::parse(R"~({"a": 1, "c": null, "d": null})~"));
  CHECK(binary(b) == json::parse(R"~({"f1": 1, "f2": null, "f3": null})~"));
}
