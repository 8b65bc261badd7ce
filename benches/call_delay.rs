//! Mouth to ear and camera to screen in real browsers: starts Floo (HTTP on every address,
//! so that the listener of the impaired scenarios can open it at 127.0.0.2; the relay on
//! 127.0.0.1) and the impairment proxy of the tests on 127.0.0.2 at the relay's port
//! (40 ± 15 ms, 2 % loss, both ways), then runs `benches/call-delay.mjs`, which measures
//! and prints the figures (see its header).
//!
//! cargo bench --bench call_delay -- [--seconds 15]
//!
//! Needs Debian's Chromium and `npm ci --prefix tests/e2e` (ops/test does both).

#[path = "../tests/it/impair.rs"]
#[allow(dead_code)]
mod impair;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::Floo;

#[tokio::main]
async fn main() {
    let seconds = support::arg("--seconds").unwrap_or_else(|| "15".into());
    let relay_port = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port();
    let data_dir = std::env::temp_dir().join(format!("floo-bench-delay-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).expect("dir");
    let quic = format!("127.0.0.1:{relay_port}");
    let floo = Floo::start_on("0.0.0.0:0", &quic, &data_dir, &["--allow-dev-login"]).await;
    let port = floo.base.rsplit(':').next().expect("port").to_owned();
    let impairment =
        impair::Impairment { delay: Duration::from_millis(40), jitter: Duration::from_millis(15), loss: 0.02 };
    let front = format!("127.0.0.2:{relay_port}").parse().expect("address");
    let _proxy = impair::Proxy::start(front, quic.parse().expect("address"), impairment).await;
    let root = env!("CARGO_MANIFEST_DIR");
    let status = tokio::process::Command::new("node")
        .arg(format!("{root}/benches/call-delay.mjs"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(format!("http://127.0.0.2:{port}"))
        .arg(&seconds)
        .status()
        .await
        .expect("node runs");
    // `exit` runs no destructors: the server goes first (it outlived the bench before and
    // loaded the machine for the next run).
    drop(floo);
    let _ = std::fs::remove_dir_all(&data_dir);
    std::process::exit(status.code().unwrap_or(1));
}
