//! Configuration: one clap `Config` read from flags and `FLOO_*` environment variables.
//! `floo serve --help` is the reference; `.env.example` lists the same names.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The embedded database's file in the data directory (with its `-wal` and `-shm`).
pub const SQLITE_FILE: &str = "floo.db";

/// The command line of the `floo` binary.
#[derive(Debug, Parser)]
#[command(name = "floo", version, about = "Floo: self-hosted team meetings in one binary")]
pub struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per
    /// line, with the request id of every HTTP request and the meeting and session ids
    /// of every relay line) for log collectors.
    #[arg(long, env = "FLOO_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Floo server.
    Serve(Box<Config>),
    /// Instance admins: who may open the ops dashboard (`/ops`).
    Admin(AdminArgs),
    /// Copies the database (a consistent snapshot, while Floo runs), the data directory's
    /// other files and the recordings into a new directory, with a manifest of sizes and
    /// checksums.
    Backup(BackupArgs),
    /// Restores a backup into an empty data directory (and an empty PostgreSQL database),
    /// after checking every file against the manifest. Start Floo on it afterwards.
    Restore(BackupArgs),
}

/// `floo backup DIR` and `floo restore DIR`: the data options of `floo serve`.
#[derive(Debug, Clone, Parser)]
pub struct BackupArgs {
    /// The backup's directory (new or empty for a backup).
    pub dir: PathBuf,

    /// Directory of the default SQLite database and Floo's other files.
    #[arg(long, env = "FLOO_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database URL, as for `floo serve` (PostgreSQL: `pg_dump` and `pg_restore` are used).
    #[arg(long, env = "FLOO_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where recordings are kept, as for `floo serve`.
    #[arg(long, env = "FLOO_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
}

impl BackupArgs {
    pub fn location(&self) -> crate::backup::Location {
        crate::backup::Location {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            recordings_dir: self.recordings_dir.clone(),
        }
    }
}

/// `floo admin ...`: works on the database `floo serve` uses (same options).
#[derive(Debug, Clone, Parser)]
pub struct AdminArgs {
    /// Directory of the default SQLite database.
    #[arg(long, env = "FLOO_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// Database URL, as for `floo serve`.
    #[arg(long, env = "FLOO_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub action: AdminAction,
}

impl AdminArgs {
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rw", self.data_dir.join(SQLITE_FILE).display()),
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// Makes someone who has signed in an instance admin.
    Grant(AdminWho),
    /// Takes instance admin away.
    Revoke(AdminWho),
    /// Lists the instance admins.
    List,
}

/// Whom: by e-mail, or by provider and subject.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct AdminWho {
    /// The e-mail of a user who has signed in.
    #[arg(long)]
    pub email: Option<String>,
    /// Provider and subject, as `PROVIDER:SUBJECT` (`google:1234…`, `dev:Alice`).
    #[arg(long)]
    pub identity: Option<String>,
}

/// Everything `floo serve` can be told.
#[derive(Debug, Clone, Parser)]
#[command(name = "floo serve")]
pub struct Config {
    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "FLOO_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Address of the Prometheus metrics listener (`GET /metrics`). Loopback by default:
    /// scrape it from the same machine, or put it on a private interface. Port 0 picks a
    /// free port.
    #[arg(long, env = "FLOO_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,

    /// Directory for the default SQLite database, dev certificates and recordings.
    #[arg(long, env = "FLOO_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://PATH` or `postgres://USER@HOST/DB`. Default: a SQLite file in the data directory.
    #[arg(long, env = "FLOO_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Maximum number of pooled database connections.
    #[arg(long, env = "FLOO_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// The address users reach Floo at, used for OAuth redirect URIs and invite links
    /// (e.g. `https://meet.example.com`). Default: `http://` + the HTTP listen address.
    #[arg(long, env = "FLOO_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Offer the development login (pick any name) even though a provider is configured
    /// or the server listens on a non-loopback address. Never use this in production.
    #[arg(long, env = "FLOO_ALLOW_DEV_LOGIN")]
    pub allow_dev_login: bool,

    /// How long a sign-in lasts, in hours.
    #[arg(long, env = "FLOO_SESSION_HOURS", default_value_t = 24 * 30)]
    pub session_hours: u64,

    /// E-mail addresses of the first instance admins (comma-separated in the
    /// environment): whoever signs in through a provider with one of them becomes an
    /// admin. More with `floo admin grant`.
    #[arg(long = "admin-email", env = "FLOO_ADMIN_EMAILS", value_delimiter = ',')]
    pub admin_emails: Vec<String>,

    /// UDP address of the media relay (WebTransport over QUIC). `[::]` takes IPv4 too.
    #[arg(long, env = "FLOO_QUIC_ADDR", default_value = "[::]:4443")]
    pub quic_addr: SocketAddr,

    /// TLS certificate chain (PEM) for the media relay. Without it (and --tls-key) Floo
    /// makes a short-lived development certificate that browsers accept by its hash.
    #[arg(long, env = "FLOO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for the media relay.
    #[arg(long, env = "FLOO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Where recordings are written. Default: `recordings` in the data directory.
    #[arg(long, env = "FLOO_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,

    /// The host name browsers use to reach this node's media relay (default: the host of
    /// the page). Set it on each node when several nodes share Redis: a meeting's call is
    /// hosted by one node and browsers are sent to it.
    #[arg(long, env = "FLOO_MEDIA_HOST")]
    pub media_host: Option<String>,

    /// The URL browsers reach this node's own HTTP server at, for the WebSocket that
    /// carries calls where WebTransport cannot (UDP blocked, some browsers), e.g.
    /// `https://node1.meet.example.com`. Default: the page's own address, which is right
    /// with one node; with several nodes behind one proxy, give each its own.
    #[arg(long, env = "FLOO_NODE_URL")]
    pub node_url: Option<String>,

    /// How many recordings are composed into a meeting video at the same time (each
    /// composition takes about one core while it runs).
    #[arg(long, env = "FLOO_COMPOSE_JOBS", default_value_t = 1)]
    pub compose_jobs: usize,

    /// x264 preset of composed videos: faster presets use less CPU, slower ones make
    /// smaller files.
    #[arg(long, env = "FLOO_COMPOSE_PRESET", default_value = "superfast")]
    pub compose_preset: String,

    /// Most participants one meeting admits (2 to 500).
    #[arg(long, env = "FLOO_MAX_PARTICIPANTS", default_value_t = 100, value_parser = clap::value_parser!(u16).range(2..=500))]
    pub max_participants: u16,

    /// Voices the relay forwards to each participant: the loudest speakers at the moment
    /// (0: every voice, as in a small call).
    #[arg(long, env = "FLOO_FORWARDED_VOICES", default_value_t = 3)]
    pub forwarded_voices: usize,

    /// Redis URL (`redis://HOST:PORT`) for live events across several Floo nodes.
    /// Without it, live events stay inside this process.
    #[arg(long, env = "FLOO_REDIS_URL")]
    pub redis_url: Option<String>,

    /// How many chat messages and comments one user may post per minute (after a burst).
    #[arg(long, env = "FLOO_POSTS_PER_MINUTE", default_value_t = 30)]
    pub posts_per_minute: u32,

    /// How many messages one user may post at once before the per-minute rate applies.
    #[arg(long, env = "FLOO_POST_BURST", default_value_t = 10)]
    pub post_burst: u32,

    /// How many teams, topics and meetings one user may create per minute (after a burst).
    #[arg(long, env = "FLOO_CREATIONS_PER_MINUTE", default_value_t = 10)]
    pub creations_per_minute: u32,

    /// How many teams, topics and meetings one user may create at once.
    #[arg(long, env = "FLOO_CREATION_BURST", default_value_t = 20)]
    pub creation_burst: u32,

    /// How many searches one user may run per minute (after a burst of as many).
    #[arg(long, env = "FLOO_SEARCHES_PER_MINUTE", default_value_t = 20)]
    pub searches_per_minute: u32,

    /// Milliseconds a search may run before it is stopped (and the searcher told to try
    /// other words).
    #[arg(long, env = "FLOO_SEARCH_TIME_LIMIT_MS", default_value_t = 3000)]
    pub search_time_limit_ms: u64,

    /// How many other changes (edits of topics and scheduled meetings, moderation, roles,
    /// recordings, invite codes) one user may make per minute, after a burst of as many.
    #[arg(long, env = "FLOO_ACTIONS_PER_MINUTE", default_value_t = 30)]
    pub actions_per_minute: u32,

    /// How many live streams (open pages with live updates) one user may hold on this node.
    #[arg(long, env = "FLOO_MAX_STREAMS_PER_USER", default_value_t = 24)]
    pub max_streams_per_user: usize,

    /// Seconds a shutdown (SIGTERM, Ctrl-C) may take to finish recordings and send the
    /// people in calls here elsewhere before the process exits.
    #[arg(long, env = "FLOO_SHUTDOWN_GRACE", default_value_t = 20)]
    pub shutdown_grace: u64,

    /// Most HTTP connections open at once; past it a new one is answered 503 and closed.
    #[arg(long, env = "FLOO_MAX_HTTP_CONNECTIONS", default_value_t = 8192)]
    pub max_http_connections: usize,

    /// Seconds a client has to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "FLOO_HTTP_HEADER_TIMEOUT", default_value_t = 10)]
    pub http_header_timeout: u64,

    /// Seconds a request body may pause between two of its parts before it is refused.
    #[arg(long, env = "FLOO_HTTP_BODY_TIMEOUT", default_value_t = 30)]
    pub http_body_timeout: u64,

    #[command(flatten)]
    pub google: GoogleConfig,

    #[command(flatten)]
    pub oidc: OidcConfig,
}

/// Sign-in with Google (OAuth 2.0 / OpenID Connect).
#[derive(Debug, Clone, Args)]
pub struct GoogleConfig {
    /// Google OAuth client id (from the Google Cloud console). Enables "Sign in with Google".
    #[arg(long, env = "FLOO_GOOGLE_CLIENT_ID", requires = "google_client_secret")]
    pub google_client_id: Option<String>,

    /// Google OAuth client secret.
    #[arg(long, env = "FLOO_GOOGLE_CLIENT_SECRET", hide_env_values = true)]
    pub google_client_secret: Option<String>,
}

/// Sign-in with any OpenID Connect provider, found by its issuer (discovery) or by endpoints.
#[derive(Debug, Clone, Args)]
pub struct OidcConfig {
    /// Issuer URL of an OpenID Connect provider; its endpoints are read from
    /// `ISSUER/.well-known/openid-configuration` at start.
    #[arg(long, env = "FLOO_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// Client id registered with the OpenID Connect provider.
    #[arg(long, env = "FLOO_OIDC_CLIENT_ID", requires = "oidc_client_secret")]
    pub oidc_client_id: Option<String>,

    /// Client secret registered with the OpenID Connect provider.
    #[arg(long, env = "FLOO_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,

    /// Name shown on the sign-in button ("Sign in with NAME").
    #[arg(long, env = "FLOO_OIDC_NAME", default_value = "single sign-on")]
    pub oidc_name: String,

    /// Authorization endpoint (instead of, or overriding, discovery).
    #[arg(long, env = "FLOO_OIDC_AUTH_URL")]
    pub oidc_auth_url: Option<String>,

    /// Token endpoint (instead of, or overriding, discovery).
    #[arg(long, env = "FLOO_OIDC_TOKEN_URL")]
    pub oidc_token_url: Option<String>,

    /// Userinfo endpoint (instead of, or overriding, discovery).
    #[arg(long, env = "FLOO_OIDC_USERINFO_URL")]
    pub oidc_userinfo_url: Option<String>,
}

impl Config {
    /// The database URL in force: the configured one, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join(SQLITE_FILE).display()),
        }
    }
}
