//! One participant's session, written once for every transport ([`Link`]): the control
//! stream (read, bounded, handed to the room; written in order, above all media), the
//! incoming group streams (bounded in number and size, each frame handed to the room),
//! and the writer task that carries out the room's orders for this subscriber. A session
//! that breaks the protocol is closed with a code; the room and the others carry on.
//!
//! Every input a session's readers hand to the room carries a [`Credit`] from that
//! session's budget, given back when the room has dealt with it. A reader whose budget is
//! spent waits before reading more, so a peer that outruns the room is slowed by its own
//! transport's flow control rather than queued in the server's memory, and never delays
//! the others by more than its budget's worth of work.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use web_transport_trait::{RecvStream as _, SendStream as _};

use super::close;
use super::link::Link;
use super::relay::{Admitted, Relay};
use super::room::{Joining, SessionId};
use super::room_task::{Figures, Input, SessionHandle};
use super::wire::{ClientMessage, ControlReader, GroupReader, WireError};
use super::writer::run_writer;

/// Group streams a session may be receiving at once.
pub(super) const MAX_INCOMING_GROUPS: usize = 64;

/// How long a new session has to open its control stream.
const CONTROL_STREAM_WAIT: Duration = Duration::from_secs(10);

/// Control messages of one session waiting for the room at once.
const CONTROL_BUDGET: usize = 64;
/// Bytes of one session's group streams waiting for the room at once (frames count their
/// size plus [`INPUT_COST`]); at least two of the largest frames.
const GROUP_BUDGET: usize = 1 << 20;
/// What an input costs beside its payload: the room's bookkeeping for it.
const INPUT_COST: usize = 128;
/// Encoded control messages queued for a session's control stream. A peer that lets this
/// many pile up is not reading its control stream (or its link is gone in all but name):
/// it is closed rather than queued for without end.
pub(super) const CONTROL_QUEUE: usize = 256;
/// Orders queued for a session's writer task. Its reports keep the room's slow-link
/// accounting exact only if it keeps up; one that falls this far behind is closed.
pub(super) const WRITER_QUEUE: usize = 8192;

/// A share of one session's budget, held by an input until the room has dealt with it.
pub(super) struct Credit(#[allow(dead_code)] OwnedSemaphorePermit);

/// One session's budgets: control messages, and group-stream bytes.
#[derive(Clone)]
struct Budget {
    control: Arc<Semaphore>,
    groups: Arc<Semaphore>,
}

impl Budget {
    fn new(max_frame: usize) -> Budget {
        let groups = GROUP_BUDGET.max(2 * (max_frame + INPUT_COST));
        Budget { control: Arc::new(Semaphore::new(CONTROL_BUDGET)), groups: Arc::new(Semaphore::new(groups)) }
    }

    /// Waits until the room has room for one more control message of this session.
    async fn control(&self) -> Option<Credit> {
        self.control.clone().acquire_owned().await.ok().map(Credit)
    }

    /// Waits until the room has room for `bytes` more of this session's group data.
    async fn groups(&self, bytes: usize) -> Option<Credit> {
        let permits = u32::try_from(bytes + INPUT_COST).unwrap_or(u32::MAX);
        self.groups.clone().acquire_many_owned(permits).await.ok().map(Credit)
    }
}

pub(super) async fn run_session<L: Link>(relay: Relay, link: L, id: SessionId, admitted: Admitted)
where
    L::SendStream: Send + 'static,
    L::RecvStream: Send + 'static,
{
    let (meeting, team_id) = (admitted.admission.meeting_id, admitted.team_id);
    // The client opens its control stream first.
    let (mut control_send, mut control_recv) = match tokio::time::timeout(CONTROL_STREAM_WAIT, link.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        _ => return link.close(close::PROTOCOL, "no control stream"),
    };
    // Control messages are few and small, and some are urgent (a slow link is told its
    // groups are being dropped): they go before any media.
    control_send.set_priority(i32::MAX);
    let (control, mut outgoing) = mpsc::channel::<Bytes>(CONTROL_QUEUE);
    tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if control_send.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let (writer, orders) = mpsc::channel(WRITER_QUEUE);
    let (answer, admission_result) = oneshot::channel();
    let user_id = admitted.admission.user_id;
    let figures = Figures {
        session: id,
        name: admitted.display_name.clone(),
        transport: L::TRANSPORT,
        browser: relay.browser_of(meeting, user_id),
        joined: std::time::Instant::now(),
        bytes_in: 0,
        bytes_out: 0,
        groups_dropped: 0,
        rtt: Duration::ZERO,
    };
    let handle = Box::new(SessionHandle { closer: Box::new(link.clone()), user_id, control, writer, figures });
    let who = Joining {
        user_id,
        name: admitted.display_name,
        transport: L::TRANSPORT,
        host: admitted.host,
        admitted: admitted.admitted,
        settings: admitted.settings,
    };
    relay.send_to_room(meeting, team_id, Input::Join { session: id, who, handle, admitted: answer });
    match admission_result.await {
        Ok(Ok(reports)) => {
            tokio::spawn(run_writer(link.clone(), orders, reports));
            tracing::info!(transport = ?L::TRANSPORT, "joined");
        }
        Ok(Err(refusal)) => return link.close(refusal.code, &refusal.reason),
        Err(_) => return link.close(close::GOING_AWAY, "the meeting could not be opened"),
    }
    let transport = crate::metrics::TransportLabels { transport: L::TRANSPORT.into() };
    let _in_call = crate::metrics::Raised::new(&crate::metrics::metrics().relay_sessions.get_or_create(&transport));
    let limits = relay.limits().clone();
    let incoming = Arc::new(Semaphore::new(MAX_INCOMING_GROUPS));
    let budget = Budget::new(limits.max_frame);
    let mut reader = ControlReader::new(limits.max_control_message);
    let to_room = |input: Input| relay.send_to_room(meeting, team_id, input);
    loop {
        tokio::select! {
            chunk = control_recv.read_chunk(limits.max_control_message) => match chunk {
                Ok(Some(chunk)) => {
                    reader.push(&chunk);
                    loop {
                        match reader.next_message::<ClientMessage>() {
                            Ok(Some(message)) => {
                                let Some(credit) = budget.control().await else { break };
                                to_room(Input::Control { session: id, message, _credit: credit });
                            }
                            Ok(None) => break,
                            Err(error) => {
                                to_room(Input::Malformed { session: id, error });
                                break;
                            }
                        }
                    }
                }
                _ => break,
            },
            stream = link.accept_uni() => match stream {
                Ok(stream) => {
                    let Ok(permit) = incoming.clone().try_acquire_owned() else {
                        let error = WireError::TooLarge {
                            what: "open group streams",
                            size: MAX_INCOMING_GROUPS as u64 + 1,
                            limit: MAX_INCOMING_GROUPS as u64,
                        };
                        to_room(Input::Malformed { session: id, error });
                        break;
                    };
                    let (relay, budget) = (relay.clone(), budget.clone());
                    let max_frame = limits.max_frame;
                    tokio::spawn(async move {
                        read_group(relay, meeting, team_id, id, stream, max_frame, budget).await;
                        drop(permit);
                    });
                }
                Err(_) => break,
            },
            _ = link.closed() => break,
        }
    }
    relay.send_to_room(meeting, team_id, Input::Leave { session: id });
    tracing::info!("left");
}

/// Reads one group stream from a publisher and hands its frames to the room as they
/// arrive, each whole and byte for byte.
async fn read_group<R: web_transport_trait::RecvStream>(
    relay: Relay,
    meeting: i64,
    team_id: i64,
    session: SessionId,
    mut stream: R,
    max_frame: usize,
    budget: Budget,
) {
    let room = relay.room(meeting, team_id);
    let to_room = |input: Input| {
        let _ = room.send(input);
    };
    let mut reader = GroupReader::new(max_frame);
    let mut started = None;
    loop {
        match stream.read_chunk(64 * 1024).await {
            Ok(Some(chunk)) => {
                reader.push(&chunk);
                let header = match reader.header() {
                    Ok(Some(header)) => header,
                    Ok(None) => continue,
                    Err(error) => return to_room(Input::Malformed { session, error }),
                };
                if started.is_none() {
                    started = Some(header);
                    let Some(credit) = budget.groups(0).await else { return };
                    to_room(Input::GroupStart {
                        session,
                        track: header.track,
                        sequence: header.sequence,
                        _credit: credit,
                    });
                }
                loop {
                    match reader.next_frame() {
                        Ok(Some((frame, info))) => {
                            let Some(credit) = budget.groups(frame.len()).await else { return };
                            let (track, sequence) = (header.track, header.sequence);
                            to_room(Input::Frame { session, track, sequence, frame, info, _credit: credit });
                        }
                        Ok(None) => break,
                        Err(error) => return to_room(Input::Malformed { session, error }),
                    }
                }
            }
            Ok(None) => {
                if reader.pending() > 0 {
                    return to_room(Input::Malformed {
                        session,
                        error: WireError::Malformed("group ends inside a frame"),
                    });
                }
                if let Some(header) = started {
                    let Some(credit) = budget.groups(0).await else { return };
                    to_room(Input::GroupEnd {
                        session,
                        track: header.track,
                        sequence: header.sequence,
                        _credit: credit,
                    });
                }
                return;
            }
            // The publisher gave the group up (reset): nothing more will come.
            Err(_) => return,
        }
    }
}
