-- pgq:no-transaction
-- An account's orders, newest first. Built concurrently so that orders keep
-- coming in while it builds; CREATE INDEX CONCURRENTLY cannot run inside a
-- transaction, hence the directive above. IF NOT EXISTS makes a rerun safe.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_account_id_ordered_at_idx
    ON orders (account_id, ordered_at DESC);
