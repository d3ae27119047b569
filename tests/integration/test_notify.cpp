// LISTEN/NOTIFY on a connection, and the listener that survives connection loss.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <map>

using namespace pgq_test;
namespace asio = boost::asio;

TEST_CASE("notify: 10,000 notifications on 3 channels arrive complete and in order", "[notify]") {
  run(
      []() -> asio::awaitable<void> {
        auto listener = co_await connect();
        auto sender = co_await connect();
        const std::string base = unique_name("chan");
        const std::string channels[3] = {base + "_a", base + "_b", base + "_c"};
        for (const auto& c : channels) co_await listener.listen(c);
        // Sent from one session in one statement per 1,000: delivered in order.
        for (int batch = 0; batch < 10; ++batch) {
          co_await sender.execute(
              "SELECT pg_notify($1 || '_' || chr(97 + (i % 3)), i::text) FROM generate_series($2::int, $3::int) i",
              base, batch * 1000, batch * 1000 + 999);
        }
        std::map<std::string, int> last;
        int received = 0, out_of_order = 0, wrong_channel = 0;
        const int sender_pid = sender.backend_pid();
        int wrong_pid = 0;
        while (received < 10'000) {
          pgq::notification n = co_await pgq::with_timeout(listener.next_notification(), std::chrono::seconds(10));
          const int i = std::stoi(n.payload);
          if (n.channel != base + "_" + static_cast<char>('a' + i % 3)) ++wrong_channel;
          if (last.count(n.channel) != 0 && last[n.channel] >= i) ++out_of_order;
          if (i != received) ++out_of_order;
          if (n.sender_pid != sender_pid) ++wrong_pid;
          last[n.channel] = i;
          ++received;
        }
        CHECK(received == 10'000);
        CHECK(out_of_order == 0);
        CHECK(wrong_channel == 0);
        CHECK(wrong_pid == 0);
        CHECK(listener.notifications_dropped() == 0);
      },
      120s);
}

TEST_CASE("notify: notifications during a long query are kept and delivered after it", "[notify]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    auto sender = co_await connect();
    const std::string chan = unique_name("during");
    co_await conn.listen(chan);
    auto ex = co_await asio::this_coro::executor;
    auto long_query = asio::co_spawn(ex, conn.query("SELECT pg_sleep(0.5), 'done'::text"), asio::use_awaitable);
    asio::steady_timer t(ex);
    t.expires_after(std::chrono::milliseconds(100));
    co_await t.async_wait(asio::use_awaitable);
    co_await sender.notify(chan, "first");
    co_await sender.notify(chan, "second");
    auto r = co_await std::move(long_query);
    CHECK(r[0].get<std::string>(1) == "done");
    auto a = co_await pgq::with_timeout(conn.next_notification(), std::chrono::seconds(5));
    auto b = co_await pgq::with_timeout(conn.next_notification(), std::chrono::seconds(5));
    CHECK(a.payload == "first");
    CHECK(b.payload == "second");
    CHECK(a.channel == chan);
    // A channel name needing quotes, and a payload with quotes.
    const std::string odd = "Odd \"Name\" " + chan;
    co_await conn.listen(odd);
    co_await sender.notify(odd, "it's \"quoted\"");
    auto c = co_await pgq::with_timeout(conn.next_notification(), std::chrono::seconds(5));
    CHECK(c.channel == odd);
    CHECK(c.payload == "it's \"quoted\"");
    // Unlisten: nothing more arrives for it.
    co_await conn.unlisten(odd);
    co_await sender.notify(odd, "ignored");
    co_await sender.notify(chan, "still");
    auto d = co_await pgq::with_timeout(conn.next_notification(), std::chrono::seconds(5));
    CHECK(d.payload == "still");
  });
}

TEST_CASE("notify: waiting times out cleanly and the connection stays usable", "[notify]") {
  run([]() -> asio::awaitable<void> {
    auto conn = co_await connect();
    co_await conn.listen(unique_name("quiet"));
    std::string error;
    try {
      co_await pgq::with_timeout(conn.next_notification(), std::chrono::milliseconds(100));
    } catch (const pgq::sql_error& e) {
      error = e.code() == pgq::errc::timeout ? "timeout" : e.what();
    }
    CHECK(error == "timeout");
    auto r = co_await conn.query("SELECT 1");
    CHECK(r[0].get<int>(0) == 1);
  });
}

TEST_CASE("notify: the listener survives pg_terminate_backend and reports the gap", "[notify]") {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    pgq::listener_options opts;
    opts.backoff_initial = std::chrono::milliseconds(20);
    pgq::listener l(ex, dsn(), opts);
    const std::string chan = unique_name("survivor");
    co_await l.listen(chan);
    auto admin = co_await connect();
    co_await admin.notify(chan, "before");
    auto e1 = co_await pgq::with_timeout(l.next(), std::chrono::seconds(5));
    CHECK(e1.what == pgq::listener_event::kind::notification);
    CHECK(e1.note.payload == "before");

    const int old_pid = l.backend_pid();
    REQUIRE(old_pid != 0);
    co_await admin.query("SELECT pg_terminate_backend($1)", old_pid);
    auto e2 = co_await pgq::with_timeout(l.next(), std::chrono::seconds(10));
    CHECK(e2.what == pgq::listener_event::kind::reconnected);
    CHECK_FALSE(e2.reason.empty());
    CHECK(l.backend_pid() != old_pid);
    CHECK(l.backend_pid() != 0);

    co_await admin.notify(chan, "after");
    auto e3 = co_await pgq::with_timeout(l.next(), std::chrono::seconds(5));
    CHECK(e3.what == pgq::listener_event::kind::notification);
    CHECK(e3.note.payload == "after");
    l.close();
  });
}
