DROP TABLE hello;
