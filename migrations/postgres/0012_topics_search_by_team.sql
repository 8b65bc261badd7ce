-- A topic's vector also holds its team, as the lexeme '#' and the team's id, as a
-- message's does (0010): a search intersects the team's topics with each word's in the
-- index, however many other teams' topics hold the word. (A generated column's
-- expression cannot be altered before PostgreSQL 17: the column is made anew.)
ALTER TABLE topics DROP COLUMN search;
ALTER TABLE topics ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', title), 'A') || setweight(to_tsvector('simple', body), 'B')
        || array_to_tsvector(ARRAY['#' || team_id::text])
) STORED;
CREATE INDEX topics_search_idx ON topics USING GIN (search);
