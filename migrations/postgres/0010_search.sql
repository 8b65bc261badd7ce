-- Full-text search of topics (title and text) and messages (comments and chat), with
-- PostgreSQL's own engine: a generated tsvector per row and a GIN index. The 'simple'
-- configuration (no stemming, no folding of accents, any case), as SQLite's
-- FTS5 tables do on the other backend; titles weigh more than text.
ALTER TABLE topics ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', title), 'A') || setweight(to_tsvector('simple', body), 'B')
) STORED;
CREATE INDEX topics_search_idx ON topics USING GIN (search);
-- A message's vector also holds its team, as the lexeme '#' and the team's id (no query
-- of words can make it), so that a search intersects the team's messages with each
-- word's in the index instead of ranking every team's and filtering after. Kept by a
-- trigger: a generated column cannot look up the topic's team.
ALTER TABLE messages ADD COLUMN search tsvector;
CREATE FUNCTION messages_search_vector() RETURNS trigger AS $$
BEGIN
    NEW.search := to_tsvector('simple', NEW.body)
        || array_to_tsvector(ARRAY['#' || (SELECT team_id FROM topics WHERE id = NEW.topic_id)::text]);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER messages_search_vector BEFORE INSERT OR UPDATE OF body ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_search_vector();
UPDATE messages m SET search = to_tsvector('simple', m.body) || array_to_tsvector(ARRAY['#' || t.team_id::text])
    FROM topics t WHERE t.id = m.topic_id;
CREATE INDEX messages_search_idx ON messages USING GIN (search);
