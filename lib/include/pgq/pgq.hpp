// pgq/pgq.hpp - the whole public API.
#pragma once

#include <pgq/config.hpp>
#include <pgq/connection.hpp>
#include <pgq/error.hpp>
#include <pgq/json.hpp>
#include <pgq/migrate.hpp>
#include <pgq/pool.hpp>
#include <pgq/result.hpp>
#include <pgq/sql_split.hpp>
#include <pgq/timeout.hpp>
#include <pgq/transaction.hpp>
#include <pgq/types.hpp>
