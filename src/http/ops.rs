//! Operations endpoints (`/healthz`, `/readyz`) and the static files the pages load,
//! embedded in the binary so that one file is the whole deployment.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const APP_CSS: &str = include_str!("../../web/app.css");
const HTMX_JS: &str = include_str!("../../web/vendor/htmx/htmx.min.js");
const HTMX_SSE_JS: &str = include_str!("../../web/vendor/htmx-ext-sse/sse.js");
const FLOO_JS: &str = include_str!("../../web/floo.js");
const MEETING_JS: &str = include_str!("../../web/meeting.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/static/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/static/htmx.min.js", get(|| async { asset("text/javascript; charset=utf-8", HTMX_JS) }))
        .route("/static/htmx-ext-sse.js", get(|| async { asset("text/javascript; charset=utf-8", HTMX_SSE_JS) }))
        .route("/static/floo.js", get(|| async { asset("text/javascript; charset=utf-8", FLOO_JS) }))
        .route("/static/meeting.js", get(|| async { asset("text/javascript; charset=utf-8", MEETING_JS) }))
}

/// Ready when the database answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
