// pgq/notify.hpp - LISTEN/NOTIFY: notifications, and a listener that
// survives connection loss.
#pragma once

#include <pgq/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgq {

/// One NOTIFY received.
struct notification {
  std::string channel;
  std::string payload;
  int sender_pid = 0;  ///< the backend that sent it
};

/// What listener::next() returns: a notification, or word that the
/// connection was lost and made again, so notifications sent in between may
/// have been missed (re-read whatever state they announce).
struct listener_event {
  enum class kind { notification, reconnected };
  kind what = kind::notification;
  pgq::notification note;  ///< for kind::notification
  std::string reason;      ///< for kind::reconnected: why the connection was lost
};

struct listener_options {
  connect_options connect{};
  /// Delay before the first reconnection attempt; doubled after each failure
  /// up to `max_reconnect_delay`.
  std::chrono::milliseconds reconnect_delay{100};
  std::chrono::milliseconds max_reconnect_delay{5000};
};

namespace detail {
struct listener_impl;
}

/// A LISTEN connection of its own that stays subscribed: after a connection
/// loss it reconnects (with backoff), issues LISTEN for every channel again,
/// and reports the gap as a `kind::reconnected` event.
///
///     pgq::listener l(ex, dsn);
///     co_await l.listen("jobs");
///     for (;;) {
///       auto ev = co_await l.next();
///       if (ev.what == pgq::listener_event::kind::reconnected) co_await rescan();
///       else handle(ev.note);
///     }
///
/// One task calls next() at a time. Not thread-safe: use from one executor.
class listener {
 public:
  listener(boost::asio::any_io_executor ex, std::string conninfo, listener_options opts = {});
  ~listener();
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  /// Subscribes to `channel` (connecting first if needed). Throws
  /// connection errors from the first connect.
  boost::asio::awaitable<void> listen(std::string channel);
  /// Unsubscribes.
  boost::asio::awaitable<void> unlisten(std::string channel);
  /// The next event. Waits as long as it takes (cancel it, or use
  /// with_timeout). Reconnects as needed; does not throw for a lost
  /// connection, only errc::cancelled.
  boost::asio::awaitable<listener_event> next();
  /// The channels listened to.
  const std::vector<std::string>& channels() const noexcept;
  /// The backend pid of the current connection (0 while disconnected).
  int backend_pid() const noexcept;
  /// Closes the connection; next() then fails with errc::not_connected.
  void close() noexcept;

 private:
  std::shared_ptr<detail::listener_impl> impl_;
};

/// `"name"` quoted as an SQL identifier (double quotes doubled), for
/// LISTEN/UNLISTEN, which take no parameters.
std::string quote_identifier(std::string_view name);

}  // namespace pgq
