//! The command function on AWS Lambda (function URL / API Gateway).

use salestrack_command::{router, CommandState};
use salestrack_core::ports::SystemClock;
use salestrack_platform::{telemetry, Backends, Settings};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let settings = Settings::from_env()?;
    telemetry::init(settings.log_format);
    let backends = Backends::connect(&settings)?;
    let state = CommandState {
        producer: backends.producer,
        clock: Arc::new(SystemClock),
        topic: settings.commands_topic,
        max_body_bytes: settings.max_body_bytes,
    };
    lambda_http::run(router(state)).await
}
