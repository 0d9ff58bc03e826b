//! The runner's HTTP server: axum's router on hyper, with the bounds a
//! client must not be able to stretch (issue 29).
//!
//! - At most `max_connections` connections at once: past it the listener
//!   accepts no more until one closes (they wait in the kernel's backlog).
//! - A client has `header_timeout` to send a request's headers, from the
//!   connection's start or its previous response (keep-alive included); then
//!   the connection is closed.
//! - A request's body is read in full, bounded by `body_timeout` and the
//!   body limit, *before* the request takes a slot of the in-flight budget
//!   ([`buffer_body`]): a slow body holds one connection, never a slot.
//!
//! What stays open for long is by design: live streams, which have their
//! own limit (`SALESTRACK_LIVE_MAX_STREAMS`) and heartbeats.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use salestrack_platform::http::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The server's bounds, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
}

impl HttpLimits {
    pub fn from_settings(s: &salestrack_platform::Settings) -> HttpLimits {
        HttpLimits {
            max_connections: s.http.max_connections.max(1),
            header_timeout: Duration::from_millis(s.http.header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(s.http.body_timeout_ms.max(1)),
            max_body_bytes: s.http.max_body_bytes,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then waits for the open
/// connections to finish (live streams end on the same signal).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connections).acquire_owned() => slot.expect("never closed"),
            () = shutdown.cancelled() => break,
        };
        let (socket, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: not the server's end.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        metrics::gauge!("salestrack_http_connections").increment(1.0);
        // Events of a live stream go out as they come.
        let _ = socket.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(socket), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that timed out or went away: nothing to report.
            let _ = connection.await;
            metrics::gauge!("salestrack_http_connections").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// How much of a body past the limit is read and discarded before the
/// `413`, so that a client still sending sees the answer rather than a
/// reset connection (as nginx's lingering close does).
const DISCARD_PAST_LIMIT: usize = 8 * 1024 * 1024;

/// Reads the request's body in full, at most `body_timeout` and
/// `max_body_bytes`, and passes the request on with it: `408
/// request_timeout` for a body that did not arrive in time, `413` for one
/// over the limit (read on, discarding, up to [`DISCARD_PAST_LIMIT`] more).
pub async fn buffer_body(
    State(limits): State<HttpLimits>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, mut body) = request.into_parts();
    if axum::body::HttpBody::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    let mut kept = Vec::new();
    let mut seen = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                metrics::counter!("salestrack_http_body_timeouts_total").increment(1);
                return ApiError::RequestTimeout {
                    after: limits.body_timeout,
                }
                .into_response();
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return ApiError::bad_request(
                    "unreadable_body",
                    format!("the request body could not be read: {e}"),
                )
                .into_response();
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                seen = seen.saturating_add(data.len());
                if seen <= limits.max_body_bytes {
                    kept.extend_from_slice(&data);
                } else if seen > limits.max_body_bytes.saturating_add(DISCARD_PAST_LIMIT) {
                    break;
                }
            }
        }
    }
    if seen > limits.max_body_bytes {
        return ApiError::PayloadTooLarge {
            limit: limits.max_body_bytes,
        }
        .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(kept))).await
}
