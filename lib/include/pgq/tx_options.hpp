// pgq/tx_options.hpp - how a transaction begins.
#pragma once

namespace pgq {

/// Isolation levels (`default_level` keeps the server's default).
enum class isolation { default_level, read_committed, repeatable_read, serializable };

/// How a transaction begins.
struct tx_options {
  isolation level = isolation::default_level;
  bool read_only = false;
  bool deferrable = false;  ///< only meaningful with serializable + read_only
  /// For `transact()`: how many times to rerun the function after a
  /// serialization failure (40001) or deadlock (40P01).
  int retries = 0;
};

}  // namespace pgq
