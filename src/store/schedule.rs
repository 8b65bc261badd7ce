//! Meetings planned ahead, and each team's calendar feed secret. A scheduled meeting
//! keeps its id (its calendar UID) from planning to start; every change calendars must
//! hear of (an edit, the cancellation) raises its `sequence`.

use super::{Result, Store};

/// A meeting in the team's calendar.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub id: i64,
    pub team_id: i64,
    pub title: String,
    pub description: String,
    /// Unix milliseconds (UTC).
    pub starts_at: i64,
    pub duration_minutes: i64,
    /// The IANA time zone it was planned in (how it is shown; calendars get UTC).
    pub time_zone: String,
    pub created_by: i64,
    pub host_name: String,
    pub created_at: i64,
    pub sequence: i64,
    pub cancelled_at: Option<i64>,
    /// The live meeting it became, once started.
    pub meeting_id: Option<i64>,
}

impl Scheduled {
    pub fn ends_at(&self) -> i64 {
        self.starts_at + self.duration_minutes * 60_000
    }
}

/// What planning a meeting takes.
pub struct Plan<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub starts_at: i64,
    pub duration_minutes: i64,
    pub time_zone: &'a str,
}

type Row = (i64, i64, String, String, i64, i64, String, i64, String, i64, i64, Option<i64>, Option<i64>);

const SELECT: &str = "SELECT s.id, s.team_id, s.title, s.description, s.starts_at, s.duration_minutes, s.time_zone,
     s.created_by, u.display_name, s.created_at, s.sequence, s.cancelled_at, s.meeting_id
     FROM scheduled_meetings s JOIN users u ON u.id = s.created_by";

fn from_row(r: Row) -> Scheduled {
    let (id, team_id, title, description, starts_at, duration_minutes, time_zone, created_by, host_name) =
        (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8);
    Scheduled {
        id,
        team_id,
        title,
        description,
        starts_at,
        duration_minutes,
        time_zone,
        created_by,
        host_name,
        created_at: r.9,
        sequence: r.10,
        cancelled_at: r.11,
        meeting_id: r.12,
    }
}

impl Store {
    pub async fn schedule_meeting(&self, team_id: i64, by: i64, plan: &Plan<'_>, now: i64) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO scheduled_meetings (team_id, title, description, starts_at, duration_minutes, time_zone, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(team_id)
        .bind(plan.title)
        .bind(plan.description)
        .bind(plan.starts_at)
        .bind(plan.duration_minutes)
        .bind(plan.time_zone)
        .bind(by)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// A scheduled meeting of a team (None if it belongs to another team).
    pub async fn scheduled(&self, team_id: i64, id: i64) -> Result<Option<Scheduled>> {
        let sql = format!("{SELECT} WHERE s.id = $1 AND s.team_id = $2");
        let row: Option<Row> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(team_id).fetch_optional(&self.pool).await?;
        Ok(row.map(from_row))
    }

    /// What is still to come: not started, not cancelled, not over; soonest first.
    pub async fn upcoming(&self, team_id: i64, now: i64) -> Result<Vec<Scheduled>> {
        let sql = format!(
            "{SELECT} WHERE s.team_id = $1 AND s.meeting_id IS NULL AND s.cancelled_at IS NULL
             AND s.starts_at + s.duration_minutes * 60000 > $2 ORDER BY s.starts_at, s.id LIMIT 50"
        );
        let rows: Vec<Row> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(team_id).bind(now).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// The team's calendar: from 30 days back on, cancelled ones too (so that calendars
    /// that had them drop them).
    pub async fn calendar(&self, team_id: i64, now: i64) -> Result<Vec<Scheduled>> {
        let sql = format!("{SELECT} WHERE s.team_id = $1 AND s.starts_at > $2 ORDER BY s.starts_at, s.id LIMIT 500");
        let since = now - 30 * 86_400_000;
        let rows: Vec<Row> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(team_id).bind(since).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Changes a plan that has not started; calendars see a new sequence.
    pub async fn reschedule(&self, id: i64, plan: &Plan<'_>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE scheduled_meetings SET title = $1, description = $2, starts_at = $3, duration_minutes = $4,
             time_zone = $5, sequence = sequence + 1 WHERE id = $6 AND meeting_id IS NULL AND cancelled_at IS NULL",
        )
        .bind(plan.title)
        .bind(plan.description)
        .bind(plan.starts_at)
        .bind(plan.duration_minutes)
        .bind(plan.time_zone)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn cancel_scheduled(&self, id: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE scheduled_meetings SET cancelled_at = $1, sequence = sequence + 1
             WHERE id = $2 AND meeting_id IS NULL AND cancelled_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Starts a scheduled meeting: the usual live meeting with its topic, linked to the
    /// plan. Returns the meeting's id, or the one it already became (started twice).
    pub async fn start_scheduled(&self, s: &Scheduled, by: i64, now: i64) -> Result<i64> {
        if let Some(id) = s.meeting_id {
            return Ok(id);
        }
        let meeting_id = self.create_meeting(s.team_id, by, &s.title, now).await?;
        let linked = sqlx::query("UPDATE scheduled_meetings SET meeting_id = $1 WHERE id = $2 AND meeting_id IS NULL")
            .bind(meeting_id)
            .bind(s.id)
            .execute(&self.pool)
            .await?;
        if linked.rows_affected() == 0 {
            // Someone started it at the same moment: theirs is the meeting.
            self.end_meeting(meeting_id, by, now).await?;
            let (id,): (Option<i64>,) = sqlx::query_as("SELECT meeting_id FROM scheduled_meetings WHERE id = $1")
                .bind(s.id)
                .fetch_one(&self.pool)
                .await?;
            return Ok(id.unwrap_or(meeting_id));
        }
        Ok(meeting_id)
    }

    /// The team's calendar feed secret, made on first use.
    pub async fn calendar_secret(&self, team_id: i64) -> Result<String> {
        let (secret,): (Option<String>,) = sqlx::query_as("SELECT calendar_secret FROM teams WHERE id = $1")
            .bind(team_id)
            .fetch_one(&self.pool)
            .await?;
        match secret {
            Some(secret) => Ok(secret),
            None => self.new_calendar_secret(team_id).await,
        }
    }

    /// A new feed secret: the old address stops working.
    pub async fn new_calendar_secret(&self, team_id: i64) -> Result<String> {
        let secret = crate::auth::random_token();
        sqlx::query("UPDATE teams SET calendar_secret = $1 WHERE id = $2")
            .bind(&secret)
            .bind(team_id)
            .execute(&self.pool)
            .await?;
        Ok(secret)
    }

    /// The team whose feed `secret` opens: (id, name).
    pub async fn team_of_calendar(&self, secret: &str) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as("SELECT id, name FROM teams WHERE calendar_secret = $1")
            .bind(secret)
            .fetch_optional(&self.pool)
            .await?)
    }
}
