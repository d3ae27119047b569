-- Sample data for the demo schema: real books, made-up prices and orders.
-- Deterministic: the same rows on every run.

INSERT INTO authors (name, country, born) VALUES
    ('Jane Austen',         'United Kingdom', '1775-12-16'),
    ('Herman Melville',     'United States',  '1819-08-01'),
    ('Mary Shelley',        'United Kingdom', '1797-08-30'),
    ('Fyodor Dostoevsky',   'Russia',         '1821-11-11'),
    ('Jules Verne',         'France',         '1828-02-08'),
    ('Leo Tolstoy',         'Russia',         '1828-09-09'),
    ('Mark Twain',          'United States',  '1835-11-30'),
    ('Arthur Conan Doyle',  'United Kingdom', '1859-05-22'),
    ('Selma Lagerlöf',      'Sweden',         '1858-11-20'),
    ('Machado de Assis',    'Brazil',         '1839-06-21');

INSERT INTO books (author_id, title, price, published_on, tags)
SELECT a.id, b.title, b.price, b.published_on, b.tags::jsonb
FROM (VALUES
    ('Jane Austen',        'Pride and Prejudice',                   9.99, date '1813-01-28', '["novel", "romance"]'),
    ('Jane Austen',        'Emma',                                   8.50, date '1815-12-23', '["novel", "romance"]'),
    ('Jane Austen',        'Persuasion',                             7.25, date '1817-12-20', '["novel", "romance"]'),
    ('Herman Melville',    'Moby-Dick',                             12.00, date '1851-10-18', '["novel", "adventure", "sea"]'),
    ('Herman Melville',    'Bartleby, the Scrivener',                4.50, date '1853-11-01', '["novella"]'),
    ('Herman Melville',    'Typee',                                  6.75, date '1846-02-26', '["adventure", "travel"]'),
    ('Mary Shelley',       'Frankenstein',                          10.50, date '1818-01-01', '["novel", "gothic", "science fiction"]'),
    ('Mary Shelley',       'The Last Man',                           9.00, date '1826-01-23', '["novel", "science fiction"]'),
    ('Fyodor Dostoevsky',  'Crime and Punishment',                  13.99, date '1866-01-01', '["novel", "philosophy"]'),
    ('Fyodor Dostoevsky',  'The Brothers Karamazov',                15.49, date '1880-11-01', '["novel", "philosophy"]'),
    ('Fyodor Dostoevsky',  'Notes from Underground',                 6.99, date '1864-01-01', '["novella", "philosophy"]'),
    ('Jules Verne',        'Twenty Thousand Leagues Under the Seas', 11.25, date '1870-06-20', '["adventure", "sea", "science fiction"]'),
    ('Jules Verne',        'Around the World in Eighty Days',        8.99, date '1872-12-22', '["adventure", "travel"]'),
    ('Jules Verne',        'Journey to the Center of the Earth',     9.49, date '1864-11-25', '["adventure", "science fiction"]'),
    ('Leo Tolstoy',        'War and Peace',                         18.00, date '1869-01-01', '["novel", "history"]'),
    ('Leo Tolstoy',        'Anna Karenina',                         14.50, date '1878-01-01', '["novel", "romance"]'),
    ('Leo Tolstoy',        'The Death of Ivan Ilyich',               5.99, date '1886-01-01', '["novella", "philosophy"]'),
    ('Mark Twain',         'Adventures of Huckleberry Finn',         8.25, date '1884-12-10', '["novel", "adventure"]'),
    ('Mark Twain',         'The Adventures of Tom Sawyer',           7.99, date '1876-06-01', '["novel", "adventure"]'),
    ('Mark Twain',         'Life on the Mississippi',                9.75, date '1883-01-01', '["memoir", "travel"]'),
    ('Arthur Conan Doyle', 'A Study in Scarlet',                     6.50, date '1887-11-01', '["mystery", "detective"]'),
    ('Arthur Conan Doyle', 'The Hound of the Baskervilles',          7.50, date '1902-04-01', '["mystery", "detective", "gothic"]'),
    ('Arthur Conan Doyle', 'The Lost World',                         8.00, date '1912-10-01', '["adventure", "science fiction"]'),
    ('Selma Lagerlöf',     'The Wonderful Adventures of Nils',      10.00, date '1906-11-24', '["children", "adventure", "travel"]'),
    ('Selma Lagerlöf',     'Gösta Berling''s Saga',                  9.25, date '1891-01-01', '["novel"]'),
    ('Machado de Assis',   'The Posthumous Memoirs of Brás Cubas',  11.00, date '1881-01-01', '["novel", "satire"]'),
    ('Machado de Assis',   'Dom Casmurro',                          10.75, date '1899-01-01', '["novel", "romance"]')
) AS b (author, title, price, published_on, tags)
JOIN authors AS a ON a.name = b.author;

-- 4000 orders over 2024, one every 131 minutes, from 500 readers. The golden
-- ratio spreads the picks; squaring it makes the first books the bestsellers.
WITH catalogue AS (
    SELECT id, price,
           row_number() OVER (ORDER BY published_on, title) - 1 AS n,
           count(*) OVER () AS total
    FROM books
), picks AS (
    SELECT g,
           ((g * 0.6180339887) % 1) AS u
    FROM generate_series(1, 4000) AS g
)
INSERT INTO orders (book_id, customer_email, quantity, unit_price, ordered_at)
SELECT c.id,
       format('reader%s@example.com', 1 + (p.g * 37) % 500),
       1 + (p.g * 7) % 3 + CASE WHEN p.g % 10 = 0 THEN 2 ELSE 0 END,
       c.price,
       timestamptz '2024-01-01 00:00:00+00' + p.g * interval '131 minutes'
FROM picks AS p
JOIN catalogue AS c ON c.n = floor(c.total * p.u * p.u)
ORDER BY p.g;
