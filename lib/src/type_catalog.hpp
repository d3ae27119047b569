// type_catalog.hpp - what pgq learned from a server's catalog about types it
// has no codec for (composites, domains, enums, their arrays), and the JSON
// rendering that uses it. Private to lib/src; result_data holds one
// (see connection.cpp for how a connection fills it).
#pragma once

#include <pgq/types.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <unordered_map>
#include <vector>

namespace pgq::detail {

/// One type as pg_type and pg_attribute describe it.
struct type_info {
  enum class kind : char { other, composite, domain, enumeration, array };
  kind k = kind::other;
  /// domain: its base type; array: its element type.
  oid base = 0;
  /// composite: the attributes in attnum order, dropped ones left out (as
  /// record_send and record_out leave them out).
  std::vector<std::string> names;
  std::vector<oid> types;
};

/// An immutable map OID -> type_info. A connection replaces its catalog with
/// a larger copy when it learns new types; results share the one that was
/// current when they arrived, so readers need no lock.
struct type_catalog {
  std::unordered_map<oid, type_info> types;
  const type_info* find(oid t) const noexcept {
    auto it = types.find(t);
    return it == types.end() ? nullptr : &it->second;
  }
};

/// Whether pgq renders `t` without the catalog (a built-in scalar or array
/// type, or the anonymous record types): such types are never looked up.
bool known_without_catalog(oid t) noexcept;

/// to_json_value() with the names and types of `types` (may be null):
/// named composites become objects keyed by attribute name, domains render
/// as their base type, enums as strings. Without an entry a binary record
/// gets the keys f1..fN and a text record, whose field types the text does
/// not carry, strings under f1..fN (a named composite in text format without
/// an entry stays the string the server sent).
nlohmann::json to_json_value(value_view v, const type_catalog* types);

}  // namespace pgq::detail
