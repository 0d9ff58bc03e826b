//! The projector on real Elasticsearch-API servers (OpenSearch 2.19, and the
//! noida-db and osmem-server emulators):
//! redelivered and reordered batches leave exactly the documents an in-order
//! delivery leaves.

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::Utc;
use lambda_runtime::{Context, LambdaEvent};
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId};
use salestrack_core::ports::{BusRecord, EventStore, ReadStore, Reader};
use salestrack_core::search::{ReportDimension, SalesReportQuery};
use salestrack_core::testing::{line, other_line};
use salestrack_core::wire;
use salestrack_elasticsearch::test_server::{SearchTarget, ServerKind};
use salestrack_embedded::EmbeddedEventStore;
use salestrack_platform::Topics;
use salestrack_projector::{handler, Deps};
use salestrack_test_engines::{Engine, EngineServer};
use std::sync::Arc;

fn batch(events: &[&RecordedEvent]) -> KafkaEvent {
    let records: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| BusRecord {
            topic: "sales.events".into(),
            partition: 0,
            offset: i as i64,
            timestamp: Utc::now(),
            key: Some(e.cart_id.to_string().into_bytes()),
            value: Some(wire::encode_event(e)),
            headers: vec![],
        })
        .collect();
    salestrack_msk::batch(&records, "arn:test", "test")
}

/// Everything a reader can see of `cart`.
async fn documents(store: &dyn ReadStore, cart: CartId) -> String {
    let report = store
        .sales_report(&SalesReportQuery {
            interval: None,
            group_by: Some(ReportDimension::Product),
            from: None,
            to: None,
            ..Default::default()
        })
        .await
        .expect("report");
    format!(
        "{:?}\n{:?}\n{report:?}",
        store.cart_detail(cart, Reader::Any).await.expect("detail"),
        store
            .cart_summary(cart, Reader::Any)
            .await
            .expect("summary"),
    )
}

async fn replayed_and_reordered_batches_leave_identical_documents(server: SearchTarget) {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = EmbeddedEventStore::open(&dir.path().join("events.sqlite")).expect("events");
    let cart = line().cart_id;
    let mut third = other_line();
    third.order_id = salestrack_core::ids::OrderId(uuid::Uuid::new_v4());
    third.product_name = "Milk jug".into();
    let stream = RecordedEvent::number(
        cart,
        0,
        CommandId(uuid::Uuid::new_v4()),
        Utc::now(),
        vec![
            Event::OrderPlaced(line()),
            Event::OrderPlaced(other_line()),
            Event::OrderCancelled {
                order_id: line().order_id,
                reason: None,
            },
            Event::OrderPlaced(third),
        ],
    );
    events.append(cart, 0, &stream).await.expect("append");
    let deps = |read: Arc<dyn ReadStore>| Deps {
        read_store: read,
        event_store: Arc::new(events.clone()),
        topics: Topics::default(),
        feed: None,
    };
    let run = |deps: Deps, order: Vec<usize>| {
        let stream = stream.clone();
        let server = &server;
        async move {
            let records: Vec<&RecordedEvent> = order.iter().map(|&i| &stream[i]).collect();
            let result =
                handler(LambdaEvent::new(batch(&records), Context::default()), &deps).await;
            assert_eq!(
                result.failures,
                vec![],
                "{}: no record may fail",
                server.name
            );
        }
    };

    let in_order: Arc<dyn ReadStore> = Arc::new(server.store().await);
    run(deps(in_order.clone()), vec![0, 1, 2, 3]).await;
    let expected = documents(in_order.as_ref(), cart).await;
    run(deps(in_order.clone()), vec![0, 1, 2, 3]).await;
    assert_eq!(
        documents(in_order.as_ref(), cart).await,
        expected,
        "{}: the same batch twice",
        server.name
    );

    let shuffled: Arc<dyn ReadStore> = Arc::new(server.store().await);
    run(deps(shuffled.clone()), vec![2, 0, 3, 1]).await;
    run(deps(shuffled.clone()), vec![0, 1, 2, 3]).await;
    run(deps(shuffled.clone()), vec![3, 2, 1, 0]).await;
    assert_eq!(
        documents(shuffled.as_ref(), cart).await,
        expected,
        "{}: out of order, then again in order, then reversed",
        server.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_reordered_batches_leave_identical_documents_on_opensearch() {
    let Some(server) = EngineServer::shared(Engine::OpenSearch) else {
        return;
    };
    let target = SearchTarget::at("OpenSearch 2.19", &server.address());
    replayed_and_reordered_batches_leave_identical_documents(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_reordered_batches_leave_identical_documents_on_noida() {
    let Some(target) = SearchTarget::emulator(ServerKind::Noida) else {
        return;
    };
    replayed_and_reordered_batches_leave_identical_documents(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_reordered_batches_leave_identical_documents_on_osmem() {
    let Some(target) = SearchTarget::emulator(ServerKind::Osmem) else {
        return;
    };
    replayed_and_reordered_batches_leave_identical_documents(target).await;
}
