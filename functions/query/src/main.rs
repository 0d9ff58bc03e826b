//! The query function on AWS Lambda (function URL / API Gateway).

use salestrack_platform::health::{self, Dependency};
use salestrack_query::{router, QueryState};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (settings, backends) = salestrack_platform::start().await?;
    let health = health::router(backends.clone(), &[Dependency::ReadStore]);
    let state = QueryState {
        read_store: backends.read_store,
        // Read only: time travel and history.
        event_store: backends.event_store,
        consistency_wait: Duration::from_millis(settings.consistency_wait_ms),
        auth: salestrack_platform::auth::Authenticator::from_settings(&settings)
            .await?
            .map(std::sync::Arc::new),
    };
    lambda_http::run(router(state).merge(health)).await
}
