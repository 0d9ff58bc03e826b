//! The query function on AWS Lambda (function URL / API Gateway).
//!
//! With `SALESTRACK_LAMBDA_STREAMING=true` (the function URL's `InvokeMode:
//! RESPONSE_STREAM`) answers stream, so `GET /carts/{id}/live` works: its
//! streams look at the read store every `SALESTRACK_LIVE_POLL_MS` (no
//! projection topic is followed here) and end after
//! `SALESTRACK_LIVE_MAX_LIFETIME_S`, before the function's timeout; the
//! client reconnects with `Last-Event-ID`.

use salestrack_platform::health::{self, Dependency};
use salestrack_platform::Uses;
use salestrack_query::{router, QueryState};
use std::time::Duration;

/// Without response streaming a Lambda answer is sent whole, once the
/// handler is done: a live stream there sends what is new and ends at once
/// (`end`, reason `lifetime`), and the client polls by reconnecting with
/// `Last-Event-ID`.
fn live_config(settings: &salestrack_platform::Settings) -> salestrack_query::live::LiveConfig {
    let config = salestrack_query::live::LiveConfig::from_settings(settings);
    if settings.lambda_streaming {
        config
    } else {
        salestrack_query::live::LiveConfig {
            max_lifetime: Some(Duration::ZERO),
            ..config
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (settings, backends) = salestrack_platform::start(|_| Uses {
        event_store: true,
        read_store: true,
        // Opens the sealed personal fields of its answers.
        key_store: true,
        ..Uses::NOTHING
    })
    .await?;
    let health = health::router(backends.clone(), &[Dependency::ReadStore]);
    let auth = salestrack_platform::auth::Authenticator::from_settings(&settings)
        .await?
        .map(std::sync::Arc::new);
    let live = salestrack_query::live::Live::new(
        live_config(&settings),
        // Lambda freezes the process between invocations; no shutdown
        // reaches a stream but its lifetime.
        tokio_util::sync::CancellationToken::new(),
    );
    let state = QueryState::from_settings(&settings, &backends, auth, live)?;
    let app = router(state).merge(health);
    if settings.lambda_streaming {
        lambda_http::run_with_streaming_response(app).await
    } else {
        lambda_http::run(app).await
    }
}
