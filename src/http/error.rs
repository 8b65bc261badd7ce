//! The web layer's one error type. Users see a plain page that says what happened in
//! their terms; internal failures are logged with their cause and never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::views;
use crate::auth::ProviderError;
use crate::auth::csrf::Refusal;
use crate::auth::session::SessionError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist, or the viewer may not know it does (non-members).
    #[error("not found")]
    NotFound,
    /// The viewer may see this but not do that (members doing admin actions).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request cannot be carried out as asked; the text says why.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The action conflicts with the current state (e.g. the meeting already ended).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The user hit a limit (too many open streams, posting too fast); the text says which.
    #[error("too many: {0}")]
    TooMany(String),
    /// Floo cannot do it right now (restarting, its database or Redis unreachable); the
    /// text says what to do. Answered 503 with `Retry-After`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Nobody is signed in: go to the sign-in page and come back.
    #[error("signed out")]
    SignedOut { return_to: String },
    /// Signing in through a provider failed.
    #[error("sign-in failed: {0}")]
    SignIn(String),
    /// The provider could not complete the sign-in.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl Error {
    const NOT_FOUND: &str = "This page does not exist, or you are not a member of the team it belongs to.";
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::NotFound => error_page_response(StatusCode::NOT_FOUND, Error::NOT_FOUND),
            Error::Forbidden(why) => error_page_response(StatusCode::FORBIDDEN, &why),
            Error::BadRequest(why) => error_page_response(StatusCode::BAD_REQUEST, &why),
            Error::Conflict(why) => error_page_response(StatusCode::CONFLICT, &why),
            Error::TooMany(why) => error_page_response(StatusCode::TOO_MANY_REQUESTS, &why),
            Error::Unavailable(why) => {
                let mut response = error_page_response(StatusCode::SERVICE_UNAVAILABLE, &why);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
            Error::SignedOut { return_to } => {
                let target = format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
                );
                Redirect::to(&target).into_response()
            }
            Error::SignIn(why) => error_page_response(StatusCode::BAD_REQUEST, &format!("Sign-in failed: {why}")),
            Error::Provider(e) => {
                tracing::warn!(error = %e, "sign-in through provider failed");
                error_page_response(StatusCode::BAD_GATEWAY, &format!("Sign-in failed: {e}."))
            }
            Error::Store(e) if e.is_unavailable() => {
                crate::metrics::metrics().database_errors.inc();
                tracing::warn!(error = %e, "the database cannot be reached");
                Error::Unavailable("Floo cannot reach its database right now. Try again in a moment.".into())
                    .into_response()
            }
            Error::Store(e) => {
                tracing::error!(error = %e, "storage failure while serving a request");
                error_page_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side. Please try again in a moment.",
                )
            }
        }
    }
}

impl From<SessionError> for Error {
    fn from(e: SessionError) -> Error {
        match e {
            SessionError::SignedOut { return_to } => Error::SignedOut { return_to },
            SessionError::Store(e) => Error::Store(e),
        }
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        Error::from(self).into_response()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::BadToken => error_page_response(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from Floo. Go back, reload the page and try again.",
            ),
            Refusal::TooLarge => error_page_response(StatusCode::PAYLOAD_TOO_LARGE, "What you sent is too large."),
            Refusal::TooSlow => error_page_response(
                StatusCode::REQUEST_TIMEOUT,
                "What you sent stopped arriving part of the way. Check your connection and try again.",
            ),
        }
    }
}

/// Middleware: what axum answers by itself (an unparsable id or query, a form that is not
/// a form, a method a route does not take) is plain text meant for programmers; users get
/// Floo's error page instead, saying the same in their terms.
pub async fn plain_errors_as_pages(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // axum's rejections are text/plain; its 405 has no body at all. Anything else (a
    // 416 with its Content-Range, say) is a deliberate answer and stays as it is.
    let plain =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|kind| kind.as_bytes().starts_with(b"text/plain"));
    if !status.is_client_error() || !(plain || status == StatusCode::METHOD_NOT_ALLOWED) {
        return response;
    }
    // Rejections are one short line; anything longer is not one of them.
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    tracing::debug!(%status, rejection = %text, "request refused before reaching its handler");
    let (status, message) = match status {
        // A path segment that does not parse (`/teams/abc`) names nothing that exists.
        _ if text.starts_with("Invalid URL") => (StatusCode::NOT_FOUND, Error::NOT_FOUND),
        StatusCode::METHOD_NOT_ALLOWED => (status, "This address does not take that kind of request."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "Floo expected a form from one of its own pages here."),
        StatusCode::PAYLOAD_TOO_LARGE => (status, "What you sent is too large."),
        _ if text.contains("timed out") => {
            (StatusCode::REQUEST_TIMEOUT, "What you sent stopped arriving part of the way. Try again.")
        }
        StatusCode::NOT_FOUND => (status, Error::NOT_FOUND),
        _ => (
            status,
            "Floo could not understand this link or form: it may be damaged or out of date. \
             Go back, reload the page and try again.",
        ),
    };
    error_page_response(status, message)
}

/// A whole error page with a status; it needs no viewer, so any layer can produce it.
pub fn error_page_response(status: StatusCode, message: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong",
        StatusCode::PAYLOAD_TOO_LARGE => "Too large",
        StatusCode::CONFLICT => "Cannot do that now",
        StatusCode::TOO_MANY_REQUESTS => "Slow down",
        StatusCode::REQUEST_TIMEOUT => "Took too long",
        StatusCode::SERVICE_UNAVAILABLE => "Not available right now",
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => "Cannot do that here",
        _ => "Cannot do that",
    };
    let body = views::error_page(
        title,
        html! {
            section.card.error-page {
                h1 { (title) }
                p.lead { (message) }
                p { a.button href="/" { "Go to your home page" } }
            }
        },
    );
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
