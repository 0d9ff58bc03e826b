//! Lanes of one group on the embedded bus: disjoint partitions that cover
//! the topic, each delivered in order to exactly one lane, committed and
//! resumed per lane.

use salestrack_core::ports::{BusRecord, Consumer, OutboundRecord, Producer};
use salestrack_embedded::EmbeddedBus;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn record(key: usize, n: usize) -> OutboundRecord {
    OutboundRecord {
        topic: "t".into(),
        key: format!("key-{key}").into_bytes(),
        value: n.to_string().into_bytes(),
        headers: vec![],
    }
}

/// Everything `consumer` has left, a small batch at a time.
async fn drain(consumer: &mut dyn Consumer) -> Vec<BusRecord> {
    let mut got = Vec::new();
    loop {
        let batch = consumer
            .poll(7, Duration::from_millis(50))
            .await
            .expect("poll");
        if batch.is_empty() {
            return got;
        }
        got.extend(batch);
    }
}

#[tokio::test]
async fn lanes_own_disjoint_partitions_that_cover_the_topic_and_keep_each_key_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open(&dir.path().join("bus.sqlite"), 8).expect("open");
    // 20 keys, 10 records each, sent interleaved.
    for n in 0..10 {
        bus.send_all((0..20).map(|k| record(k, n)).collect())
            .await
            .expect("send");
    }
    let mut lanes: Vec<_> = (0..3).map(|l| bus.lane("g", &["t"], l, 3)).collect();
    let owned: Vec<usize> = lanes
        .iter()
        .map(|l| l.owned_partitions().unwrap_or(0))
        .collect();
    assert_eq!(owned, vec![3, 3, 2], "8 partitions over 3 lanes");

    let mut partitions_of_lane: Vec<BTreeSet<i32>> = Vec::new();
    let mut per_key: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    let mut seen = 0;
    for lane in &mut lanes {
        let got = drain(lane).await;
        seen += got.len();
        partitions_of_lane.push(got.iter().map(|r| r.partition).collect());
        for r in &got {
            let n = std::str::from_utf8(r.value.as_deref().unwrap_or_default())
                .expect("utf-8")
                .parse()
                .expect("n");
            per_key
                .entry(r.key.clone().unwrap_or_default())
                .or_default()
                .push(n);
        }
        lane.commit(&got).await.expect("commit");
    }
    assert_eq!(seen, 200, "every record once, across the lanes");
    for (i, a) in partitions_of_lane.iter().enumerate() {
        for b in &partitions_of_lane[i + 1..] {
            assert!(
                a.is_disjoint(b),
                "two lanes shared a partition: {a:?} {b:?}"
            );
        }
    }
    assert_eq!(per_key.len(), 20);
    for (key, ns) in &per_key {
        assert_eq!(ns, &(0..10).collect::<Vec<_>>(), "{key:?} out of order");
    }

    // Each lane's commits are its own: new lanes resume after them, and
    // the lag of a lane counts only its partitions.
    bus.send(record(0, 10)).await.expect("send");
    let mut fresh: Vec<_> = (0..3).map(|l| bus.lane("g", &["t"], l, 3)).collect();
    let mut after = Vec::new();
    let mut lag = 0;
    for lane in &mut fresh {
        lag += lane
            .lag()
            .await
            .expect("lag")
            .iter()
            .map(|l| l.lag)
            .sum::<i64>();
        after.extend(drain(lane).await);
    }
    assert_eq!(lag, 1);
    assert_eq!(after.len(), 1, "only the new record: {after:?}");
    assert_eq!(after[0].value.as_deref(), Some(&b"10"[..]));
}
