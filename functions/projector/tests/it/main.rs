//! The projector handler on MSK batches over real embedded backends.

mod batches;
mod elasticsearch;

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::Utc;
use lambda_runtime::{Context, LambdaEvent};
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId};
use salestrack_core::ports::{BusRecord, EventStore, ReadStore, Reader};
use salestrack_core::read_model::{CartStatus, LineStatus};
use salestrack_core::search::{ReportDimension, SalesReportQuery};
use salestrack_core::testing::{line, other_line};
use salestrack_core::wire;
use salestrack_embedded::{EmbeddedEventStore, EmbeddedReadStore};
use salestrack_msk::BatchResult;
use salestrack_platform::Topics;
use salestrack_projector::{handler, BatchReport, Deps};
use std::sync::Arc;

struct World {
    _dir: tempfile::TempDir,
    events: EmbeddedEventStore,
    read: EmbeddedReadStore,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    World {
        events: EmbeddedEventStore::open(&dir.path().join("events.sqlite")).expect("events"),
        read: EmbeddedReadStore::open(&dir.path().join("read.sqlite")).expect("read"),
        _dir: dir,
    }
}

impl World {
    async fn try_run(&self, event: KafkaEvent) -> BatchResult<BatchReport> {
        let deps = Deps {
            read_store: Arc::new(self.read.clone()),
            event_store: Arc::new(self.events.clone()),
            topics: Topics::default(),
            feed: None,
        };
        handler(LambdaEvent::new(event, Context::default()), &deps).await
    }

    /// Runs a batch that must be handled in full.
    async fn run(&self, event: KafkaEvent) -> BatchReport {
        let result = self.try_run(event).await;
        assert_eq!(result.failures, vec![], "no record may fail");
        result.report
    }
}

fn stream(cart: CartId, events: Vec<Event>) -> Vec<RecordedEvent> {
    RecordedEvent::number(cart, 0, CommandId(uuid::Uuid::new_v4()), Utc::now(), events)
}

fn bus_record(topic: &str, offset: i64, value: Vec<u8>) -> BusRecord {
    BusRecord {
        topic: topic.into(),
        partition: 0,
        offset,
        timestamp: Utc::now(),
        key: Some(b"k".to_vec()),
        value: Some(value),
        headers: vec![],
    }
}

/// An MSK batch carrying `events` on the events topic, in order.
fn batch(events: &[&RecordedEvent]) -> KafkaEvent {
    let records: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| bus_record("sales.events", i as i64, wire::encode_event(e)))
        .collect();
    salestrack_msk::batch(&records, "arn:test", "test")
}

fn three_events() -> Vec<RecordedEvent> {
    let l = line();
    stream(
        l.cart_id,
        vec![
            Event::OrderPlaced(l.clone()),
            Event::OrderPlaced(other_line()),
            Event::OrderCancelled {
                order_id: l.order_id,
                reason: Some("changed my mind".into()),
            },
        ],
    )
}

#[tokio::test]
async fn events_fold_into_cart_detail_summary_and_sales_lines() {
    let w = world();
    let events = three_events();
    let report = w.run(batch(&events.iter().collect::<Vec<_>>())).await;
    assert_eq!(
        report,
        BatchReport {
            projected: 3,
            ..BatchReport::default()
        }
    );

    let detail = w
        .read
        .cart_detail(line().cart_id, Reader::Any)
        .await
        .expect("get")
        .expect("detail");
    assert_eq!(detail.version, 3);
    assert_eq!(detail.items.len(), 2);
    assert_eq!(
        detail.subtotal.to_string(),
        "50.00",
        "the cancelled line left the totals"
    );
    assert_eq!(detail.status, CartStatus::Open);

    let summary = w
        .read
        .cart_summary(line().cart_id, Reader::Any)
        .await
        .expect("get")
        .expect("summary");
    assert_eq!(
        (summary.products.as_str(), summary.version),
        ("Coffee grinder", 3)
    );

    let report = w
        .read
        .sales_report(&SalesReportQuery {
            interval: None,
            group_by: Some(ReportDimension::Product),
            from: None,
            to: None,
            ..Default::default()
        })
        .await
        .expect("report");
    assert_eq!(report.len(), 1, "only the active line counts: {report:?}");
    assert_eq!(
        (report[0].key.as_deref(), report[0].revenue.to_string()),
        (Some("Coffee grinder"), "50.00".to_string())
    );
}

#[tokio::test]
async fn a_replayed_batch_changes_nothing_and_duplicates_nothing() {
    let w = world();
    let events = three_events();
    let all: Vec<_> = events.iter().collect();
    w.run(batch(&all)).await;
    let before = w
        .read
        .cart_detail(line().cart_id, Reader::Any)
        .await
        .expect("get");
    let replay = w.run(batch(&all)).await;
    assert_eq!(
        replay,
        BatchReport {
            skipped: 3,
            ..BatchReport::default()
        }
    );
    assert_eq!(
        w.read
            .cart_detail(line().cart_id, Reader::Any)
            .await
            .expect("get"),
        before
    );
}

#[tokio::test]
async fn an_older_event_never_overwrites_a_newer_version() {
    let w = world();
    let events = three_events();
    w.run(batch(&events.iter().collect::<Vec<_>>())).await;
    let report = w.run(batch(&[&events[0]])).await;
    assert_eq!(report.skipped, 1);
    let detail = w
        .read
        .cart_detail(line().cart_id, Reader::Any)
        .await
        .expect("get")
        .expect("detail");
    assert_eq!(detail.version, 3);
    let cancelled = detail
        .items
        .iter()
        .find(|i| i.order_id == line().order_id)
        .expect("item");
    assert_eq!(cancelled.status, LineStatus::Cancelled);
}

#[tokio::test]
async fn a_gap_refolds_the_cart_from_the_event_store() {
    let w = world();
    let events = three_events();
    w.events
        .append(line().cart_id, 0, &events)
        .await
        .expect("append");
    let report = w.run(batch(&[&events[2]])).await;
    assert_eq!((report.projected, report.refolded), (1, 1));
    let detail = w
        .read
        .cart_detail(line().cart_id, Reader::Any)
        .await
        .expect("get")
        .expect("detail");
    assert_eq!(
        (detail.version, detail.items.len()),
        (3, 2),
        "the missing events were not skipped"
    );
    let report = w
        .read
        .sales_report(&SalesReportQuery {
            interval: None,
            group_by: Some(ReportDimension::Product),
            from: None,
            to: None,
            ..Default::default()
        })
        .await
        .expect("report");
    assert_eq!(
        report.len(),
        1,
        "sales lines of the refolded events are written too"
    );
}

#[tokio::test]
async fn a_gap_the_event_store_cannot_fill_fails_the_record_for_a_retry() {
    let w = world();
    let events = three_events();
    let result = w.try_run(batch(&[&events[2]])).await;
    assert_eq!(result.failures.len(), 1, "{result:?}");
    assert!(result.failures[0].retryable);
    assert!(
        result.failures[0].error.contains("has no version 3 yet"),
        "{result:?}"
    );
    assert!(w
        .read
        .cart_detail(line().cart_id, Reader::Any)
        .await
        .expect("get")
        .is_none());
}

#[tokio::test]
async fn the_fixture_batch_projects_the_cart_and_the_command_status() {
    let w = world();
    let path = format!(
        "{}/fixtures/placed-and-outcome.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let event: KafkaEvent =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("event");
    let report = w.run(event).await;
    assert_eq!((report.projected, report.outcomes), (1, 1));
    let cart: CartId = "6f1c1f2e-3c7d-4a8e-9b3a-2d5e6f7a8b9c".parse().expect("id");
    let detail = w
        .read
        .cart_detail(cart, Reader::Any)
        .await
        .expect("get")
        .expect("detail");
    assert_eq!(detail.subtotal.to_string(), "389.98");
    let status = w
        .read
        .command_status(
            "3d5a1c0e-1111-4a5b-8c9d-000000000001".parse().expect("id"),
            Reader::Any,
        )
        .await
        .expect("get")
        .expect("status");
    assert_eq!(status.version, 1);
}

#[tokio::test]
async fn poison_is_a_permanent_failure_that_stops_only_its_partition() {
    let w = world();
    let orphan_cancel = stream(
        CartId(uuid::Uuid::new_v4()),
        vec![Event::OrderCancelled {
            order_id: line().order_id,
            reason: None,
        }],
    );
    let valid = stream(line().cart_id, vec![Event::OrderPlaced(line())]);
    // Undecodable records cut their partition: nothing after them is
    // projected in this delivery. A record that decodes but cannot be
    // folded stops only its own cart: another cart's later record is
    // projected now and skipped when the partition is redelivered.
    let poison = [
        (b"not json".to_vec(), "not valid JSON", 0),
        (
            br#"{"schema_version":1,"type":"cart_exploded"}"#.to_vec(),
            "missing field `event_id`",
            0,
        ),
        (
            wire::encode_event(&orphan_cancel[0]),
            "changes a cart that has no line",
            1,
        ),
    ];
    for (value, reason, projected) in poison {
        let records = [
            bus_record("sales.events", 0, value),
            bus_record("sales.events", 1, wire::encode_event(&valid[0])),
        ];
        let result = w
            .try_run(salestrack_msk::batch(&records, "arn:test", "test"))
            .await;
        assert_eq!(result.failures.len(), 1, "{result:?}");
        let failure = &result.failures[0];
        assert_eq!((failure.offset, failure.retryable), (0, false));
        assert!(failure.error.contains(reason), "{}", failure.error);
        assert_eq!(
            result.report,
            BatchReport {
                projected,
                ..BatchReport::default()
            },
            "{reason}"
        );
    }

    // A stray topic stops its own partition, not the others.
    let w = world();
    let mut event = salestrack_msk::batch(
        &[bus_record("sales.events", 1, wire::encode_event(&valid[0]))],
        "arn:test",
        "test",
    );
    let stray = salestrack_msk::batch(
        &[bus_record("some.other.topic", 0, b"{}".to_vec())],
        "arn:test",
        "test",
    );
    event.records.extend(stray.records);
    let result = w.try_run(event).await;
    assert_eq!(result.report.projected, 1);
    assert_eq!(
        serde_json::to_value(result.response()).expect("json"),
        serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": "some.other.topic-0", "offset": 0}}
        ]})
    );
    assert!(w
        .read
        .cart_detail(line().cart_id, Reader::Any)
        .await
        .expect("get")
        .is_some());
}

/// Projects `envelopes` (one cart's stream, as the events topic carries
/// them) into a fresh world whose event store holds `stored`.
async fn project_bytes(stored: Vec<Vec<u8>>, envelopes: &[Vec<u8>]) -> World {
    let w = world();
    let cart = wire::decode_event(&stored[0]).expect("decodes").cart_id;
    w.events.import(cart, 0, stored).await.expect("import");
    let records: Vec<_> = envelopes
        .iter()
        .enumerate()
        .map(|(i, bytes)| bus_record("sales.events", i as i64, bytes.clone()))
        .collect();
    w.run(salestrack_msk::batch(&records, "arn:test", "test"))
        .await;
    w
}

/// Every read model of the cart, as JSON, for comparing stores.
async fn read_models(w: &World, cart: CartId) -> serde_json::Value {
    let report = |status| SalesReportQuery {
        group_by: Some(ReportDimension::Product),
        status,
        ..Default::default()
    };
    serde_json::json!({
        "detail": w.read.cart_detail(cart, Reader::Any).await.expect("detail"),
        "summary": w.read.cart_summary(cart, Reader::Any).await.expect("summary"),
        "all": w.read.sales_report(&report(salestrack_core::search::ReportStatus::All)).await.expect("report"),
        "paid": w.read.sales_report(&report(salestrack_core::search::ReportStatus::Paid)).await.expect("report"),
    })
}

#[tokio::test]
async fn a_store_of_old_and_new_event_versions_projects_like_one_of_new_ones() {
    for stream in ["paid", "refunded"] {
        let (mixed, new) = salestrack_port_tests::mixed_corpus(stream, 3);
        let cart = wire::decode_event(&new[0]).expect("decodes").cart_id;
        let from_new = read_models(&project_bytes(new.clone(), &new).await, cart).await;
        assert!(!from_new["detail"].is_null());
        let from_mixed = read_models(&project_bytes(mixed.clone(), &mixed).await, cart).await;
        assert_eq!(
            from_mixed, from_new,
            "{stream}: mixed versions on the events topic"
        );
        // Only the last event arrives: the projector refolds the cart from
        // the mixed store.
        let last = std::slice::from_ref(&new[new.len() - 1]);
        let refolded = read_models(&project_bytes(mixed, last).await, cart).await;
        assert_eq!(refolded, from_new, "{stream}: refolded from a mixed store");
    }
}

/// Records what the projector tells its feed.
#[derive(Default)]
struct RecordingFeed(std::sync::Mutex<Vec<wire::CartProjected>>);

#[async_trait::async_trait]
impl salestrack_core::ports::ProjectionFeed for RecordingFeed {
    async fn publish(
        &self,
        notices: &[wire::CartProjected],
    ) -> Result<(), salestrack_core::ports::BackendError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(notices);
        Ok(())
    }
}

#[tokio::test]
async fn the_feed_hears_each_cart_once_per_batch_after_its_documents_are_written() {
    let w = world();
    let feed = Arc::new(RecordingFeed::default());
    let deps = Deps {
        read_store: Arc::new(w.read.clone()),
        event_store: Arc::new(w.events.clone()),
        topics: Topics::default(),
        feed: Some(feed.clone()),
    };
    let events = three_events();
    let other = stream(
        CartId(uuid::Uuid::new_v4()),
        vec![Event::OrderPlaced(other_line())],
    );
    let mut all: Vec<&RecordedEvent> = events.iter().collect();
    all.push(&other[0]);
    let result = handler(LambdaEvent::new(batch(&all), Context::default()), &deps).await;
    assert_eq!(result.failures, vec![]);
    let mut heard = feed.0.lock().expect("feed").clone();
    heard.sort_by_key(|n| n.version);
    assert_eq!(
        heard,
        vec![
            wire::CartProjected {
                cart_id: other[0].cart_id,
                version: 1
            },
            wire::CartProjected {
                cart_id: line().cart_id,
                version: 3
            },
        ],
        "one notice per cart, at the version its documents reached"
    );
    // By then the read model holds what the notice says.
    let detail = w
        .read
        .cart_detail(line().cart_id, Reader::Any)
        .await
        .expect("get");
    assert_eq!(detail.map(|d| d.version), Some(3));

    // A redelivery changes nothing, and tells again (the first notice may
    // have been lost).
    feed.0.lock().expect("feed").clear();
    let again = handler(LambdaEvent::new(batch(&all), Context::default()), &deps).await;
    assert_eq!(again.report.skipped, 4);
    assert_eq!(feed.0.lock().expect("feed").len(), 2);
}
