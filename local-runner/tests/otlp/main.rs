//! Spans exported over OTLP/HTTP when `SALESTRACK_OTLP_ENDPOINT` is set: a
//! collector stand-in on a free loopback port receives the export, and the
//! order's W3C trace id is in it. A test binary of its own: it installs the
//! process-wide subscriber with the exporter.

#[path = "../common/mod.rs"]
mod common;

use axum::body::Bytes;
use axum::routing::post;
use common::spawn_with;
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_platform::config::LogFormat;
use salestrack_platform::{telemetry, Backends, Settings};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Bodies the collector stand-in received on `/v1/traces`.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

async fn collector() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                if let Ok(mut bodies) = sink.lock() {
                    bodies.push(body.to_vec());
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_spans_are_exported_over_otlp_under_the_callers_trace_id() {
    let (endpoint, received) = collector().await;
    telemetry::init_with(LogFormat::Text, Some(&endpoint), "salestrack-test");
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        data_dir: dir.path().into(),
        poll_wait_ms: 20,
        consistency_wait_ms: 10_000,
        ..Settings::default()
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends).await;

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let (cart, order) = (CartId(Uuid::new_v4()), OrderId(Uuid::new_v4()));
    let response = app
        .client
        .post(app.url("/orders"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&order_body_for(cart, order, "Exported"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    let token = accepted["consistency_token"].as_str().expect("token");
    let (status, _) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
    tokio::task::spawn_blocking(telemetry::flush)
        .await
        .expect("flush");

    let bodies = received.lock().expect("received").clone();
    assert!(!bodies.is_empty(), "the collector got no export");
    let wanted: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let exported = bodies.concat();
    let mentions = |needle: &[u8]| {
        exported
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    };
    // The protobuf carries trace ids as 16 raw bytes, span names as text.
    assert!(
        mentions(&wanted) >= 3,
        "the accept, command and project spans all carry the caller's trace id"
    );
    for name in ["accept", "command", "project"] {
        assert!(mentions(name.as_bytes()) >= 1, "span {name:?} exported");
    }
}
