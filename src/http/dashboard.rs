//! The ops dashboard (`/ops`), for instance admins only (anyone else gets 404): this
//! node's figures, plots of the last hour (server-rendered SVG from the in-memory history
//! in [`crate::metrics`]), every live meeting with who is in it and a button to end it,
//! the recording queue with failures and their reasons, and the latest warnings. The
//! panel is sent again every few seconds over a live stream (the SSE machinery of the
//! other pages).

use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::form::Form;
use maud::{Markup, html};
use serde::Deserialize;

use super::AppState;
use super::error::Error;
use super::views::{self, Chrome, csrf_field};
use crate::auth::session::{MaybeViewer, Viewer};
use crate::bus::{Changed, Event};
use crate::clock::{format_duration, now_ms};
use crate::media::figures::{Connection, Point};
use crate::media::placement::{NODE_SILENT_AFTER_MS, NodeReport};
use crate::media::wire::Transport;
use crate::metrics::{Sample, metrics};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops", get(dashboard))
        .route("/ops/events", get(events))
        .route("/ops/meetings/{meeting_id}", get(meeting_figures))
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

/// This node's figures now, as it reports them to the others.
fn this_node(state: &AppState, address: &str) -> NodeReport {
    let latest = crate::metrics::history().last().copied().unwrap_or_default();
    let now = now_ms();
    NodeReport {
        node: state.relay.address().node,
        address: address.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_ms: now - state.started.elapsed().as_millis() as i64,
        at_ms: now,
        cpu_percent: latest.cpu_percent,
        memory_bytes: latest.memory_bytes,
        open_fds: latest.open_fds,
        live_streams: metrics().live_streams.get(),
        in_calls: crate::metrics::people_in_calls(),
        calls_hosted: metrics().meetings_hosted.get(),
    }
}

/// With Redis: reports this node's figures every few seconds, until it shuts down, so
/// that every node's dashboard shows them all. Without Redis, does nothing.
pub fn report_node_forever(state: &AppState, address: String) {
    if !state.placement.is_shared() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let mut closing = state.closing.clone();
        loop {
            if let Err(e) = state.placement.report(&this_node(&state, &address)).await {
                tracing::debug!(error = %e, "cannot report this node's figures");
            }
            tokio::select! {
                () = tokio::time::sleep(crate::metrics::SAMPLE_EVERY) => {}
                () = super::limits::closed(&mut closing) => return,
            }
        }
    });
}

/// Every node of the deployment (with Redis), as they last reported.
fn nodes_card(nodes: &[NodeReport], me: &str, now: i64) -> Markup {
    html! {
        section.card {
            h2 { "All nodes (" (nodes.len()) ")" }
            table.ops-table.ops-nodes {
                thead { tr { th { "Node" } th { "Version" } th { "Up for" } th { "CPU" } th { "Memory" } th { "Open files" } th { "Live streams" } th { "In calls" } th { "Calls hosted" } th { "Last report" } } }
                tbody {
                    @for n in nodes {
                        @let silent = now - n.at_ms > NODE_SILENT_AFTER_MS;
                        tr.muted[silent] {
                            td { (n.address) @if n.node == me { " " span.badge { "this one" } } }
                            td { (n.version) }
                            td { (format_duration(n.at_ms - n.started_ms)) }
                            td { (format!("{:.1} %", n.cpu_percent)) }
                            td { (views::megabytes(n.memory_bytes)) }
                            td { (n.open_fds) }
                            td { (n.live_streams) }
                            td { (n.in_calls) }
                            td { (n.calls_hosted) }
                            td {
                                (format_duration((now - n.at_ms).max(0))) " ago"
                                @if silent { " " span.badge.rec-failed { "silent" } }
                            }
                        }
                    }
                }
            }
        }
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
    let composing = state.store.compositions_under_way(10).await?;
    let composed = crate::metrics::recent_compositions();
    let history = crate::metrics::history();
    let latest = history.last().copied().unwrap_or_default();
    let m = metrics();
    let count_of = |state: &str| counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
    let warnings = crate::metrics::recent_warnings();
    let nodes = match state.placement.nodes(now_ms()).await {
        Ok(nodes) => Some(nodes),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the other nodes' reports");
            None
        }
    };
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
        @if state.placement.is_shared() {
            @match &nodes {
                Some(nodes) => (nodes_card(nodes, &state.relay.address().node, now_ms())),
                None => section.card { h2 { "All nodes" } p.warning { "Redis does not answer: the other nodes' figures are not available." } },
            }
        }
        section.card {
            h2 { "The last hour" }
            @if history.len() < 2 {
                p.muted { "Collecting: the first figures appear within " (crate::metrics::SAMPLE_EVERY.as_secs() * 2) " seconds." }
            } @else {
                div.ops-plots {
                    (plot("People in calls", &series(&history, |s| s.in_calls as f64), whole))
                    (plot("Relay in (kbit/s)", &series(&history, |s| s.ingress_bps / 1000.0), whole))
                    (plot("Relay out (kbit/s)", &series(&history, |s| s.egress_bps / 1000.0), whole))
                    (plot("Chat messages per minute", &series(&history, |s| s.chat_per_minute), whole))
                    (plot("CPU (% of a core)", &series(&history, |s| s.cpu_percent), |v| format!("{v:.1}")))
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
                                    @let connections = state.calls.of(s.meeting.id);
                                    @if connections.iter().any(|c| c.connected) {
                                        (connection_table(connections.iter().filter(|c| c.connected)))
                                        a.small href=(format!("/ops/meetings/{}", s.meeting.id)) { "Figures over time" }
                                    } @else if !s.present.is_empty() {
                                        div.muted.small { "Its call is hosted by another node (or just started)." }
                                    }
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
            (disk_space(&state.recordings_dir))
            @if !composing.is_empty() {
                h3 { "Compositions waiting or under way" }
                ul.list {
                    @for (id, title, progress) in &composing {
                        li { "Recording " (id) " of " em { (title) } ": " (progress) " %" }
                    }
                }
            }
            @if !composed.is_empty() {
                h3 { "Latest compositions on this node" }
                ul.list {
                    @for c in composed.iter().rev() {
                        li {
                            "Recording " (c.recording_id) ": " (format_duration(c.media_ms)) " of meeting in "
                            (format_duration(c.took_ms.max(1000)))
                            @if c.took_ms > 0 { " (" (format!("{:.1}", c.media_ms as f64 / c.took_ms as f64)) "× real time)" }
                            span.muted.small { " · " (views::time(c.at_ms)) }
                        }
                    }
                }
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

fn whole(v: f64) -> String {
    format!("{v:.0}")
}

/// A round trip in ms: to a tenth under 10 ms (a loopback or LAN link), else whole.
fn round_trip(ms: f64) -> String {
    if ms < 10.0 { format!("{ms:.1}") } else { whole(ms) }
}

/// Space left where recordings are written (a warning under a tenth or 5 GB).
fn disk_space(dir: &std::path::Path) -> Markup {
    match fs4::statvfs(dir) {
        Ok(stats) => {
            let (left, total) = (stats.available_space(), stats.total_space().max(1));
            let low = left < total / 10 || left < 5_000_000_000;
            html! {
                p.warning[low] {
                    "Space left for recordings: " strong { (views::megabytes(left as i64)) }
                    " of " (views::megabytes(total as i64)) " (" (left * 100 / total) " %)"
                    @if low { " — low: recordings stop when the disk is full." }
                }
            }
        }
        Err(e) => html! { p.warning { "Cannot tell the space left for recordings: " (e) } },
    }
}

/// Connections of a call with their latest figures.
fn connection_table<'a>(connections: impl Iterator<Item = &'a Connection>) -> Markup {
    html! {
        table.ops-table.small {
            thead { tr { th { "Who" } th { "Browser" } th { "Transport" } th { "In kbit/s" } th { "Out kbit/s" } th { "Round trip" } th { "Groups dropped" } } }
            tbody {
                @for c in connections {
                    @let p = c.latest();
                    tr {
                        td { (c.name) }
                        td { (c.browser.as_deref().unwrap_or("unknown")) }
                        td { (transport_name(c.transport)) }
                        td { (whole(p.in_kbps)) }
                        td { (whole(p.out_kbps)) }
                        td { (round_trip(p.rtt_ms)) " ms" }
                        td { (p.dropped) }
                    }
                }
            }
        }
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::WebTransport => "WebTransport",
        Transport::WebSocket => "WebSocket",
    }
}

/// One call's connections over the last hour (those who left too, while it is hosted here).
async fn meeting_figures(
    State(state): State<AppState>,
    viewer: MaybeViewer,
    Path(meeting_id): Path<i64>,
) -> Result<Markup, Error> {
    let viewer = admin(&state, viewer).await?;
    let (meeting, team) = state.store.any_meeting(meeting_id).await?.ok_or(Error::NotFound)?;
    let connections = state.calls.of(meeting_id);
    let content = html! {
        p { a href="/ops" { "← Operations" } }
        h1 { (meeting.title) }
        p.muted { "Team " (team) " · started " (views::time(meeting.started_at))
            @if !meeting.is_live() { " · ended" } }
        @if connections.is_empty() {
            section.card {
                p.muted { "No figures: this meeting's call is not hosted by this node right now (it may be on another node, or nobody is connected)." }
            }
        }
        @for c in &connections {
            section.card {
                h2 { (c.name) @if !c.connected { " " span.badge { "left" } } }
                p.muted.small {
                    (c.browser.as_deref().unwrap_or("browser unknown")) " · " (transport_name(c.transport))
                    " · groups dropped on its way: " (c.latest().dropped)
                }
                @let points = |f: fn(&Point) -> f64| c.points.iter().map(|p| (p.at_ms, f(p))).collect::<Vec<_>>();
                div.ops-plots {
                    (plot("In (kbit/s)", &points(|p| p.in_kbps), whole))
                    (plot("Out (kbit/s)", &points(|p| p.out_kbps), whole))
                    (plot("Round trip (ms)", &points(|p| p.rtt_ms), round_trip))
                }
            }
        }
    };
    Ok(views::page(Chrome { user: Some(&viewer.user), csrf: &viewer.csrf.0 }, "Call figures", content))
}

/// One figure of the node's history, as points to plot.
fn series(history: &[Sample], value: impl Fn(&Sample) -> f64) -> Vec<(i64, f64)> {
    history.iter().map(|s| (s.at_ms, value(s))).collect()
}

/// A small line plot of one figure over time (points of `(at_ms, value)`), with its
/// latest value and its peak.
fn plot(title: &str, points: &[(i64, f64)], show: impl Fn(f64) -> String) -> Markup {
    const W: f64 = 320.0;
    const H: f64 = 90.0;
    let peak = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let scale = if peak > 0.0 { peak } else { 1.0 };
    let (first, last) = (points.first().map_or(0, |p| p.0), points.last().map_or(0, |p| p.0));
    let span = (last - first).max(1) as f64;
    let mut line = String::new();
    for (at, v) in points {
        let x = (at - first) as f64 / span * W;
        let y = H - v / scale * (H - 4.0) - 2.0;
        let _ = write!(line, "{x:.1},{y:.1} ");
    }
    let now = points.last().map_or(0.0, |p| p.1);
    html! {
        figure.ops-plot {
            figcaption { (title) ": " strong { (show(now)) } span.muted.small { " (peak " (show(peak)) ")" } }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(format!("{title} over the last {}", format_duration(span as i64))) {
                line x1="0" y1=(H - 1.0) x2=(W) y2=(H - 1.0) stroke="#d0d5dd" {}
                polyline points=(line.trim_end()) fill="none" stroke="#4353d6" stroke-width="2" {}
            }
        }
    }
}
