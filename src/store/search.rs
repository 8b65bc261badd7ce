//! Searching a team's topics and messages with each backend's own full-text engine:
//! SQLite's FTS5 (`bm25`, `snippet`) and PostgreSQL's tsvector (`ts_rank_cd`,
//! `ts_headline`), both without stemming. Every word of the query must be there (any
//! case); the best matches come first. Snippets come back with the matches between the
//! search's own [`Marks`] (random for each search, so no stored text can fake them), so
//! that the page escapes the text first and adds its highlighting after.
//!
//! A search never holds up anyone else: both engines start from the index (each row is
//! indexed with its team as a token of its own, so a search intersects the team's rows
//! with each word's inside the index, and the plan is checked by a test), searches run at
//! most [`SEARCHES_AT_ONCE`] at a time on connections of their own, and a search that runs
//! past [`SEARCH_TIME_LIMIT`] or whose request went away is stopped: on SQLite by a
//! progress handler, on PostgreSQL by a statement timeout.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::{Backend, Error, Result, Store};

/// At most this many words of a query are used.
pub const MAX_QUERY_WORDS: usize = 8;
/// Results per kind (topics, messages).
const LIMIT: i64 = 30;
/// Searches running at once on one node; more wait for a turn (up to [`SEARCH_QUEUE_WAIT`]).
pub const SEARCHES_AT_ONCE: u32 = 2;
/// How long a search waits for its turn before it is refused as busy.
const SEARCH_QUEUE_WAIT: Duration = Duration::from_secs(3);
/// A search that takes longer is stopped (an indexed one takes milliseconds), unless the
/// store is told otherwise ([`Store::with_search_time_limit`]).
pub const SEARCH_TIME_LIMIT: Duration = Duration::from_secs(3);
/// SQLite virtual-machine steps between two looks at the clock and the cancel flag.
const PROGRESS_STEPS: i32 = 4_000;

/// Where one search's engine puts a match's start and end in a snippet: private-use
/// characters around a random number, new for each search, so that text a user wrote
/// cannot pass for a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    pub start: String,
    pub end: String,
}

impl Marks {
    fn random() -> Marks {
        let mut nonce = [0u8; 8];
        // Without randomness the marks are still private-use characters around a number
        // nobody sees: good enough, and never a failed search.
        let _ = getrandom::fill(&mut nonce);
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        Marks { start: format!("\u{E000}{hex}\u{E000}"), end: format!("\u{E001}{hex}\u{E001}") }
    }
}

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

/// What a search found, and the marks its snippets carry.
#[derive(Debug, Clone)]
pub struct SearchHits {
    pub topics: Vec<TopicHit>,
    pub messages: Vec<MessageHit>,
    pub marks: Marks,
}

/// The words of a query: letters and digits, at most [`MAX_QUERY_WORDS`].
pub fn query_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_QUERY_WORDS)
        .map(|w| w.chars().take(64).collect())
        .collect()
}

/// The searches' own connections: on SQLite a small read-only pool (each connection can
/// be interrupted, which sqlx's `Any` driver cannot do), on PostgreSQL a turn of the
/// main pool.
#[derive(Clone)]
pub(super) enum Searcher {
    Sqlite(SqlitePool),
    Postgres(Arc<tokio::sync::Semaphore>),
}

impl Searcher {
    pub(super) async fn open(url: &str, backend: Backend) -> Result<Searcher> {
        Ok(match backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?
                    .read_only(true)
                    .create_if_missing(false)
                    .busy_timeout(SEARCH_QUEUE_WAIT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(SEARCHES_AT_ONCE)
                    .acquire_timeout(SEARCH_QUEUE_WAIT)
                    .connect_with(options)
                    .await?;
                Searcher::Sqlite(pool)
            }
            Backend::Postgres => Searcher::Postgres(Arc::new(tokio::sync::Semaphore::new(SEARCHES_AT_ONCE as usize))),
        })
    }

    pub(super) async fn close(&self) {
        if let Searcher::Sqlite(pool) = self {
            pool.close().await;
        }
    }
}

/// Sets its flag when dropped: a search whose request went away (the future dropped
/// mid-query) stops at the progress handler's next look.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How many of a team's newest matches are ranked: a word in 100,000 messages would
/// otherwise have all of them scored (a third of a second) to show 30. Among more matches
/// than this, the best of the newest are shown; the index hands them over newest first
/// and stops there.
pub const CANDIDATES: i64 = 2_000;

/// SQLite, in two steps, each starting from the full-text index: which rows are best
/// among the newest [`CANDIDATES`] (only scores, no snippets), then those rows' snippets,
/// each found by its rowid in the index. `$1` is the FTS5 query (the team's token and
/// every word), `$2` the candidates, `$3` the results.
const SQLITE_BEST_TOPICS: &str = "SELECT id FROM (SELECT rowid AS id, bm25(topics_fts, 10.0, 1.0, 0.0) AS score
     FROM topics_fts WHERE topics_fts MATCH $1 ORDER BY rowid DESC LIMIT $2) ORDER BY score, id DESC LIMIT $3";
const SQLITE_BEST_MESSAGES: &str = "SELECT id FROM (SELECT rowid AS id, bm25(messages_fts, 1.0, 0.0) AS score
     FROM messages_fts WHERE messages_fts MATCH $1 ORDER BY rowid DESC LIMIT $2) ORDER BY score, id DESC LIMIT $3";
/// `$1` the FTS5 query, `$2` the ids as a JSON array, `$3`/`$4` the marks, `$5` the team.
const SQLITE_TOPICS: &str =
    "SELECT t.id, t.title, highlight(topics_fts, 0, $3, $4), snippet(topics_fts, 1, $3, $4, '…', 16)
     FROM topics_fts JOIN topics t ON t.id = topics_fts.rowid
     WHERE topics_fts MATCH $1 AND topics_fts.rowid IN (SELECT value FROM json_each($2)) AND t.team_id = $5";
const SQLITE_MESSAGES: &str = "SELECT m.topic_id, m.seq, t.title, u.display_name, m.created_at,
            snippet(messages_fts, 0, $3, $4, '…', 16), m.id
     FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
     JOIN topics t ON t.id = m.topic_id JOIN users u ON u.id = m.author_id
     WHERE messages_fts MATCH $1 AND messages_fts.rowid IN (SELECT value FROM json_each($2))
       AND t.team_id = $5 AND m.deleted_at IS NULL";

impl Store {
    /// The same store, whose searches are stopped after `limit`.
    pub fn with_search_time_limit(mut self, limit: Duration) -> Store {
        self.search_time_limit = limit;
        self
    }

    /// Topics and messages of `team_id` that hold every word of `words`, best first.
    /// Err([`Error::SearchBusy`]) when too many searches are running, and
    /// Err([`Error::SearchTooLong`]) when it was stopped.
    pub async fn search(&self, team_id: i64, words: &[String]) -> Result<SearchHits> {
        let marks = Marks::random();
        if words.is_empty() {
            return Ok(SearchHits { topics: Vec::new(), messages: Vec::new(), marks });
        }
        let (topics, messages) = match &self.searcher {
            Searcher::Sqlite(pool) => self.search_sqlite(pool, team_id, words, &marks).await?,
            Searcher::Postgres(turns) => {
                let _turn = tokio::time::timeout(SEARCH_QUEUE_WAIT, turns.acquire())
                    .await
                    .map_err(|_| Error::SearchBusy)?
                    .map_err(|_| Error::SearchBusy)?;
                self.search_postgres(team_id, words, &marks).await?
            }
        };
        Ok(SearchHits { topics: topic_hits(topics), messages: message_hits(messages), marks })
    }

    async fn search_sqlite(
        &self,
        pool: &SqlitePool,
        team_id: i64,
        words: &[String],
        marks: &Marks,
    ) -> Result<(Vec<TopicRow>, Vec<MessageRow>)> {
        let mut conn = pool.acquire().await.map_err(|e| match e {
            sqlx::Error::PoolTimedOut => Error::SearchBusy,
            e => Error::Database(e),
        })?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(Arc::clone(&cancelled));
        let deadline = Instant::now() + self.search_time_limit;
        let stopped = Arc::new(AtomicBool::new(false));
        {
            let (cancelled, stopped) = (Arc::clone(&cancelled), Arc::clone(&stopped));
            conn.lock_handle().await?.set_progress_handler(PROGRESS_STEPS, move || {
                let go_on = !cancelled.load(Ordering::Relaxed) && Instant::now() < deadline;
                if !go_on {
                    stopped.store(true, Ordering::Relaxed);
                }
                go_on
            });
        }
        // Each word as an FTS5 string (quotes doubled): no operator can slip in. The
        // team's token and every word, each in its own columns.
        let matching = words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect::<Vec<_>>().join(" ");
        let in_team = |text: &str| format!("team : \"t{team_id}\" AND {{{text}}} : ({matching})");
        let result = async {
            let mut found = Vec::new();
            for (best, text) in [(SQLITE_BEST_TOPICS, "title body"), (SQLITE_BEST_MESSAGES, "body")] {
                let ids: Vec<(i64,)> =
                    sqlx::query_as(best).bind(in_team(text)).bind(CANDIDATES).bind(LIMIT).fetch_all(&mut *conn).await?;
                found.push((in_team(text), ids.into_iter().map(|(id,)| id).collect::<Vec<i64>>()));
            }
            let json = |ids: &[i64]| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
            let mut topics: Vec<TopicRow> = sqlx::query_as(SQLITE_TOPICS)
                .bind(&found[0].0)
                .bind(json(&found[0].1))
                .bind(&marks.start)
                .bind(&marks.end)
                .bind(team_id)
                .fetch_all(&mut *conn)
                .await?;
            let messages: Vec<(i64, i64, String, String, i64, String, i64)> = sqlx::query_as(SQLITE_MESSAGES)
                .bind(&found[1].0)
                .bind(json(&found[1].1))
                .bind(&marks.start)
                .bind(&marks.end)
                .bind(team_id)
                .fetch_all(&mut *conn)
                .await?;
            // In the order of the scores.
            let rank = |ids: &[i64], id: i64| ids.iter().position(|i| *i == id).unwrap_or(usize::MAX);
            topics.sort_by_key(|t| rank(&found[0].1, t.0));
            let mut messages: Vec<(usize, MessageRow)> = messages
                .into_iter()
                .map(|(a, b, c, d, e, f, id)| (rank(&found[1].1, id), (a, b, c, d, e, f)))
                .collect();
            messages.sort_by_key(|(rank, _)| *rank);
            Ok::<_, sqlx::Error>((topics, messages.into_iter().map(|(_, row)| row).collect()))
        }
        .await;
        if let Ok(mut handle) = conn.lock_handle().await {
            handle.remove_progress_handler();
        }
        match result {
            Ok(rows) => Ok(rows),
            Err(_) if stopped.load(Ordering::Relaxed) => Err(Error::SearchTooLong),
            Err(e) => Err(Error::Database(e)),
        }
    }

    async fn search_postgres(
        &self,
        team_id: i64,
        words: &[String],
        marks: &Marks,
    ) -> Result<(Vec<TopicRow>, Vec<MessageRow>)> {
        let text = words.join(" ");
        // The newest candidates are sorted by `id + 0`, which no index serves: otherwise the
        // planner may walk the primary key backwards testing every row, which never ends
        // for a word the team does not have (a third of a second at 1 M messages), where
        // the full-text index finds the team's matches at once.
        let options =
            format!("StartSel={}, StopSel={}, MaxWords=24, MinWords=8, MaxFragments=1", marks.start, marks.end);
        // The team's lexeme (see the migrations), quoted as tsquery input.
        let team = format!("'#{team_id}'");
        let mut tx = self.pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL statement_timeout = {}",
            self.search_time_limit.as_millis().max(1)
        )))
        .execute(&mut *tx)
        .await?;
        let result = async {
            let topics: Vec<TopicRow> = sqlx::query_as(
                "SELECT t.id, t.title, ts_headline('simple', t.title, q, $4), ts_headline('simple', t.body, q, $3)
                 FROM (SELECT c.id, ts_rank_cd(c.search, q) AS score
                       FROM (SELECT id, search FROM topics, plainto_tsquery('simple', $1) q
                             WHERE search @@ (q && $6::tsquery) AND team_id = $2
                             ORDER BY id + 0 DESC LIMIT $7) c, plainto_tsquery('simple', $1) q
                       ORDER BY score DESC, c.id DESC LIMIT $5) best
                 JOIN topics t ON t.id = best.id, plainto_tsquery('simple', $1) q
                 ORDER BY best.score DESC, t.id DESC",
            )
            .bind(&text)
            .bind(team_id)
            .bind(&options)
            .bind(format!("StartSel={}, StopSel={}, HighlightAll=true", marks.start, marks.end))
            .bind(LIMIT)
            .bind(&team)
            .bind(CANDIDATES)
            .fetch_all(&mut *tx)
            .await?;
            let messages: Vec<MessageRow> = sqlx::query_as(
                "SELECT m.topic_id, m.seq, t.title, u.display_name, m.created_at, ts_headline('simple', m.body, q, $3)
                 FROM (SELECT c.id, ts_rank_cd(c.search, q) AS score
                       FROM (SELECT id, search FROM messages, plainto_tsquery('simple', $1) q
                             WHERE search @@ (q && $5::tsquery) AND deleted_at IS NULL
                             ORDER BY id + 0 DESC LIMIT $6) c, plainto_tsquery('simple', $1) q
                       ORDER BY score DESC, c.id DESC LIMIT $4) best
                 JOIN messages m ON m.id = best.id JOIN topics t ON t.id = m.topic_id JOIN users u ON u.id = m.author_id,
                      plainto_tsquery('simple', $1) q
                 WHERE t.team_id = $2
                 ORDER BY best.score DESC, m.id DESC",
            )
            .bind(&text)
            .bind(team_id)
            .bind(&options)
            .bind(LIMIT)
            .bind(&team)
            .bind(CANDIDATES)
            .fetch_all(&mut *tx)
            .await?;
            Ok::<_, sqlx::Error>((topics, messages))
        }
        .await;
        match result {
            Ok(rows) => {
                tx.commit().await?;
                Ok(rows)
            }
            // 57014: query_canceled (the statement timeout).
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("57014") => Err(Error::SearchTooLong),
            Err(e) => Err(Error::Database(e)),
        }
    }

    /// How SQLite plans the four search statements (`EXPLAIN QUERY PLAN`, one line per
    /// step), for the test that keeps them starting from the index.
    pub async fn search_plans(&self) -> Result<Vec<String>> {
        let Searcher::Sqlite(pool) = &self.searcher else { return Ok(Vec::new()) };
        let mut lines = Vec::new();
        let query = "team : \"t1\" AND body : (\"x\")";
        for statement in [SQLITE_BEST_TOPICS, SQLITE_BEST_MESSAGES, SQLITE_TOPICS, SQLITE_MESSAGES] {
            let explain = sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {statement}"));
            let plan: Vec<(i64, i64, i64, String)> = if statement.contains("json_each") {
                sqlx::query_as(explain)
                    .bind(query)
                    .bind("[1, 2]")
                    .bind("[")
                    .bind("]")
                    .bind(1_i64)
                    .fetch_all(pool)
                    .await?
            } else {
                sqlx::query_as(explain).bind(query).bind(CANDIDATES).bind(LIMIT).fetch_all(pool).await?
            };
            lines.push(plan.into_iter().map(|(_, _, _, detail)| detail).collect::<Vec<_>>().join(" | "));
        }
        Ok(lines)
    }
}

type TopicRow = (i64, String, String, String);
type MessageRow = (i64, i64, String, String, i64, String);

fn topic_hits(rows: Vec<TopicRow>) -> Vec<TopicHit> {
    rows.into_iter()
        .map(|(topic_id, title, title_marked, snippet)| TopicHit { topic_id, title, title_marked, snippet })
        .collect()
}

fn message_hits(rows: Vec<MessageRow>) -> Vec<MessageHit> {
    rows.into_iter()
        .map(|(topic_id, seq, topic_title, author_name, created_at, snippet)| MessageHit {
            topic_id,
            seq,
            topic_title,
            author_name,
            created_at,
            snippet,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Marks, query_words};

    #[test]
    fn queries_are_words_only() {
        assert_eq!(query_words("  budget \"OR\" NEAR(x*) -- 李雷 "), ["budget", "OR", "NEAR", "x", "李雷"]);
        assert_eq!(query_words("a b c d e f g h i j").len(), 8);
        assert!(query_words("*** ---").is_empty());
    }

    #[test]
    fn every_search_marks_its_matches_its_own_way() {
        let (a, b) = (Marks::random(), Marks::random());
        assert_ne!(a, b);
        assert!(a.start.starts_with('\u{E000}') && a.end.ends_with('\u{E001}') && a.start.len() == 22);
    }
}
