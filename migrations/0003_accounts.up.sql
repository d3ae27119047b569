-- Readers get accounts: one per e-mail address that has ordered, and every
-- order points at its account.

CREATE TABLE accounts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email        text NOT NULL UNIQUE CHECK (email LIKE '%_@_%'),
    display_name text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO accounts (email, created_at)
SELECT customer_email, min(ordered_at)
FROM orders
GROUP BY customer_email
ORDER BY min(ordered_at), customer_email;

ALTER TABLE orders ADD COLUMN account_id bigint REFERENCES accounts (id);

UPDATE orders AS o
SET account_id = a.id
FROM accounts AS a
WHERE a.email = o.customer_email;

ALTER TABLE orders ALTER COLUMN account_id SET NOT NULL;
