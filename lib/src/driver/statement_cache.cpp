#include "driver/statement_cache.hpp"

#include <utility>

namespace pgq::detail {

const statement_cache::entry* statement_cache::find(const std::string& key, bool count) {
  auto it = map_.find(key);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  if (count) ++hits;
  return &it->second;
}

const std::string& statement_cache::insert(const std::string& key, std::string& evicted) {
  ++misses;
  ++prepared;
  if (map_.size() >= capacity && !lru_.empty()) {
    auto victim = map_.find(lru_.back());
    evicted = std::move(victim->second.name);
    map_.erase(victim);
    lru_.pop_back();
  }
  lru_.push_front(key);
  auto [it, inserted] = map_.emplace(key, entry{"pgq_" + std::to_string(next_++), lru_.begin()});
  (void)inserted;
  return it->second.name;
}

void statement_cache::erase_name(const std::string& name) {
  for (auto it = map_.begin(); it != map_.end(); ++it) {
    if (it->second.name == name) {
      lru_.erase(it->second.lru);
      map_.erase(it);
      return;
    }
  }
}

void statement_cache::describe(const std::string& name, bool binary, bool needs_utc) {
  for (auto& [key, e] : map_) {
    if (e.name == name) {
      e.binary = binary;
      e.needs_utc = needs_utc;
      return;
    }
  }
}

void statement_cache::clear() noexcept {
  map_.clear();
  lru_.clear();
}

}  // namespace pgq::detail
