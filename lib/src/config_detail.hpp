// What config.cpp offers the rest of lib/src, not the user: conninfo
// settings read the way libpq reads them.
#pragma once

#include <pgq/config.hpp>

#include <chrono>

namespace pgq::detail {

/// How long a connection attempt may take: `opts.connect_timeout` when set,
/// else the conninfo's `connect_timeout`, else `PGCONNECT_TIMEOUT`, else 10
/// seconds; zero means no limit. Seconds as libpq reads them (1 counts as 2,
/// 0 or less as no limit). Throws errc::bad_conninfo for a conninfo value
/// that is not a number; an unusable PGCONNECT_TIMEOUT is ignored.
std::chrono::milliseconds connect_timeout(const conninfo& ci, const connect_options& opts);

}  // namespace pgq::detail
