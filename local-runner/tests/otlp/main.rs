//! Spans exported over OTLP/HTTP when `SALESTRACK_OTLP_ENDPOINT` is set: a
//! collector stand-in on a free loopback port receives the export, and the
//! order's W3C trace id is in it. A test binary of its own: it installs the
//! process-wide subscriber with the exporter.

#[path = "../common/mod.rs"]
mod common;

use axum::body::Bytes;
use axum::routing::post;
use common::{place_traced_order, spawn_embedded};
use reqwest::StatusCode;
use salestrack_platform::config::LogFormat;
use salestrack_platform::telemetry;
use std::sync::{Arc, Mutex};

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
    let app = spawn_embedded(dir.path()).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    place_traced_order(&app, trace_id).await;
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
