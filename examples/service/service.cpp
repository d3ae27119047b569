// An HTTP JSON service over the migrations/ bookshop, with Boost.Beast and
// pgq on one io_context: what a service that links pgq looks like.
//
//   GET  /books/{id}            one book (404 when there is none)
//   GET  /books?limit=N&after=T books by title after T, streamed from the
//                               server to the client as chunks
//   POST /orders                {"book_id", "customer_email", "quantity"}:
//                               a serializable transaction, retried on 40001
//   GET  /sleep?seconds=S       pg_sleep(S): shows the deadline at work
//   GET  /metrics               Prometheus text (pgq::metrics)
//   GET  /healthz               200 when the pool answers SELECT 1, else 503
//
// Every request has a deadline (--deadline-ms): past it the statement is
// cancelled on the server and the client gets 504. SIGTERM or SIGINT: stop
// accepting, let in-flight requests finish within --grace-ms (then cut
// them), close the pool, exit 0.
//
// Usage: pgq_example_service --dsn DSN [--listen 127.0.0.1:8080]
//          [--deadline-ms 2000] [--grace-ms 10000] [--pool-size 8] [--threads 1]
// Prints "listening on ADDRESS:PORT" when it accepts (port 0: a free one).
#include <pgq/metrics.hpp>
#include <pgq/pgq.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

struct settings {
  std::string dsn;
  std::string listen = "127.0.0.1:8080";
  std::chrono::milliseconds deadline{2000};
  std::chrono::milliseconds grace{10000};
  std::size_t pool_size = 8;
  int threads = 1;
};

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

// What the handlers share. The pool and the metrics are safe from any thread.
struct app {
  settings cfg;
  std::string database;  // db.namespace of the metrics
  pgq::pool& pool;
  pgq::metrics& metrics;
  std::atomic<int> in_flight{0};
  std::atomic<bool> draining{false};
};

response json_response(const request& req, http::status status, const nlohmann::json& body) {
  response res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = body.dump();
  res.prepare_payload();
  return res;
}

response error_response(const request& req, http::status status, std::string message) {
  return json_response(req, status, nlohmann::json{{"error", std::move(message)}});
}

// The value of `key` in the query string of `target` (no percent-decoding:
// the example's parameters are plain).
std::optional<std::string> query_param(std::string_view target, std::string_view key) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return std::string(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::optional<long> to_number(const std::optional<std::string>& s) {
  if (!s) return std::nullopt;
  long v = 0;
  const auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc{} || p != s->data() + s->size()) return std::nullopt;
  return v;
}

bool is_uuid(std::string_view s) {
  static const std::regex re("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}");
  return std::regex_match(s.begin(), s.end(), re);
}

// Times a statement into the metrics under its first keyword.
template <class T>
asio::awaitable<T> timed(app& a, std::string_view sql, asio::awaitable<T> op) {
  const auto start = std::chrono::steady_clock::now();
  pgq::operation_sample s;
  s.db_namespace = a.database;
  const std::string name = pgq::operation_name(sql);
  s.operation = name;
  std::string code;
  try {
    T value = co_await std::move(op);
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    a.metrics.record_operation(s);
    co_return value;
  } catch (const pgq::sql_error& e) {
    code = e.sqlstate();
    s.status_code = code;
    s.error_type = code.empty() ? std::string_view("client") : std::string_view(code);
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    a.metrics.record_operation(s);
    throw;
  }
}

constexpr std::string_view book_sql =
    "SELECT b.id::text AS id, b.title, a.name AS author, b.price, b.published_on, b.tags "
    "FROM books b JOIN authors a ON a.id = b.author_id WHERE b.id = $1::uuid";

asio::awaitable<response> get_book(app& a, const request& req, std::string id) {
  if (!is_uuid(id)) co_return error_response(req, http::status::bad_request, "not a book id: " + id);
  auto rows = co_await timed(a, book_sql, a.pool.query(book_sql, id));
  if (rows.size() == 0) co_return error_response(req, http::status::not_found, "no book " + id);
  co_return json_response(req, http::status::ok, rows[0].to_json());
}

constexpr std::string_view list_sql =
    "SELECT b.id::text AS id, b.title, a.name AS author, b.price "
    "FROM books b JOIN authors a ON a.id = b.author_id WHERE b.title > $1 ORDER BY b.title LIMIT $2::int4";

// Rows go to the client as they come from the server: a chunk per few rows.
// Returns false when the response was cut (the connection must close).
asio::awaitable<bool> list_books(app& a, const request& req, beast::tcp_stream& stream) {
  const auto limit = to_number(query_param(req.target(), "limit")).value_or(20);
  if (limit < 1 || limit > 1000) {
    auto res = error_response(req, http::status::bad_request, "limit must be 1 to 1000");
    co_await http::async_write(stream, res, asio::use_awaitable);
    co_return true;
  }
  const std::string after = query_param(req.target(), "after").value_or("");
  auto rows = co_await timed(a, list_sql, a.pool.stream(list_sql, after, static_cast<int>(limit)));

  http::response<http::empty_body> head{http::status::ok, req.version()};
  head.set(http::field::content_type, "application/json");
  head.keep_alive(req.keep_alive() && !a.draining);
  head.chunked(true);
  http::response_serializer<http::empty_body> sr{head};
  co_await http::async_write_header(stream, sr, asio::use_awaitable);

  // The status is out: a failure from here on (the deadline, the server)
  // can only end the response early, by closing the connection without the
  // last chunk, which the client sees as a truncated body.
  try {
    std::string chunk = "{\"books\":[";
    std::string last_title;
    bool first = true;
    while (auto r = co_await rows.next()) {
      if (!first) chunk += ',';
      first = false;
      chunk += r->to_json().dump();
      last_title = std::string(r->get<std::string_view>(1));
      if (chunk.size() > 8192) {
        co_await asio::async_write(stream, http::make_chunk(asio::buffer(chunk)), asio::use_awaitable);
        chunk.clear();
      }
    }
    chunk += "],\"next\":";
    chunk += first ? "null" : nlohmann::json(last_title).dump();
    chunk += '}';
    co_await asio::async_write(stream, http::make_chunk(asio::buffer(chunk)), asio::use_awaitable);
    co_await asio::async_write(stream, http::make_chunk_last(), asio::use_awaitable);
  } catch (const std::exception& e) {
    std::cerr << "service: GET /books cut short: " << e.what() << '\n';
    co_return false;
  }
  co_return head.keep_alive();
}

asio::awaitable<response> place_order(app& a, const request& req) {
  nlohmann::json body;
  try {
    body = nlohmann::json::parse(req.body());
  } catch (const nlohmann::json::exception& e) {
    co_return error_response(req, http::status::bad_request, std::string("the body is not JSON: ") + e.what());
  }
  if (!body.is_object() || !body.contains("book_id") || !body["book_id"].is_string() ||
      !body.contains("customer_email") || !body["customer_email"].is_string() || !body.contains("quantity") ||
      !body["quantity"].is_number_integer()) {
    co_return error_response(req, http::status::bad_request,
                             "expected {\"book_id\": uuid, \"customer_email\": text, \"quantity\": integer}");
  }
  const std::string book_id = body["book_id"].get<std::string>();
  const std::string email = body["customer_email"].get<std::string>();
  const auto quantity = body["quantity"].get<long long>();
  if (!is_uuid(book_id)) co_return error_response(req, http::status::bad_request, "not a book id: " + book_id);
  if (quantity < 1 || quantity > 1000)
    co_return error_response(req, http::status::bad_request, "quantity must be 1 to 1000");

  std::optional<nlohmann::json> placed;
  auto work = [&](pgq::transaction& tx) -> asio::awaitable<void> {
    placed.reset();
    auto price = co_await tx.query("SELECT price FROM books WHERE id = $1::uuid", book_id);
    if (price.size() == 0) co_return;
    const auto unit_price = price[0].get<pgq::numeric>(0);
    const int count = static_cast<int>(quantity);
    // The customer's account, made at the first order (two first orders at
    // once: one of them gets 40001 and is run again).
    auto account = co_await tx.query(
        "INSERT INTO accounts (email) VALUES ($1) ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email "
        "RETURNING id",
        email);
    const auto account_id = account[0].get<std::int64_t>(0);
    auto row = co_await tx.query(
        "INSERT INTO orders (book_id, customer_email, quantity, unit_price, account_id) "
        "VALUES ($1::uuid, $2, $3::int4, $4, $5) RETURNING id, account_id, unit_price, unit_price * quantity AS total",
        book_id, email, count, unit_price, account_id);
    placed = row[0].to_json();
  };
  // Every conflicting transaction but one is rerun in each round: enough
  // rounds for a burst of first orders of one customer.
  const pgq::tx_options opts{.level = pgq::isolation::serializable, .retries = 32};
  const auto start = std::chrono::steady_clock::now();
  co_await pgq::transact(a.pool, opts, work);
  pgq::operation_sample s;
  s.db_namespace = a.database;
  s.operation = "TRANSACTION";
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  a.metrics.record_operation(s);
  if (!placed) co_return error_response(req, http::status::not_found, "no book " + book_id);
  co_return json_response(req, http::status::created, *placed);
}

asio::awaitable<response> sleep_for(app& a, const request& req) {
  const auto seconds = to_number(query_param(req.target(), "seconds"));
  if (!seconds || *seconds < 0 || *seconds > 60) {
    co_return error_response(req, http::status::bad_request, "seconds must be 0 to 60");
  }
  constexpr std::string_view sql = "SELECT pg_sleep($1::int4)";
  const int how_long = static_cast<int>(*seconds);
  co_await timed(a, sql, a.pool.query(sql, how_long));
  co_return json_response(req, http::status::ok, nlohmann::json{{"slept", *seconds}});
}

response metrics_response(app& a, const request& req) {
  const auto st = a.pool.stats();
  a.metrics.set_connection_count("main", st.idle, st.size - st.idle);
  a.metrics.set_connection_limits("main", a.cfg.pool_size, 0, a.cfg.pool_size);
  a.metrics.set_pending_requests("main", st.waiting);
  response res{http::status::ok, req.version()};
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.keep_alive(req.keep_alive());
  res.body() = a.metrics.prometheus_text();
  res.prepare_payload();
  return res;
}

asio::awaitable<response> healthz(app& a, const request& req) {
  const auto st = a.pool.stats();
  nlohmann::json body{{"pool", {{"size", st.size}, {"idle", st.idle}, {"in_use", st.in_use}, {"waiting", st.waiting}}}};
  try {
    co_await pgq::with_timeout(a.pool.query("SELECT 1"), 1s);
    body["status"] = "ok";
    co_return json_response(req, http::status::ok, body);
  } catch (const pgq::sql_error& e) {
    body["status"] = "unavailable";
    body["error"] = e.what();
    co_return json_response(req, http::status::service_unavailable, body);
  }
}

// Routes one request and writes the response. Returns false when the
// connection must close after it.
asio::awaitable<bool> handle(app& a, const request& req, beast::tcp_stream& stream) {
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  std::optional<response> res;
  try {
    if (req.method() == http::verb::get && path.starts_with("/books/")) {
      std::string id(path.substr(7));
      res = co_await pgq::with_timeout(get_book(a, req, std::move(id)), a.cfg.deadline);
    } else if (req.method() == http::verb::get && path == "/books") {
      co_return co_await pgq::with_timeout(list_books(a, req, stream), a.cfg.deadline);
    } else if (req.method() == http::verb::post && path == "/orders") {
      res = co_await pgq::with_timeout(place_order(a, req), a.cfg.deadline);
    } else if (req.method() == http::verb::get && path == "/sleep") {
      res = co_await pgq::with_timeout(sleep_for(a, req), a.cfg.deadline);
    } else if (req.method() == http::verb::get && path == "/metrics") {
      res = metrics_response(a, req);
    } else if (req.method() == http::verb::get && path == "/healthz") {
      res = co_await healthz(a, req);
    } else {
      res = error_response(req, http::status::not_found, "no route " + std::string(path));
    }
  } catch (const pgq::sql_error& e) {
    if (e.code() == pgq::errc::timeout) {
      res = error_response(req, http::status::gateway_timeout,
                           "deadline of " + std::to_string(a.cfg.deadline.count()) + " ms exceeded");
    } else if (e.sqlstate() == "40001" || e.sqlstate() == "40P01") {  // still conflicting after the retries
      res = error_response(req, http::status::conflict, e.what());
    } else if (e.sqlstate().starts_with("23")) {  // integrity: the input broke a constraint
      res = error_response(req, http::status::unprocessable_entity, e.what());
    } else if (e.code() == pgq::errc::pool_timeout || e.code() == pgq::errc::pool_closed) {
      res = error_response(req, http::status::service_unavailable, e.what());
    } else {
      res = error_response(req, http::status::internal_server_error, e.what());
    }
  }
  if (a.draining) res->keep_alive(false);
  const bool keep = res->keep_alive();
  co_await http::async_write(stream, *res, asio::use_awaitable);
  co_return keep;
}

asio::awaitable<void> session(app& a, tcp::socket socket) {
  // A chunked response is several writes: without TCP_NODELAY, Nagle's
  // algorithm and the client's delayed ACK hold each one up ~40 ms.
  beast::error_code nodelay_error;
  socket.set_option(tcp::no_delay(true), nodelay_error);
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  try {
    while (!a.draining) {
      request req;
      http::request_parser<http::string_body> parser;
      parser.body_limit(64 * 1024);
      stream.expires_after(30s);  // an idle keep-alive connection is closed
      co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
      req = parser.release();
      stream.expires_never();
      ++a.in_flight;
      bool keep = false;
      try {
        keep = co_await handle(a, req, stream);
      } catch (...) {
        --a.in_flight;
        throw;
      }
      --a.in_flight;
      if (!keep) break;
    }
  } catch (const pgq::sql_error& e) {  // a pgq::sql_error is a system_error: first
    std::cerr << "service: request failed mid-response: " << e.what() << '\n';
  } catch (const boost::system::system_error&) {
    // The client went away, sent garbage, or idled out: nothing to answer.
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> serve(app& a, tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;  // e.g. out of descriptors: keep accepting
    }
    asio::co_spawn(asio::make_strand(acceptor.get_executor()), session(a, std::move(socket)), asio::detached);
  }
}

// SIGTERM/SIGINT: stop accepting, wait for in-flight requests up to the
// grace period, close the pool (which waits for what still runs), stop.
asio::awaitable<void> shutdown_on_signal(app& a, tcp::acceptor& acceptor, asio::io_context& ctx) {
  asio::signal_set signals(co_await asio::this_coro::executor, SIGTERM, SIGINT);
  const int sig = co_await signals.async_wait(asio::use_awaitable);
  std::cerr << "service: signal " << sig << ": draining\n";
  a.draining = true;
  beast::error_code ignored;
  acceptor.close(ignored);
  const auto until = std::chrono::steady_clock::now() + a.cfg.grace;
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (a.in_flight > 0 && std::chrono::steady_clock::now() < until) {
    tick.expires_after(10ms);
    co_await tick.async_wait(asio::use_awaitable);
  }
  if (a.in_flight > 0) std::cerr << "service: " << a.in_flight << " request(s) still running after the grace period\n";
  co_await a.pool.close(2s);
  std::cerr << "service: stopped\n";
  ctx.stop();
}

settings parse_args(int argc, char** argv) {
  settings s;
  if (const char* d = std::getenv("PGQ_DSN")) s.dsn = d;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    auto number = [&](const std::string& v) {
      const auto n = to_number(v);
      if (!n || *n < 0) {
        std::string message = arg;
        message += ": not a number: ";
        message += v;
        throw std::invalid_argument(message);
      }
      return *n;
    };
    if (arg == "--dsn") {
      s.dsn = value();
    } else if (arg == "--listen") {
      s.listen = value();
    } else if (arg == "--deadline-ms") {
      s.deadline = std::chrono::milliseconds(number(value()));
    } else if (arg == "--grace-ms") {
      s.grace = std::chrono::milliseconds(number(value()));
    } else if (arg == "--pool-size") {
      s.pool_size = static_cast<std::size_t>(number(value()));
    } else if (arg == "--threads") {
      s.threads = static_cast<int>(number(value()));
    } else {
      throw std::invalid_argument("unknown argument " + arg);
    }
  }
  if (s.threads < 1 || s.threads > 64) throw std::invalid_argument("--threads must be 1 to 64");
  if (s.pool_size < 1) throw std::invalid_argument("--pool-size must be at least 1");
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  settings cfg;
  try {
    cfg = parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "service: " << e.what() << "\nusage: " << argv[0]
              << " --dsn DSN [--listen HOST:PORT] [--deadline-ms N] [--grace-ms N] [--pool-size N] [--threads N]\n";
    return 2;
  }
  try {
    asio::io_context ctx(cfg.threads);
    const auto colon = cfg.listen.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("--listen needs HOST:PORT");
    const auto port = to_number(cfg.listen.substr(colon + 1));
    if (!port || *port > 65535) throw std::invalid_argument("--listen: bad port");
    const tcp::endpoint at(asio::ip::make_address(cfg.listen.substr(0, colon)), static_cast<unsigned short>(*port));
    tcp::acceptor acceptor(ctx, at);

    pgq::pool_options options;
    options.conninfo = cfg.dsn;
    options.max_size = cfg.pool_size;
    options.strand_per_connection = cfg.threads > 1;
    pgq::pool pool(ctx.get_executor(), options);
    pgq::metrics metrics;
    const std::string database = pgq::conninfo::parse(cfg.dsn).get("dbname").value_or("");
    app a{cfg, database, pool, metrics};

    std::cout << "listening on " << acceptor.local_endpoint() << std::endl;  // the test waits for this line
    asio::co_spawn(ctx, serve(a, acceptor), asio::detached);
    asio::co_spawn(ctx, shutdown_on_signal(a, acceptor, ctx), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    std::vector<std::thread> more;
    for (int i = 1; i < cfg.threads; ++i) more.emplace_back([&ctx] { ctx.run(); });
    ctx.run();
    for (auto& t : more) t.join();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "service: " << e.what() << '\n';
    return 1;
  }
}
