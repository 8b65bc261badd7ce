//! Each call's connections over time, for the ops dashboard: every [`SAMPLE_EVERY`] the
//! figures of every call hosted here (bytes in and out, round trip, groups dropped) are
//! turned into rates and kept for an hour per connection, in memory, per node.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::relay::{Figures, Relay};
use super::wire::Transport;
use crate::metrics::SAMPLE_EVERY;

/// An hour of samples.
const POINTS: usize = 720;
/// Connections remembered per call (the oldest that left are forgotten first).
const MAX_CONNECTIONS: usize = 200;

/// One sample of one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Point {
    pub at_ms: i64,
    /// Media from it and to it over the last interval, in kbit/s.
    pub in_kbps: f64,
    pub out_kbps: f64,
    pub rtt_ms: f64,
    /// Groups dropped on their way to it since it joined.
    pub dropped: u64,
}

/// One connection to a call, as sampled.
#[derive(Debug, Clone)]
pub struct Connection {
    pub session: u64,
    pub name: String,
    pub transport: Transport,
    pub browser: Option<String>,
    /// Still connected at the latest sample.
    pub connected: bool,
    pub points: VecDeque<Point>,
    last: (Instant, u64, u64),
}

impl Connection {
    pub fn latest(&self) -> Point {
        self.points.back().copied().unwrap_or_default()
    }
}

/// Every hosted call's connections, by meeting; cheap to clone.
#[derive(Clone, Default)]
pub struct CallFigures {
    calls: Arc<Mutex<HashMap<i64, Vec<Connection>>>>,
}

impl CallFigures {
    /// A meeting's connections, in the order they joined (empty: not hosted here).
    pub fn of(&self, meeting_id: i64) -> Vec<Connection> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).get(&meeting_id).cloned().unwrap_or_default()
    }

    /// Samples the relay's calls until `closing` turns true.
    pub fn sample(&self, relay: Relay, mut closing: tokio::sync::watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(SAMPLE_EVERY) => {}
                    _ = closing.wait_for(|closing| *closing) => return,
                }
                let mut sampled = HashMap::new();
                for meeting_id in relay.hosted_meetings() {
                    if let Some(figures) = relay.figures(meeting_id).await {
                        sampled.insert(meeting_id, figures);
                    }
                }
                this.update(sampled, Instant::now(), crate::clock::now_ms());
            }
        });
    }

    fn update(&self, sampled: HashMap<i64, Vec<Figures>>, now: Instant, now_ms: i64) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        // Calls no longer hosted here are forgotten.
        calls.retain(|id, _| sampled.contains_key(id));
        for (meeting_id, figures) in sampled {
            let connections = calls.entry(meeting_id).or_default();
            for c in connections.iter_mut() {
                c.connected = false;
            }
            for f in figures {
                let at = connections.iter().position(|c| c.session == f.session).unwrap_or_else(|| {
                    connections.push(Connection {
                        session: f.session,
                        name: f.name.clone(),
                        transport: f.transport,
                        browser: f.browser.clone(),
                        connected: true,
                        points: VecDeque::new(),
                        // The first rates are since it joined.
                        last: (f.joined, 0, 0),
                    });
                    connections.len() - 1
                });
                let c = &mut connections[at];
                let seconds = now.duration_since(c.last.0).as_secs_f64().max(0.001);
                let kbps = |bytes: u64, before: u64| bytes.saturating_sub(before) as f64 * 8.0 / 1000.0 / seconds;
                if c.points.len() == POINTS {
                    c.points.pop_front();
                }
                c.points.push_back(Point {
                    at_ms: now_ms,
                    in_kbps: kbps(f.bytes_in, c.last.1),
                    out_kbps: kbps(f.bytes_out, c.last.2),
                    rtt_ms: f.rtt.as_secs_f64() * 1000.0,
                    dropped: f.groups_dropped,
                });
                c.last = (now, f.bytes_in, f.bytes_out);
                c.connected = true;
            }
            while connections.len() > MAX_CONNECTIONS {
                match connections.iter().position(|c| !c.connected) {
                    Some(gone) => connections.remove(gone),
                    None => break,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn figures(session: u64, joined: Instant, bytes_in: u64, bytes_out: u64) -> Figures {
        Figures {
            session,
            name: format!("P{session}"),
            transport: Transport::WebTransport,
            browser: Some("Firefox 153".into()),
            joined,
            bytes_in,
            bytes_out,
            groups_dropped: 2,
            rtt: Duration::from_millis(40),
        }
    }

    #[test]
    fn counters_become_rates_and_those_who_left_stay_until_the_call_goes() {
        let calls = CallFigures::default();
        let t0 = Instant::now();
        let t5 = t0 + Duration::from_secs(5);
        let t10 = t0 + Duration::from_secs(10);
        calls.update(HashMap::from([(7, vec![figures(1, t0, 62_500, 125_000)])]), t5, 5_000);
        let p = calls.of(7)[0].latest();
        // 62,500 bytes in 5 s: 100 kbit/s.
        assert!((p.in_kbps - 100.0).abs() < 0.01 && (p.out_kbps - 200.0).abs() < 0.01, "{p:?}");
        assert_eq!((p.rtt_ms.round(), p.dropped), (40.0, 2));
        // The next rate counts only what came since.
        calls.update(HashMap::from([(7, vec![figures(2, t5, 0, 0)])]), t10, 10_000);
        let connections = calls.of(7);
        assert_eq!(connections.len(), 2);
        assert!(!connections[0].connected && connections[1].connected);
        calls.update(HashMap::new(), t10, 10_000);
        assert!(calls.of(7).is_empty(), "a call no longer hosted is forgotten");
    }
}
