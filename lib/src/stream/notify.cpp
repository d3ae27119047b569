// LISTEN/NOTIFY on a connection, and the listener that reconnects and
// re-subscribes. Notifications are queued by the driver after each read.
#include <pgq/connection.hpp>
#include <pgq/notify.hpp>

#include "driver/driver.hpp"
#include "stream/quote.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace asio = boost::asio;

namespace pgq {

std::string quote_identifier(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '"';
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

asio::awaitable<void> connection::listen(std::string_view channel) {
  if (channel.find('\0') != std::string_view::npos) throw sql_error(errc::invalid_value, "NUL in a channel name");
  const std::string sql = "LISTEN " + quote_identifier(channel);
  co_await query_params(sql, {});
}

asio::awaitable<void> connection::unlisten(std::string_view channel) {
  if (channel.find('\0') != std::string_view::npos) throw sql_error(errc::invalid_value, "NUL in a channel name");
  const std::string sql = channel == "*" ? std::string("UNLISTEN *") : "UNLISTEN " + quote_identifier(channel);
  co_await query_params(sql, {});
}

asio::awaitable<void> connection::notify(std::string_view channel, std::string_view payload) {
  co_await query_params("SELECT pg_notify($1, $2)", detail::make_params(channel, payload));
}

namespace {
struct initiate_notification {
  std::shared_ptr<detail::driver> drv;
  template <class Handler>
  void operator()(Handler&& handler) {
    const std::uint64_t id = drv->next_waiter_id();
    detail::notification_handler h(std::forward<Handler>(handler));
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) {
      slot.assign([w = std::weak_ptr<detail::driver>(drv), ex = drv->get_executor(), id](asio::cancellation_type) {
        asio::post(ex, [w, id] {
          if (auto d = w.lock()) d->cancel_notification_wait(id);
        });
      });
    }
    asio::dispatch(drv->get_executor(),
                   [d = drv, id, h = std::move(h)]() mutable { d->next_notification(id, std::move(h)); });
  }
};
}  // namespace

asio::awaitable<notification> connection::next_notification() {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from");
  initiate_notification init{drv_};  // named: see row_stream::fetch()
  detail::pending_notification p =
      co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                    void(std::exception_ptr, detail::pending_notification)>(std::move(init),
                                                                                            asio::use_awaitable);
  notification n;
  n.channel = std::move(p.channel);
  n.payload = std::move(p.payload);
  n.sender_pid = p.sender_pid;
  co_return n;
}

std::size_t connection::notifications_dropped() const noexcept { return drv_ ? drv_->notifications_dropped() : 0; }

// ----------------------------------------------------------------- listener

namespace detail {
struct listener_impl {
  asio::any_io_executor ex;
  std::string conninfo;
  listener_options opts;
  std::unique_ptr<connection> conn;
  std::vector<std::string> channels;
  bool connected_once = false;
  bool closed = false;
  bool gap = false;
  std::string lost_reason;
};
}  // namespace detail

namespace {

// Connects and re-subscribes. Before the first success errors are thrown;
// after it, retries with backoff until it works (or the listener closes).
asio::awaitable<void> ensure_connected(detail::listener_impl* l) {
  if (l->conn && l->conn->is_open()) co_return;
  std::chrono::milliseconds delay = l->opts.backoff_initial;
  while (true) {
    if (l->closed) throw sql_error(errc::not_connected, "the listener is closed");
    try {
      auto c = std::make_unique<connection>(l->ex);
      co_await c->connect(l->conninfo, l->opts.connect);
      for (const auto& ch : l->channels) co_await c->listen(ch);
      l->conn = std::move(c);
      co_return;
    } catch (const sql_error& e) {
      if (e.code() == errc::cancelled || !l->connected_once) throw;
    }
    asio::steady_timer t(l->ex);
    t.expires_after(delay);
    co_await t.async_wait(asio::use_awaitable);
    delay = std::min(delay * 2, l->opts.backoff_max);
  }
}

}  // namespace

listener::listener(asio::any_io_executor ex, std::string conninfo, listener_options opts)
    : impl_(std::make_shared<detail::listener_impl>()) {
  impl_->ex = std::move(ex);
  impl_->conninfo = std::move(conninfo);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (opts.reconnect_delay) opts.backoff_initial = *opts.reconnect_delay;
  if (opts.max_reconnect_delay) opts.backoff_max = *opts.max_reconnect_delay;
#pragma GCC diagnostic pop
  impl_->opts = opts;
}

listener::~listener() { close(); }

asio::awaitable<void> listener::listen(std::string channel) {
  auto l = impl_;
  if (l->conn && !l->conn->is_open() && !l->gap) {
    l->gap = true;  // reported by the next next()
    l->lost_reason = "the connection was lost";
  }
  co_await ensure_connected(l.get());
  l->connected_once = true;
  co_await l->conn->listen(channel);
  if (std::find(l->channels.begin(), l->channels.end(), channel) == l->channels.end())
    l->channels.push_back(std::move(channel));
}

asio::awaitable<void> listener::unlisten(std::string channel) {
  auto l = impl_;
  std::erase(l->channels, channel);
  if (l->conn && l->conn->is_open()) co_await l->conn->unlisten(channel);
}

asio::awaitable<listener_event> listener::next() {
  auto l = impl_;
  while (true) {
    if (l->closed) throw sql_error(errc::not_connected, "the listener is closed");
    if (l->gap && l->conn && l->conn->is_open()) {
      l->gap = false;
      listener_event ev;
      ev.what = listener_event::kind::reconnected;
      ev.reason = std::move(l->lost_reason);
      l->lost_reason.clear();
      co_return ev;
    }
    if (!l->conn || !l->conn->is_open()) {
      if (l->conn && !l->gap) {
        // Lost while nobody waited in next(): a gap all the same.
        l->gap = true;
        l->lost_reason = "the connection was lost";
      }
      l->connected_once = true;
      co_await ensure_connected(l.get());
      continue;
    }
    try {
      notification n = co_await l->conn->next_notification();
      listener_event ev;
      ev.note = std::move(n);
      co_return ev;
    } catch (const sql_error& e) {
      if (e.code() == errc::cancelled || l->closed) throw;
      l->lost_reason = e.what();
      l->gap = true;
      l->conn->close();
    }
  }
}

const std::vector<std::string>& listener::channels() const noexcept { return impl_->channels; }

int listener::backend_pid() const noexcept {
  return impl_->conn && impl_->conn->is_open() ? impl_->conn->backend_pid() : 0;
}

void listener::close() noexcept {
  if (!impl_) return;
  impl_->closed = true;
  if (impl_->conn) impl_->conn->close();
}

}  // namespace pgq
