//! Server-Sent Events framing. Live streams are plain response bodies of pre-encoded
//! frames: a chat message is encoded once per node and the same bytes (reference
//! counted) go to every reader, which is what makes fan-out to thousands cheap.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

/// Sent on an idle stream so proxies and browsers keep it open.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// One event: `id` (for resuming), an event name, and data that may span lines.
pub fn frame(id: Option<i64>, event: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id.to_string());
        out.push('\n');
    }
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    // Any of CR LF, CR or LF ends a line in SSE: each line of data gets its own field.
    for line in data.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// When an idle stream is due its keep-alive. One timer per stream, moved only when it
/// fires: a stream that sends thousands of events a minute does not re-arm a timer for
/// each of them.
pub struct KeepAlive {
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    last_sent: tokio::time::Instant,
}

impl KeepAlive {
    pub fn new() -> KeepAlive {
        let now = tokio::time::Instant::now();
        KeepAlive { timer: Box::pin(tokio::time::sleep_until(now + KEEP_ALIVE_AFTER)), last_sent: now }
    }

    /// Something was sent: the stream is not idle.
    pub fn sent(&mut self) {
        self.last_sent = tokio::time::Instant::now();
    }

    /// Completes when nothing has been sent for [`KEEP_ALIVE_AFTER`]; cancel-safe.
    pub async fn due(&mut self) {
        loop {
            self.timer.as_mut().await;
            let now = tokio::time::Instant::now();
            let idle_until = self.last_sent + KEEP_ALIVE_AFTER;
            if idle_until <= now {
                self.last_sent = now;
                self.timer.as_mut().reset(now + KEEP_ALIVE_AFTER);
                return;
            }
            self.timer.as_mut().reset(idle_until);
        }
    }
}

/// How long a stream stays silent before a keep-alive.
pub const KEEP_ALIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

/// Something that produces a live stream's frames, one at a time; None ends the stream.
pub trait Source: Send + 'static {
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send;
}

/// The response that streams a source's frames until it ends or the client goes.
pub fn stream<S: Source>(source: S) -> Response {
    // Counted as open until the stream is dropped (ended or its client gone).
    let open = crate::metrics::Raised::new(&crate::metrics::metrics().live_streams);
    response(futures_util::stream::unfold((source, open), |(mut source, open)| async move {
        let frame = source.next_frame().await?;
        Some((Ok::<_, std::convert::Infallible>(frame), (source, open)))
    }))
}

/// A streaming `text/event-stream` response.
fn response<S>(frames: S) -> Response
where
    S: Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) must not buffer a live stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::frame;

    #[test]
    fn frames_split_data_lines_and_carry_the_id() {
        let f = frame(Some(7), "message", "<p>a</p>\n<p>b\r\nc\rd</p>");
        assert_eq!(&f[..], b"id: 7\nevent: message\ndata: <p>a</p>\ndata: <p>b\ndata: c\ndata: d</p>\n\n".as_slice());
        assert_eq!(&frame(None, "topics", "x")[..], b"event: topics\ndata: x\n\n".as_slice());
    }
}
