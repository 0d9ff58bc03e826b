//! The payment function on AWS Lambda: MSK batches of the payments topic
//! (the mock gateway), and the saga's timer on an EventBridge schedule.

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use salestrack_payment::{expire_due, handler, Deps};
use salestrack_platform::Uses;
use serde_json::{json, Value};

/// Pages of due checkouts one scheduled sweep goes through at most.
const SWEEP_PAGES: usize = 40;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (settings, backends) = salestrack_platform::start(|_| Uses {
        bus: true,
        payment_ledger: true,
        // Opens the sealed payment method it charges.
        key_store: true,
        // The timer reads the carts due from the read store.
        read_store: true,
        ..Uses::NOTHING
    })
    .await?;
    let read_store = backends.read_store()?;
    let deps = Deps::from_settings(&settings, &backends)?;
    let dead_letters = salestrack_msk::DeadLetters {
        producer: deps.producer.clone(),
        topic: deps.topics.dead_letter.clone(),
        stage: "payment",
    };
    let (deps, read_store, dead_letters) = (&deps, &read_store, &dead_letters);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (payload, context) = event.into_parts();
        // The schedule's EventBridge event: run the saga's timer.
        if payload.get("source").and_then(Value::as_str) == Some("aws.events") {
            // Every page of due checkouts, each after the last (at most
            // SWEEP_PAGES): nothing is left for a minute behind checkouts
            // the read model still shows open after they settled.
            let (mut sent, mut after) = (0, None);
            for _ in 0..SWEEP_PAGES {
                let (n, next) = expire_due(
                    read_store.as_ref(),
                    deps.producer.as_ref(),
                    deps.clock.as_ref(),
                    &deps.topics,
                    after,
                )
                .await?;
                sent += n;
                after = next;
                if after.is_none() {
                    break;
                }
            }
            return Ok::<_, lambda_runtime::Error>(json!({ "expired": sent }));
        }
        // Otherwise an MSK batch. Failed records go back as a partial-batch
        // response, never as an error (ReportBatchItemFailures): the event
        // source mapping (unlimited retries) delivers a retryable one again;
        // poison is dead-lettered here and its partition moves on.
        let batch: KafkaEvent = serde_json::from_value(payload)?;
        let response = dead_letters.lambda_response(batch, |batch| {
            handler(LambdaEvent::new(batch, context), deps)
        });
        Ok(serde_json::to_value(response.await)?)
    }))
    .await
}
