//! CSRF protection for every state change. Each form carries a token back in a hidden
//! `_csrf` field and each htmx request in the `X-CSRF-Token` header (set once on
//! `<body hx-headers>`); a POST without the right one is refused before any handler runs.
//!
//! Signed in, the token is an HMAC of the session cookie under the deployment's key: it
//! changes with every sign-in, and someone who can plant cookies (a sibling subdomain, a
//! plain-HTTP network) still cannot compute it. Signed out (the sign-in forms), it is a
//! random token in an HttpOnly, SameSite=Lax cookie, submitted twice. Under HTTPS the
//! cookies are `__Host-` named, which browsers accept only from this origin.

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{constant_time_eq, cookie, random_token, set_cookie};

pub const COOKIE: &str = "floo_csrf";
pub const FIELD: &str = "_csrf";
pub const HEADER: &str = "x-csrf-token";

/// The largest form body Floo accepts (a 20,000-character post in 4-byte characters,
/// percent-encoded, fits).
pub const MAX_FORM_BYTES: usize = 256 * 1024;

/// The CSRF token of this browser, for the forms a page renders.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<CsrfToken>().cloned().unwrap_or_else(|| CsrfToken(String::new())))
    }
}

/// What the middleware needs: whether cookies are HTTPS-only, and the key that binds
/// tokens to sessions.
#[derive(Clone)]
pub struct Guard {
    pub secure: bool,
    pub key: crate::media::token::TokenKey,
}

impl Guard {
    /// The token of the session whose cookie is `session`.
    fn bound_to(&self, session: &str) -> String {
        self.key.sign("csrf-session", session.as_bytes())
    }
}

/// What a refused request gets; the page layer renders it.
#[derive(Debug)]
pub enum Refusal {
    /// The token was missing or did not match.
    BadToken,
    /// The body was (or declared itself) larger than [`MAX_FORM_BYTES`].
    TooLarge,
    /// The body stopped arriving (see `http::server::ServerLimits::body`).
    TooSlow,
}

/// Middleware: issues the cookie when missing and checks the token on unsafe methods.
pub async fn protect(State(guard): State<Guard>, mut req: Request, next: Next) -> Result<Response, Refusal> {
    let session = cookie(req.headers(), super::session::COOKIE, guard.secure).filter(|t| t.len() == 64);
    let (token, issued) = match session {
        Some(session) => (guard.bound_to(session), false),
        None => match cookie(req.headers(), COOKIE, guard.secure).filter(|t| t.len() == 64) {
            Some(existing) => (existing.to_owned(), false),
            None => (random_token(), true),
        },
    };

    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        // Refuse what cannot fit before waiting for any of it.
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_FORM_BYTES as u64) {
            return Err(Refusal::TooLarge);
        }
        let header_ok = req
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !issued && constant_time_eq(v, &token));
        if !header_ok {
            let (parts, body) = req.into_parts();
            let bytes = to_bytes(body, MAX_FORM_BYTES)
                .await
                .map_err(|e| if timed_out(&e) { Refusal::TooSlow } else { Refusal::TooLarge })?;
            let form_ok = !issued
                && url::form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == FIELD)
                    .is_some_and(|(_, v)| constant_time_eq(&v, &token));
            if !form_ok {
                return Err(Refusal::BadToken);
            }
            req = Request::from_parts(parts, Body::from(bytes));
        }
    }

    req.extensions_mut().insert(CsrfToken(token.clone()));
    let mut response = next.run(req).await;
    if issued {
        let value = set_cookie(COOKIE, &token, Some(400 * 24 * 3600), "Lax", guard.secure);
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

/// Whether reading a body failed because it stopped arriving (its chain of causes holds
/// the body timeout's error).
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
