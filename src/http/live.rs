//! Live team pages: one Server-Sent Events stream per open team page that sends the
//! page's changing part again, rendered by the same views, whenever the team changes
//! in a way that page shows (a topic or message, a meeting starting or ending, someone
//! joining or leaving, a recording). These are snapshots, so a reconnecting page simply
//! gets the current one.
//!
//! A change is rendered once per node and view, not once per reader: the first reader
//! of a view (a team's meeting list, its forum, one meeting) starts a [`Renderer`] that
//! listens to the team's changes, renders what its view shows when a change touches it
//! (bursts within [`COALESCE`] become one render), and hands the frame to every reader
//! through a `watch` channel; it stops when the last reader goes. The frame holds
//! nothing that differs between readers. Readers do not look up their membership per
//! change: their removal from the team is an event of its own that closes their streams
//! (and after a lost bus, each checks its membership once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
use super::schedule::upcoming_list;
use super::sse::{KeepAlive, frame};
use super::{AppState, Error, TeamMember};
use crate::bus::{Bus, Changed, Event, Key};
use crate::store::Store;

pub fn router() -> Router<AppState> {
    Router::new().route("/teams/{team_id}/events", get(team_stream))
}

/// Changes closer together than this are rendered once: a busy meeting chat moves the
/// forum list at most this often, whatever its pace. A lone change renders at once.
pub const COALESCE: Duration = Duration::from_millis(250);

/// Which page is listening, hence what it needs re-rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// Its name on the metrics.
    fn label(self) -> &'static str {
        match self {
            View::Meetings => "meetings",
            View::Forum => "forum",
            View::Meeting(_) => "meeting",
        }
    }

    /// The changes this view shows.
    fn shows(self) -> Changed {
        match self {
            // The meeting list carries each meeting's recordings.
            View::Meetings | View::Meeting(_) => Changed::MEETINGS | Changed::RECORDINGS,
            View::Forum => Changed::TOPICS,
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
        // Before the view, so that a removal between the two is not missed.
        removed: state.bus.subscribe(Key::Member { team_id: m.team.id, user_id: m.user_id() }),
        view: state.live.watch(m.team.id, view),
        resync: state.bus.resyncs(),
        closing: state.closing.clone(),
        keep_alive: KeepAlive::new(),
        team_id: m.team.id,
        user_id: m.user_id(),
        recordings: None,
        checked: false,
        _slot: slot,
    };
    Ok(super::sse::stream(reader))
}

/// What a renderer last made of its view.
#[derive(Clone)]
enum Shown {
    /// Nothing yet: the first render is under way.
    Pending,
    Ready(Arc<Snapshot>),
    /// The view cannot be rendered (the database failed): its streams close, and the
    /// pages reconnect to a fresh renderer.
    Failed,
}

struct Snapshot {
    /// The view's fragment as an SSE frame, the same bytes for every reader.
    frame: Bytes,
    /// A meeting view: bumped when its recordings card must fetch itself again (a
    /// recording started, stopped or got its video; not on progress, which it polls).
    recordings: u64,
}

/// Each running renderer's channel to its readers, by team and view.
type Renderers = HashMap<(i64, View), Arc<watch::Sender<Shown>>>;

/// This node's renderers, one per team and view with readers.
#[derive(Clone)]
pub struct LiveViews {
    store: Store,
    bus: Bus,
    views: Arc<Mutex<Renderers>>,
}

impl LiveViews {
    pub fn new(store: Store, bus: Bus) -> LiveViews {
        LiveViews { store, bus, views: Arc::default() }
    }

    /// A reader's handle on a view, starting its renderer if it has none.
    fn watch(&self, team_id: i64, view: View) -> watch::Receiver<Shown> {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shown) = views.get(&(team_id, view)) {
            return shown.subscribe();
        }
        let (shown, reader) = watch::channel(Shown::Pending);
        let shown = Arc::new(shown);
        views.insert((team_id, view), Arc::clone(&shown));
        let renderer = Renderer {
            // Subscribed here, under the lock: no change after this reader's page was
            // rendered can slip by.
            changes: Changes {
                events: self.bus.subscribe(Key::Team(team_id)),
                resync: self.bus.resyncs(),
                shows: view.shows(),
            },
            store: self.store.clone(),
            views: Arc::clone(&self.views),
            shown,
            team_id,
            view,
            last_frame: Bytes::new(),
            recordings: None,
            recordings_generation: 0,
        };
        tokio::spawn(renderer.run());
        reader
    }
}

/// A team's changes, as one view sees them.
struct Changes {
    events: broadcast::Receiver<Event>,
    resync: watch::Receiver<u64>,
    shows: Changed,
}

impl Changes {
    /// The next change that the view shows (EVERYTHING when changes may have been
    /// missed); None when the bus is gone.
    async fn next(&mut self) -> Option<Changed> {
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Ok(Event::TeamChanged { changed, .. }) if changed.touches(self.shows) => return Some(changed),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(Changed::EVERYTHING),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                changed = self.resync.changed() => {
                    changed.ok()?;
                    return Some(Changed::EVERYTHING);
                }
            }
        }
    }
}

/// Renders one view of one team for all of this node's readers of it.
struct Renderer {
    changes: Changes,
    store: Store,
    views: Arc<Mutex<Renderers>>,
    shown: Arc<watch::Sender<Shown>>,
    team_id: i64,
    view: View,
    last_frame: Bytes,
    /// A meeting view: its recordings as last rendered (see [`recordings_digest`]).
    recordings: Option<String>,
    recordings_generation: u64,
}

impl Renderer {
    async fn run(mut self) {
        let mut pending = Changed::EVERYTHING;
        loop {
            if pending != Changed::NOTHING {
                match self.render(pending).await {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, team_id = self.team_id, "live team view cannot render; closing its streams");
                        self.shown.send_replace(Shown::Failed);
                        break;
                    }
                }
                pending = Changed::NOTHING;
                // What arrives within the window is rendered once, at its end.
                let window = tokio::time::sleep(COALESCE);
                tokio::pin!(window);
                loop {
                    tokio::select! {
                        () = &mut window => break,
                        wake = self.changes.next() => match wake {
                            Some(changed) => pending |= changed,
                            None => return self.stop(),
                        },
                    }
                }
                continue;
            }
            tokio::select! {
                wake = self.changes.next() => match wake {
                    Some(changed) => pending |= changed,
                    None => break,
                },
                () = self.shown.closed() => {
                    // The last reader went; unless one arrived meanwhile, stop.
                    let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
                    if self.shown.receiver_count() == 0 {
                        views.remove(&(self.team_id, self.view));
                        return;
                    }
                }
            }
        }
        self.stop();
    }

    /// Forgets this renderer, so that the next reader starts a fresh one.
    fn stop(&self) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        if views.get(&(self.team_id, self.view)).is_some_and(|s| Arc::ptr_eq(s, &self.shown)) {
            views.remove(&(self.team_id, self.view));
        }
    }

    /// Renders what `changed` touches and tells the readers if the result differs.
    async fn render(&mut self, changed: Changed) -> Result<(), crate::store::Error> {
        let labels = crate::metrics::ViewLabels { view: self.view.label() };
        crate::metrics::metrics().live_renders.get_or_create(&labels).inc();
        let frame = match self.view {
            View::Meetings => {
                let meetings = self.store.team_meetings(self.team_id).await?;
                let upcoming = self.store.upcoming(self.team_id, crate::clock::now_ms()).await?;
                let mut out =
                    BytesMut::from(&frame(None, "upcoming", &upcoming_list(self.team_id, &upcoming).into_string())[..]);
                out.extend_from_slice(&frame(None, "meetings", &meeting_list(&meetings).into_string()));
                out.freeze()
            }
            View::Forum => {
                let (topics, _) = self.store.list_topics(self.team_id, 0, TOPICS_PER_PAGE).await?;
                frame(None, "topics", &topic_list(&topics).into_string())
            }
            View::Meeting(id) => {
                if changed.touches(Changed::RECORDINGS) || self.recordings.is_none() {
                    let digest = recordings_digest(&self.store.meeting_recordings(id).await?);
                    if self.recordings.as_ref().is_some_and(|last| *last != digest) {
                        self.recordings_generation += 1;
                    }
                    self.recordings = Some(digest);
                }
                if changed.touches(Changed::MEETINGS) || self.last_frame.is_empty() {
                    let html = match self.store.meeting(self.team_id, id).await? {
                        Some(meeting) => {
                            let stays = self.store.attendance(id).await?;
                            let access = self.store.meeting_access(id).await?;
                            attendance_panel(&meeting, &stays, &access).into_string()
                        }
                        None => String::new(),
                    };
                    frame(None, "attendance", &html)
                } else {
                    self.last_frame.clone()
                }
            }
        };
        let generation = self.recordings_generation;
        let unchanged =
            frame == self.last_frame && matches!(&*self.shown.borrow(), Shown::Ready(s) if s.recordings == generation);
        if !unchanged {
            self.last_frame = frame.clone();
            self.shown.send_replace(Shown::Ready(Arc::new(Snapshot { frame, recordings: generation })));
        }
        Ok(())
    }
}

/// What a meeting page's recordings card shows, but its composition progress.
fn recordings_digest(recordings: &[crate::store::Recording]) -> String {
    recordings
        .iter()
        .map(|r| format!("{}:{}:{}:{};", r.id, r.state, r.files.len(), r.composed_bytes.is_some()))
        .collect()
}

/// One open team page: sends its view's frames as the renderer makes them.
struct TeamReader {
    store: Store,
    removed: broadcast::Receiver<Event>,
    view: watch::Receiver<Shown>,
    resync: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    keep_alive: KeepAlive,
    team_id: i64,
    user_id: i64,
    /// The recordings generation this page last saw; None before its first frame.
    recordings: Option<u64>,
    /// Whether the membership was checked after subscribing.
    checked: bool,
    _slot: super::limits::StreamSlot,
}

impl super::sse::Source for TeamReader {
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send {
        self.next()
    }
}

impl TeamReader {
    async fn next(&mut self) -> Option<Bytes> {
        if !self.checked {
            // Removed between the page's check and the subscription?
            self.check_membership().await?;
            self.checked = true;
        }
        // The first frame goes out as soon as there is one: the page may be older than
        // the stream.
        let mut fresh = self.recordings.is_none();
        loop {
            if fresh {
                let shown = self.view.borrow_and_update().clone();
                match shown {
                    Shown::Pending => {}
                    Shown::Failed => return None,
                    Shown::Ready(snapshot) => {
                        self.keep_alive.sent();
                        let told = self.recordings.replace(snapshot.recordings);
                        if told.is_some_and(|told| told != snapshot.recordings) {
                            let mut out = BytesMut::from(&snapshot.frame[..]);
                            out.extend_from_slice(&frame(None, "recordings", "changed"));
                            return Some(out.freeze());
                        }
                        return Some(snapshot.frame.clone());
                    }
                }
            }
            tokio::select! {
                // Err: a renderer gone without a word (the bus closed) ends its streams.
                changed = self.view.changed() => {
                    changed.ok()?;
                    fresh = true;
                }
                event = self.removed.recv() => still_member(event, &self.store, self.team_id, self.user_id).await?,
                changed = self.resync.changed() => {
                    // Removals may have been missed while the bus was away.
                    changed.ok()?;
                    self.check_membership().await?;
                }
                () = super::limits::closed(&mut self.closing) => return None,
                () = self.keep_alive.due() => return Some(Bytes::from_static(super::sse::KEEP_ALIVE)),
            }
        }
    }

    async fn check_membership(&self) -> Option<()> {
        is_member(&self.store, self.team_id, self.user_id).await
    }
}

/// Whether `user_id` is (still) a member of `team_id`: None ends their stream.
pub(super) async fn is_member(store: &Store, team_id: i64, user_id: i64) -> Option<()> {
    store.team_membership(team_id, user_id).await.ok()?.map(|_| ())
}

/// What a stream makes of an event on its member's removal channel: None (end the
/// stream) if they were removed, or if the channel lagged and they are no longer a member.
pub(super) async fn still_member(
    event: Result<Event, broadcast::error::RecvError>,
    store: &Store,
    team_id: i64,
    user_id: i64,
) -> Option<()> {
    match event {
        Ok(Event::MemberRemoved { .. }) | Err(broadcast::error::RecvError::Closed) => None,
        Ok(_) => Some(()),
        Err(broadcast::error::RecvError::Lagged(_)) => is_member(store, team_id, user_id).await,
    }
}
