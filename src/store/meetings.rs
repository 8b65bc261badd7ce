//! Team meetings, each with its forum topic, and attendance (who was in it, and when).

use super::forum::{TopicKind, insert_topic};
use super::recordings::RecordingState;
use super::{Result, Store};

/// A meeting of a team.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub id: i64,
    pub team_id: i64,
    pub topic_id: i64,
    pub title: String,
    pub created_by: i64,
    pub host_name: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

impl Meeting {
    pub fn is_live(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// A meeting in a list, with who attended and who is in it now.
#[derive(Debug, Clone)]
pub struct MeetingSummary {
    pub meeting: Meeting,
    pub team_name: String,
    /// Everyone who ever joined, by name.
    pub attendees: Vec<String>,
    /// Those in it now, by name.
    pub present: Vec<String>,
    /// The meeting's recordings, oldest first.
    pub recordings: Vec<RecordingBrief>,
}

/// (meeting, id, state, progress, interrupted, duration, video size)
type BriefRow = (i64, i64, String, i64, i64, Option<i64>, Option<i64>);

/// A recording as a meeting list shows it.
#[derive(Debug, Clone)]
pub struct RecordingBrief {
    pub id: i64,
    pub state: RecordingState,
    pub progress: i64,
    pub interrupted: bool,
    pub duration_ms: Option<i64>,
    pub composed_bytes: Option<i64>,
}

/// One stay of one person in a meeting.
#[derive(Debug, Clone)]
pub struct Attendance {
    pub user_id: i64,
    pub display_name: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
}

type MeetingRow = (i64, i64, i64, String, i64, String, i64, Option<i64>);
/// A meeting row followed by its team's name.
type LiveMeetingRow = (i64, i64, i64, String, i64, String, i64, Option<i64>, String);

const MEETING_SELECT: &str =
    "SELECT m.id, m.team_id, m.topic_id, m.title, m.created_by, u.display_name, m.started_at, m.ended_at
     FROM meetings m JOIN users u ON u.id = m.created_by";

fn meeting_from(row: MeetingRow) -> Meeting {
    let (id, team_id, topic_id, title, created_by, host_name, started_at, ended_at) = row;
    Meeting { id, team_id, topic_id, title, created_by, host_name, started_at, ended_at }
}

impl Store {
    /// Starts a meeting with its own forum topic.
    pub async fn create_meeting(&self, team_id: i64, host_id: i64, title: &str, now: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let body = "Meeting chat: messages written during the meeting, and by team members here, appear below.";
        let topic_id = insert_topic(&mut tx, team_id, host_id, TopicKind::Meeting, title, body, now).await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO meetings (team_id, topic_id, title, created_by, started_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(team_id)
        .bind(topic_id)
        .bind(title)
        .bind(host_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A meeting of a team (None if it belongs to another team).
    pub async fn meeting(&self, team_id: i64, meeting_id: i64) -> Result<Option<Meeting>> {
        let sql = format!("{MEETING_SELECT} WHERE m.id = $1 AND m.team_id = $2");
        let row: Option<MeetingRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(meeting_id).bind(team_id).fetch_optional(&self.pool).await?;
        Ok(row.map(meeting_from))
    }

    /// Any meeting, with its team's name (for the ops dashboard).
    pub async fn any_meeting(&self, meeting_id: i64) -> Result<Option<(Meeting, String)>> {
        let sql = format!("{MEETING_SELECT} WHERE m.id = $1");
        let row: Option<MeetingRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(meeting_id).fetch_optional(&self.pool).await?;
        let Some(meeting) = row.map(meeting_from) else { return Ok(None) };
        let (team,): (String,) =
            sqlx::query_as("SELECT name FROM teams WHERE id = $1").bind(meeting.team_id).fetch_one(&self.pool).await?;
        Ok(Some((meeting, team)))
    }

    /// All meetings of a team: live ones first, then ended ones, latest first.
    pub async fn team_meetings(&self, team_id: i64) -> Result<Vec<MeetingSummary>> {
        let sql = format!(
            "{MEETING_SELECT} WHERE m.team_id = $1
             ORDER BY CASE WHEN m.ended_at IS NULL THEN 0 ELSE 1 END, m.started_at DESC, m.id DESC LIMIT 200"
        );
        let rows: Vec<MeetingRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(team_id).fetch_all(&self.pool).await?;
        self.summarize(rows.into_iter().map(|r| (meeting_from(r), String::new())).collect()).await
    }

    /// Live meetings in every team the user belongs to.
    pub async fn live_meetings_of_user(&self, user_id: i64) -> Result<Vec<MeetingSummary>> {
        self.live_meetings(Some(user_id)).await
    }

    /// Every live meeting of the instance, for the ops dashboard.
    pub async fn all_live_meetings(&self) -> Result<Vec<MeetingSummary>> {
        self.live_meetings(None).await
    }

    /// Live meetings, latest first: of the teams `member` belongs to (100 at most), or all
    /// of them (200 at most).
    async fn live_meetings(&self, member: Option<i64>) -> Result<Vec<MeetingSummary>> {
        let (join, limit) = match member {
            Some(_) => ("JOIN memberships ms ON ms.team_id = m.team_id AND ms.user_id = $1", 100),
            None => ("", 200),
        };
        let sql = format!(
            "SELECT m.id, m.team_id, m.topic_id, m.title, m.created_by, u.display_name, m.started_at, m.ended_at, t.name
             FROM meetings m JOIN users u ON u.id = m.created_by JOIN teams t ON t.id = m.team_id {join}
             WHERE m.ended_at IS NULL ORDER BY m.started_at DESC LIMIT {limit}"
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        if let Some(user_id) = member {
            query = query.bind(user_id);
        }
        let rows: Vec<LiveMeetingRow> = query.fetch_all(&self.pool).await?;
        let meetings = rows
            .into_iter()
            .map(|(a, b, c, d, e, f, g, h, team_name)| (meeting_from((a, b, c, d, e, f, g, h)), team_name))
            .collect();
        self.summarize(meetings).await
    }

    /// How many recordings are in each state: (state, count).
    pub async fn recording_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT state, COUNT(*) FROM recordings GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Compositions waiting or under way, oldest first: (recording, meeting title, per cent done).
    pub async fn compositions_under_way(&self, limit: i64) -> Result<Vec<(i64, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT r.id, m.title, r.progress FROM recordings r JOIN meetings m ON m.id = r.meeting_id
             WHERE r.state = 'composing' ORDER BY r.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The latest failed recordings and compositions: (recording, meeting title, reason).
    pub async fn recent_recording_failures(&self, limit: i64) -> Result<Vec<(i64, String, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT r.id, m.title, r.reason FROM recordings r JOIN meetings m ON m.id = r.meeting_id
             WHERE r.state = 'failed' ORDER BY r.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Attendance and recordings of a page of meetings: two queries, whatever the count.
    async fn summarize(&self, meetings: Vec<(Meeting, String)>) -> Result<Vec<MeetingSummary>> {
        if meetings.is_empty() {
            return Ok(Vec::new());
        }
        // Ids are integers from the database: safe to spell out in the query.
        let ids = meetings.iter().map(|(m, _)| m.id.to_string()).collect::<Vec<_>>().join(",");
        let stays: Vec<(i64, String, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT a.meeting_id, u.display_name, a.left_at FROM attendance a JOIN users u ON u.id = a.user_id
             WHERE a.meeting_id IN ({ids}) ORDER BY a.joined_at, a.id"
        )))
        .fetch_all(&self.pool)
        .await?;
        let recordings: Vec<BriefRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT meeting_id, id, state, progress, interrupted, duration_ms, composed_bytes FROM recordings
                 WHERE meeting_id IN ({ids}) ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(meetings.len());
        for (meeting, team_name) in meetings {
            let mut attendees: Vec<String> = Vec::new();
            let mut present: Vec<String> = Vec::new();
            for (_, name, left_at) in stays.iter().filter(|(m, _, _)| *m == meeting.id) {
                if !attendees.contains(name) {
                    attendees.push(name.clone());
                }
                if left_at.is_none() && !present.contains(name) {
                    present.push(name.clone());
                }
            }
            let recordings = recordings
                .iter()
                .filter(|r| r.0 == meeting.id)
                .map(|(_, id, state, progress, interrupted, duration_ms, composed_bytes)| {
                    Ok(RecordingBrief {
                        id: *id,
                        state: RecordingState::parse(state)?,
                        progress: *progress,
                        interrupted: *interrupted != 0,
                        duration_ms: *duration_ms,
                        composed_bytes: *composed_bytes,
                    })
                })
                .collect::<Result<_>>()?;
            out.push(MeetingSummary { meeting, team_name, attendees, present, recordings });
        }
        Ok(out)
    }

    /// Every stay in a meeting, in order of joining.
    pub async fn attendance(&self, meeting_id: i64) -> Result<Vec<Attendance>> {
        let rows: Vec<(i64, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT a.user_id, u.display_name, a.joined_at, a.left_at
             FROM attendance a JOIN users u ON u.id = a.user_id
             WHERE a.meeting_id = $1 ORDER BY a.joined_at, a.id",
        )
        .bind(meeting_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, display_name, joined_at, left_at)| Attendance { user_id, display_name, joined_at, left_at })
            .collect())
    }

    /// Records that a user joined a live meeting; a no-op if they are already in it.
    /// Returns false if the meeting has ended.
    pub async fn join_meeting(&self, meeting_id: i64, user_id: i64, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let live: Option<(i64,)> = sqlx::query_as("SELECT id FROM meetings WHERE id = $1 AND ended_at IS NULL")
            .bind(meeting_id)
            .fetch_optional(&mut *tx)
            .await?;
        if live.is_none() {
            return Ok(false);
        }
        let open: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM attendance WHERE meeting_id = $1 AND user_id = $2 AND left_at IS NULL")
                .bind(meeting_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        if open.is_none() {
            let inserted = sqlx::query("INSERT INTO attendance (meeting_id, user_id, joined_at) VALUES ($1, $2, $3)")
                .bind(meeting_id)
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await;
            match inserted {
                // A join racing this one opened it first: they are in, as asked.
                Err(e) if super::is_unique_violation(&e) => return Ok(true),
                other => other?,
            };
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records that a user left a meeting.
    pub async fn leave_meeting(&self, meeting_id: i64, user_id: i64, now: i64) -> Result<()> {
        sqlx::query("UPDATE attendance SET left_at = $1 WHERE meeting_id = $2 AND user_id = $3 AND left_at IS NULL")
            .bind(now)
            .bind(meeting_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes every open attendance of a meeting at `at` (the node its call was on died:
    /// nobody is connected to it any more); returns how many were open.
    pub async fn close_attendance(&self, meeting_id: i64, at: i64) -> Result<u64> {
        let closed = sqlx::query("UPDATE attendance SET left_at = $1 WHERE meeting_id = $2 AND left_at IS NULL")
            .bind(at)
            .bind(meeting_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(closed)
    }

    /// Live meetings someone is marked as in: (meeting, team).
    pub async fn meetings_with_open_attendance(&self) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT m.id, m.team_id FROM meetings m JOIN attendance a ON a.meeting_id = m.id
             WHERE m.ended_at IS NULL AND a.left_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends a live meeting; everyone still in it leaves. False if it had already ended.
    pub async fn end_meeting(&self, meeting_id: i64, by_user: i64, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query("UPDATE meetings SET ended_at = $1, ended_by = $2 WHERE id = $3 AND ended_at IS NULL")
            .bind(now)
            .bind(by_user)
            .bind(meeting_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        sqlx::query("UPDATE attendance SET left_at = $1 WHERE meeting_id = $2 AND left_at IS NULL")
            .bind(now)
            .bind(meeting_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ended)
    }
}

/// What the relay needs to admit a user to a meeting.
#[derive(Debug, Clone)]
pub struct MeetingAdmission {
    pub team_id: i64,
    pub live: bool,
    pub display_name: String,
    /// They run the meeting: its creator, or the team's owner or an admin.
    pub host: bool,
    /// A host let them in from the lobby before.
    pub admitted: bool,
    /// A host removed them: they may not come back.
    pub removed: bool,
    /// Newcomers wait in the lobby until a host lets them in.
    pub ask_to_join: bool,
    /// Above this many people, newcomers join muted with their camera off.
    pub quiet_above: u32,
}

impl Store {
    /// The meeting's team, whether it is live, the user's name and standing in it — if
    /// the user is a member of the meeting's team.
    pub async fn meeting_admission(&self, meeting_id: i64, user_id: i64) -> Result<Option<MeetingAdmission>> {
        type Row = (i64, Option<i64>, String, i64, String, i64, i64, Option<i64>, Option<i64>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT m.team_id, m.ended_at, u.display_name, m.created_by, ms.role, m.ask_to_join, m.quiet_above,
                    a.admitted_at, a.removed_at
             FROM meetings m JOIN memberships ms ON ms.team_id = m.team_id AND ms.user_id = $2
             JOIN users u ON u.id = ms.user_id
             LEFT JOIN meeting_access a ON a.meeting_id = m.id AND a.user_id = ms.user_id
             WHERE m.id = $1",
        )
        .bind(meeting_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(team_id, ended_at, display_name, created_by, role, ask_to_join, quiet_above, admitted_at, removed_at)| {
                MeetingAdmission {
                    team_id,
                    live: ended_at.is_none(),
                    display_name,
                    host: created_by == user_id || role == "owner" || role == "admin",
                    admitted: admitted_at.is_some(),
                    removed: removed_at.is_some(),
                    ask_to_join: ask_to_join != 0,
                    quiet_above: u32::try_from(quiet_above).unwrap_or(u32::MAX),
                }
            },
        ))
    }

    /// A host removed `user_id` from the meeting (`by`): they may not come back to it.
    pub async fn remove_from_meeting(&self, meeting_id: i64, user_id: i64, by: i64, at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO meeting_access (meeting_id, user_id, removed_at, removed_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (meeting_id, user_id) DO UPDATE SET removed_at = $3, removed_by = $4",
        )
        .bind(meeting_id)
        .bind(user_id)
        .bind(at)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A host let `user_id` in from the lobby (`by`): they need not wait again.
    pub async fn admit_to_meeting(&self, meeting_id: i64, user_id: i64, by: i64, at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO meeting_access (meeting_id, user_id, admitted_at, admitted_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (meeting_id, user_id) DO UPDATE SET admitted_at = $3, admitted_by = $4",
        )
        .bind(meeting_id)
        .bind(user_id)
        .bind(at)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How the meeting admits people, as its hosts set it in the call.
    pub async fn set_call_settings(&self, meeting_id: i64, ask_to_join: bool, quiet_above: u32) -> Result<()> {
        sqlx::query("UPDATE meetings SET ask_to_join = $2, quiet_above = $3 WHERE id = $1")
            .bind(meeting_id)
            .bind(i64::from(ask_to_join))
            .bind(i64::from(quiet_above))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Who hosts removed from the meeting or let in, with who did it: (name, removed,
    /// by whom), for the meeting's page.
    pub async fn meeting_access(&self, meeting_id: i64) -> Result<Vec<AccessNote>> {
        type Row = (String, Option<i64>, Option<String>, Option<i64>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT u.display_name, a.removed_at, r.display_name, a.admitted_at, d.display_name
             FROM meeting_access a JOIN users u ON u.id = a.user_id
             LEFT JOIN users r ON r.id = a.removed_by LEFT JOIN users d ON d.id = a.admitted_by
             WHERE a.meeting_id = $1 ORDER BY COALESCE(a.removed_at, a.admitted_at), u.display_name",
        )
        .bind(meeting_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, removed_at, removed_by, admitted_at, admitted_by)| AccessNote {
                name,
                removed: removed_at.zip(removed_by),
                admitted: admitted_at.zip(admitted_by),
            })
            .collect())
    }
}

/// Someone hosts let into a meeting or removed from it.
#[derive(Debug, Clone)]
pub struct AccessNote {
    pub name: String,
    /// When they were removed, and by whom.
    pub removed: Option<(i64, String)>,
    /// When they were let in from the lobby, and by whom.
    pub admitted: Option<(i64, String)>,
}
