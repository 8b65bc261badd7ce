//! The relay's driver: a QUIC endpoint serving WebTransport, one task per session (its
//! control stream and incoming group streams), one task per meeting that owns the
//! sans-IO [`Room`] and decides, and one writer task per session that carries out the
//! room's orders for that subscriber's group streams (open, write, finish, abandon), so
//! that the writes to a hundred subscribers run side by side instead of one after the
//! other on the room's task. Admission needs a token minted for the (meeting, user) by the
//! meeting page; attendance and presence go to the store and bus.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::AsyncWrite;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::Instrument;
use web_transport_quinn::Session;

use super::close;
use super::room::{Cause, Limits, Output, Refusal, Room, SendId, SessionId};
use super::tls;
use super::token::{Admission, TokenKey};
use super::wire::{
    ClientMessage, ControlReader, FrameInfo, GroupReader, TrackKind, WireError, encode_control, frame_payload,
};
use crate::bus::{Bus, Event};
use crate::clock::now_ms;
use crate::recording::{FileOutcome, RecordedFrame, Recorder, TrackKind as RecordedKind};
use crate::store::Store;

/// Where and how the relay listens.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub quic_addr: SocketAddr,
    /// PEM certificate chain and key for production; without them a dev certificate.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub limits: Limits,
}

/// Group streams a session may be receiving at once.
const MAX_INCOMING_GROUPS: usize = 64;
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

/// The running relay; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    key: TokenKey,
    cert_hash: RwLock<Option<[u8; 32]>>,
    rooms: Mutex<HashMap<i64, mpsc::UnboundedSender<Input>>>,
    store: Store,
    bus: Bus,
    limits: Limits,
    next_session: AtomicU64,
    /// Names this process among the nodes of a deployment (random, new at each start).
    node: String,
}

impl Relay {
    /// Binds the QUIC endpoint and starts accepting sessions until `closing` turns true.
    pub async fn start(
        config: MediaConfig,
        store: Store,
        bus: Bus,
        mut closing: watch::Receiver<bool>,
    ) -> anyhow::Result<Relay> {
        let fresh = TokenKey::random().to_hex();
        let kept = store.media_secret(&fresh).await.context("reading the media token secret")?;
        let key = TokenKey::from_hex(&kept).context("the media token secret in the database is damaged")?;
        let (identity, dev) = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => (tls::load_identity(cert, key)?, false),
            (None, None) => (tls::dev_identity()?, true),
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let server_config = tls::server_config(&identity)?;
        let socket = bind_dual_stack(config.quic_addr)
            .with_context(|| format!("binding the QUIC address {}", config.quic_addr))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .context("starting the QUIC endpoint")?;
        let addr = endpoint.local_addr().context("reading the QUIC address")?;
        let relay = Relay {
            inner: Arc::new(Inner {
                endpoint: endpoint.clone(),
                addr,
                key,
                cert_hash: RwLock::new(identity.dev_hash),
                rooms: Mutex::new(HashMap::new()),
                store,
                bus,
                limits: config.limits,
                next_session: AtomicU64::new(1),
                node: TokenKey::random().to_hex()[..16].to_owned(),
            }),
        };
        if dev {
            tokio::spawn(renew_dev_certificate(relay.clone(), identity.dev_expires.unwrap_or(0)));
        }
        let accepting = relay.clone();
        tokio::spawn(async move {
            let mut server = web_transport_quinn::Server::new(endpoint.clone());
            loop {
                tokio::select! {
                    request = server.accept() => match request {
                        Some(request) => {
                            let relay = accepting.clone();
                            tokio::spawn(async move { relay.admit(request).await });
                        }
                        None => break,
                    },
                    _ = closing.wait_for(|c| *c) => {
                        endpoint.close(quinn::VarInt::from_u32(close::GOING_AWAY), b"server shutting down");
                        break;
                    }
                }
            }
        });
        Ok(relay)
    }

    /// The bound UDP address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// SHA-256 of the dev certificate, for `serverCertificateHashes` (None with a real one).
    pub fn cert_hash(&self) -> Option<[u8; 32]> {
        *self.inner.cert_hash.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Where browsers reach this relay (`host`: None for the page's own host).
    pub fn address(&self, host: Option<String>) -> super::placement::RelayAddress {
        super::placement::RelayAddress {
            host,
            port: self.inner.addr.port(),
            cert_hash: self.cert_hash().map(|h| h.to_vec()),
            node: self.inner.node.clone(),
        }
    }

    /// The same for every node of one deployment (nodes sharing a database), and different
    /// between deployments: it keeps their meetings apart in a shared Redis.
    pub fn deployment(&self) -> String {
        self.inner.key.fingerprint()
    }

    /// The meetings whose call this relay hosts now.
    pub fn hosted_meetings(&self) -> Vec<i64> {
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect()
    }

    /// Makes a new development certificate and serves it from now on, without a restart:
    /// sessions already open keep the old one, new tickets carry the new hash. Returns
    /// when the new certificate expires (Unix seconds).
    pub fn renew_dev_certificate(&self) -> Result<i64, tls::TlsError> {
        let identity = tls::dev_identity()?;
        let config = tls::server_config(&identity)?;
        self.inner.endpoint.set_server_config(Some(config));
        *self.inner.cert_hash.write().unwrap_or_else(|p| p.into_inner()) = identity.dev_hash;
        tracing::info!("development certificate renewed");
        Ok(identity.dev_expires.unwrap_or(0))
    }

    /// A token admitting `user_id` to `meeting_id` for the next minute.
    pub fn mint_token(&self, meeting_id: i64, user_id: i64) -> String {
        self.inner.key.mint(Admission { meeting_id, user_id }, now_ms())
    }

    /// Starts recording a meeting into `dir`; the meeting must have someone in it.
    pub async fn start_recording(&self, meeting_id: i64, dir: PathBuf) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        {
            let rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
            let room = rooms.get(&meeting_id).ok_or("nobody is in the call: join it first, then record")?;
            room.send(Input::StartRecording { dir, reply }).map_err(|_| "the call just ended".to_owned())?;
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot write to the recordings directory: {e}")),
            Err(_) => Err("the call just ended".into()),
        }
    }

    /// Stops recording a meeting and returns the files written (None if it was not recording).
    pub async fn stop_recording(&self, meeting_id: i64) -> Option<Vec<FileOutcome>> {
        let (reply, answer) = oneshot::channel();
        {
            let rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
            rooms.get(&meeting_id)?.send(Input::StopRecording { reply }).ok()?;
        }
        let recorder = answer.await.ok()??;
        tokio::task::spawn_blocking(move || recorder.stop()).await.ok()
    }

    /// The meeting ended: everyone in it is disconnected with a reason.
    pub fn end_meeting(&self, meeting_id: i64) {
        let rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(room) = rooms.get(&meeting_id) {
            let _ = room.send(Input::End);
        }
    }

    async fn admit(self, request: web_transport_quinn::Request) {
        let url = request.url.clone();
        let token = url.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
        let session = match request.ok().await {
            Ok(session) => session,
            Err(e) => return tracing::debug!(error = %e, "WebTransport handshake failed"),
        };
        if url.path() != "/meeting" {
            return session.close(close::PROTOCOL, b"unknown path: connect to /meeting");
        }
        let Some(admission) = token.and_then(|t| self.inner.key.verify(&t, now_ms())) else {
            return session.close(close::UNAUTHORIZED, b"invalid or expired admission token: reload the meeting page");
        };
        let found = match self.inner.store.meeting_admission(admission.meeting_id, admission.user_id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot check a meeting admission");
                return session.close(close::GOING_AWAY, b"the server cannot reach its database; try again");
            }
        };
        let Some(found) = found else {
            return session.close(close::UNAUTHORIZED, b"not a member of this meeting's team");
        };
        if !found.live {
            return session.close(close::ENDED, b"this meeting has ended");
        }
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "media_session",
            session = id,
            meeting = admission.meeting_id,
            user = admission.user_id
        );
        run_session(self, session, id, admission, found.team_id, found.display_name).instrument(span).await;
    }

    /// The room task of a meeting, started on first use. The caller holds the lock
    /// while sending, so a room never exits with an input in flight.
    fn send_to_room(&self, meeting_id: i64, team_id: i64, input: Input) {
        let _ = self.room(meeting_id, team_id).send(input);
    }

    /// The meeting's room task (started if needed). A group reader keeps it, rather than
    /// looking the room up for every frame.
    fn room(&self, meeting_id: i64, team_id: i64) -> mpsc::UnboundedSender<Input> {
        let mut rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(meeting_id)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_room(self.clone(), meeting_id, team_id, rx));
                tx
            })
            .clone()
    }
}

/// A UDP socket on `addr`; an IPv6 unspecified address also takes IPv4 (dual stack).
fn bind_dual_stack(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    Ok(socket)
}

/// Checks the development certificate every hour and renews it when it is near its end.
async fn renew_dev_certificate(relay: Relay, mut expires: i64) {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        if !tls::needs_renewal(expires, time::OffsetDateTime::now_utc().unix_timestamp()) {
            continue;
        }
        match relay.renew_dev_certificate() {
            Ok(until) => expires = until,
            Err(e) => tracing::error!(error = %e, "cannot renew the development certificate"),
        }
    }
}

/// What a room task hears.
enum Input {
    Join {
        session: SessionId,
        user_id: i64,
        name: String,
        handle: Box<SessionHandle>,
        admitted: oneshot::Sender<Result<(), Refusal>>,
    },
    Leave {
        session: SessionId,
    },
    Control {
        session: SessionId,
        message: ClientMessage,
    },
    GroupStart {
        session: SessionId,
        track: u64,
        sequence: u64,
    },
    Frame {
        session: SessionId,
        track: u64,
        sequence: u64,
        frame: Bytes,
        info: FrameInfo,
    },
    GroupEnd {
        session: SessionId,
        track: u64,
        sequence: u64,
    },
    Malformed {
        session: SessionId,
        error: WireError,
    },
    End,
    StartRecording {
        dir: PathBuf,
        reply: oneshot::Sender<std::io::Result<()>>,
    },
    StopRecording {
        reply: oneshot::Sender<Option<Recorder>>,
    },
}

struct SessionHandle {
    session: Session,
    user_id: i64,
    control: mpsc::UnboundedSender<Bytes>,
    /// The session's writer task (started when it is admitted).
    writer: Option<mpsc::UnboundedSender<WriterOrder>>,
}

/// What the room asks of a subscriber's writer task.
enum WriterOrder {
    Open { send: SendId, header: Bytes, priority: i32 },
    Write { send: SendId, frame: Bytes },
    Finish { send: SendId },
    Abandon { send: SendId, code: u32 },
}

/// A writer's report to the room: bytes still queued on a group stream, and whether the
/// stream is done with (finished, abandoned or gone).
struct WriterReport {
    send: SendId,
    queued: usize,
    done: bool,
    /// The connection's shortest round trip: its distance, without the queue that a slow
    /// link builds up (that queue must not buy its groups more time).
    rtt: Duration,
}

/// Reports of queued bytes are sent when they cross zero or move by this much.
const REPORT_STEP: usize = 16 * 1024;

/// A group stream to one subscriber, owned by its writer task. Frames are written at once
/// while the stream has send credit; a stream without credit (or not yet open) waits in
/// [`Outgoing::busy`] and comes back when it can take more.
struct OutStream {
    stream: Option<web_transport_quinn::SendStream>,
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    /// Bytes handed to a write that is waiting for credit.
    in_flight: usize,
    finish: bool,
    /// The stream is finished on the wire; it is kept until the subscriber has acknowledged
    /// all of it, so that the room can still give it up (a reset drops what quinn has not
    /// sent yet) if it arrives too late.
    finish_sent: bool,
    /// Given up: the stream is reset with this code.
    abandoned: Option<u32>,
    /// The queued bytes last reported to the room.
    reported: usize,
}

type Busy = Pin<Box<dyn Future<Output = (SendId, Option<web_transport_quinn::SendStream>)> + Send>>;

/// Every group stream of a subscriber, and the ones waiting to open or for credit.
#[derive(Default)]
struct Outgoing {
    streams: HashMap<SendId, OutStream>,
    busy: FuturesUnordered<Busy>,
    /// Streams finished on the wire and waiting for the subscriber's acknowledgement.
    finishing: usize,
}

impl Outgoing {
    fn open(&mut self, session: &Session, send: SendId, header: Bytes, priority: i32) {
        let session = session.clone();
        self.streams.insert(
            send,
            OutStream {
                stream: None,
                pending: VecDeque::new(),
                pending_bytes: 0,
                in_flight: 0,
                finish: false,
                finish_sent: false,
                abandoned: None,
                reported: 0,
            },
        );
        self.busy.push(Box::pin(async move {
            let Ok(mut stream) = session.open_uni().await else { return (send, None) };
            let _ = stream.set_priority(priority);
            let written = stream.write_all(&header).await.is_ok();
            (send, written.then_some(stream))
        }));
    }

    /// Writes what is pending without waiting; parks the stream if it runs out of credit.
    /// Returns the bytes still pending, or None once the stream is done with.
    fn pump(&mut self, send: SendId) -> Option<usize> {
        let out = self.streams.get_mut(&send)?;
        let Some(mut stream) = out.stream.take() else { return Some(out.pending_bytes + out.in_flight) };
        out.in_flight = 0;
        if let Some(code) = out.abandoned {
            let _ = stream.reset(code);
            self.remove(send);
            return None;
        }
        while let Some(front) = out.pending.front_mut() {
            let mut waker = std::task::Context::from_waker(std::task::Waker::noop());
            match Pin::new(&mut stream).poll_write(&mut waker, front) {
                std::task::Poll::Ready(Ok(n)) if n > 0 => {
                    out.pending_bytes -= n;
                    if n == front.len() {
                        out.pending.pop_front();
                    } else {
                        let _ = front.split_to(n);
                    }
                }
                std::task::Poll::Ready(_) => {
                    // The subscriber went away or stopped the stream.
                    self.remove(send);
                    return None;
                }
                std::task::Poll::Pending => {
                    // No credit: wait for it off the room's path, then come back.
                    let chunk = out.pending.pop_front().unwrap_or_default();
                    out.pending_bytes -= chunk.len();
                    out.in_flight = chunk.len();
                    self.busy.push(Box::pin(async move {
                        let ok = stream.write_all(&chunk).await.is_ok();
                        (send, ok.then_some(stream))
                    }));
                    return Some(out.pending_bytes + out.in_flight);
                }
            }
        }
        if out.finish && !out.finish_sent {
            // Written, not yet delivered: it stays until the subscriber acknowledges it.
            let _ = stream.finish();
            out.finish_sent = true;
            self.finishing += 1;
        }
        out.stream = Some(stream);
        Some(0)
    }

    /// Drops a stream the writer is done with.
    fn remove(&mut self, send: SendId) {
        if self.streams.remove(&send).is_some_and(|out| out.finish_sent) {
            self.finishing -= 1;
        }
    }

    /// Finished streams the subscriber has now received whole (or stopped): they are done
    /// with and forgotten.
    fn delivered(&mut self) -> Vec<SendId> {
        let mut waker = std::task::Context::from_waker(std::task::Waker::noop());
        let done: Vec<SendId> = self
            .streams
            .iter()
            .filter(|(_, out)| out.finish_sent)
            .filter(|(_, out)| {
                out.stream.as_ref().is_none_or(|stream| {
                    let stopped = std::pin::pin!(stream.stopped());
                    stopped.poll(&mut waker).is_ready()
                })
            })
            .map(|(send, _)| *send)
            .collect();
        for send in &done {
            self.remove(*send);
        }
        done
    }

    /// A stream came back from waiting (opened, or took its chunk).
    fn returned(&mut self, send: SendId, stream: Option<web_transport_quinn::SendStream>) -> Option<usize> {
        match (self.streams.get_mut(&send), stream) {
            (Some(out), Some(stream)) => {
                out.stream = Some(stream);
                self.pump(send)
            }
            _ => {
                self.remove(send);
                None
            }
        }
    }
}

/// A connection's shortest round trip, read from quinn's statistics at most twice a second.
#[derive(Default)]
struct Distance {
    read: Option<(Instant, Duration)>,
}

impl Distance {
    fn of(&mut self, session: &Session) -> Duration {
        match self.read {
            Some((at, rtt)) if at.elapsed() < Duration::from_millis(500) => rtt,
            _ => {
                let rtt = quinn::Connection::stats(session).path.min_rtt;
                self.read = Some((Instant::now(), rtt));
                rtt
            }
        }
    }
}

/// A subscriber's writer: carries out the room's orders on its group streams and tells
/// the room how much stays queued (so it can give up groups for a slow subscriber).
async fn run_writer(
    session: Session,
    mut orders: mpsc::UnboundedReceiver<WriterOrder>,
    reports: mpsc::UnboundedSender<WriterReport>,
) {
    let mut outgoing = Outgoing::default();
    // How often finished streams are checked for delivery.
    let mut delivery = tokio::time::interval(Duration::from_millis(20));
    delivery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut distance = Distance::default();
    let report = |outgoing: &mut Outgoing, distance: &mut Distance, send: SendId, left: Option<usize>| {
        let (queued, done) = match left {
            Some(queued) => (queued, false),
            None => (0, true),
        };
        if let Some(out) = outgoing.streams.get_mut(&send) {
            let moved = queued.abs_diff(out.reported) >= REPORT_STEP || (queued == 0) != (out.reported == 0);
            if !moved {
                return;
            }
            out.reported = queued;
        }
        let _ = reports.send(WriterReport { send, queued, done, rtt: distance.of(&session) });
    };
    loop {
        tokio::select! {
            order = orders.recv() => match order {
                Some(WriterOrder::Open { send, header, priority }) => outgoing.open(&session, send, header, priority),
                Some(WriterOrder::Write { send, frame }) => {
                    if let Some(out) = outgoing.streams.get_mut(&send) {
                        out.pending_bytes += frame.len();
                        out.pending.push_back(frame);
                        let left = outgoing.pump(send);
                        report(&mut outgoing, &mut distance, send, left);
                    }
                }
                Some(WriterOrder::Finish { send }) => {
                    if let Some(out) = outgoing.streams.get_mut(&send) {
                        out.finish = true;
                        let left = outgoing.pump(send);
                        report(&mut outgoing, &mut distance, send, left);
                    }
                }
                Some(WriterOrder::Abandon { send, code }) => {
                    if let Some(out) = outgoing.streams.get_mut(&send) {
                        out.abandoned = Some(code);
                        out.pending.clear();
                        out.pending_bytes = 0;
                        let left = outgoing.pump(send);
                        report(&mut outgoing, &mut distance, send, left);
                    }
                }
                // The room let the session go: its streams go with the writer.
                None => break,
            },
            Some((send, stream)) = outgoing.busy.next(), if !outgoing.busy.is_empty() => {
                let left = outgoing.returned(send, stream);
                report(&mut outgoing, &mut distance, send, left);
            }
            _ = delivery.tick(), if outgoing.finishing > 0 => {
                for send in outgoing.delivered() {
                    report(&mut outgoing, &mut distance, send, None);
                }
            }
        }
    }
}

async fn run_room(relay: Relay, meeting_id: i64, team_id: i64, mut rx: mpsc::UnboundedReceiver<Input>) {
    let mut room = Room::new(relay.inner.limits.clone());
    let mut sessions: HashMap<SessionId, SessionHandle> = HashMap::new();
    // Which session each open group stream belongs to.
    let mut owners: HashMap<SendId, SessionId> = HashMap::new();
    let (reports_tx, mut reports) = mpsc::unbounded_channel::<WriterReport>();
    let mut recorder: Option<Recorder> = None;
    let (attendance, attendance_rx) = mpsc::unbounded_channel();
    tokio::spawn(record_attendance(
        relay.inner.store.clone(),
        relay.inner.bus.clone(),
        meeting_id,
        team_id,
        attendance_rx,
    ));
    loop {
        let timeout = room.poll_timeout();
        let input = tokio::select! {
            input = rx.recv() => input,
            Some(report) = reports.recv() => {
                if let Some(&owner) = owners.get(&report.send) {
                    room.set_rtt(owner, report.rtt);
                }
                if report.done {
                    owners.remove(&report.send);
                }
                room.backlog(Instant::now(), report.send, report.queued);
                dispatch(&mut room, &mut sessions, &mut owners);
                continue;
            }
            () = sleep_until(timeout) => {
                room.handle_timeout(Instant::now());
                dispatch(&mut room, &mut sessions, &mut owners);
                continue;
            }
        };
        let now = Instant::now();
        match input {
            Some(Input::Join { session, user_id, name, mut handle, admitted }) => {
                let result = room.join(now, session, user_id, &name);
                if result.is_ok() {
                    let (writer, orders) = mpsc::unbounded_channel();
                    tokio::spawn(run_writer(handle.session.clone(), orders, reports_tx.clone()));
                    handle.writer = Some(writer);
                    sessions.insert(session, *handle);
                    let _ = attendance.send((true, user_id));
                }
                let _ = admitted.send(result);
            }
            Some(Input::Leave { session }) => {
                room.leave(session);
                owners.retain(|_, s| *s != session);
                if let Some(handle) = sessions.remove(&session)
                    && !sessions.values().any(|h| h.user_id == handle.user_id)
                {
                    let _ = attendance.send((false, handle.user_id));
                }
            }
            Some(Input::Control { session, message }) => room.control(now, session, message),
            Some(Input::GroupStart { session, track, sequence }) => room.group_start(now, session, track, sequence),
            Some(Input::Frame { session, track, sequence, frame, info }) => {
                if let Some(recorder) = &recorder {
                    record_frame(recorder, &room, session, track, &frame);
                }
                room.frame(now, session, track, sequence, frame, &info)
            }
            Some(Input::StartRecording { dir, reply }) => {
                let started = match recorder {
                    Some(_) => Ok(()),
                    None => Recorder::start(dir).map(|r| recorder = Some(r)),
                };
                if started.is_ok() {
                    room.set_recording(true);
                }
                let _ = reply.send(started);
            }
            Some(Input::StopRecording { reply }) => {
                if recorder.is_some() {
                    room.set_recording(false);
                }
                let _ = reply.send(recorder.take());
            }
            Some(Input::GroupEnd { session, track, sequence }) => room.group_end(session, track, sequence),
            Some(Input::Malformed { session, error }) => {
                tracing::info!(session, %error, "closing a media session that sent malformed data");
                if let Some(handle) = sessions.remove(&session) {
                    handle.session.close(error.code(), error.to_string().as_bytes());
                    if !sessions.values().any(|h| h.user_id == handle.user_id) {
                        let _ = attendance.send((false, handle.user_id));
                    }
                }
                room.leave(session);
                owners.retain(|_, s| *s != session);
            }
            Some(Input::End) => {
                if let Some(recorder) = recorder.take() {
                    // The meeting ended while recording: finish the files off this task.
                    tokio::task::spawn_blocking(move || recorder.stop());
                }
                for (_, handle) in sessions.drain() {
                    handle.session.close(close::ENDED, b"the meeting has ended");
                }
                break;
            }
            None => break,
        }
        dispatch(&mut room, &mut sessions, &mut owners);
        if room.is_empty() {
            let mut rooms = relay.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
            if rx.is_empty() {
                rooms.remove(&meeting_id);
                break;
            }
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
/// writer tasks, control messages to their control streams.
fn dispatch(
    room: &mut Room,
    sessions: &mut HashMap<SessionId, SessionHandle>,
    owners: &mut HashMap<SendId, SessionId>,
) {
    let order = |sessions: &HashMap<SessionId, SessionHandle>, session: Option<&SessionId>, order: WriterOrder| {
        session.and_then(|s| sessions.get(s)).and_then(|h| h.writer.as_ref()).is_some_and(|w| w.send(order).is_ok())
    };
    while let Some(output) = room.poll_output() {
        match output {
            Output::OpenGroup { session, send, header, priority } => {
                if order(sessions, Some(&session), WriterOrder::Open { send, header, priority }) {
                    owners.insert(send, session);
                } else {
                    room.backlog(Instant::now(), send, 0);
                }
            }
            Output::Write { send, frame } => {
                order(sessions, owners.get(&send), WriterOrder::Write { send, frame });
            }
            Output::Finish { send } => {
                if !order(sessions, owners.get(&send), WriterOrder::Finish { send }) {
                    owners.remove(&send);
                    room.backlog(Instant::now(), send, 0);
                }
            }
            Output::Abandon { send, cause } => {
                order(sessions, owners.get(&send), WriterOrder::Abandon { send, code: reset_code(cause) });
            }
            Output::Control { session, message } => {
                if let Some(handle) = sessions.get(&session) {
                    let _ = handle.control.send(encode_control(&message));
                }
            }
            Output::Close { session, code, reason } => {
                if let Some(handle) = sessions.remove(&session) {
                    handle.session.close(code, reason.as_bytes());
                }
                owners.retain(|_, s| *s != session);
            }
        }
    }
}

async fn record_attendance(
    store: Store,
    bus: Bus,
    meeting_id: i64,
    team_id: i64,
    mut changes: mpsc::UnboundedReceiver<(bool, i64)>,
) {
    while let Some((joined, user_id)) = changes.recv().await {
        let result = if joined {
            store.join_meeting(meeting_id, user_id, now_ms()).await.map(|_| ())
        } else {
            store.leave_meeting(meeting_id, user_id, now_ms()).await
        };
        match result {
            Ok(()) => bus.publish(Event::TeamChanged { team_id }),
            Err(e) => tracing::warn!(error = %e, meeting_id, user_id, "cannot record attendance"),
        }
    }
}

async fn run_session(relay: Relay, session: Session, id: SessionId, admission: Admission, team_id: i64, name: String) {
    let meeting = admission.meeting_id;
    // The client opens its control stream first.
    let (mut control_send, mut control_recv) =
        match tokio::time::timeout(Duration::from_secs(10), session.accept_bi()).await {
            Ok(Ok(streams)) => streams,
            _ => return session.close(close::PROTOCOL, b"no control stream"),
        };
    // Control messages are few and small, and some are urgent (a slow link is told its
    // groups are being dropped): they go before any media.
    let _ = control_send.set_priority(i32::MAX);
    let (control, mut outgoing) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if control_send.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let (admitted, admission_result) = oneshot::channel();
    let handle =
        Box::new(SessionHandle { session: session.clone(), user_id: admission.user_id, control, writer: None });
    relay.send_to_room(
        meeting,
        team_id,
        Input::Join { session: id, user_id: admission.user_id, name, handle, admitted },
    );
    match admission_result.await {
        Ok(Ok(())) => tracing::info!("joined"),
        Ok(Err(refusal)) => return session.close(refusal.code, refusal.reason.as_bytes()),
        Err(_) => return session.close(close::GOING_AWAY, b"the meeting could not be opened"),
    }
    let limits = relay.inner.limits.clone();
    let incoming = Arc::new(Semaphore::new(MAX_INCOMING_GROUPS));
    let mut reader = ControlReader::new(limits.max_control_message);
    let to_room = |input: Input| relay.send_to_room(meeting, team_id, input);
    loop {
        tokio::select! {
            chunk = control_recv.read_chunk(limits.max_control_message, true) => match chunk {
                Ok(Some(chunk)) => {
                    reader.push(&chunk.bytes);
                    loop {
                        match reader.next_message::<ClientMessage>() {
                            Ok(Some(message)) => to_room(Input::Control { session: id, message }),
                            Ok(None) => break,
                            Err(error) => {
                                to_room(Input::Malformed { session: id, error });
                                break;
                            }
                        }
                    }
                }
                _ => break,
            },
            stream = session.accept_uni() => match stream {
                Ok(stream) => {
                    let Ok(permit) = incoming.clone().try_acquire_owned() else {
                        to_room(Input::Malformed { session: id, error: WireError::TooLarge { what: "open group streams", size: MAX_INCOMING_GROUPS as u64 + 1, limit: MAX_INCOMING_GROUPS as u64 } });
                        break;
                    };
                    let relay = relay.clone();
                    let max_frame = limits.max_frame;
                    tokio::spawn(async move {
                        read_group(relay, meeting, team_id, id, stream, max_frame).await;
                        drop(permit);
                    });
                }
                Err(_) => break,
            },
            _ = session.closed() => break,
        }
    }
    relay.send_to_room(meeting, team_id, Input::Leave { session: id });
    tracing::info!("left");
}

async fn read_group(
    relay: Relay,
    meeting: i64,
    team_id: i64,
    session: SessionId,
    mut stream: web_transport_quinn::RecvStream,
    max_frame: usize,
) {
    let room = relay.room(meeting, team_id);
    let to_room = |input: Input| {
        let _ = room.send(input);
    };
    let mut reader = GroupReader::new(max_frame);
    let mut started = None;
    loop {
        match stream.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => {
                reader.push(&chunk.bytes);
                let header = match reader.header() {
                    Ok(Some(header)) => header,
                    Ok(None) => continue,
                    Err(error) => return to_room(Input::Malformed { session, error }),
                };
                if started.is_none() {
                    started = Some(header);
                    to_room(Input::GroupStart { session, track: header.track, sequence: header.sequence });
                }
                loop {
                    match reader.next_frame() {
                        Ok(Some((frame, info))) => to_room(Input::Frame {
                            session,
                            track: header.track,
                            sequence: header.sequence,
                            frame,
                            info,
                        }),
                        Ok(None) => break,
                        Err(error) => return to_room(Input::Malformed { session, error }),
                    }
                }
            }
            Ok(None) => {
                if reader.pending() > 0 {
                    return to_room(Input::Malformed {
                        session,
                        error: WireError::Malformed("group ends inside a frame"),
                    });
                }
                if let Some(header) = started {
                    to_room(Input::GroupEnd { session, track: header.track, sequence: header.sequence });
                }
                return;
            }
            // The publisher gave the group up (reset): nothing more will come.
            Err(_) => return,
        }
    }
}
