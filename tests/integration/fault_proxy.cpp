#include "fault_proxy.hpp"

#include <pgq/config.hpp>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <future>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace pgq_test {

// One proxied connection: the client's socket, the server's, and for each
// direction a buffer and a timer (for stalls and latency). Callbacks hold a
// shared_ptr to it; it dies when both pumps have stopped.
struct fault_proxy::session {
  explicit session(asio::io_context& ctx, tcp::socket c)
      : client(std::move(c)), server(ctx), timers{asio::steady_timer(ctx), asio::steady_timer(ctx)} {}

  tcp::socket client;
  tcp::socket server;
  std::array<std::array<char, 16384>, 2> buffers{};
  std::array<asio::steady_timer, 2> timers;
  bool closed = false;

  tcp::socket& from(direction d) { return d == direction::to_server ? client : server; }
  tcp::socket& to(direction d) { return d == direction::to_server ? server : client; }

  // Resets both sockets: the peers see a connection reset, not a clean end.
  void cut() {
    if (closed) return;
    closed = true;
    boost::system::error_code ignored;
    for (tcp::socket* s : {&client, &server}) {
      if (s->is_open()) {
        s->set_option(asio::socket_base::linger(true, 0), ignored);
        s->close(ignored);
      }
    }
    for (auto& t : timers) t.cancel();
  }
};

fault_proxy::fault_proxy(std::uint16_t target_port)
    : target_(asio::ip::make_address("127.0.0.1"), target_port), acceptor_(ctx_) {
  listen();
  port_ = acceptor_.local_endpoint().port();
  start_accepting();
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(ctx_);
    ctx_.run();
  });
}

fault_proxy::~fault_proxy() {
  // A destructor must not throw: when the proxy's thread cannot run the
  // clean-up, stopping and joining it is all that is left to do.
  try {
    run_here([this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      for (const auto& s : sessions_) s->cut();
      sessions_.clear();
    });
  } catch (...) {
  }
  ctx_.stop();
  thread_.join();
}

void fault_proxy::run_here(std::function<void()> fn) const {
  std::packaged_task<void()> task(std::move(fn));
  auto done = task.get_future();
  asio::post(ctx_, [&task] { task(); });
  done.get();
}

void fault_proxy::listen() {
  const tcp::endpoint where(asio::ip::make_address("127.0.0.1"), port_);
  acceptor_.open(where.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(where);
  acceptor_.listen();
}

void fault_proxy::start_accepting() {
  if (!acceptor_.is_open()) return;
  acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket client) {
    if (ec) return;  // closed: refusing, or shutting down
    ++accepted_;
    on_accept(std::make_shared<tcp::socket>(std::move(client)));
    start_accepting();
  });
}

void fault_proxy::on_accept(const std::shared_ptr<tcp::socket>& client) {
  auto s = std::make_shared<session>(ctx_, std::move(*client));
  sessions_.insert(s);
  if (black_hole_new_.load()) return;  // held until cut
  s->server.async_connect(target_, [this, s](const boost::system::error_code& ec) {
    if (ec || s->closed) {
      s->cut();
      sessions_.erase(s);
      return;
    }
    boost::system::error_code ignored;
    s->server.set_option(tcp::no_delay(true), ignored);
    s->client.set_option(tcp::no_delay(true), ignored);
    start_pump(s, direction::to_server);
    start_pump(s, direction::to_client);
  });
}

std::size_t fault_proxy::take_budget(direction d, std::size_t n, bool& cut) {
  auto& budget = budget_[static_cast<int>(d)];
  std::int64_t left = budget.load();
  while (left >= 0) {
    const auto allowed = std::min<std::int64_t>(left, static_cast<std::int64_t>(n));
    if (budget.compare_exchange_weak(left, left == allowed ? -1 : left - allowed)) {
      cut = left == allowed;
      return static_cast<std::size_t>(allowed);
    }
  }
  cut = false;
  return n;
}

// The pump of one direction: read a chunk, wait while stalled, wait the
// latency, forward what the cut budget allows, repeat.
class fault_proxy::pump_task {
 public:
  pump_task(fault_proxy* proxy, std::shared_ptr<session> s, direction d) : proxy_(proxy), s_(std::move(s)), d_(d) {}

  void read() {
    if (s_->closed) return finish();
    auto& buf = s_->buffers[index()];
    s_->from(d_).async_read_some(asio::buffer(buf),
                                 [t = *this](const boost::system::error_code& ec, std::size_t n) mutable {
                                   if (ec || t.s_->closed) return t.finish();
                                   t.proxy_->received_[t.index()] += n;
                                   t.n_ = n;
                                   t.delayed_ = false;
                                   t.forward();
                                 });
  }

 private:
  int index() const { return static_cast<int>(d_); }

  void wait_then_forward(std::chrono::milliseconds d) {
    auto& timer = s_->timers[index()];
    timer.expires_after(d);
    timer.async_wait([t = *this](const boost::system::error_code&) mutable {
      if (t.s_->closed) return t.finish();
      t.forward();
    });
  }

  void forward() {
    if (proxy_->stalled_[index()].load()) return wait_then_forward(std::chrono::milliseconds(5));
    if (!delayed_ && proxy_->latency_ms_.load() > 0) {
      delayed_ = true;
      return wait_then_forward(std::chrono::milliseconds(proxy_->latency_ms_.load()));
    }
    bool cut = false;
    const std::size_t allowed = proxy_->take_budget(d_, n_, cut);
    auto& buf = s_->buffers[index()];
    asio::async_write(s_->to(d_), asio::buffer(buf.data(), allowed),
                      [t = *this, cut](const boost::system::error_code& ec, std::size_t written) mutable {
                        t.proxy_->forwarded_[t.index()] += written;
                        if (ec || cut) {
                          t.s_->cut();
                          return t.finish();
                        }
                        t.read();
                      });
  }

  // A pump that stops ends its session: a connection half gone is gone.
  void finish() {
    s_->cut();
    proxy_->sessions_.erase(s_);
  }

  fault_proxy* proxy_;
  std::shared_ptr<session> s_;
  direction d_;
  std::size_t n_ = 0;
  bool delayed_ = false;
};

void fault_proxy::start_pump(std::shared_ptr<session> s, direction d) { pump_task(this, std::move(s), d).read(); }

std::string fault_proxy::route(const std::string& dsn) const {
  auto ci = pgq::conninfo::parse(dsn);
  ci.set("host", "127.0.0.1");
  ci.erase("hostaddr");
  ci.set("port", std::to_string(port_));
  return ci.to_string();
}

void fault_proxy::set_latency(std::chrono::milliseconds latency) { latency_ms_ = latency.count(); }

void fault_proxy::stall(direction d, bool on) { stalled_[static_cast<int>(d)] = on; }

void fault_proxy::cut_after(direction d, std::size_t bytes) {
  budget_[static_cast<int>(d)] = static_cast<std::int64_t>(bytes);
}

void fault_proxy::cut_all() {
  run_here([this] {
    for (const auto& s : sessions_) s->cut();
    sessions_.clear();
  });
}

void fault_proxy::refuse(bool on) {
  run_here([this, on] {
    boost::system::error_code ignored;
    if (on) {
      acceptor_.close(ignored);
    } else if (!acceptor_.is_open()) {
      listen();
      start_accepting();
    }
  });
}

std::size_t fault_proxy::open_connections() const {
  std::size_t n = 0;
  run_here([this, &n] { n = sessions_.size(); });
  return n;
}

}  // namespace pgq_test
