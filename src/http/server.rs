//! The HTTP accept loop: hyper's connection builder, with the limits a public server
//! needs and `axum::serve` does not offer. A connection has [`Timeouts::headers`] to send
//! each request's headers (which is also how long an idle keep-alive connection stays),
//! a request body has [`Timeouts::body`] between its chunks, and past
//! [`ServerLimits::max_connections`] a new connection is answered `503` and closed at once,
//! so that slow or idle clients cannot hold every file descriptor the process has.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What bounds each connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub headers: Duration,
    pub body: Duration,
}

/// How long open connections may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests
/// finish (live streams end through `AppState::closing`, which the caller flips).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tune: impl Fn(&TcpStream),
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.headers))
        .keep_alive_timeout(limits.headers);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: wait for some to close.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(tcp));
            continue;
        };
        tune(&tcp);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("some HTTP connections were still open when the shutdown grace ran out");
    }
}

/// The answer past the connection cap: a short page, then the connection closes.
async fn refuse(mut tcp: TcpStream) {
    const BODY: &str = "<!doctype html><title>Floo is busy</title><h1>Floo is busy</h1>\
        <p>This server has as many connections open as it allows. Try again in a few seconds.</p>\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html; charset=utf-8\r\nretry-after: 5\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

/// The address a request came from (the peer of its TCP connection).
pub fn peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0)
}

/// Where a request comes from, for limits per address: the TCP peer, or, when that is a
/// reverse proxy on this machine (loopback), the last address the proxy added to
/// `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = peer(&parts.extensions).map(|addr| addr.ip());
        let forwarded = || {
            let header = parts.headers.get_all("x-forwarded-for").iter().next_back()?.to_str().ok()?;
            header.rsplit(',').next()?.trim().parse().ok()
        };
        Ok(ClientAddress(match peer {
            Some(ip) if ip.is_loopback() => forwarded().or(Some(ip)),
            other => other,
        }))
    }
}
