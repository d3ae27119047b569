// COPY FROM STDIN / TO STDOUT as a state machine, the way pipeline_core is
// one: no Asio and no socket. It reaches libpq only through pq_port; the
// driver's side (copy.cpp) waits on the socket when step() asks and does what
// it says (cancel on the server, give up a lost connection).
//
// Rules (each has a unit test in tests/unit/test_copy_core.cpp):
//  1. A COPY statement answered with the direction asked for opens the COPY;
//     any other answer fails the operation and leaves the connection idle: a
//     server error keeps its SQLSTATE, a COPY IN of the wrong direction is
//     ended with CopyFail, a COPY OUT of the wrong direction is cancelled on
//     the server and its rows dropped, a plain statement's result dropped.
//  2. Data goes to libpq in pieces of at most 1 GiB (libpq takes an int).
//  3. Ending a COPY IN reads its outcome: the rows the server took, or its
//     error (not reported when the caller aborted it with a message).
//  4. A COPY OUT hands out whole rows, in batches; its end reads the outcome.
//  5. Abandoning (a caller gone, cancelled, or an operation failed halfway)
//     ends whatever is open: CopyFail for COPY IN; a server cancel for COPY
//     OUT or a COPY TO still waiting for its first rows; then everything is
//     read until libpq is idle. Any COPY result met while draining is ended
//     the same way: the loop never spins.
//  6. A broken connection (a libpq call failing) ends the operation as lost;
//     nothing else is called on the connection.
#pragma once

#include "driver/pipeline.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgq::detail {

/// Rows of a COPY TO STDOUT, as whole rows in one buffer.
struct copy_batch {
  std::string data;
  std::vector<std::size_t> ends;  // where each row ends in data
  bool done = false;              // the COPY is over (rows is its count)
  std::uint64_t rows = 0;
};

class copy_core {
 public:
  enum class next : std::uint8_t { done, wait_read, wait_write };
  enum class mode : std::uint8_t { idle, in, out };

  /// `piece`: the most handed to libpq at once (tests make it small).
  copy_core(pq_port& port, std::string statement, std::size_t piece = std::size_t{1} << 30)
      : port_(port), statement_(std::move(statement)), piece_(piece) {}

  // --- operations: start one, then call step() (again after each wait it
  // asks for) until it returns done; then read the outcome.
  /// Sends the COPY statement and reads its first answer. Outcome: failure()
  /// or an open COPY (mode(), binary()).
  void start(bool in);
  /// Queues `data` (it must stay valid until done) and flushes it.
  void put(std::string_view data);
  /// Ends a COPY IN (with `error`, aborts it). Outcome: rows() or failure().
  void end(const char* error);
  /// Takes rows of a COPY OUT into `b` (kept until done).
  void get(copy_batch& b);
  /// Ends whatever is open and reads until idle.
  void abandon();
  next step();

  // --- actions (the driver performs them) ---
  /// Cancel the running statement on the server (once per true).
  bool take_server_cancel() noexcept { return std::exchange(cancel_, false); }

  // --- outcome and state ---
  bool lost() const noexcept { return lost_; }
  const std::string& lost_message() const noexcept { return lost_message_; }
  std::exception_ptr failure() const noexcept { return failure_; }
  bool binary() const noexcept { return binary_; }
  std::uint64_t rows() const noexcept { return rows_; }
  mode state() const noexcept { return mode_; }
  bool busy() const noexcept { return phase_ != phase::none; }
  const std::string& statement() const noexcept { return statement_; }

 private:
  enum class phase : std::uint8_t {
    none,
    send,            // the COPY statement
    flush,           // then after_flush_
    first_result,    // the answer to the COPY statement
    put_data,        // data_ in pieces, then flush
    copy_end,        // CopyDone/CopyFail, then flush, then after_end_
    final_result,    // the COPY's outcome, then drain
    get_data,        // rows into batch_
    drain,           // results until idle
    drain_copy_out,  // rows of a COPY OUT dropped, then drain
  };
  // CopyDone (error null) or CopyFail(error), then `after`.
  void send_copy_end(const char* error, phase after);
  // A COPY result met where none was asked for: COPY IN is ended with
  // CopyFail, COPY OUT's rows are dropped; then drain.
  void end_open_copy(int status);
  next lose();
  next read_result(pg_result*& out);  // done with out set (maybe null), or wait_read
  void set_failure(pg_result* r);
  std::uint64_t rows_of(const pg_result* r);

  pq_port& port_;
  std::string statement_;
  std::size_t piece_;
  mode mode_ = mode::idle;
  phase phase_ = phase::none;
  phase after_flush_ = phase::none;
  phase after_end_ = phase::none;
  bool want_in_ = false;
  bool out_pending_ = false;  // COPY TO sent, its first answer not read yet
  bool need_input_ = false;
  bool cancel_ = false;
  bool lost_ = false;
  bool binary_ = false;
  bool report_end_error_ = true;
  std::string lost_message_;
  std::optional<std::string> end_message_;  // CopyFail's message; none: CopyDone
  std::exception_ptr failure_;
  std::uint64_t rows_ = 0;
  std::string_view data_;
  copy_batch* batch_ = nullptr;
};

}  // namespace pgq::detail
