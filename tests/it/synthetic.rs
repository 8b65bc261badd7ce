//! Synthetic participants that send what a browser sends: they replay
//! `tests/media/synthetic-call.bin` (six seconds of Chromium's own WebCodecs output: VP8 in
//! two layers and Opus), looped, in real time, with capture times moved to now, so that the
//! real browsers in a test decode real pictures and sound from them. They read their control
//! stream (as a client must) and otherwise ignore it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floo::media::wire::{
    ClientMessage, ControlReader, FrameInfo, GroupHeader, ParticipantState, ServerMessage, TrackAnnounce, TrackKind,
    encode_control, encode_frame,
};
use tokio::sync::watch;

/// One frame of the recording (its recorded level is not used: a synthetic voice speaks
/// at the level it is given).
pub struct Recorded {
    /// 1: camera 320×180, 2: camera 640×360, 3: microphone.
    pub track: u64,
    pub keyframe: bool,
    /// From the track's first frame.
    pub at: Duration,
    pub payload: Bytes,
}

/// The recording's length: it loops after this.
pub const LOOP: Duration = Duration::from_secs(6);

/// The frames of `tests/media/synthetic-call.bin`, in capture order.
pub fn recording() -> Arc<Vec<Recorded>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/synthetic-call.bin");
    let bytes = std::fs::read(&path).expect("the recorded call (tests/media)");
    assert_eq!(&bytes[..8], b"FLOOREC1", "{}", path.display());
    let mut frames = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let head = &bytes[at..at + 15];
        let len = u32::from_be_bytes(head[11..15].try_into().expect("4 bytes")) as usize;
        frames.push(Recorded {
            track: u64::from(head[0]),
            keyframe: head[1] == 1,
            at: Duration::from_micros(u64::from_be_bytes(head[2..10].try_into().expect("8 bytes"))),
            payload: Bytes::copy_from_slice(&bytes[at + 15..at + 15 + len]),
        });
        at += 15 + len;
    }
    Arc::new(frames)
}

/// What a synthetic participant sends.
#[derive(Clone, Copy, Debug)]
pub struct Sends {
    /// Its camera, in both layers (else its camera is off).
    pub camera: bool,
    /// Its voice at this level, as if speaking all the time (else it is muted).
    pub voice: Option<u8>,
}

fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Joins with `ticket` (a media ticket's JSON) and replays the recording until `stop`.
pub async fn participate(
    ticket: serde_json::Value,
    frames: Arc<Vec<Recorded>>,
    sends: Sends,
    mut stop: watch::Receiver<bool>,
) {
    let (port, hash, token) = crate::media::ticket_parts(&ticket);
    let client = web_transport_quinn::ClientBuilder::new().with_server_certificate_hashes(vec![hash]).expect("client");
    let url = url::Url::parse(&format!("https://127.0.0.1:{port}/meeting?token={token}")).expect("url");
    let session = client.connect(url).await.expect("connect");
    let (mut control, mut incoming) = session.open_bi().await.expect("control stream");
    let state = ParticipantState { muted: sends.voice.is_none(), camera_off: !sends.camera, ..Default::default() };
    let mut first = encode_control(&ClientMessage::State { state }).to_vec();
    // Announced before the welcome: fine for a meeting that does not ask people to wait.
    let mut announce = |id: u64, kind: TrackKind, layer: u8, config: serde_json::Value| {
        first.extend_from_slice(&encode_control(&ClientMessage::Announce {
            track: TrackAnnounce { id, kind, layer, config },
        }));
    };
    if sends.camera {
        announce(1, TrackKind::Camera, 0, serde_json::json!({ "codec": "vp8", "codedWidth": 320, "codedHeight": 180 }));
        announce(2, TrackKind::Camera, 1, serde_json::json!({ "codec": "vp8", "codedWidth": 640, "codedHeight": 360 }));
    }
    if sends.voice.is_some() {
        announce(
            3,
            TrackKind::Audio,
            0,
            serde_json::json!({ "codec": "opus", "sampleRate": 48000, "numberOfChannels": 1 }),
        );
    }
    control.write_all(&first).await.expect("announce");
    // The control stream is read all along (the relay closes a client that lets it pile up).
    let reader = tokio::spawn(async move {
        let mut messages = ControlReader::new(1 << 20);
        while let Ok(Some(chunk)) = web_transport_trait::RecvStream::read_chunk(&mut incoming, 1 << 16).await {
            messages.push(&chunk);
            while let Ok(Some(_)) = messages.next_message::<ServerMessage>() {}
        }
    });
    if !sends.camera && sends.voice.is_none() {
        // Muted with the camera off: present, sending nothing.
        let _ = stop.changed().await;
        web_transport_trait::Session::close(&session, 0, "left");
        reader.abort();
        return;
    }
    let started = tokio::time::Instant::now();
    let mut groups: [Option<web_transport_quinn::SendStream>; 4] = [None, None, None, None];
    let mut sequence = [0u64; 4];
    let mut audio_frames = 0u64;
    'replay: for round in 0u32.. {
        for f in frames.iter() {
            let wanted = if f.track == 3 { sends.voice.is_some() } else { sends.camera };
            if !wanted {
                continue;
            }
            let due = started + LOOP * round + f.at;
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stop.changed() => break 'replay,
            }
            let slot = f.track as usize;
            let new_group = if f.track == 3 {
                audio_frames += 1;
                audio_frames % 2 == 1 // two Opus frames a group, as the browser sends
            } else {
                f.keyframe
            };
            if new_group || groups[slot].is_none() {
                if let Some(mut old) = groups[slot].take() {
                    let _ = old.finish();
                }
                let Ok(mut stream) = session.open_uni().await else { break 'replay };
                sequence[slot] += 1;
                if stream.write_all(&GroupHeader { track: f.track, sequence: sequence[slot] }.encode()).await.is_err() {
                    break 'replay;
                }
                groups[slot] = Some(stream);
            }
            let level = if f.track == 3 { sends.voice.unwrap_or(127) } else { 127 };
            let frame = encode_frame(&FrameInfo { keyframe: f.keyframe, timestamp_us: wall_us(), level }, &f.payload);
            if let Some(stream) = groups[slot].as_mut()
                && stream.write_all(&frame).await.is_err()
            {
                break 'replay;
            }
        }
    }
    web_transport_trait::Session::close(&session, 0, "left");
    reader.abort();
}
