//! The bus contract: a `Producer` and the `Consumer`s of the same log.

use salestrack_core::ports::{BusRecord, Consumer, OutboundRecord, Producer};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn record(topic: &str, key: &str, value: &str) -> OutboundRecord {
    OutboundRecord {
        topic: topic.into(),
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        headers: vec![("trace".into(), b"t-1".to_vec())],
    }
}

/// Polls until `n` records arrived (bounded by `WAIT` per poll and 50 polls).
pub async fn poll_n(consumer: &mut dyn Consumer, n: usize) -> Vec<BusRecord> {
    let mut got = Vec::new();
    for _ in 0..50 {
        if got.len() >= n {
            break;
        }
        got.extend(consumer.poll(n - got.len(), WAIT).await.expect("poll"));
    }
    got
}

fn values_for_key(records: &[BusRecord], key: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// Records of one key arrive in the order they were produced, with key, value and headers intact.
pub async fn records_of_one_key_arrive_in_order(
    producer: &dyn Producer,
    consumer: &mut dyn Consumer,
    topic: &str,
) {
    for i in 0..20 {
        let key = if i % 2 == 0 { "cart-a" } else { "cart-b" };
        producer
            .send(record(topic, key, &format!("{key}-{i}")))
            .await
            .expect("send");
    }
    let got = poll_n(consumer, 20).await;
    assert_eq!(got.len(), 20);
    assert_eq!(
        values_for_key(&got, "cart-a"),
        (0..20)
            .step_by(2)
            .map(|i| format!("cart-a-{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        values_for_key(&got, "cart-b"),
        (1..20)
            .step_by(2)
            .map(|i| format!("cart-b-{i}"))
            .collect::<Vec<_>>()
    );
    assert!(got
        .iter()
        .all(|r| r.topic == topic && r.headers == vec![("trace".to_string(), b"t-1".to_vec())]));
}

/// Uncommitted records are delivered again after a rewind; committed ones are not.
pub async fn uncommitted_records_are_redelivered(
    producer: &dyn Producer,
    consumer: &mut dyn Consumer,
    topic: &str,
) {
    for i in 0..4 {
        producer
            .send(record(topic, "k", &format!("v{i}")))
            .await
            .expect("send");
    }
    let first = poll_n(consumer, 2).await;
    consumer.commit(&first[..2]).await.expect("commit");
    let rest = poll_n(consumer, 2).await;
    assert_eq!(values_for_key(&rest, "k"), vec!["v2", "v3"]);
    consumer.rewind().await.expect("rewind");
    let again = poll_n(consumer, 2).await;
    assert_eq!(
        values_for_key(&again, "k"),
        vec!["v2", "v3"],
        "the uncommitted tail comes back"
    );
}

/// A member that joins after another left starts at the group's committed
/// offsets: what the first handled but did not commit comes again, exactly
/// from the commit, even when the commit falls inside a batch the producer
/// sent at once (a broker that only serves batches starting at or after the
/// fetch offset would skip the rest of it).
pub async fn a_new_group_member_resumes_after_the_last_commit(
    producer: &dyn Producer,
    mut first: Box<dyn Consumer>,
    second: impl FnOnce() -> Box<dyn Consumer>,
    topic: &str,
) {
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    // Sent together, so the producer batches them.
    let sent = futures::future::join_all(
        values
            .iter()
            .map(|value| producer.send(record(topic, "k", value))),
    )
    .await;
    let offsets: Vec<i64> = sent.into_iter().map(|d| d.expect("send").offset).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "one key keeps its order: {offsets:?}"
    );
    let got = poll_n(first.as_mut(), 10).await;
    assert_eq!(values_for_key(&got, "k"), values);
    first.commit(&got[..4]).await.expect("commit");
    drop(first);
    let mut second = second();
    let resumed = poll_n(second.as_mut(), 6).await;
    assert_eq!(values_for_key(&resumed, "k"), values[4..].to_vec());
}

/// An idle poll returns empty after its wait instead of hanging.
pub async fn an_idle_poll_returns_empty(consumer: &mut dyn Consumer) {
    let got = consumer
        .poll(10, Duration::from_millis(50))
        .await
        .expect("poll");
    assert!(got.is_empty());
}

/// Lag counts the records of a partition the group has not committed yet
/// (delivered or not), reported within seconds (Kafka's comes from client
/// statistics, served while the member polls).
pub async fn lag_counts_records_not_yet_committed(
    producer: &dyn Producer,
    consumer: &mut dyn Consumer,
    topic: &str,
) {
    // One key, so one partition.
    for i in 0..3 {
        producer
            .send(record(topic, "cart-lag", &format!("{i}")))
            .await
            .expect("send");
    }
    let got = poll_n(consumer, 3).await;
    consumer.commit(&got).await.expect("commit");
    let partition = got[0].partition;
    let mut delivered = Vec::new();
    assert_eq!(
        lag_settles_at(consumer, topic, partition, 0, &mut delivered).await,
        0,
        "caught up"
    );
    for i in 3..5 {
        producer
            .send(record(topic, "cart-lag", &format!("{i}")))
            .await
            .expect("send");
    }
    assert_eq!(
        lag_settles_at(consumer, topic, partition, 2, &mut delivered).await,
        2,
        "two records behind"
    );
    let missing = 2 - delivered.len();
    delivered.extend(poll_n(consumer, missing).await);
    assert_eq!(
        lag_settles_at(consumer, topic, partition, 2, &mut delivered).await,
        2,
        "delivered is not yet handled"
    );
    consumer.commit(&delivered).await.expect("commit");
    assert_eq!(
        lag_settles_at(consumer, topic, partition, 0, &mut delivered).await,
        0,
        "committed"
    );
}

/// The partition's lag once it reads `want`, or what it reads after 15 s.
/// Polls meanwhile (which serves a Kafka client's statistics) and keeps
/// what that delivers in `delivered`.
async fn lag_settles_at(
    consumer: &mut dyn Consumer,
    topic: &str,
    partition: i32,
    want: i64,
    delivered: &mut Vec<BusRecord>,
) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let lag = consumer
            .lag()
            .await
            .expect("lag")
            .iter()
            .filter(|l| l.topic == topic && l.partition == partition)
            .map(|l| l.lag)
            .sum::<i64>();
        if lag == want || std::time::Instant::now() > deadline {
            return lag;
        }
        delivered.extend(
            consumer
                .poll(10, Duration::from_millis(100))
                .await
                .expect("poll"),
        );
    }
}
