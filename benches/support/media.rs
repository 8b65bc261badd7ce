//! What the media benches share: a Floo with a meeting to take tickets for, WebTransport
//! sessions to it, and the tally of what subscribers receive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use floo::media::wire::GroupReader;
use web_transport_quinn::Session;

use super::{Floo, now_us};

/// The CPU's clock, for turning CPU seconds into cycles.
pub fn cpu_mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// What subscribers received while the bench was recording.
#[derive(Default)]
pub struct Tally {
    pub bytes: AtomicU64,
    pub groups_done: AtomicU64,
    pub groups_dropped: AtomicU64,
    pub latencies: Mutex<Vec<u32>>,
}

/// Reads group streams until the session ends. While `recording`, counts the bytes that
/// arrive, every frame's latency and every group that ends (whole or given up).
pub async fn subscribe_loop<S: web_transport_trait::Session>(
    session: S,
    tally: Arc<Tally>,
    recording: Arc<std::sync::atomic::AtomicBool>,
) where
    S::RecvStream: Send + 'static,
{
    while let Ok(mut stream) = web_transport_trait::Session::accept_uni(&session).await {
        let tally = tally.clone();
        let recording = recording.clone();
        tokio::spawn(async move {
            let mut reader = GroupReader::new(1 << 20);
            let mut samples = Vec::new();
            let ok = loop {
                match web_transport_trait::RecvStream::read_chunk(&mut stream, 1 << 16).await {
                    Ok(Some(chunk)) => {
                        let counted = recording.load(Ordering::Relaxed);
                        if counted {
                            tally.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                        reader.push(&chunk);
                        while let Ok(Some((_, info))) = reader.next_frame() {
                            if counted {
                                samples.push(now_us().saturating_sub(info.timestamp_us) as u32);
                            }
                        }
                    }
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            };
            if recording.load(Ordering::Relaxed) {
                if ok { &tally.groups_done } else { &tally.groups_dropped }.fetch_add(1, Ordering::Relaxed);
            }
            tally.latencies.lock().expect("lock").extend(samples);
        });
    }
}

/// A WebTransport session to `url`, trusting the certificate with `hash`.
pub async fn connect(url: &str, hash: &[u8]) -> Session {
    let client =
        web_transport_quinn::ClientBuilder::new().with_server_certificate_hashes(vec![hash.to_vec()]).expect("client");
    client.connect(url::Url::parse(url).expect("url")).await.expect("connect")
}

/// A Floo started for a bench, signed in, with a meeting to take tickets for.
pub struct Server {
    pub pid: u32,
    pub url_base: String,
    pub websocket_base: String,
    pub hash: Vec<u8>,
    /// Where a signed-in client asks for tickets (each admits one session, once).
    pub http: reqwest::Client,
    pub ticket_url: String,
    pub csrf: String,
    _floo: Floo,
}

impl Server {
    /// A fresh admission token for one more session.
    pub async fn token(&self) -> String {
        let ticket: serde_json::Value = self
            .http
            .post(&self.ticket_url)
            .form(&[("_csrf", &self.csrf)])
            .send()
            .await
            .expect("ticket")
            .json()
            .await
            .expect("json");
        ticket["token"].as_str().expect("token").to_owned()
    }
}

/// Starts Floo, signs in, makes a meeting, and gets a ticket for it.
pub async fn start_floo(data_dir: &std::path::Path, max: usize) -> Server {
    let floo = Floo::start(data_dir, &["--max-participants", &max.to_string()]).await;
    let (pid, base) = (floo.pid, floo.base.clone());
    let http = reqwest::Client::builder().cookie_store(true).build().expect("client");
    let token = super::sign_in(&http, &base, "Bench").await;
    let team =
        http.post(format!("{base}/teams")).form(&[("name", "Bench"), ("_csrf", &token)]).send().await.expect("team");
    let team_path = team.url().path().to_owned();
    let meeting = http
        .post(format!("{base}{team_path}/meetings"))
        .form(&[("title", "Load"), ("_csrf", &token)])
        .send()
        .await
        .expect("meeting");
    let ticket_url = format!("{}{}/media", base, meeting.url().path());
    let ticket: serde_json::Value =
        http.post(&ticket_url).form(&[("_csrf", &token)]).send().await.expect("ticket").json().await.expect("json");
    let port = ticket["port"].as_u64().expect("port");
    let hash: Vec<u8> =
        ticket["certHash"].as_array().expect("hash").iter().map(|v| v.as_u64().unwrap_or(0) as u8).collect();
    Server {
        pid,
        url_base: format!("https://127.0.0.1:{port}/meeting"),
        websocket_base: format!("{}/media/ws", base.replacen("http://", "ws://", 1)),
        hash,
        http,
        ticket_url,
        csrf: token,
        _floo: floo,
    }
}

/// The plain forwarder's side of its start (run in its own process): a QUIC endpoint on a
/// free loopback port, announced on stdout for [`Forwarder::spawn`].
pub fn forwarder_server() -> web_transport_quinn::Server {
    let identity = floo::media::tls::dev_identity().expect("cert");
    let config = floo::media::tls::server_config(&identity).expect("config");
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let hash: Vec<String> = identity.dev_hash.expect("hash").iter().map(|b| b.to_string()).collect();
    println!("FORWARDER {} {}", endpoint.local_addr().expect("addr").port(), hash.join(","));
    web_transport_quinn::Server::new(endpoint)
}

/// A plain forwarder running as a process of its own (this bench's binary with
/// `--plain-forwarder`), and how to reach it.
pub struct Forwarder {
    pub pid: u32,
    pub url: String,
    pub hash: Vec<u8>,
    _child: tokio::process::Child,
}

impl Forwarder {
    pub async fn spawn() -> Forwarder {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(std::env::current_exe().expect("exe"))
            .arg("--plain-forwarder")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("forwarder");
        let pid = child.id().expect("pid");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines.next_line().await.expect("stdout").expect("forwarder started");
        let mut parts = line.split_whitespace().skip(1);
        let port: u16 = parts.next().expect("port").parse().expect("port");
        let hash: Vec<u8> = parts.next().expect("hash").split(',').map(|b| b.parse().expect("byte")).collect();
        Forwarder { pid, url: format!("https://127.0.0.1:{port}/"), hash, _child: child }
    }
}

/// Copies the rest of a group stream to every stream in `outs`, then finishes them.
pub async fn copy_group(mut stream: web_transport_quinn::RecvStream, mut outs: Vec<web_transport_quinn::SendStream>) {
    while let Ok(Some(chunk)) = stream.read_chunk(1 << 16, true).await {
        for out in &mut outs {
            let _ = out.write_chunk(chunk.bytes.clone()).await;
        }
    }
    for out in &mut outs {
        let _ = out.finish();
    }
}
