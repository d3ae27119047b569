// pgq/detail/params.hpp - bound parameters, encoded once by the caller's
// template and then handed to non-template code.
#pragma once

#include <pgq/codec.hpp>

#include <boost/container/small_vector.hpp>

#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace pgq::detail {

[[noreturn]] void throw_nul_in_text(int index);

/// The most bytes one parameter can have: libpq takes lengths as `int`, and
/// the protocol sends them as Int32.
inline constexpr std::size_t max_param_bytes = static_cast<std::size_t>(std::numeric_limits<int>::max());

/// The most parameters one statement can have: the protocol counts them in
/// an Int16 (Parse and Bind), and the server refuses more than 65535.
inline constexpr int max_param_count = 65535;

/// Throws errc::invalid_value: parameter `index` (0-based) would be `size`
/// bytes, more than max_param_bytes.
[[noreturn]] void throw_param_too_large(int index, std::size_t size);

/// The encoded parameters of one statement: one byte buffer and per-parameter
/// type, format, offset and length (-1 for NULL). Up to eight parameters and a
/// short buffer live inline: no allocation per parameter.
// Its moves are not declared noexcept (small_vector's are not), but they do
// not allocate: a heap buffer is taken over, inline elements fit inline.
class param_set {  // NOLINT(bugprone-exception-escape)
 public:
  static constexpr std::size_t inline_count = 8;

  int size() const noexcept { return static_cast<int>(types_.size()); }
  const oid* types() const noexcept { return types_.data(); }
  const int* lengths() const noexcept { return lengths_.data(); }
  const int* formats() const noexcept { return formats_.data(); }
  /// The value of parameter `i`, or nullptr for NULL. Valid until the set changes.
  const char* value(int i) const noexcept {
    const auto k = static_cast<std::size_t>(i);
    return lengths_[k] < 0 ? nullptr : data_.data() + offsets_[k];
  }

  void add_null(oid type) {
    types_.push_back(type);
    formats_.push_back(0);
    offsets_.push_back(0);
    lengths_.push_back(-1);
  }

  template <class T>
  void add(const T& v) {
    if constexpr (std::is_same_v<T, std::nullopt_t>) {
      add_null(0);
    } else if constexpr (is_opt<T>::value) {
      if (v) {
        add(*v);
      } else {
        add_null(codec<typename T::value_type>::param_oid);
      }
    } else if constexpr (std::is_array_v<T>) {
      add(static_cast<const std::remove_extent_t<T>*>(v));
    } else if constexpr (std::is_same_v<T, char*>) {
      add(static_cast<const char*>(v));
    } else {
      using codec_t = codec<T>;
      // Where the size is known up front, refuse before copying: a view
      // claiming more than 2 GiB must not be read at all.
      if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) {
        if (v.size() > max_param_bytes) throw_param_too_large(size(), v.size());
      } else if constexpr (std::is_same_v<T, std::vector<std::byte>> && codec_t::param_format == format::binary) {
        if (v.size() > max_param_bytes) throw_param_too_large(size(), v.size());
      } else if constexpr (std::is_same_v<T, bytea> && codec_t::param_format == format::binary) {
        if (v.data.size() > max_param_bytes) throw_param_too_large(size(), v.data.size());
      }
      const std::size_t offset = data_.size();
      codec_t::encode(v, codec_t::param_format, data_);
      const std::size_t length = data_.size() - offset;
      // Other codecs (arrays, JSON...) only know once encoded.
      if (length > max_param_bytes) {
        data_.resize(offset);
        throw_param_too_large(size(), length);
      }
      if constexpr (codec_t::param_format == format::text) {
        // libpq reads text parameters up to a NUL and ignores their length.
        if (data_.find('\0', offset) != std::string::npos) throw_nul_in_text(size());
        data_.push_back('\0');
      }
      types_.push_back(codec_t::param_oid);
      formats_.push_back(static_cast<int>(codec_t::param_format));
      offsets_.push_back(offset);
      lengths_.push_back(static_cast<int>(length));
    }
  }

 private:
  template <class T>
  struct is_opt : std::false_type {};
  template <class T>
  struct is_opt<std::optional<T>> : std::true_type {};

  std::string data_;
  boost::container::small_vector<oid, inline_count> types_;
  boost::container::small_vector<int, inline_count> formats_;
  boost::container::small_vector<std::size_t, inline_count> offsets_;
  boost::container::small_vector<int, inline_count> lengths_;
};

/// Throws `sql_error` (errc::invalid_value) when `p` has more than
/// max_param_count (65535) parameters, which no statement can take; call it
/// before sending `p`.
void check_param_count(const param_set& p);

template <class... Args>
param_set make_params(const Args&... args) {
  param_set p;
  (p.add(args), ...);
  return p;
}

}  // namespace pgq::detail
