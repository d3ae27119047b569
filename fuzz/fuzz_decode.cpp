// libFuzzer target: every codec's text and binary decoder, and the JSON
// rendering of a value, on hostile bytes. Input: byte 0 picks the codec and
// type, byte 1 the format (bit 0), the rest is the value. Decoders may throw
// pgq::sql_error; anything else (a crash, a sanitizer report, another
// exception) is a bug.
#include <pgq/json.hpp>
#include <pgq/types.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace {

using decode_fn = void (*)(const pgq::value_view&);

template <class T>
void decode_as(const pgq::value_view& v) {
  (void)pgq::codec<T>::decode(v);
}

void decode_numeric(const pgq::value_view& v) {
  const pgq::numeric n = pgq::codec<pgq::numeric>::decode(v);
  (void)pgq::numeric(n.str());  // the canonical text parses back
}

struct target {
  pgq::oid type;
  decode_fn decode;
};

const target targets[] = {
    {pgq::oids::bool_, &decode_as<bool>},
    {pgq::oids::int2, &decode_as<std::int16_t>},
    {pgq::oids::int4, &decode_as<std::int32_t>},
    {pgq::oids::int8, &decode_as<std::int64_t>},
    {pgq::oids::int2, &decode_as<std::int64_t>},
    {pgq::oids::float4, &decode_as<float>},
    {pgq::oids::float8, &decode_as<double>},
    {pgq::oids::float4, &decode_as<double>},
    {pgq::oids::text, &decode_as<std::string>},
    {pgq::oids::varchar, &decode_as<std::string_view>},
    {pgq::oids::bytea, &decode_as<pgq::bytea>},
    {pgq::oids::bytea, &decode_as<std::vector<std::byte>>},
    {pgq::oids::numeric, &decode_numeric},
    {pgq::oids::uuid, &decode_as<pgq::uuid>},
    {pgq::oids::json, &decode_as<nlohmann::json>},
    {pgq::oids::jsonb, &decode_as<nlohmann::json>},
    {pgq::oids::timestamptz, &decode_as<pgq::timestamptz>},
    {pgq::oids::timestamp, &decode_as<pgq::timestamp>},
    {pgq::oids::timestamptz, &decode_as<std::chrono::system_clock::time_point>},
    {pgq::oids::date, &decode_as<pgq::date>},
    {pgq::oids::date, &decode_as<std::chrono::sys_days>},
    {pgq::oids::int4_array, &decode_as<std::vector<std::int32_t>>},
    {pgq::oids::int8_array, &decode_as<std::vector<std::optional<std::int64_t>>>},
    {pgq::oids::text_array, &decode_as<std::vector<std::string>>},
    {pgq::oids::text_array, &decode_as<std::vector<std::optional<std::string>>>},
    {pgq::oids::float8_array, &decode_as<std::vector<double>>},
    {pgq::oids::numeric_array, &decode_as<std::vector<pgq::numeric>>},
    {pgq::oids::bool_array, &decode_as<std::vector<bool>>},
    {pgq::oids::uuid_array, &decode_as<std::vector<pgq::uuid>>},
    {pgq::oids::timestamptz_array, &decode_as<std::vector<pgq::timestamptz>>},
    {pgq::oids::date_array, &decode_as<std::vector<pgq::date>>},
    {pgq::oids::bytea_array, &decode_as<std::vector<pgq::bytea>>},
    {pgq::oids::jsonb_array, &decode_as<std::vector<nlohmann::json>>},
};
constexpr std::size_t target_count = sizeof(targets) / sizeof(targets[0]);

// to_json_value covers every type pgq renders, also those without a codec.
const pgq::oid json_types[] = {
    pgq::oids::bool_,         pgq::oids::int2,           pgq::oids::int4,       pgq::oids::int8,
    pgq::oids::float4,        pgq::oids::float8,         pgq::oids::numeric,    pgq::oids::text,
    pgq::oids::bytea,         pgq::oids::uuid,           pgq::oids::json,       pgq::oids::jsonb,
    pgq::oids::date,          pgq::oids::time,           pgq::oids::timestamp,  pgq::oids::timestamptz,
    pgq::oids::interval,      pgq::oids::int4_array,     pgq::oids::text_array, pgq::oids::jsonb_array,
    pgq::oids::numeric_array, pgq::oids::float8_array,   pgq::oids::bool_array, pgq::oids::timestamptz_array,
    pgq::oids::bytea_array,   600 /* point: no codec */, 1790 /* refcursor */,  2249 /* record */,
    2287 /* record[] */,
};
constexpr std::size_t json_type_count = sizeof(json_types) / sizeof(json_types[0]);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t pick = data[0];
  const auto fmt = (data[1] & 1) != 0 ? pgq::format::binary : pgq::format::text;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  if (pick < target_count) {
    const target& t = targets[pick];
    try {
      t.decode(pgq::value_view{bytes, t.type, fmt});
    } catch (const pgq::sql_error&) {
      // a clear refusal is the right answer to bad bytes
    }
  } else {
    const pgq::oid type = json_types[(pick - target_count) % json_type_count];
    try {
      const nlohmann::json j = pgq::to_json_value(pgq::value_view{bytes, type, fmt});
      (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } catch (const pgq::sql_error&) {
    }
  }
  return 0;
}
