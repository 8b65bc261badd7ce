//! The media relay: Floo's own transport over WebTransport (QUIC), or the same streams
//! over a WebSocket (QMux) where WebTransport cannot be used. `wire` is the byte format,
//! `room` the sans-IO relay core (rooms, tracks, groups, subscriptions, priorities, drop
//! decisions) that tests drive without sockets; `relay` is the endpoint and admission,
//! `session` one participant's session over any [`link::Link`], `writer` a subscriber's
//! group streams, `room_task` the task that drives a meeting's room. See
//! `src/media/PROTOCOL.md`.

pub mod figures;
pub mod link;
pub mod placement;
pub mod relay;
pub mod room;
mod room_task;
mod session;
pub mod tls;
pub mod token;
pub mod voices;
pub mod websocket;
pub mod wire;
mod writer;

/// WebTransport session close codes (also listed in `src/media/PROTOCOL.md`).
pub mod close {
    /// Normal end: the participant left or the meeting ended.
    pub const NORMAL: u32 = 0;
    /// The admission token was missing, forged or expired.
    pub const UNAUTHORIZED: u32 = 0x10;
    /// The meeting has as many participants as it allows.
    pub const ROOM_FULL: u32 = 0x11;
    /// The meeting has ended.
    pub const ENDED: u32 = 0x12;
    /// A host removed the participant from the meeting (they cannot come back to it).
    pub const REMOVED: u32 = 0x13;
    /// The meeting asks people to wait to be let in, and a host did not let them in.
    pub const DENIED: u32 = 0x14;
    /// Bytes that do not follow the protocol.
    pub const PROTOCOL: u32 = 0x20;
    /// A frame, group, message or count over its limit.
    pub const TOO_LARGE: u32 = 0x21;
    /// Too many control messages too fast.
    pub const RATE: u32 = 0x22;
    /// The session fell too far behind what the relay had to send it (it does not read its
    /// control stream, or its writer could not keep up): reconnect.
    pub const LAGGING: u32 = 0x23;
    /// The server is shutting down; reconnect later.
    pub const GOING_AWAY: u32 = 0x30;
}
