//! What the load generators share: reading a process's CPU time and memory from /proc,
//! wall-clock microseconds for stamping messages, and starting Floo as its own process.
#![allow(dead_code)] // each bench uses its own part

pub mod marks;
mod media;
#[allow(unused_imports)] // only the media benches use it
pub use media::*;

use std::path::Path;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Microseconds since the Unix epoch (the stamp senders put in what they send).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (field(11) + field(12)) as f64 / 100.0
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The value after `--name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// Whether `--name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// `floo serve` as a process of its own, on free ports.
pub struct Floo {
    pub base: String,
    pub pid: u32,
    _child: Child,
}

impl Floo {
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Floo {
        Floo::start_on("127.0.0.1:0", "127.0.0.1:0", data_dir, extra).await
    }

    /// The same, listening where told.
    pub async fn start_on(http_addr: &str, quic_addr: &str, data_dir: &Path, extra: &[&str]) -> Floo {
        // `--floo PATH` runs another build (an older one, say, to compare in one run).
        let program = arg("--floo").unwrap_or_else(|| env!("CARGO_BIN_EXE_floo").to_owned());
        let mut child = Command::new(program)
            .args(["serve", "--http-addr", http_addr, "--quic-addr", quic_addr, "--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .env("FLOO_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start floo");
        let pid = child.id().expect("pid");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(url) = line.strip_prefix("Floo is running at ") {
                return Floo { base: url.trim().to_owned(), pid, _child: child };
            }
        }
        panic!("floo did not start");
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_in(page: &str) -> String {
    let from = page.find("name=\"_csrf\" value=\"").expect("a form with a CSRF token") + 20;
    page[from..from + 64].to_owned()
}

/// Signs in with the dev login as `name` on a cookie-keeping client; returns the CSRF
/// token of the new session (signing in starts one, with a token of its own).
pub async fn sign_in(client: &reqwest::Client, base: &str, name: &str) -> String {
    let page = client.get(format!("{base}/login")).send().await.expect("login page").text().await.expect("body");
    let home = client
        .post(format!("{base}/login/dev"))
        .form(&[("name", name), ("_csrf", &csrf_in(&page))])
        .send()
        .await
        .expect("login")
        .text()
        .await
        .expect("home page");
    csrf_in(&home)
}
