//! The runner on the three real engines at once: Apache Kafka 4 for the bus,
//! Apache Cassandra 5 for the event store, OpenSearch 2.19 for the read
//! models (`salestrack-test-engines`).
//!
//! - Orders posted twice from concurrent clients: every cart, every event
//!   stream and the sales report exactly right.
//! - A fault per engine while orders are being posted: the engine is
//!   SIGKILLed, stays down for 60 s (longer than the 10 redeliveries, about
//!   43 s of backoff, after which the runner used to dead-letter a record
//!   that kept failing), and is restarted on its data directory.
//!   `/health/ready` goes `degraded` (a store) or `not_ready` (the bus) and
//!   back; the backoff is made short, so a waiting record is delivered
//!   again far more often than that old budget, and the test sees it; every
//!   order answered `202` is visible exactly once afterwards (so no `202`
//!   was answered for a command the bus did not keep), and nothing is on
//!   the dead-letter topic. Each fault test prints its row of docs/testing.md's
//!   fault table.

use crate::common;
use crate::faults::{
    event_store, ready_becomes, recover_and_account, spawn, tally, under_load, wait_for_carts,
    watch_readiness, UnderLoad, OUTAGE,
};

use futures::StreamExt;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::{order_body, order_body_for};
use salestrack_elasticsearch::test_server::unique_prefix;
use salestrack_platform::Settings;
use salestrack_test_engines::{Engine, EngineServer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Where each engine listens.
struct Stack {
    kafka: String,
    cassandra: String,
    opensearch: String,
}

impl Stack {
    /// The binary's shared engines, but `own` (a server of the caller's,
    /// which it may kill) for its engine.
    fn with(own: Option<&EngineServer>) -> Option<Stack> {
        let address = |engine| match own {
            Some(server) if server.engine == engine => Some(server.address()),
            _ => EngineServer::shared(engine).map(EngineServer::address),
        };
        Some(Stack {
            kafka: address(Engine::Kafka)?,
            cassandra: address(Engine::Cassandra)?,
            opensearch: address(Engine::OpenSearch)?,
        })
    }

    /// Runner settings on the three engines, with topics, groups, keyspace
    /// and index prefix of their own.
    fn settings(&self, data_dir: &Path) -> Settings {
        let base = common::engine_settings(
            common::OnEngines {
                kafka: &self.kafka,
                cassandra: &self.cassandra,
                keyspace: format!("runner{}", Uuid::new_v4().simple()),
                opensearch: &self.opensearch,
                index_prefix: unique_prefix(),
            },
            data_dir,
        );
        Settings {
            // A record that fails for a retryable reason is delivered again
            // every 200 ms at most (plus the time a failing attempt takes).
            retry_backoff_max_ms: 200,
            ready: salestrack_platform::ReadySettings {
                max_record_wait_ms: 1_000,
                ..base.ready
            },
            ..base
        }
    }
}

const PRODUCTS: [&str; 4] = ["Espresso machine", "Coffee grinder", "Milk jug", "Tamper"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_posted_twice_are_each_counted_once_on_all_three_engines() {
    let Some(stack) = Stack::with(None) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = stack.settings(dir.path());
    let app = spawn(&settings).await;

    let carts: Vec<CartId> = (0..40).map(|_| CartId(Uuid::new_v4())).collect();
    let orders: Vec<(CartId, OrderId, &str)> = (0..400)
        .map(|i| {
            let product = PRODUCTS[i % PRODUCTS.len()];
            (carts[i % carts.len()], OrderId(Uuid::new_v4()), product)
        })
        .collect();
    // Every order twice, the copies apart, from 16 clients at once.
    let sends = orders.iter().chain(orders.iter());
    let answers: Vec<StatusCode> = futures::stream::iter(sends)
        .map(|(cart, order, product)| {
            let app = &app;
            async move {
                app.post("/orders", &order_body_for(*cart, *order, product))
                    .await
                    .0
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        answers.iter().all(|s| *s == StatusCode::ACCEPTED),
        "every POST was accepted: {answers:?}"
    );

    let mut expected: BTreeMap<CartId, BTreeSet<OrderId>> = BTreeMap::new();
    for (cart, order, _) in &orders {
        expected.entry(*cart).or_default().insert(*order);
    }
    wait_for_carts(&app, &expected).await;
    let events = event_store(&settings).await;
    let tally = tally(&app, &events, &expected).await;
    assert_eq!(
        (tally.lost, tally.duplicated, tally.diverged.len()),
        (0, 0, 0),
        "{tally:?}"
    );

    // Every cart's totals, and the report, against figures computed here.
    let sample = order_body();
    let subtotal: Decimal = sample["subtotal"]
        .as_str()
        .expect("subtotal")
        .parse()
        .expect("decimal");
    let quantity = sample["quantity"].as_u64().expect("quantity");
    for (cart, orders) in &expected {
        let (_, detail) = app.get(&format!("/carts/{cart}")).await;
        let total = subtotal * Decimal::from(orders.len());
        assert_eq!(detail["subtotal"], total.to_string(), "cart {cart}");
    }
    let (status, report) = app.get("/reports/sales?group_by=product").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let reported: Vec<(String, u64, u64, Decimal)> = report["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            (
                b["key"].as_str().expect("key").to_owned(),
                b["orders"].as_u64().expect("orders"),
                b["units"].as_u64().expect("units"),
                b["revenue"]
                    .as_str()
                    .expect("revenue")
                    .parse()
                    .expect("decimal"),
            )
        })
        .collect();
    let mut wanted: Vec<(String, u64, u64, Decimal)> = PRODUCTS
        .iter()
        .map(|p| {
            let n = orders.iter().filter(|(_, _, q)| q == p).count() as u64;
            (
                (*p).to_owned(),
                n,
                n * quantity,
                subtotal * Decimal::from(n),
            )
        })
        .collect();
    wanted.sort();
    let mut reported = reported;
    reported.sort();
    assert_eq!(reported, wanted, "the sales report by product");
    app.stop().await;
}

/// SIGKILL `engine` while orders are posted, keep it down for [`OUTAGE`],
/// restart it on its data directory, and account for every accepted order.
async fn a_sigkill_of(engine: Engine) {
    // One fault at a time: three more JVMs and their load at once would
    // measure the machine, not the recovery.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(own) = EngineServer::start(engine) else {
        return;
    };
    let Some(stack) = Stack::with(Some(&own)) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = stack.settings(dir.path());
    let UnderLoad { app, stop, load } = under_load(&settings).await;

    // Without the bus no order can be accepted: not ready. Without a store
    // the runner still takes orders (they wait on the bus): degraded.
    let down_status = match engine {
        Engine::Kafka => "not_ready",
        _ => "degraded",
    };
    let killed = Instant::now();
    let own = Arc::new(Mutex::new(own));
    own.lock().expect("server").kill();
    let down = ready_becomes(&app, down_status, Duration::from_secs(60)).await;
    let noticed = killed.elapsed();
    let watching = watch_readiness(app.base.clone());
    tokio::time::sleep(OUTAGE.saturating_sub(killed.elapsed())).await;
    let watched = watching.stop().await;
    let restarting = Instant::now();
    {
        let own = Arc::clone(&own);
        tokio::task::spawn_blocking(move || own.lock().expect("server").restart())
            .await
            .expect("restart");
    }
    let restarted = restarting.elapsed();
    let (accounting, recovered) =
        recover_and_account(&app, &settings, restarting, &stop, load).await;
    eprintln!(
        "| {engine:?} | SIGKILL, down {} s, restart on its data | {} | {:.1} s | {:.1} s | {:.1} s |",
        OUTAGE.as_secs(),
        accounting.columns(),
        noticed.as_secs_f64(),
        restarted.as_secs_f64(),
        recovered.as_secs_f64(),
    );
    eprintln!("while down: {watched:#?}");
    assert_eq!(down["status"], down_status, "{down}");
    assert!(
        !watched.statuses.contains("ready"),
        "ready while {engine:?} was down: {watched:?}"
    );
    if engine != Engine::Kafka {
        assert!(
            !watched.statuses.contains("not_ready"),
            "out of service while only a store was down: {watched:?}"
        );
        // The old budget was 10 redeliveries: a record went far past it,
        // still waiting, and readiness said on what.
        assert!(
            watched.most_attempts > 10,
            "no record was delivered again more than 10 times: {watched:?}"
        );
        assert!(
            watched.reasons.iter().any(|r| r.contains("has waited")),
            "readiness never named the waiting record: {watched:?}"
        );
    }
    accounting.assert_exact(&app, &format!("{engine:?}")).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_of_kafka_under_load_loses_and_doubles_no_accepted_order() {
    a_sigkill_of(Engine::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_of_cassandra_under_load_loses_and_doubles_no_accepted_order() {
    a_sigkill_of(Engine::Cassandra).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_of_opensearch_under_load_loses_and_doubles_no_accepted_order() {
    a_sigkill_of(Engine::OpenSearch).await;
}
