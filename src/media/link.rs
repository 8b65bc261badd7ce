//! The one interface the relay's session code is written against: a participant's
//! session, whichever way it reaches the relay. WebTransport over QUIC
//! (`web-transport-quinn`) and the same streams multiplexed over a WebSocket by QMux
//! (`qmux`) both implement the `web-transport-trait` crate's `Session`; this adds the
//! little the relay needs beyond it.

use std::time::Duration;

use web_transport_trait as wt;

use super::wire::Transport;

/// A participant's session: streams in both directions, a close with a code and a
/// reason, and how far away the participant is.
pub trait Link: wt::Session {
    /// Which transport this is (participants see it in the roster).
    const TRANSPORT: Transport;

    /// The connection's shortest round trip: its distance, without the queue a slow
    /// link builds up (that queue must not buy its groups more time).
    fn min_rtt(&self) -> Duration;

    /// The transport's running estimate of the round trip (a queue on the link raises it).
    fn smoothed_rtt(&self) -> Duration;
}

impl Link for web_transport_quinn::Session {
    const TRANSPORT: Transport = Transport::WebTransport;

    fn min_rtt(&self) -> Duration {
        quinn::Connection::stats(self).path.min_rtt
    }

    fn smoothed_rtt(&self) -> Duration {
        quinn::Connection::rtt(self)
    }
}

impl Link for qmux::Session {
    const TRANSPORT: Transport = Transport::WebSocket;

    /// QMux measures its round trip with its own pings (once a second) over TCP, whose
    /// queue is kept short (`TCP_NOTSENT_LOWAT`), so the smoothed figure is the distance.
    fn min_rtt(&self) -> Duration {
        self.smoothed_rtt()
    }

    fn smoothed_rtt(&self) -> Duration {
        use wt::Stats;
        wt::Session::stats(self).rtt().unwrap_or(Duration::ZERO)
    }
}

/// What the room task keeps of a session to end it, whatever its transport.
pub trait Closer: Send + Sync {
    fn close(&self, code: u32, reason: &str);
}

impl<S: wt::Session + Send + Sync> Closer for S {
    fn close(&self, code: u32, reason: &str) {
        wt::Session::close(self, code, reason);
    }
}
