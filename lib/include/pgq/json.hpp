// pgq/json.hpp - values rendered as PostgreSQL's to_json() renders them.
#pragma once

#include <nlohmann/json.hpp>
#include <pgq/types.hpp>

namespace pgq {

/// The JSON that `to_json()` on the server gives for the non-NULL value `v`
/// (callers map NULL to JSON null), in text or binary format:
///   - int2/int4/int8: numbers. oid: a string, as to_json does.
///   - float4/float8: numbers; NaN, Infinity, -Infinity: those strings.
///   - numeric: a number when nlohmann::json can print it with its exact
///     decimal value (an integer that fits 64 bits, or a value whose
///     double prints back as the same decimal, trailing zeros aside:
///     123.4500 -> 123.45); otherwise the exact text as a string
///     ("12345678901234567890.123456789", "NaN"), since a double would
///     silently change the digits and nlohmann::json holds nothing wider.
///   - bool: true/false. json/jsonb: the document itself (object keys come
///     back sorted: nlohmann::json does not keep duplicate keys or order).
///   - timestamptz: "2024-02-29T13:45:01.123456+05:30" (ISO 8601 with T and
///     a +HH:MM offset; a binary value has no session zone and is shown in
///     UTC, +00:00); timestamp: "2024-02-29T13:45:01.123456"; BC values keep
///     their " BC" suffix; infinities are "infinity" / "-infinity".
///   - date, bytea ("\\x0102"), uuid and every other type: the text string.
///   - arrays of built-in types: JSON arrays, nested for more than one
///     dimension, NULL elements as null.
///   - record (anonymous, oid 2249) and record[]: objects keyed f1..fN, as
///     to_json() names an anonymous record's fields. A binary record
///     carries its field types, so each field is rendered by its type
///     ({"f1":1,"f2":"a","f3":null}); a text record does not, so its fields
///     are strings ({"f1":"1","f2":"a","f3":null}). Named composites (a
///     table's row type, CREATE TYPE ... AS) need their attribute names
///     and types from the catalog: field::to_json() of a result from
///     connection::query_params() or run_batch() has them (row_stream rows:
///     those their connection already looked up); this function does not (a text
///     composite stays its text, a binary one gets f1..fN).
///     Object keys come back sorted, as for json.
/// Throws sql_error: errc::invalid_value on malformed bytes (a truncated
/// record, a field length below -1, a field count the bytes cannot hold,
/// records and arrays nested deeper than 64 levels), errc::type_mismatch
/// for a binary value of a type pgq cannot render.
nlohmann::json to_json_value(value_view v);

}  // namespace pgq
