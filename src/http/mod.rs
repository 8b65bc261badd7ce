//! The web application: one module per resource, each with its routes and maud views,
//! sharing one [`AppState`], one [`Error`] and one page layout.

mod access;
pub(crate) mod calls;
mod chat;
mod dashboard;
mod error;
mod form;
mod forum;
mod home;
mod limits;
mod live;
mod login;
mod media_socket;
mod meetings;
mod ops;
pub mod recordings;
mod schedule;
mod search;
pub mod server;
mod sse;
mod teams;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use access::{MeetingInTeam, ScheduledInTeam, TeamMember, TopicInTeam};
pub use dashboard::report_node_forever;
pub use error::{Error, error_page_response};
pub use live::LiveViews;

use crate::auth::Provider;
use crate::auth::csrf;
use crate::auth::session::SessionStore;
use crate::bus::Bus;
use crate::store::Store;
pub use limits::{Guesser, PostRate, Rate, StreamCap};

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    /// Live events to open pages, on this node and (with Redis) on the others.
    pub bus: Bus,
    pub post_rate: PostRate,
    /// How fast one user may create teams, topics and meetings.
    pub create_rate: Rate<i64>,
    /// How fast one user may search (each search reads the full-text index).
    pub search_rate: Rate<i64>,
    /// How fast one user may change things that have no limit of their own (edits of
    /// topics and plans, moderation, roles, recordings...).
    pub action_rate: Rate<i64>,
    /// How many wrong invite codes a user, or an address, may try.
    pub join_guesses: Rate<Guesser>,
    /// Where recordings are written, one directory per recording.
    pub recordings_dir: std::path::PathBuf,
    /// Composes each finished recording into one video, in the background.
    pub composer: crate::recording::Composer,
    /// The media relay (WebTransport over QUIC).
    pub relay: crate::media::relay::Relay,
    /// Which node hosts each meeting's call.
    pub placement: crate::media::placement::Placement,
    /// Turns true when the server shuts down: live streams end so connections drain.
    pub closing: tokio::sync::watch::Receiver<bool>,
    pub streams: StreamCap,
    /// Each hosted call's connections over the last hour, for the ops dashboard.
    pub calls: crate::media::figures::CallFigures,
    /// The live team pages this node renders, once per view for all its readers.
    pub live: LiveViews,
    /// Configured sign-in providers (Google, OpenID Connect).
    pub providers: Vec<Provider>,
    /// Whether the development login (pick a name) is offered.
    pub dev_login: bool,
    /// The address users reach Floo at, without a trailing slash.
    pub public_url: String,
    pub secure_cookies: bool,
    pub session_hours: u64,
    /// Lower-cased e-mails whose owners become instance admins when they sign in.
    pub admin_emails: Vec<String>,
    /// When this node started (the dashboard shows its uptime).
    pub started: std::time::Instant,
    /// Client for talking to sign-in providers.
    pub http_client: reqwest::Client,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl SessionStore for AppState {
    fn store(&self) -> &Store {
        &self.0.store
    }

    fn secure_cookies(&self) -> bool {
        self.0.secure_cookies
    }
}

/// All routes with their middleware.
pub fn router(state: AppState) -> Router {
    let guard = csrf::Guard { secure: state.secure_cookies, key: state.relay.key().clone() };
    Router::new()
        .merge(home::router())
        .merge(login::router())
        .merge(teams::router())
        .merge(forum::router())
        .merge(chat::router())
        .merge(live::router())
        .merge(recordings::router())
        .merge(meetings::router())
        .merge(schedule::router())
        .merge(search::router())
        .merge(media_socket::router())
        .merge(ops::router())
        .merge(dashboard::router())
        .fallback(|| async { Error::NotFound })
        .layer(middleware::from_fn(error::plain_errors_as_pages))
        .layer(middleware::from_fn(htmx_navigation))
        .layer(middleware::from_fn_with_state(guard, csrf::protect))
        .layer(DefaultBodyLimit::max(csrf::MAX_FORM_BYTES))
        .layer(middleware::from_fn(security_headers))
        .route_layer(middleware::from_fn(crate::metrics::count_requests))
        .with_state(state)
}

/// Whether a request came from htmx for a fragment (not a boosted page navigation).
pub fn wants_fragment(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key("hx-request") && !headers.contains_key("hx-boosted")
}

/// htmx follows redirects inside XHR and would swap the target page into a fragment's
/// place; instead, tell htmx to navigate (`HX-Location`). Error pages replace the whole
/// body, so an error is never squeezed into a small fragment.
async fn htmx_navigation(req: Request, next: Next) -> Response {
    let from_htmx = req.headers().contains_key("hx-request");
    let mut response = next.run(req).await;
    if !from_htmx {
        return response;
    }
    let status = response.status();
    if status.is_redirection() {
        if let Some(location) = response.headers().get(header::LOCATION).cloned() {
            *response.status_mut() = StatusCode::OK;
            response.headers_mut().remove(header::LOCATION);
            response.headers_mut().insert("hx-location", location);
        }
    } else if status.is_client_error()
        && status != StatusCode::UNPROCESSABLE_ENTITY
        && status != StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        let headers = response.headers_mut();
        headers.insert("hx-retarget", HeaderValue::from_static("body"));
        headers.insert("hx-reswap", HeaderValue::from_static("innerHTML"));
    }
    response
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.entry("content-security-policy").or_insert(HeaderValue::from_static(
        "default-src 'self'; img-src 'self' https: data:; style-src 'self' 'unsafe-inline'; script-src 'self'; \
         connect-src 'self' https: wss:; media-src 'self' blob: mediastream:; frame-ancestors 'none'; base-uri 'none'",
    ));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}
