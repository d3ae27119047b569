#include <pgq/loop_monitor.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include <cxxabi.h>
#include <execinfo.h>
#include <pthread.h>

namespace pgq {

namespace {

// The one sample in progress, process-wide (watchdogs take turns under
// sample_mutex). The handler touches only these and backtrace(), which is
// safe there once it has run once (its first call loads libgcc).
constexpr int max_frames = 64;
std::array<void*, max_frames> sampled_frames{};  // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)
std::atomic<int> sampled_count{-1};              // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)
std::mutex sample_mutex;                         // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)
std::once_flag handler_installed;                // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)

extern "C" void on_sample_signal(int /*signal*/) {
  const int saved_errno = errno;
  sampled_count.store(backtrace(sampled_frames.data(), max_frames));
  errno = saved_errno;
}

void install_handler(int sig) {
  std::call_once(handler_installed, [sig] {
    void* warm[1];
    (void)backtrace(warm, 1);  // load libgcc now, not in the handler
    struct sigaction sa {};
    sa.sa_handler = on_sample_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, nullptr);
  });
}

// "function+0x1f (binary)" from backtrace_symbols' "binary(mangled+0x1f) [0x...]".
std::string readable(const char* symbol) {
  std::string s(symbol);
  const auto open = s.find('(');
  const auto plus = s.find('+', open == std::string::npos ? 0 : open);
  const auto close = s.find(')', open == std::string::npos ? 0 : open);
  if (open == std::string::npos || close == std::string::npos) return s;
  const std::string binary = s.substr(0, open);
  if (plus == std::string::npos || plus > close || plus == open + 1) {
    // No name: keep the address for addr2line.
    return s;
  }
  std::string name = s.substr(open + 1, plus - open - 1);
  int status = 0;
  char* demangled = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
  if (status == 0 && demangled != nullptr) name = demangled;
  std::free(demangled);  // NOLINT(cppcoreguidelines-no-malloc): __cxa_demangle's contract
  return name + s.substr(plus, close - plus) + " (" + binary + ")";
}

}  // namespace

struct loop_monitor::impl : std::enable_shared_from_this<loop_monitor::impl> {
  impl(const boost::asio::any_io_executor& ex, loop_monitor_options o, std::function<void(const loop_stall&)> cb)
      : timer(boost::asio::make_strand(ex)), options(o), on_stall(std::move(cb)) {}

  boost::asio::steady_timer timer;  // on a strand of its own: ticks and stop() never overlap
  loop_monitor_options options;
  std::function<void(const loop_stall&)> on_stall;

  std::atomic<bool> stopped{false};
  // When the armed timer is due (steady_clock ticks), 0 when none is armed,
  // and the thread that ran the last tick: what the watchdog reads.
  std::atomic<clock::rep> due{0};
  std::atomic<pthread_t> loop_thread{};
  std::atomic<bool> have_loop_thread{false};

  mutable std::mutex mutex;  // guards what follows
  std::condition_variable wake;
  std::thread watchdog;
  clock::rep sampled_for = 0;  // the `due` whose stall the stack belongs to
  std::vector<std::string> stack;
  stats counters;

  void arm() {
    const auto when = clock::now() + options.period;
    due.store(when.time_since_epoch().count());
    timer.expires_at(when);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) { self->tick(ec); });
  }

  void tick(const boost::system::error_code& ec) {
    const auto now = clock::now();
    const auto was_due = due.exchange(0);
    if (ec || stopped.load()) return;
    const clock::duration late = now - clock::time_point(clock::duration(was_due));
    loop_thread.store(pthread_self());
    have_loop_thread.store(true);
    loop_stall stall;
    bool stalled = false;
    {
      const std::lock_guard lock(mutex);
      ++counters.ticks;
      if (late > counters.max_late) counters.max_late = late;
      if (late > options.threshold) {
        stalled = true;
        ++counters.stalls;
        stall.late = late;
        if (sampled_for == was_due) stall.stack = std::move(stack);
        stack.clear();
      }
    }
    if (stalled && on_stall) {
      try {
        on_stall(stall);
      } catch (...) {  // NOLINT(bugprone-empty-catch): a throwing callback must not stop the monitor
      }
    }
    arm();
  }

  // The watchdog: when the armed timer is overdue by the threshold, sample
  // the loop thread's stack once for that timer.
  void watch() {
    const auto step = std::max<clock::duration>(options.threshold / 4, std::chrono::milliseconds(1));
    std::unique_lock lock(mutex);
    while (!stopped.load()) {
      wake.wait_for(lock, step);
      if (stopped.load()) break;
      const auto d = due.load();
      if (d == 0 || d == sampled_for || !have_loop_thread.load()) continue;
      if (clock::now() - clock::time_point(clock::duration(d)) <= options.threshold) continue;
      sampled_for = d;
      lock.unlock();
      std::vector<std::string> frames = sample(loop_thread.load());
      lock.lock();
      if (sampled_for == d) stack = std::move(frames);
    }
  }

  [[nodiscard]] std::vector<std::string> sample(pthread_t thread) const {
    const std::lock_guard sampling(sample_mutex);
    sampled_count.store(-1);
    if (pthread_kill(thread, signal_number()) != 0) return {};
    int n = -1;
    for (int i = 0; i < 200 && (n = sampled_count.load()) < 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (n <= 0) return {};
    std::vector<std::string> out;
    char** symbols = backtrace_symbols(sampled_frames.data(), n);
    if (symbols == nullptr) return {};
    // Frame 0 is the handler, 1 the kernel's signal trampoline.
    for (int i = 2; i < n; ++i)
      out.push_back(readable(symbols[i]));  // NOLINT(cppcoreguidelines-pro-bounds-pointer-arithmetic)
    std::free(symbols);                     // NOLINT(cppcoreguidelines-no-malloc): backtrace_symbols' contract
    return out;
  }

  [[nodiscard]] int signal_number() const { return options.stack_signal != 0 ? options.stack_signal : SIGRTMIN + 5; }
};

loop_monitor::loop_monitor(const boost::asio::any_io_executor& executor, loop_monitor_options options,
                           std::function<void(const loop_stall&)> on_stall)
    : impl_(std::make_shared<impl>(executor, options, std::move(on_stall))) {
  if (options.period.count() <= 0 || options.threshold.count() <= 0) {
    throw std::invalid_argument("pgq::loop_monitor: period and threshold must be positive");
  }
  if (options.capture_stack) {
    install_handler(impl_->signal_number());
    impl_->watchdog = std::thread([i = impl_.get()] { i->watch(); });
  }
  // Armed on the executor, as every later timer operation is.
  boost::asio::post(impl_->timer.get_executor(), [self = impl_] {
    if (!self->stopped.load()) self->arm();
  });
}

loop_monitor::~loop_monitor() {
  try {
    stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): joining or posting failed; nothing a destructor can do
  }
}

void loop_monitor::stop() {
  if (impl_->stopped.exchange(true)) return;
  {
    const std::lock_guard lock(impl_->mutex);
    impl_->wake.notify_all();
  }
  if (impl_->watchdog.joinable()) impl_->watchdog.join();
  // The timer belongs to the executor: cancel it there. Its callback sees
  // `stopped` and does not re-arm.
  boost::asio::post(impl_->timer.get_executor(), [self = impl_] { self->timer.cancel(); });
}

loop_monitor::stats loop_monitor::statistics() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->counters;
}

}  // namespace pgq
