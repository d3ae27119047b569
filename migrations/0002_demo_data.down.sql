TRUNCATE orders, books, authors RESTART IDENTITY;
