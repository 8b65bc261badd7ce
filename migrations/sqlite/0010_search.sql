-- Full-text search of topics (title and text) and messages (comments and chat), with
-- SQLite's FTS5: external-content tables over `topics` and `messages`, kept in step by
-- triggers. No stemming and no folding of accents (words match as written, any case), as
-- PostgreSQL's 'simple' configuration does on the other backend.
CREATE VIRTUAL TABLE topics_fts USING fts5(
    title, body, content = 'topics', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 0'
);
-- Messages are indexed with their team as a token of its own ('t' and its id, in a
-- column the query's words never reach), so that a search intersects the team's
-- messages with each word's instead of ranking every team's and filtering after.
CREATE VIEW messages_search AS
    SELECT m.id AS id, m.body AS body, 't' || t.team_id AS team
    FROM messages m JOIN topics t ON t.id = m.topic_id;
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body, team, content = 'messages_search', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 0'
);
INSERT INTO topics_fts (topics_fts) VALUES ('rebuild');
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

CREATE TRIGGER topics_fts_insert AFTER INSERT ON topics BEGIN
    INSERT INTO topics_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER topics_fts_delete AFTER DELETE ON topics BEGIN
    INSERT INTO topics_fts (topics_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
END;
CREATE TRIGGER topics_fts_update AFTER UPDATE OF title, body ON topics BEGIN
    INSERT INTO topics_fts (topics_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
    INSERT INTO topics_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body, team)
    VALUES (new.id, new.body, 't' || (SELECT team_id FROM topics WHERE id = new.topic_id));
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, team)
    VALUES ('delete', old.id, old.body, 't' || (SELECT team_id FROM topics WHERE id = old.topic_id));
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, team)
    VALUES ('delete', old.id, old.body, 't' || (SELECT team_id FROM topics WHERE id = old.topic_id));
    INSERT INTO messages_fts (rowid, body, team)
    VALUES (new.id, new.body, 't' || (SELECT team_id FROM topics WHERE id = new.topic_id));
END;
