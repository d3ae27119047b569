// pgq/loop_monitor.hpp - how late an event loop runs, and what held it up.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pgq {

/// One stall: a timer of the monitor ran `late` after it was due.
struct loop_stall {
  std::chrono::steady_clock::duration late{};
  /// The stack of the thread that was running the loop while it was
  /// stalled, innermost frame first ("function+0x1f (binary)"), captured
  /// when the stall had lasted `threshold`; empty when capture is off or
  /// the thread could not be sampled. Function names come from the dynamic
  /// symbol table: link the program with -rdynamic (CMake: ENABLE_EXPORTS)
  /// to see its own functions, else their addresses (for addr2line).
  std::vector<std::string> stack;
};

struct loop_monitor_options {
  /// How often the monitor's timer is set to run.
  std::chrono::milliseconds period{100};
  /// A timer that runs later than this after it was due is a stall.
  std::chrono::milliseconds threshold{100};
  /// Sample the stack of the stalled thread (Linux): a watchdog thread
  /// sends it `stack_signal` once the stall has lasted `threshold`, and the
  /// handler records the stack with backtrace(). The handler is installed
  /// process-wide at the first monitor that captures.
  bool capture_stack = true;
  /// 0: SIGRTMIN + 5.
  int stack_signal = 0;
};

/// Measures how late `executor` runs a timer that is due every `period`,
/// and calls `on_stall` (on the executor, after the stall) for each run
/// later than `threshold`: a callback that blocked the loop (a synchronous
/// call, a long computation) is the most common bug of asynchronous code,
/// and the stack names it. The timer keeps the executor's io_context busy
/// (run() does not return) until the monitor is stopped or destroyed.
///
/// On an io_context run by one thread, the stack is that thread's. With
/// several threads, a stall is only seen when all of them are held up, and
/// the stack is of the thread that ran the monitor's previous timer.
///
/// stop() and the destructor may be called from any thread; the monitor's
/// state lives until its last timer callback has run, so the executor's
/// context must outlive the monitor or be stopped with it.
class loop_monitor {
 public:
  using clock = std::chrono::steady_clock;
  struct stats {
    std::uint64_t ticks = 0;   ///< timer runs so far
    std::uint64_t stalls = 0;  ///< of which later than the threshold
    clock::duration max_late{};
  };

  loop_monitor(const boost::asio::any_io_executor& executor, loop_monitor_options options,
               std::function<void(const loop_stall&)> on_stall);
  ~loop_monitor();
  loop_monitor(const loop_monitor&) = delete;
  loop_monitor& operator=(const loop_monitor&) = delete;

  void stop();
  [[nodiscard]] stats statistics() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace pgq
