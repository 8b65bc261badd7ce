//! A subscriber's writer task: carries out the room's orders for that subscriber's group
//! streams (open, write, finish, abandon) and tells the room how much stays queued, so
//! that the writes to a hundred subscribers run side by side instead of one after the
//! other on the room's task. Written once for every transport ([`Link`]).
//!
//! A group stays the room's until the subscriber has it: over QUIC until it has
//! acknowledged all of it; over a WebSocket until the FIN is on the TCP connection, whose
//! unsent queue the HTTP server keeps short (`TCP_NOTSENT_LOWAT`). Until then the room can
//! still give the group up, and a reset drops whatever the transport has not sent.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use web_transport_trait::SendStream as _;

use super::link::Link;
use super::room::SendId;

/// What the room asks of a subscriber's writer task.
pub(super) enum WriterOrder {
    Open {
        send: SendId,
        header: Bytes,
        priority: i32,
    },
    Write {
        send: SendId,
        frame: Bytes,
    },
    Finish {
        send: SendId,
    },
    Abandon {
        send: SendId,
        code: u32,
    },
    /// The room sent the session off (for good, or to another node): reset every stream
    /// (with `reset`), then close the session with `code` and `reason`. Done here, not beside the writer, so that no
    /// queued media stands before the close on the wire: a browser that does not get the
    /// close in time sees only "connection lost", not why.
    Close {
        code: u32,
        reason: String,
        reset: u32,
    },
}

/// A writer's report to the room: bytes still queued on a group stream, and whether the
/// stream is done with (finished, abandoned or gone).
pub(super) struct WriterReport {
    pub send: SendId,
    pub queued: usize,
    pub done: bool,
    /// The connection's shortest round trip (see [`Link::min_rtt`]).
    pub rtt: Duration,
    /// And its smoothed one (see [`Link::smoothed_rtt`]).
    pub smoothed_rtt: Duration,
}

/// How long a session being closed has to close by itself after its `closing` message.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Reports of queued bytes are sent when they cross zero or move by this much.
const REPORT_STEP: usize = 16 * 1024;

/// A group stream to one subscriber. Frames are written at once while the stream has
/// send credit; a stream without credit (or not yet open) waits in [`Outgoing::busy`]
/// and comes back when it can take more.
struct OutStream<S> {
    stream: Option<S>,
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    /// Bytes handed to a write that is waiting for credit.
    in_flight: usize,
    finish: bool,
    /// The stream is finished on the wire; it is kept until the subscriber has it, so
    /// that the room can still give it up if it arrives too late.
    finish_sent: bool,
    /// Given up: the stream is reset with this code.
    abandoned: Option<u32>,
    /// The queued bytes last reported to the room.
    reported: usize,
}

type Busy<S> = Pin<Box<dyn Future<Output = (SendId, Option<S>)> + Send>>;

/// Every group stream of a subscriber, and the ones waiting to open or for credit.
struct Outgoing<L: Link> {
    streams: HashMap<SendId, OutStream<L::SendStream>>,
    busy: FuturesUnordered<Busy<L::SendStream>>,
    /// Streams finished on the wire and waiting for the subscriber to have them.
    finishing: usize,
}

/// Polls `future` once without a waker: its result if it is ready now.
fn poll_now<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    std::pin::pin!(future).poll(&mut cx)
}

impl<L: Link> Outgoing<L>
where
    L::SendStream: Send + 'static,
{
    fn new() -> Self {
        Outgoing { streams: HashMap::new(), busy: FuturesUnordered::new(), finishing: 0 }
    }

    fn open(&mut self, link: &L, send: SendId, header: Bytes, priority: i32) {
        let link = link.clone();
        self.streams.insert(
            send,
            OutStream {
                stream: None,
                pending: VecDeque::new(),
                pending_bytes: 0,
                in_flight: 0,
                finish: false,
                finish_sent: false,
                abandoned: None,
                reported: 0,
            },
        );
        self.busy.push(Box::pin(async move {
            let Ok(mut stream) = link.open_uni().await else { return (send, None) };
            stream.set_priority(priority);
            let written = stream.write_all(&header).await.is_ok();
            (send, written.then_some(stream))
        }));
    }

    /// Writes what is pending without waiting; parks the stream if it runs out of credit.
    /// Returns the bytes still pending, or None once the stream is done with.
    fn pump(&mut self, send: SendId) -> Option<usize> {
        let out = self.streams.get_mut(&send)?;
        let Some(mut stream) = out.stream.take() else { return Some(out.pending_bytes + out.in_flight) };
        out.in_flight = 0;
        if let Some(code) = out.abandoned {
            stream.reset(code);
            self.remove(send);
            return None;
        }
        while let Some(front) = out.pending.front_mut() {
            // A write is cancel safe: dropped while waiting, it has advanced `front` by
            // exactly what the transport took.
            let before = front.len();
            match poll_now(stream.write_buf(front)) {
                Poll::Ready(Ok(_)) if front.len() < before => {
                    out.pending_bytes -= before - front.len();
                    if front.is_empty() {
                        out.pending.pop_front();
                    }
                }
                Poll::Ready(_) => {
                    // The subscriber went away or stopped the stream.
                    self.remove(send);
                    return None;
                }
                Poll::Pending => {
                    out.pending_bytes -= before - front.len();
                    // No credit: wait for it off the room's path, then come back.
                    let mut chunk = out.pending.pop_front().unwrap_or_default();
                    out.pending_bytes -= chunk.len();
                    out.in_flight = chunk.len();
                    self.busy.push(Box::pin(async move {
                        let ok = stream.write_all_buf(&mut chunk).await.is_ok();
                        (send, ok.then_some(stream))
                    }));
                    return Some(out.pending_bytes + out.in_flight);
                }
            }
        }
        if out.finish && !out.finish_sent {
            // Written, not yet delivered: it stays until the subscriber has it.
            let _ = stream.finish();
            out.finish_sent = true;
            self.finishing += 1;
        }
        out.stream = Some(stream);
        Some(0)
    }

    /// Drops a stream the writer is done with.
    fn remove(&mut self, send: SendId) {
        if self.streams.remove(&send).is_some_and(|out| out.finish_sent) {
            self.finishing -= 1;
        }
    }

    /// Finished streams the subscriber now has whole (or stopped): they are done with and
    /// forgotten.
    fn delivered(&mut self) -> Vec<SendId> {
        let done: Vec<SendId> = self
            .streams
            .iter_mut()
            .filter(|(_, out)| out.finish_sent)
            .filter_map(|(send, out)| {
                let delivered = out.stream.as_mut().is_none_or(|stream| poll_now(stream.closed()).is_ready());
                delivered.then_some(send)
            })
            .copied()
            .collect();
        for send in &done {
            self.remove(*send);
        }
        done
    }

    /// A stream came back from waiting (opened, or took its chunk).
    fn returned(&mut self, send: SendId, stream: Option<L::SendStream>) -> Option<usize> {
        match (self.streams.get_mut(&send), stream) {
            (Some(out), Some(stream)) => {
                out.stream = Some(stream);
                self.pump(send)
            }
            _ => {
                self.remove(send);
                None
            }
        }
    }
}

/// A connection's shortest and smoothed round trips, read at most twice a second.
#[derive(Default)]
struct Distance {
    read: Option<(Instant, Duration, Duration)>,
}

impl Distance {
    fn of<L: Link>(&mut self, link: &L) -> (Duration, Duration) {
        match self.read {
            Some((at, min, smoothed)) if at.elapsed() < Duration::from_millis(500) => (min, smoothed),
            _ => {
                let (min, smoothed) = (link.min_rtt(), link.smoothed_rtt());
                self.read = Some((Instant::now(), min, smoothed));
                (min, smoothed)
            }
        }
    }
}

/// A subscriber's writer: carries out the room's orders on its group streams and tells
/// the room how much stays queued (so it can give up groups for a slow subscriber).
pub(super) async fn run_writer<L: Link>(
    link: L,
    mut orders: mpsc::Receiver<WriterOrder>,
    reports: mpsc::UnboundedSender<WriterReport>,
) where
    L::SendStream: Send + 'static,
{
    let mut outgoing = Outgoing::<L>::new();
    // How often finished streams are checked for delivery.
    let mut delivery = tokio::time::interval(Duration::from_millis(20));
    delivery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut distance = Distance::default();
    let report = |outgoing: &mut Outgoing<L>, distance: &mut Distance, send: SendId, left: Option<usize>| {
        let (queued, done) = match left {
            Some(queued) => (queued, false),
            None => (0, true),
        };
        if let Some(out) = outgoing.streams.get_mut(&send) {
            let moved = queued.abs_diff(out.reported) >= REPORT_STEP || (queued == 0) != (out.reported == 0);
            if !moved {
                return;
            }
            out.reported = queued;
        }
        let (rtt, smoothed_rtt) = distance.of(&link);
        let _ = reports.send(WriterReport { send, queued, done, rtt, smoothed_rtt });
    };
    loop {
        tokio::select! {
            order = orders.recv() => match order {
                Some(WriterOrder::Open { send, header, priority }) => outgoing.open(&link, send, header, priority),
                Some(WriterOrder::Write { send, frame }) => {
                    if let Some(out) = outgoing.streams.get_mut(&send) {
                        out.pending_bytes += frame.len();
                        out.pending.push_back(frame);
                        let left = outgoing.pump(send);
                        report(&mut outgoing, &mut distance, send, left);
                    }
                }
                Some(WriterOrder::Finish { send }) => {
                    if let Some(out) = outgoing.streams.get_mut(&send) {
                        out.finish = true;
                        let left = outgoing.pump(send);
                        report(&mut outgoing, &mut distance, send, left);
                    }
                }
                Some(WriterOrder::Abandon { send, code }) => {
                    if let Some(out) = outgoing.streams.get_mut(&send) {
                        out.abandoned = Some(code);
                        out.pending.clear();
                        out.pending_bytes = 0;
                        let left = outgoing.pump(send);
                        report(&mut outgoing, &mut distance, send, left);
                    }
                }
                Some(WriterOrder::Close { code, reason, reset }) => {
                    for out in outgoing.streams.values_mut() {
                        if let Some(mut stream) = out.stream.take() {
                            stream.reset(reset);
                        }
                    }
                    // The `closing` message went ahead on the control stream: the client
                    // closes by itself once it reads it, or is closed a moment later.
                    let _ = tokio::time::timeout(CLOSE_GRACE, link.closed()).await;
                    link.close(code, &reason);
                    break;
                }
                // The room let the session go: its streams go with the writer.
                None => break,
            },
            Some((send, stream)) = outgoing.busy.next(), if !outgoing.busy.is_empty() => {
                let left = outgoing.returned(send, stream);
                report(&mut outgoing, &mut distance, send, left);
            }
            _ = delivery.tick(), if outgoing.finishing > 0 => {
                for send in outgoing.delivered() {
                    report(&mut outgoing, &mut distance, send, None);
                }
            }
        }
    }
}
