//! The runner with its event store on Apache Cassandra 5, chosen by
//! configuration alone (`SALESTRACK_CASSANDRA_*`). Orders go from POST to
//! the read models; the events and the snapshots land in the keyspace.

use crate::common;

use common::spawn_with;
use reqwest::StatusCode;
use salestrack_cassandra::{CassandraConfig, CassandraEventStore};
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::EventStore;
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use salestrack_test_engines::{Engine, EngineServer};
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_decided_on_events_stored_in_cassandra() {
    let Some(cassandra) = EngineServer::shared(Engine::Cassandra) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let keyspace = format!("runner{}", Uuid::new_v4().simple());
    let settings = Settings {
        data_dir: dir.path().into(),
        poll_wait_ms: 20,
        snapshot_every: 2,
        consistency: salestrack_platform::ConsistencySettings {
            wait_ms: 20_000,
            ..Default::default()
        },
        cassandra: salestrack_platform::CassandraSettings {
            contact_points: cassandra.address(),
            keyspace: keyspace.clone(),
            ..Default::default()
        },
        ..Settings::default()
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    assert!(
        backends.description().contains("event store: Cassandra at"),
        "{}",
        backends.description()
    );
    let app = spawn_with(settings, backends).await;

    let cart = CartId(Uuid::new_v4());
    let orders: Vec<OrderId> = (0..5).map(|_| OrderId(Uuid::new_v4())).collect();
    for (i, order) in orders.iter().enumerate() {
        let (status, body) = app
            .post(
                "/orders",
                &order_body_for(cart, *order, &format!("Product {i}")),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, accepted) = app
        .post(
            &format!("/orders/{}/cancel", orders[0]),
            &json!({"cart_id": cart, "reason": "changed my mind"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let token = accepted["consistency_token"].as_str().expect("token");
    let (status, detail) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(
        detail["items"].as_array().map(Vec::len),
        Some(5),
        "{detail}"
    );
    assert_eq!(detail["version"], 6, "{detail}");

    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    // What the keyspace holds, read with a store of its own.
    let mut config = CassandraConfig::new(&cassandra.address(), &keyspace);
    config.create_schema = false;
    let store = CassandraEventStore::connect(config).await.expect("connect");
    let stream = store.read_stream(cart).await.expect("stream");
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    let snapshot = store
        .load_snapshot(cart)
        .await
        .expect("load")
        .expect("a snapshot every 2 events");
    assert_eq!(snapshot.version, 6);
    app.stop().await;
}
