//! Team meetings: starting one (with its forum topic), the meeting page, joining and
//! leaving (recorded as attendance) and ending it (host or admin).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;

use super::form::Form;
use maud::{Markup, html};
use serde::Deserialize;

use super::chat::{chat_panel, load_messages};
use super::recordings::recordings_panel_for;
use super::teams::overview_view;
use super::views::{self, Chrome, TeamTab, csrf_field, empty_state};
use super::{AppState, Error, MeetingInTeam, TeamMember, TopicInTeam};
use crate::bus::{Changed, Event};
use crate::clock::{format_duration, now_ms};
use crate::store::{AccessNote, Attendance, Meeting, MeetingSummary, RecordingState};

pub const MAX_MEETING_TITLE: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams/{team_id}/meetings", post(create))
        .route("/teams/{team_id}/meetings/{meeting_id}", axum::routing::get(meeting_page))
        .route("/teams/{team_id}/meetings/{meeting_id}/join", post(join))
        .route("/teams/{team_id}/meetings/{meeting_id}/leave", post(leave))
        .route("/teams/{team_id}/meetings/{meeting_id}/end", post(end))
        .route("/teams/{team_id}/meetings/{meeting_id}/media", post(media_ticket))
}

/// A team's meetings: live ones first, then ended ones with date, duration and attendees.
pub fn meeting_list(meetings: &[MeetingSummary]) -> Markup {
    html! {
        @if meetings.is_empty() {
            (empty_state("No meetings yet.", html! { "Start one above; it gets its own topic on the forum for its chat." }))
        } @else {
            ul.meetings {
                @for s in meetings {
                    @let m = &s.meeting;
                    li.meeting.live[m.is_live()] {
                        div {
                            @if m.is_live() { span.live-dot aria-label="live" {} }
                            a href=(format!("/teams/{}/meetings/{}", m.team_id, m.id)) { strong { (m.title) } }
                            @if m.is_live() { " " span.badge.live { "live" } }
                        }
                        div.muted.small {
                            "Started " (views::time(m.started_at)) " by " (m.host_name)
                            @if let Some(ended) = m.ended_at {
                                " · lasted " (format_duration(ended - m.started_at))
                            }
                        }
                        @if !s.recordings.is_empty() {
                            ul.recording-briefs.small {
                                @for r in &s.recordings {
                                    li {
                                        a href=(format!("/teams/{}/meetings/{}#recordings", m.team_id, m.id)) {
                                            "Recording " (r.id)
                                        }
                                        " " span class=(format!("badge rec-{}", r.state)) {
                                            (r.state) @if r.state == RecordingState::Composing { " " (r.progress) "%" }
                                        }
                                        @if r.interrupted { " " span.badge.rec-interrupted { "interrupted" } }
                                        span.muted {
                                            @if let Some(ms) = r.duration_ms { " · " (format_duration(ms)) }
                                            @if let Some(bytes) = r.composed_bytes { " · " (views::megabytes(bytes)) }
                                        }
                                    }
                                }
                            }
                        }
                        div.small {
                            @if m.is_live() {
                                @if s.present.is_empty() { span.muted { "Nobody is in it right now." } }
                                @else { "In it now: " (s.present.join(", ")) }
                            } @else if s.attendees.is_empty() {
                                span.muted { "Nobody joined." }
                            } @else {
                                "Attended: " (s.attendees.join(", "))
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct CreateForm {
    title: String,
}

async fn create(State(state): State<AppState>, m: TeamMember, Form(form): Form<CreateForm>) -> Result<Response, Error> {
    let title = form.title.trim();
    let problem = if title.is_empty() {
        Some("Give the meeting a title.".to_owned())
    } else {
        let n = title.chars().count();
        (n > MAX_MEETING_TITLE)
            .then(|| format!("A title can be at most {MAX_MEETING_TITLE} characters (this one has {n})."))
    };
    if let Some(problem) = problem {
        let page = overview_view(&state, &m, &form.title, Some(&problem)).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    if let Err(problem) = super::limits::allow_creation(&state, m.user_id()) {
        let page = overview_view(&state, &m, &form.title, Some(&problem)).await?;
        return Ok((StatusCode::TOO_MANY_REQUESTS, page).into_response());
    }
    let id = state.store.create_meeting(m.team.id, m.user_id(), title, now_ms()).await?;
    // A meeting, and its chat's topic on the forum.
    state.bus.publish(Event::TeamChanged { team_id: m.team.id, changed: Changed::MEETINGS | Changed::TOPICS });
    tracing::info!(team_id = m.team.id, meeting_id = id, "meeting started");
    Ok(Redirect::to(&format!("/teams/{}/meetings/{id}", m.team.id)).into_response())
}

async fn meeting_page(State(state): State<AppState>, mt: MeetingInTeam) -> Result<Markup, Error> {
    let stays = state.store.attendance(mt.meeting.id).await?;
    let access = state.store.meeting_access(mt.meeting.id).await?;
    let topic = state.store.topic(mt.member.team.id, mt.meeting.topic_id).await?.ok_or(Error::NotFound)?;
    let chat = TopicInTeam { member: mt.member.clone(), topic };
    let messages = load_messages(&state.store, chat.topic.id, chat.topic.last_seq, None).await?;
    state.store.mark_read(chat.member.user_id(), chat.topic.id, chat.topic.last_seq).await?;
    let recordings = state.store.meeting_recordings(mt.meeting.id).await?;
    let can_record = mt.require_host_or_admin().is_ok();
    let recordings =
        recordings_panel_for(&mt.meeting, &recordings, can_record, mt.member.role.is_admin(), &mt.member.viewer.csrf.0);
    Ok(meeting_view(&mt, &stays, &access, chat_panel(&chat, &messages, None, "", None), recordings))
}

/// People listed before the rest of a large meeting's attendance is folded away.
const ATTENDANCE_SHOWN: usize = 20;

/// Who is in a meeting (or, once it ended, who attended), and whom its hosts let in from
/// the lobby or removed; sent again live on changes. A large meeting's list shows the
/// first twenty, the rest behind "N more".
pub fn attendance_panel(meeting: &Meeting, stays: &[Attendance], access: &[AccessNote]) -> Markup {
    let present = stays.iter().filter(|a| a.left_at.is_none()).count();
    let stay = |a: &Attendance| {
        html! {
            li {
                strong { (a.display_name) }
                span.muted.small {
                    " joined " (views::time(a.joined_at))
                    @if let Some(left) = a.left_at { " · left " (views::time(left)) } @else { " · here now" }
                }
            }
        }
    };
    html! {
        h2 {
            @if meeting.is_live() { "In the meeting (" (present) ")" }
            @else { "Attendance " span.badge { "meeting ended" } }
        }
        @if stays.is_empty() {
            (empty_state("Nobody has joined yet.", html! { "People who join appear here." }))
        } @else {
            ul.list.attendance {
                @for a in stays.iter().take(ATTENDANCE_SHOWN) { (stay(a)) }
            }
            @if stays.len() > ATTENDANCE_SHOWN {
                details.attendance-more {
                    summary { (stays.len() - ATTENDANCE_SHOWN) " more" }
                    ul.list.attendance {
                        @for a in stays.iter().skip(ATTENDANCE_SHOWN) { (stay(a)) }
                    }
                }
            }
        }
        @if access.iter().any(|n| n.removed.is_some() || n.admitted.is_some()) {
            h3.small { "Hosts' decisions" }
            ul.list.access-notes {
                @for note in access {
                    @if let Some((at, by)) = &note.removed {
                        li { strong { (note.name) } span.muted.small { " removed by " (by) " · " (views::time(*at)) } }
                    } @else if let Some((at, by)) = &note.admitted {
                        li { strong { (note.name) } span.muted.small { " let in from the lobby by " (by) " · " (views::time(*at)) } }
                    }
                }
            }
        }
    }
}

fn meeting_view(
    mt: &MeetingInTeam,
    stays: &[Attendance],
    access: &[AccessNote],
    chat: Markup,
    recordings: Markup,
) -> Markup {
    let m = &mt.member;
    let meeting = &mt.meeting;
    let base = format!("/teams/{}/meetings/{}", m.team.id, meeting.id);
    let csrf = &m.viewer.csrf.0;
    let viewer_in = stays.iter().any(|a| a.left_at.is_none() && a.user_id == m.user_id());
    let can_end = meeting.is_live() && (meeting.created_by == m.user_id() || m.role.is_admin());
    views::page(
        Chrome { user: Some(&m.viewer.user), csrf },
        &meeting.title,
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Meetings))
            section.card.meeting-head {
                div.card-head {
                    div {
                        h1 { (meeting.title) " " @if meeting.is_live() { span.badge.live { "live" } } @else { span.badge { "ended" } } }
                        p.muted.small {
                            "Hosted by " (meeting.host_name) " · started " (views::time(meeting.started_at))
                            @if let Some(ended) = meeting.ended_at {
                                " · ended " (views::time(ended)) " · lasted " (format_duration(ended - meeting.started_at))
                            }
                        }
                    }
                    div.actions {
                        @if meeting.is_live() {
                            // Without JavaScript there is no call; presence can still be marked.
                            noscript {
                                @if viewer_in {
                                    form.inline method="post" action=(format!("{base}/leave")) {
                                        (csrf_field(csrf)) button type="submit" { "Leave" }
                                    }
                                } @else {
                                    form.inline method="post" action=(format!("{base}/join")) {
                                        (csrf_field(csrf)) button.primary type="submit" { "Join meeting" }
                                    }
                                }
                            }
                        }
                        @if can_end {
                            form.inline method="post" action=(format!("{base}/end")) {
                                (csrf_field(csrf)) button.danger type="submit" { "End meeting for all" }
                            }
                        }
                    }
                }
            }
            @if meeting.is_live() { (call_panel(&base, csrf)) }
            // One live stream for the page's attendance and recordings cards.
            div #meeting-live hx-ext="sse" sse-connect=(format!("/teams/{}/events?view=meeting:{}", m.team.id, meeting.id)) {
                div.meeting-layout {
                    section.card #attendance sse-swap="attendance" hx-swap="innerHTML" {
                        (attendance_panel(meeting, stays, access))
                    }
                    (chat)
                }
                (recordings)
            }
        },
    )
}

/// The call: the lobby (preview, devices, join muted or camera off), then the grid and
/// controls. `web/meeting.js` starts the client (`web/call/`), which drives it.
fn call_panel(base: &str, csrf: &str) -> Markup {
    html! {
        section.card #call data-ticket-url=(format!("{base}/media")) data-csrf=(csrf) {
            div #lobby {
                h2 { "Ready to join?" }
                p #call-support.call-support role="alert" hidden {}
                div.lobby {
                    video #preview autoplay muted playsinline {}
                    div.lobby-controls {
                        label for="camera-select" { "Camera" }
                        select #camera-select {}
                        label for="mic-select" { "Microphone" }
                        select #mic-select {}
                        label for="mic-level" { "Microphone level" }
                        meter #mic-level min="0" max="1" value="0" {}
                        label.check title="For music: no echo cancellation, noise suppression or automatic gain (use headphones)" {
                            input #original-sound type="checkbox"; " Original sound"
                        }
                        label.check { input #join-muted type="checkbox"; " Join muted" }
                        label.check { input #join-camera-off type="checkbox"; " Join with camera off" }
                        button.primary #join-call type="button" { "Join call" }
                    }
                }
            }
            div #in-call hidden {
                div #grid data-count="1" {
                    div.tile.self #self-tile { video #self-video autoplay muted playsinline {} div.tile-label { "You" } }
                }
                div.pager #pager hidden {
                    button #page-prev type="button" { "‹ Previous page" }
                    span #page-label {}
                    button #page-next type="button" { "Next page ›" }
                }
                p #recording-indicator hidden { "● Recording" }
                p #roster.muted {}
                details #people {
                    summary.people-count { "People" }
                    div.host-tools hidden {
                        button #mute-all type="button" { "Ask everyone to mute" }
                        label.check { input #ask-to-join type="checkbox"; " Ask to join: newcomers wait until a host lets them in" }
                        label { "Newcomers join muted and with the camera off above "
                            input #quiet-above type="number" min="0" max="500" step="1" value="10" aria-label="People above which newcomers join muted";
                            " people" }
                    }
                    div.lobby-waiting hidden {
                        h3.lobby-count { "Waiting to join" }
                        ul #lobby-list {}
                    }
                    label.people-find for="people-search" { "Find someone" }
                    input #people-search type="search" placeholder="Name" autocomplete="off";
                    ul #people-list {}
                    p.people-none.muted hidden { "Nobody by that name is in the call." }
                    p.people-more.muted hidden {}
                }
                div.call-controls {
                    // The keyboard shortcuts are in each button's tooltip and aria-keyshortcuts.
                    // (A line listing them under the controls made the recording walk lose two
                    // seconds of both cameras after the start: not understood yet, see the
                    // issue notes; the line stays out until it is.)
                    button #mute type="button" aria-keyshortcuts="M" title="Mute or unmute (M)" { "Mute" }
                    button #camera type="button" aria-keyshortcuts="V" title="Camera off or on (V)" { "Camera off" }
                    button #screen type="button" { "Share screen" }
                    button #hand type="button" aria-keyshortcuts="R" title="Raise or lower your hand (R)" { "Raise hand" }
                    button #view type="button" { "Speaker view" }
                    // On a phone the chat, the people and the rest open as panels over the
                    // call (web/app.css); elsewhere they are on the page and these are hidden.
                    button.panel-toggle #chat-toggle type="button" data-panel="chat" aria-controls="chat" aria-expanded="false" { "Chat" }
                    button.panel-toggle #people-toggle type="button" data-panel="people" aria-controls="people" aria-expanded="false" { "People" }
                    button.panel-toggle #more-toggle type="button" data-panel="more" aria-controls="call-more" aria-expanded="false" { "More" }
                    button.danger #leave-call type="button" aria-keyshortcuts="Shift+L" title="Leave the call (Shift+L)" { "Leave call" }
                }
                // What a screen reader hears as the call goes: who joins and leaves, raised
                // hands, the recording (polite); being muted by a host, connection loss
                // (assertive).
                div #call-announce.sr-only aria-live="polite" {}
                div #call-alert.sr-only aria-live="assertive" {}
                div #call-more {
                    div.call-devices {
                        label for="call-camera-select" { "Camera" }
                        select #call-camera-select {}
                        label for="call-mic-select" { "Microphone" }
                        select #call-mic-select {}
                    }
                    details #call-stats {
                        summary { "Call statistics" }
                        p.own.small.muted {}
                        table.call-stats {
                            thead {
                                tr {
                                    th { "Person" } th { "Connection" } th { "Video" } th { "Receiving" }
                                    th { "Voice buffer" } th { "Voice delay" } th { "Picture delay" }
                                    th { "Picture − voice" } th { "Concealed" }
                                }
                            }
                            tbody {}
                        }
                        p.small.muted {
                            "Delays run from capture on the sender's machine to being heard or seen here; "
                            "between two machines they include the difference of their clocks."
                        }
                    }
                }
            }
            div.call-status {
                p #call-status.muted role="status" {}
                button #call-retry type="button" hidden { "Try again" }
                button #media-retry type="button" hidden { "Use camera and microphone" }
            }
            script src="/static/meeting.js" {}
        }
    }
}

async fn join(State(state): State<AppState>, mt: MeetingInTeam) -> Result<Response, Error> {
    if !state.store.join_meeting(mt.meeting.id, mt.member.user_id(), now_ms()).await? {
        return Err(Error::Conflict("This meeting has ended; it cannot be joined any more.".into()));
    }
    state.bus.publish(Event::TeamChanged { team_id: mt.member.team.id, changed: Changed::MEETINGS });
    Ok(Redirect::to(&format!("/teams/{}/meetings/{}", mt.member.team.id, mt.meeting.id)).into_response())
}

async fn leave(State(state): State<AppState>, mt: MeetingInTeam) -> Result<Response, Error> {
    state.store.leave_meeting(mt.meeting.id, mt.member.user_id(), now_ms()).await?;
    state.bus.publish(Event::TeamChanged { team_id: mt.member.team.id, changed: Changed::MEETINGS });
    Ok(Redirect::to(&format!("/teams/{}/meetings/{}", mt.member.team.id, mt.meeting.id)).into_response())
}

async fn end(State(state): State<AppState>, mt: MeetingInTeam) -> Result<Response, Error> {
    mt.require_host_or_admin()?;
    state.store.end_meeting(mt.meeting.id, mt.member.user_id(), now_ms()).await?;
    super::calls::end(&state, mt.meeting.id).await;
    state.bus.publish(Event::TeamChanged { team_id: mt.member.team.id, changed: Changed::MEETINGS });
    tracing::info!(meeting_id = mt.meeting.id, by = mt.member.user_id(), "meeting ended");
    Ok(Redirect::to(&format!("/teams/{}/meetings/{}", mt.member.team.id, mt.meeting.id)).into_response())
}

/// What the meeting client needs to reach the relay: a fresh admission token, the UDP
/// port, and the hash of the relay's development certificate if it uses one.
async fn media_ticket(State(state): State<AppState>, mt: MeetingInTeam, headers: HeaderMap) -> Result<Response, Error> {
    if !mt.meeting.is_live() {
        return Err(Error::Conflict("This meeting has ended.".into()));
    }
    if state.store.meeting_admission(mt.meeting.id, mt.member.user_id()).await?.is_some_and(|a| a.removed) {
        return Err(Error::Forbidden("A host removed you from this meeting: you cannot join it again.".into()));
    }
    // For the ops dashboard (on the node that gives the ticket; usually the call's host).
    if let Some(agent) = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        state.relay.note_browser(mt.meeting.id, mt.member.user_id(), agent);
    }
    // The call is on the node that hosts the meeting (this one unless several share Redis);
    // every node signs tokens with the same secret.
    let me = state.relay.address();
    let at = if state.relay.is_draining() {
        // Shutting down: send people to the node that hosts the call now, or nowhere yet.
        match state.placement.elsewhere(mt.meeting.id, &me).await {
            Ok(Some(host)) => host,
            _ => return Err(Error::Unavailable("This server is restarting. Try again in a few seconds.".into())),
        }
    } else {
        let placed = state.placement.locate(mt.meeting.id, &me).await;
        if placed.took_over {
            super::calls::close_stale_attendance(&state, mt.meeting.id, mt.member.team.id).await;
        }
        placed.at
    };
    Ok(axum::Json(serde_json::json!({
        "host": at.host,
        "port": at.port,
        "path": "/meeting",
        "token": state.relay.mint_token(mt.meeting.id, mt.member.user_id()),
        "certHash": at.cert_hash,
        // The same protocol over a WebSocket, where WebTransport cannot be used: on the
        // hosting node's own HTTP address (None: this page's).
        "webSocket": at.node_url.map(|url| format!("{url}/media/ws")),
        "you": { "userId": mt.member.user_id(), "name": mt.member.viewer.user.display_name },
    }))
    .into_response())
}
