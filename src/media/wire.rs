//! The wire format of Floo's media transport (see `src/media/PROTOCOL.md`): QUIC
//! variable-length integers, length-prefixed JSON control messages, and group streams
//! (a header, then length-prefixed frames). Decoders are incremental (bytes arrive in
//! pieces) and bounded: anything over a limit is an error, never an allocation.

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Why a peer's bytes were refused; each maps to a close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A length or count is over its limit.
    #[error("{what} of {size} bytes is over the limit of {limit}")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    /// The bytes do not follow the format.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

impl WireError {
    /// The WebTransport close code for a session that sent this.
    pub fn code(&self) -> u32 {
        match self {
            WireError::TooLarge { .. } => super::close::TOO_LARGE,
            WireError::Malformed(_) => super::close::PROTOCOL,
        }
    }
}

/// The largest value a QUIC varint holds (2^62 - 1).
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// Appends `v` as a QUIC variable-length integer (RFC 9000 §16).
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    debug_assert!(v <= VARINT_MAX);
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// Reads a varint from the front of `buf`: the value and its length, or None if `buf`
/// ends inside it.
pub fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, len))
}

/// The start of every group stream: which track, which group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHeader {
    pub track: u64,
    pub sequence: u64,
}

impl GroupHeader {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(16);
        put_varint(&mut out, self.track);
        put_varint(&mut out, self.sequence);
        Bytes::from(out)
    }
}

/// What the relay reads of a frame; the rest is forwarded untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameInfo {
    pub keyframe: bool,
    pub timestamp_us: u64,
    /// Audio level as in RFC 6464: 0 is the loudest, 127 silence.
    pub level: u8,
}

/// Frame flags (the first byte of a frame).
pub const FLAG_KEYFRAME: u8 = 0x01;

/// Builds one frame as a publisher sends it (tests and the load generator use this).
pub fn encode_frame(info: &FrameInfo, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 16);
    let mut body = Vec::with_capacity(payload.len() + 12);
    body.push(if info.keyframe { FLAG_KEYFRAME } else { 0 });
    put_varint(&mut body, info.timestamp_us.min(VARINT_MAX));
    body.push(info.level.min(127));
    body.extend_from_slice(payload);
    put_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// Reads the relay-visible part of a frame's bytes (without its length prefix).
pub fn frame_info(frame: &[u8]) -> Result<FrameInfo, WireError> {
    let flags = *frame.first().ok_or(WireError::Malformed("frame"))?;
    if flags & !FLAG_KEYFRAME != 0 {
        return Err(WireError::Malformed("frame flags"));
    }
    let (timestamp_us, n) = get_varint(&frame[1..]).ok_or(WireError::Malformed("frame timestamp"))?;
    let level = *frame.get(1 + n).ok_or(WireError::Malformed("frame level"))?;
    if level > 127 {
        return Err(WireError::Malformed("frame level"));
    }
    Ok(FrameInfo { keyframe: flags & FLAG_KEYFRAME != 0, timestamp_us, level })
}

/// The codec payload of a frame as forwarded (length prefix included), and its info.
pub fn frame_payload(frame: &[u8]) -> Option<(&[u8], FrameInfo)> {
    let (len, n) = get_varint(frame)?;
    let body = frame.get(n..n + usize::try_from(len).ok()?)?;
    let info = frame_info(body).ok()?;
    let (_, ts_len) = get_varint(&body[1..])?;
    Some((&body[1 + ts_len + 1..], info))
}

/// An incremental reader of a group stream: the header, then whole frames, each
/// returned with its length prefix so it can be forwarded byte for byte.
pub struct GroupReader {
    buffer: BytesMut,
    header: Option<GroupHeader>,
    max_frame: usize,
}

impl GroupReader {
    pub fn new(max_frame: usize) -> GroupReader {
        GroupReader { buffer: BytesMut::new(), header: None, max_frame }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The header, once it has arrived.
    pub fn header(&mut self) -> Result<Option<GroupHeader>, WireError> {
        if self.header.is_none() {
            let Some((track, a)) = get_varint(&self.buffer) else { return Ok(None) };
            let Some((sequence, b)) = get_varint(&self.buffer[a..]) else {
                return Ok(None);
            };
            self.buffer.advance(a + b);
            self.header = Some(GroupHeader { track, sequence });
        }
        Ok(self.header)
    }

    /// The next whole frame (length prefix included) and what it says, if one is here.
    pub fn next_frame(&mut self) -> Result<Option<(Bytes, FrameInfo)>, WireError> {
        if self.header()?.is_none() {
            return Ok(None);
        }
        let Some((len, n)) = get_varint(&self.buffer) else { return Ok(None) };
        if len > self.max_frame as u64 {
            return Err(WireError::TooLarge { what: "frame", size: len, limit: self.max_frame as u64 });
        }
        let total = n + len as usize;
        if self.buffer.len() < total {
            self.buffer.reserve(total - self.buffer.len());
            return Ok(None);
        }
        let frame = self.buffer.split_to(total).freeze();
        let info = frame_info(&frame[n..])?;
        Ok(Some((frame, info)))
    }

    /// Bytes received but not yet a whole frame (a stream must not end with any).
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// The kinds of media a track carries, in the order the relay sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Screen,
    Camera,
}

/// A track as announced by its publisher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackAnnounce {
    /// The publisher's own id for the track (used in its group headers).
    pub id: u64,
    pub kind: TrackKind,
    /// Simulcast layer: 0 is the smallest.
    #[serde(default)]
    pub layer: u8,
    /// The WebCodecs decoder configuration (codec string, size, description ...),
    /// passed to subscribers as is.
    pub config: serde_json::Value,
}

fn camera() -> TrackKind {
    TrackKind::Camera
}

/// One tile a client shows: a participant's camera or screen, in a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    pub participant: u64,
    #[serde(default = "camera")]
    pub kind: TrackKind,
    /// The simulcast layer wanted (the nearest published one below, or the smallest).
    #[serde(default)]
    pub layer: u8,
}

/// What a host may do to someone else in a call (or to everyone, for `mute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Moderation {
    /// Ask them to mute (their client mutes and says who asked; nobody is unmuted by
    /// anyone but themselves).
    Mute,
    /// Turn their camera off (they can turn it on again).
    CameraOff,
    /// Lower their raised hand.
    LowerHand,
    /// Remove them from the meeting: they cannot come back to it.
    Remove,
    /// Let someone waiting in the lobby in.
    Admit,
    /// Turn someone waiting in the lobby away.
    Deny,
}

/// How a meeting admits people, as its hosts set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSettings {
    /// Newcomers wait in a lobby until a host lets them in.
    #[serde(default)]
    pub ask_to_join: bool,
    /// Above this many people, newcomers join muted with their camera off.
    #[serde(default = "default_quiet_above")]
    pub quiet_above: u32,
}

fn default_quiet_above() -> u32 {
    CallSettings::default().quiet_above
}

impl Default for CallSettings {
    fn default() -> CallSettings {
        CallSettings { ask_to_join: false, quiet_above: 10 }
    }
}

/// Someone waiting in a meeting's lobby, as its hosts see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub id: u64,
    pub user_id: i64,
    pub name: String,
}

/// A participant's visible state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantState {
    #[serde(default)]
    pub muted: bool,
    #[serde(default)]
    pub camera_off: bool,
    #[serde(default)]
    pub screen: bool,
    #[serde(default)]
    pub hand: bool,
}

/// Control messages from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Announce {
        track: TrackAnnounce,
    },
    Unannounce {
        id: u64,
    },
    Subscribe {
        track: u64,
    },
    Unsubscribe {
        track: u64,
    },
    State {
        state: ParticipantState,
    },
    Ping {
        nonce: u64,
    },
    /// The receiver lost part of a group of this (relay) track, or its decoder failed:
    /// the track's publisher is asked for a new group starting with a keyframe.
    Keyframe {
        track: u64,
    },
    /// What the client shows, replacing what it said before: its tiles (each a
    /// participant's camera or screen in a layer), and how many of the latest speakers
    /// it also wants, in `speaker_layer`, beside them. A client that says this also hears
    /// the voices the relay chooses (the loudest few); video it does not watch is paused.
    View {
        #[serde(default)]
        tiles: Vec<Watch>,
        #[serde(default)]
        speakers: u8,
        #[serde(default)]
        speaker_layer: u8,
    },
    /// A host acts on a participant (`participant` None with `mute`: everyone).
    Moderate {
        action: Moderation,
        #[serde(default)]
        participant: Option<u64>,
    },
    /// A host changes how the meeting admits people.
    Settings {
        settings: CallSettings,
    },
}

/// How well a participant's connection carries the call, as the relay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Good,
    Fair,
    Poor,
}

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: u64,
    pub user_id: i64,
    pub name: String,
    pub state: ParticipantState,
    /// How this participant reaches the relay (shown in the roster).
    #[serde(default)]
    pub transport: Transport,
    /// Whether they run the meeting (its creator, or an admin of the team).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
    /// When their hand went up: raised hands are listed in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised: Option<u64>,
}

/// How a participant's session reaches the relay: the same protocol either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebTransport over QUIC (UDP).
    #[default]
    WebTransport,
    /// The same streams multiplexed over a WebSocket (TCP) by QMux, for browsers and
    /// networks without working WebTransport.
    WebSocket,
}

/// A track as subscribers see it (with the relay's id for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub id: u64,
    pub participant: u64,
    pub kind: TrackKind,
    pub layer: u8,
    pub config: serde_json::Value,
}

/// Control messages from the relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The first message. In a large meeting it lists only the first participants and
    /// their tracks; `joined` and `track` messages follow at once with the rest, so that
    /// no message is large. `total`: how many people are in the call, you included.
    Welcome {
        you: u64,
        participants: Vec<ParticipantInfo>,
        tracks: Vec<TrackInfo>,
        #[serde(default)]
        total: usize,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        host: bool,
        /// The meeting is large: join muted and with the camera off.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        quiet: bool,
        #[serde(default)]
        settings: CallSettings,
    },
    Joined {
        participant: ParticipantInfo,
    },
    Left {
        participant: u64,
    },
    Track {
        track: TrackInfo,
    },
    TrackEnded {
        track: u64,
    },
    State {
        participant: u64,
        state: ParticipantState,
        /// When their hand went up (raised hands are listed in this order).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raised: Option<u64>,
    },
    Speaker {
        participant: Option<u64>,
    },
    Pong {
        nonce: u64,
    },
    /// The meeting is being recorded (or not any more).
    Recording {
        on: bool,
    },
    /// A group of this track was given up on its way to you because your link could not
    /// take it in time (a hint to ask for a smaller layer).
    Dropped {
        track: u64,
    },
    /// A subscriber wants a keyframe of your track (your own id for it): start a new
    /// group with one.
    Keyframe {
        track: u64,
    },
    /// How well a participant's connection carries the call (sent when it changes).
    Quality {
        participant: u64,
        level: Quality,
        /// The connection's smoothed round trip to the relay.
        rtt_ms: u32,
    },
    /// To a publisher: which of its video tracks (its own ids) someone is watching now.
    /// The others are not forwarded to anyone: stop encoding them until they are listed
    /// again (then start with a keyframe).
    Layers {
        active: Vec<u64>,
    },
    /// A host acted on you (`by`: their name): mute, turn the camera off, lower the hand.
    Moderated {
        action: Moderation,
        by: String,
    },
    /// To hosts: who is waiting in the lobby (sent whenever it changes).
    Lobby {
        waiting: Vec<Waiter>,
    },
    /// To someone in the lobby: wait until a host lets you in (`welcome` follows then).
    Waiting {},
    /// How the meeting admits people changed (to everyone).
    Settings {
        settings: CallSettings,
    },
    /// The relay is about to close this session with `code` and `reason` (the last
    /// message on the control stream). Sent because a close alone can be lost: a browser
    /// too busy to read the close in time sees only a broken connection.
    Closing {
        code: u32,
        reason: String,
    },
}

/// Encodes a control message: varint length, then JSON.
pub fn encode_control<T: Serialize>(message: &T) -> Bytes {
    let json = serde_json::to_vec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + 4);
    put_varint(&mut out, json.len() as u64);
    out.extend_from_slice(&json);
    Bytes::from(out)
}

/// An incremental reader of the control stream.
pub struct ControlReader {
    buffer: BytesMut,
    max_message: usize,
}

impl ControlReader {
    pub fn new(max_message: usize) -> ControlReader {
        ControlReader { buffer: BytesMut::new(), max_message }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, if one is here.
    pub fn next_message<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, WireError> {
        let Some((len, n)) = get_varint(&self.buffer) else { return Ok(None) };
        if len > self.max_message as u64 {
            return Err(WireError::TooLarge { what: "control message", size: len, limit: self.max_message as u64 });
        }
        let total = n + len as usize;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let message = self.buffer.split_to(total);
        serde_json::from_slice(&message[n..]).map(Some).map_err(|_| WireError::Malformed("control message"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        for v in [0, 63, 64, 16_383, 16_384, (1 << 30) - 1, 1 << 30, VARINT_MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(get_varint(&out), Some((v, out.len())), "{v}");
            assert_eq!(get_varint(&out[..out.len() - 1]), None, "a cut varint waits for more");
        }
    }

    #[test]
    fn a_group_arriving_byte_by_byte_yields_its_frames() {
        let header = GroupHeader { track: 3, sequence: 77 };
        let f1 = encode_frame(&FrameInfo { keyframe: true, timestamp_us: 1_000, level: 12 }, b"first");
        let f2 = encode_frame(&FrameInfo { keyframe: false, timestamp_us: 34_000, level: 127 }, &[9; 300]);
        let stream: Vec<u8> = [header.encode(), f1.clone(), f2.clone()].concat();
        let mut reader = GroupReader::new(1024);
        let mut frames = Vec::new();
        for b in &stream {
            reader.push(&[*b]);
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(reader.header().unwrap(), Some(header));
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0, f1, "frames are forwarded byte for byte");
        assert!(frames[0].1.keyframe && frames[0].1.level == 12);
        assert_eq!(frames[1].0, f2);
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let mut reader = GroupReader::new(100);
        reader.push(&GroupHeader { track: 1, sequence: 1 }.encode());
        let mut big = Vec::new();
        put_varint(&mut big, 101);
        reader.push(&big);
        assert!(matches!(reader.next_frame(), Err(WireError::TooLarge { .. })));

        let mut reader = GroupReader::new(100);
        reader.push(&GroupHeader { track: 1, sequence: 1 }.encode());
        reader.push(&[2, 0x80, 0]); // a 2-byte frame with unknown flags
        assert_eq!(reader.next_frame(), Err(WireError::Malformed("frame flags")));
        assert!(frame_info(&[]).is_err());
        assert!(frame_info(&[1]).is_err());
        assert!(frame_info(&[0, 5, 200]).is_err(), "level above 127");
    }

    #[test]
    fn control_messages_round_trip_and_are_bounded() {
        let message = ClientMessage::State { state: ParticipantState { muted: true, ..Default::default() } };
        let mut reader = ControlReader::new(1024);
        reader.push(&encode_control(&message));
        assert_eq!(reader.next_message::<ClientMessage>().unwrap(), Some(message));
        assert_eq!(reader.next_message::<ClientMessage>().unwrap(), None);

        let mut reader = ControlReader::new(8);
        reader.push(&encode_control(&ClientMessage::Ping { nonce: 1 }));
        assert!(matches!(reader.next_message::<ClientMessage>(), Err(WireError::TooLarge { .. })));

        let mut reader = ControlReader::new(1024);
        reader.push(&[3, b'{', b'x', b'}']);
        assert_eq!(reader.next_message::<ClientMessage>(), Err(WireError::Malformed("control message")));
    }

    /// The vectors `web/call/wire.js` is checked against too (in the browser tests).
    #[test]
    fn the_shared_test_vectors_encode_and_decode_as_written() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/wire-vectors.json")).expect("vectors are JSON");
        let hex = |v: &serde_json::Value| -> Vec<u8> {
            let text = v.as_str().expect("hex string");
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
        };
        for case in vectors["varints"].as_array().expect("varints") {
            let (value, bytes) = (case["value"].as_u64().expect("value"), hex(&case["hex"]));
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "varint {value}");
            assert_eq!(get_varint(&bytes), Some((value, bytes.len())));
        }
        for case in vectors["control"].as_array().expect("control") {
            let (json, bytes) = (case["json"].as_str().expect("json"), hex(&case["hex"]));
            let encoded = match case["direction"].as_str() {
                Some("client") => {
                    let message: ClientMessage = serde_json::from_str(json).expect("a client message");
                    let mut reader = ControlReader::new(1 << 16);
                    reader.push(&bytes);
                    assert_eq!(reader.next_message::<ClientMessage>().expect("decodes"), Some(message.clone()));
                    encode_control(&message)
                }
                _ => {
                    let message: ServerMessage = serde_json::from_str(json).expect("a server message");
                    let mut reader = ControlReader::new(1 << 16);
                    reader.push(&bytes);
                    assert_eq!(reader.next_message::<ServerMessage>().expect("decodes"), Some(message.clone()));
                    encode_control(&message)
                }
            };
            assert_eq!(encoded.to_vec(), bytes, "{json}");
        }
        let frames = vectors["frames"].as_array().expect("frames");
        let infos: Vec<(FrameInfo, Vec<u8>, Vec<u8>)> = frames
            .iter()
            .map(|f| {
                let info = FrameInfo {
                    keyframe: f["keyframe"].as_bool().expect("keyframe"),
                    timestamp_us: f["timestampUs"].as_u64().expect("time"),
                    level: f["level"].as_u64().and_then(|l| u8::try_from(l).ok()).expect("level"),
                };
                (info, hex(&f["payload"]), hex(&f["hex"]))
            })
            .collect();
        for (info, payload, bytes) in &infos {
            assert_eq!(encode_frame(info, payload).to_vec(), *bytes);
            let (decoded_payload, decoded) = frame_payload(bytes).expect("a frame");
            assert_eq!((decoded_payload, &decoded), (payload.as_slice(), info));
        }
        for group in vectors["groups"].as_array().expect("groups") {
            let mut reader = GroupReader::new(1 << 20);
            reader.push(&hex(&group["hex"]));
            let header = reader.header().expect("header").expect("whole header");
            assert_eq!(
                (header.track, header.sequence),
                (group["track"].as_u64().expect("track"), group["sequence"].as_u64().expect("sequence"))
            );
            for index in group["frames"].as_array().expect("frame list") {
                let (frame, info) = reader.next_frame().expect("valid").expect("a whole frame");
                let (want, _, bytes) = &infos[index.as_u64().expect("index") as usize];
                assert_eq!((frame.to_vec(), &info), (bytes.clone(), want));
            }
            assert_eq!(reader.pending(), 0);
        }
        for case in vectors["malformed_frames"].as_array().expect("malformed") {
            assert!(matches!(frame_info(&hex(&case["body"])), Err(WireError::Malformed(_))), "{}", case["why"]);
        }
        let limit = vectors["oversized"]["limit"].as_u64().expect("limit") as usize;
        let mut reader = GroupReader::new(limit);
        reader.push(&hex(&vectors["oversized"]["frame_hex"]));
        assert!(matches!(reader.next_frame(), Err(WireError::TooLarge { .. })));
        let mut reader = ControlReader::new(limit);
        reader.push(&hex(&vectors["oversized"]["control_hex"]));
        assert!(matches!(reader.next_message::<ClientMessage>(), Err(WireError::TooLarge { .. })));
    }
}
