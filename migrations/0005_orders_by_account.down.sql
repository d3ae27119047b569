-- pgq:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS orders_account_id_ordered_at_idx;
