//! What an operator scrapes: Prometheus metrics (OpenMetrics text, through the
//! `prometheus-client` crate) on their own listener, `--metrics-addr` (loopback by
//! default, so that nothing about calls is published by accident). Names follow the
//! Prometheus conventions: a `floo_` prefix, base units, `_total` on counters, and labels
//! of low cardinality only — never a participant, a meeting or a team.
//!
//! The metrics live in one process-wide [`Metrics`] ([`metrics()`]): they are counted
//! where things happen (the HTTP layer, the relay, the chat), as a metrics registry
//! usually is, rather than threaded through every constructor.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::media::wire::Transport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/teams/{team_id}/forum`), not the path: bounded.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TransportLabel {
    WebTransport,
    WebSocket,
}

impl From<Transport> for TransportLabel {
    fn from(t: Transport) -> Self {
        match t {
            Transport::WebTransport => TransportLabel::WebTransport,
            Transport::WebSocket => TransportLabel::WebSocket,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: TransportLabel,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: Direction,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DropCause {
    /// The subscriber could not take the group in time.
    SlowLink,
    /// Late from its publisher, its track ended, or unsubscribed.
    Elsewhere,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: DropCause,
}

/// Label values in the lower case Prometheus users expect.
macro_rules! label_values {
    ($($ty:ident { $($variant:ident => $text:literal),* $(,)? })*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(match self { $($ty::$variant => $text),* })
            }
        }
    )*};
}

label_values! {
    TransportLabel { WebTransport => "webtransport", WebSocket => "websocket" }
    Direction { In => "in", Out => "out" }
    DropCause { SlowLink => "slow_link", Elsewhere => "elsewhere" }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewLabels {
    /// Which live page: `meetings`, `forum` or `meeting`.
    pub view: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric Floo exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: HistogramFamily<HttpLabels>,
    pub live_streams: Gauge,
    pub chat_messages: Counter,
    pub live_renders: Family<ViewLabels, Counter>,
    /// Seconds of meeting composed per second of work, once per finished composition.
    pub composition_speed: Histogram,
    /// Space left where recordings are written, in bytes (sampled).
    pub recordings_disk_available: Gauge,
    pub relay_sessions: Family<TransportLabels, Gauge>,
    pub meetings_hosted: Gauge,
    /// Recordings by state, in the database (every node reports the same: take the max).
    pub recordings: Family<StateLabels, Gauge>,
    /// Database connections of this node's pool, by state (in use, idle).
    pub database_connections: Family<StateLabels, Gauge>,
    /// Queries that failed because the database could not be reached.
    pub database_errors: Counter,
    /// 1 while this node's Redis link is up, 0 while it is down (absent without Redis).
    pub redis_up: Family<Vec<(String, String)>, Gauge>,
    /// The relay's counters, looked up once (the relay counts every frame).
    pub relay: RelayCounters,
    process_cpu: Gauge<f64, std::sync::atomic::AtomicU64>,
    process_memory: Gauge,
    process_fds: Gauge,
}

/// Handles on the relay's labelled counters.
pub struct RelayCounters {
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub dropped_slow_link: Counter,
    pub dropped_elsewhere: Counter,
    /// Subscribers' smoothed round trip, each time a group is done with.
    pub subscriber_rtt: Histogram,
}

fn http_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("floo");
        let http_requests: HistogramFamily<HttpLabels> = Family::new_with_constructor(http_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "HTTP requests by route template, method and status, and how long they took",
            prometheus_client::registry::Unit::Seconds,
            http_requests.clone(),
        );
        let live_streams = Gauge::default();
        registry.register("live_streams", "Open live page streams (server-sent events)", live_streams.clone());
        let chat_messages = Counter::default();
        registry.register("chat_messages_posted", "Chat messages and comments posted", chat_messages.clone());
        let composition_speed = Histogram::new(exponential_buckets(0.25, 2.0, 8));
        registry.register(
            "composition_speed_ratio",
            "Seconds of meeting composed per second of work, per finished composition",
            composition_speed.clone(),
        );
        let recordings_disk_available = Gauge::default();
        registry.register_with_unit(
            "recordings_disk_available",
            "Space left on the file system that holds the recordings",
            prometheus_client::registry::Unit::Bytes,
            recordings_disk_available.clone(),
        );
        let live_renders = Family::<ViewLabels, Counter>::default();
        registry.register(
            "live_renders",
            "Live team page fragments rendered (once per change and view for all its readers on this node)",
            live_renders.clone(),
        );
        let relay_sessions = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "relay_sessions",
            "Media sessions in calls on this node, by transport",
            relay_sessions.clone(),
        );
        let meetings_hosted = Gauge::default();
        registry.register("meetings_hosted", "Calls whose relay room runs on this node", meetings_hosted.clone());
        let relay_frames = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "relay_frames",
            "Media frames received from publishers (in) and written to subscribers (out)",
            relay_frames.clone(),
        );
        let relay_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register_with_unit(
            "relay_media",
            "Media bytes received from publishers (in) and written to subscribers (out)",
            prometheus_client::registry::Unit::Bytes,
            relay_bytes.clone(),
        );
        let groups_dropped = Family::<CauseLabels, Counter>::default();
        registry.register(
            "relay_groups_dropped",
            "Groups given up on their way to a subscriber, by cause",
            groups_dropped.clone(),
        );
        let direction = |family: &Family<DirectionLabels, Counter>, direction| {
            family.get_or_create(&DirectionLabels { direction }).clone()
        };
        let cause = |cause| groups_dropped.get_or_create(&CauseLabels { cause }).clone();
        // 1 ms to ~2 s.
        let subscriber_rtt = Histogram::new(exponential_buckets(0.001, 2.0, 12));
        registry.register_with_unit(
            "relay_subscriber_rtt",
            "Subscribers' smoothed round-trip time, once per group delivered or given up",
            prometheus_client::registry::Unit::Seconds,
            subscriber_rtt.clone(),
        );
        let relay = RelayCounters {
            frames_in: direction(&relay_frames, Direction::In),
            frames_out: direction(&relay_frames, Direction::Out),
            bytes_in: direction(&relay_bytes, Direction::In),
            bytes_out: direction(&relay_bytes, Direction::Out),
            dropped_slow_link: cause(DropCause::SlowLink),
            dropped_elsewhere: cause(DropCause::Elsewhere),
            subscriber_rtt,
        };
        let recordings = Family::<StateLabels, Gauge>::default();
        registry.register(
            "recordings",
            "Recordings by state (recording, composing, ready, failed)",
            recordings.clone(),
        );
        let database_connections = Family::<StateLabels, Gauge>::default();
        registry.register(
            "database_connections",
            "Database connections of this node, in use and idle",
            database_connections.clone(),
        );
        let database_errors = Counter::default();
        registry.register(
            "database_unavailable",
            "Requests answered 503 because the database could not be reached",
            database_errors.clone(),
        );
        // A family, so that a node without Redis exports no sample at all rather than 0.
        let redis_up = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register("redis_up", "Whether this node's Redis link is up (1) or down (0)", redis_up.clone());
        let process_cpu = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "process_cpu",
            "CPU time this process has used (user and system)",
            prometheus_client::registry::Unit::Seconds,
            process_cpu.clone(),
        );
        let process_memory = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of this process",
            prometheus_client::registry::Unit::Bytes,
            process_memory.clone(),
        );
        let process_fds = Gauge::default();
        registry.register("process_open_fds", "Open file descriptors of this process", process_fds.clone());
        Metrics {
            registry,
            http_requests,
            live_streams,
            chat_messages,
            live_renders,
            composition_speed,
            recordings_disk_available,
            relay_sessions,
            meetings_hosted,
            recordings,
            database_connections,
            database_errors,
            redis_up,
            relay,
            process_cpu,
            process_memory,
            process_fds,
        }
    }

    /// The exposition, with the process figures read now.
    pub fn encode(&self) -> String {
        if let Some((cpu, rss, fds)) = process_figures() {
            self.process_cpu.set(cpu);
            self.process_memory.set(rss);
            self.process_fds.set(fds);
        }
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// One look at this node's figures; the dashboard plots the last hour of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub at_ms: i64,
    /// Media sessions in calls here (both transports).
    pub in_calls: i64,
    /// Relay media received and sent, bits per second over the last interval.
    pub ingress_bps: f64,
    pub egress_bps: f64,
    /// Chat messages posted per minute over the last interval.
    pub chat_per_minute: f64,
    /// CPU used by this process over the last interval, in percent of one core.
    pub cpu_percent: f64,
    pub memory_bytes: i64,
    pub open_fds: i64,
}

/// How often the history is sampled, and how much of it is kept (an hour).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const HISTORY_LEN: usize = 720;

static HISTORY: Mutex<VecDeque<Sample>> = Mutex::new(VecDeque::new());

/// The last hour of samples, oldest first.
pub fn history() -> Vec<Sample> {
    HISTORY.lock().map(|h| h.iter().copied().collect()).unwrap_or_default()
}

/// Samples this process's figures every [`SAMPLE_EVERY`] into the hour-long ring (in
/// memory, per node), on a thread of its own (the figures are the process's, whatever
/// runtime serves them). Started by the server; once per process.
pub fn sample_forever(recordings_dir: std::path::PathBuf) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new().name("floo-sampler".into()).spawn(move || sample(&recordings_dir));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot sample the figures for the ops dashboard");
        }
    });
}

/// People in calls on this node now (both transports).
pub fn people_in_calls() -> i64 {
    [TransportLabel::WebTransport, TransportLabel::WebSocket]
        .into_iter()
        .map(|transport| metrics().relay_sessions.get_or_create(&TransportLabels { transport }).get())
        .sum()
}

fn sample(recordings_dir: &std::path::Path) {
    let m = metrics();
    let read = || {
        let (cpu, rss, fds) = process_figures().unwrap_or_default();
        (m.relay.bytes_in.get(), m.relay.bytes_out.get(), m.chat_messages.get(), cpu, rss, fds)
    };
    let mut last = (std::time::Instant::now(), read());
    loop {
        std::thread::sleep(SAMPLE_EVERY);
        let now = (std::time::Instant::now(), read());
        if let Ok(space) = fs4::available_space(recordings_dir) {
            m.recordings_disk_available.set(space as i64);
        }
        let seconds = now.0.duration_since(last.0).as_secs_f64().max(0.001);
        let ((_, before), (_, after)) = (last, now);
        let sample = Sample {
            at_ms: crate::clock::now_ms(),
            in_calls: people_in_calls(),
            ingress_bps: after.0.saturating_sub(before.0) as f64 * 8.0 / seconds,
            egress_bps: after.1.saturating_sub(before.1) as f64 * 8.0 / seconds,
            chat_per_minute: after.2.saturating_sub(before.2) as f64 * 60.0 / seconds,
            cpu_percent: (after.3 - before.3).max(0.0) * 100.0 / seconds,
            memory_bytes: after.4,
            open_fds: after.5,
        };
        if let Ok(mut history) = HISTORY.lock() {
            if history.len() == HISTORY_LEN {
                history.pop_front();
            }
            history.push_back(sample);
        }
        last = now;
    }
}

/// A finished composition, for the dashboard.
#[derive(Debug, Clone, Copy)]
pub struct Composed {
    pub recording_id: i64,
    pub at_ms: i64,
    /// How long the meeting's video is, and how long composing it took.
    pub media_ms: i64,
    pub took_ms: i64,
}

static COMPOSED: Mutex<VecDeque<Composed>> = Mutex::new(VecDeque::new());

/// Notes a finished composition (its speed, on the metrics and the dashboard).
pub fn composed(c: Composed) {
    if c.took_ms > 0 {
        metrics().composition_speed.observe(c.media_ms as f64 / c.took_ms as f64);
    }
    if let Ok(mut composed) = COMPOSED.lock() {
        if composed.len() == 10 {
            composed.pop_front();
        }
        composed.push_back(c);
    }
}

/// The last ten finished compositions, oldest first.
pub fn recent_compositions() -> Vec<Composed> {
    COMPOSED.lock().map(|c| c.iter().copied().collect()).unwrap_or_default()
}

/// The latest warnings and errors this process logged, newest last (the dashboard shows
/// them): a `tracing` layer that keeps the last [`WARNINGS_KEPT`].
pub struct RecentWarnings;

pub const WARNINGS_KEPT: usize = 50;

/// A logged warning or error.
#[derive(Debug, Clone)]
pub struct Warning {
    pub at_ms: i64,
    pub level: tracing::Level,
    pub target: String,
    pub message: String,
}

static WARNINGS: Mutex<VecDeque<Warning>> = Mutex::new(VecDeque::new());

/// The warnings kept, oldest first.
pub fn recent_warnings() -> Vec<Warning> {
    WARNINGS.lock().map(|w| w.iter().cloned().collect()).unwrap_or_default()
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RecentWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let level = *event.metadata().level();
        if level > tracing::Level::WARN {
            return;
        }
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if !self.0.is_empty() {
                    self.0.push(' ');
                }
                if field.name() == "message" {
                    let _ = write!(self.0, "{value:?}");
                } else {
                    let _ = write!(self.0, "{}={value:?}", field.name());
                }
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        let warning = Warning {
            at_ms: crate::clock::now_ms(),
            level,
            target: event.metadata().target().to_owned(),
            message: text.0.chars().take(500).collect(),
        };
        if let Ok(mut warnings) = WARNINGS.lock() {
            if warnings.len() == WARNINGS_KEPT {
                warnings.pop_front();
            }
            warnings.push_back(warning);
        }
    }
}

/// Keeps the figures read from the database and the bus up to date (every 10 s):
/// recordings by state, the connection pool, the Redis link.
pub fn watch_sources(store: crate::store::Store, bus: crate::bus::Bus) {
    tokio::spawn(async move {
        let m = metrics();
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if let Ok(counts) = store.recording_counts().await {
                for state in ["recording", "composing", "ready", "failed"] {
                    let n = counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
                    m.recordings.get_or_create(&StateLabels { state: state.into() }).set(n);
                }
            }
            let (size, idle) = store.pool_usage();
            m.database_connections.get_or_create(&StateLabels { state: "in_use".into() }).set(size - idle);
            m.database_connections.get_or_create(&StateLabels { state: "idle".into() }).set(idle);
            if let Some(up) = bus.is_connected() {
                m.redis_up.get_or_create(&Vec::new()).set(i64::from(up));
            }
        }
    });
}

/// A gauge raised while this lives.
pub struct Raised(Gauge);

impl Raised {
    pub fn new(gauge: &Gauge) -> Raised {
        gauge.inc();
        Raised(gauge.clone())
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Middleware: every request's route template, method, status and duration; and a
/// request id, on every log line the request causes (a span) and in `X-Request-Id`.
pub async fn count_requests(request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = method_label(request.method()).to_owned();
    let id = request_id();
    let started = std::time::Instant::now();
    let span = tracing::info_span!("http", request_id = %id, method = %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let (status, took) = (response.status().as_u16(), started.elapsed());
    span.in_scope(|| tracing::debug!(status, ms = took.as_millis() as u64, "answered"));
    let labels = HttpLabels { route, method, status };
    metrics().http_requests.get_or_create(&labels).observe(took.as_secs_f64());
    if let Ok(value) = header::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A request's method as a label: the standard ones by name, any other as `other`, so that
/// nobody can add series (or make one's label as long as a request line) by inventing methods.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// A request id: this process's start (so ids differ across restarts) and a counter.
fn request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static EPOCH: LazyLock<u32> = LazyLock::new(|| (crate::clock::now_ms() / 1000) as u32);
    format!("{:08x}-{:x}", *EPOCH, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// `GET /metrics` on the metrics listener: OpenMetrics to a scraper that asks for it
/// (Prometheus does), else the classic Prometheus text format (curl, promtool).
pub async fn exposition(headers: axum::http::HeaderMap) -> Response {
    let body = metrics().encode();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], Body::from(body))
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], Body::from(prometheus_text(&body)))
            .into_response()
    }
}

/// The classic text format from OpenMetrics text: the two differ, for what Floo exports,
/// only in that a counter's HELP and TYPE lines name it with its `_total` suffix (as its
/// samples do), and that there is no `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|rest| rest.strip_suffix(" counter")) {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE ", "# UNIT "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Serves `/metrics` on `listener` until the process ends.
pub fn serve(listener: tokio::net::TcpListener) {
    let router = axum::Router::new().route("/metrics", axum::routing::get(exposition));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
}

/// (CPU seconds, resident bytes, open descriptors) of this process, from `/proc`.
fn process_figures() -> Option<(f64, i64, i64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: i64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    // Linux counts CPU time in clock ticks of 1/100 s on every platform Floo runs on.
    Some((ticks / 100.0, rss_kib * 1024, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_their_suffix_in_the_classic_format() {
        let openmetrics = "# HELP floo_x Things.\n# TYPE floo_x counter\nfloo_x_total 3\n\
                           # HELP floo_g Level.\n# TYPE floo_g gauge\nfloo_g 1\n# EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP floo_x_total Things.\n# TYPE floo_x_total counter\nfloo_x_total 3\n\
             # HELP floo_g Level.\n# TYPE floo_g gauge\nfloo_g 1\n"
        );
    }

    #[test]
    fn the_exposition_has_every_metric_and_names_nobody() {
        metrics().chat_messages.inc();
        let labels = HttpLabels { route: "/".into(), method: "GET".into(), status: 200 };
        metrics().http_requests.get_or_create(&labels).observe(0.01);
        let text = metrics().encode();
        for name in ["floo_http_request_duration_seconds", "floo_relay_media_bytes", "floo_process_open_fds"] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} in {text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    /// The Grafana dashboard shipped in `ops/deploy/` asks only for metrics Floo exports
    /// (a panel on a misspelt name would just read zero).
    #[test]
    fn the_grafana_dashboard_plots_metrics_that_exist() {
        let labels = HttpLabels { route: "/".into(), method: "GET".into(), status: 200 };
        metrics().http_requests.get_or_create(&labels).observe(0.01);
        for transport in [TransportLabel::WebTransport, TransportLabel::WebSocket] {
            let _ = metrics().relay_sessions.get_or_create(&TransportLabels { transport });
        }
        // Filled by `watch_sources` in a server, and by live pages.
        let _ = metrics().recordings.get_or_create(&StateLabels { state: "ready".into() });
        let _ = metrics().live_renders.get_or_create(&ViewLabels { view: "forum" });
        let text = metrics().encode();
        let samples: std::collections::HashSet<&str> =
            text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../ops/deploy/grafana-dashboard.json")).expect("dashboard JSON");
        let mut asked = 0;
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                for name in
                    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("floo_"))
                {
                    asked += 1;
                    assert!(
                        samples.contains(name),
                        "panel {:?} asks for {name}, which Floo does not export",
                        panel["title"]
                    );
                }
            }
        }
        assert!(asked >= 10);
    }
}
