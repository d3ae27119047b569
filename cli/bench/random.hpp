// The random numbers of pgq bench: one splitmix64 state per client, for
// random() in \set lines, the choice among several scripts and the
// Poisson arrivals of --rate.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pgq::cli::bench {

/// The next raw 64-bit value of `state` (splitmix64: fast, good enough for
/// picking rows).
inline std::uint64_t next_random(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// A uniform double in [0, 1) from `state`.
inline double uniform01(std::uint64_t& state) { return static_cast<double>(next_random(state) >> 11) * 0x1.0p-53; }

/// A uniform index below `n`.
inline std::size_t pick(std::uint64_t& state, std::size_t n) {
  return static_cast<std::size_t>((static_cast<unsigned __int128>(n) * next_random(state)) >> 64);
}

/// The next raw 64-bit value of `state`, to seed the clients' generators.
inline std::uint64_t next_random_seed(std::uint64_t& state) { return next_random(state); }

}  // namespace pgq::cli::bench
