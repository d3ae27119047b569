// The public connection: thin initiations that hand requests to the driver
// (lib/src/driver/), on the driver's executor.
#include <pgq/connection.hpp>

#include "driver/driver.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;

namespace pgq {

// Out of line: GCC 12 inlines the small_vector moves into coroutine frames
// and then warns (-Wstringop-overread) about sizes it cannot know.
batch& batch::add(std::string sql, params p) {
  items_.push_back(item{std::move(sql), std::move(p)});
  return *this;
}

batch& batch::add_params(std::string sql, params p) { return add(std::move(sql), std::move(p)); }

namespace detail {

// The driver's state belongs to its executor: close it there (inline when
// the caller already runs there). is_open() turns false at once.
void close_on_executor(const std::shared_ptr<driver>& d, errc why) noexcept {
  if (!d) return;
  d->mark_closing();
  try {
    asio::dispatch(d->get_executor(), [d, why] { d->close(why); });
  } catch (...) {
    // Out of memory: the driver closes when its last owner lets go.
  }
}

}  // namespace detail

connection::connection(const executor_type& ex) : drv_(std::make_shared<detail::driver>(ex)) {}

connection::~connection() { detail::close_on_executor(drv_, errc::not_connected); }

connection::connection(connection&&) noexcept = default;

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    detail::close_on_executor(drv_, errc::not_connected);
    drv_ = std::move(other.drv_);
  }
  return *this;
}

connection::executor_type connection::get_executor() const noexcept { return drv_->get_executor(); }

namespace {
asio::awaitable<void> connect_on_driver(std::shared_ptr<detail::driver> d, std::string conninfo,
                                        connect_options opts) {
  co_await d->connect(std::move(conninfo), opts);
}
}  // namespace

asio::awaitable<void> connection::connect(std::string_view conninfo, connect_options opts) {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from");
  auto d = drv_;  // keeps the driver alive across the suspension
  // Every step runs on the driver's executor; the caller's cancellation
  // reaches it through co_spawn.
  co_await asio::co_spawn(d->get_executor(), connect_on_driver(d, std::string(conninfo), opts), asio::use_awaitable);
}

namespace {
struct initiate_query {
  std::shared_ptr<detail::driver> drv;
  template <class Handler>
  void operator()(Handler&& h, std::unique_ptr<detail::request> req) {
    req->id = drv->next_id();
    req->awaited = true;
    req->caller.ex = detail::io_executor_of(h, drv->get_executor());
    detail::result_handler handler(std::forward<Handler>(h));
    detail::connect_cancel(handler, drv, req->id);
    req->caller.on_result.swap(handler);  // not operator=: it recurses in Boost 1.81
    asio::dispatch(drv->get_executor(), [d = drv, r = std::move(req)]() mutable { d->enqueue(std::move(r)); });
  }
};
}  // namespace

asio::awaitable<result> connection::query_params(std::string_view sql, detail::param_set params) {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from", std::string(sql));
  // One allocation for the request, which the parameters move into once.
  auto req = std::make_unique<detail::request>();
  req->sql = sql;
  req->params = std::move(params);
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, result)>(
      initiate_query{drv_}, asio::use_awaitable, std::move(req));
}

namespace {
struct initiate_batch {
  std::shared_ptr<detail::driver> drv;
  template <class Handler>
  void operator()(Handler&& handler, std::vector<std::unique_ptr<detail::request>> items, bool atomic) {
    auto group = std::make_shared<detail::batch_group>();
    group->id = drv->next_id();
    group->atomic = atomic;
    group->caller.ex = detail::io_executor_of(handler, drv->get_executor());
    detail::batch_handler h(std::forward<Handler>(handler));
    detail::connect_cancel(h, drv, group->id);
    group->caller.on_batch.swap(h);
    asio::dispatch(drv->get_executor(), [d = drv, group, items = std::move(items)]() mutable {
      d->enqueue_batch(std::move(group), std::move(items));
    });
  }
};
}  // namespace

asio::awaitable<std::vector<result>> connection::run_batch(const batch& b, bool atomic) {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from");
  std::vector<std::unique_ptr<detail::request>> items;
  items.reserve(b.items_.size());
  for (const auto& it : b.items_) {
    auto r = std::make_unique<detail::request>();
    r->sql = it.sql;
    r->params = it.args;
    items.push_back(std::move(r));
  }
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, std::vector<result>)>(
      initiate_batch{drv_}, asio::use_awaitable, std::move(items), atomic);
}

asio::awaitable<std::uint64_t> connection::execute_params(std::string_view sql, detail::param_set params) {
  result r = co_await query_params(sql, std::move(params));
  co_return r.rows_affected();
}

bool connection::is_open() const noexcept { return drv_ && drv_->is_open(); }

void connection::close() noexcept { detail::close_on_executor(drv_, errc::not_connected); }

int connection::backend_pid() const noexcept { return is_open() ? drv_->backend_pid() : 0; }

int connection::server_version() const noexcept { return is_open() ? drv_->server_version() : 0; }

connection_stats connection::stats() const noexcept {
  connection_stats s;
  if (!drv_) return s;
  const auto& c = drv_->cache();
  s.statements_prepared = c.prepared;
  s.cache_hits = c.hits;
  s.cache_misses = c.misses;
  s.cache_invalidations = c.invalidations;
  s.cached_statements = c.size();
  return s;
}

std::size_t connection::pending_requests() const noexcept { return drv_ ? drv_->pending() : 0; }

tx_status connection::transaction_status() const noexcept {
  if (!drv_ || !drv_->is_open()) return tx_status::unknown;
  if (drv_->pending() > 0) return tx_status::active;
  switch (drv_->tracked_tx()) {
    case detail::tx_idle: return tx_status::idle;
    case detail::tx_block: return tx_status::in_transaction;
    case detail::tx_failed: return tx_status::in_error;
    default: return tx_status::unknown;
  }
}

void connection::send_detached(std::string sql) noexcept {
  if (!drv_) return;
  try {
    asio::dispatch(drv_->get_executor(),
                   [d = drv_, s = std::move(sql)]() mutable { d->enqueue_detached(std::move(s)); });
  } catch (...) {
    // Out of memory: the pool's reset still rolls back before reuse.
  }
}

pg_conn* connection::native_handle() const noexcept { return drv_ ? drv_->native_handle() : nullptr; }

}  // namespace pgq
