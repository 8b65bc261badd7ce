-- The secret that signs media admission tokens, shared by every node on this database
-- (a page served by one node mints the token, the relay of another may admit it).
-- Kept in step with ../sqlite/0004_media_secret.sql.

CREATE TABLE media_secret (
    id     INTEGER PRIMARY KEY,
    secret TEXT    NOT NULL
);
