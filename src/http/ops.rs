//! Operations endpoints (`/healthz`, `/readyz`) and the static files the pages load,
//! embedded in the binary so that one file is the whole deployment.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file the pages load, by its path under `/static/`: its type and contents.
/// (A unit test checks that every script and stylesheet under `web/` is here.)
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("../../web/app.css")),
    ("htmx.min.js", JS, include_str!("../../web/vendor/htmx/htmx.min.js")),
    ("htmx-ext-sse.js", JS, include_str!("../../web/vendor/htmx-ext-sse/sse.js")),
    ("floo.js", JS, include_str!("../../web/floo.js")),
    ("meeting.js", JS, include_str!("../../web/meeting.js")),
    ("call/call.js", JS, include_str!("../../web/call/call.js")),
    ("call/capture.js", JS, include_str!("../../web/call/capture.js")),
    ("call/capture-worker.js", JS, include_str!("../../web/call/capture-worker.js")),
    ("call/capture-worklet.js", JS, include_str!("../../web/call/capture-worklet.js")),
    ("call/people.js", JS, include_str!("../../web/call/people.js")),
    ("call/playout.js", JS, include_str!("../../web/call/playout.js")),
    ("call/playout-worklet.js", JS, include_str!("../../web/call/playout-worklet.js")),
    ("call/publish.js", JS, include_str!("../../web/call/publish.js")),
    ("call/stats.js", JS, include_str!("../../web/call/stats.js")),
    ("call/support.js", JS, include_str!("../../web/call/support.js")),
    ("call/tiles.js", JS, include_str!("../../web/call/tiles.js")),
    ("call/transport.js", JS, include_str!("../../web/call/transport.js")),
    ("call/wire.js", JS, include_str!("../../web/call/wire.js")),
    ("vendor/qmux/credit.js", JS, include_str!("../../web/vendor/qmux/credit.js")),
    ("vendor/qmux/error.js", JS, include_str!("../../web/vendor/qmux/error.js")),
    ("vendor/qmux/frame.js", JS, include_str!("../../web/vendor/qmux/frame.js")),
    ("vendor/qmux/index.js", JS, include_str!("../../web/vendor/qmux/index.js")),
    ("vendor/qmux/recv.js", JS, include_str!("../../web/vendor/qmux/recv.js")),
    ("vendor/qmux/scheduler.js", JS, include_str!("../../web/vendor/qmux/scheduler.js")),
    ("vendor/qmux/session.js", JS, include_str!("../../web/vendor/qmux/session.js")),
    ("vendor/qmux/stream.js", JS, include_str!("../../web/vendor/qmux/stream.js")),
    ("vendor/qmux/varint.js", JS, include_str!("../../web/vendor/qmux/varint.js")),
    ("vendor/web-socket-stream/index.js", JS, include_str!("../../web/vendor/web-socket-stream/index.js")),
];

/// The assets with their entity tags (a digest of the contents), made once.
static TAGGED: std::sync::LazyLock<std::collections::HashMap<&'static str, (&'static str, &'static str, String)>> =
    std::sync::LazyLock::new(|| {
        use sha2::{Digest, Sha256};
        ASSETS
            .iter()
            .map(|&(path, content_type, body)| {
                let digest = Sha256::digest(body.as_bytes());
                let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                (path, (content_type, body, format!("\"{tag}\"")))
            })
            .collect()
    });

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/static/{*path}", get(asset))
}

/// Ready when the database answers and the node is not shutting down: from the start of
/// a drain, a load balancer's health check takes the node out of the rotation while its
/// pages still answer the clients that are moving away.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.relay.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

/// A static file. Browsers revalidate it on every use (and get `304 Not Modified` while
/// it is unchanged), so that the modules of a call always come from one version of Floo.
async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some((content_type, body, tag)) = TAGGED.get(path.as_str()) else {
        return super::Error::NotFound.into_response();
    };
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == tag);
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { (*body).into_response() };
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(tag) {
        out.insert(header::ETAG, tag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// A script or stylesheet added under `web/` but not to [`ASSETS`] would be a 404 in
    /// the browser; this catches it first.
    #[test]
    fn every_script_and_stylesheet_under_web_is_served() {
        let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut files = Vec::new();
        let mut dirs = vec![web.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("web/ is readable").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "js" || e == "css") {
                    files.push(std::fs::read_to_string(&path).expect("a text file"));
                }
            }
        }
        for contents in &files {
            assert!(ASSETS.iter().any(|(_, _, body)| body == contents), "a file under web/ is not in ASSETS");
        }
        assert_eq!(files.len(), ASSETS.len(), "every asset is a file under web/");
    }
}
