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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::NotFound => error_page_response(
                StatusCode::NOT_FOUND,
                "This page does not exist, or you are not a member of the team it belongs to.",
            ),
            Error::Forbidden(why) => error_page_response(StatusCode::FORBIDDEN, &why),
            Error::BadRequest(why) => error_page_response(StatusCode::BAD_REQUEST, &why),
            Error::Conflict(why) => error_page_response(StatusCode::CONFLICT, &why),
            Error::TooMany(why) => error_page_response(StatusCode::TOO_MANY_REQUESTS, &why),
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
        }
    }
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
