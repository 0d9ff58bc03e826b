//! Two domain handler instances, each with its own connection to one event
//! store, fed the same cart's commands at once (one in order, the other in
//! reverse, as overlapping redeliveries after a rebalance would): no update
//! is lost, no version is stored twice, every command is applied once.
//!
//! Runs on the embedded store (two SQLite connections to one file) and, when
//! `SALESTRACK_TEST_CASSANDRA` names a cluster, on Cassandra with real LWT.

use super::*;
use salestrack_cassandra::{CassandraConfig, CassandraEventStore};
use salestrack_core::ids::OrderId;
use salestrack_domain::Carts;

const COMMANDS: usize = 60;

/// Runs `event` as the event source would: again from the start while any
/// record failed (lost too many races), every step being idempotent.
async fn until_handled(deps: &Deps, event: &KafkaEvent) -> BatchReport {
    let mut total = BatchReport::default();
    for _ in 0..50 {
        let result = handler(LambdaEvent::new(event.clone(), Context::default()), deps).await;
        total.applied += result.report.applied;
        total.duplicates += result.report.duplicates;
        total.rejected += result.report.rejected;
        if result.failures.is_empty() {
            return total;
        }
    }
    panic!("records still failing after 50 redeliveries");
}

async fn two_handlers_on(w: &World, first: Arc<dyn EventStore>, second: Arc<dyn EventStore>) {
    let cart = CartId(uuid::Uuid::new_v4());
    let lines: Vec<OrderLine> = (0..COMMANDS)
        .map(|i| {
            let mut l = line();
            l.cart_id = cart;
            l.order_id = OrderId(uuid::Uuid::new_v4());
            l.product_name = format!("Product {i}");
            l
        })
        .collect();
    let mut reversed = lines.clone();
    reversed.reverse();
    let deps = |store: &Arc<dyn EventStore>| Deps {
        snapshot_every: 5,
        ..w.deps_with(Arc::clone(store))
    };
    let (a, b) = (deps(&first), deps(&second));
    let (in_order, in_reverse) = (batch_of(&lines), batch_of(&reversed));
    let (ra, rb) = tokio::join!(until_handled(&a, &in_order), until_handled(&b, &in_reverse));

    eprintln!("in order: {ra:?}; in reverse: {rb:?}");
    assert_eq!(ra.rejected + rb.rejected, 0);
    assert_eq!(
        ra.applied + rb.applied,
        COMMANDS,
        "each command applied exactly once ({ra:?}, {rb:?})"
    );
    let stream = first.read_stream(cart).await.expect("stream");
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=COMMANDS as u64).collect::<Vec<_>>(),
        "versions 1..{COMMANDS}, none twice, none skipped"
    );
    let mut stored: Vec<OrderId> = stream.iter().map(|e| e.event.order_id()).collect();
    let mut sent: Vec<OrderId> = lines.iter().map(|l| l.order_id).collect();
    stored.sort();
    sent.sort();
    assert_eq!(stored, sent, "every line once, no update lost");

    let through_snapshots = Carts::new(Arc::clone(&first), 5)
        .load(cart)
        .await
        .expect("load");
    let folded = Carts::new(first, 0).load(cart).await.expect("fold");
    assert_eq!(
        through_snapshots, folded,
        "snapshots written under the race agree with the events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handlers_on_one_embedded_store_lose_nothing_and_duplicate_nothing() {
    let w = world();
    let second = EmbeddedEventStore::open(&w._dir.path().join("events.sqlite")).expect("second");
    two_handlers_on(&w, Arc::new(w.store.clone()), Arc::new(second)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handlers_on_one_cassandra_cluster_lose_nothing_and_duplicate_nothing() {
    let Ok(contact_points) = std::env::var("SALESTRACK_TEST_CASSANDRA") else {
        eprintln!("skipped: SALESTRACK_TEST_CASSANDRA is unset (a real cluster with LWT)");
        return;
    };
    let config = CassandraConfig::new(
        &contact_points,
        &format!("t{}", uuid::Uuid::new_v4().simple()),
    );
    let first = CassandraEventStore::connect(config.clone())
        .await
        .expect("first");
    let second = CassandraEventStore::connect(config).await.expect("second");
    two_handlers_on(&world(), Arc::new(first), Arc::new(second)).await;
}
