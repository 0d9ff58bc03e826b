//! The projector function on AWS Lambda (MSK event sources on the events and outcomes topics).

use lambda_runtime::{service_fn, LambdaEvent};
use salestrack_platform::Uses;
use salestrack_projector::{handler, Deps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (settings, backends) = salestrack_platform::start(|settings| Uses {
        // For the projection notices, when a topic is set for them (the
        // template sets none: then no bus is opened).
        bus: !settings.projections_topic.trim().is_empty(),
        event_store: true,
        read_store: true,
        ..Uses::NOTHING
    })
    .await?;
    let feed = salestrack_platform::backends::projection_feed(&settings, &backends);
    let deps = Deps {
        read_store: backends.read_store()?,
        event_store: backends.event_store()?,
        topics: settings.topics(),
        feed,
    };
    let deps = &deps;
    // Failed records go back as a partial-batch response, never as an error:
    // the event source mapping redelivers from them (ReportBatchItemFailures).
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, std::convert::Infallible>(handler(event, deps).await.response())
    }))
    .await
}
