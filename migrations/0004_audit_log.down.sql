DROP TRIGGER orders_audit ON orders;
DROP TRIGGER accounts_audit ON accounts;
DROP FUNCTION audit_row_change();
DROP TABLE audit_log;
