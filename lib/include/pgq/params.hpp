// pgq/params.hpp - the bound parameters of one statement, for statements
// whose parameters are known only at run time.
#pragma once

#include <pgq/codec.hpp>

#include <boost/container/small_vector.hpp>

#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace pgq {

namespace detail {
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
}  // namespace detail

/// The encoded parameters of one statement, for statements whose number or
/// types of parameters are known only at run time (`query(sql, args...)`
/// encodes its arguments into one of these):
///
///     pgq::params p;
///     for (const auto& id : ids) p.add(id);
///     auto r = co_await conn.query("SELECT * FROM t WHERE id IN ($1, $2, $3)", std::move(p));
///
/// `add()` takes what a statement argument may be (`pgq::encodable`): a type
/// with a codec, `std::optional` of one (NULL when empty), `std::nullopt`, a
/// string literal. Each value is encoded at once, into one byte buffer with a
/// per-parameter type, format, offset and length (-1 for NULL); up to eight
/// parameters and a short buffer live inline: no allocation per parameter.
/// Throws `pgq::sql_error` (errc::invalid_value) for a text value with a NUL
/// byte or a value over 2 GiB. A value type, not thread-safe to mutate.
// Its moves are not declared noexcept (small_vector's are not), but they do
// not allocate: a heap buffer is taken over, inline elements fit inline.
class params {  // NOLINT(bugprone-exception-escape)
 public:
  static constexpr std::size_t inline_count = 8;

  /// The number of parameters.
  int size() const noexcept { return static_cast<int>(types_.size()); }
  bool empty() const noexcept { return types_.empty(); }
  /// The type OIDs, lengths (-1 for NULL) and formats, one per parameter, as
  /// libpq's PQsendQueryParams takes them.
  const oid* types() const noexcept { return types_.data(); }
  const int* lengths() const noexcept { return lengths_.data(); }
  const int* formats() const noexcept { return formats_.data(); }
  /// The value of parameter `i`, or nullptr for NULL. Valid until the set changes.
  const char* value(int i) const noexcept {
    const auto k = static_cast<std::size_t>(i);
    return lengths_[k] < 0 ? nullptr : data_.data() + offsets_[k];
  }

  /// Appends a NULL of type `type` (0: the server infers it).
  void add_null(oid type) {
    types_.push_back(type);
    formats_.push_back(0);
    offsets_.push_back(0);
    lengths_.push_back(-1);
  }

  /// Appends `v`, encoded by its codec.
  template <class T>
  requires encodable<T>
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
        if (v.size() > detail::max_param_bytes) detail::throw_param_too_large(size(), v.size());
      } else if constexpr (std::is_same_v<T, std::vector<std::byte>> && codec_t::param_format == format::binary) {
        if (v.size() > detail::max_param_bytes) detail::throw_param_too_large(size(), v.size());
      } else if constexpr (std::is_same_v<T, bytea> && codec_t::param_format == format::binary) {
        if (v.data.size() > detail::max_param_bytes) detail::throw_param_too_large(size(), v.data.size());
      }
      const std::size_t offset = data_.size();
      codec_t::encode(v, codec_t::param_format, data_);
      const std::size_t length = data_.size() - offset;
      // Other codecs (arrays, JSON...) only know once encoded.
      if (length > detail::max_param_bytes) {
        data_.resize(offset);
        detail::throw_param_too_large(size(), length);
      }
      if constexpr (codec_t::param_format == format::text) {
        // libpq reads text parameters up to a NUL and ignores their length.
        if (data_.find('\0', offset) != std::string::npos) detail::throw_nul_in_text(size());
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

/// The parameters `args...` encoded, as `query(sql, args...)` encodes them.
template <class... Args>
requires(encodable<Args>&&...) params make_params(const Args&... args) {
  params p;
  (p.add(args), ...);
  return p;
}

namespace detail {
/// Throws `sql_error` (errc::invalid_value) when `p` has more than
/// max_param_count (65535) parameters, which no statement can take; call it
/// before sending `p`.
void check_param_count(const params& p);

/// pgq's internal name of `pgq::params`.
using param_set = params;
using pgq::make_params;
}  // namespace detail

}  // namespace pgq
