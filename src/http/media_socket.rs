//! The WebSocket way into a call, for browsers and networks where WebTransport does not
//! work: `GET /media/ws?token=…` upgrades to a WebSocket carrying the media protocol
//! over QMux (see `src/media/PROTOCOL.md`), served on the HTTP port so that it passes
//! wherever the pages do (an HTTPS reverse proxy included). The admission token is
//! checked by the relay exactly as for WebTransport, after the upgrade, so that a refusal
//! reaches the page with its close code and reason.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use qmux::ws::tungstenite::handshake::derive_accept_key;

use super::{AppState, error_page_response};
use crate::media::websocket::choose_subprotocol;

pub fn router() -> Router<AppState> {
    Router::new().route("/media/ws", get(upgrade))
}

async fn upgrade(State(state): State<AppState>, request: Request) -> Response {
    let headers = request.headers();
    if !is_websocket_upgrade(headers) {
        return error_page_response(
            StatusCode::BAD_REQUEST,
            "This address is for the WebSocket of a call; open the meeting page instead.",
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|origin| same_site_as(origin, &state.public_url))
    {
        tracing::info!(origin = ?origin, "refused a call WebSocket from another site");
        return error_page_response(StatusCode::FORBIDDEN, "Calls are joined from Floo's own pages.");
    }
    let offered = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok());
    let Some(subprotocol) = choose_subprotocol(offered) else {
        return error_page_response(
            StatusCode::BAD_REQUEST,
            "No supported version of Floo's media protocol was offered; reload the page.",
        );
    };
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return error_page_response(StatusCode::BAD_REQUEST, "Missing Sec-WebSocket-Key.");
    };
    let accept = derive_accept_key(key.as_bytes());
    let token = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
    });
    let Ok(protocol_header) = HeaderValue::from_str(&subprotocol) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let relay = state.relay.clone();
    let upgraded = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match upgraded.await {
            Ok(upgraded) => relay.serve_websocket(TokioIo::new(upgraded), &subprotocol, token).await,
            Err(e) => tracing::debug!(error = %e, "a call WebSocket upgrade did not complete"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    out.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol_header);
    response
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, value: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case(value)))
    };
    has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
        && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13")
}

/// Whether a page at `origin` is one of Floo's own: the public URL's origin. A loopback
/// public URL (a development setup) is reached under any loopback name on its port, so
/// `localhost`, `127.0.0.1` and `[::1]` count as the same site there.
fn same_site_as(origin: &str, public_url: &str) -> bool {
    let (Ok(origin), Ok(public)) = (url::Url::parse(origin), url::Url::parse(public_url)) else { return false };
    if origin.origin() == public.origin() {
        return true;
    }
    let loopback = |u: &url::Url| match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    loopback(&public)
        && loopback(&origin)
        && origin.scheme() == public.scheme()
        && origin.port_or_known_default() == public.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::same_site_as;

    #[test]
    fn only_floos_own_pages_may_open_a_call_socket() {
        assert!(same_site_as("https://meet.example.com", "https://meet.example.com"));
        assert!(same_site_as("https://meet.example.com", "https://meet.example.com/"));
        assert!(!same_site_as("https://evil.example", "https://meet.example.com"));
        assert!(!same_site_as("http://meet.example.com", "https://meet.example.com"), "another scheme");
        assert!(!same_site_as("https://meet.example.com:8443", "https://meet.example.com"), "another port");
        assert!(!same_site_as("null", "https://meet.example.com"));
        // A development server on loopback answers to every loopback name.
        assert!(same_site_as("http://localhost:8080", "http://127.0.0.1:8080"));
        assert!(same_site_as("http://127.0.0.2:8080", "http://127.0.0.1:8080"));
        assert!(same_site_as("http://[::1]:8080", "http://localhost:8080"));
        assert!(!same_site_as("http://localhost:9999", "http://127.0.0.1:8080"), "another port");
        assert!(!same_site_as("http://localhost:8080", "https://meet.example.com"), "not a loopback server");
    }
}
