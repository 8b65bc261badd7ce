//! Live team pages: one Server-Sent Events stream per open team page that sends the
//! page's changing part again, rendered by the same views, whenever the team changes
//! (a topic or message, a meeting starting or ending, someone joining or leaving).
//! These are snapshots, so a reconnecting page simply gets the current one.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use bytes::BytesMut;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use super::forum::{TOPICS_PER_PAGE, topic_list};
use super::meetings::{attendance_panel, meeting_list};
use super::sse::frame;
use super::{AppState, Error, TeamMember};
use crate::bus::{Event, Key};
use crate::store::Store;

pub fn router() -> Router<AppState> {
    Router::new().route("/teams/{team_id}/events", get(team_stream))
}

/// Which page is listening, hence what it needs re-rendered.
#[derive(Debug, Clone, Copy)]
enum View {
    /// The meetings overview: the list of meetings with who is in them.
    Meetings,
    /// The first page of the forum.
    Forum,
    /// One meeting's page: who is in it, and whether it is still live.
    Meeting(i64),
}

#[derive(Deserialize)]
struct ViewQuery {
    view: String,
}

impl View {
    fn parse(s: &str) -> Option<View> {
        match s {
            "meetings" => Some(View::Meetings),
            "forum" => Some(View::Forum),
            _ => s.strip_prefix("meeting:").and_then(|id| id.parse().ok()).map(View::Meeting),
        }
    }
}

async fn team_stream(
    State(state): State<AppState>,
    m: TeamMember,
    Query(q): Query<ViewQuery>,
) -> Result<Response, Error> {
    let view = View::parse(&q.view).ok_or_else(|| Error::BadRequest("Unknown live view.".into()))?;
    if let View::Meeting(id) = view {
        state.store.meeting(m.team.id, id).await?.ok_or(Error::NotFound)?;
    }
    let slot = state.streams.acquire(m.user_id()).ok_or_else(super::limits::too_many_streams)?;
    let reader = TeamReader {
        store: state.store.clone(),
        events: state.bus.subscribe(Key::Team(m.team.id)),
        resync: state.bus.resyncs(),
        closing: state.closing.clone(),
        team_id: m.team.id,
        user_id: m.user_id(),
        view,
        first: true,
        recordings: None,
        _slot: slot,
    };
    Ok(super::sse::stream(reader))
}

/// Why a team stream woke up.
enum Wake {
    Changed,
    /// Nothing happened for a while: time for a keep-alive.
    Idle,
}

const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct TeamReader {
    store: Store,
    events: broadcast::Receiver<Event>,
    resync: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    team_id: i64,
    user_id: i64,
    view: View,
    /// The first snapshot goes out at once: the page may be older than the stream.
    first: bool,
    /// A meeting view: what its recordings looked like when last told (see [`recordings_digest`]).
    recordings: Option<String>,
    _slot: super::limits::StreamSlot,
}

impl super::sse::Source for TeamReader {
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send {
        self.next()
    }
}

impl TeamReader {
    async fn next(&mut self) -> Option<Bytes> {
        if !std::mem::take(&mut self.first) {
            match self.wait_for_change().await? {
                Wake::Changed => {}
                Wake::Idle => return Some(Bytes::from_static(super::sse::KEEP_ALIVE)),
            }
        }
        // Still a member? (Removal events can be missed across a lost bus.)
        self.store.team_membership(self.team_id, self.user_id).await.ok()??;
        match self.render().await {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!(error = %e, team_id = self.team_id, "live team stream cannot render; closing it");
                None
            }
        }
    }

    /// Waits for a change, then takes every other change already queued: one snapshot
    /// answers them all.
    async fn wait_for_change(&mut self) -> Option<Wake> {
        tokio::select! {
            () = tokio::time::sleep(KEEP_ALIVE) => return Some(Wake::Idle),
            event = self.events.recv() => match event {
                Ok(Event::MemberRemoved { user_id, .. }) if user_id == self.user_id => return None,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            changed = self.resync.changed() => changed.ok()?,
            () = super::limits::closed(&mut self.closing) => return None,
        }
        loop {
            match self.events.try_recv() {
                Ok(Event::MemberRemoved { user_id, .. }) if user_id == self.user_id => return None,
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return Some(Wake::Changed),
            }
        }
    }

    async fn render(&mut self) -> Result<Bytes, crate::store::Error> {
        Ok(match self.view {
            View::Meetings => {
                let meetings = self.store.team_meetings(self.team_id).await?;
                frame(None, "meetings", &meeting_list(&meetings).into_string())
            }
            View::Forum => {
                let (topics, _) = self.store.list_topics(self.team_id, 0, TOPICS_PER_PAGE).await?;
                frame(None, "topics", &topic_list(&topics).into_string())
            }
            View::Meeting(id) => {
                let html = match self.store.meeting(self.team_id, id).await? {
                    Some(meeting) => {
                        let stays = self.store.attendance(id).await?;
                        attendance_panel(&meeting, &stays).into_string()
                    }
                    None => String::new(),
                };
                let mut out = BytesMut::from(&frame(None, "attendance", &html)[..]);
                // The recordings card fetches itself again (as its viewer may act on it)
                // when a recording starts, stops or gets its video; progress it polls.
                let digest = recordings_digest(&self.store.meeting_recordings(id).await?);
                if self.recordings.as_ref().is_some_and(|last| *last != digest) {
                    out.extend_from_slice(&frame(None, "recordings", "changed"));
                }
                self.recordings = Some(digest);
                out.freeze()
            }
        })
    }
}

/// What a meeting page's recordings card shows, but its composition progress.
fn recordings_digest(recordings: &[crate::store::Recording]) -> String {
    recordings
        .iter()
        .map(|r| format!("{}:{}:{}:{};", r.id, r.state, r.files.len(), r.composed_bytes.is_some()))
        .collect()
}
