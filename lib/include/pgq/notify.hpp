// pgq/notify.hpp - LISTEN/NOTIFY: notifications, and a listener that
// survives connection loss.
#pragma once

#include <pgq/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <optional>
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

// Its deprecated members keep old code building; GCC 12 would also warn
// about them in the copy and move operations it writes for the struct.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
/// How a listener connects and reconnects.
struct listener_options {
  /// How to connect (the server is the listener's conninfo).
  connect_options connect{};
  /// After a lost connection or a failed reconnection attempt, wait this
  /// long before the next attempt; doubled at each failure up to
  /// `backoff_max` (the names `pool_options` uses for the same thing).
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};

  // The names these had before; each, when set, wins.
  [[deprecated("use backoff_initial")]] std::optional<std::chrono::milliseconds> reconnect_delay{};
  [[deprecated("use backoff_max")]] std::optional<std::chrono::milliseconds> max_reconnect_delay{};
};
#pragma GCC diagnostic pop

namespace detail {
struct listener_impl;
}

/// A LISTEN connection of its own that stays subscribed: after a connection
/// loss it reconnects (with backoff), issues LISTEN for every channel again,
/// and reports the gap as a `kind::reconnected` event.
///
///     pgq::listener l(ex, conninfo);
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
  /// A listener of the server `conninfo` names, connecting with
  /// `opts.connect`. Connects on the first listen() or next().
  listener(boost::asio::any_io_executor ex, std::string conninfo, listener_options opts = {});
  ~listener();
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  /// Subscribes to `channel` (connecting first if needed). Throws
  /// connection errors from the first connect.
  [[nodiscard]] boost::asio::awaitable<void> listen(std::string channel);
  /// Unsubscribes.
  [[nodiscard]] boost::asio::awaitable<void> unlisten(std::string channel);
  /// The next event. Waits as long as it takes (cancel it, or use
  /// with_timeout). Reconnects as needed; does not throw for a lost
  /// connection, only errc::cancelled.
  [[nodiscard]] boost::asio::awaitable<listener_event> next();
  /// The channels listened to.
  const std::vector<std::string>& channels() const noexcept;
  /// The backend pid of the current connection (0 while disconnected).
  int backend_pid() const noexcept;
  /// Closes the connection; next() then fails with errc::not_connected.
  void close() noexcept;

 private:
  std::shared_ptr<detail::listener_impl> impl_;
};

}  // namespace pgq
