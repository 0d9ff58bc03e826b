//! The domain function on AWS Lambda (MSK event source on the commands topic).

use lambda_runtime::{service_fn, LambdaEvent};
use salestrack_core::ports::SystemClock;
use salestrack_domain::{handler, Deps};
use salestrack_platform::Uses;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (settings, backends) = salestrack_platform::start(|_| Uses {
        bus: true,
        event_store: true,
        ..Uses::NOTHING
    })
    .await?;
    let deps = Deps {
        event_store: backends.event_store()?,
        snapshot_every: settings.snapshot_every,
        producer: backends.producer()?,
        clock: Arc::new(SystemClock),
        topics: settings.topics(),
        payment_timeout: std::time::Duration::from_millis(settings.payment_timeout_ms),
    };
    let deps = &deps;
    // Failed records go back as a partial-batch response, never as an error:
    // the event source mapping redelivers from them (ReportBatchItemFailures).
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, std::convert::Infallible>(handler(event, deps).await.response())
    }))
    .await
}
