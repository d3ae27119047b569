#include <pgq/config.hpp>
#include <pgq/error.hpp>

#include <libpq-fe.h>

#include <memory>

namespace pgq {

conninfo conninfo::parse(std::string_view text) {
  const std::string s(text);
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(s.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = err != nullptr ? err : "out of memory";
    if (err != nullptr) PQfreemem(err);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    throw sql_error(errc::bad_conninfo, "invalid connection string: " + msg);
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

}  // namespace pgq
