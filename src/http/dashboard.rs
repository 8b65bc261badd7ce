//! The ops dashboard (`/ops`), for instance admins only (anyone else gets 404): this
//! node's figures, plots of the last hour (server-rendered SVG from the in-memory history
//! in [`crate::metrics`]), every live meeting with who is in it and a button to end it,
//! the recording queue with failures and their reasons, and the latest warnings. The
//! panel is sent again every few seconds over a live stream (the SSE machinery of the
//! other pages).

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde::Deserialize;

use super::AppState;
use super::error::Error;
use super::views::{self, Chrome, csrf_field};
use crate::auth::session::{MaybeViewer, Viewer};
use crate::bus::{Changed, Event};
use crate::clock::{format_duration, now_ms};
use crate::metrics::{Sample, metrics};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops", get(dashboard))
        .route("/ops/events", get(events))
        .route("/ops/meetings/{meeting_id}/end", post(end_meeting))
}

/// The viewer, if they are an instance admin; anyone else is told the page does not exist.
async fn admin(state: &AppState, viewer: MaybeViewer) -> Result<Viewer, Error> {
    let Some(user) = viewer.user else { return Err(Error::NotFound) };
    if !state.store.is_admin(user.id).await? {
        return Err(Error::NotFound);
    }
    Ok(Viewer { user, csrf: viewer.csrf })
}

async fn dashboard(State(state): State<AppState>, viewer: MaybeViewer) -> Result<Markup, Error> {
    let viewer = admin(&state, viewer).await?;
    let panel = panel(&state, &viewer.csrf.0).await?;
    let content = html! {
        h1 { "Operations" }
        p.muted { "This node, the last hour. Figures update every few seconds." }
        div #ops hx-ext="sse" sse-connect="/ops/events" sse-swap="ops" hx-swap="innerHTML" { (panel) }
    };
    Ok(views::page(Chrome { user: Some(&viewer.user), csrf: &viewer.csrf.0 }, "Operations", content))
}

/// The panel again every few seconds, while the viewer is still an admin.
async fn events(State(state): State<AppState>, viewer: MaybeViewer) -> Result<Response, Error> {
    let viewer = admin(&state, viewer).await?;
    let slot = state.streams.acquire(viewer.user.id).ok_or_else(super::limits::too_many_streams)?;
    let source = OpsStream { state, user_id: viewer.user.id, csrf: viewer.csrf.0, _slot: slot };
    Ok(super::sse::stream(source))
}

struct OpsStream {
    state: AppState,
    user_id: i64,
    csrf: String,
    _slot: super::limits::StreamSlot,
}

const REFRESH: Duration = Duration::from_secs(5);

impl super::sse::Source for OpsStream {
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<axum::body::Bytes>> + Send {
        self.next()
    }
}

impl OpsStream {
    async fn next(&mut self) -> Option<axum::body::Bytes> {
        let mut closing = self.state.closing.clone();
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            () = super::limits::closed(&mut closing) => return None,
        }
        if !self.state.store.is_admin(self.user_id).await.ok()? {
            return None;
        }
        let panel = panel(&self.state, &self.csrf).await.ok()?;
        Some(super::sse::frame(None, "ops", &panel.into_string()))
    }
}

#[derive(Deserialize)]
struct EndForm {
    team_id: i64,
}

async fn end_meeting(
    State(state): State<AppState>,
    viewer: MaybeViewer,
    Path(meeting_id): Path<i64>,
    Form(form): Form<EndForm>,
) -> Result<Response, Error> {
    let viewer = admin(&state, viewer).await?;
    state.store.meeting(form.team_id, meeting_id).await?.ok_or(Error::NotFound)?;
    if state.store.end_meeting(meeting_id, viewer.user.id, now_ms()).await? {
        super::calls::end(&state, meeting_id).await;
        state.bus.publish(Event::TeamChanged { team_id: form.team_id, changed: Changed::MEETINGS });
        tracing::info!(meeting_id, by = viewer.user.id, "meeting ended from the ops dashboard");
    }
    Ok(Redirect::to("/ops").into_response())
}

async fn panel(state: &AppState, csrf: &str) -> Result<Markup, Error> {
    let meetings = state.store.all_live_meetings().await?;
    let counts = state.store.recording_counts().await?;
    let failures = state.store.recent_recording_failures(5).await?;
    let history = crate::metrics::history();
    let latest = history.last().copied().unwrap_or_default();
    let m = metrics();
    let count_of = |state: &str| counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
    let warnings = crate::metrics::recent_warnings();
    Ok(html! {
        section.card {
            h2 { "This node" }
            dl.ops-figures {
                div { dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) } }
                div { dt { "Up for" } dd { (format_duration(state.started.elapsed().as_millis() as i64)) } }
                div { dt { "CPU" } dd { (format!("{:.1} %", latest.cpu_percent)) } }
                div { dt { "Memory" } dd { (views::megabytes(latest.memory_bytes)) } }
                div { dt { "Open files" } dd { (latest.open_fds) } }
                div { dt { "Live page streams" } dd { (m.live_streams.get()) } }
                div { dt { "People in calls" } dd { (crate::metrics::people_in_calls()) } }
                div { dt { "Calls hosted" } dd { (m.meetings_hosted.get()) } }
            }
        }
        section.card {
            h2 { "The last hour" }
            @if history.len() < 2 {
                p.muted { "Collecting: the first figures appear within " (crate::metrics::SAMPLE_EVERY.as_secs() * 2) " seconds." }
            } @else {
                div.ops-plots {
                    (plot("People in calls", &history, |s| s.in_calls as f64, |v| format!("{v:.0}")))
                    (plot("Relay in (kbit/s)", &history, |s| s.ingress_bps / 1000.0, |v| format!("{v:.0}")))
                    (plot("Relay out (kbit/s)", &history, |s| s.egress_bps / 1000.0, |v| format!("{v:.0}")))
                    (plot("Chat messages per minute", &history, |s| s.chat_per_minute, |v| format!("{v:.0}")))
                    (plot("CPU (% of a core)", &history, |s| s.cpu_percent, |v| format!("{v:.1}")))
                }
            }
        }
        section.card {
            h2 { "Live meetings (" (meetings.len()) ")" }
            @if meetings.is_empty() {
                p.muted { "No meeting is live right now." }
            } @else {
                table.ops-table {
                    thead { tr { th { "Meeting" } th { "Team" } th { "Started" } th { "In it now" } th {} } }
                    tbody {
                        @for s in &meetings {
                            tr {
                                td { a href=(format!("/teams/{}/meetings/{}", s.meeting.team_id, s.meeting.id)) { (s.meeting.title) } }
                                td { (s.team_name) }
                                td { (views::time(s.meeting.started_at)) }
                                td {
                                    @if s.present.is_empty() { span.muted { "nobody" } }
                                    @else { (s.present.join(", ")) }
                                }
                                td {
                                    form.inline method="post" action=(format!("/ops/meetings/{}/end", s.meeting.id)) {
                                        (csrf_field(csrf))
                                        input type="hidden" name="team_id" value=(s.meeting.team_id);
                                        button.small.danger type="submit" { "End" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Recordings" }
            p {
                "Recording now: " strong { (count_of("recording")) } " · "
                "waiting for or under composition: " strong { (count_of("composing")) } " · "
                "ready: " strong { (count_of("ready")) } " · "
                "failed: " strong { (count_of("failed")) }
            }
            @if !failures.is_empty() {
                h3 { "Latest failures" }
                ul.list {
                    @for (id, title, reason) in &failures {
                        li { "Recording " (id) " of " em { (title) } ": " (reason.as_deref().unwrap_or("no reason recorded")) }
                    }
                }
            }
        }
        section.card {
            h2 { "Recent warnings and errors" }
            @if warnings.is_empty() {
                p.muted { "None since this node started." }
            } @else {
                ul.list.ops-warnings {
                    @for w in warnings.iter().rev().take(20) {
                        li {
                            span.muted.small { (views::time(w.at_ms)) " · " (w.level) " · " (w.target) } br;
                            (w.message)
                        }
                    }
                }
            }
        }
    })
}

/// A small line plot of one figure over the history, with its latest value and its peak.
fn plot(title: &str, history: &[Sample], value: impl Fn(&Sample) -> f64, show: impl Fn(f64) -> String) -> Markup {
    const W: f64 = 320.0;
    const H: f64 = 90.0;
    let values: Vec<f64> = history.iter().map(&value).collect();
    let peak = values.iter().copied().fold(0.0_f64, f64::max);
    let scale = if peak > 0.0 { peak } else { 1.0 };
    let (first, last) = (history.first().map_or(0, |s| s.at_ms), history.last().map_or(0, |s| s.at_ms));
    let span = (last - first).max(1) as f64;
    let mut points = String::new();
    for (sample, v) in history.iter().zip(&values) {
        let x = (sample.at_ms - first) as f64 / span * W;
        let y = H - v / scale * (H - 4.0) - 2.0;
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let now = values.last().copied().unwrap_or(0.0);
    html! {
        figure.ops-plot {
            figcaption { (title) ": " strong { (show(now)) } span.muted.small { " (peak " (show(peak)) ")" } }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(format!("{title} over the last {}", format_duration(span as i64))) {
                line x1="0" y1=(H - 1.0) x2=(W) y2=(H - 1.0) stroke="#d0d5dd" {}
                polyline points=(points.trim_end()) fill="none" stroke="#4353d6" stroke-width="2" {}
            }
        }
    }
}
