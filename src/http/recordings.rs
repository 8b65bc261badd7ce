//! Recording a meeting: start and stop (host or admin), the list on the meeting page (it
//! follows a composition's progress by itself), and downloads for team members — the
//! composed video and each participant's tracks — with HTTP range requests (so they
//! resume and seek).

use std::io::SeekFrom;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::views::{self, csrf_field};
use super::{AppState, Error, MeetingInTeam, TeamMember};
use crate::bus::{Changed, Event, LiveMessage};
use crate::clock::{format_duration, now_ms};
use crate::media::placement::CallError;
use crate::store::{FileKind, Meeting, Recording, RecordingState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams/{team_id}/meetings/{meeting_id}/recordings", post(start).get(panel))
        .route("/teams/{team_id}/meetings/{meeting_id}/recordings/stop", post(stop))
        .route("/teams/{team_id}/recording-files/{file_id}", get(download))
        .route("/teams/{team_id}/recordings/{recording_id}/video", get(download_video))
        .route("/teams/{team_id}/recordings/{recording_id}/delete", post(delete))
}

/// The recordings of a meeting, with the buttons the viewer may use.
pub fn recordings_panel(meeting: &Meeting, recordings: &[Recording], csrf: &str) -> Markup {
    panel_markup(meeting, recordings, false, false, false, csrf)
}

/// The panel on the meeting page (live), with recording controls for the host and admins
/// and delete buttons for admins.
pub fn recordings_panel_for(
    meeting: &Meeting,
    recordings: &[Recording],
    can_record: bool,
    can_delete: bool,
    csrf: &str,
) -> Markup {
    panel_markup(meeting, recordings, can_record, can_delete, true, csrf)
}

fn panel_markup(
    meeting: &Meeting,
    recordings: &[Recording],
    can_record: bool,
    can_delete: bool,
    live: bool,
    csrf: &str,
) -> Markup {
    let base = format!("/teams/{}/meetings/{}/recordings", meeting.team_id, meeting.id);
    let active = recordings.iter().any(|r| r.state == RecordingState::Recording);
    let composing = recordings.iter().any(|r| r.state == RecordingState::Composing);
    html! {
        // On the meeting page the panel asks for itself again (as this viewer sees it)
        // when the live stream says the recordings changed, and every few seconds while a
        // video is being composed: the progress moves and the download appears.
        @let trigger = match (live, composing) {
            (true, true) => Some("sse:recordings, every 2s"),
            (true, false) => Some("sse:recordings"),
            (false, true) => Some("every 2s"),
            (false, false) => None,
        };
        section.card #recordings hx-get=[trigger.map(|_| &base)] hx-trigger=[trigger] hx-swap=[trigger.map(|_| "outerHTML")] {
            div.card-head {
                h2 { "Recordings" }
                @if meeting.is_live() && can_record {
                    @if active {
                        form.inline method="post" action=(format!("{base}/stop")) hx-post=(format!("{base}/stop"))
                            hx-target="#recordings" hx-swap="outerHTML" {
                            (csrf_field(csrf)) button.danger type="submit" { "■ Stop recording" }
                        }
                    } @else {
                        form.inline method="post" action=(base) hx-post=(base) hx-target="#recordings" hx-swap="outerHTML" {
                            (csrf_field(csrf)) button type="submit" { "● Start recording" }
                        }
                    }
                }
            }
            @if recordings.is_empty() {
                p.muted { "This meeting has not been recorded." }
            } @else {
                ul.list {
                    @for r in recordings {
                        li.recording {
                            strong { "Recording " (r.id) } " "
                            span class=(format!("badge rec-{}", r.state)) { (r.state) }
                            @if r.interrupted { " " span.badge.rec-interrupted { "interrupted" } }
                            span.muted.small {
                                " started by " (r.started_by_name) " " (views::time(r.started_at))
                                @if let Some(ms) = r.duration_ms { " · " (format_duration(ms)) }
                                @else if let Some(stopped) = r.stopped_at { " · " (format_duration(stopped - r.started_at)) }
                            }
                            @if can_delete && r.state != RecordingState::Recording {
                                form.inline method="post" action=(format!("/teams/{}/recordings/{}/delete", meeting.team_id, r.id)) {
                                    (csrf_field(csrf)) " " button.small.danger type="submit" { "Delete" }
                                }
                            }
                            @if r.state == RecordingState::Composing {
                                p.composing {
                                    progress max="100" value=(r.progress) { (r.progress) "%" }
                                    " Composing the meeting video… " (r.progress) "%"
                                }
                            }
                            @if let Some(reason) = &r.reason { p.field-error { (reason) } }
                            @if !r.files.is_empty() || r.composed_bytes.is_some() {
                                ul.files {
                                    @if let Some(bytes) = r.composed_bytes.filter(|_| r.state == RecordingState::Ready) {
                                        li.composed {
                                            a href=(format!("/teams/{}/recordings/{}/video", meeting.team_id, r.id)) download {
                                                "Meeting video (MP4)"
                                            }
                                            span.muted.small { " · " (views::megabytes(bytes)) }
                                        }
                                    }
                                    @for f in &r.files {
                                        li {
                                            a href=(format!("/teams/{}/recording-files/{}", meeting.team_id, f.id)) download {
                                                (f.user_name)
                                                @if f.kind == FileKind::Screen { "'s screen share (WebM)" }
                                                @else { "'s tracks (WebM)" }
                                            }
                                            span.muted.small { " · " (views::megabytes(f.bytes)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The panel as this member sees it (for htmx).
async fn panel_for(state: &AppState, mt: &MeetingInTeam) -> Result<Markup, Error> {
    let recordings = state.store.meeting_recordings(mt.meeting.id).await?;
    let can_record = mt.require_host_or_admin().is_ok();
    let can_delete = mt.member.role.is_admin();
    Ok(recordings_panel_for(&mt.meeting, &recordings, can_record, can_delete, &mt.member.viewer.csrf.0))
}

/// The panel alone: what the page asks for while a video is being composed.
async fn panel(State(state): State<AppState>, mt: MeetingInTeam) -> Result<Markup, Error> {
    panel_for(&state, &mt).await
}

/// Writes a line in the meeting chat, as `user_id`, and tells everyone.
async fn chat_line(state: &AppState, mt: &MeetingInTeam, text: &str) -> Result<(), Error> {
    let message = state.store.add_message(mt.meeting.topic_id, mt.member.user_id(), text, now_ms()).await?;
    state.bus.publish(Event::Message(std::sync::Arc::new(LiveMessage {
        team_id: mt.member.team.id,
        message,
        encoded: Default::default(),
    })));
    // The message counts on the forum, and the recording's state on the meeting pages.
    state
        .bus
        .publish(Event::TeamChanged { team_id: mt.member.team.id, changed: Changed::TOPICS | Changed::RECORDINGS });
    Ok(())
}

/// Recordings that cannot write any more (a full disk) are stopped where they are: what
/// was written is kept and listed, the recording is marked failed with the reason, and
/// the meeting's chat (in the call and on the forum) says so.
pub async fn stop_failed_recordings(
    state: AppState,
    mut failures: tokio::sync::mpsc::UnboundedReceiver<(i64, String)>,
) {
    while let Some((meeting_id, reason)) = failures.recv().await {
        tracing::warn!(meeting_id, %reason, "a recording cannot write any more: stopping it");
        let Ok(Some(id)) = state.store.active_recording(meeting_id).await else { continue };
        if let Err(e) = super::calls::stop_recording(&state, meeting_id, id).await {
            tracing::warn!(meeting_id, error = %e, "the failed recording could not be stopped");
            continue;
        }
        let Ok(Some((meeting, _))) = state.store.any_meeting(meeting_id).await else { continue };
        let text = format!("The recording stopped: {reason}. What was recorded until then is kept.");
        match state.store.add_message(meeting.topic_id, meeting.created_by, &text, now_ms()).await {
            Ok(message) => {
                let team_id = meeting.team_id;
                state.bus.publish(Event::Message(std::sync::Arc::new(LiveMessage {
                    team_id,
                    message,
                    encoded: Default::default(),
                })));
                state.bus.publish(Event::TeamChanged { team_id, changed: Changed::TOPICS | Changed::RECORDINGS });
            }
            Err(e) => tracing::warn!(meeting_id, error = %e, "cannot tell the meeting its recording stopped"),
        }
    }
}

/// After a start or stop: the fresh panel for htmx (the call on the page goes on), else
/// back to the meeting page.
async fn answer(state: &AppState, mt: &MeetingInTeam, headers: &HeaderMap) -> Result<Response, Error> {
    if super::wants_fragment(headers) {
        return Ok(panel_for(state, mt).await?.into_response());
    }
    Ok(Redirect::to(&format!("/teams/{}/meetings/{}", mt.member.team.id, mt.meeting.id)).into_response())
}

async fn start(State(state): State<AppState>, mt: MeetingInTeam, headers: HeaderMap) -> Result<Response, Error> {
    mt.require_host_or_admin()?;
    if !mt.meeting.is_live() {
        return Err(Error::Conflict("This meeting has ended.".into()));
    }
    // The database allows one recording under way per meeting, however requests race.
    let Some(id) = state.store.start_recording(mt.meeting.id, mt.member.user_id(), now_ms()).await? else {
        return Err(Error::Conflict("This meeting is already being recorded.".into()));
    };
    if let Err(e) = super::calls::start_recording(&state, mt.meeting.id, id).await {
        state.store.finish_recording(id, RecordingState::Failed, Some(&e.to_string()), false, &[], now_ms()).await?;
        return Err(call_error("The recording could not start", e));
    }
    tracing::info!(meeting_id = mt.meeting.id, recording_id = id, "recording started");
    chat_line(&state, &mt, &format!("{} started recording this meeting.", mt.member.viewer.user.display_name)).await?;
    answer(&state, &mt, &headers).await
}

async fn stop(State(state): State<AppState>, mt: MeetingInTeam, headers: HeaderMap) -> Result<Response, Error> {
    mt.require_host_or_admin()?;
    let Some(id) = state.store.active_recording(mt.meeting.id).await? else {
        return Err(Error::Conflict("This meeting is not being recorded.".into()));
    };
    super::calls::stop_recording(&state, mt.meeting.id, id)
        .await
        .map_err(|e| call_error("The recording could not be stopped", e))?;
    chat_line(&state, &mt, &format!("{} stopped recording this meeting.", mt.member.viewer.user.display_name)).await?;
    answer(&state, &mt, &headers).await
}

/// What the user is told when the call could not do it: a conflict to resolve, or
/// something down for a moment (503, try again).
fn call_error(what: &str, error: CallError) -> Error {
    match error {
        CallError::Refused(why) => Error::Conflict(format!("{what}: {why}.")),
        CallError::Unavailable(why) => Error::Unavailable(format!("{what}: {why}. Try again in a moment.")),
    }
}

/// Deletes a finished recording with its files (admins).
async fn delete(
    State(state): State<AppState>,
    m: TeamMember,
    Path((_, recording_id)): Path<(i64, i64)>,
) -> Result<Response, Error> {
    m.require_admin()?;
    let meeting_id = state.store.recording_meeting(m.team.id, recording_id).await?.ok_or(Error::NotFound)?;
    if state.store.active_recording(meeting_id).await? == Some(recording_id) {
        return Err(Error::Conflict("Stop the recording before deleting it.".into()));
    }
    // A composition under way stops; its half-written video goes with the rest.
    state.composer.cancel_if_composing(&state.store, recording_id).await?;
    state.store.delete_recording(recording_id).await?;
    let dir = state.recordings_dir.join(recording_id.to_string());
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, dir = %dir.display(), "recording files could not be removed");
    }
    tracing::info!(recording_id, by = m.user_id(), "recording deleted");
    Ok(Redirect::to(&format!("/teams/{}/meetings/{meeting_id}", m.team.id)).into_response())
}

/// Serves a participant's file of a recording.
async fn download(
    State(state): State<AppState>,
    m: TeamMember,
    Path((_, file_id)): Path<(i64, i64)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let file = state.store.recording_file(m.team.id, file_id).await?.ok_or(Error::NotFound)?;
    if file.file_name.contains(['/', '\\']) || file.file_name.starts_with('.') {
        return Err(Error::NotFound);
    }
    let path = state.recordings_dir.join(file.recording_id.to_string()).join(&file.file_name);
    let what = match file.kind {
        FileKind::Screen => "screen",
        FileKind::Camera => "tracks",
    };
    let name = format!("floo-recording-{}-{}-{what}.webm", file.recording_id, ascii_name(&file.user_name));
    serve_file(&path, "video/webm", &name, &headers).await
}

/// Serves the composed video of a recording.
async fn download_video(
    State(state): State<AppState>,
    m: TeamMember,
    Path((_, recording_id)): Path<(i64, i64)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (title, _) = state.store.composed_video(m.team.id, recording_id).await?.ok_or(Error::NotFound)?;
    let path = state.recordings_dir.join(recording_id.to_string()).join(crate::recording::COMPOSED_FILE);
    let name = format!("floo-{}-{recording_id}.mp4", ascii_name(&title));
    serve_file(&path, "video/mp4", &name, &headers).await
}

/// Sends a file whole, or the byte range asked for, as an attachment named `name`.
async fn serve_file(
    path: &std::path::Path,
    content_type: &'static str,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let Ok(mut handle) = tokio::fs::File::open(path).await else { return Err(Error::NotFound) };
    let size = handle.metadata().await.map(|m| m.len()).map_err(|_| Error::NotFound)?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|r| parse_range(r, size));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(None) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let length = if size == 0 { 0 } else { end - start + 1 };
    handle.seek(SeekFrom::Start(start)).await.map_err(|_| Error::NotFound)?;
    let chunks = futures_util::stream::unfold((handle, length), |(mut handle, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(left.min(64 * 1024)).unwrap_or(64 * 1024)];
        match handle.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (handle, left - n as u64)))
            }
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

/// A name safe inside a quoted header value.
fn ascii_name(name: &str) -> String {
    let cleaned: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(40).collect();
    if cleaned.trim_matches('-').is_empty() { "participant".into() } else { cleaned }
}

/// One `bytes=` range within `size`: `start-end`, `start-` or `-suffix`. None if unsatisfiable.
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (start, "") => (start.parse().ok()?, size - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn byte_ranges_are_parsed_and_bounded() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
