// Error messages of the codecs, and the table of the types pgq can name.
#include "codecs/common.hpp"

#include <string>

namespace pgq::codecs {
namespace {

struct type_entry {
  oid id;
  const char* name;
};

// From pg_catalog.pg_type of PostgreSQL 15 (base, range and multirange
// types, plus the pseudo-types a result column can have).
// clang-format off
constexpr type_entry scalar_types[] = {
    {16, "bool"}, {17, "bytea"}, {18, "char"}, {19, "name"}, {20, "int8"}, {21, "int2"},
    {22, "int2vector"}, {23, "int4"}, {24, "regproc"}, {25, "text"}, {26, "oid"}, {27, "tid"},
    {28, "xid"}, {29, "cid"}, {30, "oidvector"}, {114, "json"}, {142, "xml"}, {194, "pg_node_tree"},
    {600, "point"}, {601, "lseg"}, {602, "path"}, {603, "box"}, {604, "polygon"}, {628, "line"},
    {650, "cidr"}, {700, "float4"}, {701, "float8"}, {705, "unknown"}, {718, "circle"},
    {774, "macaddr8"}, {790, "money"}, {829, "macaddr"}, {869, "inet"}, {1033, "aclitem"},
    {1042, "bpchar"}, {1043, "varchar"}, {1082, "date"}, {1083, "time"}, {1114, "timestamp"},
    {1184, "timestamptz"}, {1186, "interval"}, {1266, "timetz"}, {1560, "bit"}, {1562, "varbit"},
    {1700, "numeric"}, {1790, "refcursor"}, {2202, "regprocedure"}, {2203, "regoper"},
    {2204, "regoperator"}, {2205, "regclass"}, {2206, "regtype"}, {2249, "record"},
    {2275, "cstring"}, {2278, "void"}, {2950, "uuid"}, {2970, "txid_snapshot"}, {3220, "pg_lsn"},
    {3361, "pg_ndistinct"}, {3402, "pg_dependencies"}, {3614, "tsvector"}, {3615, "tsquery"},
    {3642, "gtsvector"}, {3734, "regconfig"}, {3769, "regdictionary"}, {3802, "jsonb"},
    {3904, "int4range"}, {3906, "numrange"}, {3908, "tsrange"}, {3910, "tstzrange"},
    {3912, "daterange"}, {3926, "int8range"}, {4072, "jsonpath"}, {4089, "regnamespace"},
    {4096, "regrole"}, {4191, "regcollation"}, {4451, "int4multirange"}, {4532, "nummultirange"},
    {4533, "tsmultirange"}, {4534, "tstzmultirange"}, {4535, "datemultirange"},
    {4536, "int8multirange"}, {5038, "pg_snapshot"}, {5069, "xid8"},
};
// clang-format on

struct array_entry {
  oid array;
  oid element;
};

// Array type -> element type. box[] (1020) is left out on purpose: its
// elements are separated by ';', which the text parser does not handle.
// clang-format off
constexpr array_entry array_types[] = {
    {143, 142}, {199, 114}, {271, 5069}, {629, 628}, {651, 650}, {719, 718}, {775, 774}, {791, 790},
    {1000, 16}, {1001, 17}, {1002, 18}, {1003, 19}, {1005, 21}, {1006, 22}, {1007, 23}, {1008, 24},
    {1009, 25}, {1010, 27}, {1011, 28}, {1012, 29}, {1013, 30}, {1014, 1042}, {1015, 1043},
    {1016, 20}, {1017, 600}, {1018, 601}, {1019, 602}, {1021, 700}, {1022, 701}, {1027, 604},
    {1028, 26}, {1034, 1033}, {1040, 829}, {1041, 869}, {1115, 1114}, {1182, 1082}, {1183, 1083},
    {1185, 1184}, {1187, 1186}, {1231, 1700}, {1263, 2275}, {1270, 1266}, {1561, 1560},
    {1563, 1562}, {2201, 1790}, {2207, 2202}, {2208, 2203}, {2209, 2204}, {2210, 2205},
    {2211, 2206}, {2287, 2249}, {2949, 2970}, {2951, 2950}, {3221, 3220}, {3643, 3614},
    {3644, 3642}, {3645, 3615}, {3735, 3734}, {3770, 3769}, {3807, 3802}, {3905, 3904},
    {3907, 3906}, {3909, 3908}, {3911, 3910}, {3913, 3912}, {3927, 3926}, {4073, 4072},
    {4090, 4089}, {4097, 4096}, {4192, 4191}, {5039, 5038}, {6150, 4451}, {6151, 4532},
    {6152, 4533}, {6153, 4534}, {6155, 4535}, {6157, 4536},
};
// clang-format on

}  // namespace

/// A bad value, shown safely: printable ASCII as is, the rest escaped, long
/// input cut (messages end up in logs; hostile bytes must not).
std::string snippet(std::string_view bytes, format fmt) {
  constexpr std::size_t max_text = 48, max_binary = 24;
  constexpr char hex[] = "0123456789abcdef";
  std::string s;
  if (fmt == format::binary) {
    s = "\\x";
    for (std::size_t i = 0; i < bytes.size() && i < max_binary; ++i) {
      auto b = static_cast<unsigned char>(bytes[i]);
      s += hex[b >> 4];
      s += hex[b & 15];
    }
    if (bytes.size() > max_binary) s += "... (" + std::to_string(bytes.size()) + " bytes)";
    return s;
  }
  // Appended, not assigned: GCC 12 at -O3 reports a false -Wrestrict on
  // assigning a literal here.
  s += '"';
  for (std::size_t i = 0; i < bytes.size() && i < max_text; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '"' || c == '\\') {
      s += '\\';
      s += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      s += static_cast<char>(c);
    } else {
      s += "\\x";
      s += hex[c >> 4];
      s += hex[c & 15];
    }
  }
  s += '"';
  if (bytes.size() > max_text) s += "... (" + std::to_string(bytes.size()) + " bytes)";
  return s;
}

const char* format_name(format f) { return f == format::binary ? "binary" : "text"; }

/// "invalid <type> value (<fmt>, expected <what>): <bytes>"
[[noreturn]] void throw_invalid(value_view v, std::string_view what) {
  throw sql_error(errc::invalid_value, "invalid " + type_name(v.type) + " value (" + format_name(v.fmt) +
                                           ", expected " + std::string(what) + "): " + snippet(v.bytes, v.fmt));
}

[[noreturn]] void throw_out_of_range(value_view v, std::string_view shown, std::string_view cpp_name) {
  throw sql_error(errc::invalid_value, "value " + std::string(shown) + " of type " + type_name(v.type) +
                                           " is out of range for " + std::string(cpp_name));
}

[[noreturn]] void throw_encode(std::string_view cpp_name, std::string_view what) {
  throw sql_error(errc::invalid_value, "cannot encode " + std::string(cpp_name) + ": " + std::string(what));
}

const char* scalar_name(oid t) {
  for (const auto& e : scalar_types)
    if (e.id == t) return e.name;
  return nullptr;
}

bool is_text_like(oid t) {
  switch (t) {
    case oids::text:
    case oids::varchar:
    case oids::bpchar:
    case oids::name:
    case oids::unknown:
    case oids::json:
    case oids::xml:
    case oids::char_: return true;
    default: return false;
  }
}

}  // namespace pgq::codecs

namespace pgq {
using namespace codecs;

std::string type_name(oid type) {
  if (const char* n = scalar_name(type)) return n;
  if (oid e = array_element_oid(type)) return type_name(e) + "[]";
  if (type == 1020) return "box[]";
  return "oid " + std::to_string(type);
}

oid array_element_oid(oid array_type) noexcept {
  for (const auto& e : array_types)
    if (e.array == array_type) return e.element;
  return 0;
}

namespace detail {

void throw_type_mismatch(oid type, std::string_view cpp_name) {
  throw sql_error(errc::type_mismatch,
                  "cannot read a value of type " + type_name(type) + " as " + std::string(cpp_name));
}

}  // namespace detail

}  // namespace pgq
