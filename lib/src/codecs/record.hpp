// codecs/record.hpp - the wire formats of record and composite values
// (record_send / record_out), read without knowing the type. Private to
// lib/src (json.cpp renders records with it); pure, so the unit tests and
// fuzz/fuzz_decode build it alone.
#pragma once

#include <pgq/types.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace pgq::codecs {

/// The server's limit on a row's columns (MaxTupleAttributeNumber): no
/// record holds more fields.
inline constexpr std::size_t max_record_fields = 1664;

/// One field of a binary record: its type (from the bytes) and its value,
/// a view into the record's bytes; `null` for SQL NULL.
struct binary_record_field {
  oid type = 0;
  bool null = true;
  value_view value;
};

/// record_send's layout: int32 field count, then per field int32 type OID,
/// int32 length (-1 = NULL) and that many bytes. Throws
/// sql_error(errc::invalid_value) for a negative or impossible count (more
/// than max_record_fields, or more than the bytes can hold), a length below
/// -1, a value running past the end, or bytes after the last field; never
/// reads outside `v.bytes`.
std::vector<binary_record_field> parse_binary_record(value_view v);

/// record_out's text, "(1,a,,\"b c\")": fields between parentheses separated
/// by commas; an empty unquoted field is NULL; a field may be quoted
/// ("..." with "" or \" for a quote and \\ for a backslash) or hold
/// backslash escapes. Returns the unescaped field texts, nullopt for NULL.
/// Throws sql_error(errc::invalid_value) for anything else.
std::vector<std::optional<std::string>> parse_text_record(value_view v);

}  // namespace pgq::codecs
