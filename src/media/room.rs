//! The relay's heart, without sockets or clocks (sans-IO, in the manner of quinn-proto):
//! one meeting's participants, tracks, cached groups and subscriptions. The driver feeds
//! it what happened (`join`, `control`, `group_start`, `frame`, `group_end`, `backlog`,
//! `handle_timeout`, each with the time) and carries out what it asks for
//! (`poll_output`): open a group stream to a subscriber, write a frame to it, finish or
//! abandon it, send a control message, close a session.
//!
//! Decisions made here: who receives what; the latest group of every track is kept so a
//! late joiner starts at a keyframe at once; audio before screen before camera and newer
//! groups before older ones (stream priorities); a group a subscriber cannot receive in
//! time is abandoned instead of letting delay build up; every count and size a peer
//! controls is bounded.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::close;
use super::wire::{
    ClientMessage, FrameInfo, GroupHeader, ParticipantInfo, ParticipantState, Quality, ServerMessage, TrackInfo,
    TrackKind, Transport,
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
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sessions: 25,
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
    /// End a session with a close code and a reason.
    Close { session: SessionId, code: u32, reason: String },
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
}

fn refuse(code: u32, reason: impl Into<String>) -> Refusal {
    Refusal { code, reason: reason.into() }
}

struct Participant {
    user_id: i64,
    name: String,
    transport: Transport,
    state: ParticipantState,
    /// The publisher's track ids mapped to the relay's.
    tracks: HashMap<u64, u64>,
    subscriptions: HashSet<u64>,
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
        }
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    fn info(&self, session: SessionId) -> Option<ParticipantInfo> {
        self.participants.get(&session).map(|p| ParticipantInfo {
            id: session,
            user_id: p.user_id,
            name: p.name.clone(),
            state: p.state,
            transport: p.transport,
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

    fn broadcast(&mut self, except: Option<SessionId>, message: ServerMessage) {
        let mut to: Vec<SessionId> = self.participants.keys().copied().filter(|s| Some(*s) != except).collect();
        to.sort_unstable();
        for session in to {
            self.outputs.push_back(Output::Control { session, message: message.clone() });
        }
    }

    /// A session joins; it is told who is here and which tracks exist, the others are
    /// told of it.
    pub fn join(&mut self, now: Instant, session: SessionId, who: &Joining) -> Result<(), Refusal> {
        if self.participants.len() >= self.limits.max_sessions {
            return Err(refuse(
                close::ROOM_FULL,
                format!("this meeting is full ({} people)", self.limits.max_sessions),
            ));
        }
        self.participants.insert(
            session,
            Participant {
                user_id: who.user_id,
                name: who.name.clone(),
                transport: who.transport,
                state: ParticipantState::default(),
                tracks: HashMap::new(),
                subscriptions: HashSet::new(),
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
        let mut ids: Vec<SessionId> = self.participants.keys().copied().collect();
        ids.sort_unstable();
        let participants = ids.iter().filter_map(|s| self.info(*s)).collect();
        let mut track_ids: Vec<u64> = self.tracks.keys().copied().collect();
        track_ids.sort_unstable();
        let tracks = track_ids.iter().filter_map(|t| self.track_info(*t)).collect();
        self.outputs.push_back(Output::Control {
            session,
            message: ServerMessage::Welcome { you: session, participants, tracks },
        });
        if self.recording {
            self.outputs.push_back(Output::Control { session, message: ServerMessage::Recording { on: true } });
        }
        if let Some(participant) = self.info(session) {
            self.broadcast(Some(session), ServerMessage::Joined { participant });
        }
        let known: Vec<ServerMessage> = ids
            .iter()
            .filter_map(|s| self.participants.get(s).and_then(|p| p.quality).map(|q| (*s, q)))
            .map(|(participant, (level, rtt_ms))| ServerMessage::Quality { participant, level, rtt_ms })
            .collect();
        for message in known {
            self.outputs.push_back(Output::Control { session, message });
        }
        Ok(())
    }

    /// A session left (or was closed): its tracks end, its streams are dropped.
    pub fn leave(&mut self, session: SessionId) {
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
        if self.speaker == Some(session) {
            self.speaker = None;
            self.broadcast(None, ServerMessage::Speaker { participant: None });
        }
        self.broadcast(None, ServerMessage::Left { participant: session });
    }

    fn end_track(&mut self, id: u64) {
        let Some(track) = self.tracks.remove(&id) else { return };
        for send in self.sends_by_track.get(&id).cloned().unwrap_or_default() {
            self.abandon(send, Cause::Elsewhere);
        }
        for subscriber in track.subscribers {
            if let Some(p) = self.participants.get_mut(&subscriber) {
                p.subscriptions.remove(&id);
            }
        }
        self.broadcast(None, ServerMessage::TrackEnded { track: id });
    }

    fn close(&mut self, session: SessionId, refusal: Refusal) {
        self.outputs.push_back(Output::Close { session, code: refusal.code, reason: refusal.reason });
        self.leave(session);
    }

    /// A control message from a session. A refusal closes that session (and only it).
    pub fn control(&mut self, now: Instant, session: SessionId, message: ClientMessage) {
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
                    },
                );
                if let Some(info) = self.track_info(id) {
                    self.broadcast(None, ServerMessage::Track { track: info });
                }
            }
            ClientMessage::Unannounce { id } => {
                let global = participant.tracks.remove(&id).ok_or_else(|| refuse(close::PROTOCOL, "unknown track"))?;
                self.end_track(global);
            }
            ClientMessage::Subscribe { track } => {
                let Some(t) = self.tracks.get_mut(&track) else {
                    // It may just have ended: not an error.
                    return Ok(());
                };
                if t.subscribers.insert(session) {
                    participant.subscriptions.insert(track);
                    self.send_cached(now, session, track);
                }
            }
            ClientMessage::Unsubscribe { track } => {
                participant.subscriptions.remove(&track);
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.subscribers.remove(&session);
                }
                let open: Vec<SendId> = self
                    .groups
                    .iter()
                    .filter(|(_, g)| g.session == session && g.track == track)
                    .map(|(s, _)| *s)
                    .collect();
                for send in open {
                    self.abandon(send, Cause::Elsewhere);
                }
            }
            ClientMessage::State { state } => {
                participant.state = state;
                self.broadcast(None, ServerMessage::State { participant: session, state });
            }
            ClientMessage::Ping { nonce } => {
                self.outputs.push_back(Output::Control { session, message: ServerMessage::Pong { nonce } });
            }
            ClientMessage::Keyframe { track } => self.ask_keyframe(now, session, track),
        }
        Ok(())
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
        if kind == TrackKind::Audio {
            self.hear(now, session, info.level);
        }
        for send in self.sends_of(track, sequence) {
            self.outputs.push_back(Output::Write { send, frame: frame.clone() });
        }
    }

    /// A publisher's group ended (its stream finished cleanly).
    pub fn group_end(&mut self, session: SessionId, local_track: u64, sequence: u64) {
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
            self.broadcast(None, message);
        }
    }

    fn hear(&mut self, now: Instant, session: SessionId, level: u8) {
        if let Some(p) = self.participants.get_mut(&session)
            && !p.state.muted
            && p.loudest_recent.is_none_or(|(l, at)| level <= l || now.saturating_duration_since(at) > SPEAKER_WINDOW)
        {
            p.loudest_recent = Some((level, now));
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
        if speaker.is_some() && speaker != self.speaker {
            self.speaker = speaker;
            self.broadcast(None, ServerMessage::Speaker { participant: speaker });
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
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
        self.broadcast(None, ServerMessage::Recording { on });
    }

    /// Time passed: deadlines may have been reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.pick_speaker(now);
        if self.next_quality.is_some_and(|at| now >= at) {
            self.update_quality(now);
            self.next_quality = (!self.participants.is_empty()).then_some(now + QUALITY_EVERY);
        }
    }

    /// When the room next needs `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.timers.first().map(|(at, _)| *at);
        match (deadline, self.next_quality) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
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

/// How loud counts as speaking (RFC 6464 level: -dBov; 50 is fairly quiet speech).
const SPEAKING_LEVEL: u8 = 50;
/// How long a loud moment keeps someone the active speaker.
const SPEAKER_WINDOW: Duration = Duration::from_millis(1500);

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

        fn outputs(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.room.poll_output()).collect()
        }

        fn join(&mut self, session: SessionId) {
            let who =
                Joining { user_id: session as i64, name: format!("user {session}"), transport: Transport::default() };
            self.room.join(self.now, session, &who).unwrap();
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
        h.room.group_end(1, 7, 0);
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
        h.room.group_end(1, 1, 0);
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
        h.room.group_end(1, 1, 0);
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
        h.room.leave(2);
        assert!(h.room.timers.is_empty() && h.room.groups.is_empty());
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
        let late = Joining { user_id: 3, name: "late".into(), transport: Transport::WebSocket };
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
        assert!(out.iter().any(|o| matches!(o, Output::Control { session: 2, message: ServerMessage::State { participant: 1, state } } if state.muted)));
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
}
