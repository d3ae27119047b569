#include <pgq/blocking.hpp>

#include <algorithm>
#include <thread>

namespace pgq {

boost::asio::thread_pool& default_blocking_pool() {
  // Never destroyed: see the header.
  static auto* threads = new boost::asio::thread_pool(
      std::clamp<std::size_t>(std::thread::hardware_concurrency(), 2,
                              16));  // NOLINT(cppcoreguidelines-owning-memory): lives until exit on purpose
  return *threads;
}

}  // namespace pgq
