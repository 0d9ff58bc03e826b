//! Batches handled cart by cart: one load and one conditional append per
//! cart, its commands decided in order against the evolving state, the
//! batch's events and outcomes published together, and the partial-batch
//! rule for the records after a failed one.

use super::*;
use salestrack_core::command::CancelOrder;
use salestrack_core::ids::OrderId;
use salestrack_core::ports::{Delivery, OutboundRecord, Producer};

/// An MSK batch of `commands`, one record each, on partition 0 from offset 0.
pub(super) fn batch_of_commands(commands: &[Command]) -> KafkaEvent {
    let records: Vec<BusRecord> = commands
        .iter()
        .enumerate()
        .map(|(i, command)| {
            let record = CommandRecord {
                command_id: command.derive_id(None),
                accepted_at: Utc::now(),
                command: command.clone(),
            };
            BusRecord {
                topic: "sales.commands".into(),
                partition: 0,
                offset: i as i64,
                timestamp: Utc::now(),
                key: Some(command.cart_id().to_string().into_bytes()),
                value: Some(record.encode()),
                headers: vec![],
            }
        })
        .collect();
    salestrack_msk::batch(&records, "arn:test", "test")
}

pub(super) fn place(l: &OrderLine) -> Command {
    Command::PlaceOrder(PlaceOrder { line: l.clone() })
}

pub(super) fn cancel(l: &OrderLine) -> Command {
    Command::CancelOrder(CancelOrder {
        cart_id: l.cart_id,
        order_id: l.order_id,
        reason: Some("changed my mind".into()),
        requested_by: None,
    })
}

pub(super) fn line_n(n: u128) -> OrderLine {
    let mut l = line();
    l.order_id = OrderId(uuid::Uuid::from_u128(0xA000 + n));
    l.product_name = format!("Product {n}");
    l
}

#[tokio::test]
async fn a_carts_commands_in_one_batch_are_decided_in_order_and_appended_at_once() {
    let w = world();
    let store = Arc::new(Watched::new(&w.store));
    let deps = w.deps_with(store.clone());
    let mut dollars = line_n(9);
    dollars.currency = "USD".parse().expect("currency");
    let (l1, l2, l3) = (line_n(1), line_n(2), line_n(3));
    let event = batch_of_commands(&[
        place(&l1),
        place(&l2),
        place(&l1),      // repeated within the batch
        place(&dollars), // breaks the cart's currency
        cancel(&l2),
        place(&l3),
    ]);
    let result = handler(LambdaEvent::new(event, Context::default()), &deps).await;
    assert_eq!(result.failures, vec![]);
    assert_eq!(
        result.report,
        BatchReport {
            applied: 4,
            duplicates: 1,
            rejected: 1,
            conflicts: 0,
        }
    );
    assert_eq!(
        store.appends(),
        vec![4],
        "one conditional append for the cart"
    );
    assert_eq!(
        *store.snapshot_loads.lock().expect("lock"),
        1,
        "loaded once"
    );

    let stream = w.store.read_stream(l1.cart_id).await.expect("stream");
    let kinds: Vec<(u64, &str, Option<OrderId>)> = stream
        .iter()
        .map(|e| (e.version, e.event.kind().as_str(), e.event.order_id()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, "order_placed", Some(l1.order_id)),
            (2, "order_placed", Some(l2.order_id)),
            (3, "order_cancelled", Some(l2.order_id)),
            (4, "order_placed", Some(l3.order_id)),
        ]
    );

    let outcomes: Vec<(OutcomeStatus, u64, bool)> = w
        .outcomes()
        .await
        .iter()
        .map(|o| (o.status, o.version, o.duplicate))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (OutcomeStatus::Applied, 1, false),
            (OutcomeStatus::Applied, 2, false),
            (OutcomeStatus::Applied, 1, true),
            (OutcomeStatus::Rejected, 2, false),
            (OutcomeStatus::Applied, 3, false),
            (OutcomeStatus::Applied, 4, false),
        ],
        "in command order, each at the version its command reached"
    );
    let published: Vec<u64> = w
        .topic("sales.events")
        .await
        .iter()
        .map(|r| {
            wire::decode_event(r.value.as_deref().expect("value"))
                .expect("event")
                .version
        })
        .collect();
    assert_eq!(
        published,
        vec![1, 2, 1, 3, 4],
        "in order, the repeat re-publishing the event it caused"
    );
}

#[tokio::test]
async fn a_lost_append_race_decides_all_of_the_carts_commands_again() {
    let w = world();
    let store = Arc::new(Watched::racing(&w.store));
    let deps = w.deps_with(store);
    let (l1, l2) = (line_n(1), line_n(2));
    let result = handler(
        LambdaEvent::new(
            batch_of_commands(&[place(&l1), place(&l2), cancel(&l1)]),
            Context::default(),
        ),
        &deps,
    )
    .await;
    assert_eq!((result.report.applied, result.failures.len()), (3, 0));
    let stream = w.store.read_stream(l1.cart_id).await.expect("stream");
    let order: Vec<(u64, Option<OrderId>)> = stream
        .iter()
        .map(|e| (e.version, e.event.order_id()))
        .collect();
    assert_eq!(
        order,
        vec![
            (1, Some(other_line().order_id)),
            (2, Some(l1.order_id)),
            (3, Some(l2.order_id)),
            (4, Some(l1.order_id)),
        ],
        "the rival's event first, then ours in command order"
    );
    let versions: Vec<u64> = w.outcomes().await.iter().map(|o| o.version).collect();
    assert_eq!(versions, vec![2, 3, 4], "outcomes of the attempt that won");
}

#[tokio::test]
async fn a_poison_record_stops_its_cart_and_the_records_after_it_wait_for_the_redelivery() {
    let w = world();
    let (l1, l2) = (line_n(1), line_n(2));
    let mut other_cart = line_n(3);
    other_cart.cart_id = CartId(uuid::Uuid::new_v4());
    let mut event = batch_of_commands(&[place(&l1), place(&l2), place(&other_cart)]);
    let records = event
        .records
        .get_mut("sales.commands-0")
        .expect("partition");
    records[1].value = Some("bm90IGpzb24=".into()); // "not json"
    let result = w.try_run(event.clone()).await;
    assert_eq!(
        result
            .failures
            .iter()
            .map(|f| (f.offset, f.retryable))
            .collect::<Vec<_>>(),
        vec![(1, false)],
        "the poison, permanent"
    );
    assert_eq!(
        result.report.applied, 1,
        "only the record before the poison"
    );
    assert_eq!(
        w.store.read_stream(l1.cart_id).await.expect("stream").len(),
        1
    );
    assert!(
        w.store
            .read_stream(other_cart.cart_id)
            .await
            .expect("stream")
            .is_empty(),
        "records after the poison are not handled in this delivery"
    );

    // The event source dead-letters the poison and redelivers what follows.
    let records = event
        .records
        .get_mut("sales.commands-0")
        .expect("partition");
    records.remove(1);
    records.remove(0);
    let again = w.run(event).await;
    assert_eq!(again.applied, 1);
}

#[tokio::test]
async fn a_failure_on_one_cart_names_its_record_and_leaves_the_other_carts_handled() {
    let w = world();
    let broken = CartId(uuid::Uuid::new_v4());
    let store = Arc::new(Watched::failing_for(&w.store, broken));
    let deps = w.deps_with(store);
    let mut bad = line_n(1);
    bad.cart_id = broken;
    let (ok1, ok2) = (line_n(2), line_n(3));
    let result = handler(
        LambdaEvent::new(
            batch_of_commands(&[place(&ok1), place(&bad), place(&ok2)]),
            Context::default(),
        ),
        &deps,
    )
    .await;
    assert_eq!(
        result
            .failures
            .iter()
            .map(|f| (f.offset, f.retryable))
            .collect::<Vec<_>>(),
        vec![(1, true)],
        "the partition is redelivered from the failed cart's record"
    );
    assert_eq!(
        w.store.read_stream(ok1.cart_id).await.expect("stream").len(),
        2,
        "the healthy cart's records, also the one after the failure, are applied (and come again as repeats)"
    );
    // The redelivery from offset 1: the healthy record after it is a repeat.
    let again = w.run(batch_of_commands(&[place(&bad), place(&ok2)])).await;
    assert_eq!((again.applied, again.duplicates), (1, 1));
}

/// A bus that refuses every produce.
struct DownBus;

#[async_trait]
impl Producer for DownBus {
    async fn send(&self, _: OutboundRecord) -> Result<Delivery, BackendError> {
        Err(BackendError::new("test bus", "broker unreachable"))
    }
}

#[tokio::test]
async fn a_failed_publish_fails_every_partition_and_the_redelivery_publishes_the_stored_events() {
    let w = world();
    let mut other_cart = line_n(2);
    other_cart.cart_id = CartId(uuid::Uuid::new_v4());
    let mut event = batch_of_commands(&[place(&line_n(1))]);
    let mut second = batch_of_commands(&[place(&other_cart)]);
    let mut moved = second.records.remove("sales.commands-0").expect("records");
    moved[0].partition = 2;
    event.records.insert("sales.commands-2".into(), moved);

    let deps = Deps {
        producer: Arc::new(DownBus),
        ..w.deps()
    };
    let result = handler(LambdaEvent::new(event.clone(), Context::default()), &deps).await;
    let mut failed: Vec<(i64, i64, bool)> = result
        .failures
        .iter()
        .map(|f| (f.partition, f.offset, f.retryable))
        .collect();
    failed.sort();
    assert_eq!(failed, vec![(0, 0, true), (2, 0, true)]);
    assert_eq!(
        w.store
            .read_stream(line().cart_id)
            .await
            .expect("stream")
            .len(),
        1,
        "stored"
    );

    let again = w.run(event).await;
    assert_eq!(again.duplicates, 2);
    assert_eq!(
        w.topic("sales.events").await.len(),
        2,
        "the repeats published the events the failed publish lost"
    );
}

#[tokio::test]
async fn a_cart_with_more_events_than_one_append_may_carry_is_appended_in_whole_command_chunks() {
    let w = world();
    let store = Arc::new(Watched::new(&w.store));
    let deps = w.deps_with(store.clone());
    let commands: Vec<Command> = (0..30).map(|n| place(&line_n(n))).collect();
    let result = handler(
        LambdaEvent::new(batch_of_commands(&commands), Context::default()),
        &deps,
    )
    .await;
    assert_eq!((result.report.applied, result.failures.len()), (30, 0));
    assert_eq!(
        store.appends(),
        vec![
            salestrack_domain::MAX_EVENTS_PER_APPEND,
            30 - salestrack_domain::MAX_EVENTS_PER_APPEND
        ]
    );
    assert_eq!(store.rounds(), vec![1, 1], "one chunk per round");
    let versions: Vec<u64> = w
        .store
        .read_stream(line().cart_id)
        .await
        .expect("stream")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=30).collect::<Vec<u64>>());
}

#[tokio::test]
async fn the_carts_of_a_batch_are_appended_with_one_store_call() {
    let w = world();
    let store = Arc::new(Watched::new(&w.store));
    let deps = w.deps_with(store.clone());
    let carts: Vec<OrderLine> = (0..3)
        .map(|n| {
            let mut l = line_n(n);
            l.cart_id = CartId(uuid::Uuid::new_v4());
            l
        })
        .collect();
    let mut commands: Vec<Command> = carts.iter().map(place).collect();
    let mut second = line_n(7);
    second.cart_id = carts[0].cart_id;
    commands.push(place(&second));
    let result = handler(
        LambdaEvent::new(batch_of_commands(&commands), Context::default()),
        &deps,
    )
    .await;
    assert_eq!((result.report.applied, result.failures.len()), (4, 0));
    assert_eq!(
        store.rounds(),
        vec![3],
        "one append_many for the three carts"
    );
    let mut sizes = store.appends();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 1, 2]);
}

#[tokio::test]
async fn an_append_that_crosses_the_snapshot_interval_leaves_a_snapshot_of_its_state() {
    let w = world();
    let lines: Vec<OrderLine> = (0..120).map(line_n).collect();
    let (first, second) = lines.split_at(60);
    let cart_id = lines[0].cart_id;
    let places = |ls: &[OrderLine]| ls.iter().map(place).collect::<Vec<_>>();
    assert_eq!(w.run(batch_of_commands(&places(first))).await.applied, 60);
    assert!(
        w.store
            .load_snapshot(cart_id)
            .await
            .expect("load")
            .is_none(),
        "60 events: below the interval of 100"
    );
    assert_eq!(w.run(batch_of_commands(&places(second))).await.applied, 60);
    let snapshot = w.store.load_snapshot(cart_id).await.expect("load");
    assert_eq!(
        snapshot.map(|s| s.version),
        Some(120),
        "crossing 100 snapshots the state the append left"
    );
}
