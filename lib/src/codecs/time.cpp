// Dates and times: date, timestamp, timestamptz, system_clock and sys_days
// codecs, and the server's text of time, timetz and interval.
#include "codecs/common.hpp"

#include <chrono>
#include <optional>

namespace pgq::codecs {
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// Howard Hinnant's days_from_civil / civil_from_days, on 64 bits so that the
// server's whole range (4713 BC .. 5874897 AD) works. `y` is astronomical.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = floor_div(y, 400);
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = floor_div(z, 146097);
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
}

bool is_leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(std::int64_t y, unsigned m) {
  constexpr unsigned len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/// "YYYY-MM-DD" (years below 1 as " BC" is added by the caller).
void append_date_part(std::string& out, std::int64_t days, bool& bc) {
  std::int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  bc = y <= 0;
  append_padded(out, bc ? 1 - y : y, 4);
  out += '-';
  append_padded(out, m, 2);
  out += '-';
  append_padded(out, d, 2);
}

}  // namespace

void append_time_of_day(std::string& out, std::int64_t usecs) {
  append_padded(out, usecs / 3'600'000'000, 2);
  out += ':';
  append_padded(out, usecs / 60'000'000 % 60, 2);
  out += ':';
  append_padded(out, usecs / 1'000'000 % 60, 2);
  if (auto frac = usecs % 1'000'000; frac != 0) {
    std::string f;
    append_padded(f, frac, 6);
    f.erase(f.find_last_not_of('0') + 1);
    out += '.' + f;
  }
}

/// The text of a timestamp given as microseconds since 1970 (`epoch_days`
/// 0) or since 2000 (`epoch_days` pg_epoch_days), INT64_MAX/MIN being the
/// infinities, with "+00" when `utc_offset`. Both epochs, because the
/// server's range does not fit 64-bit microseconds since 1970.
void append_timestamp(std::string& out, std::int64_t usecs, std::int64_t epoch_days, bool utc_offset) {
  if (usecs == INT64_MAX) return void(out += "infinity");
  if (usecs == INT64_MIN) return void(out += "-infinity");
  std::int64_t days = floor_div(usecs, usecs_per_day);
  bool bc = false;
  append_date_part(out, days + epoch_days, bc);
  out += ' ';
  // The floored remainder, not usecs - days * usecs_per_day: near INT64_MIN
  // that product overflows.
  std::int64_t time_of_day = usecs % usecs_per_day;
  if (time_of_day < 0) time_of_day += usecs_per_day;
  append_time_of_day(out, time_of_day);
  if (utc_offset) out += "+00";
  if (bc) out += " BC";
}

namespace {

void append_date(std::string& out, std::int64_t days_since_1970) {
  bool bc = false;
  append_date_part(out, days_since_1970, bc);
  if (bc) out += " BC";
}

/// A cursor over date/time text.
struct scanner {
  std::string_view s;
  std::size_t i = 0;

  bool done() const { return i >= s.size(); }
  char peek() const { return done() ? '\0' : s[i]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++i;
    return true;
  }
  /// 1..max_len digits as a number; false when there is no digit.
  bool number(std::int64_t& v, std::size_t max_len, std::size_t* len = nullptr) {
    std::size_t start = i;
    v = 0;
    while (!done() && is_digit(s[i]) && i - start < max_len) v = v * 10 + (s[i++] - '0');
    if (len) *len = i - start;
    return i > start;
  }
};

enum class special { none, pos_infinity, neg_infinity };

special parse_special(std::string_view s) {
  if (iequals(s, "infinity") || iequals(s, "+infinity")) return special::pos_infinity;
  if (iequals(s, "-infinity")) return special::neg_infinity;
  return special::none;
}

/// Parses "YYYY-MM-DD" at the scanner; the year is as written (the era
/// suffix comes later, see finish_date).
bool scan_date(scanner& sc, std::int64_t& year, std::int64_t& month, std::int64_t& day) {
  return sc.number(year, 9) && sc.eat('-') && sc.number(month, 2) && sc.eat('-') && sc.number(day, 2);
}

/// Reads an optional " BC"/" AD" era; turns `year` astronomical; validates.
bool finish_date(scanner& sc, std::int64_t& year, std::int64_t month, std::int64_t day, std::int64_t& days) {
  std::size_t save = sc.i;
  while (!sc.done() && is_space(sc.peek())) ++sc.i;
  std::string_view rest = sc.s.substr(sc.i);
  if (iequals(rest, "BC")) {
    year = 1 - year;
    sc.i = sc.s.size();
  } else if (iequals(rest, "AD")) {
    sc.i = sc.s.size();
  } else {
    sc.i = save;
  }
  if (month < 1 || month > 12 || day < 1) return false;
  if (day > static_cast<std::int64_t>(days_in_month(year, static_cast<unsigned>(month)))) return false;
  days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  return true;
}

struct parsed_timestamp {
  special sp = special::none;
  std::int64_t local_usecs = 0;  // since 1970, wall clock
  std::int64_t offset_secs = 0;  // east of UTC
};

/// Parses an ISO timestamp: "YYYY-MM-DD[ |T]HH:MM[:SS[.frac]][offset][ BC]",
/// a bare date, or an infinity. The offset is [+-]HH[:MM[:SS]] or Z.
std::optional<parsed_timestamp> parse_timestamp(std::string_view text) {
  text = trim(text);
  parsed_timestamp r;
  if ((r.sp = parse_special(text)) != special::none) return r;
  scanner sc{text};
  std::int64_t year, month, day, hh = 0, mi = 0, ss = 0, usec = 0;
  if (!scan_date(sc, year, month, day) || year == 0) return std::nullopt;
  if (sc.eat(' ') || sc.eat('T')) {
    if (!sc.number(hh, 2) || !sc.eat(':') || !sc.number(mi, 2)) return std::nullopt;
    if (sc.eat(':')) {
      if (!sc.number(ss, 2)) return std::nullopt;
      if (sc.eat('.')) {
        std::size_t n = 0;
        std::int64_t frac;
        if (!sc.number(frac, 6, &n)) return std::nullopt;
        for (std::size_t k = n; k < 6; ++k) frac *= 10;
        // Round to the microsecond, as the server does on input.
        if (!sc.done() && is_digit(sc.peek()) && sc.peek() >= '5') ++frac;
        while (!sc.done() && is_digit(sc.peek())) ++sc.i;
        usec = frac;
      }
    }
    if (hh > 24 || mi > 59 || ss > 60 || (hh == 24 && (mi != 0 || ss != 0 || usec != 0))) return std::nullopt;
    char c = sc.peek();
    if (c == 'Z' || c == 'z') {
      ++sc.i;
    } else if (c == '+' || c == '-') {
      ++sc.i;
      std::int64_t oh = 0, om = 0, os = 0;
      std::size_t n = 0;
      if (!sc.number(oh, 2)) return std::nullopt;
      if (sc.eat(':')) {
        if (!sc.number(om, 2, &n) || n != 2) return std::nullopt;
        if (sc.eat(':') && (!sc.number(os, 2, &n) || n != 2)) return std::nullopt;
      }
      if (oh > 15 || om > 59 || os > 59) return std::nullopt;
      r.offset_secs = (oh * 3600 + om * 60 + os) * (c == '-' ? -1 : 1);
    }
  }
  std::int64_t days;
  if (!finish_date(sc, year, month, day, days) || !sc.done()) return std::nullopt;
  std::int64_t t;
  if (__builtin_mul_overflow(days, usecs_per_day, &t) ||
      __builtin_add_overflow(t, ((hh * 60 + mi) * 60 + ss) * 1'000'000 + usec, &t))
    return std::nullopt;
  r.local_usecs = t;
  return r;
}

/// Microseconds since 1970 of a timestamp value (INT64_MAX/MIN = infinities).
std::int64_t timestamp_usecs(value_view v, bool with_offset, std::string_view cpp_name) {
  if (v.fmt == format::binary) {
    check_size(v, 8);
    auto pg = static_cast<std::int64_t>(get_be<std::uint64_t>(v.bytes.data()));
    if (pg == INT64_MAX || pg == INT64_MIN) return pg;
    std::int64_t r;
    if (__builtin_add_overflow(pg, pg_epoch_usecs, &r) || r == INT64_MAX || r == INT64_MIN)
      throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
    return r;
  }
  auto p = parse_timestamp(v.bytes);
  if (!p) throw_invalid(v, "an ISO timestamp such as 2024-02-29 13:45:01.5+00");
  if (p->sp == special::pos_infinity) return INT64_MAX;
  if (p->sp == special::neg_infinity) return INT64_MIN;
  std::int64_t r;
  // Without time zone, an offset is ignored, as timestamp_in does; with
  // one, a missing offset means UTC (the server always sends one).
  std::int64_t offset_usecs = with_offset ? p->offset_secs * 1'000'000 : 0;
  if (__builtin_sub_overflow(p->local_usecs, offset_usecs, &r) || r == INT64_MAX || r == INT64_MIN)
    throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
  return r;
}

void encode_timestamp(std::int64_t usecs, bool utc_offset, format f, std::string& out, std::string_view cpp_name) {
  if (f == format::text) return append_timestamp(out, usecs, 0, utc_offset);
  std::int64_t pg = usecs;
  if (usecs != INT64_MAX && usecs != INT64_MIN &&
      (__builtin_sub_overflow(usecs, pg_epoch_usecs, &pg) || pg == INT64_MIN))
    throw_encode(cpp_name, "timestamp out of range");
  put_be<std::uint64_t>(out, static_cast<std::uint64_t>(pg));
}

}  // namespace

/// Days since 1970 of a date value (INT64_MAX/MIN = infinities).
std::int64_t date_days(value_view v) {
  if (v.fmt == format::binary) {
    check_size(v, 4);
    auto pg = static_cast<std::int32_t>(get_be<std::uint32_t>(v.bytes.data()));
    if (pg == INT32_MAX) return INT64_MAX;
    if (pg == INT32_MIN) return INT64_MIN;
    return pg + pg_epoch_days;
  }
  std::string_view text = trim(v.bytes);
  switch (parse_special(text)) {
    case special::pos_infinity: return INT64_MAX;
    case special::neg_infinity: return INT64_MIN;
    case special::none: break;
  }
  scanner sc{text};
  std::int64_t year, month, day, days;
  if (!scan_date(sc, year, month, day) || year == 0 || !finish_date(sc, year, month, day, days) || !sc.done())
    throw_invalid(v, "an ISO date such as 2024-02-29");
  return days;
}

void encode_date_days(std::int64_t days, format f, std::string& out, std::string_view cpp_name) {
  bool finite = days != INT64_MAX && days != INT64_MIN;
  std::int64_t pg = days == INT64_MAX ? INT32_MAX : days == INT64_MIN ? INT32_MIN : 0;
  // Beyond int32 days the server has no such date (and the calendar maths
  // would overflow): refuse rather than send garbage.
  if (finite && (__builtin_sub_overflow(days, pg_epoch_days, &pg) || pg <= INT32_MIN || pg >= INT32_MAX))
    throw_encode(cpp_name, "date out of range");
  if (f == format::binary) return put_be<std::uint32_t>(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(pg)));
  if (days == INT64_MAX) return void(out += "infinity");
  if (days == INT64_MIN) return void(out += "-infinity");
  append_date(out, days);
}

/// An ISO offset as the server prints it: +HH, +HH:MM or +HH:MM:SS.
void append_offset(std::string& out, std::int64_t east_secs) {
  out += east_secs < 0 ? '-' : '+';
  std::int64_t a = east_secs < 0 ? -east_secs : east_secs;
  append_padded(out, a / 3600, 2);
  if (a % 3600 != 0) {
    out += ':';
    append_padded(out, a / 60 % 60, 2);
    if (a % 60 != 0) {
      out += ':';
      append_padded(out, a % 60, 2);
    }
  }
}

/// interval_out with IntervalStyle=postgres (the default): "1 year 2 mons
/// -3 days +04:05:06.5". A field after a negative one gets an explicit '+'.
void append_interval(value_view v, std::string& out) {
  check_size(v, 16);
  auto time = static_cast<std::int64_t>(get_be<std::uint64_t>(v.bytes.data()));
  auto days = static_cast<std::int32_t>(get_be<std::uint32_t>(v.bytes.data() + 8));
  auto months = static_cast<std::int32_t>(get_be<std::uint32_t>(v.bytes.data() + 12));
  bool is_zero = true, is_before = false;
  auto part = [&](std::int64_t value, const char* unit) {
    if (value == 0) return;
    if (!is_zero) out += ' ';
    if (is_before && value > 0) out += '+';
    append_int(out, value);
    out += ' ';
    out += unit;
    if (value != 1) out += 's';
    is_before = value < 0;
    is_zero = false;
  };
  part(months / 12, "year");
  part(months % 12, "mon");
  part(days, "day");
  if (is_zero || time != 0) {
    if (!is_zero) out += ' ';
    // The magnitude as unsigned: INT64_MIN microseconds has no positive twin.
    bool minus = time < 0;
    std::uint64_t mag = minus ? 0 - static_cast<std::uint64_t>(time) : static_cast<std::uint64_t>(time);
    out += minus ? "-" : (is_before ? "+" : "");
    std::uint64_t hours = mag / 3'600'000'000u;
    if (hours < 10) out += '0';
    append_int(out, hours);
    mag %= 3'600'000'000u;
    out += ':';
    append_padded(out, static_cast<std::int64_t>(mag / 60'000'000u), 2);
    out += ':';
    append_padded(out, static_cast<std::int64_t>(mag / 1'000'000u % 60), 2);
    if (auto frac = static_cast<std::int64_t>(mag % 1'000'000u); frac != 0) {
      std::string f;
      append_padded(f, frac, 6);
      f.erase(f.find_last_not_of('0') + 1);
      out += '.' + f;
    }
  }
}

}  // namespace pgq::codecs

namespace pgq {
using namespace codecs;

namespace {

std::int64_t usecs_of(timestamptz t) {
  if (t == timestamptz::max()) return INT64_MAX;
  if (t == timestamptz::min()) return INT64_MIN;
  return t.time_since_epoch().count();
}

template <class TimePoint>
TimePoint time_point_of(std::int64_t usecs) {
  if (usecs == INT64_MAX) return TimePoint::max();
  if (usecs == INT64_MIN) return TimePoint::min();
  return TimePoint(std::chrono::microseconds(usecs));
}

}  // namespace

void codec<timestamptz>::encode(const timestamptz& v, format f, std::string& out) {
  encode_timestamp(usecs_of(v), true, f, out, cpp_name);
}

timestamptz codec<timestamptz>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  return time_point_of<timestamptz>(timestamp_usecs(v, true, cpp_name));
}

void codec<timestamp>::encode(const timestamp& v, format f, std::string& out) {
  std::int64_t us = v == timestamp::max()   ? INT64_MAX
                    : v == timestamp::min() ? INT64_MIN
                                            : v.time_since_epoch().count();
  encode_timestamp(us, false, f, out, cpp_name);
}

timestamp codec<timestamp>::decode(value_view v) {
  check_accepts(accepts(v.type), v, cpp_name);
  return time_point_of<timestamp>(timestamp_usecs(v, false, cpp_name));
}

void codec<std::chrono::system_clock::time_point>::encode(const std::chrono::system_clock::time_point& v, format f,
                                                          std::string& out) {
  using tp = std::chrono::system_clock::time_point;
  std::int64_t us = v == tp::max()   ? INT64_MAX
                    : v == tp::min() ? INT64_MIN
                                     : std::chrono::floor<std::chrono::microseconds>(v).time_since_epoch().count();
  encode_timestamp(us, true, f, out, cpp_name);
}

std::chrono::system_clock::time_point codec<std::chrono::system_clock::time_point>::decode(value_view v) {
  using tp = std::chrono::system_clock::time_point;
  check_accepts(accepts(v.type), v, cpp_name);
  std::int64_t us = timestamp_usecs(v, true, cpp_name);
  if (us == INT64_MAX) return tp::max();
  if (us == INT64_MIN) return tp::min();
  constexpr auto per_us = std::chrono::duration_cast<tp::duration>(std::chrono::microseconds(1)).count();
  tp::rep ticks;
  if (__builtin_mul_overflow(static_cast<tp::rep>(us), per_us, &ticks))
    throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
  return tp(tp::duration(ticks));
}

void codec<date>::encode(const date& v, format f, std::string& out) {
  using namespace std::chrono;
  if (v == year::max() / December / 31) return encode_date_days(INT64_MAX, f, out, cpp_name);
  if (v == year::min() / January / 1) return encode_date_days(INT64_MIN, f, out, cpp_name);
  if (!v.ok()) throw_encode(cpp_name, "invalid year_month_day");
  encode_date_days(sys_days(v).time_since_epoch().count(), f, out, cpp_name);
}

date codec<date>::decode(value_view v) {
  using namespace std::chrono;
  check_accepts(accepts(v.type), v, cpp_name);
  std::int64_t d = date_days(v);
  if (d == INT64_MAX) return year::max() / December / 31;
  if (d == INT64_MIN) return year::min() / January / 1;
  std::int64_t y;
  unsigned m, dd;
  civil_from_days(d, y, m, dd);
  if (y < static_cast<int>(year::min()) || y > static_cast<int>(year::max()))
    throw_out_of_range(v, snippet(v.bytes, v.fmt), cpp_name);
  return year(static_cast<int>(y)) / month(m) / day(dd);
}

void codec<std::chrono::sys_days>::encode(const std::chrono::sys_days& v, format f, std::string& out) {
  using sd = std::chrono::sys_days;
  std::int64_t d = v == sd::max()   ? INT64_MAX
                   : v == sd::min() ? INT64_MIN
                                    : static_cast<std::int64_t>(v.time_since_epoch().count());
  encode_date_days(d, f, out, cpp_name);
}

std::chrono::sys_days codec<std::chrono::sys_days>::decode(value_view v) {
  using sd = std::chrono::sys_days;
  check_accepts(accepts(v.type), v, cpp_name);
  std::int64_t d = date_days(v);
  if (d == INT64_MAX) return sd::max();
  if (d == INT64_MIN) return sd::min();
  return sd(sd::duration(static_cast<sd::rep>(d)));
}

}  // namespace pgq
