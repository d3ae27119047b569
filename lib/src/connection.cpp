// The public connection: thin initiations that hand requests to the driver
// (lib/src/driver/), on the driver's executor.
#include <pgq/connection.hpp>

#include "driver/driver.hpp"
#include "driver/libpq_compat.hpp"
#include "type_catalog.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

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
asio::awaitable<void> connect_on_driver(std::shared_ptr<detail::driver> d, std::string conninfo, connect_options opts) {
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

namespace {

// Attribute names and types of composites, base types of domains, element
// types of arrays, and enums, for the types asked for and every type they
// contain (a composite's attributes may be composites again).
constexpr const char* type_lookup_sql =
    "WITH RECURSIVE wanted(oid) AS ("
    " SELECT unnest($1::text::pg_catalog.oid[])"
    " UNION"
    " SELECT x.oid FROM wanted w JOIN pg_catalog.pg_type t ON t.oid = w.oid CROSS JOIN LATERAL ("
    "  SELECT a.atttypid FROM pg_catalog.pg_attribute a"
    "   WHERE t.typrelid <> 0 AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped"
    "  UNION ALL SELECT t.typbasetype WHERE t.typbasetype <> 0"
    "  UNION ALL SELECT t.typelem WHERE t.typelem <> 0 AND t.typlen = -1) x(oid))"
    " SELECT t.oid::int8, t.typtype::text, t.typbasetype::int8,"
    "  CASE WHEN t.typlen = -1 THEN t.typelem ELSE 0 END::int8, a.attname::text, a.atttypid::int8"
    " FROM wanted w JOIN pg_catalog.pg_type t ON t.oid = w.oid"
    " LEFT JOIN pg_catalog.pg_attribute a ON t.typrelid <> 0 AND a.attrelid = t.typrelid"
    "  AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY t.oid, a.attnum";

// `old` plus what `rows` (type_lookup_sql's) say, plus an entry for each of
// `asked` the catalog did not have, so it is not asked for again.
std::shared_ptr<const detail::type_catalog> merge_types(const std::shared_ptr<const detail::type_catalog>& old,
                                                        const result& rows, const std::vector<oid>& asked) {
  auto cat = old ? std::make_shared<detail::type_catalog>(*old) : std::make_shared<detail::type_catalog>();
  using kind = detail::type_info::kind;
  oid previous = 0;  // rows come ordered by type: a new type starts afresh
  for (const auto r : rows) {
    const auto t = static_cast<oid>(r.get<std::int64_t>(0));
    const bool fresh = t != previous;
    previous = t;
    detail::type_info& info = cat->types[t];
    const std::string typtype = r.get<std::string>(1);
    const auto elem = static_cast<oid>(r.get<std::int64_t>(3));
    if (typtype == "c") {
      info.k = kind::composite;
      if (fresh) {
        info.names.clear();
        info.types.clear();
      }
      if (auto name = r.get<std::optional<std::string>>(4)) {
        info.names.push_back(std::move(*name));
        info.types.push_back(static_cast<oid>(r.get<std::int64_t>(5)));
      }
    } else if (typtype == "d") {
      info.k = kind::domain;
      info.base = static_cast<oid>(r.get<std::int64_t>(2));
    } else if (typtype == "e") {
      info.k = kind::enumeration;
    } else if (elem != 0) {
      info.k = kind::array;
      info.base = elem;
    }
  }
  for (oid t : asked) cat->types.try_emplace(t);
  return cat;
}

// The query itself, without a catalog lookup.
asio::awaitable<result> raw_query(const std::shared_ptr<detail::driver>& d, std::unique_ptr<detail::request> req) {
  initiate_query init{d};
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, result)>(
      std::move(init), asio::use_awaitable, std::move(req));
}

// The catalog that names the composites of `results`, with what this
// connection knew before. A type the connection has not met yet costs one
// catalog query (for all such types at once), run after the user's
// statements and before their results are returned. That query is not
// cancellable (it is short, and a server-side cancel of it inside the
// user's transaction would abort that transaction behind the user's back);
// when it cannot run (an aborted transaction) or fails, the results are
// returned all the same and composites get the names f1..fN.
asio::awaitable<void> attach_catalog(std::shared_ptr<detail::driver> d, std::vector<result>* results) {
  std::shared_ptr<const detail::type_catalog> cat = d->types.load();
  std::vector<oid> unknown;
  for (const result& r : *results) {
    for (int c = 0; c < r.columns(); ++c) {
      const oid t = r.column_type(c);
      if (detail::known_without_catalog(t) || (cat && cat->find(t) != nullptr)) continue;
      if (std::find(unknown.begin(), unknown.end(), t) == unknown.end()) unknown.push_back(t);
    }
  }
  if (!unknown.empty() && d->tracked_tx() != detail::tx_failed) {
    try {
      std::string list = "{";
      for (oid t : unknown) list += (list.size() > 1 ? "," : "") + std::to_string(t);
      list += '}';
      auto req = std::make_unique<detail::request>();
      req->sql = type_lookup_sql;
      req->params = detail::make_params(list);
      // Named, not brace-initialised in the co_await expression (GCC 12).
      auto shielded = asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable);
      initiate_query init{d};
      result rows = co_await asio::async_initiate<decltype(shielded), void(std::exception_ptr, result)>(
          std::move(init), shielded, std::move(req));
      cat = merge_types(cat, rows, unknown);
      d->types.store(cat);
    } catch (...) {
      // The user's statements ran: their results stand, with f1..fN names.
    }
  }
  if (!cat) co_return;
  for (result& r : *results) detail::attach_types(r, cat);
}

// Whether a column of `r` is of a type only the catalog explains.
bool needs_catalog(const result& r) {
  for (int c = 0; c < r.columns(); ++c) {
    if (!detail::known_without_catalog(r.column_type(c))) return true;
  }
  return false;
}

asio::awaitable<result> with_types(std::shared_ptr<detail::driver> d, asio::awaitable<result> op) {
  result r = co_await std::move(op);
  // Results of built-in types only (almost all) pay nothing more.
  if (!needs_catalog(r)) co_return r;
  std::vector<result> results;
  results.push_back(std::move(r));
  co_await attach_catalog(d, &results);
  co_return std::move(results.front());
}

asio::awaitable<std::vector<result>> batch_with_types(std::shared_ptr<detail::driver> d,
                                                      asio::awaitable<std::vector<result>> op) {
  std::vector<result> results = co_await std::move(op);
  co_await attach_catalog(d, &results);
  co_return results;
}

}  // namespace

asio::awaitable<result> connection::query_params(std::string_view sql, detail::param_set params) {
  if (!drv_) throw sql_error(errc::not_connected, "connection was moved from", std::string(sql));
  // One allocation for the request, which the parameters move into once.
  // Built now, not in the coroutine, which starts later: `sql` may be gone.
  auto req = std::make_unique<detail::request>();
  req->sql = sql;
  req->params = std::move(params);
  return with_types(drv_, raw_query(drv_, std::move(req)));
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
  initiate_batch init{drv_};
  return batch_with_types(
      drv_, asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, std::vector<result>)>(
                std::move(init), asio::use_awaitable, std::move(items), atomic));
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

pgq::driver_info connection::driver_info() const noexcept {
  const detail::libpq_api& api = detail::libpq();
  pgq::driver_info i;
  i.libpq_version = api.version;
  i.sync = api.send_pipeline_sync != nullptr ? "PQsendPipelineSync" : "PQpipelineSync";
  i.cancel = api.has_cancel_conn() ? "PQcancelStart" : "PQcancel thread";
  i.chunked_rows = api.set_chunked_rows_mode != nullptr;
  i.close_prepared = api.send_close_prepared != nullptr;
  i.protocol_version = drv_ && drv_->is_open() ? drv_->protocol_version() : 0;
  return i;
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
