//! Two domain handler instances, each with its own connection to one event
//! store, fed the same carts' commands at once (one in order, the other in
//! reverse, as overlapping redeliveries after a rebalance would): the
//! appends race (the conflicts are counted and must happen), yet no update
//! is lost, no version is stored twice, every command is applied once.
//!
//! Runs on the embedded store (two SQLite connections to one file) and on
//! Apache Cassandra 5 with real Paxos (or the cluster
//! `SALESTRACK_TEST_CASSANDRA` names).

use super::*;
use salestrack_cassandra::{CassandraConfig, CassandraEventStore};
use salestrack_core::ids::OrderId;
use salestrack_domain::Carts;

const CARTS: usize = 20;
const COMMANDS_PER_CART: usize = 15;

/// Runs `event` as the event source would: again from the start while any
/// record failed (lost too many races), every step being idempotent.
async fn until_handled(deps: &Deps, event: &KafkaEvent) -> BatchReport {
    let mut total = BatchReport::default();
    for _ in 0..50 {
        let result = handler(LambdaEvent::new(event.clone(), Context::default()), deps).await;
        total = total + result.report;
        if result.failures.is_empty() {
            return total;
        }
    }
    panic!("records still failing after 50 redeliveries");
}

async fn two_handlers_on(w: &World, first: Arc<dyn EventStore>, second: Arc<dyn EventStore>) {
    let carts: Vec<CartId> = (0..CARTS).map(|_| CartId(uuid::Uuid::new_v4())).collect();
    // Interleaved, as a partition carrying many carts delivers them.
    let lines: Vec<OrderLine> = (0..CARTS * COMMANDS_PER_CART)
        .map(|i| {
            let mut l = line();
            l.cart_id = carts[i % CARTS];
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
    // Batches of 40 records, one after the other: the two handlers race
    // again and again, each winning some carts' appends.
    let batches = |lines: &[OrderLine]| lines.chunks(40).map(batch_of).collect::<Vec<_>>();
    let (in_order, in_reverse) = (batches(&lines), batches(&reversed));
    let all = |deps, batches| async move {
        let mut total = BatchReport::default();
        for event in &batches {
            total = total + until_handled(deps, event).await;
        }
        total
    };
    let (ra, rb) = tokio::join!(all(&a, in_order), all(&b, in_reverse));

    eprintln!("in order: {ra:?}; in reverse: {rb:?}");
    assert_eq!(ra.rejected + rb.rejected, 0);
    assert_eq!(
        ra.applied + rb.applied,
        lines.len(),
        "each command applied exactly once ({ra:?}, {rb:?})"
    );
    assert!(
        ra.conflicts + rb.conflicts > 0,
        "the two handlers raced for the same carts, so appends must have conflicted"
    );
    for cart in &carts {
        let stream = first.read_stream(*cart).await.expect("stream");
        assert_eq!(
            stream.iter().map(|e| e.version).collect::<Vec<_>>(),
            (1..=COMMANDS_PER_CART as u64).collect::<Vec<_>>(),
            "cart {cart}: versions 1..{COMMANDS_PER_CART}, none twice, none skipped"
        );
        let mut stored: Vec<OrderId> = stream.iter().filter_map(|e| e.event.order_id()).collect();
        let mut sent: Vec<OrderId> = lines
            .iter()
            .filter(|l| l.cart_id == *cart)
            .map(|l| l.order_id)
            .collect();
        stored.sort();
        sent.sort();
        assert_eq!(stored, sent, "cart {cart}: every line once, no update lost");

        let through_snapshots = Carts::new(Arc::clone(&first), 5)
            .load(*cart)
            .await
            .expect("load");
        let folded = Carts::new(Arc::clone(&first), 0)
            .load(*cart)
            .await
            .expect("fold");
        assert_eq!(
            through_snapshots, folded,
            "cart {cart}: snapshots written under the race agree with the events"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handlers_on_one_embedded_store_lose_nothing_and_duplicate_nothing() {
    let w = world();
    let second = EmbeddedEventStore::open(&w._dir.path().join("events.sqlite")).expect("second");
    two_handlers_on(&w, Arc::new(w.store.clone()), Arc::new(second)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handlers_on_one_cassandra_cluster_lose_nothing_and_duplicate_nothing() {
    use salestrack_test_engines::{Engine, EngineServer};
    let contact_points = match std::env::var("SALESTRACK_TEST_CASSANDRA") {
        Ok(points) => points,
        Err(_) => match EngineServer::shared(Engine::Cassandra) {
            Some(server) => server.address(),
            None => return,
        },
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
