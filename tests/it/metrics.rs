//! Metrics as an operator gets them: a real Prometheus (Debian's package, started here on
//! a free port) scrapes Floo's `/metrics` during a call, and its HTTP API shows the relay's
//! sessions and byte counters moving; `promtool check metrics` accepts the exposition.

use std::process::Stdio;
use std::time::Duration;

use crate::media::{floo_process_with, join_with_ticket, ticket};

/// A Prometheus of its own, scraping `target` every second; killed when dropped.
struct Prometheus {
    child: std::process::Child,
    dir: std::path::PathBuf,
    api: String,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("floo-prometheus-{}", crate::support::unique_suffix()));
        std::fs::create_dir_all(&dir).expect("a directory for Prometheus");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: floo\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("Prometheus configuration");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the metrics test needs Prometheus (ops/test installs the prometheus package)");
        Prometheus { child, dir, api: format!("http://127.0.0.1:{port}/api/v1") }
    }

    /// The value of an instant query's only series, once Prometheus has one.
    async fn value(&self, query: &str) -> Option<f64> {
        let url = format!("{}/query", self.api);
        let answer = reqwest::Client::new().get(&url).query(&[("query", query)]).send().await.ok()?;
        let json: serde_json::Value = answer.json().await.ok()?;
        let result = json["data"]["result"].as_array()?;
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` gives a value that `good` accepts.
    async fn wait_for(&self, query: &str, good: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.value(query).await;
            if let Some(v) = value.filter(|v| good(*v)) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "Prometheus never had {query} as wanted (last: {value:?})");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_relay_and_the_pages_during_a_call() {
    // Floo in a process of its own: the metrics are the whole process's, and other tests
    // hold calls at the same time.
    let data_dir = std::env::temp_dir().join(format!("floo-metrics-{}", crate::support::unique_suffix()));
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let metrics_addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let (child, base) = floo_process_with(&data_dir, &["--metrics-addr", &metrics_addr.to_string()]).await;
    let prometheus = Prometheus::start(metrics_addr);
    let sign_in = |name| crate::support::signed_in_at(&base, name);
    let clients = [sign_in("Alice").await, sign_in("Bob").await];
    let team = clients[0].post_form("/teams", &[("name", "Scraped")]).await.url;
    let code = clients[0].get(&format!("{team}/invite")).await.between("id=\"invite-code\">", "<");
    clients[1].post_form("/join", &[("code", &code)]).await.expect_ok_with("Scraped");
    let meeting = clients[0].post_form(&format!("{team}/meetings"), &[("title", "Call")]).await.url;
    let mut alice = join_with_ticket(&ticket(&clients[0], &meeting).await).await;
    let mut bob = join_with_ticket(&ticket(&clients[1], &meeting).await).await;
    alice.announce_camera_and_microphone(0).await;
    let camera = crate::media::subscribe_to_others(&mut bob, 2).await[0].id;

    let sessions = r#"sum(floo_relay_sessions{transport="webtransport"})"#;
    assert_eq!(prometheus.wait_for(sessions, |v| v == 2.0).await, 2.0);
    assert_eq!(prometheus.wait_for("floo_meetings_hosted", |v| v == 1.0).await, 1.0);
    // Alice's pictures reach Bob: the byte counters move, in and out, scrape after scrape.
    let bytes_in = r#"floo_relay_media_bytes_total{direction="in"}"#;
    let bytes_out = r#"floo_relay_media_bytes_total{direction="out"}"#;
    let mut seen = (0.0, 0.0);
    for sequence in 0..3 {
        let sent = crate::media::frames(5);
        alice.publish_group(1, sequence, &sent).await;
        let (header, _) = bob.receive_group().await;
        assert_eq!(header.track, camera);
        let at_least: usize = sent.iter().map(|f| f.len()).sum::<usize>() * (sequence as usize + 1);
        let now_in = prometheus.wait_for(bytes_in, |v| v > seen.0 && v >= at_least as f64).await;
        let now_out = prometheus.wait_for(bytes_out, |v| v > seen.1).await;
        seen = (now_in, now_out);
    }
    println!("relay bytes after three groups: in {} out {}", seen.0, seen.1);
    // Bob's round trips, once per group he was sent.
    prometheus.wait_for("floo_relay_subscriber_rtt_seconds_count", |v| v >= 1.0).await;
    // Pages are counted by route template, not by path.
    let route =
        r#"sum(floo_http_request_duration_seconds_count{route="/teams/{team_id}/meetings/{meeting_id}",status="200"})"#;
    clients[0].get(&meeting).await.expect_ok_with("Call");
    assert!(prometheus.wait_for(route, |v| v >= 1.0).await >= 1.0);
    prometheus.wait_for("floo_process_resident_memory_bytes", |v| v > 1e6).await;
    prometheus.wait_for("floo_process_open_fds", |v| v > 5.0).await;

    // When they leave, the session gauge falls back.
    alice.leave();
    bob.leave();
    prometheus.wait_for(&format!("{sessions} or vector(0)"), |v| v == 0.0).await;

    // promtool, Prometheus's own checker, accepts the text as it is served.
    let text =
        reqwest::get(format!("http://{metrics_addr}/metrics")).await.expect("scrape").text().await.expect("text");
    assert!(!text.contains("Alice") && !text.contains("Bob"), "no participant is named in the metrics");
    let mut check = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (from the prometheus package)");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = check.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).await.expect("write to promtool");
    }
    let output = check.wait_with_output().await.expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&data_dir);
}
