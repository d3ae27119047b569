// pgq/pgq.hpp - the whole public API.
#pragma once

#include <pgq/codec.hpp>
#include <pgq/config.hpp>
#include <pgq/connection.hpp>
#include <pgq/copy.hpp>
#include <pgq/error.hpp>
#include <pgq/gather.hpp>
#include <pgq/json.hpp>
#include <pgq/lease.hpp>
#include <pgq/migrate.hpp>
#include <pgq/notify.hpp>
#include <pgq/params.hpp>
#include <pgq/pool.hpp>
#include <pgq/pool_stats.hpp>
#include <pgq/result.hpp>
#include <pgq/sql_split.hpp>
#include <pgq/stream.hpp>
#include <pgq/timeout.hpp>
#include <pgq/transaction.hpp>
#include <pgq/tx_options.hpp>
#include <pgq/types.hpp>
