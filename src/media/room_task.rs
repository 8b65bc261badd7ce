//! The task of one meeting: it owns the sans-IO [`Room`], feeds it what the sessions and
//! writers report, and carries out what it decides (group stream orders to the
//! subscribers' writers, control messages, closes). It also drives the meeting's
//! recorder and records attendance. Nothing here knows which transport a session uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::close;
use super::link::Closer;
use super::relay::Relay;
use super::room::{Cause, Joining, Output, Record, Refusal, Room, SendId, SessionId};
use super::session::Credit;
use super::wire::{ClientMessage, FrameInfo, ServerMessage, TrackKind, WireError, encode_control, frame_payload};
use super::writer::{WriterOrder, WriterReport};
use crate::bus::{Bus, Changed, Event};
use crate::clock::now_ms;
use crate::recording::{RecordedFrame, Recorder, TrackKind as RecordedKind};
use crate::store::Store;

/// Stream reset code for a group the relay gave up because the subscriber could not
/// receive it in time.
const ABANDONED_SLOW_LINK: u32 = 0x40;
/// Stream reset code for a group given up for another reason (late from its publisher,
/// track ended, unsubscribed): the subscriber's link is not to blame.
const ABANDONED_ELSEWHERE: u32 = 0x41;

fn reset_code(cause: Cause) -> u32 {
    match cause {
        Cause::SlowLink => ABANDONED_SLOW_LINK,
        Cause::Elsewhere => ABANDONED_ELSEWHERE,
    }
}

/// What a room task hears.
pub(super) enum Input {
    Join {
        session: SessionId,
        who: Joining,
        handle: Box<SessionHandle>,
        /// Where the session's writer sends its reports, once admitted.
        admitted: oneshot::Sender<Result<mpsc::UnboundedSender<WriterReport>, Refusal>>,
    },
    Leave {
        session: SessionId,
    },
    Control {
        session: SessionId,
        message: ClientMessage,
        _credit: Credit,
    },
    GroupStart {
        session: SessionId,
        track: u64,
        sequence: u64,
        _credit: Credit,
    },
    Frame {
        session: SessionId,
        track: u64,
        sequence: u64,
        frame: Bytes,
        info: FrameInfo,
        _credit: Credit,
    },
    GroupEnd {
        session: SessionId,
        track: u64,
        sequence: u64,
        _credit: Credit,
    },
    Malformed {
        session: SessionId,
        error: WireError,
    },
    /// Everyone goes, with `code` and `reason`: the meeting ended, or this node is
    /// shutting down (the clients then reconnect, to whichever node hosts it next).
    End {
        code: u32,
        reason: &'static str,
    },
    StartRecording {
        dir: PathBuf,
        reply: oneshot::Sender<std::io::Result<()>>,
    },
    StopRecording {
        reply: oneshot::Sender<Option<Recorder>>,
    },
    /// The figures of everyone connected, for the ops dashboard.
    Figures {
        reply: oneshot::Sender<Vec<Figures>>,
    },
}

/// One connection in a call as the ops dashboard shows it: counters since it joined
/// (the dashboard turns them into rates) and its latest round trip.
#[derive(Debug, Clone)]
pub struct Figures {
    pub session: SessionId,
    pub name: String,
    pub transport: crate::media::wire::Transport,
    /// The browser the ticket was asked from ("Firefox 153"), if known.
    pub browser: Option<String>,
    pub joined: Instant,
    /// Media received from it, and sent to it, in bytes.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Groups given up on their way to it because its link could not take them.
    pub groups_dropped: u64,
    /// Its smoothed round trip, as its transport last said.
    pub rtt: std::time::Duration,
}

/// What the room keeps of a session: how to reach it and how to end it.
pub(super) struct SessionHandle {
    pub closer: Box<dyn Closer>,
    pub user_id: i64,
    /// Encoded control messages, written in order by the session's control task
    /// (bounded: see [`super::session::CONTROL_QUEUE`]).
    pub control: mpsc::Sender<Bytes>,
    /// The session's writer task (bounded: see [`super::session::WRITER_QUEUE`]).
    pub writer: mpsc::Sender<WriterOrder>,
    pub figures: Figures,
}

pub(super) async fn run_room(relay: Relay, meeting_id: i64, team_id: i64, mut rx: mpsc::UnboundedReceiver<Input>) {
    let _hosted = crate::metrics::Raised::new(&crate::metrics::metrics().meetings_hosted);
    let counters = &crate::metrics::metrics().relay;
    let mut room = Room::new(relay.limits().clone());
    let mut sessions: HashMap<SessionId, SessionHandle> = HashMap::new();
    // Which session each open group stream belongs to.
    let mut owners: HashMap<SendId, SessionId> = HashMap::new();
    // Unbounded, yet no longer than the writers' bounded order queues: a writer reports
    // only on carrying out an order, or on a stream it holds being delivered.
    let (reports_tx, mut reports) = mpsc::unbounded_channel::<WriterReport>();
    let mut recorder: Option<Recorder> = None;
    // One change per session joining or leaving, and what hosts decided.
    let (attendance, attendance_rx) = mpsc::unbounded_channel();
    tokio::spawn(record_attendance(relay.store().clone(), relay.bus().clone(), meeting_id, team_id, attendance_rx));
    loop {
        let timeout = room.poll_timeout();
        let input = tokio::select! {
            input = rx.recv() => input,
            Some(report) = reports.recv() => {
                if let Some(&owner) = owners.get(&report.send) {
                    room.set_rtt(owner, report.rtt, report.smoothed_rtt);
                    if let Some(handle) = sessions.get_mut(&owner) {
                        handle.figures.rtt = report.smoothed_rtt;
                    }
                }
                if report.done {
                    // Once per group and subscriber: the subscriber's round trip then.
                    counters.subscriber_rtt.observe(report.smoothed_rtt.as_secs_f64());
                    owners.remove(&report.send);
                }
                room.backlog(Instant::now(), report.send, report.queued);
                dispatch(&mut room, &mut sessions, &mut owners, &attendance);
                continue;
            }
            () = sleep_until(timeout) => {
                room.handle_timeout(Instant::now());
                dispatch(&mut room, &mut sessions, &mut owners, &attendance);
                continue;
            }
        };
        let now = Instant::now();
        match input {
            Some(Input::Join { session, who, handle, admitted }) => {
                let result = room.join(now, session, &who);
                if result.is_ok() {
                    sessions.insert(session, *handle);
                    // Someone waiting in the lobby is not in the meeting yet.
                    if room.is_participant(session) {
                        let _ = attendance.send(Attendance::Present(true, who.user_id));
                    }
                }
                let _ = admitted.send(result.map(|()| reports_tx.clone()));
            }
            Some(Input::Leave { session }) => {
                let present = room.is_participant(session);
                room.leave(now, session);
                owners.retain(|_, s| *s != session);
                if let Some(handle) = sessions.remove(&session)
                    && present
                    && !sessions.values().any(|h| h.user_id == handle.user_id)
                {
                    let _ = attendance.send(Attendance::Present(false, handle.user_id));
                }
            }
            Some(Input::Control { session, message, _credit: _ }) => room.control(now, session, message),
            Some(Input::GroupStart { session, track, sequence, _credit: _ }) => {
                room.group_start(now, session, track, sequence)
            }
            Some(Input::Frame { session, track, sequence, frame, info, _credit: _ }) => {
                counters.frames_in.inc();
                counters.bytes_in.inc_by(frame.len() as u64);
                if let Some(handle) = sessions.get_mut(&session) {
                    handle.figures.bytes_in += frame.len() as u64;
                }
                if let Some(recorder) = &recorder {
                    record_frame(recorder, &room, session, track, &frame);
                }
                room.frame(now, session, track, sequence, frame, &info)
            }
            Some(Input::StartRecording { dir, reply }) => {
                let started = match recorder {
                    Some(_) => Ok(()),
                    None => {
                        let relay = relay.clone();
                        let on_failure = Box::new(move |reason| relay.recording_failed(meeting_id, reason));
                        Recorder::start(dir, on_failure).map(|r| recorder = Some(r))
                    }
                };
                if started.is_ok() {
                    room.set_recording(now, true);
                }
                let _ = reply.send(started);
            }
            Some(Input::StopRecording { reply }) => {
                if recorder.is_some() {
                    room.set_recording(now, false);
                }
                let _ = reply.send(recorder.take());
            }
            Some(Input::GroupEnd { session, track, sequence, _credit: _ }) => {
                room.group_end(now, session, track, sequence)
            }
            Some(Input::Figures { reply }) => {
                let mut figures: Vec<Figures> = sessions.values().map(|h| h.figures.clone()).collect();
                // In the order they joined.
                figures.sort_by_key(|f| f.session);
                let _ = reply.send(figures);
            }
            Some(Input::Malformed { session, error }) => {
                tracing::info!(session, %error, "closing a media session that sent malformed data");
                let present = room.is_participant(session);
                room.leave(now, session);
                close_session(
                    &mut sessions,
                    &mut owners,
                    &attendance,
                    session,
                    error.code(),
                    &error.to_string(),
                    present,
                );
            }
            Some(Input::End { code, reason }) => {
                if let Some(recorder) = recorder.take() {
                    // The meeting ended while recording: finish the files off this task.
                    tokio::task::spawn_blocking(move || recorder.stop());
                }
                for (session, handle) in sessions.drain() {
                    close_link(&handle, code, reason);
                    if room.is_participant(session) {
                        let _ = attendance.send(Attendance::Present(false, handle.user_id));
                    }
                }
                // Gone from the map at once (else its claim is renewed for ever), and
                // whoever was on the way in is told, not left waiting.
                relay.forget_room(meeting_id);
                rx.close();
                while let Ok(input) = rx.try_recv() {
                    if let Input::Join { admitted, .. } = input {
                        let _ = admitted.send(Err(Refusal { code, reason: reason.into() }));
                    }
                }
                break;
            }
            None => break,
        }
        dispatch(&mut room, &mut sessions, &mut owners, &attendance);
        if room.is_empty() && relay.forget_room_if_idle(meeting_id, &rx) {
            break;
        }
    }
    if let Some(recorder) = recorder.take() {
        // Everyone left while recording: the files are finished (stop looks for them).
        tokio::task::spawn_blocking(move || recorder.stop());
    }
}

/// Hands a publisher's frame to the recorder: audio, the largest camera layer and screen shares.
fn record_frame(recorder: &Recorder, room: &Room, session: SessionId, track: u64, frame: &Bytes) {
    let Some(meta) = room.track_meta(session, track) else { return };
    let (kind, screen) = match meta.kind {
        TrackKind::Audio => (RecordedKind::Audio, false),
        TrackKind::Camera if meta.layer == meta.best_layer => (RecordedKind::Video, false),
        TrackKind::Screen => (RecordedKind::Video, true),
        _ => return,
    };
    let Some((payload, info)) = frame_payload(frame) else { return };
    let size = |config: &serde_json::Value| {
        let get = |k: &str| config.get(k).and_then(serde_json::Value::as_u64).and_then(|v| u32::try_from(v).ok());
        get("codedWidth").zip(get("codedHeight")).filter(|(w, h)| *w > 0 && *h > 0 && *w <= 4096 && *h <= 4096)
    };
    recorder.frame(RecordedFrame {
        session,
        user_id: meta.user_id,
        kind,
        screen,
        size: size(&meta.config).unwrap_or((640, 360)),
        keyframe: info.keyframe,
        captured_us: info.timestamp_us,
        payload: frame.slice_ref(payload),
    });
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Carries out everything the room asked for: group stream orders go to the subscribers'
/// writer tasks, control messages to their control streams. A session whose writer or
/// control stream has fallen a whole queue behind is closed ([`close::LAGGING`]): it
/// reconnects, and nobody else waits for it.
fn dispatch(
    room: &mut Room,
    sessions: &mut HashMap<SessionId, SessionHandle>,
    owners: &mut HashMap<SendId, SessionId>,
    attendance: &mpsc::UnboundedSender<Attendance>,
) {
    let mut lagging = Vec::new();
    loop {
        while let Some(output) = room.poll_output() {
            let mut order = |session: Option<&SessionId>, order: WriterOrder| {
                let Some((&session, handle)) = session.and_then(|s| sessions.get_key_value(s)) else { return false };
                match handle.writer.try_send(order) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        lagging.push(session);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            };
            match output {
                Output::OpenGroup { session, send, header, priority } => {
                    if order(Some(&session), WriterOrder::Open { send, header, priority }) {
                        owners.insert(send, session);
                    } else {
                        room.backlog(Instant::now(), send, 0);
                    }
                }
                Output::Write { send, frame } => {
                    let bytes = frame.len() as u64;
                    if order(owners.get(&send), WriterOrder::Write { send, frame }) {
                        let counters = &crate::metrics::metrics().relay;
                        counters.frames_out.inc();
                        counters.bytes_out.inc_by(bytes);
                        if let Some(handle) = owners.get(&send).and_then(|s| sessions.get_mut(s)) {
                            handle.figures.bytes_out += bytes;
                        }
                    }
                }
                Output::Finish { send } => {
                    if !order(owners.get(&send), WriterOrder::Finish { send }) {
                        owners.remove(&send);
                        room.backlog(Instant::now(), send, 0);
                    }
                }
                Output::Abandon { send, cause } => {
                    let counters = &crate::metrics::metrics().relay;
                    match cause {
                        Cause::SlowLink => counters.dropped_slow_link.inc(),
                        Cause::Elsewhere => counters.dropped_elsewhere.inc(),
                    };
                    order(owners.get(&send), WriterOrder::Abandon { send, code: reset_code(cause) });
                    if cause == Cause::SlowLink
                        && let Some(handle) = owners.get(&send).and_then(|s| sessions.get_mut(s))
                    {
                        handle.figures.groups_dropped += 1;
                    }
                }
                Output::Control { session, message } => {
                    if let Some(handle) = sessions.get(&session)
                        && let Err(mpsc::error::TrySendError::Full(_)) =
                            handle.control.try_send(encode_control(&message))
                    {
                        lagging.push(session);
                    }
                }
                Output::Broadcast { to, messages } => {
                    // Encoded once, the same bytes for everyone: news costs each
                    // participant a reference, not an encoding.
                    let bytes: Bytes =
                        messages.iter().flat_map(|m| encode_control(m).to_vec()).collect::<Vec<u8>>().into();
                    for session in to {
                        if let Some(handle) = sessions.get(&session)
                            && let Err(mpsc::error::TrySendError::Full(_)) = handle.control.try_send(bytes.clone())
                        {
                            lagging.push(session);
                        }
                    }
                }
                Output::Record(record) => {
                    if let Record::Admitted { user_id, .. } = &record {
                        let _ = attendance.send(Attendance::Present(true, *user_id));
                    }
                    let _ = attendance.send(Attendance::Decided(record));
                }
                Output::Close { session, code, reason, was_in } => {
                    close_session(sessions, owners, attendance, session, code, &reason, was_in);
                }
            }
        }
        if lagging.is_empty() {
            return;
        }
        // Closing them tells the others they left: those messages go out on the next turn.
        for session in lagging.drain(..) {
            if sessions.contains_key(&session) {
                tracing::info!(session, "closing a media session that cannot keep up");
                let present = room.is_participant(session);
                room.leave(Instant::now(), session);
                close_session(sessions, owners, attendance, session, close::LAGGING, LAGGING_REASON, present);
            }
        }
    }
}

const LAGGING_REASON: &str = "the connection fell too far behind; reconnecting";

/// Closes a session the room has done with, and records that its person left if it was
/// their last session in the call (`present`: it was in the call, not in the lobby).
fn close_session(
    sessions: &mut HashMap<SessionId, SessionHandle>,
    owners: &mut HashMap<SendId, SessionId>,
    attendance: &mpsc::UnboundedSender<Attendance>,
    session: SessionId,
    code: u32,
    reason: &str,
    present: bool,
) {
    owners.retain(|_, s| *s != session);
    let Some(handle) = sessions.remove(&session) else { return };
    close_link(&handle, code, reason);
    if present && !sessions.values().any(|h| h.user_id == handle.user_id) {
        let _ = attendance.send(Attendance::Present(false, handle.user_id));
    }
}

/// Ends a session with a code and a reason: said first on the control stream (`closing`),
/// then through its writer, which resets its group streams (queued media would hold the
/// close back) and gives the client a moment to close by itself; at once if the writer is
/// gone or too far behind. Clients sent elsewhere (a node going away) close by themselves
/// too: Chromium's network service was seen crashing, taking the tab's cookies with it,
/// when a draining node closed their connections under them (the rolling-restart test);
/// the draining node waits for its connections to go before closing its endpoint
/// (`Relay::connections_gone`).
fn close_link(handle: &SessionHandle, code: u32, reason: &str) {
    let _ = handle.control.try_send(encode_control(&ServerMessage::Closing { code, reason: reason.to_owned() }));
    let order = WriterOrder::Close { code, reason: reason.to_owned(), reset: ABANDONED_ELSEWHERE };
    if handle.writer.try_send(order).is_err() {
        handle.closer.close(code, reason);
    }
}

/// What a meeting's record keeps: who is in it (joined true or false, user), and what
/// its hosts decided.
enum Attendance {
    Present(bool, i64),
    Decided(Record),
}

async fn record_attendance(
    store: Store,
    bus: Bus,
    meeting_id: i64,
    team_id: i64,
    mut changes: mpsc::UnboundedReceiver<Attendance>,
) {
    while let Some(change) = changes.recv().await {
        let now = now_ms();
        let result = match &change {
            Attendance::Present(true, user_id) => store.join_meeting(meeting_id, *user_id, now).await.map(|_| ()),
            Attendance::Present(false, user_id) => store.leave_meeting(meeting_id, *user_id, now).await,
            Attendance::Decided(Record::Removed { user_id, by }) => {
                store.remove_from_meeting(meeting_id, *user_id, *by, now).await
            }
            Attendance::Decided(Record::Admitted { user_id, by }) => {
                store.admit_to_meeting(meeting_id, *user_id, *by, now).await
            }
            Attendance::Decided(Record::Settings(s)) => {
                store.set_call_settings(meeting_id, s.ask_to_join, s.quiet_above).await
            }
        };
        match result {
            Ok(()) => bus.publish(Event::TeamChanged { team_id, changed: Changed::MEETINGS }),
            Err(e) => tracing::warn!(error = %e, meeting_id, "cannot keep the meeting's record"),
        }
    }
}
