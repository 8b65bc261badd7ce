//! Live chat fan-out: R readers hold the SSE stream of one topic open while a writer
//! posts messages at a steady rate; each message carries its send time, so every reader
//! measures delivery latency from POST to receipt.
//!
//! Floo runs as its own process (the release binary), the load generator here; both on
//! this machine. With `--bus redis` two Floo nodes share a SQLite file and Redis: the
//! writer posts on node A and the readers listen on node B, so every message crosses Redis.
//!
//! With `--view meetings` or `--view forum` the readers hold a team page's live stream
//! instead (its meeting list or its forum list) while the messages go to a meeting's
//! chat, and once a second the page really changes (a meeting is started, or a topic
//! created, titled with its send time): the figures are then the server's CPU per chat
//! message per reader and the delivery latency of those changes. `--floo PATH` runs
//! another build of Floo (an older one, to compare in one run).
//!
//! cargo bench --bench fanout -- --readers 5000 --rates 10,20,40 --seconds 10 [--bus redis]
//! cargo bench --bench fanout -- --readers 1000 --rates 10,50 --seconds 10 --view meetings

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use std::time::{Duration, Instant};
use support::{Floo, cpu_seconds, now_us as now_micros, rss_kib};

struct Options {
    readers: usize,
    rates: Vec<u32>,
    seconds: u64,
    redis: Option<String>,
    view: View,
}

/// What the readers listen to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    /// The chat itself: every message reaches every reader.
    Chat,
    /// The team's meeting list, which chat does not change.
    Meetings,
    /// The team's forum list, whose counts and order chat changes.
    Forum,
}

fn options() -> Options {
    Options {
        readers: support::arg("--readers").map(|v| v.parse().expect("--readers N")).unwrap_or(1000),
        rates: support::arg("--rates")
            .map(|v| v.split(',').map(|r| r.parse().expect("--rates A,B,C")).collect())
            .unwrap_or_else(|| vec![10, 20, 40]),
        seconds: support::arg("--seconds").map(|v| v.parse().expect("--seconds S")).unwrap_or(10),
        redis: (support::arg("--bus").as_deref() == Some("redis"))
            .then(|| std::env::var("FLOO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())),
        view: match support::arg("--view").as_deref() {
            None | Some("chat") => View::Chat,
            Some("meetings") => View::Meetings,
            Some("forum") => View::Forum,
            Some(other) => panic!("--view chat|meetings|forum, not {other}"),
        },
    }
}

async fn start_node(data_dir: &std::path::Path, redis: Option<&str>) -> Floo {
    let mut extra = vec![
        "--max-streams-per-user",
        "1000000",
        "--posts-per-minute",
        "1000000",
        "--post-burst",
        "1000000",
        "--creations-per-minute",
        "1000000",
        "--creation-burst",
        "1000000",
    ];
    if let Some(url) = redis {
        extra.extend(["--redis-url", url]);
    }
    Floo::start(data_dir, &extra).await
}

async fn csrf(client: &reqwest::Client, base: &str) -> String {
    support::csrf_in(&client.get(format!("{base}/login")).send().await.expect("page").text().await.expect("body"))
}

/// Signs in, creates a team and a topic (for a team-page view: a meeting, whose chat
/// gets the messages); returns (client, csrf token, team path, topic path).
async fn prepare(base: &str, view: View) -> (reqwest::Client, String, String, String) {
    let client = reqwest::Client::builder().cookie_store(true).build().expect("client");
    let token = support::sign_in(&client, base, "Bench").await;
    let team =
        client.post(format!("{base}/teams")).form(&[("name", "Bench"), ("_csrf", &token)]).send().await.expect("team");
    let team_path = team.url().path().to_owned();
    if view != View::Chat {
        let meeting = client
            .post(format!("{base}{team_path}/meetings"))
            .form(&[("title", "Lively meeting"), ("_csrf", &token)])
            .send()
            .await
            .expect("meeting");
        let page = meeting.text().await.expect("meeting page");
        let at = page
            .find(&format!("{team_path}/topics/"))
            .unwrap_or_else(|| panic!("the meeting's chat topic under {team_path} in {page}"));
        let id: String = page[at + team_path.len() + 8..].chars().take_while(char::is_ascii_digit).collect();
        return (client, token, team_path.clone(), format!("{team_path}/topics/{id}"));
    }
    let topic = client
        .post(format!("{base}{team_path}/forum"))
        .form(&[("title", "Fan-out"), ("body", ""), ("_csrf", &token)])
        .send()
        .await
        .expect("topic");
    (client, token, team_path, topic.url().path().to_owned())
}

/// When the current step started (µs): a page's first snapshot shows what earlier steps
/// changed, which are not this step's deliveries.
static STEP_STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What a reader measured.
#[derive(Default)]
struct Received {
    /// Delivery latency of each stamp, in microseconds.
    latencies: Vec<u32>,
    /// SSE events received while recording (keep-alives not counted).
    events: u64,
}

/// One reader on a raw TCP connection (a browser's EventSource is no heavier than
/// this): records the latency of every bench message it receives.
async fn reader(
    addr: std::net::SocketAddr,
    request: Arc<Vec<u8>>,
    connected: Arc<AtomicUsize>,
    recording: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Received {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&request).await.expect("request");
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    // The response head.
    loop {
        let n = stream.read(&mut buf).await.expect("read head");
        assert!(n > 0, "closed before the response");
        pending.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&pending, b"\r\n\r\n") {
            assert!(
                pending.starts_with(b"HTTP/1.1 200"),
                "stream refused: {}",
                String::from_utf8_lossy(&pending[..end])
            );
            pending.drain(..end + 4);
            break;
        }
    }
    connected.fetch_add(1, Ordering::Relaxed);
    let mut received = Received::default();
    // A page's snapshot repeats what it showed before: each stamp counts once.
    let mut seen = std::collections::HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => continue,
        };
        let arrived = now_micros();
        if recording.load(Ordering::Relaxed) {
            received.events += buf[..n].windows(7).filter(|w| w == b"event: ").count() as u64;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut consumed = 0;
        while let Some(at) = find(&pending[consumed..], b"benchsent") {
            let start = consumed + at + b"benchsent".len();
            let digits = pending[start..].iter().take_while(|b| b.is_ascii_digit()).count();
            if start + digits >= pending.len() {
                break; // the number may continue in the next read
            }
            let sent: u64 =
                std::str::from_utf8(&pending[start..start + digits]).ok().and_then(|d| d.parse().ok()).unwrap_or(0);
            if recording.load(Ordering::Relaxed) && sent >= STEP_STARTED.load(Ordering::Relaxed) && seen.insert(sent) {
                received.latencies.push(arrived.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
            }
            consumed = start + digits;
        }
        pending.drain(..consumed);
        if pending.len() > 4096 {
            let cut = pending.len() - 64;
            pending.drain(..cut);
        }
    }
    received
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() {
    let o = options();
    let data_dir = std::env::temp_dir().join(format!("floo-bench-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let writer_node = start_node(&data_dir, o.redis.as_deref()).await;
    let reader_node = match o.redis.as_deref() {
        Some(url) => Some(start_node(&data_dir, Some(url)).await),
        None => None,
    };
    let readers_at = reader_node.as_ref().unwrap_or(&writer_node);
    let (writer, token, team, topic) = prepare(&writer_node.base, o.view).await;
    let bus = if o.redis.is_some() { "redis (writer on node A, readers on node B)" } else { "in-process" };
    let (listened, path) = match o.view {
        View::Chat => ("one topic's chat".to_owned(), format!("{topic}/events")),
        View::Meetings => ("the team's meeting list".to_owned(), format!("{team}/events?view=meetings")),
        View::Forum => ("the team's forum list".to_owned(), format!("{team}/events?view=forum")),
    };
    println!("fan-out: {} readers of {listened}, bus {bus}", o.readers);

    let rss_before = rss_kib(readers_at.pid);
    let connected = Arc::new(AtomicUsize::new(0));
    let recording = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // The readers' browser session, signed in on the readers' node.
    let login_client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let t = csrf(&login_client, &readers_at.base).await;
    let login = login_client
        .post(format!("{}/login/dev", readers_at.base))
        .form(&[("name", "Bench"), ("_csrf", &t)])
        .send()
        .await
        .expect("login");
    let session = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("floo_session="))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let addr: std::net::SocketAddr = readers_at.base.trim_start_matches("http://").parse().expect("node address");
    let request = Arc::new(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {session}\r\nAccept: text/event-stream\r\n\r\n")
            .into_bytes(),
    );
    let mut tasks = Vec::with_capacity(o.readers);
    for _ in 0..o.readers {
        tasks.push(tokio::spawn(reader(addr, request.clone(), connected.clone(), recording.clone(), stop.clone())));
        // Open gently: a burst of thousands of connects overflows the accept backlog.
        if tasks.len() % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while connected.load(Ordering::Relaxed) < o.readers {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib(readers_at.pid);
    println!(
        "idle readers: server RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per idle reader",
        rss_before as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        (rss_idle.saturating_sub(rss_before)) as f64 / o.readers as f64
    );

    let mut all_tasks = tasks;
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>10} {:>12} {:>14} {:>14} {:>12}",
        "msg/s",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU%",
        "µs/msg/reader",
        "events/reader",
        "loadgen CPU%"
    );
    for &rate in &o.rates {
        // Each step gets fresh readers' records: collect by restarting the readers.
        STEP_STARTED.store(now_micros(), Ordering::Relaxed);
        recording.store(true, Ordering::Relaxed);
        let cpu_start = cpu_seconds(writer_node.pid) + reader_node.as_ref().map(|n| cpu_seconds(n.pid)).unwrap_or(0.0);
        let started = Instant::now();
        let own_start = cpu_seconds(std::process::id());
        let total = rate as u64 * o.seconds;
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        let mut next = tokio::time::Instant::now();
        // A team page's real changes: one a second, stamped like the messages.
        let changes = (o.view != View::Chat).then(|| {
            let (writer, token) = (writer.clone(), token.clone());
            let (url, field) = match o.view {
                View::Meetings => (format!("{}{team}/meetings", writer_node.base), "title"),
                _ => (format!("{}{team}/forum", writer_node.base), "title"),
            };
            let seconds = o.seconds;
            tokio::spawn(async move {
                for _ in 0..seconds {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let form = [
                        (field, format!("benchsent{}", now_micros())),
                        ("body", String::new()),
                        ("_csrf", token.clone()),
                    ];
                    let _ = writer.post(&url).form(&form).send().await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        });
        for _ in 0..total {
            tokio::time::sleep_until(next).await;
            next += interval;
            let writer = writer.clone();
            let form = [("body", format!("benchsent{}", now_micros())), ("_csrf", token.clone())];
            let post_url = format!("{}{topic}/messages", writer_node.base);
            // Posts run concurrently so a slow one does not hold back the steady rate.
            tokio::spawn(async move {
                let _ = writer.post(post_url).form(&form).send().await;
            });
        }
        if let Some(changes) = changes {
            changes.await.expect("page changes");
        }
        // Let the last messages arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu =
            cpu_seconds(writer_node.pid) + reader_node.as_ref().map(|n| cpu_seconds(n.pid)).unwrap_or(0.0) - cpu_start;
        let own = cpu_seconds(std::process::id()) - own_start;
        recording.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let mut latencies: Vec<u32> = Vec::new();
        let mut events = 0;
        for task in all_tasks.drain(..) {
            let received = task.await.expect("reader");
            latencies.extend(received.latencies);
            events += received.events;
        }
        latencies.sort_unstable();
        let stamps = if o.view == View::Chat { total } else { o.seconds };
        let expected = stamps as usize * o.readers;
        println!(
            "{:>6} {:>9.1}% {:>10.1} {:>10.1} {:>10.1} {:>11.0}% {:>14.2} {:>14.1} {:>11.0}%",
            rate,
            100.0 * latencies.len() as f64 / expected as f64,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.last().map(|v| f64::from(*v) / 1000.0).unwrap_or(f64::NAN),
            100.0 * cpu / elapsed,
            1e6 * cpu / (total as f64 * o.readers as f64),
            events as f64 / o.readers as f64,
            100.0 * own / elapsed
        );
        let p99 = percentile(&latencies, 0.99);
        // Fresh readers for the next step.
        stop.store(false, Ordering::Relaxed);
        connected.store(0, Ordering::Relaxed);
        if p99 > 100.0 {
            println!("p99 passed 100 ms at {rate} msg/s; stopping");
            break;
        }
        for _ in 0..o.readers {
            all_tasks.push(tokio::spawn(reader(
                addr,
                request.clone(),
                connected.clone(),
                recording.clone(),
                stop.clone(),
            )));
            if all_tasks.len() % 200 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        while connected.load(Ordering::Relaxed) < o.readers {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}
