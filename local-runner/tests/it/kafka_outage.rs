//! Readiness through a bus outage: the broker is killed and restarted on
//! its port. A test binary of its own: while the broker is down its port is
//! free, and a broker another test started meanwhile could take it, and the
//! runner here would join that broker's consumer groups.

use crate::common;

use common::{spawn_with, Http};
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_kafka::test_broker::{BrokerKind, TestBroker};
use salestrack_platform::{Backends, Settings};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn settings(broker: &TestBroker, data_dir: &Path) -> Settings {
    common::kafka_settings(&broker.brokers, data_dir)
}

/// Polls `/health/ready` until `wanted(status code, body)` (bounded).
async fn ready_until(app: &Http, what: &str, wanted: impl Fn(StatusCode, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = app.get("/health/ready").await;
        if wanted(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "never {what}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The broker goes away and comes back: readiness follows, and the
/// pipeline works again afterwards.
async fn readiness_follows_the_bus_down_and_up(kind: BrokerKind) {
    let Some(mut broker) = TestBroker::start_durable(kind) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&broker, dir.path());
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends).await;
    let ok =
        |status: StatusCode, body: &Value| status == StatusCode::OK && body["status"] == "ready";
    ready_until(&app, "ready", ok).await;

    broker.kill();
    let down = ready_until(&app, "not ready without the broker", |status, _| {
        status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(down["status"], "not_ready", "{down}");
    assert_eq!(down["bus"]["status"], "unavailable", "{down}");
    assert!(
        down["bus"]["error"].is_string(),
        "the error is named: {down}"
    );
    assert_eq!(down["event_store"]["status"], "ok", "{down}");

    broker.restart();
    let up = ready_until(&app, "ready again", ok).await;
    assert!(up["bus"]["latency_ms"].as_f64().is_some(), "{up}");
    let (cart, order) = (CartId(Uuid::new_v4()), OrderId(Uuid::new_v4()));
    let (status, accepted) = app
        .post("/orders", &order_body_for(cart, order, "After the outage"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    // The consumers rejoin their groups after the outage: wait, bounded.
    let deadline = Instant::now() + Duration::from_secs(120);
    let detail = loop {
        let (status, detail) = app.get(&format!("/carts/{cart}")).await;
        if status == StatusCode::OK {
            break detail;
        }
        assert!(Instant::now() < deadline, "the order never became visible");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(detail["items"][0]["order_id"], order.to_string());
    app.stop().await;
}

// tansu on SQLite storage keeps its topics across the restart; noida-db's
// producer state does not survive one (see the closing notes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_not_ready_when_the_broker_stops_and_ready_when_it_returns() {
    readiness_follows_the_bus_down_and_up(BrokerKind::Tansu).await;
}
