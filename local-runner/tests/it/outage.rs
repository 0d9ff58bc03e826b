//! The embedded event store unavailable for longer than the retry budget
//! the runner used to have: another process holds its write lock for 60 s
//! while clients post. Commands are accepted and wait on the bus; the
//! domain's record is delivered again and again (far more than the 10
//! redeliveries after which it used to be dead-lettered) and never
//! dead-lettered; afterwards every accepted order is visible once.

use super::common;
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longer than the old budget: 10 redeliveries, about 43 s of backoff.
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_store_locked_longer_than_any_retry_budget_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = {
        let base = common::embedded_settings(dir.path());
        Settings {
            retry_backoff_max_ms: 100,
            ready: salestrack_platform::ReadySettings {
                max_record_wait_ms: 1_000,
                ..base.ready
            },
            ..base
        }
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = common::spawn_with(settings.clone(), backends).await;
    let carts: Vec<CartId> = (0..8).map(|_| CartId(Uuid::new_v4())).collect();
    let mut accepted: BTreeMap<CartId, BTreeSet<OrderId>> = BTreeMap::new();
    let mut post = async |i: usize| {
        let (cart, order) = (carts[i % carts.len()], OrderId(Uuid::new_v4()));
        let (status, body) = app
            .post("/orders", &order_body_for(cart, order, "Outage kettle"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted.entry(cart).or_default().insert(order);
    };
    for i in 0..8 {
        post(i).await;
    }

    // Another process takes the event store's write lock and keeps it.
    let lock = rusqlite::Connection::open(dir.path().join("events.sqlite")).expect("open");
    lock.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let locked = Instant::now();
    let mut most_attempts = 0;
    let mut said_waiting = false;
    let mut i = 8;
    while locked.elapsed() < OUTAGE {
        post(i).await;
        i += 1;
        let (status, ready) = app.get("/health/ready").await;
        assert_eq!(status, StatusCode::OK, "still taking orders: {ready}");
        let attempts = ready["domain_consumer"]["waiting"]["attempts"]
            .as_u64()
            .unwrap_or(0);
        most_attempts = most_attempts.max(attempts);
        said_waiting |= ready["status"] == "degraded"
            && ready["reasons"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r.as_str().unwrap_or("").contains("has waited"))
            });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    lock.execute_batch("ROLLBACK").expect("unlock");
    drop(lock);
    assert!(
        most_attempts > 10,
        "the waiting record was delivered again only {most_attempts} times"
    );
    assert!(said_waiting, "readiness never said what waits");

    // Everything accepted is visible once; nothing was dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (cart, orders) in &accepted {
        loop {
            let (_, detail) = app.get(&format!("/carts/{cart}")).await;
            let shown: Vec<String> = detail["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i["order_id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if shown.len() == orders.len() {
                let unique: BTreeSet<&String> = shown.iter().collect();
                assert_eq!(unique.len(), shown.len(), "shown twice: {detail}");
                assert!(
                    orders.iter().all(|o| unique.contains(&o.to_string())),
                    "{detail}"
                );
                break;
            }
            assert!(shown.len() < orders.len(), "more than accepted: {detail}");
            assert!(
                Instant::now() < deadline,
                "cart {cart} never caught up: {detail}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (_, letters) = app.get("/admin/dead-letters").await;
    assert_eq!(letters["dead_letters"], serde_json::json!([]), "{letters}");
    let (_, ready) = app.get("/health/ready").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    app.stop().await;
}
