//! The domain function on AWS Lambda (MSK event source on the commands topic).

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use salestrack_domain::{handler, Deps};
use salestrack_platform::Uses;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (settings, backends) = salestrack_platform::start(|_| Uses {
        bus: true,
        event_store: true,
        ..Uses::NOTHING
    })
    .await?;
    let deps = Deps::from_settings(&settings, &backends)?;
    let dead_letters = salestrack_msk::DeadLetters {
        producer: deps.producer.clone(),
        topic: deps.topics.dead_letter.clone(),
        stage: "domain",
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
