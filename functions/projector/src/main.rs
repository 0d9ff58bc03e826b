//! The projector function on AWS Lambda (MSK event sources on the events and outcomes topics).

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use salestrack_platform::Uses;
use salestrack_projector::{handler, Deps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (settings, backends) = salestrack_platform::start(|_| Uses {
        // For its dead letters, and the projection notices when a topic is
        // set for them (the template sets none).
        bus: true,
        event_store: true,
        read_store: true,
        ..Uses::NOTHING
    })
    .await?;
    let feed = salestrack_platform::backends::projection_feed(&settings, &backends);
    let deps = Deps::from_settings(&settings, &backends, feed)?;
    let dead_letters = salestrack_msk::DeadLetters {
        producer: backends.producer()?,
        topic: deps.topics.dead_letter.clone(),
        stage: "projector",
    };
    let (deps, dead_letters) = (&deps, &dead_letters);
    // Failed records go back as a partial-batch response, never as an error:
    // the event source mapping (unlimited retries) delivers a retryable one
    // again; poison is dead-lettered here and its partition moves on.
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KafkaEvent>| async move {
            let (batch, context) = event.into_parts();
            let answer = dead_letters.lambda_response(batch, |batch| {
                handler(LambdaEvent::new(batch, context), deps)
            });
            Ok::<_, std::convert::Infallible>(answer.await)
        },
    ))
    .await
}
