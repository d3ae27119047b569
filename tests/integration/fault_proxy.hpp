// A TCP proxy on loopback that breaks connections on purpose: tests connect
// to the server through it and then add latency, stall a direction (a black
// hole: bytes are held, nothing is forwarded, nothing is closed), cut
// connections after N bytes or at once, and refuse new connections.
//
// The proxy runs on a thread and an io_context of its own, so that it keeps
// working (or keeps stalling) whatever the test's event loop does. Every
// member function may be called from any thread except the proxy's own.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>

namespace pgq_test {

/// The direction of a byte stream through the proxy.
enum class direction { to_server = 0, to_client = 1 };

class fault_proxy {
 public:
  /// Listens on 127.0.0.1 (a free port) and forwards each connection to
  /// 127.0.0.1:`target_port`.
  explicit fault_proxy(std::uint16_t target_port);
  /// Cuts every connection and stops the proxy's thread.
  ~fault_proxy();
  fault_proxy(const fault_proxy&) = delete;
  fault_proxy& operator=(const fault_proxy&) = delete;

  /// The port the proxy listens on.
  std::uint16_t port() const noexcept { return port_; }
  /// `dsn` (conninfo or URI) with host and port replaced by the proxy's.
  std::string route(const std::string& dsn) const;

  /// Holds each chunk this long before forwarding it (both directions).
  void set_latency(std::chrono::milliseconds latency);
  /// While on, bytes travelling in `d` are held, not forwarded (connections
  /// opened meanwhile stall too). Off, the held bytes go on their way.
  void stall(direction d, bool on);
  /// After `bytes` more bytes have been forwarded in `d` (counted over all
  /// connections), the connection that carried the last of them is cut.
  void cut_after(direction d, std::size_t bytes);
  /// While on, connections accepted are black holes: held open, never
  /// forwarded, nothing read (a firewall that drops new connections' packets;
  /// the kernel has already completed the handshake). Connections open
  /// before are not affected.
  void black_hole_new(bool on) { black_hole_new_ = on; }
  /// Cuts every open connection now (both sockets reset).
  void cut_all();
  /// While on, new connections are refused (the port is closed); off, the
  /// proxy listens on the same port again.
  void refuse(bool on);

  /// Connections open now.
  std::size_t open_connections() const;
  /// Connections accepted since the start.
  std::uint64_t accepted() const noexcept { return accepted_.load(); }
  /// Bytes forwarded in `d` since the start.
  std::uint64_t forwarded(direction d) const noexcept { return forwarded_[static_cast<int>(d)].load(); }
  /// Bytes read in `d` since the start (forwarded or held).
  std::uint64_t received(direction d) const noexcept { return received_[static_cast<int>(d)].load(); }

 private:
  struct session;
  class pump_task;

  void run_here(std::function<void()> fn) const;
  void listen();
  void start_accepting();
  void on_accept(const std::shared_ptr<boost::asio::ip::tcp::socket>& client);
  void start_pump(std::shared_ptr<session> s, direction d);
  // How many of `n` bytes may go in `d`; sets `cut` when the budget ran out.
  std::size_t take_budget(direction d, std::size_t n, bool& cut);

  mutable boost::asio::io_context ctx_;
  boost::asio::ip::tcp::endpoint target_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::set<std::shared_ptr<session>> sessions_;  // proxy thread only
  std::atomic<std::int64_t> latency_ms_{0};
  std::atomic<bool> stalled_[2] = {false, false};
  std::atomic<bool> black_hole_new_{false};
  std::atomic<std::int64_t> budget_[2] = {-1, -1};  // -1: no cut armed
  std::atomic<std::uint64_t> forwarded_[2] = {0, 0};
  std::atomic<std::uint64_t> received_[2] = {0, 0};
  std::atomic<std::uint64_t> accepted_{0};
  std::thread thread_;
};

}  // namespace pgq_test
