//! The application: binds its sockets (port 0 works; the bound addresses are exposed),
//! connects the store, and serves until shut down.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{Provider, oauth};
use crate::bus::Bus;
use crate::clock::now_ms;
use crate::config::Config;
use crate::http::{self, AppState, PostRate, Rate, Shared, StreamCap};
use crate::media::placement::Placement;
use crate::media::relay::{MediaConfig, Relay};
use crate::media::room::Limits;
use crate::recording::Composer;
use crate::store::Store;

/// A bound, ready-to-run Floo.
pub struct App {
    listener: TcpListener,
    closing: watch::Sender<bool>,
    http_addr: SocketAddr,
    metrics_addr: SocketAddr,
    limits: http::server::ServerLimits,
    grace: Duration,
    state: AppState,
}

impl App {
    /// Connects everything and binds the listeners; nothing is served until [`App::run`].
    pub async fn build(config: Config) -> anyhow::Result<App> {
        if config.database_url.is_none() {
            crate::files::private_dir(&config.data_dir)
                .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
        }
        let store = Store::connect(&config.database_url(), config.database_max_connections)
            .await
            .context("connecting to the database")?
            .with_search_time_limit(std::time::Duration::from_millis(config.search_time_limit_ms));
        if config.database_url.is_none() {
            for suffix in ["", "-wal", "-shm"] {
                let file = format!("{}{suffix}", crate::config::SQLITE_FILE);
                crate::files::make_private(&config.data_dir.join(&file))
                    .with_context(|| format!("making {file} private"))?;
            }
        }
        let recordings_dir = config.recordings_dir.clone().unwrap_or_else(|| config.data_dir.join("recordings"));
        crate::files::private_dir(&recordings_dir)
            .with_context(|| format!("creating the recordings directory {}", recordings_dir.display()))?;
        let settings = crate::recording::Settings { preset: config.compose_preset.clone(), ..Default::default() };
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding the HTTP address {}", config.http_addr))?;
        let http_addr = listener.local_addr().context("reading the bound HTTP address")?;
        let metrics_listener = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("binding the metrics address {}", config.metrics_addr))?;
        let metrics_addr = metrics_listener.local_addr().context("reading the bound metrics address")?;
        crate::metrics::serve(metrics_listener);
        crate::metrics::sample_forever(recordings_dir.clone());
        tracing::info!(address = %metrics_addr, "Prometheus metrics at /metrics");
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", display_addr(http_addr)))
            .trim_end_matches('/')
            .to_owned();
        let http_client = oauth::http_client()?;
        let providers = Provider::from_config(&config, &http_client).await.context("setting up sign-in providers")?;
        let dev_login = config.allow_dev_login || (providers.is_empty() && http_addr.ip().is_loopback());
        if dev_login && !providers.is_empty() {
            tracing::warn!("the development login is enabled beside real providers (--allow-dev-login)");
        }
        // Nodes sharing the database are one deployment; in a shared Redis, deployments keep
        // to their own events and placement keys.
        let key = crate::media::token::TokenKey::of_deployment(&store).await?;
        let deployment = key.fingerprint();
        let bus = match &config.redis_url {
            Some(url) => Bus::redis(url, &deployment).await.context("connecting to Redis")?,
            None => Bus::in_process(),
        };
        crate::metrics::watch_sources(store.clone(), bus.clone());
        let (closing, closing_rx) = watch::channel(false);
        let media = MediaConfig {
            quic_addr: config.quic_addr,
            tls_cert: config.tls_cert.clone(),
            tls_key: config.tls_key.clone(),
            limits: Limits {
                max_sessions: usize::from(config.max_participants),
                voices: config.forwarded_voices,
                ..Limits::default()
            },
            media_host: config.media_host.clone(),
            node_url: config.node_url.as_ref().map(|u| u.trim_end_matches('/').to_owned()),
        };
        let placement = match &config.redis_url {
            Some(url) => {
                Placement::redis(url, deployment).await.context("connecting to Redis for meeting placement")?
            }
            None => Placement::local(),
        };
        let relay = Relay::start(media, key, store.clone(), bus.clone(), placement.clone(), closing_rx.clone())
            .await
            .context("starting the media relay")?;
        {
            let (hosted, address, handing) = (relay.clone(), relay.clone(), relay.clone());
            placement.renew_forever(
                move || hosted.hosted_meetings(),
                move || address.address(),
                move |meeting_id| handing.hand_over(meeting_id),
            );
        }
        let me = relay.address();
        placement.heartbeat_forever(me.node.clone());
        if config.redis_url.is_none() {
            // One node: nothing is in a call before it starts, so whoever is still marked
            // as in one was left there by a crash (they are marked again as they rejoin).
            for (meeting_id, _) in store.meetings_with_open_attendance().await? {
                store.close_attendance(meeting_id, now_ms()).await?;
            }
        }
        crate::recording::recover_interrupted(&store, &recordings_dir, &placement, &me)
            .await
            .context("recovering interrupted recordings")?;
        let composer = Composer::new(
            store.clone(),
            bus.clone(),
            placement.clone(),
            recordings_dir.clone(),
            config.compose_jobs,
            settings,
        );
        let resumed = composer.resume().await.context("queueing unfinished compositions")?;
        if resumed > 0 {
            tracing::info!(recordings = resumed, "compositions queued again");
        }
        let calls = crate::media::figures::CallFigures::default();
        calls.sample(relay.clone(), closing_rx.clone());
        let state = AppState::new(Shared {
            live: crate::http::LiveViews::new(store.clone(), bus.clone()),
            calls,
            placement,
            closing: closing_rx,
            relay,
            recordings_dir,
            composer,
            store,
            bus,
            post_rate: PostRate::new(config.posts_per_minute, config.post_burst),
            create_rate: Rate::new(config.creations_per_minute, config.creation_burst),
            search_rate: Rate::new(config.searches_per_minute, config.searches_per_minute),
            action_rate: Rate::new(config.actions_per_minute, config.actions_per_minute),
            join_guesses: Rate::new(JOIN_GUESSES_PER_MINUTE, JOIN_GUESS_BURST),
            streams: StreamCap::new(config.max_streams_per_user.max(1)),
            dev_login,
            secure_cookies: public_url.starts_with("https://"),
            public_url,
            providers,
            session_hours: config.session_hours.max(1),
            started: std::time::Instant::now(),
            admin_emails: config
                .admin_emails
                .iter()
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
            http_client,
        });
        {
            // Other nodes ask this one to act on the calls it hosts.
            let acting = state.clone();
            state.placement.serve(me, move |command| {
                let state = acting.clone();
                async move { crate::http::calls::carry_out(&state, command).await }
            });
        }
        // With Redis, every node tells the others its figures for their dashboards.
        let address = config
            .node_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{}", display_addr(http_addr)));
        http::report_node_forever(&state, address);
        let limits = http::server::ServerLimits {
            max_connections: config.max_http_connections,
            headers: Duration::from_secs(config.http_header_timeout.max(1)),
            body: Duration::from_secs(config.http_body_timeout.max(1)),
        };
        let grace = Duration::from_secs(config.shutdown_grace);
        Ok(App { listener, closing, http_addr, metrics_addr, limits, grace, state })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The media relay's UDP address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.state.relay.addr()
    }

    /// SHA-256 of the relay's development certificate, if it uses one.
    pub fn cert_hash(&self) -> Option<[u8; 32]> {
        self.state.relay.cert_hash()
    }

    /// The relay, for minting admission tokens (tests use it as a meeting page would).
    pub fn relay(&self) -> crate::media::relay::Relay {
        self.state.relay.clone()
    }

    /// The address users reach this server at.
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    /// Serves until `shutdown` turns true, then drains open requests.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let sweeper = tokio::spawn(sweep_expired_sessions(store.clone()));
        let dead_hosts = tokio::spawn(http::calls::sweep_dead_hosts(self.state.clone()));
        let failed_recordings = self
            .state
            .relay
            .recording_failures()
            .map(|failures| tokio::spawn(http::recordings::stop_failed_recordings(self.state.clone(), failures)));
        let draining = self.state.clone();
        let grace = self.grace;
        let router = http::router(self.state);
        let closing = self.closing;
        // Keep what waits in the kernel to be sent short, so that media over a
        // WebSocket queues where the relay can still drop it (see media::writer).
        let tune = |tcp: &tokio::net::TcpStream| {
            let _ = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(UNSENT_LOW_WATER);
            let _ = tcp.set_nodelay(true);
        };
        let stopping = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            // Calls first, while pages still answer (the clients reconnect through them).
            drain_calls(&draining, grace).await;
            // Live streams never end by themselves: end them so connections drain.
            let _ = closing.send(true);
        };
        http::server::serve(self.listener, router, self.limits, tune, stopping).await;
        sweeper.abort();
        dead_hosts.abort();
        if let Some(task) = failed_recordings {
            task.abort();
        }
        store.close().await;
        Ok(())
    }
}

/// A planned shutdown: recordings under way here are stopped and their files finished
/// (queued for composition, which resumes at the next start) instead of being found
/// interrupted; then everyone in a call here is sent away with a code their clients
/// reconnect on, and this node gives up its claims so that the meetings move to a node
/// that stays. All within `grace`.
async fn drain_calls(state: &AppState, grace: Duration) {
    let work = async {
        for meeting_id in state.relay.hosted_meetings() {
            let stopped = match state.store.active_recording(meeting_id).await {
                Ok(Some(id)) => http::calls::stop_recording(state, meeting_id, id).await,
                Ok(None) => Ok(()),
                Err(e) => Err(crate::media::placement::CallError::Unavailable(e.to_string())),
            };
            if let Err(reason) = stopped {
                tracing::warn!(meeting_id, %reason, "a recording could not be finished before shutdown");
            }
        }
        let me = state.relay.address();
        let hosted = state.relay.drain();
        for &meeting_id in &hosted {
            state.placement.release(meeting_id, &me).await;
        }
        while !state.relay.hosted_meetings().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The clients close their connections themselves once told (a moment each).
        state.relay.connections_gone(Duration::from_secs(2)).await;
        hosted.len()
    };
    match tokio::time::timeout(grace, work).await {
        Ok(0) => {}
        Ok(calls) => tracing::info!(calls, "calls handed over for shutdown"),
        Err(_) => tracing::warn!(
            grace_seconds = grace.as_secs(),
            "the shutdown grace ran out before every call was handed over"
        ),
    }
}

/// Wrong invite codes a user or an address may try at once, then per minute: a person
/// mistyping gets several tries; guessing a 50-bit code at this pace is hopeless.
const JOIN_GUESS_BURST: u32 = 10;
const JOIN_GUESSES_PER_MINUTE: u32 = 5;

/// Bytes a TCP connection may hold unsent in the kernel before writes wait: enough to
/// keep a link busy, little enough that late media is dropped in the relay rather than
/// delivered late.
const UNSENT_LOW_WATER: u32 = 32 * 1024;

/// The address to print and link to: an unspecified bind (`0.0.0.0`, `[::]`) is reached
/// through `localhost`; anything else as bound (loopback is a secure context as is).
fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() { format!("localhost:{}", addr.port()) } else { addr.to_string() }
}

/// Forgets expired sessions and abandoned logins every hour.
async fn sweep_expired_sessions(store: Store) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let now = now_ms();
        match store.delete_expired_sessions(now, now - 3_600_000).await {
            Ok(n) if n > 0 => tracing::info!(sessions = n, "expired sessions removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove expired sessions"),
        }
    }
}
