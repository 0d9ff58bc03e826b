//! The command function on AWS Lambda (function URL / API Gateway).

use salestrack_command::{router, CommandState};
use salestrack_platform::health::{self, Dependency};
use salestrack_platform::Uses;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (settings, backends) = salestrack_platform::start(|_| Uses {
        bus: true,
        // Personal fields are sealed where they enter.
        key_store: true,
        // An erasure finds the user's carts.
        read_store: true,
        ..Uses::NOTHING
    })
    .await?;
    let health = health::router(backends.clone(), &[Dependency::Bus]);
    let auth = salestrack_platform::auth::Authenticator::from_settings(&settings)
        .await?
        .map(Arc::new);
    let state = CommandState::from_settings(&settings, &backends, auth)?;
    lambda_http::run(router(state).merge(health)).await
}
