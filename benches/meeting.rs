//! A large meeting on one relay: P participants, each publishing a voice (50 frames/s in
//! groups of two, the level in every frame; `--speakers` of them speak, the others are
//! silent) and a camera in two layers (20 frames/s, a group a second: small 150 kbit/s,
//! large 600 kbit/s), each showing a page of 25 small tiles and one large one (the next
//! 26 people after them) and hearing the voices the relay chooses. All over real QUIC on
//! loopback, the relay in a process of its own (`floo serve`), measured from /proc.
//!
//! The same load then goes through a plain forwarder with no relay logic, which forwards
//! to each participant exactly what the relay selected for it (its 26 tiles and the
//! speakers' voices): the ceiling to compare the relay's cost per byte with.
//!
//! cargo bench --bench meeting -- --participants 100 [--seconds 10] [--speakers 3] [--skip-forwarder]
//!
//! Prints one summary line per run starting with `meeting P=`.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floo::media::wire::{
    ClientMessage, ControlReader, FrameInfo, GroupHeader, GroupReader, ServerMessage, TrackAnnounce, TrackKind, Watch,
    encode_control, encode_frame,
};
use support::{
    Forwarder, Tally, connect, copy_group, cpu_mhz, cpu_seconds, forwarder_server, now_us, rss_kib, start_floo,
    subscribe_loop,
};
use web_transport_quinn::Session;
use web_transport_trait::SendStream as _;

struct Options {
    participants: usize,
    seconds: u64,
    speakers: usize,
    forwarder: bool,
    skip_forwarder: bool,
}

fn options() -> Options {
    let number = |name: &str, default: u64| support::arg(name).map(|v| v.parse().expect(name)).unwrap_or(default);
    Options {
        participants: number("--participants", 100) as usize,
        seconds: number("--seconds", 10),
        speakers: number("--speakers", 3) as usize,
        forwarder: support::flag("--plain-forwarder"),
        skip_forwarder: support::flag("--skip-forwarder"),
    }
}

/// A participant's tracks, by its own (local) id: the small and large camera layers, the voice.
const SMALL: u64 = 1;
const LARGE: u64 = 2;
const VOICE: u64 = 3;
/// Tiles on a page (small), besides the one large tile.
const PAGE: usize = 25;
const VIDEO_FPS: u64 = 20;
const AUDIO_FPS: u64 = 50;
const AUDIO_GROUP_FRAMES: u64 = 2;
/// RFC 6464 levels: a speaker's voice, and silence.
const SPEAKING: u8 = 20;
const SILENT: u8 = 127;

/// Whom participant `i` of `n` shows: the one after it large, the next 25 small.
fn shown(i: usize, n: usize) -> (usize, Vec<usize>) {
    let others: Vec<usize> = (1..n).map(|k| (i + k) % n).collect();
    (others[0], others.iter().skip(1).take(PAGE).copied().collect())
}

/// Publishes one track of a participant: groups of `group_frames` frames at `fps`, each
/// frame `bytes` long and stamped with its send time; while `active` is false (the relay
/// said nobody watches it), nothing is sent, and it resumes with a new group. `key` is
/// what the group header names (the local id for the relay, a global key for the
/// forwarder).
async fn publish_loop<S: web_transport_trait::Session>(
    session: S,
    key: u64,
    (bytes, fps, group_frames, level): (usize, u64, u64, u8),
    active: Arc<AtomicBool>,
    start: Instant,
    until: Instant,
) {
    let payload = vec![0x5a; bytes.saturating_sub(12)];
    let mut tick = tokio::time::interval_at(start.into(), Duration::from_micros(1_000_000 / fps));
    let mut sequence = 0u64;
    let mut stream: Option<(S::SendStream, u64)> = None;
    while Instant::now() < until {
        tick.tick().await;
        if !active.load(Ordering::Relaxed) {
            if let Some((mut s, _)) = stream.take() {
                let _ = s.finish();
            }
            continue;
        }
        if stream.as_ref().is_none_or(|(_, written)| *written == group_frames) {
            if let Some((mut s, _)) = stream.take() {
                let _ = s.finish();
            }
            let Ok(mut s) = session.open_uni().await else { return };
            if s.write_all(&GroupHeader { track: key, sequence }.encode()).await.is_err() {
                return;
            }
            sequence += 1;
            stream = Some((s, 0));
        }
        let Some((s, written)) = stream.as_mut() else { continue };
        let frame = encode_frame(&FrameInfo { keyframe: *written == 0, timestamp_us: now_us(), level }, &payload);
        if s.write_all(&frame).await.is_err() {
            stream = None;
            continue;
        }
        *written += 1;
    }
    if let Some((mut s, _)) = stream.take() {
        let _ = s.finish();
    }
}

/// The three tracks of participant `i`, published from `start` (spread over a frame
/// interval by `i`); `key` maps a local id to what group headers carry.
fn publish_all<S: web_transport_trait::Session>(
    session: &S,
    (i, n, speakers): (usize, usize, usize),
    key: impl Fn(u64) -> u64,
    active: &HashMap<u64, Arc<AtomicBool>>,
    start: Instant,
    until: Instant,
) {
    let offset = |fps: u64| Duration::from_micros(1_000_000 / fps) * i as u32 / n as u32;
    let level = if i < speakers { SPEAKING } else { SILENT };
    let shapes = [
        (SMALL, (150_000 / 8 / VIDEO_FPS) as usize, VIDEO_FPS, VIDEO_FPS, 127),
        (LARGE, (600_000 / 8 / VIDEO_FPS) as usize, VIDEO_FPS, VIDEO_FPS, 127),
        (VOICE, (32_000 / 8 / AUDIO_FPS) as usize, AUDIO_FPS, AUDIO_GROUP_FRAMES, level),
    ];
    for (local, bytes, fps, group, level) in shapes {
        tokio::spawn(publish_loop(
            session.clone(),
            key(local),
            (bytes, fps, group, level),
            active[&local].clone(),
            start + offset(fps),
            until,
        ));
    }
}

fn all_active() -> HashMap<u64, Arc<AtomicBool>> {
    [SMALL, LARGE, VOICE].into_iter().map(|t| (t, Arc::new(AtomicBool::new(true)))).collect()
}

struct Figures {
    egress_mbit: f64,
    cpu_percent: f64,
    cycles_per_byte: f64,
    p50_ms: f64,
    p99_ms: f64,
    dropped: u64,
    groups: u64,
    rss_per_participant_kib: f64,
}

/// Measures `pid` for `seconds` while the load runs (after a warm-up).
async fn measure(pid: u32, tally: &Tally, recording: &AtomicBool, seconds: u64, rss0: u64, n: usize) -> Figures {
    tokio::time::sleep(Duration::from_secs(3)).await;
    recording.store(true, Ordering::Relaxed);
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_seconds(pid) - cpu0;
    let secs = t0.elapsed().as_secs_f64();
    let rss = rss_kib(pid);
    recording.store(false, Ordering::Relaxed);
    // Groups under way hand in their latency samples when they end.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bytes = tally.bytes.load(Ordering::Relaxed) as f64;
    let mut lat = tally.latencies.lock().expect("lock").clone();
    lat.sort_unstable();
    let pct =
        |p: f64| if lat.is_empty() { f64::NAN } else { f64::from(lat[((lat.len() - 1) as f64 * p) as usize]) / 1000.0 };
    let dropped = tally.groups_dropped.load(Ordering::Relaxed);
    Figures {
        egress_mbit: bytes * 8.0 / secs / 1e6,
        cpu_percent: 100.0 * cpu / secs,
        cycles_per_byte: cpu * cpu_mhz() * 1e6 / bytes.max(1.0),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        dropped,
        groups: tally.groups_done.load(Ordering::Relaxed) + dropped,
        rss_per_participant_kib: rss.saturating_sub(rss0) as f64 / n as f64,
    }
}

/// The relay: everyone joins, announces its tracks and says what it shows (`view`); a
/// task per participant reads its control stream (and obeys `layers`).
async fn run_relay(o: &Options) -> Figures {
    let n = o.participants;
    let data_dir = std::env::temp_dir().join(format!("floo-bench-meeting-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).expect("dir");
    let server = start_floo(&data_dir, n).await;
    let rss0 = rss_kib(server.pid);
    let tally = Arc::new(Tally::default());
    let recording = Arc::new(AtomicBool::new(false));
    let mut people = Vec::new();
    for _ in 0..n {
        let session = connect(&format!("{}?token={}", server.url_base, server.token().await), &server.hash).await;
        let (mut control, mut incoming) = session.open_bi().await.expect("control");
        control.write_all(&encode_control(&ClientMessage::Ping { nonce: 0 })).await.expect("ping");
        let mut reader = ControlReader::new(1 << 20);
        let you = 'welcome: loop {
            let chunk =
                web_transport_trait::RecvStream::read_chunk(&mut incoming, 1 << 16).await.expect("read").expect("open");
            reader.push(&chunk);
            while let Ok(Some(message)) = reader.next_message::<ServerMessage>() {
                if let ServerMessage::Welcome { you, .. } = message {
                    break 'welcome you;
                }
            }
        };
        let active = all_active();
        let flags = active.clone();
        // Read everything the relay says, for as long as the session lasts: a participant
        // that stops reading its control stream is closed as lagging.
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = web_transport_trait::RecvStream::read_chunk(&mut incoming, 1 << 16).await {
                reader.push(&chunk);
                while let Ok(Some(message)) = reader.next_message::<ServerMessage>() {
                    if let ServerMessage::Layers { active } = message {
                        for (local, flag) in &flags {
                            if *local != VOICE {
                                flag.store(active.contains(local), Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        });
        for (local, kind, layer) in
            [(SMALL, TrackKind::Camera, 0), (LARGE, TrackKind::Camera, 1), (VOICE, TrackKind::Audio, 0)]
        {
            let track = TrackAnnounce { id: local, kind, layer, config: serde_json::json!({ "codec": "bench" }) };
            control.write_all(&encode_control(&ClientMessage::Announce { track })).await.expect("announce");
        }
        tokio::spawn(subscribe_loop(session.clone(), tally.clone(), recording.clone()));
        people.push((session, control, you, active));
    }
    let ids: Vec<u64> = people.iter().map(|p| p.2).collect();
    for (i, (_, control, _, _)) in people.iter_mut().enumerate() {
        let (large, page) = shown(i, n);
        let mut tiles = vec![Watch { participant: ids[large], kind: TrackKind::Camera, layer: 1 }];
        tiles.extend(page.iter().map(|j| Watch { participant: ids[*j], kind: TrackKind::Camera, layer: 0 }));
        let view = ClientMessage::View { tiles, speakers: 0, speaker_layer: 1 };
        control.write_all(&encode_control(&view)).await.expect("view");
    }
    let start = Instant::now() + Duration::from_millis(200);
    let until = start + Duration::from_secs(o.seconds + 6);
    for (i, (session, _, _, active)) in people.iter().enumerate() {
        publish_all(session, (i, n, o.speakers), |local| local, active, start, until);
    }
    let figures = measure(server.pid, &tally, &recording, o.seconds, rss0, n).await;
    drop(people);
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    figures
}

// ---- the ceiling: a plain forwarder of the same selection ----------------------------

/// Where participant `i`'s track `local` goes in the forwarder (and in its group headers).
fn key(i: usize, local: u64) -> u64 {
    i as u64 * 4 + local
}

/// Runs as its own process. Each session first writes, on a bidirectional stream, one
/// line: the keys it wants, comma-separated. Then each group stream it publishes is sent
/// on, byte for byte, to every session that wants the key in its header.
async fn plain_forwarder() {
    let wanted: Arc<Mutex<HashMap<u64, Vec<Session>>>> = Arc::default();
    let mut server = forwarder_server();
    while let Some(request) = server.accept().await {
        let wanted = wanted.clone();
        tokio::spawn(async move {
            let Ok(session) = request.ok().await else { return };
            let Ok((_send, mut recv)) = session.accept_bi().await else { return };
            let mut line = Vec::new();
            while !line.ends_with(b"\n") {
                match recv.read_chunk(1 << 16, true).await {
                    Ok(Some(chunk)) => line.extend_from_slice(&chunk.bytes),
                    _ => return,
                }
            }
            for k in String::from_utf8_lossy(&line).trim().split(',').filter_map(|k| k.parse::<u64>().ok()) {
                wanted.lock().expect("lock").entry(k).or_default().push(session.clone());
            }
            while let Ok(mut stream) = session.accept_uni().await {
                let wanted = wanted.clone();
                tokio::spawn(async move {
                    let mut reader = GroupReader::new(1 << 20);
                    let mut head = Vec::new();
                    let header = loop {
                        match stream.read_chunk(1 << 16, true).await {
                            Ok(Some(chunk)) => {
                                head.extend_from_slice(&chunk.bytes);
                                reader.push(&chunk.bytes);
                                if let Ok(Some(header)) = reader.header() {
                                    break header;
                                }
                            }
                            _ => return,
                        }
                    };
                    let targets = wanted.lock().expect("lock").get(&header.track).cloned().unwrap_or_default();
                    let mut outs = Vec::new();
                    for t in targets {
                        if let Ok(mut s) = t.open_uni().await
                            && s.write_all(&head).await.is_ok()
                        {
                            outs.push(s);
                        }
                    }
                    copy_group(stream, outs).await;
                });
            }
        });
    }
}

async fn run_forwarder(o: &Options) -> Figures {
    let n = o.participants;
    let forwarder = Forwarder::spawn().await;
    let (pid, url, hash) = (forwarder.pid, forwarder.url.clone(), forwarder.hash.clone());
    let rss0 = rss_kib(pid);
    let tally = Arc::new(Tally::default());
    let recording = Arc::new(AtomicBool::new(false));
    let mut people = Vec::new();
    for i in 0..n {
        let session = connect(&url, &hash).await;
        let (mut send, recv) = session.open_bi().await.expect("bi");
        // What the relay selects for i: its tiles' layers and the speakers' voices.
        let (large, page) = shown(i, n);
        let mut keys = vec![key(large, LARGE)];
        keys.extend(page.iter().map(|j| key(*j, SMALL)));
        keys.extend((0..o.speakers.min(n)).filter(|s| *s != i).map(|s| key(s, VOICE)));
        let line: Vec<String> = keys.iter().map(u64::to_string).collect();
        send.write_all(format!("{}\n", line.join(",")).as_bytes()).await.expect("wants");
        tokio::spawn(subscribe_loop(session.clone(), tally.clone(), recording.clone()));
        people.push((session, send, recv));
    }
    let active = all_active();
    let start = Instant::now() + Duration::from_millis(200);
    let until = start + Duration::from_secs(o.seconds + 6);
    for (i, (session, _, _)) in people.iter().enumerate() {
        publish_all(session, (i, n, o.speakers), |local| key(i, local), &active, start, until);
    }
    measure(pid, &tally, &recording, o.seconds, rss0, n).await
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<16} {:>9.1} {:>7.0}% {:>9.1} {:>8.2} {:>8.2} {:>7}/{:<7} {:>12.1}",
        f.egress_mbit,
        f.cpu_percent,
        f.cycles_per_byte,
        f.p50_ms,
        f.p99_ms,
        f.dropped,
        f.groups,
        f.rss_per_participant_kib
    );
}

#[tokio::main]
async fn main() {
    let o = options();
    if o.forwarder {
        return plain_forwarder().await;
    }
    assert!(o.participants >= 2, "--participants: at least 2");
    println!(
        "meeting: {} participants, each a voice and a camera in two layers, showing {} small tiles and one large; {} speaking; {} s (cpu {:.0} MHz)",
        o.participants,
        PAGE.min(o.participants.saturating_sub(2)),
        o.speakers,
        o.seconds,
        cpu_mhz()
    );
    println!(
        "{:<16} {:>9} {:>8} {:>9} {:>8} {:>8} {:>15} {:>12}",
        "server", "egress Mb", "CPU", "cycles/B", "p50 ms", "p99 ms", "dropped/groups", "RSS KiB/pers"
    );
    let relay = run_relay(&o).await;
    print("relay", &relay);
    let plain = if o.skip_forwarder { None } else { Some(run_forwarder(&o).await) };
    if let Some(plain) = &plain {
        print("plain forwarder", plain);
    }
    println!(
        "meeting P={} relay_cpu={:.0}% cycles_per_byte={:.1} forwarder_cycles_per_byte={} egress_mbit={:.1} p50_ms={:.2} p99_ms={:.2} dropped={}/{} rss_kib_per_participant={:.1}",
        o.participants,
        relay.cpu_percent,
        relay.cycles_per_byte,
        plain.as_ref().map_or("-".to_owned(), |p| format!("{:.1}", p.cycles_per_byte)),
        relay.egress_mbit,
        relay.p50_ms,
        relay.p99_ms,
        relay.dropped,
        relay.groups,
        relay.rss_per_participant_kib
    );
    std::process::exit(0);
}
