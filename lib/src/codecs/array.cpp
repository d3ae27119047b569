// One-dimensional array codecs (text and binary), and the array walkers
// that rendering and JSON use for any number of dimensions.
#include "codecs/common.hpp"

#include <string>
#include <vector>

namespace pgq::codecs {

using detail::array_shape;

namespace {

/// array_in's grammar: an optional "[lb:ub]..." = prefix, nested braces,
/// elements quoted ("...", backslash escapes) or not (NULL is a NULL unless
/// quoted or escaped; surrounding spaces dropped).
class text_array_parser {
 public:
  text_array_parser(value_view v, oid element_type, int max_dims, detail::element_sink sink)
      : v_(v), s_(v.bytes), elem_type_(element_type), max_dims_(max_dims), sink_(sink) {}

  array_shape parse() {
    array_shape shape;
    shape.element_type = elem_type_;
    skip_space();
    std::vector<int> declared_len, declared_lb;
    while (peek() == '[') {
      ++i_;
      std::int64_t lb = 1, ub;
      if (!signed_number(ub)) fail("a dimension such as [1:3]");
      if (peek() == ':') {
        ++i_;
        lb = ub;
        if (!signed_number(ub)) fail("a dimension such as [1:3]");
      }
      if (peek() != ']' || ub < lb - 1 || ub - lb + 1 > INT32_MAX || lb < INT32_MIN || lb > INT32_MAX)
        fail("a dimension such as [1:3]");
      ++i_;
      declared_len.push_back(static_cast<int>(ub - lb + 1));
      declared_lb.push_back(static_cast<int>(lb));
      if (declared_len.size() > static_cast<std::size_t>(max_array_dims)) fail("at most 6 dimensions");
    }
    if (!declared_len.empty()) {
      skip_space();
      if (peek() != '=') fail("'=' after the dimensions");
      ++i_;
      skip_space();
    }
    if (peek() != '{') fail("'{'");
    level(0);
    skip_space();
    if (i_ != s_.size()) fail("nothing after the closing '}'");
    if (ndims_ < 0) ndims_ = 0;  // '{}'
    lengths_.resize(static_cast<std::size_t>(ndims_));
    if (!declared_len.empty() && (declared_len != lengths_)) fail("dimensions matching the elements");
    shape.lengths = lengths_;
    shape.lower_bounds = declared_lb.empty() ? std::vector<int>(lengths_.size(), 1) : declared_lb;
    return shape;
  }

 private:
  [[noreturn]] void fail(std::string_view what) { throw_invalid(v_, "an array literal: " + std::string(what)); }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() {
    while (i_ < s_.size() && is_space(s_[i_])) ++i_;
  }
  bool signed_number(std::int64_t& v) {
    bool neg = false;
    if (peek() == '-' || peek() == '+') neg = s_[i_++] == '-';
    std::size_t start = i_;
    v = 0;
    while (i_ < s_.size() && is_digit(s_[i_]) && i_ - start < 10) v = v * 10 + (s_[i_++] - '0');
    if (neg) v = -v;
    return i_ > start;
  }

  // At a '{' of nesting depth `depth`.
  void level(int depth) {
    ++i_;
    int count = 0;
    skip_space();
    if (peek() == '}') {
      ++i_;
      if (depth > 0) fail("no empty sub-array");
      return;
    }
    for (;;) {
      skip_space();
      if (peek() == '{') {
        if (depth + 1 >= max_dims_)
          fail(max_dims_ == 1 ? "one dimension (multi-dimensional arrays are not supported here)"
                              : "at most 6 dimensions");
        if (ndims_ >= 0 && depth + 1 >= ndims_) fail("sub-arrays of the same depth");
        level(depth + 1);
      } else {
        if (ndims_ < 0) ndims_ = depth + 1;
        if (ndims_ != depth + 1) fail("sub-arrays of the same depth");
        element();
      }
      ++count;
      skip_space();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() == '}') {
        ++i_;
        break;
      }
      fail("',' or '}'");
    }
    if (lengths_.size() <= static_cast<std::size_t>(depth)) lengths_.resize(static_cast<std::size_t>(depth) + 1, -1);
    auto& len = lengths_[static_cast<std::size_t>(depth)];
    if (len < 0) len = count;
    else if (len != count) fail("sub-arrays of the same length");
  }

  void element() {
    bool escaped = false;
    std::string_view raw;
    if (peek() == '"') {
      std::size_t start = ++i_;
      while (i_ < s_.size() && s_[i_] != '"') {
        if (s_[i_] == '\\') {
          escaped = true;
          ++i_;
        }
        ++i_;
      }
      if (i_ >= s_.size()) fail("a closing '\"'");
      raw = s_.substr(start, i_ - start);
      ++i_;
      emit(raw, escaped);
      return;
    }
    std::size_t start = i_, end = i_;
    while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}') {
      char c = s_[i_];
      if (c == '{' || c == '"') fail("'\"' or '{' only at the start of an element");
      if (c == '\\') {
        if (i_ + 1 >= s_.size()) fail("a character after '\\'");
        escaped = true;
        i_ += 2;
        end = i_;
        continue;
      }
      if (!is_space(c)) end = i_ + 1;
      ++i_;
    }
    raw = s_.substr(start, end - start);
    if (raw.empty()) fail("an element before ',' or '}'");
    if (!escaped && iequals(raw, "NULL")) {
      sink_.call(sink_.ctx, nullptr, false);
      return;
    }
    emit(raw, escaped);
  }

  void emit(std::string_view raw, bool escaped) {
    if (!escaped) {
      value_view e{raw, elem_type_, format::text};
      sink_.call(sink_.ctx, &e, false);
      return;
    }
    scratch_.clear();
    for (std::size_t k = 0; k < raw.size(); ++k) {
      if (raw[k] == '\\') ++k;
      if (k < raw.size()) scratch_ += raw[k];
    }
    value_view e{scratch_, elem_type_, format::text};
    sink_.call(sink_.ctx, &e, true);
  }

  value_view v_;
  std::string_view s_;
  std::size_t i_ = 0;
  oid elem_type_;
  int max_dims_;
  detail::element_sink sink_;
  int ndims_ = -1;
  std::vector<int> lengths_;
  std::string scratch_;
};

}  // namespace

/// array_send's layout: ndim, has-null flag, element type, (length, lower
/// bound) per dimension, then length-prefixed elements (-1 = NULL).
array_shape parse_binary_array(value_view v, int max_dims, detail::element_sink sink, bool (*element_accepts)(oid),
                               std::string_view cpp_name) {
  reader r(v);
  array_shape shape;
  std::int32_t ndim = r.i32("an array header");
  std::int32_t flags = r.i32("an array header");
  shape.element_type = r.get<std::uint32_t>("an array header");
  if (ndim < 0 || ndim > max_array_dims) throw_invalid(v, "0 to 6 array dimensions");
  if (flags != 0 && flags != 1) throw_invalid(v, "array flags 0 or 1");
  if (ndim > max_dims)
    throw sql_error(errc::invalid_value,
                    "a " + std::to_string(ndim) + "-dimensional array cannot be read as " + std::string(cpp_name));
  if (element_accepts && !element_accepts(shape.element_type))
    throw sql_error(errc::type_mismatch,
                    "cannot read an array of " + type_name(shape.element_type) + " as " + std::string(cpp_name));
  std::uint64_t total = ndim > 0 ? 1 : 0;
  for (std::int32_t d = 0; d < ndim; ++d) {
    std::int32_t len = r.i32("array dimensions");
    std::int32_t lb = r.i32("array dimensions");
    if (len < 0) throw_invalid(v, "non-negative array dimensions");
    total *= static_cast<std::uint64_t>(len);
    // Each element takes at least its 4-byte length: a count beyond what the
    // bytes can hold is a lie, caught before anything is allocated.
    if (total > r.left() / 4) throw_invalid(v, "as many elements as the array header says");
    shape.lengths.push_back(len);
    shape.lower_bounds.push_back(lb);
  }
  for (std::uint64_t k = 0; k < total; ++k) {
    std::int32_t len = r.i32("an element length");
    if (len == -1) {
      sink.call(sink.ctx, nullptr, false);
      continue;
    }
    if (len < 0) throw_invalid(v, "element lengths >= -1");
    value_view e{r.take(static_cast<std::size_t>(len), "element bytes"), shape.element_type, format::binary};
    sink.call(sink.ctx, &e, false);
  }
  r.end("no bytes after the last element");
  return shape;
}

/// Whether array_out would quote element text `e`.
bool needs_quotes(std::string_view e) {
  if (e.empty() || iequals(e, "NULL")) return true;
  for (char c : e)
    if (c == '"' || c == '\\' || c == '{' || c == '}' || c == ',' || is_space(c)) return true;
  return false;
}

void append_quoted(std::string& out, std::string_view e) {
  out += '"';
  for (char c : e) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

}  // namespace pgq::codecs

namespace pgq::detail {
using namespace codecs;

void throw_transient_view(std::string_view cpp_name) {
  throw sql_error(errc::invalid_value, "an escaped array element cannot be viewed in place by " +
                                           std::string(cpp_name) + "; read it as std::vector<std::string>");
}

void check_array_nesting(value_view v, int depth) {
  if (depth <= max_array_nesting) return;
  throw sql_error(errc::invalid_value,
                  "invalid " + type_name(v.type) + " value (" + format_name(v.fmt) + "): arrays nested through " +
                      "their element type deeper than " + std::to_string(max_array_nesting) +
                      " levels, pgq's limit (the server never sends an array whose elements are arrays)");
}

bool array_accepts(oid type, bool (*element_accepts)(oid) noexcept) noexcept {
  if (oid e = array_element_oid(type)) return element_accepts(e);
  if (scalar_name(type) != nullptr || type == 1020) return false;
  return element_accepts(oids::unknown);  // a user-defined array type
}

array_shape for_each_array_element(value_view v, int max_dims, element_sink sink) {
  if (v.fmt == format::binary) return parse_binary_array(v, max_dims, sink, nullptr, "an array");
  oid elem = array_element_oid(v.type);
  return text_array_parser(v, elem ? elem : oids::unknown, max_dims, sink).parse();
}

void decode_array(value_view v, bool (*element_accepts)(oid) noexcept, bool nulls_allowed, std::string_view cpp_name,
                  element_sink sink) {
  if (!array_accepts(v.type, element_accepts)) throw_type_mismatch(v.type, cpp_name);
  std::size_t index = 0;
  auto check = [&](const value_view* e, bool transient) {
    if (!e && !nulls_allowed)
      throw sql_error(errc::unexpected_null, "NULL array element " + std::to_string(index + 1) + " cannot be read as " +
                                                 std::string(cpp_name) + "; use std::optional elements");
    ++index;
    sink.call(sink.ctx, e, transient);
  };
  auto checked = element_sink::of(check);
  if (v.fmt == format::binary) {
    parse_binary_array(v, 1, checked, element_accepts, cpp_name);
  } else {
    oid elem = array_element_oid(v.type);
    text_array_parser(v, elem ? elem : oids::unknown, 1, checked).parse();
  }
}

array_encoder::array_encoder(format f, oid array_type, std::size_t count, std::string& out)
    : fmt_(f), out_(out), header_pos_(out.size()), expected_(count) {
  if (fmt_ == format::text) {
    out_ += '{';
    return;
  }
  if (count > static_cast<std::size_t>(INT32_MAX)) throw_encode("array", "too many elements");
  put_be<std::uint32_t>(out_, count > 0 ? 1 : 0);
  header_pos_ = out_.size();
  put_be<std::uint32_t>(out_, 0);
  put_be<std::uint32_t>(out_, array_element_oid(array_type));
  if (count > 0) {
    put_be<std::uint32_t>(out_, static_cast<std::uint32_t>(count));
    put_be<std::uint32_t>(out_, 1);
  }
}

void array_encoder::begin_element() {
  if (fmt_ == format::text) {
    if (count_ > 0) out_ += ',';
    elem_pos_ = out_.size();
    return;
  }
  elem_pos_ = out_.size();
  put_be<std::uint32_t>(out_, 0);
}

void array_encoder::end_element() {
  ++count_;
  if (fmt_ == format::text) {
    // Most elements need no quotes: only those pay for a copy.
    if (!needs_quotes(std::string_view(out_).substr(elem_pos_))) return;
    std::string e = out_.substr(elem_pos_);
    out_.resize(elem_pos_);
    append_quoted(out_, e);
    return;
  }
  std::size_t len = out_.size() - elem_pos_ - 4;
  if (len > static_cast<std::size_t>(INT32_MAX)) throw_encode("array", "element too large");
  patch_be<std::uint32_t>(out_, elem_pos_, static_cast<std::uint32_t>(len));
}

void array_encoder::null_element() {
  if (fmt_ == format::text) {
    if (count_ > 0) out_ += ',';
    out_ += "NULL";
  } else {
    put_be<std::uint32_t>(out_, 0xFFFFFFFFu);
    has_null_ = true;
  }
  ++count_;
}

void array_encoder::finish() {
  if (count_ != expected_) throw_encode("array", "element count changed while encoding");
  if (fmt_ == format::text) {
    out_ += '}';
    return;
  }
  if (has_null_) patch_be<std::uint32_t>(out_, header_pos_, 1);
}

}  // namespace pgq::detail
