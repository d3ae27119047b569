-- A migration compiled into the consumer with pgq_embed_migrations().
CREATE TABLE hello (id int PRIMARY KEY);
