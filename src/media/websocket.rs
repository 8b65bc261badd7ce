//! The WebSocket fallback's wire: the media protocol's streams multiplexed over one
//! WebSocket by QMux (draft-ietf-quic-qmux, the `qmux` crate; the browser runs the npm
//! package `@moq/qmux`). The HTTP server does the upgrade (its own port, `Origin`
//! checked); this turns the upgraded connection into a session like a WebTransport one.

use std::time::Duration;

use qmux::ws::tokio_tungstenite::WebSocketStream;
use qmux::ws::tungstenite::protocol::{Role, WebSocketConfig};
use qmux::{Version, ws};
use tokio::io::{AsyncRead, AsyncWrite};

/// The application protocol named in `Sec-WebSocket-Protocol`, after QMux's version
/// prefix (`qmux-02.floo-media`).
pub const PROTOCOL: &str = "floo-media";

/// The QMux drafts the relay speaks, in the order it prefers them.
const VERSIONS: [Version; 3] = [Version::QMux02, Version::QMux01, Version::QMux00];

/// The largest WebSocket message accepted: a QMux record (16 KiB by default) with room
/// to spare; anything bigger closes the connection.
const MAX_MESSAGE: usize = 64 * 1024;

/// The subprotocol to accept from the comma-separated list a browser offered, if any
/// is ours (Floo's preference decides, as QMux's own servers do).
pub fn choose_subprotocol<'a>(offered: impl Iterator<Item = &'a str>) -> Option<String> {
    let offered: Vec<&str> = offered.flat_map(|h| h.split(',')).map(str::trim).collect();
    VERSIONS.iter().map(|v| format!("{}{PROTOCOL}", v.prefix())).find(|wire| offered.contains(&wire.as_str()))
}

/// Wraps an upgraded connection as the server side of a QMux session.
pub(super) async fn accept<T>(socket: T, subprotocol: &str) -> qmux::Session
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
    let socket = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
    // A browser that vanishes without closing (its laptop lid shut) is noticed within
    // seconds, as over QUIC.
    let keep_alive = ws::KeepAlive::new(Duration::from_secs(5), Duration::from_secs(15));
    ws::Upgraded::new(socket).with_alpn(subprotocol).with_keep_alive(keep_alive).accept()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_offered_draft_of_floos_protocol_is_chosen() {
        let offered = ["qmux-01.floo-media, qmux-02.floo-media", "qmux-02"];
        assert_eq!(choose_subprotocol(offered.into_iter()).as_deref(), Some("qmux-02.floo-media"));
        assert_eq!(choose_subprotocol(["qmux-00.floo-media"].into_iter()).as_deref(), Some("qmux-00.floo-media"));
        assert_eq!(choose_subprotocol(["qmux-02, webtransport"].into_iter()), None, "bare drafts are not Floo's");
        assert_eq!(choose_subprotocol(std::iter::empty()), None);
    }
}
