// COPY FROM STDIN / TO STDOUT, driven on the driver's executor while the
// pipeline state machine has handed the connection over (pipeline mode off).
// copy_core decides; this side waits on the socket and does what it says.
#pragma once

#include "driver/copy_core.hpp"
#include "driver/driver.hpp"

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgq::detail {

struct copy_state {
  std::shared_ptr<driver> d;
  copy_core core;     // the decisions; this side waits and performs
  bool held = false;  // we hold the connection (pipeline mode off)

  copy_state(std::shared_ptr<driver> drv, std::string statement)
      : d(std::move(drv)), core(d->port(), std::move(statement)) {}
};

using copy_state_ptr = std::shared_ptr<copy_state>;

/// Waits for the connection (every request before it done), sends `sql` and
/// returns the COPY's state; `binary` says its format.
boost::asio::awaitable<copy_state_ptr> begin_copy(std::shared_ptr<driver> d, std::string_view sql, bool in,
                                                  bool* binary);
/// Sends `data` (any size); returns the emptied buffer.
boost::asio::awaitable<std::string> copy_put(copy_state_ptr st, std::string data);
/// Ends a COPY FROM STDIN (with an error message: aborts it); the rows taken.
boost::asio::awaitable<std::uint64_t> copy_end(copy_state_ptr st, std::optional<std::string> error);
/// The next rows of a COPY TO STDOUT.
boost::asio::awaitable<copy_batch> copy_get(copy_state_ptr st, copy_batch b);
/// Ends whatever COPY is open, in the background, and gives the connection
/// back (a writer or reader dropped early, or a failed operation).
void copy_release(const copy_state_ptr& st) noexcept;

}  // namespace pgq::detail
