// pgq/lease.hpp - a connection on loan from a pool.
//
// Below both pool.hpp (which hands leases out) and transaction.hpp (a
// transaction from `pool::begin()` owns one): neither needs the other's header.
#pragma once

#include <pgq/connection.hpp>

#include <cstddef>
#include <memory>
#include <utility>

namespace pgq {

namespace detail {
class pool_impl;
}

/// A connection on loan from a pool (`pool::acquire()`). Returns it when
/// destroyed (or on `release()`), on every exit path. If the lease ends with
/// a transaction open or a request in flight, the pool cleans the connection
/// (waits for or cancels what runs, rolls back) before anyone else gets it; a
/// broken connection is replaced. Movable, not copyable; used by one task at
/// a time, like its connection.
class lease {
 public:
  lease() = default;
  lease(lease&& other) noexcept;
  lease& operator=(lease&& other) noexcept;
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  ~lease();

  connection& operator*() const noexcept { return *conn_; }
  connection* operator->() const noexcept { return conn_; }
  connection& get() const noexcept { return *conn_; }
  explicit operator bool() const noexcept { return conn_ != nullptr; }

  /// Returns the connection now.
  void release() noexcept;

 private:
  friend class detail::pool_impl;
  lease(std::shared_ptr<detail::pool_impl> pool, std::size_t slot, connection* conn) noexcept
      : pool_(std::move(pool)), slot_(slot), conn_(conn) {}

  std::shared_ptr<detail::pool_impl> pool_;
  std::size_t slot_ = 0;
  connection* conn_ = nullptr;
};

}  // namespace pgq
