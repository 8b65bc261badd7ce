//! Server-side sessions: the browser holds a random token in an HttpOnly cookie, the
//! database holds its SHA-256 (so a database leak yields no usable session). Signing out
//! deletes the row, which ends the session everywhere at once.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{CsrfToken, cookie, random_token, set_cookie, token_hash};
use crate::clock::now_ms;
use crate::store::{Store, User};

pub const COOKIE: &str = "floo_session";

/// A signed-in user looking at a page, with the CSRF token its forms need.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    pub csrf: CsrfToken,
}

/// The viewer if signed in; pages anyone may see take this.
#[derive(Debug, Clone)]
pub struct MaybeViewer {
    pub user: Option<User>,
    pub csrf: CsrfToken,
}

/// What a session lookup needs from the application state.
pub trait SessionStore {
    fn store(&self) -> &Store;
    /// Whether cookies are HTTPS-only (and `__Host-` named).
    fn secure_cookies(&self) -> bool;
}

/// Why a request has no viewer.
#[derive(Debug)]
pub enum SessionError {
    /// No valid session cookie: the page layer sends the browser to sign in.
    SignedOut { return_to: String },
    /// The database failed.
    Store(crate::store::Error),
}

/// Looks up the session named by the request's cookie.
pub async fn current_user<S: SessionStore>(state: &S, parts: &Parts) -> Result<Option<User>, crate::store::Error> {
    let store = state.store();
    let Some(token) = cookie(&parts.headers, COOKIE, state.secure_cookies()) else { return Ok(None) };
    if token.len() != 64 {
        return Ok(None);
    }
    store.session_user(&token_hash(token), now_ms()).await
}

impl<S: SessionStore + Send + Sync> FromRequestParts<S> for MaybeViewer {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = current_user(state, parts).await.map_err(SessionError::Store)?;
        let csrf = parts.extensions.get::<CsrfToken>().cloned().unwrap_or_else(|| CsrfToken(String::new()));
        Ok(MaybeViewer { user, csrf })
    }
}

impl<S: SessionStore + Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let MaybeViewer { user, csrf } = MaybeViewer::from_request_parts(parts, state).await?;
        match user {
            Some(user) => Ok(Viewer { user, csrf }),
            None => {
                let return_to = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
                Err(SessionError::SignedOut { return_to })
            }
        }
    }
}

/// Starts a session for `user_id`; returns the `Set-Cookie` value for the browser.
pub async fn start(store: &Store, user_id: i64, hours: u64, secure: bool) -> Result<String, crate::store::Error> {
    let token = random_token();
    let now = now_ms();
    let ttl_ms = i64::try_from(hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
    store.create_session(&token_hash(&token), user_id, now, now.saturating_add(ttl_ms)).await?;
    Ok(set_cookie(COOKIE, &token, Some(hours.saturating_mul(3600)), "Lax", secure))
}

/// Ends the session named by the request's cookie; returns the `Set-Cookie` that clears it.
pub async fn end(store: &Store, headers: &axum::http::HeaderMap, secure: bool) -> Result<String, crate::store::Error> {
    if let Some(token) = cookie(headers, COOKIE, secure) {
        store.delete_session(&token_hash(token)).await?;
    }
    Ok(set_cookie(COOKIE, "", Some(0), "Lax", secure))
}

/// A path to return to after sign-in: only local paths, so no open redirect. Browsers
/// strip tabs and newlines from a `Location` and read a backslash as `/`, so
/// `/<TAB>/evil.example` or `/<BACKSLASH>evil.example` would take the user elsewhere: any
/// whitespace, control character or backslash makes the path refused (a real one has them
/// percent-encoded), which also keeps every accepted path a valid header value.
pub fn safe_return_to(path: &str) -> String {
    let local = path.starts_with('/') && !path.starts_with("//");
    if local && !path.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        path.to_owned()
    } else {
        "/".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn return_to_only_allows_local_paths() {
        assert_eq!(safe_return_to("/teams/3?x=1"), "/teams/3?x=1");
        assert_eq!(safe_return_to("//evil.example"), "/");
        assert_eq!(safe_return_to("https://evil.example"), "/");
        assert_eq!(safe_return_to("/\\evil.example"), "/");
        for tricky in [
            "/\t/evil.example",
            "/ /evil.example",
            "/\u{b}",
            "/\0",
            "/\u{7f}",
            "/a\\b",
            "/\u{a0}x",
            "/\r\nSet-Cookie: x=1",
        ] {
            assert_eq!(safe_return_to(tricky), "/", "{tricky:?}");
        }
        assert_eq!(safe_return_to("/teams/3/topics/7#m-12"), "/teams/3/topics/7#m-12");
        assert_eq!(safe_return_to("/search?q=%E6%9D%8E%20%E9%9B%B7"), "/search?q=%E6%9D%8E%20%E9%9B%B7");
        assert_eq!(safe_return_to("/teams/李雷"), "/teams/李雷", "non-ASCII is a valid header value");
    }
}
