//! Meeting recordings and their files (one per participant).

use std::fmt;

use super::{Result, Store};

/// Where a recording is in its life (the `recordings.state` column, checked by the
/// database): `Recording` while the call is captured, `Composing` until the meeting video
/// is written, then `Ready`, or `Failed` with a reason at either step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingState {
    Recording,
    Composing,
    Ready,
    Failed,
}

impl RecordingState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Composing => "composing",
            RecordingState::Ready => "ready",
            RecordingState::Failed => "failed",
        }
    }

    pub(super) fn parse(s: &str) -> Result<RecordingState> {
        Ok(match s {
            "recording" => RecordingState::Recording,
            "composing" => RecordingState::Composing,
            "ready" => RecordingState::Ready,
            "failed" => RecordingState::Failed,
            _ => return Err(sqlx::Error::Decode(format!("unknown recording state {s:?}").into()).into()),
        })
    }
}

impl fmt::Display for RecordingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a participant file holds (the `recording_files.kind` column): their camera and
/// microphone, or a screen share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Camera,
    Screen,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Camera => "camera",
            FileKind::Screen => "screen",
        }
    }

    fn parse(s: &str) -> Result<FileKind> {
        match s {
            "camera" => Ok(FileKind::Camera),
            "screen" => Ok(FileKind::Screen),
            _ => Err(sqlx::Error::Decode(format!("unknown recording file kind {s:?}").into()).into()),
        }
    }
}

/// A participant file to record with a finished recording.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub user_id: i64,
    pub file_name: String,
    pub kind: FileKind,
    pub bytes: i64,
}

/// A recording of a meeting.
#[derive(Debug, Clone)]
pub struct Recording {
    pub id: i64,
    pub meeting_id: i64,
    pub started_by_name: String,
    pub started_at: i64,
    pub stopped_at: Option<i64>,
    pub state: RecordingState,
    pub reason: Option<String>,
    /// Composition progress in percent, while composing.
    pub progress: i64,
    /// The server stopped while recording (the files were closed when it started again).
    pub interrupted: bool,
    /// Size of the composed video, once written.
    pub composed_bytes: Option<i64>,
    pub duration_ms: Option<i64>,
    pub files: Vec<RecordingFile>,
}

impl Recording {
    /// Whether a composition or the recording itself is still under way.
    pub fn in_progress(&self) -> bool {
        matches!(self.state, RecordingState::Recording | RecordingState::Composing)
    }
}

/// One participant's file of a recording.
#[derive(Debug, Clone)]
pub struct RecordingFile {
    pub id: i64,
    pub recording_id: i64,
    pub user_name: String,
    pub file_name: String,
    pub kind: FileKind,
    pub bytes: i64,
}

type FileRow = (i64, i64, String, String, String, i64);

fn file_of((id, recording_id, user_name, file_name, kind, bytes): FileRow) -> Result<RecordingFile> {
    Ok(RecordingFile { id, recording_id, user_name, file_name, kind: FileKind::parse(&kind)?, bytes })
}

type RecordingRow = (i64, i64, String, i64, Option<i64>, String, Option<String>, i64, i64, Option<i64>, Option<i64>);

impl Store {
    /// Records that a recording started; returns its id, or None if one is under way
    /// already (the database allows one per meeting, however requests race).
    pub async fn start_recording(&self, meeting_id: i64, user_id: i64, now: i64) -> Result<Option<i64>> {
        let started = sqlx::query_as(
            "INSERT INTO recordings (meeting_id, started_by, started_at, state) VALUES ($1, $2, $3, 'recording') RETURNING id",
        )
        .bind(meeting_id)
        .bind(user_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await;
        match started {
            Ok((id,)) => Ok(Some(id)),
            Err(e) if super::is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends the capture of a recording: `composing` with its files, or `failed` with a
    /// reason; `interrupted` if the server had stopped while it ran. Only a recording
    /// still `recording` is finished; false if it was finished already.
    pub async fn finish_recording(
        &self,
        id: i64,
        state: RecordingState,
        reason: Option<&str>,
        interrupted: bool,
        files: &[NewFile],
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let finished = sqlx::query(
            "UPDATE recordings SET state = $1, reason = $2, interrupted = $3, progress = 0,
             stopped_at = COALESCE(stopped_at, $4) WHERE id = $5 AND state = 'recording'",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(i64::from(interrupted))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !finished {
            // Finished already (by another node, or a stop that raced this one).
            return Ok(false);
        }
        for file in files {
            sqlx::query(
                "INSERT INTO recording_files (recording_id, user_id, file_name, kind, bytes) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(file.user_id)
            .bind(&file.file_name)
            .bind(file.kind.as_str())
            .bind(file.bytes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The recording in progress for a meeting, if any.
    pub async fn active_recording(&self, meeting_id: i64) -> Result<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM recordings WHERE meeting_id = $1 AND state = 'recording' ORDER BY id DESC LIMIT 1",
        )
        .bind(meeting_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id,)| id))
    }

    /// Recordings in `state` with their meetings, oldest first: (recording, meeting).
    pub async fn recordings_in_state(&self, state: RecordingState) -> Result<Vec<(i64, i64)>> {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, meeting_id FROM recordings WHERE state = $1 ORDER BY id")
                .bind(state.as_str())
                .fetch_all(&self.pool)
                .await?;
        Ok(rows)
    }

    /// Whether recording `id` is waiting for (or under) composition.
    pub async fn is_composing(&self, id: i64) -> Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM recordings WHERE id = $1 AND state = 'composing'")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Records how far a composition has come, in percent.
    pub async fn set_composition_progress(&self, id: i64, percent: i64) -> Result<()> {
        sqlx::query("UPDATE recordings SET progress = $1 WHERE id = $2 AND state = 'composing'")
            .bind(percent)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a composition: `ready` with the video's size and length, or `failed` with why.
    pub async fn finish_composition(&self, id: i64, outcome: std::result::Result<(i64, i64), &str>) -> Result<()> {
        let query = match outcome {
            Ok((bytes, duration_ms)) => sqlx::query(
                "UPDATE recordings SET state = 'ready', progress = 100, composed_bytes = $1, duration_ms = $2
                 WHERE id = $3 AND state = 'composing'",
            )
            .bind(bytes)
            .bind(duration_ms),
            Err(reason) => sqlx::query(
                "UPDATE recordings SET state = 'failed', reason = $1, composed_bytes = NULL
                 WHERE id = $2 AND state = 'composing'",
            )
            .bind(reason),
        };
        query.bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// How long a recording ran (from start to stop), in milliseconds.
    pub async fn recording_length(&self, id: i64) -> Result<Option<i64>> {
        let row: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT started_at, stopped_at FROM recordings WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(started, stopped)| stopped.map(|s| s - started)))
    }

    /// The team a recording's meeting belongs to.
    pub async fn recording_team(&self, id: i64) -> Result<Option<i64>> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT m.team_id FROM recordings r JOIN meetings m ON m.id = r.meeting_id WHERE r.id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(team,)| team))
    }

    /// The files a composition reads, in the order written.
    pub async fn composition_sources(&self, id: i64) -> Result<Vec<RecordingFile>> {
        let rows: Vec<FileRow> = sqlx::query_as(
            "SELECT f.id, f.recording_id, u.display_name, f.file_name, f.kind, f.bytes
             FROM recording_files f JOIN users u ON u.id = f.user_id WHERE f.recording_id = $1 ORDER BY f.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(file_of).collect()
    }

    /// A team's recording with a composed video: (meeting title, video size).
    pub async fn composed_video(&self, team_id: i64, recording_id: i64) -> Result<Option<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT m.title, r.composed_bytes FROM recordings r JOIN meetings m ON m.id = r.meeting_id
             WHERE r.id = $1 AND m.team_id = $2 AND r.state = 'ready' AND r.composed_bytes IS NOT NULL",
        )
        .bind(recording_id)
        .bind(team_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A meeting's recordings with their files, oldest first.
    pub async fn meeting_recordings(&self, meeting_id: i64) -> Result<Vec<Recording>> {
        let rows: Vec<RecordingRow> = sqlx::query_as(
            "SELECT r.id, r.meeting_id, u.display_name, r.started_at, r.stopped_at, r.state, r.reason,
                    r.progress, r.interrupted, r.composed_bytes, r.duration_ms
             FROM recordings r JOIN users u ON u.id = r.started_by WHERE r.meeting_id = $1 ORDER BY r.id",
        )
        .bind(meeting_id)
        .fetch_all(&self.pool)
        .await?;
        let files: Vec<FileRow> = sqlx::query_as(
            "SELECT f.id, f.recording_id, u.display_name, f.file_name, f.kind, f.bytes
             FROM recording_files f JOIN users u ON u.id = f.user_id JOIN recordings r ON r.id = f.recording_id
             WHERE r.meeting_id = $1 ORDER BY u.display_name, f.file_name",
        )
        .bind(meeting_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .into_iter()
            .map(
                |(
                    id,
                    meeting_id,
                    started_by_name,
                    started_at,
                    stopped_at,
                    state,
                    reason,
                    progress,
                    interrupted,
                    composed_bytes,
                    duration_ms,
                )| {
                    Ok(Recording {
                        id,
                        meeting_id,
                        started_by_name,
                        started_at,
                        stopped_at,
                        state: RecordingState::parse(&state)?,
                        reason,
                        progress,
                        interrupted: interrupted != 0,
                        composed_bytes,
                        duration_ms,
                        files: Vec::new(),
                    })
                },
            )
            .collect::<Result<Vec<Recording>>>()?;
        for file in files {
            let file = file_of(file)?;
            if let Some(r) = out.iter_mut().find(|r| r.id == file.recording_id) {
                r.files.push(file);
            }
        }
        Ok(out)
    }

    /// A file of a recording of a team's meeting (None if it belongs to another team).
    pub async fn recording_file(&self, team_id: i64, file_id: i64) -> Result<Option<RecordingFile>> {
        let row: Option<FileRow> = sqlx::query_as(
            "SELECT f.id, f.recording_id, u.display_name, f.file_name, f.kind, f.bytes
             FROM recording_files f JOIN users u ON u.id = f.user_id
             JOIN recordings r ON r.id = f.recording_id JOIN meetings m ON m.id = r.meeting_id
             WHERE f.id = $1 AND m.team_id = $2",
        )
        .bind(file_id)
        .bind(team_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(file_of).transpose()
    }

    /// The meeting a recording of a team belongs to (None if another team's).
    pub async fn recording_meeting(&self, team_id: i64, recording_id: i64) -> Result<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT r.meeting_id FROM recordings r JOIN meetings m ON m.id = r.meeting_id WHERE r.id = $1 AND m.team_id = $2",
        )
        .bind(recording_id)
        .bind(team_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id,)| id))
    }

    /// Every recording of a team's meetings: (recording, meeting, whether it is under way).
    pub async fn team_recordings(&self, team_id: i64) -> Result<Vec<(i64, i64, bool)>> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT r.id, r.meeting_id, r.state FROM recordings r JOIN meetings m ON m.id = r.meeting_id
             WHERE m.team_id = $1",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        let under_way = |state: &str| RecordingState::parse(state).map(|s| s == RecordingState::Recording);
        rows.into_iter().map(|(id, meeting, state)| Ok((id, meeting, under_way(&state)?))).collect()
    }

    /// Deletes a recording and its file rows.
    pub async fn delete_recording(&self, recording_id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for sql in ["DELETE FROM recording_files WHERE recording_id = $1", "DELETE FROM recordings WHERE id = $1"] {
            sqlx::query(sql).bind(recording_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
