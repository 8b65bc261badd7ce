//! The media relay over real connections, driven by a Rust client speaking the protocol
//! over either transport (WebTransport over QUIC, or QMux over a WebSocket): admission,
//! publish and subscribe with identical bytes, late join from the cached group, and
//! malformed input closing only the offending session.

use std::time::Duration;

use bytes::Bytes;
use floo::media::close;
use floo::media::wire::{
    ClientMessage, ControlReader, FrameInfo, GroupHeader, GroupReader, ServerMessage, TrackAnnounce, TrackKind,
    Transport, encode_control, encode_frame,
};
use web_transport_trait::{RecvStream as _, SendStream as _, Session as _};

use crate::support::{Backend, Client, TestApp};

const DEADLINE: Duration = Duration::from_secs(10);

/// A participant's connection, as the browser client makes it, over WebTransport
/// (`web_transport_quinn::Session`) or the WebSocket fallback (`qmux::Session`).
pub struct Peer<S: web_transport_trait::Session = web_transport_quinn::Session> {
    /// The relay's id for this participant (from its welcome).
    pub you: u64,
    session: S,
    control: S::SendStream,
    incoming: S::RecvStream,
    reader: ControlReader,
}

/// Asks the meeting page for a ticket, as the browser does, and connects over QUIC.
pub async fn join(app: &TestApp, client: &Client, meeting: &str) -> Peer {
    let token = ticket(client, meeting).await["token"].as_str().expect("token").to_owned();
    connect_with_token(app, &token).await
}

/// Asks the meeting page for a ticket and connects over the WebSocket fallback.
async fn join_by_websocket(app: &TestApp, client: &Client, meeting: &str) -> Peer<qmux::Session> {
    let token = ticket(client, meeting).await["token"].as_str().expect("token").to_owned();
    open_peer(connect_websocket(app, &token).await.expect("WebSocket session")).await
}

pub async fn ticket(client: &Client, meeting: &str) -> serde_json::Value {
    let ticket = client.post_form(&format!("{meeting}/media"), &[]).await;
    serde_json::from_str(&ticket.body).expect("ticket JSON")
}

/// The relay address a media ticket names: (port, certificate hash, token).
pub fn ticket_parts(ticket: &serde_json::Value) -> (u16, Vec<u8>, String) {
    let hash = ticket["certHash"].as_array().expect("hash").iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect();
    let port = ticket["port"].as_u64().expect("port") as u16;
    (port, hash, ticket["token"].as_str().expect("token").to_owned())
}

/// Joins the call with a media ticket, wherever it points.
pub async fn join_with_ticket(ticket: &serde_json::Value) -> Peer {
    let (port, hash, token) = ticket_parts(ticket);
    open_peer(connect_to(port, hash, &token).await).await
}

/// Connects with a media ticket that the relay is expected to refuse: its code and reason.
pub async fn refusal_for_ticket(ticket: &serde_json::Value) -> (u32, String) {
    let (port, hash, token) = ticket_parts(ticket);
    let session = connect_to(port, hash, &token).await;
    tokio::time::timeout(DEADLINE, session.closed()).await.map(close_of).expect("refused in time")
}

pub async fn connect_with_token(app: &TestApp, token: &str) -> Peer {
    let hash = app.cert_hash.expect("a dev certificate").to_vec();
    open_peer(connect_to(app.quic_addr.port(), hash, token).await).await
}

/// A peer made of a session and its control stream, before any message was read.
pub fn peer_from_parts(
    session: web_transport_quinn::Session,
    control: web_transport_quinn::SendStream,
    incoming: web_transport_quinn::RecvStream,
) -> Peer {
    Peer { you: 0, session, control, incoming, reader: ControlReader::new(1 << 20) }
}

/// Opens the control stream and waits for the welcome.
pub async fn open_peer<S: web_transport_trait::Session>(session: S) -> Peer<S> {
    let (mut control, incoming) = session.open_bi().await.expect("control stream");
    // The stream reaches the relay with its first message.
    control.write_all(&encode_control(&ClientMessage::Ping { nonce: 1 })).await.expect("ping");
    let mut peer = Peer { you: 0, session, control, incoming, reader: ControlReader::new(1 << 20) };
    let ServerMessage::Welcome { you, .. } = peer.next_message().await else {
        panic!("the first message is the welcome")
    };
    peer.you = you;
    peer
}

pub async fn connect(app: &TestApp, token: &str) -> web_transport_quinn::Session {
    connect_to(app.quic_addr.port(), app.cert_hash.expect("a dev certificate").to_vec(), token).await
}

async fn connect_to(port: u16, hash: Vec<u8>, token: &str) -> web_transport_quinn::Session {
    let client = web_transport_quinn::ClientBuilder::new().with_server_certificate_hashes(vec![hash]).expect("client");
    let url = format!("https://127.0.0.1:{port}/meeting?token={token}");
    client.connect(url::Url::parse(&url).expect("url")).await.expect("connect")
}

/// A QMux session over a WebSocket to the app's HTTP port, as the browser's fallback
/// opens it (QMux draft 02, Floo's subprotocol).
pub async fn connect_websocket(app: &TestApp, token: &str) -> Result<qmux::Session, qmux::Error> {
    let url = format!("{}/media/ws?token={token}", app.base.replacen("http://", "ws://", 1));
    qmux::ws::Client::new()
        .with_protocol(floo::media::websocket::PROTOCOL, &[qmux::Version::QMux02])
        .require_protocol()
        .connect(&url)
        .await
}

impl<S: web_transport_trait::Session> Peer<S> {
    /// Announces a 320x240 VP8 camera (track 1, at `layer`) and an Opus microphone (track 2).
    pub async fn announce_camera_and_microphone(&mut self, layer: u8) {
        let video = serde_json::json!({ "codec": "vp8", "codedWidth": 320, "codedHeight": 240 });
        self.send(&ClientMessage::Announce {
            track: TrackAnnounce { id: 1, kind: TrackKind::Camera, layer, config: video },
        })
        .await;
        let audio = serde_json::json!({ "codec": "opus" });
        self.send(&ClientMessage::Announce {
            track: TrackAnnounce { id: 2, kind: TrackKind::Audio, layer: 0, config: audio },
        })
        .await;
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        self.control.write_all(&encode_control(message)).await.expect("send control");
    }

    pub async fn next_message(&mut self) -> ServerMessage {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(message) = self.reader.next_message::<ServerMessage>().expect("valid control") {
                    return message;
                }
                let chunk = self.incoming.read_chunk(1 << 16).await.expect("read control").expect("open");
                self.reader.push(&chunk);
            }
        })
        .await
        .expect("a control message in time")
    }

    /// Waits for a message matching `want`, skipping others.
    pub async fn wait_for(&mut self, want: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        loop {
            let message = self.next_message().await;
            if want(&message) {
                return message;
            }
        }
    }

    /// Sends one whole group on its own stream.
    pub async fn publish_group(&self, track: u64, sequence: u64, frames: &[Bytes]) {
        let mut stream = self.session.open_uni().await.expect("open group");
        stream.write_all(&GroupHeader { track, sequence }.encode()).await.expect("header");
        for frame in frames {
            stream.write_all(frame).await.expect("frame");
        }
        stream.finish().expect("finish");
    }

    /// Receives one group: its header and frames, byte for byte.
    pub async fn receive_group(&self) -> (GroupHeader, Vec<Bytes>) {
        tokio::time::timeout(DEADLINE, async {
            let mut stream = self.session.accept_uni().await.expect("a group stream");
            let mut reader = GroupReader::new(1 << 20);
            let mut frames = Vec::new();
            while let Some(chunk) = stream.read_chunk(1 << 16).await.expect("read group") {
                reader.push(&chunk);
                while let Some((frame, _)) = reader.next_frame().expect("valid group") {
                    frames.push(frame);
                }
            }
            (reader.header().expect("header").expect("header"), frames)
        })
        .await
        .expect("a group in time")
    }

    /// The next group if one comes within `within`: its header and frames.
    pub async fn try_receive_group(&self, within: Duration) -> Option<(GroupHeader, Vec<Bytes>)> {
        let mut stream = tokio::time::timeout(within, self.session.accept_uni()).await.ok()?.ok()?;
        tokio::time::timeout(DEADLINE, async {
            let mut reader = GroupReader::new(1 << 20);
            let mut frames = Vec::new();
            // A group the relay gave up on ends early: what came is what counts.
            while let Ok(Some(chunk)) = stream.read_chunk(1 << 16).await {
                reader.push(&chunk);
                while let Ok(Some((frame, _))) = reader.next_frame() {
                    frames.push(frame);
                }
            }
            reader.header().ok().flatten().map(|header| (header, frames))
        })
        .await
        .expect("a group read in time")
    }

    pub async fn close_code(&self) -> (u32, String) {
        self.close_code_within(DEADLINE).await
    }

    pub async fn close_code_within(&self, within: Duration) -> (u32, String) {
        let error = tokio::time::timeout(within, self.session.closed()).await.expect("closed in time");
        close_of(error)
    }

    /// Publishes `frames` — (track, whether it starts a group, its capture time in µs, the
    /// encoded frame) in capture order — at `speed` times real time from `clock` (an instant
    /// and the capture time it stands for), reading the relay's control messages meanwhile
    /// so that nothing backs up on the way back. Returns how many messages came.
    pub async fn publish_at_speed(
        &mut self,
        frames: &[(u64, bool, u64, Bytes)],
        speed: f64,
        clock: (tokio::time::Instant, u64),
    ) -> usize {
        let session = &self.session;
        let publish = async {
            let (started, first) = clock;
            let mut open: std::collections::HashMap<u64, S::SendStream> = Default::default();
            let mut sequence = 0u64;
            for (track, starts, captured, frame) in frames {
                let due = Duration::from_secs_f64(captured.saturating_sub(first) as f64 / 1e6 / speed);
                tokio::time::sleep_until(started + due).await;
                if *starts || !open.contains_key(track) {
                    if let Some(mut old) = open.remove(track) {
                        let _ = old.finish();
                    }
                    sequence += 1;
                    let mut stream = session.open_uni().await.expect("open group");
                    stream.write_all(&GroupHeader { track: *track, sequence }.encode()).await.expect("header");
                    open.insert(*track, stream);
                }
                let stream = open.get_mut(track).expect("open");
                stream.write_all(frame).await.expect("frame");
            }
            for (_, mut stream) in open {
                let _ = stream.finish();
            }
        };
        let (incoming, reader) = (&mut self.incoming, &mut self.reader);
        let mut messages = 0;
        let read = async {
            while let Ok(Some(chunk)) = incoming.read_chunk(1 << 16).await {
                reader.push(&chunk);
                while let Ok(Some(_)) = reader.next_message::<ServerMessage>() {
                    messages += 1;
                }
            }
        };
        tokio::select! {
            () = publish => {}
            () = read => panic!("the relay closed the control stream while frames were being published"),
        }
        messages
    }

    /// Leaves the call.
    pub fn leave(&self) {
        self.session.close(0, "bye");
    }
}

impl Peer<web_transport_quinn::Session> {
    /// Reads and forgets every group the relay sends, in the background, for a peer that
    /// only publishes.
    pub fn drain_groups(&self) {
        let session = self.session.clone();
        tokio::spawn(async move {
            while let Ok(mut stream) = session.accept_uni().await {
                tokio::spawn(async move {
                    while let Ok(Some(_)) = web_transport_trait::RecvStream::read_chunk(&mut stream, 1 << 16).await {}
                });
            }
        });
    }
}

/// Waits until `path` shows `text` (attendance is written just after the event).
async fn page_shows_eventually(client: &Client, path: &str, text: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !client.get(path).await.body.contains(text) {
        assert!(tokio::time::Instant::now() < deadline, "{path} never showed {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn close_of<E: web_transport_trait::Error>(error: E) -> (u32, String) {
    error.session_error().unwrap_or_else(|| panic!("closed without a code: {error}"))
}

pub fn frames(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let info = FrameInfo { keyframe: i == 0, timestamp_us: i as u64 * 33_000, level: 127 };
            encode_frame(&info, &vec![i as u8; 1000 + i * 100])
        })
        .collect()
}

/// A team with a live meeting; returns the clients and the meeting's path.
pub async fn meeting(app: &TestApp, names: &[&str]) -> (Vec<Client>, String) {
    let mut clients = Vec::new();
    for name in names {
        clients.push(app.signed_in(name).await);
    }
    let team = clients[0].post_form("/teams", &[("name", "Media")]).await;
    let team_id = team.url.split("/teams/").nth(1).expect("team").to_owned();
    let code = clients[0].get(&format!("/teams/{team_id}/invite")).await.between("id=\"invite-code\">", "<");
    for client in &clients[1..] {
        client.post_form("/join", &[("code", &code)]).await.expect_ok_with("Media");
    }
    let meeting = clients[0].post_form(&format!("/teams/{team_id}/meetings"), &[("title", "Call")]).await;
    let path = meeting.url.trim_start_matches(&app.base).to_owned();
    (clients, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_groups_reach_subscribers_byte_for_byte_and_late_joiners_get_the_cached_group() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob", "Carol"]).await;
    let mut alice = join(&app, &clients[0], &meeting).await;
    let mut bob = join(&app, &clients[1], &meeting).await;
    alice.wait_for(|m| matches!(m, ServerMessage::Joined { participant } if participant.name == "Bob")).await;

    // Joining is attendance: the meeting page lists both (recorded just after admission).
    page_shows_eventually(&clients[2], &meeting, "In the meeting (2)").await;

    let config = serde_json::json!({ "codec": "vp8", "codedWidth": 640, "codedHeight": 360 });
    alice
        .send(&ClientMessage::Announce {
            track: TrackAnnounce { id: 1, kind: TrackKind::Camera, layer: 1, config: config.clone() },
        })
        .await;
    let ServerMessage::Track { track } = bob.wait_for(|m| matches!(m, ServerMessage::Track { .. })).await else {
        unreachable!()
    };
    assert_eq!(track.config, config, "the decoder configuration reaches subscribers as sent");
    bob.send(&ClientMessage::Subscribe { track: track.id }).await;
    bob.send(&ClientMessage::Ping { nonce: 2 }).await;
    bob.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 2 })).await;

    let sent = frames(5);
    alice.publish_group(1, 0, &sent).await;
    let (header, received) = bob.receive_group().await;
    assert_eq!(header, GroupHeader { track: track.id, sequence: 0 });
    assert_eq!(received, sent, "identical bytes");

    // Carol joins late and subscribes: the latest group arrives at once.
    let mut carol = join(&app, &clients[2], &meeting).await;
    carol.send(&ClientMessage::Subscribe { track: track.id }).await;
    let (header, received) = carol.receive_group().await;
    assert_eq!(header.sequence, 0);
    assert_eq!(received, sent);

    // Mute travels to everyone.
    alice
        .send(&ClientMessage::State {
            state: floo::media::wire::ParticipantState { muted: true, ..Default::default() },
        })
        .await;
    carol.wait_for(|m| matches!(m, ServerMessage::State { state, .. } if state.muted)).await;

    // Leaving ends attendance and the others hear of it.
    bob.leave();
    alice.wait_for(|m| matches!(m, ServerMessage::Left { .. })).await;
    page_shows_eventually(&clients[0], &meeting, "In the meeting (2)").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_people_each_receive_everyone_elses_camera_and_voice_and_a_twenty_sixth_is_told_it_is_full() {
    let _turn = crate::support::WHOLE_MACHINE.lock().await;
    let app = TestApp::spawn_with(Backend::Sqlite, &["--max-participants", "25"]).await;
    let names: Vec<String> = (1..=26).map(|i| format!("Person {i:02}")).collect();
    let (clients, meeting) = meeting(&app, &names.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut peers = Vec::new();
    for client in &clients[..25] {
        peers.push(join(&app, client, &meeting).await);
    }
    for peer in &mut peers {
        peer.announce_camera_and_microphone(0).await;
    }
    // Everyone learns of all 50 tracks (its own two included) and subscribes to the 48 of
    // the 24 others.
    let ids: Vec<u64> = peers.iter().map(|p| p.you).collect();
    let owner_of = |participant: u64| ids.iter().position(|id| *id == participant).expect("a participant we know");
    let mut tracks = std::collections::HashMap::new(); // relay track id -> (owner, kind)
    for (i, peer) in peers.iter_mut().enumerate() {
        for _ in 0..50 {
            if let ServerMessage::Track { track } = peer.wait_for(|m| matches!(m, ServerMessage::Track { .. })).await {
                let owner = owner_of(track.participant);
                tracks.insert(track.id, (owner, track.kind));
                if owner != i {
                    peer.send(&ClientMessage::Subscribe { track: track.id }).await;
                }
            }
        }
        peer.send(&ClientMessage::Ping { nonce: 7 }).await;
        peer.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 7 })).await;
    }
    assert_eq!(tracks.len(), 50, "two tracks from each of 25 people");

    // Everyone publishes one camera group and one audio group of their own bytes.
    let group_of = |owner: usize, kind: TrackKind| -> Vec<Bytes> {
        let n = if kind == TrackKind::Audio { 2 } else { 3 };
        (0..n)
            .map(|i| {
                let info = FrameInfo { keyframe: i == 0, timestamp_us: i as u64 * 20_000, level: 127 };
                encode_frame(&info, &vec![owner as u8; 300 + i * 50 + usize::from(kind == TrackKind::Audio)])
            })
            .collect()
    };
    for (i, peer) in peers.iter().enumerate() {
        peer.publish_group(1, 0, &group_of(i, TrackKind::Camera)).await;
        peer.publish_group(2, 0, &group_of(i, TrackKind::Audio)).await;
    }
    for (i, peer) in peers.iter().enumerate() {
        let mut from = std::collections::HashSet::new();
        for _ in 0..48 {
            let (header, frames) = peer.receive_group().await;
            let (owner, kind) = tracks[&header.track];
            assert_ne!(owner, i, "nobody receives their own media");
            assert_eq!(frames, group_of(owner, kind), "identical bytes from person {owner}");
            from.insert(header.track);
        }
        assert_eq!(from.len(), 48, "person {i} got every other camera and microphone once");
    }

    // The 26th is refused with a clear reason; the 25 carry on.
    let ticket = clients[25].post_form(&format!("{meeting}/media"), &[]).await;
    let ticket: serde_json::Value = serde_json::from_str(&ticket.body).expect("ticket JSON");
    let late = connect(&app, ticket["token"].as_str().expect("token")).await;
    let (_control, _incoming) = late.open_bi().await.expect("control stream");
    let error = tokio::time::timeout(DEADLINE, late.closed()).await.expect("refused in time");
    assert_eq!(close_of(error), (close::ROOM_FULL, "this meeting is full (25 people)".to_owned()));
    peers[0].send(&ClientMessage::Ping { nonce: 8 }).await;
    peers[0].wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 8 })).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_and_bad_tokens_close_only_the_offending_session() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob", "Mallory"]).await;
    let mut alice = join(&app, &clients[0], &meeting).await;
    let mut bob = join(&app, &clients[1], &meeting).await;
    alice
        .send(&ClientMessage::Announce {
            track: TrackAnnounce {
                id: 1,
                kind: TrackKind::Audio,
                layer: 0,
                config: serde_json::json!({ "codec": "opus" }),
            },
        })
        .await;
    let ServerMessage::Track { track } = bob.wait_for(|m| matches!(m, ServerMessage::Track { .. })).await else {
        unreachable!()
    };
    bob.send(&ClientMessage::Subscribe { track: track.id }).await;

    // Garbage on the control stream.
    let mut mallory = join(&app, &clients[2], &meeting).await;
    mallory.control.write_all(&[3, b'{', b'x', b'}']).await.expect("write");
    assert_eq!(mallory.close_code().await.0, close::PROTOCOL);

    // A frame over the size limit.
    let mut mallory = join(&app, &clients[2], &meeting).await;
    mallory
        .send(&ClientMessage::Announce {
            track: TrackAnnounce { id: 1, kind: TrackKind::Camera, layer: 0, config: serde_json::json!({}) },
        })
        .await;
    let mut stream = mallory.session.open_uni().await.expect("open");
    let mut huge = GroupHeader { track: 1, sequence: 0 }.encode().to_vec();
    floo::media::wire::put_varint(&mut huge, 64 * 1024 * 1024);
    stream.write_all(&huge).await.expect("write");
    assert_eq!(mallory.close_code().await.0, close::TOO_LARGE);

    // Someone outside the team gets no ticket; a forged token is refused with a reason.
    let eve = app.signed_in("Eve").await;
    assert_eq!(eve.post_form(&format!("{meeting}/media"), &[]).await.status, reqwest::StatusCode::NOT_FOUND);
    let forged = connect(&app, "1.1.99999999999999.deadbeef").await;
    let (code, reason) = tokio::time::timeout(DEADLINE, forged.closed()).await.map(close_of).expect("closed");
    assert_eq!(code, close::UNAUTHORIZED);
    assert!(reason.contains("token"), "{reason}");

    // Alice and Bob carry on unharmed.
    let sent = frames(3);
    alice.publish_group(1, 7, &sent).await;
    let (_, received) = bob.receive_group().await;
    assert_eq!(received, sent);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_ticket_admits_once_over_each_transport_and_never_again() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice"]).await;
    let token = ticket(&clients[0], &meeting).await["token"].as_str().expect("token").to_owned();
    // The page races both transports with one ticket: each may use it once.
    let _over_quic = connect_with_token(&app, &token).await;
    let _over_websocket = open_peer(connect_websocket(&app, &token).await.expect("WebSocket session")).await;
    // Seen again (a log, a proxy, a browser's history), it admits nobody.
    let replayed = connect(&app, &token).await;
    let (code, reason) = tokio::time::timeout(DEADLINE, replayed.closed()).await.map(close_of).expect("closed");
    assert_eq!(code, close::UNAUTHORIZED);
    assert!(reason.contains("used already"), "{reason}");
    let replayed = connect_websocket(&app, &token).await.expect("WebSocket session");
    let (code, reason) = tokio::time::timeout(DEADLINE, replayed.closed()).await.map(close_of).expect("closed");
    assert_eq!((code, reason.contains("used already")), (close::UNAUTHORIZED, true), "{reason}");
    // A fresh ticket, as a reconnecting page asks for, admits.
    let _again = join(&app, &clients[0], &meeting).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_meeting_leaves_the_relay_and_is_no_longer_claimed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob"]).await;
    let alice = join(&app, &clients[0], &meeting).await;
    let bob = join(&app, &clients[1], &meeting).await;
    assert_eq!(app.relay.hosted_meetings().len(), 1);
    clients[0].post_form(&format!("{meeting}/end"), &[]).await;
    assert_eq!(alice.close_code().await.0, close::ENDED);
    assert_eq!(bob.close_code().await.0, close::ENDED);
    // The room is gone, so this node stops renewing its claim on the meeting.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !app.relay.hosted_meetings().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended meeting's room stayed: {:?}",
            app.relay.hosted_meetings()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_start_one_recording_and_one_attendance() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice"]).await;
    let _alice = join(&app, &clients[0], &meeting).await;
    let token = clients[0].csrf().await;
    // Ten "start recording" clicks at once (two tabs, a double click, a retry).
    let start = || {
        clients[0].http.post(clients[0].url(&format!("{meeting}/recordings"))).form(&[("_csrf", token.as_str())]).send()
    };
    let answers = futures_util::future::join_all((0..10).map(|_| start())).await;
    let statuses: Vec<_> = answers.into_iter().map(|a| a.expect("answer").status()).collect();
    let started = statuses.iter().filter(|s| s.is_success()).count();
    assert_eq!(started, 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| s.is_success() || *s == reqwest::StatusCode::CONFLICT), "{statuses:?}");
    // Ten "join" clicks at once: one stay in the attendance, not ten.
    let join_url = clients[0].url(&format!("{meeting}/join"));
    let joins = (0..10).map(|_| clients[0].http.post(&join_url).form(&[("_csrf", token.as_str())]).send());
    for answer in futures_util::future::join_all(joins).await {
        assert!(answer.expect("answer").status().is_success());
    }
    let page = clients[0].get(&meeting).await;
    assert_eq!(page.body.matches("here now").count(), 1, "{}", page.body);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_team_ends_its_call_and_takes_its_recordings_with_it() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice"]).await;
    let alice = join(&app, &clients[0], &meeting).await;
    let started = clients[0].post_form(&format!("{meeting}/recordings"), &[]).await;
    assert!(started.status.is_success(), "{}", started.body);
    let recordings = app.data_dir.join("recordings");
    let dirs = || std::fs::read_dir(&recordings).map(|d| d.count()).unwrap_or(0);
    assert_eq!(dirs(), 1, "the recording writes its files");
    let team = meeting.split("/meetings/").next().expect("team path").to_owned();
    clients[0].post_form(&format!("{team}/delete"), &[("confirm", "Media")]).await.expect_ok_with("Hello, Alice");
    assert_eq!(alice.close_code().await.0, close::ENDED, "the call ended with the team");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !app.relay.hosted_meetings().is_empty() || dirs() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: rooms {:?}, {} recording folders",
            app.relay.hosted_meetings(),
            dirs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(clients[0].get(&meeting).await.status, reqwest::StatusCode::NOT_FOUND);
    app.finish().await;
}

/// A process's resident memory (KiB) and open file descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    let rss = line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc fd").count();
    (rss, fds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_and_live_streams_come_and_go_and_leave_nothing_behind() {
    let _turn = crate::support::WHOLE_MACHINE.lock().await;
    // A process of its own, so that its memory is Floo's alone.
    let data_dir = std::env::temp_dir().join(format!("floo-churn-{}", crate::support::unique_suffix()));
    let (child, base) = floo_process(&data_dir).await;
    let pid = child.id().expect("pid");
    let sign_in = |name| crate::support::signed_in_at(&base, name);
    let (alice, bob) = (sign_in("Alice").await, sign_in("Bob").await);
    let team = alice.post_form("/teams", &[("name", "Churn")]).await.url;
    let code = alice.get(&format!("{team}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await.expect_ok_with("Churn");
    let meeting = alice.post_form(&format!("{team}/meetings"), &[("title", "Revolving door")]).await.url;
    let topic = alice.get(&meeting).await.between("/topics/", "/");
    let events = format!("{team}/topics/{topic}/events");
    // Bob stays in the call throughout; Alice comes and goes, ten sessions at a time,
    // each with a page's live stream open while it lasts.
    let _bob = join_with_ticket(&ticket(&bob, &meeting).await).await;
    let churn = |rounds: usize| {
        let (alice, meeting, events) = (&alice, &meeting, &events);
        async move {
            for _ in 0..rounds {
                let visits = (0..10).map(|_| async move {
                    let stream = crate::support::SseStream::open(alice, events, None).await;
                    let peer = join_with_ticket(&ticket(alice, meeting).await).await;
                    peer.leave();
                    let _ = peer.session.closed().await;
                    drop(stream);
                });
                futures_util::future::join_all(visits).await;
            }
        }
    };
    // Settled once the descriptor count stops falling (sessions and streams closing).
    let settle = || async {
        let mut last = usize::MAX;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = footprint(pid);
            if now.1 >= last {
                return now;
            }
            last = now.1;
        }
        panic!("never settled");
    };
    churn(30).await; // warm up: pools, SQLite's page caches, the allocator's arenas
    let before = settle().await;
    churn(100).await; // 1,000 sessions and 1,000 live streams
    let after = settle().await;
    println!("RSS {} -> {} KiB, descriptors {} -> {}", before.0, after.0, before.1, after.1);
    assert!(after.0 * 10 <= before.0 * 11, "RSS grew more than 10 %: {} -> {} KiB", before.0, after.0);
    // A few come and go with idle keep-alive connections; one left per session or
    // stream would be a thousand.
    assert!(after.1 <= before.1 + 10, "descriptors left open: {} -> {}", before.1, after.1);
    // Bob's call is intact, and the page shows Alice gone.
    let page = bob.get(&meeting).await;
    assert_eq!(page.body.matches("here now").count(), 1, "only Bob is in the call");
    drop(child);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Waits for `n` tracks of other participants, subscribes to each, and returns them once
/// the relay has taken the subscriptions (a ping answered after them).
pub async fn subscribe_to_others<S: web_transport_trait::Session>(
    peer: &mut Peer<S>,
    n: usize,
) -> Vec<floo::media::wire::TrackInfo> {
    let mut tracks = Vec::new();
    while tracks.len() < n {
        if let ServerMessage::Track { track } = peer.wait_for(|m| matches!(m, ServerMessage::Track { .. })).await
            && track.participant != peer.you
        {
            peer.send(&ClientMessage::Subscribe { track: track.id }).await;
            tracks.push(track);
        }
    }
    peer.send(&ClientMessage::Ping { nonce: 3 }).await;
    peer.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 3 })).await;
    tracks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_participant_is_the_same_to_a_call_as_a_webtransport_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob", "Carol", "Mallory"]).await;
    let mut alice = join(&app, &clients[0], &meeting).await;
    let mut bob = join_by_websocket(&app, &clients[1], &meeting).await;
    // Everyone is told how Bob is connected; he is in the meeting like anyone else.
    // (News goes to everyone alike: Alice's own arrival may come first.)
    let ServerMessage::Joined { participant } =
        alice.wait_for(|m| matches!(m, ServerMessage::Joined { participant } if participant.name == "Bob")).await
    else {
        unreachable!()
    };
    assert_eq!((participant.name.as_str(), participant.transport), ("Bob", Transport::WebSocket));
    page_shows_eventually(&clients[2], &meeting, "In the meeting (2)").await;

    // Camera and microphone both ways, byte for byte.
    alice.announce_camera_and_microphone(1).await;
    bob.announce_camera_and_microphone(1).await;
    let from_bob = subscribe_to_others(&mut alice, 2).await;
    let from_alice = subscribe_to_others(&mut bob, 2).await;
    assert!(from_alice.iter().all(|t| t.participant == alice.you) && from_bob.iter().all(|t| t.participant == bob.you));
    let sent = frames(5);
    alice.publish_group(1, 0, &sent).await;
    let (header, received) = bob.receive_group().await;
    let camera = from_alice.iter().find(|t| t.kind == TrackKind::Camera).expect("Alice's camera");
    assert_eq!((header, &received), (GroupHeader { track: camera.id, sequence: 0 }, &sent));
    let voice = frames(2);
    bob.publish_group(2, 0, &voice).await;
    let (header, received) = alice.receive_group().await;
    let microphone = from_bob.iter().find(|t| t.kind == TrackKind::Audio).expect("Bob's microphone");
    assert_eq!((header.track, received), (microphone.id, voice));

    // A late joiner over the WebSocket starts from the cached group at once.
    let mut carol = join_by_websocket(&app, &clients[2], &meeting).await;
    carol.send(&ClientMessage::Subscribe { track: camera.id }).await;
    let (header, received) = carol.receive_group().await;
    assert_eq!((header.sequence, received), (0, sent));

    // Over the WebSocket too, a forged token and garbage close only that session, with
    // the same codes as over QUIC.
    let forged = connect_websocket(&app, "1.1.99999999999999.deadbeef").await.expect("the upgrade succeeds");
    let (code, reason) = tokio::time::timeout(DEADLINE, forged.closed()).await.map(close_of).expect("closed");
    assert_eq!(code, close::UNAUTHORIZED);
    assert!(reason.contains("token"), "{reason}");
    let mut mallory = join_by_websocket(&app, &clients[3], &meeting).await;
    mallory.control.write_all(&[3, b'{', b'x', b'}']).await.expect("write");
    assert_eq!(mallory.close_code().await.0, close::PROTOCOL);
    let mut mallory = join_by_websocket(&app, &clients[3], &meeting).await;
    mallory.announce_camera_and_microphone(0).await;
    let mut stream = mallory.session.open_uni().await.expect("open");
    let mut huge = GroupHeader { track: 1, sequence: 0 }.encode().to_vec();
    floo::media::wire::put_varint(&mut huge, 64 * 1024 * 1024);
    stream.write_all(&huge).await.expect("write");
    assert_eq!(mallory.close_code().await.0, close::TOO_LARGE);

    let next = frames(3);
    alice.publish_group(1, 1, &next).await;
    assert_eq!(bob.receive_group().await.1, next, "Bob carries on");

    // Leaving over the WebSocket is a leave like any other.
    bob.leave();
    alice.wait_for(|m| matches!(m, ServerMessage::Left { participant } if *participant == bob.you)).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_websocket_takes_only_upgrades_from_floos_own_pages() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let url = format!("{}/media/ws?token=x", app.base);
    let upgrade = |origin: &str, protocol: &str| {
        http.get(&url)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("origin", origin)
            .header("sec-websocket-protocol", protocol)
    };
    let plain = http.get(&url).send().await.expect("request");
    assert_eq!(plain.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(plain.text().await.unwrap_or_default().contains("meeting page"));
    let elsewhere = upgrade("https://evil.example", "qmux-02.floo-media").send().await.expect("request");
    assert_eq!(elsewhere.status(), reqwest::StatusCode::FORBIDDEN, "another site's page may not open a call socket");
    let old = upgrade(&app.base, "qmux-02, webtransport").send().await.expect("request");
    assert_eq!(old.status(), reqwest::StatusCode::BAD_REQUEST, "no version of Floo's protocol offered");
    let ours = upgrade(&app.base, "qmux-01.floo-media, qmux-02.floo-media").send().await.expect("request");
    assert_eq!(ours.status(), reqwest::StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(ours.headers()["sec-websocket-protocol"], "qmux-02.floo-media");
    assert_eq!(ours.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_loses_old_groups_and_slows_nobody_else() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob", "Sloth"]).await;
    let mut alice = join(&app, &clients[0], &meeting).await;
    let mut bob = join(&app, &clients[1], &meeting).await;
    let mut sloth = join_with_small_windows(&app, &clients[2], &meeting).await;
    alice
        .send(&ClientMessage::Announce {
            track: TrackAnnounce { id: 1, kind: TrackKind::Camera, layer: 0, config: serde_json::json!({}) },
        })
        .await;
    let ServerMessage::Track { track } = bob.wait_for(|m| matches!(m, ServerMessage::Track { .. })).await else {
        unreachable!()
    };
    for peer in [&mut bob, &mut sloth] {
        peer.send(&ClientMessage::Subscribe { track: track.id }).await;
        peer.send(&ClientMessage::Ping { nonce: 9 }).await;
        peer.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 9 })).await;
    }

    // Sloth never reads its group streams and grants little flow-control credit (as a
    // slow link would); Bob reads everything. Alice sends 30 groups of ~300 KB, newer
    // groups superseding older ones. Sloth takes each stream as it comes (a stream reset
    // before it is taken is never seen) but reads none until the end.
    let big: Vec<Bytes> = (0..10)
        .map(|i| encode_frame(&FrameInfo { keyframe: i == 0, timestamp_us: 0, level: 127 }, &vec![7; 30_000]))
        .collect();
    let sloth_session = sloth.session.clone();
    let sloth_takes = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(3), sloth_session.accept_uni()).await {
            streams.push(stream);
        }
        streams
    });
    let bob_reads = tokio::spawn(async move {
        let mut groups = Vec::new();
        while groups.len() < 30 {
            let (header, frames) = bob.receive_group().await;
            groups.push((header.sequence, frames.len()));
        }
        groups
    });
    let publisher = tokio::spawn(async move {
        for sequence in 0..30 {
            alice.publish_group(1, sequence, &big).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        alice
    });
    let groups = tokio::time::timeout(Duration::from_secs(30), bob_reads).await.expect("Bob keeps up").expect("task");
    assert!(groups.iter().all(|(_, frames)| *frames == 10), "Bob gets every group whole: {groups:?}");
    let _alice = publisher.await.expect("publisher");

    // The relay gave up groups on the way to Sloth: at least one of its streams was reset.
    let mut resets = 0;
    for mut stream in sloth_takes.await.expect("task") {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => break,
                Ok(Err(_)) => {
                    resets += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    assert!(resets > 0, "a subscriber that cannot keep up has old groups abandoned, not queued forever");
    app.finish().await;
}

/// Joins like `join`, but as a client that grants only 32 KiB of credit per stream and
/// 64 KiB per connection: not reading makes the relay's writes stall, like a slow link.
async fn join_with_small_windows(app: &TestApp, client: &Client, meeting: &str) -> Peer {
    let ticket = client.post_form(&format!("{meeting}/media"), &[]).await;
    let ticket: serde_json::Value = serde_json::from_str(&ticket.body).expect("ticket JSON");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls 1.3")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![web_transport_quinn::ALPN.as_bytes().to_vec()];
    let mut config = quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls"),
    ));
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(32 * 1024));
    transport.receive_window(quinn::VarInt::from_u32(64 * 1024));
    config.transport_config(std::sync::Arc::new(transport));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let url = format!(
        "https://127.0.0.1:{}/meeting?token={}",
        app.quic_addr.port(),
        ticket["token"].as_str().expect("token")
    );
    let session = web_transport_quinn::Client::new(endpoint, config)
        .connect(url::Url::parse(&url).expect("url"))
        .await
        .expect("connect");
    let (mut control, incoming) = session.open_bi().await.expect("control stream");
    control.write_all(&encode_control(&ClientMessage::Ping { nonce: 1 })).await.expect("ping");
    let mut peer = Peer { you: 0, session, control, incoming, reader: ControlReader::new(1 << 20) };
    let ServerMessage::Welcome { you, .. } = peer.next_message().await else {
        panic!("the first message is the welcome")
    };
    peer.you = you;
    peer
}

/// Test only: trusts the relay's self-signed certificate without checking it.
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The source's packets in file order: (video?, pts in µs, keyframe, data).
pub fn source_packets(path: &std::path::Path) -> Vec<(bool, i64, bool, Vec<u8>)> {
    crate::lipsync::marks::packets(path)
}

/// Publishes the packets in real time: a video group per keyframe, audio groups of ten.
pub async fn publish_paced<S: web_transport_trait::Session>(
    peer: &Peer<S>,
    packets: &[(bool, i64, bool, Vec<u8>)],
    seconds: f64,
) {
    let started = tokio::time::Instant::now();
    let (mut video, mut audio): (Option<S::SendStream>, Option<S::SendStream>) = (None, None);
    let (mut video_seq, mut audio_seq, mut audio_count) = (0u64, 0u64, 0u32);
    for (is_video, us, key, data) in packets {
        if *us as f64 / 1e6 > seconds {
            break;
        }
        tokio::time::sleep_until(started + Duration::from_micros((*us).max(0) as u64)).await;
        let frame = encode_frame(&FrameInfo { keyframe: *key, timestamp_us: (*us).max(0) as u64, level: 40 }, data);
        let (slot, track, seq, new_group) = if *is_video {
            (&mut video, 1, &mut video_seq, *key)
        } else {
            audio_count += 1;
            (&mut audio, 2, &mut audio_seq, audio_count % 10 == 1)
        };
        if new_group || slot.is_none() {
            if let Some(mut old) = slot.take() {
                let _ = old.finish();
            }
            let mut stream = peer.session.open_uni().await.expect("open group");
            stream.write_all(&GroupHeader { track, sequence: *seq }.encode()).await.expect("header");
            *seq += 1;
            *slot = Some(stream);
        }
        if let Some(stream) = slot.as_mut() {
            stream.write_all(&frame).await.expect("frame");
        }
    }
    for mut stream in [video, audio].into_iter().flatten() {
        let _ = stream.finish();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_shutdown_finishes_the_recording_and_sends_callers_off_to_reconnect() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--shutdown-grace", "10"]).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob"]).await;
    let mut alice = join(&app, &clients[0], &meeting).await;
    let bob = join(&app, &clients[1], &meeting).await;
    alice.announce_camera_and_microphone(1).await;
    let dir = crate::recording::scratch();
    let packets = source_packets(&crate::recording::source(&dir));
    clients[0].post_form(&format!("{meeting}/recordings"), &[]).await.expect_ok_with("Stop recording");
    alice.wait_for(|m| matches!(m, ServerMessage::Recording { on: true })).await;
    publish_paced(&alice, &packets, 1.5).await;

    // SIGTERM: both are sent off with the code their clients reconnect on.
    app.begin_shutdown();
    for peer in [&alice, &bob] {
        let (code, reason) = peer.close_code().await;
        assert_eq!(code, close::GOING_AWAY);
        assert!(reason.contains("restarting"), "{reason}");
    }
    let data_dir = app.shut_down().await;
    // The recording was finished, not left to be found interrupted at the next start.
    let db = format!("sqlite://{}", data_dir.join(floo::config::SQLITE_FILE).display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db).await.expect("database");
    let (state, interrupted): (String, i64) =
        sqlx::query_as("SELECT state, interrupted FROM recordings").fetch_one(&mut db).await.expect("the recording");
    assert!(matches!(state.as_str(), "composing" | "ready"), "{state}");
    assert_eq!(interrupted, 0);
    let (codecs, duration) = crate::recording::probe(&webm_in(&data_dir.join("recordings").join("1")));
    assert_eq!(codecs, vec!["vp8", "opus"]);
    assert!(duration > 0.5, "recorded {duration} s");
    let _ = std::fs::remove_dir_all(&data_dir);
}

crate::on_both_backends!(a_recorded_meeting_yields_a_playable_file_per_participant_that_members_download_in_ranges);

async fn a_recorded_meeting_yields_a_playable_file_per_participant_that_members_download_in_ranges(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob"]).await;
    let mut alice = join(&app, &clients[0], &meeting).await;
    let _bob = join(&app, &clients[1], &meeting).await;
    alice.announce_camera_and_microphone(1).await;

    // Bob, a plain member, may not start a recording; Alice, the host, may.
    let refused = clients[1].post_form(&format!("{meeting}/recordings"), &[]).await;
    assert_eq!(refused.status, reqwest::StatusCode::FORBIDDEN);
    let dir = crate::recording::scratch();
    let packets = source_packets(&crate::recording::source(&dir));
    let page = clients[0].post_form(&format!("{meeting}/recordings"), &[]).await;
    page.expect_ok_with("Stop recording").expect_ok_with("Alice started recording this meeting.");
    alice.wait_for(|m| matches!(m, ServerMessage::Recording { on: true })).await;
    publish_paced(&alice, &packets, 3.0).await;

    let page = clients[0].post_form(&format!("{meeting}/recordings/stop"), &[]).await;
    page.expect_ok_with("Alice stopped recording this meeting.").expect_ok_with("Alice's tracks");
    // The meeting video is composed in the background; the page shows the progress.
    let page = composed(&clients[1], &meeting).await;
    // The ops dashboard tells how fast it went.
    let (granted, _, err) = crate::ops::floo_admin(&app, &["grant", "--identity", "dev:alice"]);
    assert!(granted, "{err}");
    let ops = clients[0].get("/ops").await;
    ops.expect_ok_with("Latest compositions on this node").expect_ok_with("× real time");
    let file_id = page.between("/recording-files/", "\"");
    let team = meeting.split('/').nth(2).expect("team id");
    let link = format!("/teams/{team}/recording-files/{file_id}");
    // The team page and the meeting's forum topic list it too.
    clients[1].get(&format!("/teams/{team}")).await.expect_ok_with("Recording 1");
    let topic = page.between(&format!("/teams/{team}/topics/"), "/");
    clients[1].get(&format!("/teams/{team}/topics/{topic}")).await.expect_ok_with("Alice's tracks");

    // The file on disk: VP8 and Opus, about as long as what was sent.
    let recordings = app.data_dir.join("recordings");
    let file = webm_in(&recordings.join("1"));
    let (codecs, duration) = crate::recording::probe(&file);
    assert_eq!(codecs, vec!["vp8", "opus"]);
    assert!((duration - 3.0).abs() < 1.0, "recorded {duration} s of 3");

    // The meeting video: H.264 and AAC as long as the recording, for members only.
    let video_link = format!("/teams/{team}/recordings/1/video");
    assert!(page.body.contains(&video_link), "the page offers the meeting video");
    let video = clients[1].http.get(clients[1].url(&video_link)).send().await.expect("download");
    assert_eq!(video.status(), reqwest::StatusCode::OK);
    assert_eq!(video.headers()["content-type"], "video/mp4");
    let video_bytes = video.bytes().await.expect("body");
    let mp4 = recordings.join("1").join("meeting.mp4");
    assert_eq!(video_bytes.as_ref(), std::fs::read(&mp4).expect("mp4").as_slice());
    let streams = crate::recording::streams(&mp4);
    assert_eq!(streams.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), vec!["h264", "aac"]);
    assert!(streams.iter().all(|s| (s.2 - 3.0).abs() < 1.0), "{streams:?}");
    // Only Floo's user can read them (the hardening issue: they were 0644 in 0755).
    for (path, want) in [(&recordings, 0o700), (&recordings.join("1"), 0o700), (&file, 0o600), (&mp4, 0o600)] {
        assert_eq!(crate::hardening::mode(path), want, "{}", path.display());
    }

    // Members download it whole or in ranges; others get 404.
    let bytes = std::fs::read(&file).expect("read");
    let whole = clients[1].http.get(clients[1].url(&link)).send().await.expect("download");
    assert_eq!(whole.status(), reqwest::StatusCode::OK);
    assert_eq!(whole.headers()["content-type"], "video/webm");
    assert!(
        whole.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("attachment; filename=\"floo-recording-1-Alice")
    );
    assert_eq!(whole.bytes().await.expect("body").as_ref(), bytes.as_slice());
    let part = clients[1].http.get(clients[1].url(&link)).header("range", "bytes=100-199").send().await.expect("range");
    assert_eq!(part.status(), reqwest::StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], format!("bytes 100-199/{}", bytes.len()).as_str());
    assert_eq!(part.bytes().await.expect("body").as_ref(), &bytes[100..200]);
    // Past the end: 416 with the size, as it is (not turned into an error page).
    let past = format!("bytes={}-", bytes.len() + 10);
    let beyond = clients[1].http.get(clients[1].url(&link)).header("range", past).send().await.expect("range");
    assert_eq!(beyond.status(), reqwest::StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.headers()["content-range"], format!("bytes */{}", bytes.len()).as_str());
    let eve = app.signed_in("Eve").await;
    assert_eq!(eve.get(&link).await.status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(eve.get(&video_link).await.status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(eve.get(&format!("{meeting}/recordings")).await.status, reqwest::StatusCode::NOT_FOUND);

    // Only an admin deletes it; then the files are gone.
    let delete = format!("/teams/{team}/recordings/1/delete");
    assert_eq!(clients[1].post_form(&delete, &[]).await.status, reqwest::StatusCode::FORBIDDEN);
    assert_eq!(eve.post_form(&delete, &[]).await.status, reqwest::StatusCode::NOT_FOUND);
    clients[0].post_form(&delete, &[]).await.expect_ok_with("This meeting has not been recorded.");
    assert_eq!(clients[1].get(&link).await.status, reqwest::StatusCode::NOT_FOUND);
    assert!(!recordings.join("1").exists(), "the files are deleted");
    let _ = std::fs::remove_dir_all(dir);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_composition_with_its_reason_and_keeps_the_tracks() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice"]).await;
    let mut alice = join(&app, &clients[0], &meeting).await;
    alice.announce_camera_and_microphone(0).await;
    let scratch = crate::recording::scratch();
    let packets = source_packets(&crate::recording::source(&scratch));
    clients[0].post_form(&format!("{meeting}/recordings"), &[]).await.expect_ok_with("Stop recording");
    publish_paced(&alice, &packets, 2.0).await;
    // The composed video will be written where every write fails with ENOSPC, as on a
    // full disk: /dev/full, in place of the file the composer creates.
    let dir = app.data_dir.join("recordings").join("1");
    std::os::unix::fs::symlink("/dev/full", dir.join("meeting.mp4.part")).expect("symlink");
    clients[0].post_form(&format!("{meeting}/recordings/stop"), &[]).await.expect_ok_with("Alice's tracks");
    let mut page = clients[0].get(&meeting).await;
    for _ in 0..300 {
        if !page.body.contains("rec-composing") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        page = clients[0].get(&meeting).await;
    }
    page.expect_ok_with("rec-failed")
        .expect_ok_with("Composing the meeting's video failed")
        .expect_ok_with("No space left on device")
        .expect_ok_with("Alice's tracks");
    assert!(!page.body.contains("Meeting video (MP4)"));
    assert!(
        !dir.join("meeting.mp4").exists() && !dir.join("meeting.mp4.part").exists(),
        "nothing half-written is left"
    );
    // Nothing else is affected: the call goes on and the team's pages work.
    alice.send(&ClientMessage::Ping { nonce: 7 }).await;
    alice.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 7 })).await;
    let team = meeting.split('/').nth(2).expect("team id");
    clients[0].get(&format!("/teams/{team}")).await.expect_ok_with("Recording 1");
    let _ = std::fs::remove_dir_all(scratch);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_dev_certificate_serves_new_sessions_while_open_ones_go_on() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob"]).await;
    let mut alice = join(&app, &clients[0], &meeting).await;
    let old: serde_json::Value =
        serde_json::from_str(&clients[1].post_form(&format!("{meeting}/media"), &[]).await.body).expect("ticket");

    app.relay.renew_dev_certificate().expect("renew");

    // New tickets carry the new certificate's hash, and it admits.
    let fresh: serde_json::Value =
        serde_json::from_str(&clients[1].post_form(&format!("{meeting}/media"), &[]).await.body).expect("ticket");
    assert_ne!(fresh["certHash"], old["certHash"], "the hash changed");
    let _bob = join_with_ticket(&fresh).await;
    let me = alice.you;
    alice.wait_for(|m| matches!(m, ServerMessage::Joined { participant } if participant.id != me)).await;

    // The old hash no longer matches what the relay presents.
    let (port, old_hash, old_token) = ticket_parts(&old);
    let client =
        web_transport_quinn::ClientBuilder::new().with_server_certificate_hashes(vec![old_hash]).expect("client");
    let url = format!("https://127.0.0.1:{port}/meeting?token={old_token}");
    assert!(client.connect(url::Url::parse(&url).expect("url")).await.is_err(), "the old certificate is gone");

    // Alice's session, opened under the old certificate, goes on.
    alice.send(&ClientMessage::Ping { nonce: 9 }).await;
    alice.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 9 })).await;
    app.finish().await;
}

/// Waits for the meeting page to show a composed meeting video; returns the page.
pub async fn composed(client: &Client, meeting: &str) -> crate::support::Page {
    for _ in 0..300 {
        let page = client.get(meeting).await;
        if page.body.contains("Meeting video (MP4)") {
            return page;
        }
        assert!(!page.body.contains("rec-failed"), "the composition failed: {}", page.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the meeting video was not composed within a minute");
}

/// The (first) participant file of a recording directory.
fn webm_in(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("recording dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "webm"))
        .expect("a participant file")
}

/// `floo serve` as a process of its own on a data directory, so the test can kill it.
async fn floo_process(data_dir: &std::path::Path) -> (tokio::process::Child, String) {
    floo_process_with(data_dir, &["--metrics-addr", "127.0.0.1:0"]).await
}

/// The same, with more `floo serve` arguments.
pub async fn floo_process_with(data_dir: &std::path::Path, extra: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_floo"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start floo");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(url) = line.strip_prefix("Floo is running at ") {
                return url.trim().to_owned();
            }
        }
        panic!("floo exited before listening");
    })
    .await
    .expect("floo starts");
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_survives_the_server_being_killed_and_is_marked_interrupted_after_restart() {
    let data_dir = crate::recording::scratch();
    let (mut server, base) = floo_process(&data_dir).await;
    let alice = Client::new(&base);
    alice.post_form("/login/dev", &[("name", "Alice")]).await.expect_ok_with("Hello, Alice");
    let team = alice.post_form("/teams", &[("name", "Crash")]).await;
    let team_path = team.url.trim_start_matches(&base).to_owned();
    let meeting = alice.post_form(&format!("{team_path}/meetings"), &[("title", "Doomed")]).await;
    let meeting = meeting.url.trim_start_matches(&base).to_owned();
    let ticket: serde_json::Value =
        serde_json::from_str(&alice.post_form(&format!("{meeting}/media"), &[]).await.body).expect("ticket");
    let mut peer = join_with_ticket(&ticket).await;
    peer.announce_camera_and_microphone(0).await;
    let scratch = crate::recording::scratch();
    let packets = source_packets(&crate::recording::source(&scratch));
    alice.post_form(&format!("{meeting}/recordings"), &[]).await.expect_ok_with("Stop recording");
    publish_paced(&peer, &packets, 3.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the last frames reach the relay

    // kill -9, then start again on the same data.
    server.start_kill().expect("kill");
    server.wait().await.expect("killed");
    let (_server, base) = floo_process(&data_dir).await;
    let alice = Client::new(&base);
    alice.post_form("/login/dev", &[("name", "Alice")]).await.expect_ok_with("Hello, Alice");
    let page = alice.get(&meeting).await;
    page.expect_ok_with("interrupted").expect_ok_with("Alice's tracks");
    // Closed properly, it is composed like any other.
    composed(&alice, &meeting).await.expect_ok_with("interrupted");
    let dir = data_dir.join("recordings").join("1");
    let file = webm_in(&dir);
    let (codecs, duration) = crate::recording::probe(&file);
    assert_eq!(codecs, vec!["vp8", "opus"]);
    assert!((duration - 3.0).abs() < 2.0, "the file plays {duration} s of the 3 recorded");
    let _ = std::fs::remove_dir_all(scratch);
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_groups_reach_websocket_subscribers_whole_when_each_group_follows_the_last_at_once() {
    // Each group is its own stream, read on its own task; over a WebSocket a group's last
    // frame and the next group's start often arrive together, and the relay once dropped
    // that last frame (one in every group: a tenth of all audio).
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob"]).await;
    let mut alice = join_by_websocket(&app, &clients[0], &meeting).await;
    let mut subscribers = Vec::new();
    for _ in 0..4 {
        subscribers.push(join_by_websocket(&app, &clients[1], &meeting).await);
    }
    alice.announce_camera_and_microphone(0).await;
    let mut readers = Vec::new();
    for subscriber in &mut subscribers {
        subscribe_to_others(subscriber, 2).await;
        let session = subscriber.session.clone();
        // Every group as it comes, each on a task of its own (as the browser reads them).
        readers.push(tokio::spawn(async move {
            let mut groups = Vec::new();
            for _ in 0..3 {
                let mut stream = session.accept_uni().await.expect("a group");
                groups.push(tokio::spawn(async move {
                    let mut reader = GroupReader::new(1 << 20);
                    let mut frames = Vec::new();
                    while let Some(chunk) = stream.read_chunk(1 << 16).await.expect("read") {
                        reader.push(&chunk);
                        while let Some((_, info)) = reader.next_frame().expect("valid") {
                            frames.push(info.timestamp_us);
                        }
                    }
                    frames
                }));
            }
            let mut all = Vec::new();
            for group in groups {
                all.push(group.await.expect("reader"));
            }
            all
        }));
    }
    let frame = |i: u64| encode_frame(&FrameInfo { keyframe: i == 0, timestamp_us: i, level: 127 }, &[7; 2000]);
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    for sequence in 0..3 {
        let mut stream = alice.session.open_uni().await.expect("open");
        stream.write_all(&GroupHeader { track: 1, sequence }.encode()).await.expect("header");
        for i in 0..30 {
            tick.tick().await;
            stream.write_all(&frame(i)).await.expect("frame");
        }
        stream.finish().expect("finish");
    }
    for reader in readers {
        let groups = tokio::time::timeout(DEADLINE, reader).await.expect("in time").expect("reader");
        for frames in groups {
            assert_eq!(frames, (0..30).collect::<Vec<u64>>(), "every frame of every group, in order");
        }
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_stops_reading_its_control_stream_is_closed_and_the_others_carry_on() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (clients, meeting) = meeting(&app, &["Alice", "Bob", "Carol"]).await;
    // Alice grants 32 KiB of credit per stream and never reads her control stream again.
    let alice = join_with_small_windows(&app, &clients[0], &meeting).await;
    let mut bob = join(&app, &clients[1], &meeting).await;
    let mut carol = join(&app, &clients[2], &meeting).await;
    // Bob shows and withdraws a camera whose configuration is large, within the control
    // rate: each time, a message of 12 KB for everyone. Carol reads all of hers.
    let config = serde_json::json!({ "codec": "vp8", "description": "x".repeat(12_000) });
    let started = tokio::time::Instant::now();
    let mut closed = None;
    // Carol is told Alice left, maybe before the test sees Alice closed.
    let alice_left = std::cell::Cell::new(false);
    let saw_alice_leave = |m: &ServerMessage| {
        if matches!(m, ServerMessage::Left { participant } if *participant == alice.you) {
            alice_left.set(true);
        }
    };
    for nonce in 0..600u64 {
        let track = TrackAnnounce { id: 1, kind: TrackKind::Camera, layer: 0, config: config.clone() };
        bob.send(&ClientMessage::Announce { track }).await;
        bob.send(&ClientMessage::Unannounce { id: 1 }).await;
        carol.send(&ClientMessage::Ping { nonce }).await;
        carol
            .wait_for(|m| {
                saw_alice_leave(m);
                matches!(m, ServerMessage::Pong { nonce: n } if *n == nonce)
            })
            .await;
        if let Ok(error) = tokio::time::timeout(Duration::from_millis(50), alice.session.closed()).await {
            closed = Some(close_of(error));
            break;
        }
    }
    let (code, reason) = closed.expect("Alice, who reads nothing, is closed rather than queued for without end");
    println!("Alice closed after {:?}: {code:#x} {reason}", started.elapsed());
    assert_eq!(code, close::LAGGING);
    assert!(reason.contains("behind"), "{reason}");
    // Carol hears that Alice left and is still in the call; so is Bob.
    if !alice_left.get() {
        carol.wait_for(|m| matches!(m, ServerMessage::Left { participant } if *participant == alice.you)).await;
    }
    bob.send(&ClientMessage::Ping { nonce: 9_999 }).await;
    bob.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 9_999 })).await;
    // She is no longer "here now".
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while clients[1].get(&meeting).await.body.matches("here now").count() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "Alice still listed as here");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.finish().await;
}

/// A process's peak resident memory so far (KiB).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_outruns_the_room_is_slowed_down_not_queued_in_memory() {
    let _turn = crate::support::WHOLE_MACHINE.lock().await;
    let data_dir = std::env::temp_dir().join(format!("floo-flood-{}", crate::support::unique_suffix()));
    let (child, base) = floo_process(&data_dir).await;
    let pid = child.id().expect("pid");
    let names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace"];
    let mut clients = Vec::new();
    for name in names {
        clients.push(crate::support::signed_in_at(&base, name).await);
    }
    let team = clients[0].post_form("/teams", &[("name", "Flood")]).await.url;
    let code = clients[0].get(&format!("{team}/invite")).await.between("id=\"invite-code\">", "<");
    for client in &clients[1..] {
        client.post_form("/join", &[("code", &code)]).await.expect_ok_with("Flood");
    }
    let meeting = clients[0].post_form(&format!("{team}/meetings"), &[("title", "Torrent")]).await.url;
    let mut alice = join_with_ticket(&ticket(&clients[0], &meeting).await).await;
    let mut subscribers = Vec::new();
    for client in &clients[1..] {
        subscribers.push(join_with_ticket(&ticket(client, &meeting).await).await);
    }
    alice
        .send(&ClientMessage::Announce {
            track: TrackAnnounce { id: 1, kind: TrackKind::Camera, layer: 0, config: serde_json::json!({}) },
        })
        .await;
    // Six subscribers read everything they are sent, noting the groups that arrive whole.
    const GROUPS: u64 = 48;
    const FRAMES: usize = 40_000;
    let mut readers = Vec::new();
    for mut peer in subscribers {
        subscribe_to_others(&mut peer, 1).await;
        let session = peer.session.clone();
        readers.push(tokio::spawn(async move {
            let _peer = peer;
            let mut whole = Vec::new();
            while let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(20), session.accept_uni()).await {
                let mut reader = GroupReader::new(1 << 20);
                let mut frames = 0;
                let mut finished = false;
                while let Ok(Some(chunk)) = web_transport_trait::RecvStream::read_chunk(&mut stream, 1 << 16).await {
                    reader.push(&chunk);
                    while let Ok(Some(_)) = reader.next_frame() {
                        frames += 1;
                    }
                    finished = true;
                }
                if let (true, Ok(Some(header))) = (finished, reader.header())
                    && frames == FRAMES
                {
                    whole.push(header.sequence);
                    if header.sequence == GROUPS - 1 {
                        break;
                    }
                }
            }
            whole
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = peak_rss(pid);
    // Alice sends tiny frames as fast as her connection takes them: each costs the room far
    // more (six subscribers to serve) than it costs her or the relay's reader.
    let started = tokio::time::Instant::now();
    for sequence in 0..GROUPS {
        let mut group = GroupHeader { track: 1, sequence }.encode().to_vec();
        for i in 0..FRAMES {
            group.extend_from_slice(&encode_frame(&FrameInfo { keyframe: i == 0, timestamp_us: 0, level: 0 }, &[1; 8]));
        }
        let mut stream = alice.session.open_uni().await.expect("open group");
        stream.write_all(&group).await.expect("group");
        stream.finish().expect("finish");
    }
    let sent = started.elapsed();
    let mut last_whole = 0;
    for reader in readers {
        let whole = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("readers finish").expect("task");
        assert!(whole.contains(&(GROUPS - 1)), "every subscriber gets the last group whole: {whole:?}");
        last_whole += whole.len();
    }
    let after = peak_rss(pid);
    println!(
        "{} frames sent in {sent:?}; {last_whole} whole groups received by 6; peak RSS {before} -> {after} KiB",
        GROUPS as usize * FRAMES
    );
    assert!(after < before + 48 * 1024, "the relay held a flood in memory: peak RSS {before} -> {after} KiB");
    drop(child);
    let _ = std::fs::remove_dir_all(&data_dir);
}
