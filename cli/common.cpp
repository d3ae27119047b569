#include "common.hpp"

#include <pgq/connection.hpp>
#include <pgq/timeout.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <sstream>
#include <unistd.h>

namespace asio = boost::asio;

namespace pgq::cli {

const char* const exit_codes_help =
    "Exit codes: 0 success; 1 a statement failed; 2 bad usage; 3 could not connect;\n"
    "4 timed out (--timeout) or cancelled; 130 interrupted (Ctrl-C cancels running\n"
    "statements on the server and rolls back open transactions first).";

std::chrono::milliseconds parse_duration(std::string_view text) {
  const std::string_view original = text;
  std::size_t digits = 0;
  while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) != 0 || text[digits] == '.')) {
    ++digits;
  }
  const std::string number(text.substr(0, digits));
  const std::string_view unit = text.substr(digits);
  double value = 0;
  char* end = nullptr;
  if (!number.empty()) value = std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size()) {
    throw usage_error("invalid duration \"" + std::string(original) + "\" (e.g. 500ms, 2s, 1m)");
  }
  double ms = 0;
  if (unit == "ms") ms = value;
  else if (unit.empty() || unit == "s") ms = value * 1000;
  else if (unit == "m" || unit == "min") ms = value * 60'000;
  else if (unit == "h") ms = value * 3'600'000;
  else throw usage_error("invalid duration unit in \"" + std::string(original) + "\" (ms, s, m or h)");
  if (ms < 1) throw usage_error("duration \"" + std::string(original) + "\" must be at least 1 ms");
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

output_format resolve_format(const global_options& g) {
  if (g.format.empty()) return ::isatty(STDOUT_FILENO) != 0 ? output_format::table : output_format::ndjson;
  output_format f{};
  if (!parse_format(g.format, f)) {
    throw usage_error("unknown format \"" + g.format + "\" (table, json, ndjson or csv)");
  }
  return f;
}

std::optional<std::chrono::milliseconds> statement_timeout(const global_options& g) {
  if (g.timeout.empty()) return std::nullopt;
  return parse_duration(g.timeout);
}

std::string read_file(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw usage_error("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

// One UTF-8 character of a statement, for locating the error position.
struct char_span {
  std::size_t begin;
  std::size_t size;
};

std::vector<char_span> utf8_chars(std::string_view s) {
  std::vector<char_span> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    n = std::min(n, s.size() - i);
    out.push_back({i, n});
    i += n;
  }
  return out;
}

// psql's "LINE n:" excerpt: the line holding the 1-based character
// `position`, cut to about 60 characters around it, and a caret under it.
void print_position(std::ostream& out, std::string_view statement, int position) {
  const auto chars = utf8_chars(statement);
  if (position < 1 || chars.empty()) return;
  // "at end of input" points one past the last character.
  std::size_t pos = std::min(static_cast<std::size_t>(position - 1), chars.size());
  std::size_t line_no = 1;
  std::size_t line_begin = 0;  // index into chars
  for (std::size_t i = 0; i < pos; ++i) {
    if (statement[chars[i].begin] == '\n') {
      ++line_no;
      line_begin = i + 1;
    }
  }
  std::size_t line_end = line_begin;
  while (line_end < chars.size() && statement[chars[line_end].begin] != '\n' &&
         statement[chars[line_end].begin] != '\r') {
    ++line_end;
  }
  if (pos > line_end) pos = line_end;
  constexpr std::size_t display = 60;
  constexpr std::size_t right_margin = 10;
  std::size_t from = line_begin;
  std::size_t to = line_end;
  bool cut_left = false;
  bool cut_right = false;
  if (to - from > display) {
    if (pos - from > display - right_margin) {
      from = pos + right_margin - display;
      cut_left = true;
    }
    if (to - from > display) {
      to = from + display;
      cut_right = true;
    }
  }
  std::string prefix = "LINE " + std::to_string(line_no) + ": ";
  std::string text;
  for (std::size_t i = from; i < to; ++i) {
    const char ch = statement[chars[i].begin];
    if (ch == '\t') text.push_back(' ');
    else text.append(statement.substr(chars[i].begin, chars[i].size));
  }
  out << prefix << (cut_left ? "..." : "") << text << (cut_right ? "..." : "") << '\n';
  out << std::string(prefix.size() + (cut_left ? 3 : 0) + (pos - from), ' ') << "^\n";
}

}  // namespace

void print_error(std::ostream& out, const std::exception& e, std::string_view where) {
  const std::string head = where.empty() ? std::string() : "pgq:" + std::string(where) + ": ";
  const auto* se = dynamic_cast<const pgq::sql_error*>(&e);
  if (se == nullptr || se->sqlstate().empty()) {
    std::string msg = e.what();
    if (se != nullptr) {
      // A client error's what() appends " [in: statement]": psql does not.
      const auto in = msg.rfind(" [in: ");
      if (in != std::string::npos) msg.erase(in);
    }
    out << (head.empty() ? "pgq: " : head) << msg << '\n';
    return;
  }
  const pgq::diagnostics& d = se->diag();
  out << head << (d.severity.empty() ? "ERROR" : d.severity) << ": " << d.sqlstate << ": " << d.message << '\n';
  if (d.position) print_position(out, d.statement, *d.position);
  if (!d.detail.empty()) out << "DETAIL: " << d.detail << '\n';
  if (!d.hint.empty()) out << "HINT: " << d.hint << '\n';
  if (!d.internal_query.empty()) out << "QUERY: " << d.internal_query << '\n';
  if (!d.context.empty()) out << "CONTEXT: " << d.context << '\n';
}

bool is_cancellation(const std::exception& e) {
  if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e)) {
    return se->code() == pgq::errc::cancelled || se->code() == asio::error::operation_aborted;
  }
  return false;
}

int exit_code_of(const std::exception& e) {
  if (dynamic_cast<const usage_error*>(&e) != nullptr) return exit_code::usage;
  if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e)) {
    const auto ec = se->code();
    if (ec == pgq::errc::connect_failed || ec == pgq::errc::bad_conninfo || ec == pgq::errc::pool_timeout) {
      return exit_code::connect;
    }
    if (ec == pgq::errc::timeout || ec == pgq::errc::cancelled || ec == asio::error::operation_aborted) {
      return exit_code::timeout;
    }
    const std::string state = pgq::sqlstate_of(ec);
    if (state == "57014") return exit_code::timeout;  // query_canceled: statement_timeout, pg_cancel_backend
    if (state.rfind("08", 0) == 0 || state.rfind("28", 0) == 0) return exit_code::connect;
  }
  return exit_code::failed;
}

int exit_code_of(const std::exception_ptr& e) {
  if (!e) return exit_code::ok;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return exit_code_of(x);
  } catch (...) {
    return exit_code::failed;
  }
}

double elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

session::session(const global_options& g) : g_(g), timeout_(statement_timeout(g)) {
  if (g_.connections == 0) throw usage_error("--connections must be at least 1");
}

asio::cancellation_slot session::interrupt_slot() { return signals_.emplace_back().slot(); }

void session::on_interrupt() {
  interrupted_ = true;
  for (auto& s : signals_) s.emit(asio::cancellation_type::terminal);
}

asio::awaitable<void> session::gather(std::vector<asio::awaitable<void>> tasks) {
  if (tasks.empty()) co_return;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer all_done(ex, std::chrono::steady_clock::time_point::max());
  std::size_t remaining = tasks.size();
  std::exception_ptr first;
  for (auto& t : tasks) {
    auto on_done = [&remaining, &first, &all_done](const std::exception_ptr& e) {
      if (e && !first) first = e;
      if (--remaining == 0) all_done.cancel();
    };
    asio::co_spawn(ex, std::move(t), asio::bind_cancellation_slot(interrupt_slot(), std::move(on_done)));
  }
  // Not cancellable itself: the tasks are, and this waits for them to unwind.
  while (remaining > 0) {
    co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (first) std::rethrow_exception(first);
}

asio::awaitable<pgq::result> session::timed(asio::awaitable<pgq::result> op) {
  if (!timeout_) co_return co_await std::move(op);
  co_return co_await pgq::with_timeout(std::move(op), *timeout_);
}

namespace {

// Connects once so that a server that is down or refuses us is reported at
// once (the pool would keep retrying until its acquire timeout).
asio::awaitable<void> check_connect(std::string dsn) {
  pgq::connection conn(co_await asio::this_coro::executor);
  co_await conn.connect(dsn);
  conn.close();
}

asio::awaitable<void> guarded_body(session* s, std::function<asio::awaitable<int>(session&)>* body,
                                   std::optional<pgq::pool>* pool, std::size_t pool_size, int* rc) {
  try {
    co_await check_connect(s->options().dsn);
  } catch (const std::exception& e) {
    if (s->interrupted()) co_return;
    print_error(std::cerr, e);
    *rc = exit_code_of(e) == exit_code::timeout && !is_cancellation(e) ? exit_code::connect : exit_code_of(e);
    if (*rc == exit_code::failed) *rc = exit_code::connect;
    co_return;
  }
  pgq::pool_options opts;
  opts.conninfo = s->options().dsn;
  opts.max_size = pool_size;
  opts.strand_per_connection = false;                   // one thread runs the loop
  opts.acquire_timeout = std::chrono::milliseconds(0);  // queue as long as it takes
  pool->emplace(co_await asio::this_coro::executor, std::move(opts));
  *rc = co_await (*body)(*s);
}

// -v: what the pool did, after the statements' own timings.
void print_pool_stats(std::ostream& os, const pgq::pool_stats& st) {
  const double wait_ms = st.acquires == 0 ? 0.0
                                          : std::chrono::duration<double, std::milli>(st.acquire_wait_total).count() /
                                                static_cast<double>(st.acquires);
  const std::uint64_t closed = st.closed_idle + st.closed_lifetime + st.closed_broken + st.closed_health_check +
                               st.closed_reset_failed + st.closed_pool_closed;
  os << "pgq: pool: " << st.created << " connections opened (" << st.connect_failures << " failed, " << closed
     << " closed), " << st.acquires << " acquires (" << st.shared_acquires << " shared), mean wait " << std::fixed
     << std::setprecision(3) << wait_ms << " ms, " << st.timeouts << " timeouts, " << st.resets << " resets; now "
     << st.size << " open: " << st.idle << " idle, " << st.in_use << " in use\n";
  os.unsetf(std::ios::fixed);
}

asio::awaitable<void> session_main(session* s, std::function<asio::awaitable<int>(session&)>* body,
                                   std::optional<pgq::pool>* pool, std::size_t pool_size, int* rc) {
  std::vector<asio::awaitable<void>> tasks;
  tasks.push_back(guarded_body(s, body, pool, pool_size, rc));
  try {
    co_await s->gather(std::move(tasks));
  } catch (const std::exception& e) {
    if (!s->interrupted()) {
      print_error(std::cerr, e);
      *rc = exit_code_of(e);
    }
  }
  // Waits for the connections to come back and be cleaned: a statement
  // cancelled by Ctrl-C is acknowledged by the server, an open transaction is
  // rolled back, before the process ends.
  if (*pool) {
    if (s->options().verbose) print_pool_stats(std::cerr, (*pool)->stats());
    co_await (*pool)->close(std::chrono::seconds(5));
  }
}

}  // namespace

int session::run(std::function<asio::awaitable<int>(session&)> body, std::size_t pool_size) {
  int rc = exit_code::ok;
  asio::signal_set sigs(ctx_, SIGINT);
  bool finished = false;
  std::function<void(const boost::system::error_code&, int)> on_signal;
  on_signal = [&](const boost::system::error_code& ec, int) {
    if (ec || finished) return;
    if (interrupted_) std::_Exit(exit_code::interrupted);  // second Ctrl-C: leave now
    std::cerr << "pgq: interrupted, cancelling\n";
    on_interrupt();
    sigs.async_wait(on_signal);
  };
  sigs.async_wait(on_signal);
  std::exception_ptr failure;
  asio::co_spawn(ctx_, session_main(this, &body, &pool_, pool_size == 0 ? g_.connections : pool_size, &rc),
                 [&](std::exception_ptr e) {
                   failure = std::move(e);
                   finished = true;
                   boost::system::error_code ignored;
                   sigs.cancel(ignored);
                 });
  ctx_.run();
  pool_.reset();
  if (interrupted_) return exit_code::interrupted;
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      print_error(std::cerr, e);
      return exit_code_of(e);
    }
  }
  return rc;
}

}  // namespace pgq::cli
