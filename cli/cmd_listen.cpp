// pgq listen: prints each notification as one NDJSON line as it arrives.
//
// It runs on a pgq::listener, not on the session's pool: the listener keeps
// a connection of its own, reconnects with backoff after a loss and LISTENs
// again, and tells us about the gap, which we pass on as an event line (a
// consumer must then re-read whatever state the notifications announce).
#include "cmd_listen.hpp"

#include <pgq/notify.hpp>
#include <pgq/timeout.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

namespace asio = boost::asio;

namespace pgq::cli {
namespace {

struct listen_args {
  std::vector<std::string> channels;
  std::uint64_t count = 0;  // 0: no limit
  std::string duration;     // empty: no limit
};

std::string ndjson(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void print_event(const pgq::listener_event& ev) {
  nlohmann::ordered_json j;
  if (ev.what == pgq::listener_event::kind::notification) {
    j["channel"] = ev.note.channel;
    j["payload"] = ev.note.payload;
    j["pid"] = ev.note.sender_pid;
  } else {
    j["event"] = "reconnected";
    j["reason"] = ev.reason;
    std::cerr << "pgq: connection lost (" << ev.reason
              << "); reconnected and listening again: notifications sent meanwhile may be missing\n";
  }
  // Flushed line by line: a consumer reading the pipe sees each one at once.
  std::cout << ndjson(j) << '\n' << std::flush;
}

asio::awaitable<int> run_listen(session& s, const listen_args* a, std::optional<std::chrono::milliseconds> limit) {
  using clock = std::chrono::steady_clock;
  const auto deadline = limit ? std::optional<clock::time_point>(clock::now() + *limit) : std::nullopt;
  pgq::listener l(co_await asio::this_coro::executor, s.options().dsn);
  for (const auto& c : a->channels) {
    auto op = l.listen(c);
    if (s.timeout()) co_await pgq::with_timeout(std::move(op), *s.timeout());
    else co_await std::move(op);
  }
  if (s.options().verbose) {
    std::cerr << "pgq: listening on";
    for (const auto& c : a->channels) std::cerr << ' ' << c;
    std::cerr << " (backend pid " << l.backend_pid() << ")\n";
  }
  std::uint64_t received = 0;
  while (a->count == 0 || received < a->count) {
    pgq::listener_event ev;
    if (deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - clock::now());
      if (left.count() <= 0) break;
      bool expired = false;
      try {
        ev = co_await pgq::with_timeout(l.next(), left);
      } catch (const pgq::sql_error& e) {
        if (e.code() != pgq::errc::timeout) throw;
        expired = true;
      }
      if (expired) break;
    } else {
      ev = co_await l.next();
    }
    print_event(ev);
    if (ev.what == pgq::listener_event::kind::notification) ++received;
  }
  co_return exit_code::ok;
}

int listen_command(const global_options& g, const listen_args& a) {
  if (!g.format.empty() && g.format != "ndjson") {
    throw usage_error("pgq listen writes NDJSON only (--format " + g.format + " is not supported)");
  }
  const auto limit = a.duration.empty() ? std::nullopt : std::optional(parse_duration(a.duration));
  session s(g);
  const listen_args* ap = &a;
  // The pool stays empty (it opens connections on demand): the listener
  // holds the one connection this command uses.
  return s.run([ap, limit](session& ss) { return run_listen(ss, ap, limit); }, 1);
}

}  // namespace

void add_listen_command(CLI::App& app, const global_options& g, int& exit_code) {
  auto a = std::make_shared<listen_args>();
  auto* cmd =
      app.add_subcommand("listen",
                         "LISTEN on each CHANNEL and print every notification as one NDJSON line, as it arrives:\n"
                         "  {\"channel\":\"jobs\",\"payload\":\"42\",\"pid\":1234}\n"
                         "If the connection is lost, pgq reconnects (with backoff), LISTENs again and prints\n"
                         "  {\"event\":\"reconnected\",\"reason\":\"...\"}\n"
                         "on stdout (and a note on stderr): notifications sent during the gap may be missing.\n"
                         "Runs until Ctrl-C (exit 130), --count notifications or --duration (exit 0).\n"
                         "--timeout limits connecting and each LISTEN.");
  cmd->add_option("channels", a->channels, "channel names (taken as they are: quoted for you)")->required();
  cmd->add_option("-n,--count", a->count, "exit 0 after N notifications")->check(CLI::PositiveNumber);
  cmd->add_option("--duration", a->duration, "exit 0 after this long, e.g. 30s, 5m");
  cmd->footer(exit_codes_help);
  cmd->callback([a, &g, &exit_code] { exit_code = listen_command(g, *a); });
}

}  // namespace pgq::cli
