//! Test support: the real Floo on port 0 against a fresh SQLite file or a fresh
//! PostgreSQL database, and a cookie-keeping browser-like client.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use floo::{App, Config};
use reqwest::StatusCode;
use sqlx::Connection;
use tokio::sync::watch;

/// The backends every integration test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Instantiates `async fn NAME(backend: Backend)` once per backend, as `NAME::on_sqlite`
/// and `NAME::on_postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() { super::$name($crate::support::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() { super::$name($crate::support::Backend::Postgres).await }
        }
    )*};
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn unique_suffix() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{secs}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The PostgreSQL server tests use (ops/test exports it; CI's is at 127.0.0.1:5432).
pub fn postgres_admin_url() -> String {
    std::env::var("FLOO_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A client signed in with the dev login as `name` at a Floo that runs at `base` (a
/// process of its own, say).
pub async fn signed_in_at(base: &str, name: &str) -> Client {
    let client = Client::new(base);
    client.post_form("/login/dev", &[("name", name)]).await.expect_ok_with(name);
    client
}

/// A fresh, empty PostgreSQL database; databases older than an hour left by crashed
/// runs are dropped on the way.
pub async fn create_postgres_database() -> (String, String) {
    let admin_url = postgres_admin_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed for this test (run it through ops/test): {e}"));
    let name = format!("floo_test_{}", unique_suffix());
    let cutoff = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) - 3600;
    let stale: Vec<(String,)> = sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'floo_test_%'")
        .fetch_all(&mut admin)
        .await
        .expect("list test databases");
    for (db,) in stale {
        let created: u64 = db.split('_').nth(2).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        if created < cutoff {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")))
                .execute(&mut admin)
                .await;
        }
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin_url).expect("postgres url");
    url.set_path(&name);
    (url.to_string(), name)
}

/// A running Floo with its own database and data directory.
pub struct TestApp {
    pub base: String,
    /// Where the HTTP server listens (the same as `base` unless `--public-url` is given).
    pub http_addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    postgres_db: Option<String>,
    /// The PostgreSQL database's URL (None on SQLite, in the data directory).
    pub database_url: Option<String>,
    pub quic_addr: std::net::SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: std::net::SocketAddr,
    pub cert_hash: Option<[u8; 32]>,
    pub relay: floo::media::relay::Relay,
}

impl TestApp {
    /// Starts Floo on `backend` with the dev login (loopback, no provider).
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, &[]).await
    }

    /// Starts Floo with extra `floo serve` flags (`--http-addr` and `--quic-addr` among
    /// them replace the loopback defaults).
    pub async fn spawn_with(backend: Backend, extra: &[&str]) -> TestApp {
        // The server's log, shown for failed tests: `RUST_LOG=floo=debug cargo test ...`.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let data_dir = std::env::temp_dir().join(format!("floo-test-{}", unique_suffix()));
        let mut args: Vec<String> = vec!["floo serve".into(), "--data-dir".into(), data_dir.display().to_string()];
        for (flag, default) in
            [("--http-addr", "127.0.0.1:0"), ("--quic-addr", "127.0.0.1:0"), ("--metrics-addr", "127.0.0.1:0")]
        {
            if !extra.contains(&flag) {
                args.extend([flag.to_owned(), default.to_owned()]);
            }
        }
        let (mut postgres_db, mut database_url) = (None, None);
        if let Backend::Postgres = backend {
            let (url, name) = create_postgres_database().await;
            args.push("--database-url".into());
            args.push(url.clone());
            database_url = Some(url);
            postgres_db = Some(name);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::try_parse_from(&args).expect("valid test configuration");
        let app = App::build(config).await.expect("Floo starts");
        let base = app.public_url().to_owned();
        let http_addr = app.http_addr();
        let quic_addr = app.quic_addr();
        let metrics_addr = app.metrics_addr();
        let cert_hash = app.cert_hash();
        let relay = app.relay();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(app.run(stopped));
        TestApp {
            base,
            http_addr,
            data_dir,
            stop,
            task,
            postgres_db,
            database_url,
            quic_addr,
            metrics_addr,
            cert_hash,
            relay,
        }
    }

    /// The app's database, as a URL for a connection of the test's own.
    pub fn db_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rw", self.data_dir.join(floo::config::SQLITE_FILE).display()))
    }

    /// A new browser-like client (its own cookies) for this app.
    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    /// A client signed in with the dev login as `name`.
    pub async fn signed_in(&self, name: &str) -> Client {
        let client = self.client();
        let page = client.post_form("/login/dev", &[("name", name)]).await;
        assert_eq!(page.status, StatusCode::OK, "dev login as {name}: {}", page.body);
        assert!(page.body.contains(&format!("Hello, {name}")), "home page after login: {}", page.body);
        client
    }

    /// Asks the server to shut down (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Shuts the server down and waits until it has; its data directory is left for the
    /// caller to look at (and remove).
    pub async fn shut_down(self) -> PathBuf {
        let _ = self.stop.send(true);
        self.task.await.expect("server task").expect("server ran cleanly");
        self.data_dir
    }

    /// Stops the server and removes its database and files.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let result = self.task.await.expect("server task");
        result.expect("server ran cleanly");
        if let Some(db) = self.postgres_db
            && let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_admin_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")))
                .execute(&mut admin)
                .await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Tests that load both cores take turns: browser walks (each drives several Chromium
/// contexts encoding video, which two cores cannot do twice over and still meet the
/// walks' one-second checks), the 25-person call and the churn test.
pub static WHOLE_MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a request came back with, after redirects.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub url: String,
    pub body: String,
}

impl Page {
    /// Asserts a 200 and that the page contains `text`.
    pub fn expect_ok_with(&self, text: &str) -> &Page {
        assert_eq!(self.status, StatusCode::OK, "{} returned {}: {}", self.url, self.status, self.body);
        assert!(self.body.contains(text), "{} lacks {text:?}: {}", self.url, self.body);
        self
    }

    /// The text between `start` and the next `end` after it.
    pub fn between(&self, start: &str, end: &str) -> String {
        let from = self.body.find(start).unwrap_or_else(|| panic!("{start:?} not in {}", self.body)) + start.len();
        let len = self.body[from..].find(end).unwrap_or_else(|| panic!("{end:?} not after {start:?}"));
        self.body[from..from + len].to_owned()
    }
}

/// A cookie-keeping client that follows redirects like a browser.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder().cookie_store(true).build().expect("client");
        Client { base: base.to_owned(), http }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    pub async fn get(&self, path: &str) -> Page {
        let response = self.http.get(self.url(path)).send().await.expect("GET");
        page(response).await
    }

    /// The CSRF token this browser's forms carry (read from a page, as a browser would).
    pub async fn csrf(&self) -> String {
        self.get("/login").await.between("name=\"_csrf\" value=\"", "\"")
    }

    /// Submits a form with the CSRF token added.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf().await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("_csrf", &token));
        let response = self.http.post(self.url(path)).form(&form).send().await.expect("POST");
        page(response).await
    }

    /// Submits a form without any CSRF token (as a forged cross-site form would).
    pub async fn post_form_without_csrf(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self.http.post(self.url(path)).form(fields).send().await.expect("POST");
        page(response).await
    }
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status();
    let url = response.url().to_string();
    let body = response.text().await.expect("body");
    Page { status, url, body }
}

/// One event of a Server-Sent Events stream.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// A client's open SSE stream.
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
}

/// How long a test waits for a live event before it fails.
pub const LIVE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

impl SseStream {
    /// Opens `path` as an event stream, resuming after `last_event_id` if given.
    pub async fn open(client: &Client, path: &str, last_event_id: Option<&str>) -> SseStream {
        let mut request = client.http.get(client.url(path)).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("open stream");
        assert_eq!(response.status(), StatusCode::OK, "stream {path}");
        let content_type = response.headers()["content-type"].to_str().unwrap_or_default().to_owned();
        assert!(content_type.starts_with("text/event-stream"), "{path} is an event stream: {content_type}");
        SseStream { response, buffer: String::new() }
    }

    /// The next event (keep-alive comments skipped); None when the server ends the stream.
    /// Panics after [`LIVE_DEADLINE`] without one.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(LIVE_DEADLINE, self.read_event()).await.expect("a live event within the deadline")
    }

    /// The next event named `name`, skipping others.
    pub async fn next_named(&mut self, name: &str) -> SseEvent {
        loop {
            let event = self.next_event().await.unwrap_or_else(|| panic!("stream ended while waiting for {name}"));
            if event.event.as_deref() == Some(name) {
                return event;
            }
        }
    }

    /// Asserts that no event named `name` arrives for `quiet` (others are skipped).
    pub async fn expect_none_named(&mut self, name: &str, quiet: std::time::Duration) {
        let found = tokio::time::timeout(quiet, async {
            loop {
                match self.read_event().await {
                    Some(event) if event.event.as_deref() == Some(name) => return event,
                    Some(_) => {}
                    None => std::future::pending::<()>().await,
                }
            }
        })
        .await;
        if let Ok(event) = found {
            panic!("no {name} event was expected, got: {}", event.data);
        }
    }

    /// Waits until the server ends the stream (panics after the deadline).
    pub async fn expect_end(&mut self) {
        let result = tokio::time::timeout(LIVE_DEADLINE, async {
            while let Some(event) = self.read_event().await {
                let _ = event;
            }
        })
        .await;
        assert!(result.is_ok(), "the stream was not closed");
    }

    async fn read_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut data: Vec<&str> = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if event.id.is_none() && event.event.is_none() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                event.data = data.join("\n");
                return Some(event);
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return None,
            }
        }
    }
}
