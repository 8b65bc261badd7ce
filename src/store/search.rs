//! Searching a team's topics and messages with each backend's own full-text engine:
//! SQLite's FTS5 (`bm25`, `snippet`) and PostgreSQL's tsvector (`ts_rank_cd`,
//! `ts_headline`), both without stemming. Every word of the query must be there (any
//! case); the best matches come first. Snippets come back with the matches between
//! [`MARK_START`] and [`MARK_END`] (private-use characters), so that the page escapes
//! the text first and adds its highlighting after.

use super::{Backend, Result, Store};

/// Where the engine puts a match's start and end in a snippet.
pub const MARK_START: char = '\u{E000}';
pub const MARK_END: char = '\u{E001}';

/// At most this many words of a query are used.
pub const MAX_QUERY_WORDS: usize = 8;
/// Results per kind (topics, messages).
const LIMIT: i64 = 30;

/// A topic that matches.
#[derive(Debug, Clone)]
pub struct TopicHit {
    pub topic_id: i64,
    pub title: String,
    /// The title and text with the matches marked.
    pub title_marked: String,
    pub snippet: String,
}

/// A comment or chat message that matches.
#[derive(Debug, Clone)]
pub struct MessageHit {
    pub topic_id: i64,
    pub seq: i64,
    pub topic_title: String,
    pub author_name: String,
    pub created_at: i64,
    pub snippet: String,
}

/// The words of a query: letters and digits, at most [`MAX_QUERY_WORDS`].
pub fn query_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_QUERY_WORDS)
        .map(|w| w.chars().take(64).collect())
        .collect()
}

impl Store {
    /// Topics and messages of `team_id` that hold every word of `words`, best first.
    pub async fn search(&self, team_id: i64, words: &[String]) -> Result<(Vec<TopicHit>, Vec<MessageHit>)> {
        if words.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (start, end) = (MARK_START.to_string(), MARK_END.to_string());
        match self.backend {
            Backend::Sqlite => {
                // Each word as an FTS5 string (quotes doubled): no operator can slip in.
                let matching =
                    words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect::<Vec<_>>().join(" ");
                // Messages: the team's token and every word, in the text only.
                let in_team = format!("team : \"t{team_id}\" AND body : ({matching})");
                let topics: Vec<(i64, String, String, String)> = sqlx::query_as(
                    "SELECT t.id, t.title, highlight(topics_fts, 0, $3, $4), snippet(topics_fts, 1, $3, $4, '…', 16)
                     FROM topics_fts JOIN topics t ON t.id = topics_fts.rowid
                     WHERE topics_fts MATCH $1 AND t.team_id = $2
                     ORDER BY bm25(topics_fts, 10.0, 1.0) LIMIT $5",
                )
                .bind(&matching)
                .bind(team_id)
                .bind(&start)
                .bind(&end)
                .bind(LIMIT)
                .fetch_all(&self.pool)
                .await?;
                let messages: Vec<(i64, i64, String, String, i64, String)> = sqlx::query_as(
                    "SELECT m.topic_id, m.seq, t.title, u.display_name, m.created_at,
                            snippet(messages_fts, 0, $3, $4, '…', 16)
                     FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
                     JOIN topics t ON t.id = m.topic_id JOIN users u ON u.id = m.author_id
                     WHERE messages_fts MATCH $1 AND t.team_id = $2 AND m.deleted_at IS NULL
                     ORDER BY bm25(messages_fts, 1.0, 0.0) LIMIT $5",
                )
                .bind(&in_team)
                .bind(team_id)
                .bind(&start)
                .bind(&end)
                .bind(LIMIT)
                .fetch_all(&self.pool)
                .await?;
                Ok(hits(topics, messages))
            }
            Backend::Postgres => {
                let text = words.join(" ");
                let options = format!("StartSel={start}, StopSel={end}, MaxWords=24, MinWords=8, MaxFragments=1");
                let topics: Vec<(i64, String, String, String)> = sqlx::query_as(
                    "SELECT t.id, t.title, ts_headline('simple', t.title, q, $4), ts_headline('simple', t.body, q, $3)
                     FROM topics t, plainto_tsquery('simple', $1) q
                     WHERE t.search @@ q AND t.team_id = $2
                     ORDER BY ts_rank_cd(t.search, q) DESC, t.id DESC LIMIT $5",
                )
                .bind(&text)
                .bind(team_id)
                .bind(&options)
                .bind(format!("StartSel={start}, StopSel={end}, HighlightAll=true"))
                .bind(LIMIT)
                .fetch_all(&self.pool)
                .await?;
                let messages: Vec<(i64, i64, String, String, i64, String)> = sqlx::query_as(
                    "SELECT m.topic_id, m.seq, t.title, u.display_name, m.created_at, ts_headline('simple', m.body, q, $3)
                     FROM messages m JOIN topics t ON t.id = m.topic_id JOIN users u ON u.id = m.author_id,
                          plainto_tsquery('simple', $1) q
                     WHERE m.search @@ (q && $5::tsquery) AND t.team_id = $2 AND m.deleted_at IS NULL
                     ORDER BY ts_rank_cd(m.search, q) DESC, m.id DESC LIMIT $4",
                )
                .bind(&text)
                .bind(team_id)
                .bind(&options)
                .bind(LIMIT)
                // The team's lexeme (see the migration), quoted as tsquery input.
                .bind(format!("'#{team_id}'"))
                .fetch_all(&self.pool)
                .await?;
                Ok(hits(topics, messages))
            }
        }
    }
}

type TopicRow = (i64, String, String, String);
type MessageRow = (i64, i64, String, String, i64, String);

fn hits(topics: Vec<TopicRow>, messages: Vec<MessageRow>) -> (Vec<TopicHit>, Vec<MessageHit>) {
    (
        topics
            .into_iter()
            .map(|(topic_id, title, title_marked, snippet)| TopicHit { topic_id, title, title_marked, snippet })
            .collect(),
        messages
            .into_iter()
            .map(|(topic_id, seq, topic_title, author_name, created_at, snippet)| MessageHit {
                topic_id,
                seq,
                topic_title,
                author_name,
                created_at,
                snippet,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::query_words;

    #[test]
    fn queries_are_words_only() {
        assert_eq!(query_words("  budget \"OR\" NEAR(x*) -- 李雷 "), ["budget", "OR", "NEAR", "x", "李雷"]);
        assert_eq!(query_words("a b c d e f g h i j").len(), 8);
        assert!(query_words("*** ---").is_empty());
    }
}
