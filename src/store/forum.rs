//! The team forum: topics (posts and meeting topics) and their messages (comments, and a
//! meeting's chat). A message's `seq` increases per topic, so a live reader can resume.

use super::{Result, Store};

/// What a topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// A post written on the forum.
    Post,
    /// The topic a meeting owns; its messages are the meeting chat.
    Meeting,
}

impl TopicKind {
    fn as_str(self) -> &'static str {
        match self {
            TopicKind::Post => "post",
            TopicKind::Meeting => "meeting",
        }
    }
    fn parse(s: &str) -> TopicKind {
        if s == "meeting" { TopicKind::Meeting } else { TopicKind::Post }
    }
}

/// A topic with its author's name.
#[derive(Debug, Clone)]
pub struct Topic {
    pub id: i64,
    pub team_id: i64,
    pub kind: TopicKind,
    pub title: String,
    pub body: String,
    pub author_id: i64,
    pub author_name: String,
    pub created_at: i64,
    pub last_activity_at: i64,
    /// The number of messages so far, and the `seq` of the latest.
    pub last_seq: i64,
    /// The meeting that owns this topic, if any.
    pub meeting_id: Option<i64>,
}

/// A topic as the forum list shows it.
pub type TopicSummary = Topic;

/// A comment or chat message.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub topic_id: i64,
    pub seq: i64,
    pub author_id: i64,
    pub author_name: String,
    pub body: String,
    pub created_at: i64,
}

type TopicRow = (i64, i64, String, String, String, i64, String, i64, i64, i64, Option<i64>);

const TOPIC_SELECT: &str = "SELECT t.id, t.team_id, t.kind, t.title, t.body, t.author_id, u.display_name,
        t.created_at, t.last_activity_at, t.last_seq, (SELECT m.id FROM meetings m WHERE m.topic_id = t.id)
     FROM topics t JOIN users u ON u.id = t.author_id";

fn topic_from(row: TopicRow) -> Topic {
    let (id, team_id, kind, title, body, author_id, author_name, created_at, last_activity_at, last_seq, meeting_id) =
        row;
    Topic {
        id,
        team_id,
        kind: TopicKind::parse(&kind),
        title,
        body,
        author_id,
        author_name,
        created_at,
        last_activity_at,
        last_seq,
        meeting_id,
    }
}

type MessageRow = (i64, i64, i64, i64, String, String, i64);

fn message_from((id, topic_id, seq, author_id, author_name, body, created_at): MessageRow) -> Message {
    Message { id, topic_id, seq, author_id, author_name, body, created_at }
}

impl Store {
    /// Creates a forum post and returns its id.
    pub async fn create_topic(&self, team_id: i64, author_id: i64, title: &str, body: &str, now: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let id = insert_topic(&mut tx, team_id, author_id, TopicKind::Post, title, body, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// One page of a team's topics, latest activity first, and the total count.
    pub async fn list_topics(&self, team_id: i64, offset: i64, limit: i64) -> Result<(Vec<TopicSummary>, i64)> {
        let sql = format!(
            "{TOPIC_SELECT} WHERE t.team_id = $1 ORDER BY t.last_activity_at DESC, t.id DESC LIMIT $2 OFFSET $3"
        );
        let rows: Vec<TopicRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(team_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM topics WHERE team_id = $1")
            .bind(team_id)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows.into_iter().map(topic_from).collect(), total))
    }

    /// A topic of a team (None if it belongs to another team).
    pub async fn topic(&self, team_id: i64, topic_id: i64) -> Result<Option<Topic>> {
        let sql = format!("{TOPIC_SELECT} WHERE t.id = $1 AND t.team_id = $2");
        let row: Option<TopicRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(topic_id).bind(team_id).fetch_optional(&self.pool).await?;
        Ok(row.map(topic_from))
    }

    /// Appends a message to a topic: the next `seq`, and the topic's activity time moves.
    pub async fn add_message(&self, topic_id: i64, author_id: i64, body: &str, now: i64) -> Result<Message> {
        let mut tx = self.pool.begin().await?;
        // The UPDATE takes the row lock first, so concurrent writers get distinct seqs.
        let (seq,): (i64,) = sqlx::query_as(
            "UPDATE topics SET last_seq = last_seq + 1, last_activity_at = $1 WHERE id = $2 RETURNING last_seq",
        )
        .bind(now)
        .bind(topic_id)
        .fetch_one(&mut *tx)
        .await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO messages (topic_id, seq, author_id, body, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(topic_id)
        .bind(seq)
        .bind(author_id)
        .bind(body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let (author_name,): (String,) =
            sqlx::query_as("SELECT display_name FROM users WHERE id = $1").bind(author_id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(Message { id, topic_id, seq, author_id, author_name, body: body.to_owned(), created_at: now })
    }

    /// Messages of a topic with `seq` in `first..=last`, oldest first.
    pub async fn messages_between(&self, topic_id: i64, first: i64, last: i64) -> Result<Vec<Message>> {
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT m.id, m.topic_id, m.seq, m.author_id, u.display_name, m.body, m.created_at
             FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.topic_id = $1 AND m.seq >= $2 AND m.seq <= $3 ORDER BY m.seq",
        )
        .bind(topic_id)
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(message_from).collect())
    }
}

/// Inserts a topic inside a transaction (a meeting creates its topic with it).
pub(super) async fn insert_topic(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    team_id: i64,
    author_id: i64,
    kind: TopicKind,
    title: &str,
    body: &str,
    now: i64,
) -> Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO topics (team_id, author_id, kind, title, body, created_at, last_activity_at, last_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $6, 0) RETURNING id",
    )
    .bind(team_id)
    .bind(author_id)
    .bind(kind.as_str())
    .bind(title)
    .bind(body)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}
