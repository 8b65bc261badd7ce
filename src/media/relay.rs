//! The relay's front: the QUIC endpoint serving WebTransport and the WebSocket sessions
//! the HTTP server hands over, admission (the token a meeting page minted, membership, a
//! live meeting), and the relay's API to the rest of Floo (tokens, recording, ending a
//! meeting). Each admitted session runs the same transport-independent code
//! ([`super::session`]) and joins its meeting's room task ([`super::room_task`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::close;
use super::link::Link;
use super::room::Limits;
pub use super::room_task::Figures;
use super::room_task::{Input, run_room};
use super::session::run_session;
use super::tls;
use super::token::{Admission, TokenKey, UsedTickets};
use super::wire::{CallSettings, Transport};
use crate::bus::Bus;
use crate::clock::now_ms;
use crate::recording::FileOutcome;
use crate::store::Store;

/// How long a refused session is kept for its control stream before it is closed (see
/// [`Relay::start_session`]).
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// Where and how the relay listens.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub quic_addr: SocketAddr,
    /// PEM certificate chain and key for production; without them a dev certificate.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub limits: Limits,
    /// The host browsers use for this relay (None: the page's host).
    pub media_host: Option<String>,
    /// This node's own HTTP address, for the WebSocket fallback (None: the page's).
    pub node_url: Option<String>,
}

/// The running relay; cheap to clone.
/// Why a draining node sends people away (their clients reconnect by themselves).
const RESTARTING: &str = "this server is restarting; reconnecting";

#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    key: TokenKey,
    used_tickets: UsedTickets,
    /// Set once shutdown starts: see [`Relay::drain`].
    draining: std::sync::atomic::AtomicBool,
    cert_hash: RwLock<Option<[u8; 32]>>,
    /// Each meeting's room task. Its inbox is unbounded on purpose: what a peer can put
    /// there without end (control messages, frames, group starts and ends) carries credit
    /// from that session's budget (see [`super::session`]), and the rest (joins, leaves,
    /// recording commands, end) comes at most once per session or per request.
    rooms: Mutex<HashMap<i64, mpsc::UnboundedSender<Input>>>,
    store: Store,
    bus: Bus,
    /// Which node hosts each call: a session for a call hosted elsewhere is sent there.
    placement: super::placement::Placement,
    limits: Limits,
    next_session: AtomicU64,
    /// Names this process among the nodes of a deployment (random, new at each start).
    node: String,
    media_host: Option<String>,
    node_url: Option<String>,
    /// The browser each (meeting, user) last asked for a ticket from, for the dashboard.
    browsers: Mutex<HashMap<(i64, i64), String>>,
    /// Recordings that could not write (a full disk): (meeting, why), for the app to stop
    /// them and say so; the receiver is taken once ([`Relay::recording_failures`]).
    recording_failed: mpsc::UnboundedSender<(i64, String)>,
    recording_failures: Mutex<Option<mpsc::UnboundedReceiver<(i64, String)>>>,
}

/// How many (meeting, user) browsers are remembered at most; past it they start again.
const MAX_BROWSERS: usize = 10_000;

/// A browser's name and major version from its user agent ("Firefox 153", "Chrome 156"),
/// or the first 40 characters of it.
fn browser_name(user_agent: &str) -> String {
    // Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
    for (token, name) in
        [("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Version/", "Safari")]
    {
        if let Some(at) = user_agent.find(token) {
            let version: String = user_agent[at + token.len()..].chars().take_while(char::is_ascii_digit).collect();
            return format!("{name} {version}").trim_end().to_owned();
        }
    }
    user_agent.chars().take(40).collect()
}

impl Relay {
    /// Binds the QUIC endpoint and starts accepting sessions until `closing` turns true;
    /// `key` is the deployment's (see [`TokenKey::of_deployment`]).
    pub async fn start(
        config: MediaConfig,
        key: TokenKey,
        store: Store,
        bus: Bus,
        placement: super::placement::Placement,
        mut closing: watch::Receiver<bool>,
    ) -> anyhow::Result<Relay> {
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
        let (recording_failed, recording_failures) = mpsc::unbounded_channel();
        let relay = Relay {
            inner: Arc::new(Inner {
                endpoint: endpoint.clone(),
                addr,
                key,
                used_tickets: UsedTickets::default(),
                draining: Default::default(),
                cert_hash: RwLock::new(identity.dev_hash),
                rooms: Mutex::new(HashMap::new()),
                store,
                bus,
                placement,
                limits: config.limits,
                next_session: AtomicU64::new(1),
                node: TokenKey::random().to_hex()[..16].to_owned(),
                media_host: config.media_host,
                node_url: config.node_url,
                browsers: Mutex::new(HashMap::new()),
                recording_failed,
                recording_failures: Mutex::new(Some(recording_failures)),
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

    /// Where browsers reach this relay.
    pub fn address(&self) -> super::placement::RelayAddress {
        super::placement::RelayAddress {
            host: self.inner.media_host.clone(),
            port: self.inner.addr.port(),
            cert_hash: self.cert_hash().map(|h| h.to_vec()),
            node: self.inner.node.clone(),
            node_url: self.inner.node_url.clone(),
        }
    }

    /// Notes the browser a ticket to `meeting_id` was asked from (its user agent).
    pub fn note_browser(&self, meeting_id: i64, user_id: i64, user_agent: &str) {
        let mut browsers = self.inner.browsers.lock().unwrap_or_else(|p| p.into_inner());
        if browsers.len() >= MAX_BROWSERS {
            browsers.clear();
        }
        browsers.insert((meeting_id, user_id), browser_name(user_agent));
    }

    pub(super) fn browser_of(&self, meeting_id: i64, user_id: i64) -> Option<String> {
        self.inner.browsers.lock().unwrap_or_else(|p| p.into_inner()).get(&(meeting_id, user_id)).cloned()
    }

    /// The figures of everyone connected to a meeting's call here (None: not hosted here).
    pub async fn figures(&self, meeting_id: i64) -> Option<Vec<Figures>> {
        let (reply, answer) = oneshot::channel();
        {
            let rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
            rooms.get(&meeting_id)?.send(Input::Figures { reply }).ok()?;
        }
        answer.await.ok()
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

    /// The deployment's key (it also binds CSRF tokens to sessions).
    pub fn key(&self) -> &TokenKey {
        &self.inner.key
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
            let _ = room.send(Input::End { code: close::ENDED, reason: "the meeting has ended" });
        }
    }

    /// This node is shutting down: no session is admitted from now on, and everyone in a
    /// call here is sent away with [`close::GOING_AWAY`] (their clients reconnect, to the
    /// node that hosts the meeting next). Returns the meetings that were hosted here.
    pub fn drain(&self) -> Vec<i64> {
        self.inner.draining.store(true, Ordering::SeqCst);
        let rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        for room in rooms.values() {
            let _ = room.send(Input::End { code: close::GOING_AWAY, reason: RESTARTING });
        }
        rooms.keys().copied().collect()
    }

    /// Another node hosts this meeting's call (a split after a Redis outage): everyone in
    /// the call here is sent off with [`close::GOING_AWAY`], and their clients reconnect
    /// to that node (tickets now name it).
    pub fn hand_over(&self, meeting_id: i64) {
        let rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(room) = rooms.get(&meeting_id) {
            let _ = room
                .send(Input::End { code: close::GOING_AWAY, reason: "the call moved to another server; reconnecting" });
        }
    }

    /// Waits, at most `limit`, until no QUIC connection is open: the clients of a draining
    /// node close their own connections once told to go, and the node closes its endpoint
    /// only after that (or the limit).
    pub async fn connections_gone(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.inner.endpoint.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether this node is shutting down (it hosts no new calls).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// A WebTransport session request from the QUIC endpoint.
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
        self.start_session(session, token).await;
    }

    /// A WebSocket the HTTP server has upgraded for the media protocol (`subprotocol` is
    /// the QMux subprotocol it agreed with the browser): the same session as over QUIC.
    pub async fn serve_websocket<T>(&self, socket: T, subprotocol: &str, token: Option<String>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let session = super::websocket::accept(socket, subprotocol).await;
        self.clone().start_session(session, token).await;
    }

    /// Checks the admission token, membership and that the meeting is live, then runs the
    /// session until it ends; a refused session is closed with a code and a reason.
    async fn start_session<L: Link>(self, link: L, token: Option<String>)
    where
        L::SendStream: Send + 'static,
        L::RecvStream: Send + 'static,
    {
        let admitted = match self.authorize(token, L::TRANSPORT).await {
            Ok(admitted) => admitted,
            Err((code, reason)) => {
                // A session closed the moment it opens can lose its reason over the
                // WebSocket: QMux's writer may not have flushed its transport parameters
                // yet, and the close then races the teardown (seen under load). The
                // client opens its control stream first thing; once that has arrived,
                // the session is established both ways and the close goes out whole.
                let _ = tokio::time::timeout(REFUSAL_WAIT, link.accept_bi()).await;
                return link.close(code, reason);
            }
        };
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "media_session",
            session = id,
            meeting = admitted.admission.meeting_id,
            user = admitted.admission.user_id
        );
        run_session(self, link, id, admitted).instrument(span).await;
    }

    async fn authorize(&self, token: Option<String>, transport: Transport) -> Result<Admitted, (u32, &'static str)> {
        if self.is_draining() {
            return Err((close::GOING_AWAY, RESTARTING));
        }
        let now = now_ms();
        let Some(ticket) = token.and_then(|t| self.inner.key.verify(&t, now)) else {
            return Err((close::UNAUTHORIZED, "invalid or expired admission token: reload the meeting page"));
        };
        if !self.inner.used_tickets.first_use(&ticket, transport, now) {
            return Err((close::UNAUTHORIZED, "this admission token was used already: reload the meeting page"));
        }
        let admission = ticket.admission;
        let found = match self.inner.store.meeting_admission(admission.meeting_id, admission.user_id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot check a meeting admission");
                return Err((close::GOING_AWAY, "the server cannot reach its database; try again"));
            }
        };
        let Some(found) = found else {
            return Err((close::UNAUTHORIZED, "not a member of this meeting's team"));
        };
        if !found.live {
            return Err((close::ENDED, "this meeting has ended"));
        }
        if found.removed {
            return Err((close::REMOVED, "a host removed you from this meeting"));
        }
        // A ticket from before the call moved (another node took it over after a Redis
        // outage, say): one call per meeting, so the client reconnects with a fresh ticket.
        if let Ok(Some(host)) = self.inner.placement.elsewhere(admission.meeting_id, &self.address()).await {
            tracing::info!(meeting = admission.meeting_id, host = %host.node, "sent a session to the call's host");
            return Err((close::GOING_AWAY, "the call is on another server; reconnecting"));
        }
        Ok(Admitted {
            admission,
            team_id: found.team_id,
            display_name: found.display_name,
            host: found.host,
            admitted: found.admitted,
            settings: CallSettings { ask_to_join: found.ask_to_join, quiet_above: found.quiet_above },
        })
    }

    /// Sends to a meeting's room task, started on first use. The lock is held while
    /// sending, and an empty room forgets itself under the same lock only when no input
    /// is waiting (see [`Relay::forget_room_if_idle`]), so no input is ever sent to a room
    /// that has just gone.
    pub(super) fn send_to_room(&self, meeting_id: i64, team_id: i64, input: Input) {
        let mut rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.room_in(&mut rooms, meeting_id, team_id).send(input);
    }

    /// The meeting's room task (started if needed). A group reader keeps it, rather than
    /// looking the room up for every frame (frames sent after the room went are lost with
    /// it: it only goes when nobody is left to receive them).
    pub(super) fn room(&self, meeting_id: i64, team_id: i64) -> mpsc::UnboundedSender<Input> {
        let mut rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        self.room_in(&mut rooms, meeting_id, team_id).clone()
    }

    fn room_in<'a>(
        &self,
        rooms: &'a mut HashMap<i64, mpsc::UnboundedSender<Input>>,
        meeting_id: i64,
        team_id: i64,
    ) -> &'a mpsc::UnboundedSender<Input> {
        rooms.entry(meeting_id).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_room(self.clone(), meeting_id, team_id, rx));
            tx
        })
    }

    /// An empty room forgets itself unless an input (a joiner) is on its way; true if it
    /// did and its task should end.
    pub(super) fn forget_room_if_idle(&self, meeting_id: i64, inputs: &mpsc::UnboundedReceiver<Input>) -> bool {
        let mut rooms = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if inputs.is_empty() {
            rooms.remove(&meeting_id);
            return true;
        }
        false
    }

    /// An ended meeting's room leaves the map whatever is queued for it.
    pub(super) fn forget_room(&self, meeting_id: i64) {
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner()).remove(&meeting_id);
    }

    pub(super) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(super) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(super) fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// Reports that `meeting_id`'s recording cannot write any more.
    pub(super) fn recording_failed(&self, meeting_id: i64, reason: String) {
        let _ = self.inner.recording_failed.send((meeting_id, reason));
    }

    /// The recordings that failed as they went (a full disk): (meeting, why). Once; the
    /// app stops each and tells the meeting.
    pub fn recording_failures(&self) -> Option<mpsc::UnboundedReceiver<(i64, String)>> {
        self.inner.recording_failures.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A session the relay let in: who, into which meeting of which team.
pub(super) struct Admitted {
    pub admission: Admission,
    pub team_id: i64,
    pub display_name: String,
    /// They run the meeting (its creator, or an admin of the team).
    pub host: bool,
    /// A host let them in from the lobby before.
    pub admitted: bool,
    /// How the meeting admits people, as kept with it.
    pub settings: CallSettings,
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

#[cfg(test)]
mod tests {
    use super::browser_name;

    #[test]
    fn browsers_are_named_by_what_their_user_agent_says_first() {
        let chrome =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.8078.73 Safari/537.36";
        assert_eq!(browser_name(chrome), "Chrome 156");
        assert_eq!(
            browser_name("Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0"),
            "Firefox 153"
        );
        assert_eq!(browser_name(&format!("{chrome} Edg/156.0.1")), "Edge 156");
        let safari = "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15";
        assert_eq!(browser_name(safari), "Safari 18");
        assert_eq!(browser_name("curl/8.5.0"), "curl/8.5.0");
    }
}
