//! A rewind asked while the group's coordinator is down fails. The records it
//! was to deliver again must still come first once the broker is back: the
//! consumer loop rewinds after a retryable failure, and a rewind that failed
//! used to leave librdkafka's position past those records, so the next poll
//! handed over the records after them and their commit skipped the failed
//! ones for good (193 accepted orders never stored, with two brokers of
//! three killed in `local-runner/tests/replicated`).
//!
//! A binary of its own: while the broker is down its port is free, and a
//! broker another test started meanwhile could take it.

use salestrack_core::ports::{BusRecord, Consumer, OutboundRecord, Producer};
use salestrack_kafka::{KafkaBus, KafkaConfig};
use salestrack_test_engines::{Engine, EngineServer};
use std::time::{Duration, Instant};

fn record(topic: &str, value: &str) -> OutboundRecord {
    OutboundRecord {
        topic: topic.into(),
        key: b"k".to_vec(),
        value: value.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

fn values(records: &[BusRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// Polls until `last` arrives, through the errors of a broker coming back
/// (bounded: two minutes).
async fn poll_through(consumer: &mut dyn Consumer, last: &str) -> Vec<BusRecord> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got: Vec<BusRecord> = Vec::new();
    while !values(&got).iter().any(|v| v == last) {
        assert!(
            Instant::now() < deadline,
            "{last} never arrived; got {:?}",
            values(&got)
        );
        match consumer.poll(100, Duration::from_secs(1)).await {
            Ok(records) => got.extend(records),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_that_failed_with_the_broker_down_still_redelivers_first() {
    let Some(mut broker) = EngineServer::start(Engine::Kafka) else {
        return;
    };
    let mut config = KafkaConfig::new(broker.address());
    // Longer than the outage: the member keeps its partition throughout,
    // so no rebalance seeks it back on the rewind's behalf.
    config.session_timeout = Duration::from_secs(90);
    let bus = KafkaBus::connect(config).expect("connect");
    let topic = format!("rewind-{}", uuid::Uuid::new_v4());
    bus.ensure_topics(&[&topic], 1, 1, 1).await.expect("topic");
    for i in 0..10 {
        bus.send(record(&topic, &format!("v{i}")))
            .await
            .expect("send");
    }
    let mut consumer = bus
        .consumer(&format!("group-{}", uuid::Uuid::new_v4()), &[&topic])
        .expect("consumer");
    let first = poll_through(&mut consumer, "v9").await;
    assert_eq!(
        values(&first),
        (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );
    // v0..v2 handled; v3 failed for a retryable reason, so the loop rewinds.
    consumer.commit(&first[..3]).await.expect("commit");

    broker.kill();
    let rewound = consumer.rewind().await;
    assert!(
        rewound.is_err(),
        "the rewind reached a coordinator with the only broker down: {rewound:?}"
    );
    broker.restart();
    for i in 10..12 {
        bus.send(record(&topic, &format!("v{i}")))
            .await
            .expect("send after the restart");
    }

    let again = poll_through(&mut consumer, "v11").await;
    assert_eq!(
        values(&again),
        (3..12).map(|i| format!("v{i}")).collect::<Vec<_>>(),
        "after the failed rewind, the uncommitted records come first, once each"
    );
}
