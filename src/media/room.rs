//! The relay's heart, without sockets or clocks (sans-IO, in the manner of quinn-proto):
//! one meeting's participants, tracks, cached groups and subscriptions. The driver feeds
//! it what happened (`join`, `control`, `group_start`, `frame`, `group_end`, `backlog`,
//! `handle_timeout`, each with the time) and carries out what it asks for
//! (`poll_output`): open a group stream to a subscriber, write a frame to it, finish or
//! abandon it, send a control message, close a session.
//!
//! Decisions made here: who receives what (what each client watches, the latest speakers
//! beside it, and the few loudest voices: see [`super::voices`]); which layers a publisher
//! need not encode because nobody watches them; the latest group of every track is kept
//! so a late joiner starts at a keyframe at once; audio before screen before camera and
//! newer groups before older ones (stream priorities); a group a subscriber cannot
//! receive in time is abandoned instead of letting delay build up; the lobby and what
//! hosts may do; roster news batched and encoded once for everyone; every count and size
//! a peer controls is bounded.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::close;
use super::voices::{SPEAKING_LEVEL, Voices};
use super::wire::{
    CallSettings, ClientMessage, FrameInfo, GroupHeader, Moderation, ParticipantInfo, ParticipantState, Quality,
    ServerMessage, TrackInfo, TrackKind, Transport, Waiter, Watch,
};

/// Identifies a participant's session inside the relay.
pub type SessionId = u64;
/// A stream the relay sends a group on (chosen by the room, mapped by the driver).
pub type SendId = u64;

/// Bounds on everything a peer controls.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_sessions: usize,
    pub max_tracks_per_session: usize,
    pub max_frame: usize,
    pub max_group_bytes: usize,
    /// Bytes queued for one subscriber (all its open group streams) before the oldest
    /// video groups are abandoned.
    pub max_backlog_per_subscriber: usize,
    /// How long a video group may take to reach a subscriber once a newer one started.
    pub video_deadline: Duration,
    /// How long an audio group may take to reach a subscriber.
    pub audio_deadline: Duration,
    pub control_per_second: u32,
    pub control_burst: u32,
    pub max_control_message: usize,
    /// Groups for tracks the session has not announced (or has just withdrawn) that are
    /// ignored before the session is closed. Group streams and the control stream are not
    /// ordered with each other, so a few such groups are normal around an (un)announce.
    pub max_stray_groups: u32,
    /// Voices forwarded to clients that say what they watch (the loudest); 0: all.
    pub voices: usize,
    /// Tiles one client may watch at once.
    pub max_view_tiles: usize,
    /// People waiting in a meeting's lobby at once.
    pub max_waiting: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sessions: 100,
            max_tracks_per_session: 6,
            max_frame: 512 * 1024,
            max_group_bytes: 8 * 1024 * 1024,
            max_backlog_per_subscriber: 4 * 1024 * 1024,
            video_deadline: Duration::from_millis(400),
            audio_deadline: Duration::from_millis(250),
            control_per_second: 50,
            control_burst: 100,
            max_control_message: 16 * 1024,
            max_stray_groups: 64,
            voices: 3,
            max_view_tiles: 64,
            max_waiting: 100,
        }
    }
}

/// What the room asks the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open a unidirectional stream to `session`, write `header` first.
    OpenGroup { session: SessionId, send: SendId, header: Bytes, priority: i32 },
    /// Append a frame (length prefix included) to a group stream.
    Write { send: SendId, frame: Bytes },
    /// The group is complete: finish the stream.
    Finish { send: SendId },
    /// Give the group up (reset the stream, with a code that says why).
    Abandon { send: SendId, cause: Cause },
    /// Send a control message to a session.
    Control { session: SessionId, message: ServerMessage },
    /// Send the same messages, in order, to each of `to` (encoded once for all of them).
    Broadcast { to: Vec<SessionId>, messages: Vec<ServerMessage> },
    /// Keep this in the meeting's record.
    Record(Record),
    /// End a session with a close code and a reason (`was_in`: it was in the call, not
    /// waiting in the lobby).
    Close { session: SessionId, code: u32, reason: String, was_in: bool },
}

/// What the room asks to be kept in the meeting's record (its attendance and settings).
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A host (`by`, a user id) removed `user_id`: they may not come back.
    Removed { user_id: i64, by: i64 },
    /// A host let `user_id` in from the lobby: they may come back without waiting.
    Admitted { user_id: i64, by: i64 },
    /// A host changed how the meeting admits people.
    Settings(CallSettings),
}

/// Why a group is given up on its way to a subscriber: the stream's reset code says it,
/// and only for its own slow link is the subscriber told `dropped` (which is what makes a
/// client step down a layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The subscriber could not receive it in time: bytes stayed queued for it, or it did
    /// not acknowledge a finished group.
    SlowLink,
    /// Not the subscriber's link: the publisher's data came late, the track ended, or the
    /// subscriber unsubscribed.
    Elsewhere,
}

/// Why the room refused something; the session is closed with `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    pub code: u32,
    pub reason: String,
}

/// Who a joining session is.
#[derive(Debug, Clone)]
pub struct Joining {
    pub user_id: i64,
    pub name: String,
    pub transport: Transport,
    /// They run the meeting (its creator, or an admin of the team).
    pub host: bool,
    /// A host let them in before: they do not wait in the lobby again.
    pub admitted: bool,
    /// The meeting's settings as kept with it (the room's own once it has started).
    pub settings: CallSettings,
}

fn refuse(code: u32, reason: impl Into<String>) -> Refusal {
    Refusal { code, reason: reason.into() }
}

/// What a client watches (`view`).
#[derive(Debug, Clone, Default)]
struct View {
    tiles: Vec<Watch>,
    speakers: u8,
    speaker_layer: u8,
}

struct Participant {
    user_id: i64,
    name: String,
    transport: Transport,
    state: ParticipantState,
    host: bool,
    /// When its hand went up (a number that grows with each raised hand).
    raised: Option<u64>,
    /// The publisher's track ids mapped to the relay's.
    tracks: HashMap<u64, u64>,
    /// The tracks it is sent now: those it subscribed to by id, those its view shows, and
    /// the chosen voices.
    subscriptions: HashSet<u64>,
    /// Tracks it subscribed to by id (`subscribe`).
    explicit: HashSet<u64>,
    /// What it watches; None for a client that subscribes by id only (and then hears only
    /// the voices it subscribed to).
    view: Option<View>,
    /// Its video tracks (own ids) it was last told anyone watches (`layers`).
    told_layers: Option<Vec<u64>>,
    /// Open group streams to this participant, oldest first.
    sending: VecDeque<SendId>,
    control_tokens: f64,
    control_at: Instant,
    /// Loudness heard recently (RFC 6464 level, lower is louder), for the active speaker.
    loudest_recent: Option<(u8, Instant)>,
    /// Groups received for tracks not (or no longer) announced.
    stray_groups: u32,
    /// The transport's shortest round trip to this participant, as the driver last said.
    rtt: Duration,
    /// Its smoothed round trip (which grows with a queue on its link).
    smoothed_rtt: Duration,
    /// When groups were given up on their way to it because of its link, recently.
    drops: VecDeque<Instant>,
    /// When its groups came too late from it for a subscriber, recently.
    late: VecDeque<Instant>,
    /// What others were last told of its connection.
    quality: Option<(Quality, u32)>,
}

struct CachedGroup {
    sequence: u64,
    frames: Vec<Bytes>,
    bytes: usize,
    done: bool,
}

struct Track {
    owner: SessionId,
    kind: TrackKind,
    layer: u8,
    config: serde_json::Value,
    latest: Option<CachedGroup>,
    subscribers: HashSet<SessionId>,
    /// When its publisher was last asked for a keyframe.
    keyframe_asked: Option<Instant>,
    /// Its publisher was told nobody watches it (and stopped encoding it).
    paused: bool,
    /// Since when nobody has watched it (a video track is paused after [`PAUSE_AFTER`]).
    unwatched_since: Option<Instant>,
}

/// Someone waiting in the lobby to be let in.
struct Waiting {
    who: Joining,
    state: ParticipantState,
}

struct OutGroup {
    session: SessionId,
    track: u64,
    sequence: u64,
    kind: TrackKind,
    opened: Instant,
    /// When a newer group of the same track started (the deadline counts from then).
    superseded: Option<Instant>,
    /// Its entry in the room's timers, if it has one.
    timer: Option<Instant>,
    /// Bytes the driver reports as queued and not yet taken by the transport.
    backlog: usize,
    finished: bool,
}

/// What a recorder needs to know of a publisher's track.
#[derive(Debug, Clone)]
pub struct TrackMeta {
    pub user_id: i64,
    pub kind: TrackKind,
    pub layer: u8,
    /// The largest camera layer this participant publishes (the one worth recording).
    pub best_layer: u8,
    pub config: serde_json::Value,
}

/// One meeting on this relay.
pub struct Room {
    limits: Limits,
    participants: HashMap<SessionId, Participant>,
    tracks: HashMap<u64, Track>,
    groups: HashMap<SendId, OutGroup>,
    /// Open group streams per track, so a frame finds its subscribers without a scan.
    sends_by_track: HashMap<u64, Vec<SendId>>,
    /// The groups that have a deadline (a newer group of their track started), by the
    /// deadline they had when last scheduled: the timer looks at the earliest only,
    /// rather than at every open group on every event.
    timers: BTreeSet<(Instant, SendId)>,
    outputs: VecDeque<Output>,
    next_track: u64,
    next_send: SendId,
    speaker: Option<SessionId>,
    recording: bool,
    /// When connection qualities are next worked out (None while nobody is here).
    next_quality: Option<Instant>,
    /// The voices forwarded to clients that say what they watch.
    voices: Voices,
    /// Everyone who was the active speaker, the latest first (the "last N" order).
    dominance: Vec<SessionId>,
    /// People waiting to be let in, by session.
    lobby: BTreeMap<SessionId, Waiting>,
    /// How the meeting admits people (from the first joiner's record, then the hosts').
    settings: Option<CallSettings>,
    /// Hands raised so far (the next raised hand's number).
    raises: u64,
    /// Roster news for everyone, sent together at most every [`NEWS_EVERY`].
    news: Vec<ServerMessage>,
    /// When the news waiting now goes out, and when news last went out.
    news_due: Option<Instant>,
    news_sent: Option<Instant>,
    /// When an unwatched video track is next due to be paused.
    pause_due: Option<Instant>,
    /// The latest time the room was told of.
    clock: Instant,
}

/// Stream priority: audio over screen over camera, then newer groups over older.
fn priority(kind: TrackKind, sequence: u64) -> i32 {
    let class = match kind {
        TrackKind::Audio => 3,
        TrackKind::Screen => 2,
        TrackKind::Camera => 1,
    };
    (class << 24) | (sequence & 0x00ff_ffff) as i32
}

impl Room {
    pub fn new(limits: Limits) -> Room {
        let voices = Voices::new(limits.voices);
        Room {
            limits,
            participants: HashMap::new(),
            tracks: HashMap::new(),
            groups: HashMap::new(),
            sends_by_track: HashMap::new(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            next_track: 1,
            next_send: 1,
            speaker: None,
            recording: false,
            next_quality: None,
            voices,
            dominance: Vec::new(),
            lobby: BTreeMap::new(),
            settings: None,
            raises: 0,
            news: Vec::new(),
            news_due: None,
            news_sent: None,
            pause_due: None,
            clock: Instant::now(),
        }
    }

    /// Nobody is in the call or waiting to join it.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.lobby.is_empty()
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// Whether `session` is in the call (not waiting in the lobby, not gone).
    pub fn is_participant(&self, session: SessionId) -> bool {
        self.participants.contains_key(&session)
    }

    fn info(&self, session: SessionId) -> Option<ParticipantInfo> {
        self.participants.get(&session).map(|p| ParticipantInfo {
            id: session,
            user_id: p.user_id,
            name: p.name.clone(),
            state: p.state,
            transport: p.transport,
            host: p.host,
            raised: p.raised,
        })
    }

    fn track_info(&self, id: u64) -> Option<TrackInfo> {
        self.tracks.get(&id).map(|t| TrackInfo {
            id,
            participant: t.owner,
            kind: t.kind,
            layer: t.layer,
            config: t.config.clone(),
        })
    }

    fn tick(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
    }

    /// News for everyone in the call: sent with whatever else comes within
    /// [`NEWS_EVERY`] of the last news, in one write encoded once (see `poll_output`).
    fn broadcast(&mut self, message: ServerMessage) {
        self.news.push(message);
        if self.news_due.is_none() {
            let earliest = self.news_sent.map_or(self.clock, |at| at + NEWS_EVERY);
            self.news_due = Some(earliest.max(self.clock));
        }
    }

    /// Sends the news now (before a message that must follow it, or when it is due).
    fn send_news(&mut self) {
        if self.news.is_empty() {
            self.news_due = None;
            return;
        }
        let mut to: Vec<SessionId> = self.participants.keys().copied().collect();
        to.sort_unstable();
        let messages = std::mem::take(&mut self.news);
        self.outputs.push_back(Output::Broadcast { to, messages });
        self.news_due = None;
        self.news_sent = Some(self.clock);
    }

    fn settings(&self) -> CallSettings {
        self.settings.unwrap_or_default()
    }

    /// A session arrives: it joins the call (and is told who is here and which tracks
    /// exist; the others are told of it), or, when the meeting asks people to wait and it
    /// is not a host or let in before, it waits in the lobby and the hosts are told.
    pub fn join(&mut self, now: Instant, session: SessionId, who: &Joining) -> Result<(), Refusal> {
        self.tick(now);
        let settings = *self.settings.get_or_insert(who.settings);
        if self.participants.len() >= self.limits.max_sessions {
            return Err(refuse(
                close::ROOM_FULL,
                format!("this meeting is full ({} people)", self.limits.max_sessions),
            ));
        }
        if settings.ask_to_join && !who.host && !who.admitted {
            if self.lobby.len() >= self.limits.max_waiting {
                return Err(refuse(close::ROOM_FULL, "too many people are waiting to join this meeting; try later"));
            }
            self.lobby.insert(session, Waiting { who: who.clone(), state: ParticipantState::default() });
            self.outputs.push_back(Output::Control { session, message: ServerMessage::Waiting {} });
            self.tell_hosts_who_waits();
            return Ok(());
        }
        self.enter(now, session, who, ParticipantState::default());
        Ok(())
    }

    /// Someone joins the call proper.
    fn enter(&mut self, now: Instant, session: SessionId, who: &Joining, state: ParticipantState) {
        self.participants.insert(
            session,
            Participant {
                user_id: who.user_id,
                name: who.name.clone(),
                transport: who.transport,
                state,
                host: who.host,
                raised: None,
                tracks: HashMap::new(),
                subscriptions: HashSet::new(),
                explicit: HashSet::new(),
                view: None,
                told_layers: None,
                sending: VecDeque::new(),
                control_tokens: f64::from(self.limits.control_burst),
                control_at: now,
                loudest_recent: None,
                stray_groups: 0,
                rtt: DEFAULT_RTT,
                smoothed_rtt: DEFAULT_RTT,
                drops: VecDeque::new(),
                late: VecDeque::new(),
                quality: None,
            },
        );
        self.next_quality.get_or_insert(now + QUALITY_EVERY);
        // News still waiting reaches the joiner after its welcome: it ends with the state
        // the welcome shows (every change is news), and clients take news idempotently.
        let mut ids: Vec<SessionId> = self.participants.keys().copied().collect();
        ids.sort_unstable();
        // The first participants (the joiner among them) and their tracks in the welcome,
        // the rest at once after it, one message each: no message grows with the meeting.
        let first: Vec<SessionId> = std::iter::once(session)
            .chain(ids.iter().copied().filter(|s| *s != session))
            .take(WELCOME_PARTICIPANTS)
            .collect();
        let tracks_of = |room: &Room, owners: &[SessionId]| -> Vec<TrackInfo> {
            let mut ids: Vec<u64> =
                room.tracks.iter().filter(|(_, t)| owners.contains(&t.owner)).map(|(id, _)| *id).collect();
            ids.sort_unstable();
            ids.iter().filter_map(|t| room.track_info(*t)).collect()
        };
        let settings = self.settings();
        let welcome = ServerMessage::Welcome {
            you: session,
            participants: first.iter().filter_map(|s| self.info(*s)).collect(),
            tracks: tracks_of(self, &first),
            total: ids.len(),
            host: who.host,
            quiet: ids.len() > settings.quiet_above as usize,
            settings,
        };
        // Everything the joiner must know, in order, as one write (in a meeting of hundreds
        // that is a thousand messages: one queue entry, not one each).
        let mut messages = vec![welcome];
        for other in ids.iter().copied().filter(|s| !first.contains(s)) {
            messages.extend(self.info(other).map(|participant| ServerMessage::Joined { participant }));
            messages.extend(tracks_of(self, &[other]).into_iter().map(|track| ServerMessage::Track { track }));
        }
        if self.recording {
            messages.push(ServerMessage::Recording { on: true });
        }
        if who.host {
            messages.push(ServerMessage::Lobby { waiting: self.waiters() });
        }
        messages.extend(
            ids.iter()
                .filter_map(|s| self.participants.get(s).and_then(|p| p.quality).map(|q| (*s, q)))
                .map(|(participant, (level, rtt_ms))| ServerMessage::Quality { participant, level, rtt_ms }),
        );
        if let Some(speaker) = self.speaker {
            messages.push(ServerMessage::Speaker { participant: Some(speaker) });
        }
        self.outputs.push_back(Output::Broadcast { to: vec![session], messages });
        if let Some(participant) = self.info(session) {
            self.broadcast(ServerMessage::Joined { participant });
        }
    }

    /// A session left (or was closed): its tracks end, its streams are dropped.
    pub fn leave(&mut self, now: Instant, session: SessionId) {
        self.tick(now);
        if self.lobby.remove(&session).is_some() {
            self.tell_hosts_who_waits();
            return;
        }
        let Some(participant) = self.participants.remove(&session) else { return };
        for send in participant.sending {
            self.forget(send);
        }
        for track in participant.tracks.into_values() {
            self.end_track(track);
        }
        for track in participant.subscriptions {
            if let Some(t) = self.tracks.get_mut(&track) {
                t.subscribers.remove(&session);
            }
        }
        self.dominance.retain(|s| *s != session);
        self.voices.silence(session);
        if self.speaker == Some(session) {
            self.speaker = None;
            self.broadcast(ServerMessage::Speaker { participant: None });
        }
        self.broadcast(ServerMessage::Left { participant: session });
        self.reselect_all(now);
    }

    fn end_track(&mut self, id: u64) {
        let Some(track) = self.tracks.remove(&id) else { return };
        for send in self.sends_by_track.get(&id).cloned().unwrap_or_default() {
            self.abandon(send, Cause::Elsewhere);
        }
        for subscriber in track.subscribers {
            if let Some(p) = self.participants.get_mut(&subscriber) {
                p.subscriptions.remove(&id);
                p.explicit.remove(&id);
            }
        }
        self.broadcast(ServerMessage::TrackEnded { track: id });
    }

    fn close(&mut self, session: SessionId, refusal: Refusal) {
        let was_in = self.participants.contains_key(&session);
        self.outputs.push_back(Output::Close { session, code: refusal.code, reason: refusal.reason, was_in });
        self.leave(self.clock, session);
    }

    /// A control message from a session. A refusal closes that session (and only it).
    pub fn control(&mut self, now: Instant, session: SessionId, message: ClientMessage) {
        self.tick(now);
        if let Some(waiting) = self.lobby.get_mut(&session) {
            // In the lobby only the state (kept for later) and pings count; the client
            // publishes nothing before its welcome, so anything else is ignored.
            match message {
                ClientMessage::State { state } => waiting.state = state,
                ClientMessage::Ping { nonce } => {
                    self.outputs.push_back(Output::Control { session, message: ServerMessage::Pong { nonce } })
                }
                _ => {}
            }
            return;
        }
        if let Err(refusal) = self.try_control(now, session, message) {
            self.close(session, refusal);
        }
    }

    fn try_control(&mut self, now: Instant, session: SessionId, message: ClientMessage) -> Result<(), Refusal> {
        let limits = self.limits.clone();
        let participant = self.participants.get_mut(&session).ok_or_else(|| refuse(close::PROTOCOL, "not joined"))?;
        let refill =
            now.saturating_duration_since(participant.control_at).as_secs_f64() * f64::from(limits.control_per_second);
        participant.control_tokens = (participant.control_tokens + refill).min(f64::from(limits.control_burst));
        participant.control_at = now;
        if participant.control_tokens < 1.0 {
            return Err(refuse(close::RATE, "too many control messages"));
        }
        participant.control_tokens -= 1.0;
        match message {
            ClientMessage::Announce { track } => {
                if participant.tracks.contains_key(&track.id) {
                    return Err(refuse(close::PROTOCOL, "track announced twice"));
                }
                if participant.tracks.len() >= limits.max_tracks_per_session {
                    return Err(refuse(close::TOO_LARGE, "too many tracks"));
                }
                let config_size = track.config.to_string().len();
                if config_size > limits.max_control_message {
                    return Err(refuse(close::TOO_LARGE, "track configuration too large"));
                }
                let id = self.next_track;
                self.next_track += 1;
                participant.tracks.insert(track.id, id);
                self.tracks.insert(
                    id,
                    Track {
                        owner: session,
                        kind: track.kind,
                        layer: track.layer,
                        config: track.config,
                        latest: None,
                        subscribers: HashSet::new(),
                        keyframe_asked: None,
                        paused: false,
                        unwatched_since: Some(now),
                    },
                );
                if let Some(info) = self.track_info(id) {
                    self.broadcast(ServerMessage::Track { track: info });
                }
                self.reselect_all(now);
                // A publisher once told which layers are watched learns that the new one is.
                if self.participants.get(&session).is_some_and(|p| p.told_layers.is_some()) {
                    self.tell_layers(session);
                }
            }
            ClientMessage::Unannounce { id } => {
                let global = participant.tracks.remove(&id).ok_or_else(|| refuse(close::PROTOCOL, "unknown track"))?;
                self.end_track(global);
                self.reselect_all(now);
            }
            ClientMessage::Subscribe { track } => {
                // A track that may just have ended is not an error: nothing to send.
                if self.tracks.contains_key(&track) {
                    participant.explicit.insert(track);
                    self.reselect(now, session);
                    self.dynacast(now);
                }
            }
            ClientMessage::Unsubscribe { track } => {
                participant.explicit.remove(&track);
                self.reselect(now, session);
                self.dynacast(now);
            }
            ClientMessage::View { tiles, speakers, speaker_layer } => {
                if tiles.len() > limits.max_view_tiles {
                    return Err(refuse(close::TOO_LARGE, "too many tiles in a view"));
                }
                participant.view = Some(View { tiles, speakers: speakers.min(MAX_LAST_N), speaker_layer });
                self.reselect(now, session);
                self.dynacast(now);
            }
            ClientMessage::State { state } => {
                let was = participant.state;
                participant.state = state;
                if state.hand && !was.hand {
                    self.raises += 1;
                    participant.raised = Some(self.raises);
                } else if !state.hand {
                    participant.raised = None;
                }
                let raised = participant.raised;
                if state.muted && !was.muted {
                    participant.loudest_recent = None;
                    if self.voices.silence(session) {
                        self.reselect_all(now);
                    }
                }
                self.broadcast(ServerMessage::State { participant: session, state, raised });
                if state.camera_off != was.camera_off {
                    // Tiles of a camera that went off, or came on, change what is sent.
                    self.reselect_all(now);
                }
            }
            ClientMessage::Ping { nonce } => {
                self.outputs.push_back(Output::Control { session, message: ServerMessage::Pong { nonce } });
            }
            ClientMessage::Keyframe { track } => self.ask_keyframe(now, session, track),
            ClientMessage::Moderate { action, participant: target } => {
                if participant.host {
                    self.moderate(now, session, action, target);
                }
            }
            ClientMessage::Settings { settings } => {
                if participant.host {
                    self.change_settings(now, settings);
                }
            }
        }
        Ok(())
    }

    /// The people waiting in the lobby, as hosts see them.
    fn waiters(&self) -> Vec<Waiter> {
        self.lobby.iter().map(|(id, w)| Waiter { id: *id, user_id: w.who.user_id, name: w.who.name.clone() }).collect()
    }

    fn tell_hosts_who_waits(&mut self) {
        let waiting = self.waiters();
        let mut hosts: Vec<SessionId> = self.participants.iter().filter(|(_, p)| p.host).map(|(s, _)| *s).collect();
        hosts.sort_unstable();
        for session in hosts {
            self.outputs
                .push_back(Output::Control { session, message: ServerMessage::Lobby { waiting: waiting.clone() } });
        }
    }

    /// A host acts on someone (hosts themselves are out of other hosts' reach).
    fn moderate(&mut self, now: Instant, host: SessionId, action: Moderation, target: Option<SessionId>) {
        let Some(by) = self.participants.get(&host).map(|p| (p.user_id, p.name.clone())) else { return };
        let (by_user, by_name) = by;
        let told = |action| ServerMessage::Moderated { action, by: by_name.clone() };
        match action {
            Moderation::Admit | Moderation::Deny => {
                let Some(waiting) = target.and_then(|t| self.lobby.remove(&t).map(|w| (t, w))) else { return };
                let (session, waiting) = waiting;
                if action == Moderation::Admit {
                    if self.participants.len() >= self.limits.max_sessions {
                        let reason = format!("this meeting is full ({} people)", self.limits.max_sessions);
                        self.outputs.push_back(Output::Close {
                            session,
                            code: close::ROOM_FULL,
                            reason,
                            was_in: false,
                        });
                    } else {
                        let user_id = waiting.who.user_id;
                        self.outputs.push_back(Output::Record(Record::Admitted { user_id, by: by_user }));
                        self.enter(now, session, &waiting.who, waiting.state);
                        self.reselect_all(now);
                    }
                } else {
                    let reason = format!("{by_name} did not let you in to this meeting");
                    self.outputs.push_back(Output::Close { session, code: close::DENIED, reason, was_in: false });
                }
                self.tell_hosts_who_waits();
            }
            Moderation::Mute => {
                let mut targets: Vec<SessionId> = match target {
                    Some(t) => vec![t],
                    None => self.participants.keys().copied().collect(),
                };
                targets.retain(|t| self.participants.get(t).is_some_and(|p| !p.host && !p.state.muted));
                targets.sort_unstable();
                for session in targets {
                    self.outputs.push_back(Output::Control { session, message: told(Moderation::Mute) });
                }
            }
            Moderation::CameraOff | Moderation::LowerHand | Moderation::Remove => {
                let Some(session) = target.filter(|t| self.participants.get(t).is_some_and(|p| !p.host)) else {
                    return;
                };
                match action {
                    Moderation::Remove => {
                        let user_id = self.participants[&session].user_id;
                        self.outputs.push_back(Output::Record(Record::Removed { user_id, by: by_user }));
                        // Every session of that person goes (two tabs, a waiting one too).
                        let mut theirs: Vec<SessionId> = self
                            .participants
                            .iter()
                            .filter(|(_, p)| p.user_id == user_id)
                            .map(|(s, _)| *s)
                            .chain(self.lobby.iter().filter(|(_, w)| w.who.user_id == user_id).map(|(s, _)| *s))
                            .collect();
                        theirs.sort_unstable();
                        for session in theirs {
                            let reason = format!("{by_name} removed you from this meeting");
                            self.close(session, Refusal { code: close::REMOVED, reason });
                        }
                    }
                    Moderation::LowerHand => {
                        let p = self.participants.get_mut(&session).expect("checked above");
                        if p.state.hand {
                            p.state.hand = false;
                            p.raised = None;
                            let state = p.state;
                            self.broadcast(ServerMessage::State { participant: session, state, raised: None });
                            self.outputs.push_back(Output::Control { session, message: told(action) });
                        }
                    }
                    _ => self.outputs.push_back(Output::Control { session, message: told(action) }),
                }
            }
        }
    }

    fn change_settings(&mut self, now: Instant, settings: CallSettings) {
        let was = self.settings();
        self.settings = Some(settings);
        self.outputs.push_back(Output::Record(Record::Settings(settings)));
        self.broadcast(ServerMessage::Settings { settings });
        if was.ask_to_join && !settings.ask_to_join {
            // Nobody waits any more: everyone waiting comes in, as far as there is room.
            for (session, waiting) in std::mem::take(&mut self.lobby) {
                if self.participants.len() >= self.limits.max_sessions {
                    let reason = format!("this meeting is full ({} people)", self.limits.max_sessions);
                    self.outputs.push_back(Output::Close { session, code: close::ROOM_FULL, reason, was_in: false });
                    continue;
                }
                self.enter(now, session, &waiting.who, waiting.state);
            }
            self.reselect_all(now);
            self.tell_hosts_who_waits();
        }
    }

    /// The track of `participant` shown in a tile of `kind` wanting `layer`: the largest
    /// published layer not above it, else the smallest. None for a camera that is off.
    fn track_for(&self, participant: SessionId, kind: TrackKind, layer: u8) -> Option<u64> {
        let p = self.participants.get(&participant)?;
        if kind == TrackKind::Camera && p.state.camera_off {
            return None;
        }
        let layers =
            || p.tracks.values().filter_map(|id| self.tracks.get(id).map(|t| (*id, t))).filter(|(_, t)| t.kind == kind);
        layers()
            .filter(|(_, t)| t.layer <= layer)
            .max_by_key(|(id, t)| (t.layer, *id))
            .or_else(|| layers().min_by_key(|(id, t)| (t.layer, *id)))
            .map(|(id, _)| id)
    }

    /// The tracks `session` should be sent now: those it subscribed to by id; and if it
    /// said what it watches, its tiles, the latest speakers with a camera beside them, and
    /// the chosen voices (never its own).
    fn wanted(&self, session: SessionId) -> HashSet<u64> {
        let Some(p) = self.participants.get(&session) else { return HashSet::new() };
        let mut want: HashSet<u64> = p.explicit.iter().copied().filter(|t| self.tracks.contains_key(t)).collect();
        let Some(view) = &p.view else { return want };
        let voice = |owner: &SessionId| {
            self.participants.get(owner).filter(|o| !o.state.muted).and_then(|o| {
                o.tracks.values().copied().find(|t| self.tracks.get(t).is_some_and(|t| t.kind == TrackKind::Audio))
            })
        };
        if self.voices.all() {
            want.extend(self.participants.keys().filter(|o| **o != session).filter_map(voice));
        } else {
            want.extend(self.voices.chosen().iter().filter(|o| **o != session).filter_map(voice));
        }
        let mut shown = HashSet::new();
        for tile in view.tiles.iter().filter(|t| t.participant != session) {
            if let Some(track) = self.track_for(tile.participant, tile.kind, tile.layer) {
                want.insert(track);
                if tile.kind == TrackKind::Camera {
                    shown.insert(tile.participant);
                }
            }
        }
        let latest = self
            .dominance
            .iter()
            .filter(|s| **s != session && !shown.contains(*s))
            .filter_map(|s| self.track_for(*s, TrackKind::Camera, view.speaker_layer))
            .take(usize::from(view.speakers));
        want.extend(latest);
        want
    }

    /// Brings what `session` is sent in line with what it wants: new tracks start at
    /// once (a video track from the keyframe of its latest group, a voice from the start
    /// of its current group), tracks no longer wanted stop (their open groups reset).
    fn reselect(&mut self, now: Instant, session: SessionId) {
        let want = self.wanted(session);
        let Some(p) = self.participants.get(&session) else { return };
        let mut stop: Vec<u64> = p.subscriptions.difference(&want).copied().collect();
        let mut start: Vec<u64> = want.difference(&p.subscriptions).copied().collect();
        stop.sort_unstable();
        start.sort_unstable();
        for track in stop {
            self.stop_sending(session, track);
        }
        for track in start {
            let Some(t) = self.tracks.get_mut(&track) else { continue };
            t.subscribers.insert(session);
            t.unwatched_since = None;
            if let Some(p) = self.participants.get_mut(&session) {
                p.subscriptions.insert(track);
            }
            self.send_cached(now, session, track);
        }
    }

    /// Reselects for everyone, then tells publishers what is watched.
    fn reselect_all(&mut self, now: Instant) {
        let mut sessions: Vec<SessionId> = self.participants.keys().copied().collect();
        sessions.sort_unstable();
        for session in sessions {
            self.reselect(now, session);
        }
        self.dynacast(now);
    }

    fn stop_sending(&mut self, session: SessionId, track: u64) {
        if let Some(p) = self.participants.get_mut(&session) {
            p.subscriptions.remove(&track);
        }
        if let Some(t) = self.tracks.get_mut(&track) {
            t.subscribers.remove(&session);
        }
        let open: Vec<SendId> = self
            .sends_by_track
            .get(&track)
            .into_iter()
            .flatten()
            .copied()
            .filter(|s| self.groups.get(s).is_some_and(|g| g.session == session))
            .collect();
        for send in open {
            self.abandon(send, Cause::Elsewhere);
        }
    }

    /// Whether anyone needs a video track: someone watches it, or the recorder does (the
    /// largest camera layer and screens, while recording).
    fn is_watched(&self, track: &Track) -> bool {
        if !track.subscribers.is_empty() {
            return true;
        }
        self.recording
            && (track.kind == TrackKind::Screen
                || (track.kind == TrackKind::Camera
                    && self.participants.get(&track.owner).is_some_and(|p| {
                        p.tracks
                            .values()
                            .filter_map(|id| self.tracks.get(id))
                            .filter(|t| t.kind == TrackKind::Camera)
                            .all(|t| t.layer <= track.layer)
                    })))
    }

    /// Tells each publisher which of its video tracks are watched: one nobody has watched
    /// for [`PAUSE_AFTER`] is paused (its publisher stops encoding it, and its kept group
    /// goes stale, so it is dropped); one watched again resumes at once, with a keyframe.
    fn dynacast(&mut self, now: Instant) {
        let mut changed: BTreeSet<SessionId> = BTreeSet::new();
        let mut due: Option<Instant> = None;
        let ids: Vec<u64> = self.tracks.keys().copied().collect();
        for id in ids {
            let watched = self.tracks.get(&id).is_some_and(|t| t.kind != TrackKind::Audio && self.is_watched(t));
            let Some(t) = self.tracks.get_mut(&id) else { continue };
            if t.kind == TrackKind::Audio {
                continue;
            }
            if watched {
                t.unwatched_since = None;
                if t.paused {
                    t.paused = false;
                    changed.insert(t.owner);
                }
                continue;
            }
            let since = *t.unwatched_since.get_or_insert(now);
            if !t.paused {
                if now.saturating_duration_since(since) >= PAUSE_AFTER {
                    t.paused = true;
                    t.latest = None;
                    changed.insert(t.owner);
                } else {
                    let at = since + PAUSE_AFTER;
                    due = Some(due.map_or(at, |d: Instant| d.min(at)));
                }
            }
        }
        self.pause_due = due;
        for owner in changed {
            self.tell_layers(owner);
        }
    }

    /// Tells a publisher which of its video tracks (local ids) are watched, if that
    /// changed since it was last told. A publisher told nothing yet encodes every layer.
    fn tell_layers(&mut self, owner: SessionId) {
        let Some(p) = self.participants.get(&owner) else { return };
        let mut active: Vec<u64> = p
            .tracks
            .iter()
            .filter(|(_, id)| self.tracks.get(id).is_some_and(|t| t.kind != TrackKind::Audio && !t.paused))
            .map(|(local, _)| *local)
            .collect();
        active.sort_unstable();
        if p.told_layers.as_ref() == Some(&active) {
            return;
        }
        if let Some(p) = self.participants.get_mut(&owner) {
            p.told_layers = Some(active.clone());
        }
        self.outputs.push_back(Output::Control { session: owner, message: ServerMessage::Layers { active } });
    }

    /// Passes a subscriber's wish for a keyframe on to the track's publisher, at most once
    /// per [`KEYFRAME_EVERY`] per track however many subscribers ask (one new group serves
    /// them all).
    fn ask_keyframe(&mut self, now: Instant, session: SessionId, track: u64) {
        let Some(t) = self.tracks.get_mut(&track) else { return };
        if t.kind == TrackKind::Audio || !t.subscribers.contains(&session) {
            return;
        }
        if t.keyframe_asked.is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_EVERY) {
            return;
        }
        t.keyframe_asked = Some(now);
        let owner = t.owner;
        let local = self
            .participants
            .get(&owner)
            .and_then(|p| p.tracks.iter().find(|(_, global)| **global == track).map(|(local, _)| *local));
        if let Some(local) = local {
            self.outputs
                .push_back(Output::Control { session: owner, message: ServerMessage::Keyframe { track: local } });
        }
    }

    /// A late subscriber starts with the latest group at once (it begins at a keyframe).
    fn send_cached(&mut self, now: Instant, session: SessionId, track: u64) {
        let Some(t) = self.tracks.get(&track) else { return };
        let Some(cached) = &t.latest else { return };
        let (kind, sequence, frames, done) = (t.kind, cached.sequence, cached.frames.clone(), cached.done);
        let send = self.open(now, session, track, kind, sequence);
        for frame in frames {
            self.outputs.push_back(Output::Write { send, frame });
        }
        if done {
            self.finish(send);
        }
    }

    fn open(&mut self, now: Instant, session: SessionId, track: u64, kind: TrackKind, sequence: u64) -> SendId {
        let send = self.next_send;
        self.next_send += 1;
        let header = GroupHeader { track, sequence }.encode();
        self.outputs.push_back(Output::OpenGroup { session, send, header, priority: priority(kind, sequence) });
        self.groups.insert(
            send,
            OutGroup {
                session,
                track,
                sequence,
                kind,
                opened: now,
                superseded: None,
                timer: None,
                backlog: 0,
                finished: false,
            },
        );
        if let Some(p) = self.participants.get_mut(&session) {
            p.sending.push_back(send);
        }
        self.sends_by_track.entry(track).or_default().push(send);
        send
    }

    /// The publisher finished the group: so does each subscriber's stream. The group stays
    /// the room's (and can still be abandoned if it is late) until the driver reports it
    /// delivered, with a backlog of 0 after the finish.
    fn finish(&mut self, send: SendId) {
        if let Some(g) = self.groups.get_mut(&send) {
            g.finished = true;
            self.outputs.push_back(Output::Finish { send });
            // A finished group is given a little longer (for its acknowledgement).
            self.schedule(send);
        }
    }

    /// (Re)files a group's deadline with the timers.
    fn schedule(&mut self, send: SendId) {
        let Some(g) = self.groups.get(&send) else { return };
        let deadline = self.deadline(g);
        let old = g.timer;
        if let Some(at) = old {
            self.timers.remove(&(at, send));
        }
        if let Some(at) = deadline {
            self.timers.insert((at, send));
        }
        if let Some(g) = self.groups.get_mut(&send) {
            g.timer = deadline;
        }
    }

    /// Gives a group up; returns its subscriber and track if it was open.
    fn abandon(&mut self, send: SendId, cause: Cause) -> Option<(SessionId, u64)> {
        let g = self.groups.get(&send)?;
        let gone = (g.session, g.track);
        self.outputs.push_back(Output::Abandon { send, cause });
        self.forget(send);
        Some(gone)
    }

    /// Tells a subscriber that groups were given up because of its link, once per event
    /// however many groups went: a reset may never surface at the subscriber (the data it
    /// cuts short can still arrive whole), a control message does.
    fn tell_dropped(&mut self, now: Instant, gone: impl IntoIterator<Item = (SessionId, u64)>) {
        let mut told = HashSet::new();
        for (session, track) in gone {
            if told.insert(session) {
                self.outputs.push_back(Output::Control { session, message: ServerMessage::Dropped { track } });
                if let Some(p) = self.participants.get_mut(&session) {
                    p.drops.push_back(now);
                }
            }
        }
    }

    fn forget(&mut self, send: SendId) {
        let Some(g) = self.groups.remove(&send) else { return };
        if let Some(at) = g.timer {
            self.timers.remove(&(at, send));
        }
        if let Some(p) = self.participants.get_mut(&g.session) {
            p.sending.retain(|s| *s != send);
        }
        if let Some(sends) = self.sends_by_track.get_mut(&g.track) {
            sends.retain(|s| *s != send);
            if sends.is_empty() {
                self.sends_by_track.remove(&g.track);
            }
        }
    }

    /// Open, unfinished group streams of one group of a track.
    fn sends_of(&self, track: u64, sequence: u64) -> Vec<SendId> {
        self.sends_by_track
            .get(&track)
            .into_iter()
            .flatten()
            .copied()
            .filter(|s| self.groups.get(s).is_some_and(|g| g.sequence == sequence && !g.finished))
            .collect()
    }

    fn publisher_track(&self, session: SessionId, local: u64) -> Result<u64, Refusal> {
        let p = self.participants.get(&session).ok_or_else(|| refuse(close::PROTOCOL, "not joined"))?;
        p.tracks.get(&local).copied().ok_or_else(|| refuse(close::PROTOCOL, "group for an unannounced track"))
    }

    /// A publisher started a group (a new stream arrived with this header).
    pub fn group_start(&mut self, now: Instant, session: SessionId, local_track: u64, sequence: u64) {
        let Some(p) = self.participants.get_mut(&session) else { return };
        let Some(&track) = p.tracks.get(&local_track) else {
            // The group overtook its track's announcement, or follows its withdrawal:
            // ignored, up to a limit.
            p.stray_groups += 1;
            if p.stray_groups > self.limits.max_stray_groups {
                self.close(session, refuse(close::PROTOCOL, "too many groups for unannounced tracks"));
            }
            return;
        };
        let Some(t) = self.tracks.get_mut(&track) else { return };
        if t.latest.as_ref().is_some_and(|g| g.sequence >= sequence) {
            // An old group arriving late: nobody wants it any more.
            return;
        }
        t.latest = Some(CachedGroup { sequence, frames: Vec::new(), bytes: 0, done: false });
        let kind = t.kind;
        let mut subscribers: Vec<SessionId> = t.subscribers.iter().copied().collect();
        subscribers.sort_unstable();
        // Older groups of this track still on their way are now superseded.
        let mut superseded = Vec::new();
        for send in self.sends_by_track.get(&track).into_iter().flatten() {
            if let Some(g) = self.groups.get_mut(send)
                && g.sequence < sequence
                && g.superseded.is_none()
            {
                g.superseded = Some(now);
                superseded.push(*send);
            }
        }
        for send in superseded {
            self.schedule(send);
        }
        for subscriber in subscribers {
            self.open(now, subscriber, track, kind, sequence);
        }
        self.expire(now);
    }

    /// A frame of a publisher's group: forwarded on every subscriber stream of that group
    /// still open, and kept with the track's latest group for late joiners. A group's
    /// last frames may well arrive after its successor has started (each group is its own
    /// stream, read on its own task; over a WebSocket both often come in one message): the
    /// older group's streams are still open until their deadline, and get them. Frames of
    /// a group whose streams are all gone go nowhere.
    pub fn frame(
        &mut self,
        now: Instant,
        session: SessionId,
        local_track: u64,
        sequence: u64,
        frame: Bytes,
        info: &FrameInfo,
    ) {
        if frame.len() > self.limits.max_frame + 16 {
            return self.close(session, refuse(close::TOO_LARGE, "frame too large"));
        }
        // Frames of a group for an unknown track are dropped (group_start counted it).
        let Ok(track) = self.publisher_track(session, local_track) else { return };
        let max_group = self.limits.max_group_bytes;
        let Some(t) = self.tracks.get_mut(&track) else { return };
        let kind = t.kind;
        if let Some(cached) = t.latest.as_mut().filter(|g| g.sequence == sequence && !g.done) {
            cached.bytes += frame.len();
            if cached.bytes > max_group {
                return self.close(session, refuse(close::TOO_LARGE, "group too large"));
            }
            cached.frames.push(frame.clone());
        } else if t.latest.as_ref().is_none_or(|g| g.sequence < sequence) {
            // Not a group that started (group_start refused or never saw it).
            return;
        }
        self.tick(now);
        for send in self.sends_of(track, sequence) {
            self.outputs.push_back(Output::Write { send, frame: frame.clone() });
        }
        // After the frame went out: a voice chosen now gets its current group from the
        // start, this frame included, once.
        if kind == TrackKind::Audio {
            self.hear(now, session, info.level);
        }
    }

    /// A publisher's group ended (its stream finished cleanly).
    pub fn group_end(&mut self, now: Instant, session: SessionId, local_track: u64, sequence: u64) {
        self.tick(now);
        let Ok(track) = self.publisher_track(session, local_track) else { return };
        if let Some(cached) =
            self.tracks.get_mut(&track).and_then(|t| t.latest.as_mut()).filter(|g| g.sequence == sequence)
        {
            cached.done = true;
        }
        for send in self.sends_of(track, sequence) {
            self.finish(send);
        }
    }

    /// The driver's report of bytes still queued on a group stream; 0 after the finish means
    /// the subscriber has it all.
    pub fn backlog(&mut self, now: Instant, send: SendId, queued: usize) {
        let Some(g) = self.groups.get_mut(&send) else { return };
        g.backlog = queued;
        if g.finished && queued == 0 {
            self.forget(send);
            return;
        }
        let session = g.session;
        let Some(p) = self.participants.get(&session) else { return };
        let total: usize = p.sending.iter().filter_map(|s| self.groups.get(s)).map(|g| g.backlog).sum();
        if total > self.limits.max_backlog_per_subscriber {
            // Too much queued for this subscriber: give up its oldest video groups first.
            let mut victims: Vec<(bool, SendId)> =
                p.sending.iter().filter_map(|s| self.groups.get(s).map(|g| (g.kind == TrackKind::Audio, *s))).collect();
            victims.sort();
            let mut excess = total - self.limits.max_backlog_per_subscriber;
            let mut gone = Vec::new();
            for (_, victim) in victims {
                if excess == 0 {
                    break;
                }
                excess = excess.saturating_sub(self.groups.get(&victim).map(|g| g.backlog).unwrap_or(0));
                gone.extend(self.abandon(victim, Cause::SlowLink));
            }
            self.tell_dropped(now, gone);
        }
    }

    /// Abandons groups past their deadline: video once superseded for too long, audio
    /// once too old.
    /// A group still coming from its publisher, with nothing queued for this subscriber, is
    /// late at its source; otherwise the subscriber is the one that could not keep up.
    fn expire(&mut self, now: Instant) {
        let mut late = Vec::new();
        while let Some(&(at, send)) = self.timers.first() {
            if at >= now {
                break;
            }
            self.timers.pop_first();
            let Some(g) = self.groups.get_mut(&send) else { continue };
            g.timer = None;
            let g = &self.groups[&send];
            if self.is_late(g, now) {
                late.push((send, if g.finished || g.backlog > 0 { Cause::SlowLink } else { Cause::Elsewhere }));
            } else {
                // Its deadline moved on (a longer round trip since it was filed).
                self.schedule(send);
            }
        }
        let mut gone = Vec::new();
        for (send, cause) in late {
            let track = self.groups.get(&send).map(|g| g.track);
            let abandoned = self.abandon(send, cause);
            match cause {
                Cause::SlowLink => gone.extend(abandoned),
                // Late at its source: the publisher's link is the one to blame.
                Cause::Elsewhere => {
                    if let Some(p) =
                        track.and_then(|t| self.tracks.get(&t)).and_then(|t| self.participants.get_mut(&t.owner))
                    {
                        p.late.push_back(now);
                    }
                }
            }
        }
        self.tell_dropped(now, gone);
    }

    fn is_late(&self, g: &OutGroup, now: Instant) -> bool {
        self.deadline(g).is_some_and(|deadline| now > deadline)
    }

    /// When a superseded group stops being worth delivering. Once it is finished (all of
    /// it handed to the transport) it is delivered when the subscriber acknowledges it,
    /// which takes a round trip: two, and a grace, are added before giving it up, so that a
    /// distant or busy subscriber is not mistaken for a slow one.
    fn deadline(&self, g: &OutGroup) -> Option<Instant> {
        let deadline = match g.kind {
            TrackKind::Audio => g.superseded.map(|_| g.opened + self.limits.audio_deadline),
            TrackKind::Camera | TrackKind::Screen => g.superseded.map(|at| at + self.limits.video_deadline),
        }?;
        if !g.finished {
            return Some(deadline);
        }
        let rtt = self.participants.get(&g.session).map_or(DEFAULT_RTT, |p| p.rtt);
        Some(deadline + rtt * 2 + ACK_GRACE)
    }

    /// The driver's measure of the distance to a participant: its shortest round trip
    /// (not the smoothed one, which grows with the very queue a slow link builds).
    /// (`smoothed`: the transport's running estimate, which a queue on the link raises; it
    /// goes into the participant's connection quality.)
    pub fn set_rtt(&mut self, session: SessionId, rtt: Duration, smoothed: Duration) {
        if let Some(p) = self.participants.get_mut(&session) {
            p.rtt = rtt.min(Duration::from_secs(5));
            p.smoothed_rtt = smoothed.min(Duration::from_secs(5));
        }
    }

    /// Works out each participant's connection quality from its round trip and the groups
    /// lost on its way in or out recently, and tells everyone of the ones that changed.
    fn update_quality(&mut self, now: Instant) {
        let mut changed = Vec::new();
        for (session, p) in &mut self.participants {
            for events in [&mut p.drops, &mut p.late] {
                while events.front().is_some_and(|at| now.saturating_duration_since(*at) > QUALITY_WINDOW) {
                    events.pop_front();
                }
            }
            let troubles = p.drops.len() + p.late.len();
            let rtt_ms = u32::try_from(p.smoothed_rtt.as_millis()).unwrap_or(u32::MAX);
            let level = if troubles >= 3 || rtt_ms > 400 {
                Quality::Poor
            } else if troubles >= 1 || rtt_ms > 150 {
                Quality::Fair
            } else {
                Quality::Good
            };
            // A new level is news; a round trip only when it moved by a fifth (and 10 ms).
            let news =
                p.quality.is_none_or(|(old, old_rtt)| old != level || old_rtt.abs_diff(rtt_ms) > (old_rtt / 5).max(10));
            if news {
                p.quality = Some((level, rtt_ms));
                changed.push(ServerMessage::Quality { participant: *session, level, rtt_ms });
            }
        }
        changed.sort_by_key(|m| match m {
            ServerMessage::Quality { participant, .. } => *participant,
            _ => 0,
        });
        for message in changed {
            self.broadcast(message);
        }
    }

    fn hear(&mut self, now: Instant, session: SessionId, level: u8) {
        let Some(p) = self.participants.get_mut(&session) else { return };
        if p.state.muted {
            return;
        }
        if p.loudest_recent.is_none_or(|(l, at)| level <= l || now.saturating_duration_since(at) > SPEAKER_WINDOW) {
            p.loudest_recent = Some((level, now));
        }
        if self.voices.heard(now, session, level) {
            self.reselect_all(now);
        }
        self.pick_speaker(now);
    }

    fn pick_speaker(&mut self, now: Instant) {
        let speaker = self
            .participants
            .iter()
            .filter_map(|(s, p)| p.loudest_recent.map(|(level, at)| (level, at, *s)))
            .filter(|(level, at, _)| *level <= SPEAKING_LEVEL && now.saturating_duration_since(*at) <= SPEAKER_WINDOW)
            .min_by_key(|(level, _, s)| (*level, *s))
            .map(|(_, _, s)| s);
        if let Some(s) = speaker
            && speaker != self.speaker
        {
            self.speaker = speaker;
            // The latest speakers first: clients that keep the last few on screen get the
            // new one's camera from the relay at once, without asking.
            self.dominance.retain(|d| *d != s);
            self.dominance.insert(0, s);
            self.broadcast(ServerMessage::Speaker { participant: speaker });
            self.send_news();
            self.reselect_all(now);
        }
    }

    /// The track a publisher calls `local_track`, as a recorder sees it.
    pub fn track_meta(&self, session: SessionId, local_track: u64) -> Option<TrackMeta> {
        let p = self.participants.get(&session)?;
        let track = self.tracks.get(p.tracks.get(&local_track)?)?;
        let best_layer = p
            .tracks
            .values()
            .filter_map(|t| self.tracks.get(t))
            .filter(|t| t.kind == TrackKind::Camera)
            .map(|t| t.layer)
            .max()
            .unwrap_or(0);
        Some(TrackMeta {
            user_id: p.user_id,
            kind: track.kind,
            layer: track.layer,
            best_layer,
            config: track.config.clone(),
        })
    }

    /// Tells everyone whether the meeting is being recorded; later joiners are told on join.
    /// While it is, the largest camera layer and screens are never paused (the recorder
    /// keeps them).
    pub fn set_recording(&mut self, now: Instant, on: bool) {
        self.tick(now);
        self.recording = on;
        self.broadcast(ServerMessage::Recording { on });
        self.send_news();
        self.dynacast(now);
    }

    /// Time passed: deadlines may have been reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        self.expire(now);
        self.pick_speaker(now);
        if self.next_quality.is_some_and(|at| now >= at) {
            self.update_quality(now);
            self.next_quality = (!self.participants.is_empty()).then_some(now + QUALITY_EVERY);
        }
        if self.pause_due.is_some_and(|at| now >= at) {
            self.dynacast(now);
        }
    }

    /// When the room next needs `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.timers.first().map(|(at, _)| *at), self.next_quality, self.news_due, self.pause_due]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.news_due.is_some_and(|at| at <= self.clock) {
            self.send_news();
        }
        self.outputs.pop_front()
    }
}

/// The round-trip time assumed until the driver measures one.
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// How often connection qualities are worked out, and over how long a window.
const QUALITY_EVERY: Duration = Duration::from_secs(2);
const QUALITY_WINDOW: Duration = Duration::from_secs(10);
/// One keyframe request per track per this long reaches its publisher.
const KEYFRAME_EVERY: Duration = Duration::from_millis(250);
/// Time allowed beyond two round trips for a finished group's acknowledgement: a busy
/// receiver acknowledges late, and data really stuck behind a slow link is still given
/// up within a second or so.
const ACK_GRACE: Duration = Duration::from_millis(300);

/// How long a loud moment keeps someone the active speaker.
const SPEAKER_WINDOW: Duration = Duration::from_millis(1500);
/// Roster news (joins, leaves, states, tracks) goes out together at most this often.
const NEWS_EVERY: Duration = Duration::from_millis(100);
/// Participants listed in a welcome; the rest follow it in messages of their own.
const WELCOME_PARTICIPANTS: usize = 50;
/// The most latest speakers a client may ask to be sent beside its tiles.
const MAX_LAST_N: u8 = 9;
/// How long a video track nobody watches is still encoded (views change in bursts: a
/// page turned back, a tile resized).
const PAUSE_AFTER: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::wire::{TrackAnnounce, encode_frame};

    /// A room with a fake clock and helpers to read what it asked for.
    struct Harness {
        room: Room,
        now: Instant,
    }

    impl Harness {
        fn new(limits: Limits) -> Harness {
            Harness { room: Room::new(limits), now: Instant::now() }
        }

        /// Session 1 publishes two tracks of `kinds` (local ids 1 and 2), session 2
        /// subscribes to both, and the first group of each has started. Returns the
        /// subscriber's streams of those groups, in the same order.
        fn two_groups_on_their_way(limits: Limits, kinds: [TrackKind; 2]) -> (Harness, [SendId; 2]) {
            let mut h = Harness::new(limits);
            h.join(1);
            h.join(2);
            let tracks = [h.announce(1, 1, kinds[0]), h.announce(1, 2, kinds[1])];
            for track in tracks {
                h.subscribe(2, track);
            }
            h.outputs();
            h.room.group_start(h.now, 1, 1, 0);
            h.room.group_start(h.now, 1, 2, 0);
            let sends = opens(&h.outputs());
            (h, [sends[0].1, sends[1].1])
        }

        /// Session 1 publishes a camera, session 2 subscribes; the first group has
        /// started with a 1000-byte keyframe. Returns the harness, the track and the
        /// subscriber's stream of that group.
        fn camera_group_on_its_way() -> (Harness, u64, SendId) {
            let mut h = Harness::new(Limits::default());
            h.join(1);
            h.join(2);
            let track = h.announce(1, 1, TrackKind::Camera);
            h.subscribe(2, track);
            h.outputs();
            h.room.group_start(h.now, 1, 1, 0);
            h.frame(1, 1, 0, true, &[0; 1000]);
            let (_, send, _) = opens(&h.outputs())[0];
            (h, track, send)
        }

        fn advance(&mut self, ms: u64) {
            self.now += Duration::from_millis(ms);
            self.room.handle_timeout(self.now);
        }

        /// What the room asked for, news sent at once (the batching has tests of its own)
        /// and a broadcast shown as one control message per recipient.
        fn outputs(&mut self) -> Vec<Output> {
            self.room.send_news();
            let raw: Vec<Output> = std::iter::from_fn(|| self.room.poll_output()).collect();
            raw.into_iter()
                .flat_map(|o| match o {
                    Output::Broadcast { to, messages } => to
                        .iter()
                        .flat_map(|session| {
                            messages.iter().map(|m| Output::Control { session: *session, message: m.clone() })
                        })
                        .collect::<Vec<_>>(),
                    other => vec![other],
                })
                .collect()
        }

        fn joining(session: SessionId) -> Joining {
            Joining {
                user_id: session as i64,
                name: format!("user {session}"),
                transport: Transport::default(),
                host: false,
                admitted: false,
                settings: CallSettings::default(),
            }
        }

        fn join(&mut self, session: SessionId) {
            self.room.join(self.now, session, &Harness::joining(session)).unwrap();
        }

        /// Announces a track and returns the relay's id for it.
        fn announce(&mut self, session: SessionId, local: u64, kind: TrackKind) -> u64 {
            let config = serde_json::json!({ "codec": "vp8" });
            self.room.control(
                self.now,
                session,
                ClientMessage::Announce { track: TrackAnnounce { id: local, kind, layer: 0, config } },
            );
            self.outputs()
                .into_iter()
                .find_map(|o| match o {
                    Output::Control { message: ServerMessage::Track { track }, .. } => Some(track.id),
                    _ => None,
                })
                .expect("track announced")
        }

        fn subscribe(&mut self, session: SessionId, track: u64) {
            self.room.control(self.now, session, ClientMessage::Subscribe { track });
        }

        fn frame(&mut self, session: SessionId, local: u64, sequence: u64, keyframe: bool, payload: &[u8]) -> Bytes {
            let info = FrameInfo { keyframe, timestamp_us: 0, level: 127 };
            let frame = encode_frame(&info, payload);
            self.room.frame(self.now, session, local, sequence, frame.clone(), &info);
            frame
        }
    }

    /// What `pick` finds in the outputs, in order.
    fn all<T>(outputs: &[Output], pick: impl Fn(&Output) -> Option<T>) -> Vec<T> {
        outputs.iter().filter_map(pick).collect()
    }

    fn opens(outputs: &[Output]) -> Vec<(SessionId, SendId, i32)> {
        all(outputs, |o| match o {
            Output::OpenGroup { session, send, priority, .. } => Some((*session, *send, *priority)),
            _ => None,
        })
    }

    /// The groups given up, and why.
    fn abandoned(outputs: &[Output]) -> Vec<(SendId, Cause)> {
        all(outputs, |o| match o {
            Output::Abandon { send, cause } => Some((*send, *cause)),
            _ => None,
        })
    }

    /// Who was told a group of which track was dropped for its slow link.
    fn told_dropped(outputs: &[Output]) -> Vec<(SessionId, u64)> {
        all(outputs, |o| match o {
            Output::Control { session, message: ServerMessage::Dropped { track } } => Some((*session, *track)),
            _ => None,
        })
    }

    fn writes_to(outputs: &[Output], to: SendId) -> Vec<Bytes> {
        all(outputs, |o| match o {
            Output::Write { send, frame } if *send == to => Some(frame.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_group_fans_out_to_every_subscriber_byte_for_byte() {
        let mut h = Harness::new(Limits::default());
        for s in 1..=3 {
            h.join(s);
        }
        let track = h.announce(1, 7, TrackKind::Camera);
        h.subscribe(2, track);
        h.subscribe(3, track);
        h.outputs();
        h.room.group_start(h.now, 1, 7, 0);
        let f1 = h.frame(1, 7, 0, true, b"key");
        let f2 = h.frame(1, 7, 0, false, b"delta");
        h.room.group_end(h.now, 1, 7, 0);
        let out = h.outputs();
        let opened = opens(&out);
        assert_eq!(opened.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(), vec![2, 3]);
        for (_, send, _) in &opened {
            assert_eq!(writes_to(&out, *send), vec![f1.clone(), f2.clone()]);
            assert!(out.contains(&Output::Finish { send: *send }));
        }
        assert!(out.iter().all(|o| !matches!(o, Output::OpenGroup { session: 1, .. })), "no echo to the publisher");
    }

    #[test]
    fn the_last_frames_of_a_group_reach_its_subscribers_after_the_next_group_started() {
        let mut h = Harness::new(Limits::default());
        h.join(1);
        h.join(2);
        let track = h.announce(1, 1, TrackKind::Audio);
        h.subscribe(2, track);
        h.outputs();
        h.room.group_start(h.now, 1, 1, 0);
        let first = h.frame(1, 1, 0, true, b"first");
        let (_, old, _) = opens(&h.outputs())[0];
        // The next group's stream is read first; the old group's tail comes just after.
        h.room.group_start(h.now, 1, 1, 1);
        let new = opens(&h.outputs())[0].1;
        let last = h.frame(1, 1, 0, true, b"last of the old group");
        h.room.group_end(h.now, 1, 1, 0);
        let next = h.frame(1, 1, 1, true, b"first of the new group");
        let out = h.outputs();
        assert_eq!(writes_to(&out, old), vec![last], "the old group gets its tail, then its end");
        assert!(out.contains(&Output::Finish { send: old }));
        assert_eq!(writes_to(&out, new), vec![next]);
        let _ = first;
        // A late joiner still starts from the newest group only.
        h.join(3);
        h.subscribe(3, track);
        let out = h.outputs();
        let (_, late, _) = opens(&out)[0];
        assert_eq!(writes_to(&out, late).len(), 1, "the cached group is the newest one");
    }

    #[test]
    fn a_keyframe_request_reaches_the_publisher_once_however_many_subscribers_ask() {
        let mut h = Harness::new(Limits::default());
        for s in 1..=4 {
            h.join(s);
        }
        let camera = h.announce(1, 7, TrackKind::Camera);
        let audio = h.announce(1, 8, TrackKind::Audio);
        h.subscribe(2, camera);
        h.subscribe(3, camera);
        h.subscribe(2, audio);
        h.outputs();
        let asked = |out: &[Output]| {
            all(out, |o| match o {
                Output::Control { session, message: ServerMessage::Keyframe { track } } => Some((*session, *track)),
                _ => None,
            })
        };
        h.room.control(h.now, 2, ClientMessage::Keyframe { track: camera });
        h.room.control(h.now, 3, ClientMessage::Keyframe { track: camera });
        assert_eq!(asked(&h.outputs()), vec![(1, 7)], "the publisher, by its own id for the track, once");
        h.room.control(h.now, 4, ClientMessage::Keyframe { track: camera });
        h.room.control(h.now, 2, ClientMessage::Keyframe { track: audio });
        h.advance(300);
        h.room.control(h.now, 4, ClientMessage::Keyframe { track: camera });
        assert!(asked(&h.outputs()).is_empty(), "not for someone who does not receive it, nor for audio");
        h.room.control(h.now, 3, ClientMessage::Keyframe { track: camera });
        assert_eq!(asked(&h.outputs()), vec![(1, 7)], "again after a quarter of a second");
    }

    #[test]
    fn everyone_is_told_when_a_participants_connection_gets_worse_and_better() {
        let mut h = Harness::new(Limits::default());
        h.join(1);
        h.join(2);
        let quality = |out: &[Output]| {
            all(out, |o| match o {
                Output::Control { session, message: ServerMessage::Quality { participant, level, .. } } => {
                    Some((*session, *participant, *level))
                }
                _ => None,
            })
        };
        h.room.set_rtt(2, Duration::from_millis(20), Duration::from_millis(30));
        h.outputs();
        h.advance(2100);
        let out = h.outputs();
        assert!(quality(&out).contains(&(1, 2, Quality::Good)) && quality(&out).contains(&(2, 1, Quality::Good)));
        // A queue on Bob's link: his round trip grows.
        h.room.set_rtt(2, Duration::from_millis(20), Duration::from_millis(250));
        h.advance(2000);
        assert_eq!(quality(&h.outputs()), vec![(1, 2, Quality::Fair), (2, 2, Quality::Fair)]);
        // Groups given up on their way to him, three times.
        let track = h.announce(1, 1, TrackKind::Camera);
        h.subscribe(2, track);
        h.outputs();
        for round in 0..3 {
            let sequence = 2 * round;
            h.room.group_start(h.now, 1, 1, sequence);
            h.frame(1, 1, sequence, true, &[0; 100]);
            let send = opens(&h.outputs())[0].1;
            h.room.backlog(h.now, send, 100);
            h.room.group_start(h.now, 1, 1, sequence + 1);
            h.outputs();
            h.advance(500);
            h.outputs();
        }
        h.advance(2000);
        assert!(quality(&h.outputs()).contains(&(1, 2, Quality::Poor)), "three drops make a poor connection");
        // A calm while later, he is fine again; a newcomer is told at once.
        h.room.set_rtt(2, Duration::from_millis(20), Duration::from_millis(30));
        h.advance(11_000);
        h.advance(2000);
        assert!(quality(&h.outputs()).contains(&(1, 2, Quality::Good)));
        h.join(3);
        let out = h.outputs();
        assert!(quality(&out).contains(&(3, 2, Quality::Good)) && quality(&out).contains(&(3, 1, Quality::Good)));
    }

    #[test]
    fn a_late_joiner_gets_the_cached_group_from_its_keyframe_at_once() {
        let mut h = Harness::new(Limits::default());
        h.join(1);
        let track = h.announce(1, 1, TrackKind::Camera);
        h.room.group_start(h.now, 1, 1, 4);
        let key = h.frame(1, 1, 4, true, b"keyframe");
        let delta = h.frame(1, 1, 4, false, b"delta");
        h.outputs();
        h.advance(700);
        h.join(2);
        let welcome = h.outputs();
        assert!(welcome.iter().any(|o| matches!(o, Output::Control { session: 2, message: ServerMessage::Welcome { tracks, .. } } if tracks.len() == 1)));
        h.subscribe(2, track);
        let out = h.outputs();
        let (_, send, _) = opens(&out)[0];
        assert_eq!(writes_to(&out, send), vec![key, delta]);
        // And it keeps receiving the same group live.
        let more = h.frame(1, 1, 4, false, b"more");
        assert_eq!(writes_to(&h.outputs(), send), vec![more]);
    }

    #[test]
    fn audio_goes_before_screen_before_camera_and_newer_groups_before_older() {
        let mut h = Harness::new(Limits::default());
        h.join(1);
        h.join(2);
        let camera = h.announce(1, 1, TrackKind::Camera);
        let screen = h.announce(1, 2, TrackKind::Screen);
        let audio = h.announce(1, 3, TrackKind::Audio);
        for t in [camera, screen, audio] {
            h.subscribe(2, t);
        }
        h.outputs();
        h.room.group_start(h.now, 1, 1, 10);
        h.room.group_start(h.now, 1, 2, 10);
        h.room.group_start(h.now, 1, 3, 10);
        h.room.group_start(h.now, 1, 1, 11);
        let priorities: Vec<i32> = opens(&h.outputs()).into_iter().map(|(_, _, p)| p).collect();
        let (camera10, screen10, audio10, camera11) = (priorities[0], priorities[1], priorities[2], priorities[3]);
        assert!(audio10 > screen10 && screen10 > camera11 && camera11 > camera10);
    }

    #[test]
    fn a_finished_group_waits_for_its_acknowledgement_a_round_trip_longer() {
        let mut h = Harness::new(Limits::default());
        h.join(1);
        h.join(2);
        h.join(3);
        let track = h.announce(1, 1, TrackKind::Camera);
        h.subscribe(2, track);
        h.subscribe(3, track);
        h.room.set_rtt(2, Duration::from_millis(300), Duration::from_millis(300));
        h.room.set_rtt(3, Duration::from_millis(10), Duration::from_millis(10));
        h.outputs();
        h.room.group_start(h.now, 1, 1, 0);
        h.frame(1, 1, 0, true, &[0; 1000]);
        let first = opens(&h.outputs());
        let send_to =
            |s: SessionId| first.iter().find(|(who, _, _)| *who == s).map(|(_, send, _)| *send).expect("open");
        let (far, near) = (send_to(2), send_to(3));
        // The publisher finishes the group and starts the next: both streams are written
        // whole, neither acknowledged yet.
        h.room.group_end(h.now, 1, 1, 0);
        h.room.group_start(h.now, 1, 1, 1);
        h.outputs();
        let deadline = Limits::default().video_deadline.as_millis() as u64;
        h.advance(deadline + 2 * 10 + ACK_GRACE.as_millis() as u64 + 1);
        let out = h.outputs();
        assert_eq!(
            abandoned(&out),
            vec![(near, Cause::SlowLink)],
            "near and still unacknowledged: it is stuck behind a slow link; far: its acknowledgement is still on the way"
        );
        // Acknowledged: done with, never abandoned.
        h.room.backlog(h.now, far, 0);
        h.advance(2 * 300);
        assert!(abandoned(&h.outputs()).is_empty());
    }

    #[test]
    fn a_group_a_subscriber_cannot_receive_in_time_is_abandoned() {
        let (mut h, track, old) = Harness::camera_group_on_its_way();
        // The subscriber is slow: bytes stay queued.
        h.room.backlog(h.now, old, 1000);
        h.advance(100);
        h.room.group_start(h.now, 1, 1, 1);
        let out = h.outputs();
        assert!(abandoned(&out).is_empty(), "a superseded group gets a grace period");
        let (_, new, _) = opens(&out)[0];
        assert!(h.room.poll_timeout().is_some());
        h.advance(Limits::default().video_deadline.as_millis() as u64 + 1);
        let out = h.outputs();
        assert_eq!(
            abandoned(&out),
            vec![(old, Cause::SlowLink)],
            "the old group is dropped (bytes stayed queued for the subscriber), not delay built up"
        );
        assert_eq!(told_dropped(&out), vec![(2, track)], "and the subscriber is told its link is short");
        // Frames of the abandoned group are no longer forwarded; the new group's are.
        h.frame(1, 1, 0, false, b"late");
        let f = h.frame(1, 1, 1, true, b"new");
        let out = h.outputs();
        assert!(writes_to(&out, old).is_empty());
        assert_eq!(writes_to(&out, new), vec![f]);
    }

    #[test]
    fn a_group_late_from_its_publisher_is_abandoned_without_blaming_the_subscriber() {
        let (mut h, track, old) = Harness::camera_group_on_its_way();
        // The subscriber took everything so far; the publisher's uplink is what is slow:
        // the group is not finished when the next one starts.
        h.room.backlog(h.now, old, 0);
        h.room.group_start(h.now, 1, 1, 1);
        let (_, new, _) = opens(&h.outputs())[0];
        h.advance(Limits::default().video_deadline.as_millis() as u64 + 1);
        let out = h.outputs();
        assert_eq!(abandoned(&out), vec![(old, Cause::Elsewhere)]);
        assert!(told_dropped(&out).is_empty());
        // A track that ends, or a subscriber that unsubscribes, is not a slow link either.
        h.room.control(h.now, 2, ClientMessage::Unsubscribe { track });
        let out = h.outputs();
        assert_eq!(abandoned(&out), vec![(new, Cause::Elsewhere)]);
        assert!(told_dropped(&out).is_empty());
    }

    #[test]
    fn a_slow_subscriber_is_told_once_per_event_and_leaves_no_deadline_behind() {
        let (mut h, sends) =
            Harness::two_groups_on_their_way(Limits::default(), [TrackKind::Camera, TrackKind::Screen]);
        for send in &sends {
            h.room.backlog(h.now, *send, 1000);
        }
        h.room.group_start(h.now, 1, 1, 1);
        h.room.group_start(h.now, 1, 2, 1);
        h.outputs();
        h.advance(Limits::default().video_deadline.as_millis() as u64 + 1);
        let out = h.outputs();
        assert_eq!(abandoned(&out).len(), 2, "both late groups go");
        assert_eq!(told_dropped(&out).len(), 1, "one message for one event, not one per group");
        // The subscriber leaves while a group of its is superseded: the timer forgets it.
        h.room.group_start(h.now, 1, 1, 2);
        assert!(!h.room.timers.is_empty());
        h.room.leave(h.now, 2);
        assert!(h.room.timers.is_empty() && h.room.groups.is_empty());
        h.outputs();
        assert!(h.room.poll_timeout().is_some_and(|at| at > h.now), "only the next quality round is left");
    }

    #[test]
    fn a_subscriber_over_its_backlog_loses_video_before_audio() {
        let limits = Limits { max_backlog_per_subscriber: 10_000, ..Limits::default() };
        let (mut h, [camera_send, audio_send]) =
            Harness::two_groups_on_their_way(limits, [TrackKind::Camera, TrackKind::Audio]);
        h.room.backlog(h.now, audio_send, 2_000);
        h.room.backlog(h.now, camera_send, 9_000);
        let out = h.outputs();
        assert_eq!(abandoned(&out), vec![(camera_send, Cause::SlowLink)]);
    }

    #[test]
    fn limits_are_enforced_and_close_only_the_offender() {
        let limits = Limits { max_sessions: 2, max_tracks_per_session: 1, max_group_bytes: 2_000, ..Limits::default() };
        let mut h = Harness::new(limits);
        h.join(1);
        h.join(2);
        let late = Joining { name: "late".into(), transport: Transport::WebSocket, ..Harness::joining(3) };
        let full = h.room.join(h.now, 3, &late);
        assert_eq!(full.map_err(|r| r.code), Err(close::ROOM_FULL));
        h.announce(1, 1, TrackKind::Camera);
        h.outputs();

        // A second track is over the limit: session 1 is closed, session 2 is told it left.
        h.room.control(
            h.now,
            1,
            ClientMessage::Announce {
                track: TrackAnnounce { id: 2, kind: TrackKind::Audio, layer: 0, config: serde_json::json!({}) },
            },
        );
        let out = h.outputs();
        assert!(out.iter().any(|o| matches!(o, Output::Close { session: 1, code, .. } if *code == close::TOO_LARGE)));
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Control { session: 2, message: ServerMessage::Left { participant: 1 } }))
        );
        assert!(out.iter().all(|o| !matches!(o, Output::Close { session: 2, .. })));
        assert_eq!(h.room.participant_count(), 1);

        // A group too large closes its publisher.
        h.join(4);
        h.announce(4, 1, TrackKind::Camera);
        h.room.group_start(h.now, 4, 1, 0);
        h.frame(4, 1, 0, true, &[0; 1500]);
        h.frame(4, 1, 0, false, &[0; 1500]);
        assert!(
            h.outputs()
                .iter()
                .any(|o| matches!(o, Output::Close { session: 4, code, .. } if *code == close::TOO_LARGE))
        );

        // A group for a track not (yet, or any more) announced is ignored: streams are not
        // ordered with the control stream. Many of them are a protocol error.
        h.join(5);
        h.room.group_start(h.now, 5, 99, 0);
        h.frame(5, 99, 0, true, &[0; 100]);
        assert!(h.outputs().iter().all(|o| !matches!(o, Output::Close { .. })), "one stray group is fine");
        for sequence in 1..=Limits::default().max_stray_groups as u64 {
            h.room.group_start(h.now, 5, 99, sequence);
        }
        assert!(
            h.outputs().iter().any(|o| matches!(o, Output::Close { session: 5, code, .. } if *code == close::PROTOCOL))
        );
        assert_eq!(h.room.participant_count(), 1, "session 2 is unharmed");
    }

    #[test]
    fn control_floods_are_cut_off() {
        let limits = Limits { control_burst: 5, control_per_second: 1, ..Limits::default() };
        let mut h = Harness::new(limits);
        h.join(1);
        for nonce in 0..6 {
            h.room.control(h.now, 1, ClientMessage::Ping { nonce });
        }
        let out = h.outputs();
        assert_eq!(
            out.iter().filter(|o| matches!(o, Output::Control { message: ServerMessage::Pong { .. }, .. })).count(),
            5
        );
        assert!(out.iter().any(|o| matches!(o, Output::Close { session: 1, code, .. } if *code == close::RATE)));
    }

    #[test]
    fn state_reaches_everyone_including_later_joiners_and_the_loudest_speaks() {
        let mut h = Harness::new(Limits::default());
        h.join(1);
        h.join(2);
        let audio = h.announce(2, 1, TrackKind::Audio);
        h.room.control(
            h.now,
            1,
            ClientMessage::State { state: ParticipantState { muted: true, ..Default::default() } },
        );
        let out = h.outputs();
        assert!(out.iter().any(|o| matches!(o, Output::Control { session: 2, message: ServerMessage::State { participant: 1, state, .. } } if state.muted)));
        h.join(3);
        let out = h.outputs();
        let welcome = out.iter().find_map(|o| match o {
            Output::Control { session: 3, message: ServerMessage::Welcome { participants, .. } } => {
                Some(participants.clone())
            }
            _ => None,
        });
        assert!(welcome.expect("welcome").iter().any(|p| p.id == 1 && p.state.muted), "a late joiner sees the mute");

        h.subscribe(3, audio);
        h.room.group_start(h.now, 2, 1, 0);
        let info = FrameInfo { keyframe: true, timestamp_us: 0, level: 20 };
        h.room.frame(h.now, 2, 1, 0, encode_frame(&info, b"loud"), &info);
        let out = h.outputs();
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Control { message: ServerMessage::Speaker { participant: Some(2) }, .. }))
        );
    }

    /// Session `s` publishes a camera in layers 0 and 1 (local ids 1, 2) and audio (3).
    fn publish_all(h: &mut Harness, s: SessionId) -> (u64, u64, u64) {
        let config = serde_json::json!({ "codec": "vp8" });
        let mut ids = Vec::new();
        for (local, kind, layer) in [(1, TrackKind::Camera, 0), (2, TrackKind::Camera, 1), (3, TrackKind::Audio, 0)] {
            h.room.control(
                h.now,
                s,
                ClientMessage::Announce { track: TrackAnnounce { id: local, kind, layer, config: config.clone() } },
            );
            let id = h
                .outputs()
                .into_iter()
                .find_map(|o| match o {
                    Output::Control { message: ServerMessage::Track { track }, .. } if track.participant == s => {
                        Some(track.id)
                    }
                    _ => None,
                })
                .expect("announced");
            ids.push(id);
        }
        (ids[0], ids[1], ids[2])
    }

    fn view(h: &mut Harness, s: SessionId, tiles: &[(SessionId, u8)], speakers: u8) {
        let tiles =
            tiles.iter().map(|(p, layer)| Watch { participant: *p, kind: TrackKind::Camera, layer: *layer }).collect();
        h.room.control(h.now, s, ClientMessage::View { tiles, speakers, speaker_layer: 1 });
    }

    /// A new group of each of `session`'s tracks (local 1, 2, 3), one frame each at `level`.
    fn a_group_of_everything(h: &mut Harness, session: SessionId, sequence: u64, level: u8) -> Vec<Output> {
        for local in 1..=3 {
            h.room.group_start(h.now, session, local, sequence);
            let info =
                FrameInfo { keyframe: true, timestamp_us: sequence, level: if local == 3 { level } else { 127 } };
            h.room.frame(h.now, session, local, sequence, encode_frame(&info, b"x"), &info);
        }
        h.outputs()
    }

    /// Which tracks `to` was sent a group of, from the opens and the group headers.
    fn tracks_sent(h: &Harness, outputs: &[Output], to: SessionId) -> BTreeSet<u64> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::OpenGroup { session, send, .. } if *session == to => h.room.groups.get(send).map(|g| g.track),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_viewer_is_sent_the_tiles_it_shows_in_their_layers_and_nothing_else() {
        let mut h = Harness::new(Limits::default());
        for s in 1..=4 {
            h.join(s);
        }
        let tracks: Vec<(u64, u64, u64)> = (1..=3).map(|s| publish_all(&mut h, s)).collect();
        // 4 shows 1 small and 2 large; 3's camera is on another page.
        view(&mut h, 4, &[(1, 0), (2, 1)], 0);
        h.outputs();
        let mut sent = BTreeSet::new();
        for s in 1..=3 {
            let out = a_group_of_everything(&mut h, s, 10, 127);
            sent.extend(tracks_sent(&h, &out, 4));
        }
        assert_eq!(sent, BTreeSet::from([tracks[0].0, tracks[1].1]), "no audio (all silent), no other video");
        // Turning the page: 3 now, and 1's open group is reset, not left to finish.
        view(&mut h, 4, &[(3, 0)], 0);
        let out = h.outputs();
        assert!(abandoned(&out).iter().all(|(_, cause)| *cause == Cause::Elsewhere));
        assert_eq!(abandoned(&out).len(), 2, "the two groups of the tiles that went");
        assert_eq!(tracks_sent(&h, &out, 4), BTreeSet::from([tracks[2].0]), "3's latest group at once");
        // A camera turned off is not sent even in a tile.
        h.room.control(
            h.now,
            3,
            ClientMessage::State { state: ParticipantState { camera_off: true, ..Default::default() } },
        );
        let out = h.outputs();
        assert_eq!(abandoned(&out).len(), 1);
        let out = a_group_of_everything(&mut h, 3, 11, 127);
        assert!(tracks_sent(&h, &out, 4).is_empty());
        // Too many tiles is a protocol error of that client alone.
        let tiles = (0..65).map(|i| Watch { participant: i, kind: TrackKind::Camera, layer: 0 }).collect();
        h.room.control(h.now, 4, ClientMessage::View { tiles, speakers: 0, speaker_layer: 0 });
        assert!(
            h.outputs()
                .iter()
                .any(|o| matches!(o, Output::Close { session: 4, code, .. } if *code == close::TOO_LARGE))
        );
        assert_eq!(h.room.participant_count(), 3);
    }

    #[test]
    fn the_latest_speakers_beside_the_tiles_are_sent_without_asking_and_only_the_loudest_voices() {
        let limits = Limits { voices: 2, ..Limits::default() };
        let mut h = Harness::new(limits);
        for s in 1..=5 {
            h.join(s);
        }
        let tracks: Vec<(u64, u64, u64)> = (1..=4).map(|s| publish_all(&mut h, s)).collect();
        // 5 shows 1's tile and wants the latest speaker beside it, large.
        view(&mut h, 5, &[(1, 0)], 1);
        h.outputs();
        // 3 speaks: its voice and its large camera reach 5, from the first loud frame.
        let out = a_group_of_everything(&mut h, 3, 10, 30);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Control { message: ServerMessage::Speaker { participant: Some(3) }, .. }))
        );
        let sent = tracks_sent(&h, &out, 5);
        assert!(sent.contains(&tracks[2].2), "3's voice: {sent:?}");
        let voice_send = out
            .iter()
            .find_map(|o| match o {
                Output::OpenGroup { session: 5, send, .. }
                    if h.room.groups.get(send).is_some_and(|g| g.track == tracks[2].2) =>
                {
                    Some(*send)
                }
                _ => None,
            })
            .expect("a stream of 3's voice");
        assert_eq!(writes_to(&out, voice_send).len(), 1, "its first loud frame, once");
        let out = a_group_of_everything(&mut h, 3, 11, 30);
        assert!(tracks_sent(&h, &out, 5).contains(&tracks[2].1), "3's large camera as the latest speaker");
        // Two more speak, louder: only two voices go out, never one's own.
        for s in [2, 4] {
            a_group_of_everything(&mut h, s, 20, 5);
        }
        assert_eq!(h.room.voices.chosen().len(), 2);
        for s in 1..=4 {
            let out = a_group_of_everything(&mut h, s, 30, if s == 1 { 127 } else { 5 });
            let voices: Vec<u64> =
                tracks_sent(&h, &out, 5).into_iter().filter(|t| tracks.iter().any(|x| x.2 == *t)).collect();
            assert!(voices.len() <= 1, "at most each chosen voice's own group: {voices:?}");
            assert!(!tracks_sent(&h, &out, s).contains(&tracks[(s - 1) as usize].2), "nobody hears themselves");
        }
        let heard: HashSet<SessionId> = h.room.voices.chosen().iter().copied().collect();
        assert_eq!(heard.len(), 2);
        // Muting frees a place at once.
        let muted = *h.room.voices.chosen().first().expect("chosen");
        h.room.control(
            h.now,
            muted,
            ClientMessage::State { state: ParticipantState { muted: true, ..Default::default() } },
        );
        h.outputs();
        assert!(!h.room.voices.chosen().contains(&muted));
    }

    #[test]
    fn a_publisher_is_told_to_stop_a_layer_nobody_watches_and_to_start_it_again() {
        let mut h = Harness::new(Limits::default());
        h.join(1);
        h.join(2);
        let (small, large, _) = publish_all(&mut h, 1);
        view(&mut h, 2, &[(1, 0)], 0);
        h.outputs();
        let layers = |out: &[Output]| {
            all(out, |o| match o {
                Output::Control { session: 1, message: ServerMessage::Layers { active } } => Some(active.clone()),
                _ => None,
            })
        };
        h.advance(1_000);
        assert!(layers(&h.outputs()).is_empty(), "not before a grace period");
        h.advance(1_100);
        assert_eq!(layers(&h.outputs()), vec![vec![1]], "only the small layer is watched");
        // The large layer's group is no longer kept (it went stale) nor forwarded.
        assert!(h.room.tracks[&large].paused && h.room.tracks[&large].latest.is_none());
        assert!(!h.room.tracks[&small].paused);
        // Watched again: at once (the small one is still going, for its grace period).
        view(&mut h, 2, &[(1, 1)], 0);
        assert_eq!(layers(&h.outputs()), vec![vec![1, 2]]);
        // Recording keeps the largest layer going whoever watches it.
        view(&mut h, 2, &[], 0);
        h.room.set_recording(h.now, true);
        h.advance(2_100);
        assert_eq!(layers(&h.outputs()), vec![vec![2]]);
        assert!(!h.room.tracks[&large].paused, "the recorder keeps the large layer");
        assert!(h.room.tracks[&small].paused);
        // A screen shared after that is watched from the start: the publisher is told so.
        h.room.control(
            h.now,
            1,
            ClientMessage::Announce {
                track: TrackAnnounce { id: 4, kind: TrackKind::Screen, layer: 0, config: serde_json::json!({}) },
            },
        );
        assert_eq!(layers(&h.outputs()), vec![vec![2, 4]]);
    }

    #[test]
    fn roster_news_is_sent_together_at_most_ten_times_a_second_and_a_big_welcome_comes_in_parts() {
        let mut h = Harness::new(Limits { max_sessions: 200, ..Limits::default() });
        h.join(1);
        let raw = |h: &mut Harness| std::iter::from_fn(|| h.room.poll_output()).collect::<Vec<_>>();
        raw(&mut h);
        // Ninety people arrive within 100 ms of each other.
        for s in 2..=91 {
            h.now += Duration::from_millis(1);
            h.room.join(h.now, s, &Harness::joining(s)).unwrap();
        }
        // News, that is: not the welcomes (each joiner's own write).
        let news = |o: &Output| match o {
            Output::Broadcast { messages, .. } if !matches!(messages[0], ServerMessage::Welcome { .. }) => {
                Some(messages.len())
            }
            _ => None,
        };
        let out = raw(&mut h);
        let broadcasts: Vec<usize> = all(&out, news);
        assert!(broadcasts.len() <= 2, "one news message for a burst, not one per joiner: {broadcasts:?}");
        h.advance(100);
        let out = raw(&mut h);
        let flushed: usize = all(&out, news).iter().sum::<usize>() + broadcasts.iter().sum::<usize>();
        assert_eq!(flushed, 90, "every joiner announced once");
        // The 92nd gets a welcome of 50 people and the rest one message each, all small.
        h.room.join(h.now, 92, &Harness::joining(92)).unwrap();
        let out = raw(&mut h);
        let writes: Vec<&Vec<ServerMessage>> = out
            .iter()
            .filter_map(|o| match o {
                Output::Broadcast { to, messages } if to == &[92] => Some(messages),
                _ => None,
            })
            .collect();
        assert_eq!(writes.len(), 1, "all the joiner must know in one write");
        let to_92: Vec<&ServerMessage> = writes[0].iter().collect();
        let ServerMessage::Welcome { participants, total, quiet, .. } = to_92[0] else { panic!("welcome first") };
        assert_eq!((participants.len(), *total, *quiet), (50, 92, true));
        assert_eq!(participants[0].id, 92, "the joiner first");
        assert_eq!(to_92.iter().filter(|m| matches!(m, ServerMessage::Joined { .. })).count(), 42);
        for message in to_92 {
            assert!(crate::media::wire::encode_control(message).len() < 16 * 1024);
        }
    }

    #[test]
    fn hosts_mute_lower_hands_remove_and_let_people_in_and_nobody_else_can() {
        let mut h = Harness::new(Limits::default());
        let host = Joining {
            host: true,
            settings: CallSettings { ask_to_join: true, quiet_above: 10 },
            ..Harness::joining(1)
        };
        h.room.join(h.now, 1, &host).unwrap();
        // 2 and 3 wait in the lobby; the host is told.
        h.join(2);
        h.join(3);
        let out = h.outputs();
        assert!(out.iter().any(|o| matches!(o, Output::Control { session: 2, message: ServerMessage::Waiting {} })));
        let lobby = all(&out, |o| match o {
            Output::Control { session: 1, message: ServerMessage::Lobby { waiting } } => Some(waiting.len()),
            _ => None,
        });
        assert_eq!(lobby.last(), Some(&2));
        assert_eq!(h.room.participant_count(), 1);
        // Someone waiting may not act, nor see anyone.
        h.room.control(h.now, 2, ClientMessage::Moderate { action: Moderation::Admit, participant: Some(3) });
        assert!(
            h.outputs().iter().all(|o| !matches!(o, Output::Control { message: ServerMessage::Welcome { .. }, .. }))
        );
        // The host lets 2 in and turns 3 away.
        h.room.control(h.now, 1, ClientMessage::Moderate { action: Moderation::Admit, participant: Some(2) });
        let out = h.outputs();
        assert!(
            out.iter().any(|o| matches!(o, Output::Control { session: 2, message: ServerMessage::Welcome { .. } }))
        );
        assert!(out.contains(&Output::Record(Record::Admitted { user_id: 2, by: 1 })));
        h.room.control(h.now, 1, ClientMessage::Moderate { action: Moderation::Deny, participant: Some(3) });
        let out = h.outputs();
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Close { session: 3, code, was_in: false, .. } if *code == close::DENIED))
        );
        // A participant raises a hand; the host lowers it; 2 is told who did.
        h.room.control(h.now, 2, ClientMessage::State { state: ParticipantState { hand: true, ..Default::default() } });
        let out = h.outputs();
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Control { session: 1, message: ServerMessage::State { participant: 2, raised: Some(1), .. } }
        )));
        h.room.control(h.now, 1, ClientMessage::Moderate { action: Moderation::LowerHand, participant: Some(2) });
        let out = h.outputs();
        assert!(out.iter().any(|o| matches!(o, Output::Control { session: 2, message: ServerMessage::Moderated { action: Moderation::LowerHand, by } } if by == "user 1")));
        assert!(out.iter().any(|o| matches!(o, Output::Control { session: 1, message: ServerMessage::State { participant: 2, state, raised: None } } if !state.hand)));
        // "Everyone, please mute": everyone but hosts.
        h.room.control(
            h.now,
            1,
            ClientMessage::Settings { settings: CallSettings { ask_to_join: false, quiet_above: 10 } },
        );
        h.join(4);
        h.outputs();
        h.room.control(h.now, 1, ClientMessage::Moderate { action: Moderation::Mute, participant: None });
        let told: Vec<SessionId> = all(&h.outputs(), |o| match o {
            Output::Control { session, message: ServerMessage::Moderated { action: Moderation::Mute, .. } } => {
                Some(*session)
            }
            _ => None,
        });
        assert_eq!(told, vec![2, 4]);
        // A participant cannot do what hosts do.
        h.room.control(h.now, 2, ClientMessage::Moderate { action: Moderation::Remove, participant: Some(4) });
        assert!(h.outputs().iter().all(|o| !matches!(o, Output::Close { .. })));
        // The host removes 4: closed, recorded.
        h.room.control(h.now, 1, ClientMessage::Moderate { action: Moderation::Remove, participant: Some(4) });
        let out = h.outputs();
        assert!(out.iter().any(|o| matches!(o, Output::Close { session: 4, code, reason, was_in: true } if *code == close::REMOVED && reason.contains("user 1"))));
        assert!(out.contains(&Output::Record(Record::Removed { user_id: 4, by: 1 })));
        assert_eq!(h.room.participant_count(), 2);
    }
}
