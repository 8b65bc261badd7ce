//! One participant's session, written once for every transport ([`Link`]): the control
//! stream (read, bounded, handed to the room; written in order, above all media), the
//! incoming group streams (bounded in number and size, each frame handed to the room),
//! and the writer task that carries out the room's orders for this subscriber. A session
//! that breaks the protocol is closed with a code; the room and the others carry on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};
use web_transport_trait::{RecvStream as _, SendStream as _};

use super::close;
use super::link::Link;
use super::relay::{Admitted, Relay};
use super::room::{Joining, SessionId};
use super::room_task::{Input, SessionHandle};
use super::wire::{ClientMessage, ControlReader, GroupReader, WireError};
use super::writer::run_writer;

/// Group streams a session may be receiving at once.
pub(super) const MAX_INCOMING_GROUPS: usize = 64;

/// How long a new session has to open its control stream.
const CONTROL_STREAM_WAIT: Duration = Duration::from_secs(10);

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
    let (control, mut outgoing) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if control_send.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let (writer, orders) = mpsc::unbounded_channel();
    let (answer, admission_result) = oneshot::channel();
    let handle = Box::new(SessionHandle {
        closer: Box::new(link.clone()),
        user_id: admitted.admission.user_id,
        control,
        writer,
    });
    let who = Joining { user_id: admitted.admission.user_id, name: admitted.display_name, transport: L::TRANSPORT };
    relay.send_to_room(meeting, team_id, Input::Join { session: id, who, handle, admitted: answer });
    match admission_result.await {
        Ok(Ok(reports)) => {
            tokio::spawn(run_writer(link.clone(), orders, reports));
            tracing::info!(transport = ?L::TRANSPORT, "joined");
        }
        Ok(Err(refusal)) => return link.close(refusal.code, &refusal.reason),
        Err(_) => return link.close(close::GOING_AWAY, "the meeting could not be opened"),
    }
    let limits = relay.limits().clone();
    let incoming = Arc::new(Semaphore::new(MAX_INCOMING_GROUPS));
    let mut reader = ControlReader::new(limits.max_control_message);
    let to_room = |input: Input| relay.send_to_room(meeting, team_id, input);
    loop {
        tokio::select! {
            chunk = control_recv.read_chunk(limits.max_control_message) => match chunk {
                Ok(Some(chunk)) => {
                    reader.push(&chunk);
                    loop {
                        match reader.next_message::<ClientMessage>() {
                            Ok(Some(message)) => to_room(Input::Control { session: id, message }),
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
                    let relay = relay.clone();
                    let max_frame = limits.max_frame;
                    tokio::spawn(async move {
                        read_group(relay, meeting, team_id, id, stream, max_frame).await;
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
                    to_room(Input::GroupStart { session, track: header.track, sequence: header.sequence });
                }
                loop {
                    match reader.next_frame() {
                        Ok(Some((frame, info))) => to_room(Input::Frame {
                            session,
                            track: header.track,
                            sequence: header.sequence,
                            frame,
                            info,
                        }),
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
                    to_room(Input::GroupEnd { session, track: header.track, sequence: header.sequence });
                }
                return;
            }
            // The publisher gave the group up (reset): nothing more will come.
            Err(_) => return,
        }
    }
}
