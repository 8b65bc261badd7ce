//! Who is asking: sign-in providers (OAuth 2.0 / OpenID Connect and the dev login),
//! server-side sessions behind an HttpOnly cookie, and CSRF protection of every POST.

pub mod csrf;
pub mod names;
pub mod oauth;
pub mod session;

pub use csrf::CsrfToken;
pub use oauth::{Provider, ProviderError};
pub use session::{MaybeViewer, Viewer};

use sha2::{Digest, Sha256};

/// A new random token: 32 bytes as 64 hex digits.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    hex(&bytes)
}

/// A short invite code that is easy to read aloud and type: 10 characters with no
/// look-alikes (about 50 bits).
pub fn new_invite_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 10];
    fill_random(&mut bytes);
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

fn fill_random(bytes: &mut [u8]) {
    // The OS generator failing is unrecoverable: no secure token can be made without it.
    getrandom::fill(bytes).expect("the operating system's random generator failed");
}

/// SHA-256 of a token, in hex: what the database keeps instead of the token itself.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in a request's `Cookie` headers.
/// The value of cookie `name`, as [`set_cookie`] named it (`secure`: with `__Host-`).
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str, secure: bool) -> Option<&'a str> {
    let name = cookie_name(name, secure);
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Under HTTPS every cookie is named `__Host-…`: browsers then take it only from this
/// exact origin, over HTTPS, for the whole site, so that a sibling subdomain or a
/// plain-HTTP network cannot plant one (a session to fixate, a CSRF half to pick).
fn cookie_name(name: &str, secure: bool) -> std::borrow::Cow<'_, str> {
    if secure { format!("__Host-{name}").into() } else { name.into() }
}

/// A `Set-Cookie` value: HttpOnly, SameSite, Path=/, Secure and `__Host-` under HTTPS;
/// `max_age` None makes a cookie that lasts the browser session, `Some(0)` deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>, same_site: &str, secure: bool) -> String {
    let name = cookie_name(name, secure);
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hex() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn invite_codes_avoid_look_alike_characters() {
        for _ in 0..100 {
            let code = new_invite_code();
            assert_eq!(code.len(), 10);
            assert!(!code.contains(['0', 'o', '1', 'l', 'i']));
        }
    }

    #[test]
    fn reads_a_cookie_among_several() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("cookie", "a=1; floo_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "floo_session", false), Some("abc"));
        assert_eq!(cookie(&headers, "floo_session", true), None, "under HTTPS only __Host- counts");
        assert_eq!(cookie(&headers, "missing", false), None);
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
