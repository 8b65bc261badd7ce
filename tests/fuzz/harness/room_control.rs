//! The room's handling of whatever its sessions send: a script of joins, leaves, control
//! messages (built from the input, and raw bytes through the control decoder), group
//! starts, frames and ends, timeouts, backlog and round-trip reports. The room never
//! panics, never lets more people in than it allows, never writes on a group stream it
//! has not opened or has finished or given up, and never finishes or gives one up twice.
//!
//! Shared by the libFuzzer target (`fuzz_targets/room_control.rs`, run with cargo-fuzz) and
//! the integration test `fuzz::` (random inputs on stable Rust, in the README's test command).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use floo::media::room::{Joining, Limits, Output, Room};
use floo::media::wire::{
    CallSettings, ClientMessage, ControlReader, FrameInfo, Moderation, ParticipantState, TrackAnnounce, TrackKind,
    Transport, Watch, encode_frame,
};

/// Reads the script: each call takes bytes from the front, zero once it is used up.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }

    fn session(&mut self) -> u64 {
        u64::from(self.byte() % 6) + 1
    }

    fn track(&mut self) -> u64 {
        u64::from(self.byte() % 8)
    }

    fn message(&mut self) -> ClientMessage {
        let kind = [TrackKind::Audio, TrackKind::Camera, TrackKind::Screen][usize::from(self.byte() % 3)];
        match self.byte() % 8 {
            0 => {
                let id = self.track();
                let layer = self.byte() % 4;
                let config = match self.byte() % 3 {
                    0 => serde_json::json!({}),
                    1 => serde_json::json!({ "codec": "vp8", "codedWidth": self.byte(), "codedHeight": self.byte() }),
                    _ => serde_json::json!({ "description": "x".repeat(usize::from(self.byte()) * 80) }),
                };
                ClientMessage::Announce { track: TrackAnnounce { id, kind, layer, config } }
            }
            1 => ClientMessage::Unannounce { id: self.track() },
            // Relay track ids are small numbers handed out in order.
            2 => ClientMessage::Subscribe { track: u64::from(self.byte() % 32) },
            3 => ClientMessage::Unsubscribe { track: u64::from(self.byte() % 32) },
            4 => {
                let b = self.byte();
                let state = ParticipantState {
                    muted: b & 1 != 0,
                    camera_off: b & 2 != 0,
                    screen: b & 4 != 0,
                    hand: b & 8 != 0,
                };
                ClientMessage::State { state }
            }
            5 => ClientMessage::Keyframe { track: u64::from(self.byte() % 32) },
            6 => match self.byte() % 4 {
                0 => {
                    let tiles = (0..self.byte() % 8)
                        .map(|_| Watch { participant: self.session(), kind, layer: self.byte() % 3 })
                        .collect();
                    ClientMessage::View { tiles, speakers: self.byte() % 12, speaker_layer: self.byte() % 3 }
                }
                1 => {
                    let actions = [
                        Moderation::Mute,
                        Moderation::CameraOff,
                        Moderation::LowerHand,
                        Moderation::Remove,
                        Moderation::Admit,
                        Moderation::Deny,
                    ];
                    let action = actions[usize::from(self.byte()) % actions.len()];
                    let participant = (!self.byte().is_multiple_of(4)).then(|| self.session());
                    ClientMessage::Moderate { action, participant }
                }
                _ => {
                    let b = self.byte();
                    ClientMessage::Settings {
                        settings: CallSettings { ask_to_join: b & 1 != 0, quiet_above: u32::from(b >> 1) },
                    }
                }
            },
            _ => ClientMessage::Ping { nonce: u64::from(self.byte()) },
        }
    }
}

pub fn run(data: &[u8]) {
    let limits = Limits { max_sessions: 4, max_frame: 4096, max_group_bytes: 64 * 1024, ..Limits::default() };
    let max_sessions = limits.max_sessions;
    let mut room = Room::new(limits);
    let mut now = Instant::now();
    let mut script = Script(data);
    let mut readers: HashMap<u64, ControlReader> = HashMap::new();
    let mut joined: HashSet<u64> = HashSet::new();
    // Group streams opened and not given up; of those, the ones finished; and given up.
    let mut open: HashSet<u64> = HashSet::new();
    let mut finished: HashSet<u64> = HashSet::new();
    let mut ended: HashSet<u64> = HashSet::new();
    let mut sends: Vec<u64> = Vec::new();
    let mut steps = 0;
    while !script.0.is_empty() && steps < 2_000 {
        steps += 1;
        let session = script.session();
        match script.byte() % 11 {
            0 => {
                let b = script.byte();
                let who = Joining {
                    user_id: session as i64,
                    name: format!("p{session}"),
                    transport: Transport::WebTransport,
                    host: session == 1 || b & 1 != 0,
                    admitted: b & 2 != 0,
                    settings: CallSettings { ask_to_join: b & 4 != 0, quiet_above: u32::from(b >> 3) },
                };
                if room.join(now, session, &who).is_ok() {
                    joined.insert(session);
                }
            }
            1 => {
                room.leave(now, session);
                joined.remove(&session);
            }
            2 => {
                let message = script.message();
                room.control(now, session, message);
            }
            3 => {
                // Raw bytes through the control decoder, as the session reader does: a
                // malformed message ends the session.
                let n = usize::from(script.byte());
                let raw = script.bytes(n).to_vec();
                let reader = readers.entry(session).or_insert_with(|| ControlReader::new(16 * 1024));
                reader.push(&raw);
                loop {
                    match reader.next_message::<ClientMessage>() {
                        Ok(Some(message)) => room.control(now, session, message),
                        Ok(None) => break,
                        Err(_) => {
                            room.leave(now, session);
                            joined.remove(&session);
                            readers.remove(&session);
                            break;
                        }
                    }
                }
            }
            4 => {
                let (track, sequence) = (script.track(), u64::from(script.byte() % 16));
                room.group_start(now, session, track, sequence);
            }
            5 => {
                let (track, sequence) = (script.track(), u64::from(script.byte() % 16));
                let b = script.byte();
                let info = FrameInfo { keyframe: b & 1 != 0, timestamp_us: u64::from(b) * 20_000, level: b };
                let len = usize::from(script.byte()) * 24;
                let frame = encode_frame(&info, &vec![b; len]);
                room.frame(now, session, track, sequence, frame, &info);
            }
            6 => {
                let (track, sequence) = (script.track(), u64::from(script.byte() % 16));
                room.group_end(now, session, track, sequence);
            }
            7 => {
                now += Duration::from_millis(u64::from(script.byte()) * 8);
                room.handle_timeout(now);
            }
            8 => {
                if !sends.is_empty() {
                    let send = sends[usize::from(script.byte()) % sends.len()];
                    let queued = usize::from(script.byte()) * 40_000;
                    room.backlog(now, send, queued);
                }
            }
            9 => {
                let rtt = Duration::from_millis(u64::from(script.byte()) * 4);
                room.set_rtt(session, rtt, rtt * 2);
            }
            _ => room.set_recording(now, script.byte() & 1 != 0),
        }
        if let Some(at) = room.poll_timeout()
            && at <= now
        {
            room.handle_timeout(now);
        }
        while let Some(output) = room.poll_output() {
            match output {
                Output::OpenGroup { send, header, .. } => {
                    assert!(!header.is_empty());
                    assert!(open.insert(send) && !ended.contains(&send), "group stream {send} opened twice");
                    sends.push(send);
                }
                Output::Write { send, frame } => {
                    assert!(
                        open.contains(&send) && !finished.contains(&send),
                        "write on group stream {send}, not open"
                    );
                    assert!(!frame.is_empty());
                }
                // A finished group is still the room's to give up until its subscriber has it.
                Output::Finish { send } => {
                    assert!(open.contains(&send) && finished.insert(send), "group stream {send} finished twice");
                }
                Output::Abandon { send, .. } => {
                    assert!(open.remove(&send), "group stream {send} given up but not open");
                    finished.remove(&send);
                    ended.insert(send);
                }
                Output::Control { .. } | Output::Record(_) => {}
                Output::Broadcast { to, .. } => {
                    assert!(to.len() <= max_sessions, "news to more people than can be in the call");
                }
                Output::Close { session, .. } => {
                    joined.remove(&session);
                }
            }
        }
        assert!(room.participant_count() <= max_sessions);
        // Those who joined: in the call, or waiting in the lobby (bounded too).
        assert!(joined.len() <= max_sessions + Limits::default().max_waiting);
    }
}
