//! The domain handler on MSK batches (JSON fixtures and built batches), over
//! real embedded backends in a temporary directory.

mod batches;
mod concurrency;
mod warm;

use async_trait::async_trait;
use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::Utc;
use lambda_runtime::{Context, LambdaEvent};
use salestrack_core::command::{Command, OrderLine, PlaceOrder};
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::headers::{self as h, TraceParent};
use salestrack_core::ids::{CartId, CommandId};
use salestrack_core::ports::{
    AppendError, BackendError, BusRecord, Consumer, EventStore, Snapshot, StreamAppend, StreamHead,
    SystemClock,
};
use salestrack_core::testing::{line, other_line};
use salestrack_core::wire::{self, CommandRecord, Outcome, OutcomeStatus};
use salestrack_domain::{handler, BatchReport, Deps};
use salestrack_embedded::{EmbeddedBus, EmbeddedEventStore};
use salestrack_msk::BatchResult;
use salestrack_platform::Topics;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct World {
    _dir: tempfile::TempDir,
    bus: EmbeddedBus,
    store: EmbeddedEventStore,
    topics: Topics,
    /// Shared by every batch of the world, as in a process.
    warm: Arc<salestrack_domain::WarmCarts>,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    World {
        bus: EmbeddedBus::open(&dir.path().join("bus.sqlite"), 4).expect("bus"),
        store: EmbeddedEventStore::open(&dir.path().join("events.sqlite")).expect("store"),
        topics: Topics::default(),
        warm: Arc::new(salestrack_domain::WarmCarts::new(100_000)),
        _dir: dir,
    }
}

impl World {
    fn deps(&self) -> Deps {
        self.deps_with(Arc::new(self.store.clone()))
    }

    fn deps_with(&self, event_store: Arc<dyn EventStore>) -> Deps {
        Deps {
            event_store,
            snapshot_every: 100,
            producer: Arc::new(self.bus.clone()),
            clock: Arc::new(SystemClock),
            topics: self.topics.clone(),
            payment_timeout: Duration::from_secs(30),
            warm: Arc::clone(&self.warm),
        }
    }

    async fn try_run(&self, event: KafkaEvent) -> BatchResult<BatchReport> {
        handler(LambdaEvent::new(event, Context::default()), &self.deps()).await
    }

    /// Runs a batch that must be handled in full.
    async fn run(&self, event: KafkaEvent) -> BatchReport {
        let result = self.try_run(event).await;
        assert_eq!(result.failures, vec![], "no record may fail");
        result.report
    }

    async fn topic(&self, topic: &str) -> Vec<BusRecord> {
        let n = self.bus.topic_len(topic).await.expect("len") as usize;
        let mut consumer = self
            .bus
            .consumer(&format!("reader-{}", uuid::Uuid::new_v4()), &[topic]);
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(
                consumer
                    .poll(n, Duration::from_secs(5))
                    .await
                    .expect("poll"),
            );
        }
        got
    }

    async fn outcomes(&self) -> Vec<Outcome> {
        self.topic(&self.topics.outcomes.clone())
            .await
            .iter()
            .map(|r| Outcome::decode(r.value.as_deref().expect("value")).expect("outcome"))
            .collect()
    }
}

fn fixture(name: &str) -> KafkaEvent {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("a KafkaEvent")
}

/// An MSK batch of place-order commands on one partition.
fn batch_of(lines: &[OrderLine]) -> KafkaEvent {
    batch_of_commands(
        lines
            .iter()
            .map(|l| Command::PlaceOrder(PlaceOrder { line: l.clone() }))
            .collect(),
    )
}

fn cart_of_fixture() -> CartId {
    "6f1c1f2e-3c7d-4a8e-9b3a-2d5e6f7a8b9c"
        .parse()
        .expect("cart")
}

#[tokio::test]
async fn a_placed_order_is_appended_then_published_with_its_outcome() {
    let w = world();
    let report = w.run(fixture("place-order.json")).await;
    assert_eq!(
        report,
        BatchReport {
            applied: 1,
            ..BatchReport::default()
        }
    );

    let stream = w
        .store
        .read_stream(cart_of_fixture())
        .await
        .expect("stream");
    assert_eq!(stream.len(), 1);
    assert!(
        matches!(&stream[0].event, Event::OrderPlaced(l) if l.product_name == "Espresso machine")
    );

    let events = w.topic("sales.events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].key.as_deref(),
        Some(cart_of_fixture().to_string().as_bytes())
    );
    assert_eq!(
        wire::decode_event(events[0].value.as_deref().expect("value")).expect("event"),
        stream[0]
    );

    let outcomes = w.outcomes().await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(
        (
            outcomes[0].status,
            outcomes[0].version,
            outcomes[0].duplicate
        ),
        (OutcomeStatus::Applied, 1, false)
    );
    assert_eq!(
        outcomes[0].command_id.to_string(),
        "3d5a1c0e-1111-4a5b-8c9d-000000000001"
    );
}

#[tokio::test]
async fn a_redelivered_batch_appends_nothing_and_republishes_the_same_event() {
    let w = world();
    w.run(fixture("place-order.json")).await;
    let again = w.run(fixture("place-order.json")).await;
    assert_eq!(
        again,
        BatchReport {
            duplicates: 1,
            ..BatchReport::default()
        }
    );
    assert_eq!(
        w.store
            .read_stream(cart_of_fixture())
            .await
            .expect("stream")
            .len(),
        1,
        "stored once"
    );
    let events = w.topic("sales.events").await;
    assert_eq!(
        events.len(),
        2,
        "republished, so a publish lost after the append heals"
    );
    assert_eq!(events[0].value, events[1].value, "the very same event");
    let outcomes = w.outcomes().await;
    assert!(outcomes[1].duplicate);
}

#[tokio::test]
async fn a_repeated_command_reports_the_version_its_event_reached() {
    let w = world();
    w.run(batch_of(&[line(), other_line()])).await;
    let again = w.run(batch_of(&[line()])).await;
    assert_eq!(again.duplicates, 1);
    let outcomes = w.outcomes().await;
    let repeat = outcomes
        .iter()
        .find(|o| o.duplicate)
        .expect("the repeat's outcome");
    assert_eq!(
        repeat.version, 1,
        "the first line was applied at version 1, though the cart is at 2"
    );
}

#[tokio::test]
async fn a_poison_record_is_named_in_the_partial_batch_response_and_stops_only_its_partition() {
    let w = world();
    let result = w.try_run(fixture("batch-with-one-poison.json")).await;
    assert_eq!(
        serde_json::to_value(result.response()).expect("json"),
        serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": "sales.commands-0", "offset": 201}}
        ]}),
        "the response names exactly the poison record"
    );
    let failure = &result.failures[0];
    assert!(!failure.retryable, "poison is permanent");
    assert!(
        failure
            .error
            .contains("unknown command type \"refund_everything\""),
        "{}",
        failure.error
    );
    assert_eq!(
        result.report.applied, 2,
        "the record before the poison and the other partition"
    );
    assert_eq!(
        w.store
            .read_stream(cart_of_fixture())
            .await
            .expect("stream")
            .len(),
        1,
        "the record after the poison waits for the redelivery"
    );
}

#[tokio::test]
async fn every_kind_of_poison_is_a_permanent_failure_with_its_reason() {
    let w = world();
    let fixture = fixture("poison-then-valid.json");
    let mut errors = Vec::new();
    // As the event source does: the next delivery starts after the dead-lettered record.
    for record in &fixture.records["sales.commands-0"] {
        let mut one = fixture.clone();
        one.records = [("sales.commands-0".to_string(), vec![record.clone()])].into();
        let result = w.try_run(one).await;
        for f in &result.failures {
            assert!(!f.retryable, "{f:?}");
            assert_eq!(f.offset, record.offset);
        }
        errors.extend(result.failures.into_iter().map(|f| f.error));
    }
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors[0].contains("base64"), "{}", errors[0]);
    assert!(errors[1].contains("not valid JSON"), "{}", errors[1]);
    assert!(
        errors[2].contains("unknown command type \"refund_everything\""),
        "{}",
        errors[2]
    );
    assert!(errors[3].contains("does not match"), "{}", errors[3]);
    assert!(errors[4].contains("no value"), "{}", errors[4]);
    assert_eq!(
        w.store
            .read_stream(cart_of_fixture())
            .await
            .expect("stream")
            .len(),
        1,
        "the valid record after the poison ones was applied"
    );
    assert_eq!(
        w.bus.topic_len("sales.dead-letter").await.expect("len"),
        0,
        "dead letters are the event source's job, not the handler's"
    );
}

#[tokio::test]
async fn events_and_the_outcome_carry_the_commands_trace_and_their_ids() {
    let w = world();
    w.run(fixture("place-order.json")).await;
    let command_trace = "3d5a1c0e11114a5b8c9d000000000001";
    let events = w.topic("sales.events").await;
    let outcomes = w.topic("sales.outcomes").await;
    for (record, schema) in events
        .iter()
        .map(|r| (r, &b"2"[..]))
        .chain(outcomes.iter().map(|r| (r, &b"1"[..])))
    {
        let trace = TraceParent::from_headers(&record.headers).expect("traceparent");
        assert_eq!(
            trace.trace_id_hex(),
            command_trace,
            "a fixture without trace context gets the command id as trace id"
        );
        // The version of its own type: order_placed is at 2, outcomes at 1.
        assert_eq!(h::find(&record.headers, h::SCHEMA_VERSION), Some(schema));
    }
    let event = wire::decode_event(events[0].value.as_deref().expect("value")).expect("event");
    assert_eq!(
        h::find(&events[0].headers, h::EVENT_ID),
        Some(event.event_id.to_string().as_bytes())
    );
    assert_eq!(
        h::find(&events[0].headers, h::MESSAGE_TYPE),
        Some(&b"order_placed"[..])
    );
}

#[tokio::test]
async fn a_rule_breaking_command_is_rejected_with_its_reason() {
    let w = world();
    let mut dollars = other_line();
    dollars.currency = "USD".parse().expect("currency");
    let report = w.run(batch_of(&[line(), dollars])).await;
    assert_eq!(
        report,
        BatchReport {
            applied: 1,
            rejected: 1,
            ..BatchReport::default()
        }
    );
    let outcomes = w.outcomes().await;
    let rejected = outcomes
        .iter()
        .find(|o| o.status == OutcomeStatus::Rejected)
        .expect("rejection");
    let reason = rejected.reason.as_ref().expect("reason");
    assert_eq!(reason.code, "currency_mismatch");
    assert!(
        reason.message.contains("EUR") && reason.message.contains("USD"),
        "{}",
        reason.message
    );
    assert_eq!(
        w.store
            .read_stream(line().cart_id)
            .await
            .expect("stream")
            .len(),
        1
    );
}

/// The embedded event store, watched and tampered with by the tests: it
/// counts the appends the handler makes (events per stream, streams per
/// call) and snapshot loads, can let a rival writer win the first append,
/// and can fail every append to one cart.
struct Watched {
    inner: EmbeddedEventStore,
    /// Before the first append, a rival appends `other_line()` at the same version.
    race_once: AtomicBool,
    fail_for: Option<CartId>,
    appends: std::sync::Mutex<Vec<usize>>,
    rounds: std::sync::Mutex<Vec<usize>>,
    snapshot_loads: std::sync::Mutex<usize>,
}

impl Watched {
    fn new(inner: &EmbeddedEventStore) -> Watched {
        Watched {
            inner: inner.clone(),
            race_once: AtomicBool::new(false),
            fail_for: None,
            appends: std::sync::Mutex::new(Vec::new()),
            rounds: std::sync::Mutex::new(Vec::new()),
            snapshot_loads: std::sync::Mutex::new(0),
        }
    }

    fn racing(inner: &EmbeddedEventStore) -> Watched {
        Watched {
            race_once: AtomicBool::new(true),
            ..Watched::new(inner)
        }
    }

    fn failing_for(inner: &EmbeddedEventStore, cart: CartId) -> Watched {
        Watched {
            fail_for: Some(cart),
            ..Watched::new(inner)
        }
    }

    /// Events per stream of every append, in call order.
    fn appends(&self) -> Vec<usize> {
        self.appends.lock().expect("lock").clone()
    }

    /// Streams per store call.
    fn rounds(&self) -> Vec<usize> {
        self.rounds.lock().expect("lock").clone()
    }

    async fn one(
        &self,
        cart_id: CartId,
        expected: u64,
        events: &[RecordedEvent],
    ) -> Result<(), AppendError> {
        self.appends.lock().expect("lock").push(events.len());
        if self.fail_for == Some(cart_id) {
            return Err(BackendError::new("test store", "timed out").into());
        }
        if self.race_once.swap(false, Ordering::SeqCst) {
            let rival = RecordedEvent::number(
                cart_id,
                expected,
                CommandId(uuid::Uuid::new_v4()),
                Utc::now(),
                vec![Event::OrderPlaced(other_line())],
            );
            self.inner.append(cart_id, expected, &rival).await?;
        }
        self.inner.append(cart_id, expected, events).await
    }
}

#[async_trait]
impl EventStore for Watched {
    async fn read_range(
        &self,
        cart_id: CartId,
        versions: RangeInclusive<u64>,
    ) -> Result<Vec<RecordedEvent>, BackendError> {
        self.inner.read_range(cart_id, versions).await
    }

    async fn load_snapshot(&self, cart_id: CartId) -> Result<Option<Snapshot>, BackendError> {
        *self.snapshot_loads.lock().expect("lock") += 1;
        self.inner.load_snapshot(cart_id).await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), BackendError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn list_streams(
        &self,
        after: Option<CartId>,
        limit: u32,
    ) -> Result<Vec<StreamHead>, BackendError> {
        self.inner.list_streams(after, limit).await
    }

    async fn append(
        &self,
        cart_id: CartId,
        expected: u64,
        events: &[RecordedEvent],
    ) -> Result<(), AppendError> {
        self.rounds.lock().expect("lock").push(1);
        self.one(cart_id, expected, events).await
    }

    async fn append_many(&self, appends: &[StreamAppend<'_>]) -> Vec<Result<(), AppendError>> {
        self.rounds.lock().expect("lock").push(appends.len());
        let mut answers = Vec::with_capacity(appends.len());
        for a in appends {
            answers.push(self.one(a.cart_id, a.expected_version, a.events).await);
        }
        answers
    }
}

#[tokio::test]
async fn a_command_that_loses_an_append_race_is_decided_again_on_the_new_stream() {
    let w = world();
    let store = Arc::new(Watched::racing(&w.store));
    let deps = w.deps_with(store);
    let result = handler(
        LambdaEvent::new(batch_of(&[line()]), Context::default()),
        &deps,
    )
    .await;
    assert_eq!((result.report.applied, result.failures.len()), (1, 0));
    let stream = w.store.read_stream(line().cart_id).await.expect("stream");
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        stream[1].event.order_id(),
        Some(line().order_id),
        "our line landed after the rival's"
    );
}

struct DownStore;

#[async_trait]
impl EventStore for DownStore {
    async fn read_range(
        &self,
        _: CartId,
        _: RangeInclusive<u64>,
    ) -> Result<Vec<RecordedEvent>, BackendError> {
        Err(BackendError::new("test store", "unreachable"))
    }
    async fn load_snapshot(&self, _: CartId) -> Result<Option<Snapshot>, BackendError> {
        Err(BackendError::new("test store", "unreachable"))
    }
    async fn save_snapshot(&self, _: &Snapshot) -> Result<(), BackendError> {
        Err(BackendError::new("test store", "unreachable"))
    }
    async fn list_streams(
        &self,
        _: Option<CartId>,
        _: u32,
    ) -> Result<Vec<StreamHead>, BackendError> {
        Err(BackendError::new("test store", "unreachable"))
    }
    async fn append(&self, _: CartId, _: u64, _: &[RecordedEvent]) -> Result<(), AppendError> {
        Err(BackendError::new("test store", "unreachable").into())
    }
}

#[tokio::test]
async fn a_store_outage_fails_the_record_for_a_retry() {
    let w = world();
    let deps = w.deps_with(Arc::new(DownStore));
    let result = handler(
        LambdaEvent::new(fixture("place-order.json"), Context::default()),
        &deps,
    )
    .await;
    assert_eq!(result.failures.len(), 1);
    let failure = &result.failures[0];
    assert!(failure.retryable, "an outage is worth retrying");
    assert_eq!((failure.partition, failure.offset), (0, 41));
    assert!(failure.error.contains("unreachable"), "{}", failure.error);
    assert_eq!(
        w.bus.topic_len("sales.outcomes").await.expect("len"),
        0,
        "nothing published"
    );
}

#[tokio::test]
async fn carts_on_different_partitions_are_all_handled() {
    let w = world();
    let mut event = batch_of(&[line()]);
    let mut other_cart = other_line();
    other_cart.cart_id = CartId(uuid::Uuid::new_v4());
    let mut second = batch_of(&[other_cart.clone()]);
    let mut records = second.records.remove("sales.commands-0").expect("records");
    records[0].partition = 3;
    event.records.insert("sales.commands-3".into(), records);
    let report = w.run(event).await;
    assert_eq!(report.applied, 2);
    assert_eq!(
        w.store
            .read_stream(other_cart.cart_id)
            .await
            .expect("stream")
            .len(),
        1
    );
}

/// A batch of `commands`, in order, on partition 0.
fn batch_of_commands(commands: Vec<Command>) -> KafkaEvent {
    let records: Vec<BusRecord> = commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| {
            let key = command.cart_id().to_string().into_bytes();
            let record = CommandRecord {
                command_id: command.derive_id(None),
                accepted_at: Utc::now(),
                command,
            };
            BusRecord {
                topic: "sales.commands".into(),
                partition: 0,
                offset: i as i64,
                timestamp: Utc::now(),
                key: Some(key),
                value: Some(record.encode()),
                headers: vec![],
            }
        })
        .collect();
    salestrack_msk::batch(&records, "arn:test", "test")
}

#[tokio::test]
async fn a_checkout_asks_the_gateway_and_a_repeat_asks_again_without_a_second_checkout() {
    use salestrack_core::command::CheckoutCart;
    use salestrack_core::wire::{PaymentRequest, PaymentRequestKind};
    let w = world();
    let l = line();
    let checkout = Command::CheckoutCart(CheckoutCart {
        cart_id: l.cart_id,
        payment_method: None,
        requested_by: None,
    });
    let report = w
        .run(batch_of_commands(vec![
            Command::PlaceOrder(PlaceOrder { line: l.clone() }),
            checkout.clone(),
        ]))
        .await;
    assert_eq!(report.applied, 2);
    // Redelivered: a repeat, which asks the gateway again (the ledger
    // keeps that from charging twice).
    let report = w.run(batch_of_commands(vec![checkout])).await;
    assert_eq!(report.duplicates, 1);
    let stream = w.store.read_stream(l.cart_id).await.expect("stream");
    assert_eq!(
        stream
            .iter()
            .map(|e| e.event.kind().as_str())
            .collect::<Vec<_>>(),
        ["order_placed", "checkout_started"]
    );
    let requests: Vec<PaymentRequest> = w
        .topic(&w.topics.payments)
        .await
        .iter()
        .map(|r| PaymentRequest::decode(r.value.as_deref().expect("value")).expect("request"))
        .collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0], requests[1], "the same request both times");
    assert_eq!(requests[0].kind, PaymentRequestKind::Charge);
    assert_eq!(requests[0].checkout, 2);
    assert_eq!(
        requests[0].amount.to_string(),
        "427.98",
        "subtotal plus tax"
    );
    assert_eq!(requests[0].payment_method.as_deref(), Some("card"));
    let deadline = requests[0].expires_at.expect("a deadline") - stream[1].recorded_at;
    assert_eq!(deadline.num_seconds(), 30, "the configured payment timeout");
}
