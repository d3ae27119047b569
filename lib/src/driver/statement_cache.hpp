// The per-connection LRU cache of prepared statements: which statement text
// (with its parameter types) is prepared under which name, and whether its
// results may come in binary. Bookkeeping only: the pipeline state machine
// decides when to prepare, deallocate and invalidate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>

namespace pgq::detail {

/// Per-connection LRU cache of prepared statements, keyed by SQL text and
/// parameter types.
class statement_cache {
 public:
  struct entry {
    std::string name;
    std::list<std::string>::iterator lru;
    bool binary = false;     // every result column has a binary codec
    bool needs_utc = false;  // ... and one is timestamptz, rendered in UTC
  };

  std::size_t capacity = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t prepared = 0;
  std::uint64_t invalidations = 0;

  /// The entry of `key`, made the most recently used; `count`: a hit counts.
  const entry* find(const std::string& key, bool count = true);
  bool contains(const std::string& key) const { return map_.count(key) != 0; }
  const std::string& insert(const std::string& key, std::string& evicted);
  void erase_name(const std::string& name);
  void clear() noexcept;
  std::size_t size() const noexcept { return map_.size(); }
  void describe(const std::string& name, bool binary, bool needs_utc);

 private:
  std::unordered_map<std::string, entry> map_;
  std::list<std::string> lru_;
  std::uint64_t next_ = 1;
};

}  // namespace pgq::detail
