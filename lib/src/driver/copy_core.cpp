#include "driver/copy_core.hpp"

#include <algorithm>
#include <charconv>

namespace pgq::detail {

namespace {

// A batch of COPY OUT rows is handed out once it holds this much.
constexpr std::size_t batch_bytes = 256 * 1024;
// What CopyFail tells the server when pgq ends a COPY nobody finishes.
constexpr const char* abandoned = "pgq: COPY abandoned";

}  // namespace

void copy_core::start(bool in) {
  failure_ = nullptr;
  rows_ = 0;
  binary_ = false;
  mode_ = mode::idle;
  want_in_ = in;
  phase_ = phase::send;
}

void copy_core::put(std::string_view data) {
  failure_ = nullptr;
  data_ = data;
  phase_ = phase::put_data;
}

void copy_core::end(const char* error) {
  failure_ = nullptr;
  rows_ = 0;
  report_end_error_ = error == nullptr;
  send_copy_end(error, phase::final_result);
}

void copy_core::get(copy_batch& b) {
  failure_ = nullptr;
  batch_ = &b;
  need_input_ = false;
  phase_ = phase::get_data;
}

void copy_core::abandon() {
  failure_ = nullptr;
  data_ = {};
  batch_ = nullptr;
  report_end_error_ = false;
  phase target = phase::drain;
  if (mode_ == mode::in) {
    send_copy_end(abandoned, phase::drain);
    target = phase::copy_end;
  } else if (mode_ == mode::out || out_pending_) {
    cancel_ = true;
    target = mode_ == mode::out ? phase::drain_copy_out : phase::drain;
  }
  // Whatever an interrupted operation left in libpq's buffer goes first:
  // the server waits for it.
  after_flush_ = target;
  phase_ = phase::flush;
}

void copy_core::send_copy_end(const char* error, phase after) {
  if (error != nullptr) {
    end_message_ = error;
  } else {
    end_message_.reset();
  }
  after_end_ = after;
  phase_ = phase::copy_end;
}

void copy_core::end_open_copy(int status) {
  if (status == pq_status::copy_in) {
    mode_ = mode::in;
    send_copy_end(abandoned, phase::drain);
  } else {
    mode_ = mode::out;
    phase_ = phase::drain_copy_out;
  }
}

copy_core::next copy_core::lose() {
  lost_ = true;
  lost_message_ = port_.error_message();
  phase_ = phase::none;
  return next::done;
}

copy_core::next copy_core::read_result(pg_result*& out) {
  out = nullptr;
  if (!port_.consume_input()) return lose();
  if (port_.is_busy()) return next::wait_read;
  out = port_.get_result();
  return next::done;
}

void copy_core::set_failure(pg_result* r) {
  if (!failure_) failure_ = std::make_exception_ptr(port_.make_error(r, statement_));
}

std::uint64_t copy_core::rows_of(const pg_result* r) {
  std::uint64_t n = 0;
  const std::string_view t = port_.command_rows(r);
  std::from_chars(t.data(), t.data() + t.size(), n);
  return n;
}

copy_core::next copy_core::step() {
  if (lost_) return next::done;
  while (true) {
    switch (phase_) {
      case phase::none: return next::done;

      case phase::send: {
        static const param_set no_params;
        if (!port_.send_query(statement_.c_str(), no_params, 0)) {
          if (port_.connection_bad()) return lose();
          failure_ = std::make_exception_ptr(sql_error(errc::protocol_error, port_.error_message(), statement_));
          phase_ = phase::none;
          return next::done;
        }
        out_pending_ = !want_in_;
        after_flush_ = phase::first_result;
        phase_ = phase::flush;
        break;
      }

      case phase::flush: {
        const int r = port_.flush();
        if (r < 0) return lose();
        if (r > 0) return next::wait_write;
        phase_ = after_flush_;
        break;
      }

      case phase::first_result: {
        pg_result* r = nullptr;
        if (const next n = read_result(r); n != next::done || lost_) return n;
        out_pending_ = false;
        if (r == nullptr) {
          failure_ =
              std::make_exception_ptr(sql_error(errc::protocol_error, "no result for the COPY statement", statement_));
          phase_ = phase::none;
          return next::done;
        }
        const int status = port_.status(r);
        const int want = want_in_ ? pq_status::copy_in : pq_status::copy_out;
        if (status == want) {
          binary_ = port_.binary_tuples(r);
          port_.clear(r);
          mode_ = want_in_ ? mode::in : mode::out;
          phase_ = phase::none;
          return next::done;
        }
        if (status == pq_status::fatal_error) {
          set_failure(r);
        } else {
          failure_ = std::make_exception_ptr(sql_error(
              errc::protocol_error,
              want_in_ ? "not a COPY ... FROM STDIN statement" : "not a COPY ... TO STDOUT statement", statement_));
        }
        port_.clear(r);
        if (status == pq_status::copy_in) {
          mode_ = mode::in;
          send_copy_end("pgq: not the COPY direction asked for", phase::drain);
        } else if (status == pq_status::copy_out) {
          mode_ = mode::out;
          cancel_ = true;  // no use reading all of it
          phase_ = phase::drain_copy_out;
        } else {
          phase_ = phase::drain;
        }
        break;
      }

      case phase::put_data: {
        while (!data_.empty()) {
          const std::size_t n = std::min(piece_, data_.size());
          const int r = port_.put_copy_data(data_.data(), static_cast<int>(n));
          if (r < 0) return lose();
          if (r == 0) return next::wait_write;
          data_.remove_prefix(n);
        }
        after_flush_ = phase::none;
        phase_ = phase::flush;
        break;
      }

      case phase::copy_end: {
        const int r = port_.put_copy_end(end_message_ ? end_message_->c_str() : nullptr);
        if (r < 0) return lose();
        if (r == 0) return next::wait_write;
        mode_ = mode::idle;
        after_flush_ = after_end_;
        phase_ = phase::flush;
        break;
      }

      case phase::final_result: {
        pg_result* r = nullptr;
        if (const next n = read_result(r); n != next::done || lost_) return n;
        if (r == nullptr) {
          phase_ = phase::none;
          return next::done;
        }
        const int status = port_.status(r);
        if (status == pq_status::command_ok) {
          rows_ = rows_of(r);
        } else if (status == pq_status::fatal_error && report_end_error_) {
          set_failure(r);
        }
        port_.clear(r);
        phase_ = phase::drain;
        // Another COPY instead of the outcome: ended like any met while draining.
        if (status == pq_status::copy_in || status == pq_status::copy_out) end_open_copy(status);
        break;
      }

      case phase::get_data: {
        if (need_input_) {
          need_input_ = false;
          if (!port_.consume_input()) return lose();
        }
        while (true) {
          char* buf = nullptr;
          const int n = port_.get_copy_data(&buf);
          if (n > 0) {
            batch_->data.append(buf, static_cast<std::size_t>(n));
            port_.free_copy_data(buf);
            batch_->ends.push_back(batch_->data.size());
            if (batch_->data.size() >= batch_bytes) {
              phase_ = phase::none;
              return next::done;
            }
          } else if (n == 0) {
            if (!batch_->ends.empty()) {
              phase_ = phase::none;
              return next::done;
            }
            need_input_ = true;
            return next::wait_read;
          } else if (n == -1) {
            mode_ = mode::idle;
            batch_->done = true;
            report_end_error_ = true;
            phase_ = phase::final_result;
            break;
          } else {
            return lose();
          }
        }
        break;
      }

      case phase::drain: {
        pg_result* r = nullptr;
        if (const next n = read_result(r); n != next::done || lost_) return n;
        if (r == nullptr) {
          mode_ = mode::idle;
          phase_ = phase::none;
          return next::done;
        }
        const int status = port_.status(r);
        port_.clear(r);
        if (status == pq_status::copy_in || status == pq_status::copy_out) end_open_copy(status);
        break;
      }

      case phase::drain_copy_out: {
        if (need_input_) {
          need_input_ = false;
          if (!port_.consume_input()) return lose();
        }
        while (true) {
          char* buf = nullptr;
          const int n = port_.get_copy_data(&buf);
          if (n > 0) {
            port_.free_copy_data(buf);
          } else if (n == 0) {
            need_input_ = true;
            return next::wait_read;
          } else if (n == -1) {
            mode_ = mode::idle;
            phase_ = phase::drain;
            break;
          } else {
            return lose();
          }
        }
        break;
      }
    }
  }
}

}  // namespace pgq::detail
