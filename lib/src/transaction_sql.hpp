// transaction_sql.hpp - the statements pgq sends for transactions.
#pragma once

#include <pgq/tx_options.hpp>

#include <string>

namespace pgq {

/// The BEGIN statement for `opts`, e.g. "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY".
std::string begin_statement(const tx_options& opts);

}  // namespace pgq
