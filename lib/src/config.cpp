#include <pgq/config.hpp>
#include <pgq/error.hpp>

#include "config_detail.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pgq {

namespace {

// The password-looking parts of a connection string: the password of a
// URI's user info, and the value of every "password" parameter.
std::vector<std::string> secrets_in(std::string_view text) {
  std::vector<std::string> out;
  const auto scheme = text.find("://");
  if (scheme != std::string_view::npos) {
    const auto start = scheme + 3;
    const auto end = text.find_first_of("/?", start);
    const std::string_view authority = text.substr(start, end == std::string_view::npos ? end : end - start);
    const auto at = authority.rfind('@');
    if (at != std::string_view::npos) {
      const auto colon = authority.substr(0, at).find(':');
      if (colon != std::string_view::npos) out.emplace_back(authority.substr(colon + 1, at - colon - 1));
    }
  }
  for (auto p = text.find("password"); p != std::string_view::npos; p = text.find("password", p + 1)) {
    auto v = p + 8;
    while (v < text.size() && (text[v] == ' ' || text[v] == '\t')) ++v;
    if (v >= text.size() || text[v] != '=') continue;
    ++v;
    while (v < text.size() && (text[v] == ' ' || text[v] == '\t')) ++v;
    if (v < text.size() && text[v] == '\'') ++v;
    auto e = v;
    while (e < text.size() && text[e] != '&' && text[e] != ' ' && text[e] != '\'' && text[e] != '\t') ++e;
    out.emplace_back(text.substr(v, e - v));
  }
  return out;
}

// libpq names the option it does not know; when that is one of libpq 18's
// (the protocol version range), say so rather than let it look like a typo.
// The option is not dropped: a caller who asks for protocol 3.2 must learn
// that this libpq cannot speak it.
std::string newer_libpq_needed(const std::string& message) {
  const int v = PQlibVersion();
  if (v >= 180000) return {};
  for (const char* key : {"max_protocol_version", "min_protocol_version"}) {
    if (message.find(std::string("\"") + key + "\"") == std::string::npos) continue;
    return std::string(" (") + key + " needs libpq 18 or newer; the libpq loaded is " + std::to_string(v / 10000) +
           "." + std::to_string(v % 100) + ")";
  }
  return {};
}

}  // namespace

conninfo conninfo::parse(std::string_view text) {
  const std::string s(text);
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(s.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = err != nullptr ? err : "out of memory";
    if (err != nullptr) PQfreemem(err);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    // libpq quotes the text it could not parse, password included. Every
    // occurrence of every secret is found in the message as libpq wrote it,
    // then each masked run becomes one "********" (replacing in place, one
    // secret after another, let a secret match the stars of an earlier one:
    // the message grew without bound, which the fuzzer found).
    std::vector<bool> masked(msg.size(), false);
    for (const std::string& secret : secrets_in(text)) {
      if (secret.empty()) continue;
      for (auto p = msg.find(secret); p != std::string::npos; p = msg.find(secret, p + 1)) {
        std::fill(masked.begin() + static_cast<std::ptrdiff_t>(p),
                  masked.begin() + static_cast<std::ptrdiff_t>(p + secret.size()), true);
      }
    }
    std::string redacted;
    redacted.reserve(msg.size());
    for (std::size_t i = 0; i < msg.size(); ++i) {
      if (!masked[i]) {
        redacted += msg[i];
      } else if (i == 0 || !masked[i - 1]) {
        redacted += "********";
      }
    }
    throw sql_error(errc::bad_conninfo, "invalid connection string: " + redacted + newer_libpq_needed(redacted));
  }
  std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> guard(opts, &PQconninfoFree);
  conninfo ci;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) ci.entries_.emplace_back(o->keyword, o->val);
  }
  return ci;
}

std::optional<std::string> conninfo::get(std::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k == key) return v;
  }
  return std::nullopt;
}

void conninfo::set(std::string_view key, std::string value) {
  for (auto& [k, v] : entries_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::string(key), std::move(value));
}

void conninfo::erase(std::string_view key) {
  std::erase_if(entries_, [&](const auto& e) { return e.first == key; });
}

namespace {
std::string quote(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}
}  // namespace

std::string conninfo::to_string() const {
  std::string out;
  for (const auto& [k, v] : entries_) {
    if (!out.empty()) out += ' ';
    out += k;
    out += '=';
    out += quote(v);
  }
  return out;
}

std::string conninfo::redacted() const {
  std::string out;
  for (const auto& [k, v] : entries_) {
    if (!out.empty()) out += ' ';
    out += k;
    out += '=';
    out += k == "password" ? std::string("********") : quote(v);
  }
  return out;
}

namespace detail {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::optional<std::chrono::milliseconds> parse_seconds(const std::string& s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  // libpq treats 1 as 2 seconds and <= 0 as "no limit".
  if (v <= 0) return std::chrono::milliseconds(0);
  return std::chrono::seconds(v == 1 ? 2 : v);
}

}  // namespace

std::chrono::milliseconds connect_timeout(const conninfo& ci, const connect_options& opts) {
  std::chrono::milliseconds timeout(10000);
  if (opts.connect_timeout) {
    timeout = *opts.connect_timeout;
  } else if (auto v = ci.get("connect_timeout")) {
    auto parsed = parse_seconds(*v);
    if (!parsed) throw sql_error(errc::bad_conninfo, "invalid connect_timeout value: \"" + *v + "\"");
    timeout = *parsed;
  } else if (auto e = env("PGCONNECT_TIMEOUT")) {
    if (auto parsed = parse_seconds(*e)) timeout = *parsed;
  }
  return timeout;
}

}  // namespace detail

}  // namespace pgq
