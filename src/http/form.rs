//! The one form extractor of Floo's pages: axum's `Form`, with every control character
//! but tab and line breaks taken out of what was typed. They have no place in titles,
//! messages or names; PostgreSQL refuses a NUL in text outright (the request would fail
//! with a 500 where SQLite stored it), and a bare control character in a calendar, a
//! log line or a terminal is a way to fool whoever reads it. (The sign-in forms keep
//! axum's own: a name with such characters is refused there, and told why.)

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// A form body, decoded into `T` once its text is cleaned (see the module's doc).
pub struct Form<T>(pub T);

/// `text` without control characters other than tab, line feed and carriage return.
pub fn without_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unwanted = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if text.contains(unwanted) {
        text.chars().filter(|c| !unwanted(*c)).collect::<String>().into()
    } else {
        text.into()
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let cleaned: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (without_controls(&k).into_owned(), without_controls(&v).into_owned()))
            .collect();
        // Encoded again and decoded as `T`, so that fields parse as axum's own `Form` parses
        // them (numbers, options). A form that does not fit `T` is answered as axum answers
        // it: plain text, which `plain_errors_as_pages` turns into Floo's error page.
        let encoded = serde_urlencoded::to_string(&cleaned).unwrap_or_default();
        serde_urlencoded::from_str(&encoded).map(Form).map_err(|e| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("Failed to deserialize form body: {e}"),
            )
                .into_response()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::without_controls;

    #[test]
    fn typed_text_keeps_tabs_and_line_breaks_and_loses_other_controls() {
        assert_eq!(without_controls("a\0b\u{1b}[1m\tc\r\nd\u{7f}\u{85}e"), "ab[1m\tc\r\nde");
        assert!(matches!(without_controls("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
