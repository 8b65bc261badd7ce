//! A UDP impairment proxy for the browser tests, since this machine's kernel has no
//! `netem`: it sits between one browser and the relay, and delays every datagram by a
//! base delay with uniform jitter (so packets reorder, as on a real path), drops a share
//! of them, and can stall the path for a while (holding everything, then letting it go
//! at once, as a Wi-Fi stall does). A TCP control port takes commands from the test
//! script: `stall MS`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::Instant;

/// How the path is impaired.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub delay: Duration,
    /// Each datagram's delay is `delay` ± up to this much (uniform).
    pub jitter: Duration,
    /// The share of datagrams dropped (each direction).
    pub loss: f64,
}

struct State {
    impairment: Impairment,
    stalled_until: Option<Instant>,
    random: u64,
    passed: u64,
    dropped: u64,
    /// The tasks carrying the relay's answers back, stopped with the proxy.
    returns: Vec<tokio::task::JoinHandle<()>>,
}

impl State {
    /// A uniform number in [0, 1) (xorshift: the tests need no better).
    fn uniform(&mut self) -> f64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        (self.random >> 11) as f64 / (1u64 << 53) as f64
    }

    /// When a datagram received now leaves, or None if it is lost.
    fn schedule(&mut self, now: Instant) -> Option<Instant> {
        if self.uniform() < self.impairment.loss {
            self.dropped += 1;
            return None;
        }
        self.passed += 1;
        let jitter = self.impairment.jitter.as_secs_f64() * (2.0 * self.uniform() - 1.0);
        let delay = Duration::from_secs_f64((self.impairment.delay.as_secs_f64() + jitter).max(0.0));
        let leaves = now + delay;
        Some(self.stalled_until.map_or(leaves, |until| leaves.max(until)))
    }
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    /// Where the test script sends its commands.
    pub control: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// Listens on `front` and forwards to `upstream`, impaired both ways.
    pub async fn start(front: SocketAddr, upstream: SocketAddr, impairment: Impairment) -> Proxy {
        let state = Arc::new(Mutex::new(State {
            impairment,
            stalled_until: None,
            random: 0x9e37_79b9_7f4a_7c15,
            passed: 0,
            dropped: 0,
            returns: Vec::new(),
        }));
        let front = Arc::new(UdpSocket::bind(front).await.expect("the proxy's front address"));
        let control = TcpListener::bind("127.0.0.1:0").await.expect("a control port");
        let control_addr = control.local_addr().expect("control address");
        let mut tasks = Vec::new();
        {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok((stream, _)) = control.accept().await {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(stream).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if let Some(ms) = line.strip_prefix("stall ").and_then(|ms| ms.trim().parse::<u64>().ok()) {
                                let until = Instant::now() + Duration::from_millis(ms);
                                state.lock().expect("lock").stalled_until = Some(until);
                            }
                        }
                    });
                }
            }));
        }
        {
            let state = state.clone();
            let front = front.clone();
            tasks.push(tokio::spawn(async move {
                // One socket towards the relay per browser-side address (as a NAT keeps one).
                let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    let back = match backs.get(&from) {
                        Some(back) => back.clone(),
                        None => {
                            let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("a socket to the relay"));
                            back.connect(upstream).await.expect("the relay");
                            let returns =
                                tokio::spawn(relay_to_browser(back.clone(), front.clone(), from, state.clone()));
                            state.lock().expect("lock").returns.push(returns);
                            backs.insert(from, back.clone());
                            back
                        }
                    };
                    let Some(at) = state.lock().expect("lock").schedule(Instant::now()) else { continue };
                    let datagram = buf[..n].to_vec();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        let _ = back.send(&datagram).await;
                    });
                }
            }));
        }
        Proxy { control: control_addr, tasks, state }
    }

    /// Datagrams let through and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state.lock().expect("lock");
        (state.passed, state.dropped)
    }
}

async fn relay_to_browser(back: Arc<UdpSocket>, front: Arc<UdpSocket>, browser: SocketAddr, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = back.recv(&mut buf).await {
        let Some(at) = state.lock().expect("lock").schedule(Instant::now()) else { continue };
        let datagram = buf[..n].to_vec();
        let front = front.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = front.send_to(&datagram, browser).await;
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(self.state.lock().expect("lock").returns.iter()) {
            task.abort();
        }
    }
}
