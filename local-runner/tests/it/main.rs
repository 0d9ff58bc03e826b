//! The local runner as users run it: a real server on a free loopback port
//! over embedded backends in a fresh data directory, driven over HTTP.

//!
//! One test binary for every test that installs no process-wide state (the
//! runner's others: `hostile` reads exact process-wide metrics, `memory`
//! replaces the allocator, `tracing` and `otlp` install the subscriber).
//! Each module was a binary of its own; together they link the engines'
//! clients once.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/faults.rs"]
mod faults;
#[path = "../common/sse.rs"]
mod sse;

mod auth;
mod browser;
mod cassandra;
mod elasticsearch;
mod engines;
mod event_source;
mod kafka;
mod kafka_outage;
mod lanes;
mod live;
mod outage;
mod personal;
mod redrive;
mod saga;
mod slow_clients;

use common::{spawn_with, TestApp};
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::OutboundRecord;
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use serde_json::json;
use std::path::PathBuf;
use uuid::Uuid;

fn settings(data_dir: PathBuf) -> Settings {
    Settings {
        data_dir,
        poll_wait_ms: 50,
        consistency: salestrack_platform::ConsistencySettings {
            wait_ms: 10_000,
            ..Default::default()
        },
        ..Settings::default()
    }
}

async fn spawn_app(data_dir: PathBuf) -> TestApp {
    let settings = settings(data_dir);
    let backends = Backends::connect(&settings).await.expect("backends");
    spawn_with(settings, backends).await
}

fn new_ids() -> (CartId, OrderId) {
    (CartId(Uuid::new_v4()), OrderId(Uuid::new_v4()))
}

#[tokio::test]
async fn an_order_goes_from_post_to_every_read_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let (cart, order) = new_ids();
    let (status, accepted) = app
        .post("/orders", &order_body_for(cart, order, "Espresso machine"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let token = accepted["consistency_token"].as_str().expect("token");

    let (status, detail) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["items"][0]["order_id"], order.to_string());
    assert_eq!(detail["subtotal"], "389.98");

    let (_, summary) = app.get(&format!("/carts/{cart}/summary")).await;
    assert_eq!(summary["products"], "Espresso machine");

    let (_, found) = app.get("/carts?user_id=user-42&q=espresso").await;
    assert!(found["carts"]
        .as_array()
        .expect("carts")
        .iter()
        .any(|c| c["cart_id"] == cart.to_string()));

    let (_, command) = app.get(accepted["status_url"].as_str().expect("url")).await;
    assert_eq!(command["status"], "applied");

    let (_, report) = app.get("/reports/sales?group_by=product").await;
    assert_eq!(report["buckets"][0]["revenue"], "389.98");
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("salestrack_commands_accepted_total"),
        "{metrics}"
    );
    for name in [
        "salestrack_consumer_batch_seconds",
        "salestrack_consumer_batch_records",
        "salestrack_projection_lag_seconds",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_poison_record_on_the_commands_topic_is_dead_lettered_and_the_cart_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let (cart, order) = new_ids();
    // Same key as the cart, so the same partition, right before a valid command.
    app.backends
        .producer()
        .expect("a bus")
        .send(OutboundRecord {
            topic: "sales.commands".into(),
            key: cart.to_string().into_bytes(),
            value: b"\x00garbage{".to_vec(),
            headers: vec![],
        })
        .await
        .expect("send garbage");
    let (status, accepted) = app
        .post("/orders", &order_body_for(cart, order, "Espresso machine"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let token = accepted["consistency_token"].as_str().expect("token");
    let (status, detail) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["items"][0]["order_id"], order.to_string());

    let mut dlq = app
        .backends
        .consumer(
            &format!("reader-{}", Uuid::new_v4()),
            &["sales.dead-letter"],
        )
        .expect("consumer");
    let dead = dlq
        .poll(10, std::time::Duration::from_secs(5))
        .await
        .expect("poll");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let header = |name: &str| {
        dead[0]
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    assert!(
        header("salestrack-dlq-error").contains("not valid JSON"),
        "{}",
        header("salestrack-dlq-error")
    );
    assert_eq!(header("salestrack-dlq-stage"), "domain");
    assert_eq!(dead[0].value.as_deref(), Some(&b"\x00garbage{"[..]));
    app.stop().await;
}

#[tokio::test]
async fn a_retried_post_is_one_sale_not_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let (cart, order) = new_ids();
    let body = order_body_for(cart, order, "Kettle");
    let (_, first) = app.post("/orders", &body).await;
    let (_, second) = app.post("/orders", &body).await;
    let token = second["consistency_token"].as_str().expect("token");
    let (_, detail) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(first["command_id"], second["command_id"]);
    assert_eq!(detail["items"].as_array().expect("items").len(), 1);
    assert_eq!(detail["version"], 1);
    let (_, report) = app.get("/reports/sales?group_by=product").await;
    assert_eq!(
        report["buckets"][0]["units"], 2,
        "two units of one line, counted once"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_command_tells_the_client_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let (cart, order) = new_ids();
    app.post("/orders", &order_body_for(cart, order, "Kettle"))
        .await;
    let mut dollars = order_body_for(cart, OrderId(Uuid::new_v4()), "Mug");
    dollars["currency"] = json!("USD");
    let (status, accepted) = app.post("/orders", &dollars).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "rules are the domain's: the command side only validates fields"
    );
    let token = accepted["consistency_token"].as_str().expect("token");
    let (_, command) = app
        .get(&format!(
            "{}?consistency_token={token}",
            accepted["status_url"].as_str().expect("url")
        ))
        .await;
    assert_eq!(command["status"], "rejected");
    assert_eq!(command["reason"]["code"], "currency_mismatch");
    let (_, detail) = app.get(&format!("/carts/{cart}")).await;
    assert_eq!(
        detail["items"].as_array().expect("items").len(),
        1,
        "nothing of the rejected line was written"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_line_leaves_the_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let (cart, order) = new_ids();
    app.post("/orders", &order_body_for(cart, order, "Kettle"))
        .await;
    let (status, accepted) = app
        .post(
            &format!("/orders/{order}/cancel"),
            &json!({"cart_id": cart, "reason": "changed my mind"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let token = accepted["consistency_token"].as_str().expect("token");
    let (_, detail) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    // The cart stays open (it may take new lines); only the checkout
    // saga cancels a cart.
    assert_eq!(detail["status"], "open");
    assert_eq!(detail["subtotal"], "0");
    assert_eq!(detail["items"][0]["status"], "cancelled");
    app.stop().await;
}

#[tokio::test]
async fn health_and_the_openapi_document_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let (status, _) = app.get("/health/live").await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["domain_consumer"]["running"], true);
    let (status, body) = app.get("/no/such/route").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/orders",
        "/orders/{order_id}/cancel",
        "/carts",
        "/carts/{cart_id}",
        "/carts/{cart_id}/summary",
        "/commands/{command_id}",
        "/reports/sales",
        "/health/ready",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("salestrack_http_requests_total"),
        "{metrics}"
    );
    app.stop().await;
    the_served_document_is_the_committed_one(&doc);
}

/// `docs/openapi.json` is the published contract: a change to what the
/// server serves is a change to that file, reviewed with the code.
/// `WRITE_OPENAPI=1` rewrites it from the served document.
fn the_served_document_is_the_committed_one(served: &serde_json::Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("WRITE_OPENAPI").is_some() {
        let pretty = serde_json::to_string_pretty(served).expect("json");
        std::fs::write(&path, pretty + "\n").expect("write docs/openapi.json");
    }
    let committed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("docs/openapi.json")).expect("json");
    assert!(
        *served == committed,
        "the served OpenAPI document differs from docs/openapi.json; if the change is \
         meant, rerun with WRITE_OPENAPI=1 and commit the file"
    );
}

#[tokio::test]
async fn data_survives_a_restart_and_nothing_is_processed_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cart, order) = new_ids();
    let app = spawn_app(dir.path().into()).await;
    let (_, accepted) = app
        .post("/orders", &order_body_for(cart, order, "Teapot"))
        .await;
    let token = accepted["consistency_token"]
        .as_str()
        .expect("token")
        .to_owned();
    app.get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    app.stop().await;

    let app = spawn_app(dir.path().into()).await;
    let (status, detail) = app.get(&format!("/carts/{cart}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["version"], 1);
    let (_, ready) = app.get("/health/ready").await;
    assert_eq!(
        ready["domain_consumer"]["records"], 0,
        "committed commands are not redelivered after a restart"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_binary_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr").port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_salestrack-local-runner"))
        .env("SALESTRACK_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SALESTRACK_DATA_DIR", dir.path())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health/live");
    let mut up = false;
    for _ in 0..100 {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "the runner came up");
    let pid = child.id().expect("pid").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn a_bad_setting_stops_the_binary_with_a_clear_message() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_salestrack-local-runner"))
        .env("SALESTRACK_HTTP_ADDR", "nowhere")
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.to_lowercase().contains("http_addr"), "{stderr}");
}

/// The Prometheus text of `/metrics` as (name{labels}, value) samples.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every sample whose series starts with `prefix` and has all `labels`.
fn total(samples: &[(String, f64)], prefix: &str, labels: &[&str]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|(n, _)| {
            (n == prefix || n.starts_with(&format!("{prefix}{{")))
                && labels.iter().all(|l| n.contains(l))
        })
        .map(|(_, v)| *v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

#[tokio::test]
async fn after_a_small_load_every_operational_metric_is_exposed_with_sane_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let cart = CartId(Uuid::new_v4());
    app.backends
        .producer()
        .expect("a bus")
        .send(OutboundRecord {
            topic: "sales.commands".into(),
            key: cart.to_string().into_bytes(),
            value: b"poison".to_vec(),
            headers: vec![],
        })
        .await
        .expect("poison");
    let mut last_token = String::new();
    for i in 0..20 {
        let (status, accepted) = app
            .post(
                "/orders",
                &order_body_for(cart, OrderId(Uuid::new_v4()), &format!("Item {i}")),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        last_token = accepted["consistency_token"]
            .as_str()
            .expect("token")
            .into();
    }
    let (status, _) = app.post("/orders", &json!({ "quantity": 0 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, detail) = app
        .get(&format!("/carts/{cart}?consistency_token={last_token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");

    // Lag gauges refresh once a second: scrape until both loops published.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = app.text("/metrics").await;
        let published = ["domain", "projector"].iter().all(|c| {
            text.contains(&format!(
                "salestrack_consumer_lag_records{{consumer=\"{c}\""
            ))
        });
        if published || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let s = samples(&text);
    let get = |prefix: &str, labels: &[&str]| {
        total(&s, prefix, labels).unwrap_or_else(|| panic!("{prefix} {labels:?} missing:\n{text}"))
    };
    // Per route: count, latency, status.
    assert!(
        get(
            "salestrack_http_requests_total",
            &["route=\"/orders\"", "status=\"202\""]
        ) >= 20.0
    );
    assert!(
        get(
            "salestrack_http_requests_total",
            &["route=\"/orders\"", "status=\"400\""]
        ) >= 1.0
    );
    let http_count = get(
        "salestrack_http_request_seconds_count",
        &["route=\"/orders\""],
    );
    let http_sum = get(
        "salestrack_http_request_seconds_sum",
        &["route=\"/orders\""],
    );
    assert!(
        http_count >= 21.0 && http_sum / http_count < 1.0,
        "mean POST under a second"
    );
    // Batch size and handler latency per function.
    for consumer in ["domain", "projector"] {
        let label = format!("consumer=\"{consumer}\"");
        let batches = get("salestrack_consumer_batch_records_count", &[&label]);
        let records = get("salestrack_consumer_batch_records_sum", &[&label]);
        assert!(
            batches >= 1.0 && records >= 20.0 && records / batches <= 100.0,
            "{consumer}"
        );
        assert!(get("salestrack_consumer_batch_seconds_count", &[&label]) >= 1.0);
        // Lag per partition: present, never negative.
        assert!(get("salestrack_consumer_lag_records", &[&label]) >= 0.0);
        assert!(
            s.iter()
                .filter(|(n, _)| n.starts_with("salestrack_consumer_lag_records{")
                    && n.contains(&label))
                .all(|(n, v)| n.contains("partition=\"") && *v >= 0.0)
        );
    }
    // Conflicts (none here, but exposed), dead letters (the poison record).
    assert_eq!(get("salestrack_domain_append_conflicts_total", &[]), 0.0);
    assert!(
        get(
            "salestrack_consumer_dead_lettered_total",
            &["consumer=\"domain\""]
        ) >= 1.0
    );
    assert!(
        get(
            "salestrack_consumer_record_failures_total",
            &["retryable=\"false\""]
        ) >= 1.0
    );
    // Projection lag and command-to-visible latency: observed, and sane.
    for histogram in [
        "salestrack_projection_lag_seconds",
        "salestrack_command_to_visible_seconds",
    ] {
        let count = get(&format!("{histogram}_count"), &[]);
        let sum = get(&format!("{histogram}_sum"), &[]);
        assert!(count >= 20.0, "{histogram}: {count}");
        assert!(
            sum >= 0.0 && sum / count < 10.0,
            "{histogram}: mean {}",
            sum / count
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_limit_are_refused_at_once_and_health_is_never_shed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        data_dir: dir.path().into(),
        http: salestrack_platform::HttpSettings {
            max_in_flight: 1,
            ..Default::default()
        },
        consistency: salestrack_platform::ConsistencySettings {
            wait_ms: 10_000,
            ..Default::default()
        },
        ..Settings::default()
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends).await;
    // Serving first: a probe racing the holder below could take the slot.
    let (live, _) = app.get("/health/live").await;
    assert_eq!(live, StatusCode::OK);
    // A read waiting for a consistency token whose command never comes
    // holds the one slot for the whole wait. (A slow body no longer does:
    // it is read before its request takes a slot; slow_clients.rs.)
    let forged = salestrack_core::token::ConsistencyToken {
        command_id: salestrack_core::ids::CommandId(Uuid::new_v4()),
        cart_id: salestrack_core::ids::CartId(Uuid::new_v4()),
    }
    .encode();
    let holder = tokio::spawn(
        app.client
            .get(app.url(&format!("/carts?consistency_token={forged}")))
            .send(),
    );
    // It waits before the probes start.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let refused = loop {
        let response = app
            .client
            // Another route than the held one: the budget is the runner's.
            .get(app.url(&format!("/carts/{}/summary", Uuid::new_v4())))
            .send()
            .await
            .expect("send");
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "before the slot is taken"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no request was ever refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        refused.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error"], "overloaded", "{body}");
    let (live, _) = app.get("/health/live").await;
    assert_eq!(live, StatusCode::OK, "health is not shed");
    assert!(
        app.text("/metrics")
            .await
            .contains("salestrack_http_shed_total"),
        "shed requests are counted"
    );
    holder.abort();
    app.stop().await;
}
