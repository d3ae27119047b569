-- The demo schema: a small bookshop. Authors write books; readers order them.

-- books.id defaults to gen_random_uuid(), built in from PostgreSQL 13; on 12
-- it is pgcrypto's, created here (CREATE EXTENSION needs a superuser on 12).
DO $$
BEGIN
    IF current_setting('server_version_num')::int < 130000 THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pgcrypto;
        EXCEPTION WHEN insufficient_privilege OR undefined_file THEN
            RAISE EXCEPTION 'the demo schema needs gen_random_uuid(): built in from PostgreSQL 13, on % it comes from the pgcrypto extension, which could not be created (%)',
                current_setting('server_version'), SQLERRM
                USING HINT = 'Ask a superuser to run CREATE EXTENSION pgcrypto in this database, or use PostgreSQL 13 or later.';
        END;
    END IF;
END
$$;

CREATE TABLE authors (
    id      integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL UNIQUE,
    country text NOT NULL,
    born    date
);

CREATE TABLE books (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    author_id    integer NOT NULL REFERENCES authors (id),
    title        text NOT NULL,
    price        numeric(8, 2) NOT NULL CHECK (price >= 0),
    published_on date NOT NULL,
    tags         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tags) = 'array'),
    UNIQUE (author_id, title)
);

CREATE INDEX books_author_id_idx ON books (author_id);
CREATE INDEX books_tags_idx ON books USING gin (tags);

CREATE TABLE orders (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    book_id        uuid NOT NULL REFERENCES books (id),
    customer_email text NOT NULL,
    quantity       integer NOT NULL CHECK (quantity > 0),
    unit_price     numeric(8, 2) NOT NULL CHECK (unit_price >= 0),
    ordered_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_book_id_idx ON orders (book_id);
CREATE INDEX orders_ordered_at_idx ON orders (ordered_at);
