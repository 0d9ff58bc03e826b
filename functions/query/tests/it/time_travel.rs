//! Time travel and history through the query router, on the embedded event
//! store and on Apache Cassandra: a cart with lines, cancellations and a
//! checkout, asked for at every version and at every event's instant, against
//! folds this test computes itself; and its history, paged.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use http_body_util::BodyExt;
use salestrack_core::event::{CancelReason, Checkout, Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::ports::EventStore;
use salestrack_core::read_model::CartDetail;
use salestrack_core::testing::line;
use salestrack_query::{router, QueryState};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

fn at(second: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0)
        .single()
        .unwrap_or_default()
        + Span::milliseconds(second * 1_500 + 7)
}

/// Ten events: four lines, two cancelled, a checkout, a timeout, and one
/// event per instant 1.5 s apart (milliseconds on purpose: Cassandra keeps
/// the envelope's full precision).
async fn cart_with_history(store: &dyn EventStore) -> (CartId, Vec<RecordedEvent>) {
    let cart = CartId(Uuid::new_v4());
    let lines: Vec<_> = (0..4)
        .map(|n| {
            let mut l = line();
            l.cart_id = cart;
            l.order_id = OrderId(Uuid::new_v4());
            l.product_name = format!("Product {n}");
            l
        })
        .collect();
    let events = vec![
        Event::OrderPlaced(lines[0].clone()),
        Event::OrderPlaced(lines[1].clone()),
        Event::OrderCancelled {
            order_id: lines[0].order_id,
            reason: Some("no".into()),
        },
        Event::OrderPlaced(lines[2].clone()),
        Event::OrderPlaced(lines[3].clone()),
        Event::OrderCancelled {
            order_id: lines[3].order_id,
            reason: None,
        },
        Event::OrderPlaced({
            let mut again = lines[0].clone();
            again.order_id = OrderId(Uuid::new_v4());
            again
        }),
        Event::CheckoutStarted(Checkout {
            payment_method: "card".into(),
            amount: "1283.94".parse().expect("amount"),
            currency: line().currency,
            expires_at: at(40),
        }),
        Event::CartCancelled {
            reason: CancelReason::PaymentTimeout,
            payment_id: None,
        },
    ];
    let mut recorded = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let one = RecordedEvent::number(
            cart,
            i as u64,
            CommandId(Uuid::new_v4()),
            at(i as i64),
            vec![event],
        );
        store.append(cart, i as u64, &one).await.expect("append");
        recorded.extend(one);
    }
    (cart, recorded)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn app(events: Arc<dyn EventStore>, dir: &std::path::Path) -> axum::Router {
    let read =
        salestrack_embedded::EmbeddedReadStore::open(&dir.join("read.sqlite")).expect("read");
    router(QueryState {
        read_store: Arc::new(read),
        event_store: events,
        consistency: salestrack_query::ConsistencyWait::new(Duration::from_millis(100), 64),
        auth: None,
        live: salestrack_query::live::Live::new(
            salestrack_query::live::LiveConfig::from_settings(&Default::default()),
            Default::default(),
        ),
        keys: Arc::new(
            salestrack_embedded::EmbeddedKeyStore::open(&dir.join("keys.sqlite")).expect("keys"),
        ),
    })
}

/// The detail the test folds itself, with `as_of`, as JSON.
fn expected(events: &[RecordedEvent]) -> Value {
    let mut detail = serde_json::to_value(CartDetail::fold(events).expect("cart")).expect("json");
    detail["as_of"] =
        serde_json::to_value(events.last().expect("an event").recorded_at).expect("json");
    detail
}

async fn time_travel_at_every_version_and_instant(store: Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cart, events) = cart_with_history(store.as_ref()).await;
    let app = app(Arc::clone(&store), dir.path());
    for n in 1..=events.len() {
        let (status, body) = get(&app, &format!("/carts/{cart}?as_of_version={n}")).await;
        assert_eq!(status, StatusCode::OK, "version {n}: {body}");
        assert_eq!(body, expected(&events[..n]), "as of version {n}");
        // At the event's own instant, and just before the next one.
        for instant in [
            events[n - 1].recorded_at,
            events[n - 1].recorded_at + Span::milliseconds(1_499),
        ] {
            let t = instant.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let (status, body) = get(
                &app,
                &format!("/carts/{cart}?as_of={}", t.replace('+', "%2B")),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "as of {t}: {body}");
            assert_eq!(body, expected(&events[..n]), "as of {t}");
        }
    }
    let (status, cancelled) = get(&app, &format!("/carts/{cart}?as_of_version=9")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["status_reason"].as_str()
        ),
        (Some("cancelled"), Some("payment_timeout"))
    );
    assert_eq!(cancelled["items"].as_array().map(Vec::len), Some(5));

    // Clear answers for what is not there.
    let (status, body) = get(&app, &format!("/carts/{cart}?as_of_version=10")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("past its head")),
        "{body}"
    );
    let before = (events[0].recorded_at - Span::milliseconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (status, body) = get(&app, &format!("/carts/{cart}?as_of={before}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not exist yet")),
        "{body}"
    );
    let nobody = CartId(Uuid::new_v4());
    let (status, _) = get(&app, &format!("/carts/{nobody}?as_of_version=1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        "as_of_version=0",
        "as_of_version=-1",
        "as_of_version=x",
        "as_of=yesterday",
        "as_of_version=1&as_of=2026-12-02T09:00:00Z",
    ] {
        let (status, body) = get(&app, &format!("/carts/{cart}?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_parameter", "{bad}");
    }

    // The history, paged: every event once, in order.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = get(
            &app,
            &format!("/carts/{cart}/history?after={after}&limit=4"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let entries = page["events"].as_array().expect("events").clone();
        assert!(entries.len() <= 4);
        seen.extend(entries);
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), events.len());
    for (entry, e) in seen.iter().zip(&events) {
        assert_eq!(entry["version"], e.version);
        assert_eq!(entry["type"], e.event.kind().as_str());
        assert_eq!(entry["command_id"], e.command_id.to_string());
        assert_eq!(entry["schema_version"], e.event.kind().schema_version());
        let recorded: DateTime<Utc> =
            serde_json::from_value(entry["recorded_at"].clone()).expect("time");
        assert_eq!(recorded, e.recorded_at);
    }
    let (status, _) = get(&app, &format!("/carts/{nobody}/history")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&app, &format!("/carts/{cart}/history?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn time_travel_and_history_on_the_embedded_event_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = salestrack_embedded::EmbeddedEventStore::open(&dir.path().join("events.sqlite"))
        .expect("store");
    time_travel_at_every_version_and_instant(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_and_history_on_apache_cassandra() {
    use salestrack_test_engines::{Engine, EngineServer};
    let Some(cassandra) = EngineServer::shared(Engine::Cassandra) else {
        return;
    };
    let keyspace = format!("travel{}", Uuid::new_v4().simple());
    let store = salestrack_cassandra::CassandraEventStore::connect(
        salestrack_cassandra::CassandraConfig::new(&cassandra.address(), &keyspace),
    )
    .await
    .expect("connect to Cassandra");
    time_travel_at_every_version_and_instant(Arc::new(store)).await;
}
