//! Media relay load: P publishers send synthetic video (30 frames/s, a group per second,
//! ~500 kbit/s each, every frame stamped with its send time) to S subscribers that each
//! subscribe to every publisher: first all over real QUIC (WebTransport), then all over
//! the WebSocket fallback (QMux over TCP, through the HTTP server), to the same relay
//! code. The same load then goes through a plain forwarder with no relay logic (copy
//! every publisher stream to every subscriber, over QUIC): the ceiling. The servers are
//! processes of their own, measured from /proc, and all get the same schedule:
//! publishers' frames spread over the frame interval, as independent cameras are, or all
//! at the same instant with `--aligned`.
//!
//! cargo bench --bench relay -- --publishers 10 --subscribers 100 --seconds 10 [--aligned]
//!
//! `--audio` sends audio instead: 50 frames/s of `--kbits` (default 32) in groups of
//! `--group-frames` (default 10) frames, to compare group sizes by the relay's cost per
//! frame (`--skip-websocket --skip-forwarder` run the QUIC relay only).

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floo::media::wire::{
    ClientMessage, ControlReader, FrameInfo, GroupHeader, ServerMessage, TrackAnnounce, TrackKind, encode_control,
    encode_frame,
};
use support::{
    Forwarder, Server, Tally, connect, copy_group, cpu_mhz, cpu_seconds, forwarder_server, now_us, rss_kib, start_floo,
    subscribe_loop,
};
use web_transport_quinn::Session;
use web_transport_trait::{RecvStream as _, SendStream as _};

struct Options {
    publishers: usize,
    subscribers: usize,
    seconds: u64,
    kbits: u64,
    forwarder: bool,
    aligned: bool,
    /// Audio (50 frames/s) rather than video (30 frames/s).
    audio: bool,
    group_frames: u64,
    skip_websocket: bool,
    skip_forwarder: bool,
}

impl Options {
    fn fps(&self) -> u64 {
        if self.audio { 50 } else { 30 }
    }

    fn frame_interval(&self) -> Duration {
        Duration::from_micros(1_000_000 / self.fps())
    }
}

fn options() -> Options {
    let number = |name: &str, default: u64| support::arg(name).map(|v| v.parse().expect(name)).unwrap_or(default);
    Options {
        publishers: number("--publishers", 10) as usize,
        subscribers: number("--subscribers", 100) as usize,
        seconds: number("--seconds", 10),
        kbits: number("--kbits", if support::flag("--audio") { 32 } else { 500 }),
        forwarder: support::flag("--plain-forwarder"),
        aligned: support::flag("--aligned"),
        audio: support::flag("--audio"),
        group_frames: number("--group-frames", if support::flag("--audio") { 10 } else { 30 }),
        skip_websocket: support::flag("--skip-websocket"),
        skip_forwarder: support::flag("--skip-forwarder"),
    }
}

/// Publishes one track: groups of `group_frames` frames at `fps`, `kbits` kbit/s, each
/// frame stamped with its send time. The first frame goes at `start`.
async fn publish_loop<S: web_transport_trait::Session>(
    session: S,
    track: u64,
    (kbits, fps, group_frames): (u64, u64, u64),
    start: Instant,
    until: Instant,
) {
    let frame_bytes = (kbits * 1000 / 8 / fps) as usize;
    let payload = vec![0x5a; frame_bytes.saturating_sub(12)];
    let mut tick = tokio::time::interval_at(start.into(), Duration::from_micros(1_000_000 / fps));
    let mut sequence = 0u64;
    while Instant::now() < until {
        let Ok(mut stream) = web_transport_trait::Session::open_uni(&session).await else { return };
        let _ =
            web_transport_trait::SendStream::write_all(&mut stream, &GroupHeader { track, sequence }.encode()).await;
        for i in 0..group_frames {
            tick.tick().await;
            let frame = encode_frame(&FrameInfo { keyframe: i == 0, timestamp_us: now_us(), level: 127 }, &payload);
            if web_transport_trait::SendStream::write_all(&mut stream, &frame).await.is_err() {
                break;
            }
        }
        let _ = web_transport_trait::SendStream::finish(&mut stream);
        sequence += 1;
    }
}

/// Starts every publisher on the same schedule whichever server is measured: the first
/// frames go 100 ms from now, publisher i's a fraction i/P of a frame interval later (as
/// independent cameras would be), or all at once with `--aligned` (the worst burst).
fn start_publishers<S: web_transport_trait::Session>(sessions: &[(S, u64)], o: &Options, until: Instant) {
    let start = Instant::now() + Duration::from_millis(100);
    for (i, (session, track)) in sessions.iter().enumerate() {
        let offset = if o.aligned { Duration::ZERO } else { o.frame_interval() * i as u32 / sessions.len() as u32 };
        let shape = (o.kbits, o.fps(), o.group_frames);
        tokio::spawn(publish_loop(session.clone(), *track, shape, start + offset, until));
    }
}

/// How the bench's clients reach the relay.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    WebTransport,
    WebSocket,
}

/// A participant's session over the WebSocket fallback, as a browser opens it: with
/// Nagle's algorithm off (browsers set TCP_NODELAY; with it on, small frames wait for the
/// delayed acknowledgement of the last, tens of milliseconds).
async fn websocket_session(server: &Server) -> qmux::Session {
    use qmux::ws::tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}?token={}", server.websocket_base, server.token().await);
    let mut request = url.as_str().into_client_request().expect("request");
    let protocol = format!("qmux-02.{}", floo::media::websocket::PROTOCOL);
    request.headers_mut().insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let address = request.uri().authority().expect("authority").as_str().to_owned();
    let tcp = tokio::net::TcpStream::connect(address).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (socket, _) = qmux::ws::tokio_tungstenite::client_async(request, tcp).await.expect("WebSocket");
    qmux::ws::Upgraded::new(socket).with_alpn(&protocol).connect()
}

/// A session with its control stream open and welcomed.
struct Participant<S: web_transport_trait::Session> {
    session: S,
    control: S::SendStream,
    incoming: S::RecvStream,
    reader: ControlReader,
}

/// Opens a Floo session: control stream, first message, the welcome.
async fn floo_session<S: web_transport_trait::Session>(session: S) -> Participant<S> {
    let (mut control, mut incoming) = session.open_bi().await.expect("control");
    control.write_all(&encode_control(&ClientMessage::Ping { nonce: 0 })).await.expect("ping");
    let mut reader = ControlReader::new(1 << 20);
    loop {
        if let Ok(Some(ServerMessage::Welcome { .. })) = reader.next_message::<ServerMessage>() {
            break;
        }
        let chunk = incoming.read_chunk(1 << 16).await.expect("read").expect("open");
        reader.push(&chunk);
    }
    Participant { session, control, incoming, reader }
}

struct Figures {
    egress_mbit: f64,
    cpu_percent: f64,
    cycles_per_byte: f64,
    cycles_per_frame: f64,
    p50_ms: f64,
    p99_ms: f64,
    dropped: u64,
    groups: u64,
    rss_per_subscriber_kib: f64,
}

fn figures(tally: &Tally, cpu: f64, seconds: f64, rss_delta: u64, subscribers: usize) -> Figures {
    let bytes = tally.bytes.load(Ordering::Relaxed) as f64;
    let mut lat = tally.latencies.lock().expect("lock").clone();
    lat.sort_unstable();
    let pct =
        |p: f64| if lat.is_empty() { f64::NAN } else { f64::from(lat[((lat.len() - 1) as f64 * p) as usize]) / 1000.0 };
    Figures {
        egress_mbit: bytes * 8.0 / seconds / 1e6,
        cpu_percent: 100.0 * cpu / seconds,
        cycles_per_byte: cpu * cpu_mhz() * 1e6 / bytes.max(1.0),
        cycles_per_frame: cpu * cpu_mhz() * 1e6 / (lat.len().max(1) as f64),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        dropped: tally.groups_dropped.load(Ordering::Relaxed),
        groups: tally.groups_done.load(Ordering::Relaxed) + tally.groups_dropped.load(Ordering::Relaxed),
        rss_per_subscriber_kib: rss_delta as f64 / subscribers as f64,
    }
}

async fn run_floo(o: &Options, via: Via) -> Figures {
    let data_dir = std::env::temp_dir().join(format!("floo-bench-relay-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).expect("dir");
    let server = start_floo(&data_dir, o.publishers + o.subscribers + 4).await;
    let n = o.publishers + o.subscribers;
    let figures = match via {
        Via::WebTransport => {
            let mut sessions = Vec::new();
            for _ in 0..n {
                sessions
                    .push(connect(&format!("{}?token={}", server.url_base, server.token().await), &server.hash).await);
            }
            load(o, &server, sessions).await
        }
        Via::WebSocket => {
            let mut sessions = Vec::new();
            for _ in 0..n {
                sessions.push(websocket_session(&server).await);
            }
            load(o, &server, sessions).await
        }
    };
    let _ = std::fs::remove_dir_all(&data_dir);
    figures
}

/// The first P sessions publish, the rest subscribe to every publisher.
async fn load<S: web_transport_trait::Session>(o: &Options, server: &Server, sessions: Vec<S>) -> Figures
where
    S::RecvStream: Send + 'static,
{
    let rss0 = rss_kib(server.pid);
    let tally = Arc::new(Tally::default());
    let recording = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sessions = sessions.into_iter();
    let mut publishers = Vec::new();
    let mut track_ids = Vec::new();
    for session in sessions.by_ref().take(o.publishers) {
        let mut p = floo_session(session).await;
        let config = serde_json::json!({ "codec": "vp8" });
        p.control
            .write_all(&encode_control(&ClientMessage::Announce {
                track: TrackAnnounce {
                    id: 1,
                    kind: if o.audio { TrackKind::Audio } else { TrackKind::Camera },
                    layer: 0,
                    config,
                },
            }))
            .await
            .expect("announce");
        let id = 'found: loop {
            let chunk = p.incoming.read_chunk(1 << 16).await.expect("read").expect("open");
            p.reader.push(&chunk);
            while let Ok(Some(message)) = p.reader.next_message::<ServerMessage>() {
                if let ServerMessage::Track { track } = message {
                    break 'found track.id;
                }
            }
        };
        track_ids.push(id);
        publishers.push(p);
    }
    let mut subscribers = Vec::new();
    for session in sessions {
        let mut p = floo_session(session).await;
        for id in &track_ids {
            p.control.write_all(&encode_control(&ClientMessage::Subscribe { track: *id })).await.expect("subscribe");
        }
        tokio::spawn(subscribe_loop(p.session.clone(), tally.clone(), recording.clone()));
        subscribers.push(p);
    }
    let rss_connected = rss_kib(server.pid);
    let warmup = Duration::from_secs(2);
    let until = Instant::now() + warmup + Duration::from_secs(o.seconds) + Duration::from_secs(1);
    let sessions: Vec<(S, u64)> = publishers.iter().map(|p| (p.session.clone(), 1)).collect();
    start_publishers(&sessions, o, until);
    tokio::time::sleep(warmup).await;
    recording.store(true, Ordering::Relaxed);
    let cpu0 = cpu_seconds(server.pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    let cpu = cpu_seconds(server.pid) - cpu0;
    let secs = t0.elapsed().as_secs_f64();
    recording.store(false, Ordering::Relaxed);
    // Groups under way hand in their latency samples when they end.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rss = rss_kib(server.pid).max(rss_connected);
    figures(&tally, cpu, secs, rss.saturating_sub(rss0), o.subscribers)
}

// ---- the ceiling: a plain forwarder --------------------------------------------------

/// Runs as its own process: copies every publisher's streams to every subscriber.
async fn plain_forwarder() {
    let subscribers: Arc<Mutex<Vec<Session>>> = Arc::default();
    let mut server = forwarder_server();
    while let Some(request) = server.accept().await {
        let subscribers = subscribers.clone();
        tokio::spawn(async move {
            let Ok(session) = request.ok().await else { return };
            let Ok((_send, mut recv)) = session.accept_bi().await else { return };
            let mut role = [0u8; 1];
            if recv.read_exact(&mut role).await.is_err() {
                return;
            }
            if role[0] == b'S' {
                subscribers.lock().expect("lock").push(session.clone());
                let _ = session.closed().await;
                return;
            }
            while let Ok(stream) = session.accept_uni().await {
                let targets: Vec<Session> = subscribers.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let mut outs = Vec::new();
                    for t in targets {
                        if let Ok(s) = t.open_uni().await {
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
    let forwarder = Forwarder::spawn().await;
    let (pid, url, hash) = (forwarder.pid, forwarder.url.clone(), forwarder.hash.clone());
    let rss0 = rss_kib(pid);
    let tally = Arc::new(Tally::default());
    let recording = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut keep = Vec::new();
    for _ in 0..o.subscribers {
        let session = connect(&url, &hash).await;
        let (mut send, recv) = session.open_bi().await.expect("bi");
        send.write_all(b"S").await.expect("role");
        tokio::spawn(subscribe_loop(session.clone(), tally.clone(), recording.clone()));
        keep.push((session, send, recv));
    }
    let rss_connected = rss_kib(pid);
    let warmup = Duration::from_secs(2);
    let mut sessions = Vec::new();
    for i in 0..o.publishers {
        let session = connect(&url, &hash).await;
        let (mut send, recv) = session.open_bi().await.expect("bi");
        send.write_all(b"P").await.expect("role");
        sessions.push((session.clone(), i as u64));
        keep.push((session, send, recv));
    }
    let until = Instant::now() + warmup + Duration::from_secs(o.seconds) + Duration::from_secs(1);
    start_publishers(&sessions, o, until);
    tokio::time::sleep(warmup).await;
    recording.store(true, Ordering::Relaxed);
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    let cpu = cpu_seconds(pid) - cpu0;
    let secs = t0.elapsed().as_secs_f64();
    recording.store(false, Ordering::Relaxed);
    // Groups under way hand in their latency samples when they end.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rss = rss_kib(pid).max(rss_connected);
    figures(&tally, cpu, secs, rss.saturating_sub(rss0), o.subscribers)
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<18} {:>9.1} {:>8.0}% {:>10.1} {:>10.0} {:>8.2} {:>8.2} {:>6}/{:<6} {:>10.1}",
        f.egress_mbit,
        f.cpu_percent,
        f.cycles_per_byte,
        f.cycles_per_frame,
        f.p50_ms,
        f.p99_ms,
        f.dropped,
        f.groups,
        f.rss_per_subscriber_kib
    );
}

#[tokio::main]
async fn main() {
    let o = options();
    if o.forwarder {
        return plain_forwarder().await;
    }
    println!(
        "relay load: {} publishers x {} subscribers, {} kbit/s per track, {} s, frames {} (cpu {:.0} MHz)",
        o.publishers,
        o.subscribers,
        o.kbits,
        o.seconds,
        if o.aligned { "aligned" } else { "spread over the frame interval" },
        cpu_mhz()
    );
    println!(
        "{:<18} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8} {:>13} {:>10}",
        "server", "egress Mb", "CPU", "cycles/B", "cycles/fr", "p50 ms", "p99 ms", "dropped/groups", "RSS KiB/sub"
    );
    if o.audio {
        println!("audio: 50 frames/s, {} frames per group", o.group_frames);
    }
    let floo = run_floo(&o, Via::WebTransport).await;
    print("relay (QUIC)", &floo);
    if !o.skip_websocket {
        let websocket = run_floo(&o, Via::WebSocket).await;
        print("relay (WebSocket)", &websocket);
        println!(
            "CPU per byte, relay over the WebSocket / over QUIC: {:.2}x",
            websocket.cycles_per_byte / floo.cycles_per_byte
        );
    }
    if !o.skip_forwarder {
        let plain = run_forwarder(&o).await;
        print("plain forwarder", &plain);
        println!(
            "CPU per byte, relay over QUIC / plain forwarder: {:.2}x",
            floo.cycles_per_byte / plain.cycles_per_byte
        );
    }
    std::process::exit(0);
}
