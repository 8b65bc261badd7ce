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
    /// The number of its latest event (a message, an edit or a deletion): where a live
    /// stream of it resumes.
    pub last_event: i64,
    pub edited_at: Option<i64>,
    /// The topic event of its latest edit.
    pub edited_event: Option<i64>,
    /// Locked by an admin: no new messages.
    pub locked_at: Option<i64>,
    /// Pinned by an admin to the top of the forum.
    pub pinned_at: Option<i64>,
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
    /// Empty once deleted.
    pub body: String,
    pub created_at: i64,
    /// The topic event that made it what it is now (its creation, or its latest edit or
    /// deletion): its id on live streams.
    pub event: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

type TopicRow = (
    i64,
    i64,
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

const TOPIC_SELECT: &str = "SELECT t.id, t.team_id, t.kind, t.title, t.body, t.author_id, u.display_name,
        t.created_at, t.last_activity_at, t.last_seq, (SELECT m.id FROM meetings m WHERE m.topic_id = t.id),
        t.last_event, t.edited_at, t.locked_at, t.pinned_at, t.edited_event
     FROM topics t JOIN users u ON u.id = t.author_id";

fn topic_from(row: TopicRow) -> Topic {
    let (id, team_id, kind, title, body, author_id, author_name, created_at, last_activity_at, last_seq, meeting_id) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10);
    let (last_event, edited_at, locked_at, pinned_at, edited_event) = (row.11, row.12, row.13, row.14, row.15);
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
        last_event,
        edited_at,
        edited_event,
        locked_at,
        pinned_at,
    }
}

type MessageRow = (i64, i64, i64, i64, String, String, i64, i64, Option<i64>, Option<i64>);

const MESSAGE_SELECT: &str =
    "SELECT m.id, m.topic_id, m.seq, m.author_id, u.display_name, m.body, m.created_at, m.event, m.edited_at, m.deleted_at
     FROM messages m JOIN users u ON u.id = m.author_id";

fn message_from(r: MessageRow) -> Message {
    let (id, topic_id, seq, author_id, author_name, body, created_at) = (r.0, r.1, r.2, r.3, r.4, r.5, r.6);
    Message { id, topic_id, seq, author_id, author_name, body, created_at, event: r.7, edited_at: r.8, deleted_at: r.9 }
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
            "{TOPIC_SELECT} WHERE t.team_id = $1
             ORDER BY CASE WHEN t.pinned_at IS NULL THEN 1 ELSE 0 END, t.pinned_at DESC, t.last_activity_at DESC, t.id DESC
             LIMIT $2 OFFSET $3"
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
        let (seq, event): (i64, i64) = sqlx::query_as(
            "UPDATE topics SET last_seq = last_seq + 1, last_event = last_event + 1, last_activity_at = $1
             WHERE id = $2 RETURNING last_seq, last_event",
        )
        .bind(now)
        .bind(topic_id)
        .fetch_one(&mut *tx)
        .await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO messages (topic_id, seq, author_id, body, created_at, event) VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id",
        )
        .bind(topic_id)
        .bind(seq)
        .bind(author_id)
        .bind(body)
        .bind(now)
        .bind(event)
        .fetch_one(&mut *tx)
        .await?;
        let (author_name,): (String,) =
            sqlx::query_as("SELECT display_name FROM users WHERE id = $1").bind(author_id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(Message {
            id,
            topic_id,
            seq,
            author_id,
            author_name,
            body: body.to_owned(),
            created_at: now,
            event,
            edited_at: None,
            deleted_at: None,
        })
    }

    /// Messages of a topic with `seq` in `first..=last`, oldest first.
    pub async fn messages_between(&self, topic_id: i64, first: i64, last: i64) -> Result<Vec<Message>> {
        let sql = format!("{MESSAGE_SELECT} WHERE m.topic_id = $1 AND m.seq >= $2 AND m.seq <= $3 ORDER BY m.seq");
        let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(topic_id)
            .bind(first)
            .bind(last)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(message_from).collect())
    }

    /// What a live stream that saw the topic's events up to `after` has not: every
    /// message whose latest event is later, once, in event order (at most `limit`).
    pub async fn messages_changed_after(&self, topic_id: i64, after: i64, limit: i64) -> Result<Vec<Message>> {
        let sql = format!("{MESSAGE_SELECT} WHERE m.topic_id = $1 AND m.event > $2 ORDER BY m.event LIMIT $3");
        let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(topic_id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(message_from).collect())
    }

    /// One message of a topic by its `seq`.
    pub async fn message(&self, topic_id: i64, seq: i64) -> Result<Option<Message>> {
        let sql = format!("{MESSAGE_SELECT} WHERE m.topic_id = $1 AND m.seq = $2");
        let row: Option<MessageRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(topic_id).bind(seq).fetch_optional(&self.pool).await?;
        Ok(row.map(message_from))
    }

    /// Changes a message that is not deleted (Some(body)) or deletes it (None): a new
    /// topic event either way. Returns the message as it now is, or None if it was
    /// deleted already.
    pub async fn change_message(
        &self,
        topic_id: i64,
        seq: i64,
        body: Option<&str>,
        now: i64,
    ) -> Result<Option<Message>> {
        let mut tx = self.pool.begin().await?;
        let (event,): (i64,) =
            sqlx::query_as("UPDATE topics SET last_event = last_event + 1 WHERE id = $1 RETURNING last_event")
                .bind(topic_id)
                .fetch_one(&mut *tx)
                .await?;
        let changed = match body {
            Some(body) => {
                sqlx::query(
                    "UPDATE messages SET body = $1, edited_at = $2, event = $3
                     WHERE topic_id = $4 AND seq = $5 AND deleted_at IS NULL",
                )
                .bind(body)
                .bind(now)
                .bind(event)
                .bind(topic_id)
                .bind(seq)
                .execute(&mut *tx)
                .await?
            }
            // The words go; the line that says so stays, so the conversation still reads.
            None => {
                sqlx::query(
                    "UPDATE messages SET body = '', deleted_at = $1, event = $2
                     WHERE topic_id = $3 AND seq = $4 AND deleted_at IS NULL",
                )
                .bind(now)
                .bind(event)
                .bind(topic_id)
                .bind(seq)
                .execute(&mut *tx)
                .await?
            }
        };
        if changed.rows_affected() == 0 {
            // Nothing to change: the event number is not used.
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        self.message(topic_id, seq).await
    }

    /// Changes a topic's title and text: a topic event (its number is returned), so that
    /// live readers, and readers resuming later, are sent it.
    pub async fn edit_topic(&self, topic_id: i64, title: &str, body: &str, now: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let (event,): (i64,) = sqlx::query_as(
            "UPDATE topics SET title = $1, body = $2, edited_at = $3, last_event = last_event + 1,
             edited_event = last_event + 1 WHERE id = $4 RETURNING last_event",
        )
        .bind(title)
        .bind(body)
        .bind(now)
        .bind(topic_id)
        .fetch_one(&mut *tx)
        .await?;
        // A meeting's title follows its topic's.
        sqlx::query("UPDATE meetings SET title = $1 WHERE topic_id = $2")
            .bind(title)
            .bind(topic_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(event)
    }

    /// Deletes a topic and its messages.
    pub async fn delete_topic(&self, topic_id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM messages WHERE topic_id = $1").bind(topic_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM topics WHERE id = $1").bind(topic_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Locks or unlocks a topic (`at`: when, or None), or pins or unpins it.
    pub async fn set_topic_flag(&self, topic_id: i64, flag: TopicFlag, at: Option<i64>) -> Result<()> {
        let sql = match flag {
            TopicFlag::Locked => "UPDATE topics SET locked_at = $1 WHERE id = $2",
            TopicFlag::Pinned => "UPDATE topics SET pinned_at = $1 WHERE id = $2",
        };
        sqlx::query(sql).bind(at).bind(topic_id).execute(&self.pool).await?;
        Ok(())
    }
}

/// What an admin sets on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicFlag {
    Locked,
    Pinned,
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
