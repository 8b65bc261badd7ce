-- Topics are indexed with their team as a token of its own, as messages are (0010), so
-- that a search intersects the team's topics with each word's inside the index. Before,
-- the planner of the SQLite that ships with Floo started from the team's rows and ran the
-- full-text match once per row: quadratic in the matches, and another team's matches
-- slowed every team's search.
DROP TRIGGER topics_fts_insert;
DROP TRIGGER topics_fts_delete;
DROP TRIGGER topics_fts_update;
DROP TABLE topics_fts;
CREATE VIEW topics_search AS
    SELECT id, title, body, 't' || team_id AS team FROM topics;
CREATE VIRTUAL TABLE topics_fts USING fts5(
    title, body, team, content = 'topics_search', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 0'
);
INSERT INTO topics_fts (topics_fts) VALUES ('rebuild');
CREATE TRIGGER topics_fts_insert AFTER INSERT ON topics BEGIN
    INSERT INTO topics_fts (rowid, title, body, team) VALUES (new.id, new.title, new.body, 't' || new.team_id);
END;
CREATE TRIGGER topics_fts_delete AFTER DELETE ON topics BEGIN
    INSERT INTO topics_fts (topics_fts, rowid, title, body, team)
    VALUES ('delete', old.id, old.title, old.body, 't' || old.team_id);
END;
CREATE TRIGGER topics_fts_update AFTER UPDATE OF title, body ON topics BEGIN
    INSERT INTO topics_fts (topics_fts, rowid, title, body, team)
    VALUES ('delete', old.id, old.title, old.body, 't' || old.team_id);
    INSERT INTO topics_fts (rowid, title, body, team) VALUES (new.id, new.title, new.body, 't' || new.team_id);
END;
