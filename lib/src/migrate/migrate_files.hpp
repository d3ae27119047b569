// migrate/migrate_files.hpp - what reading migration files needs and
// nothing outside pgq does (the unit tests check them directly).
#pragma once

#include <string>
#include <string_view>

namespace pgq {

/// `text` with CRLF and lone CR line endings turned into LF.
std::string normalize_line_endings(std::string_view text);

/// The SHA-256 digest of `data` as 64 lowercase hex digits (what
/// `sha256sum` prints).
std::string sha256_hex(std::string_view data);

/// True when the script's first line is `-- pgq:no-transaction` (trailing
/// space allowed): its statements then run one by one, outside a transaction.
bool is_no_transaction(std::string_view text);

}  // namespace pgq
