ALTER TABLE orders DROP COLUMN account_id;
DROP TABLE accounts;
