//! The fault tests' toolkit, shared by the runner's test binaries that
//! kill engines under load (`it`'s engines module on single nodes,
//! `replicated` on clusters): clients posting throughout, readiness
//! watched while an engine is down, and every accepted order accounted for
//! in the read models and the event store.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use crate::common::{spawn_with, Http, TestApp};
use futures::StreamExt;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use salestrack_cassandra::{CassandraConfig, CassandraEventStore};
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::EventStore;
use salestrack_core::testing::{order_body, order_body_for};
use salestrack_platform::{Backends, Settings};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub async fn spawn(settings: &Settings) -> TestApp {
    let backends = Backends::connect(settings).await.expect("backends");
    let described = backends.description();
    for engine in ["Kafka", "Cassandra", "Elasticsearch"] {
        assert!(described.contains(engine), "{engine}: {described}");
    }
    // Nothing stays embedded, so no SQLite file is opened.
    let files: Vec<_> = std::fs::read_dir(&settings.data_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "embedded files opened anyway: {files:?}");
    spawn_with(settings.clone(), backends).await
}

/// The event store the runner writes, read with a connection of our own.
pub async fn event_store(settings: &Settings) -> CassandraEventStore {
    let mut config = CassandraConfig::new(
        &settings.cassandra.contact_points,
        &settings.cassandra.keyspace,
    );
    config.create_schema = false;
    CassandraEventStore::connect(config)
        .await
        .expect("connect to Cassandra")
}

/// Each cart's order ids as the query API shows them, in item order.
pub async fn items(app: &Http, cart: CartId) -> Vec<OrderId> {
    let (status, detail) = app.get(&format!("/carts/{cart}")).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    detail["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["order_id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until every cart shows at least its expected orders.
pub async fn wait_for_carts(app: &Http, expected: &BTreeMap<CartId, BTreeSet<OrderId>>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    for (cart, orders) in expected {
        while !items(app, *cart)
            .await
            .into_iter()
            .collect::<BTreeSet<_>>()
            .is_superset(orders)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What the stores hold against what was accepted.
#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: usize,
    /// Accepted, but in neither the read model nor the event store.
    pub lost: usize,
    /// Stored or shown more than once.
    pub duplicated: usize,
    /// Read model and event store disagree about a cart: how, for each.
    pub diverged: Vec<String>,
}

pub async fn tally(
    app: &Http,
    events: &CassandraEventStore,
    accepted: &BTreeMap<CartId, BTreeSet<OrderId>>,
) -> Tally {
    let mut tally = Tally {
        accepted: accepted.values().map(BTreeSet::len).sum(),
        ..Tally::default()
    };
    for (cart, orders) in accepted {
        let shown = items(app, *cart).await;
        let stream = events.read_stream(*cart).await.expect("stream");
        let stored: Vec<OrderId> = stream.iter().filter_map(|e| e.event.order_id()).collect();
        let unique = |ids: &[OrderId]| ids.iter().copied().collect::<BTreeSet<_>>();
        tally.lost += orders.difference(&unique(&shown)).count();
        tally.duplicated += shown.len() - unique(&shown).len();
        tally.duplicated += stored.len() - unique(&stored).len();
        if unique(&shown) != unique(&stored)
            || stream.iter().map(|e| e.version).collect::<Vec<_>>()
                != (1..=stream.len() as u64).collect::<Vec<_>>()
        {
            let (shown, stored) = (unique(&shown), unique(&stored));
            tally.diverged.push(format!(
                "cart {cart} at version {}: stored, not shown {:?}; shown, not stored {:?}; accepted, in neither {:?}",
                stream.len(),
                stored.difference(&shown).collect::<Vec<_>>(),
                shown.difference(&stored).collect::<Vec<_>>(),
                orders
                    .difference(&stored)
                    .filter(|o| !shown.contains(o))
                    .collect::<Vec<_>>(),
            ));
        }
    }
    tally
}

/// What the run dead-lettered: stage and error of each record.
pub async fn dead_letters(app: &TestApp, settings: &Settings) -> Vec<String> {
    let mut consumer = app
        .backends
        .consumer(
            &format!("diagnosis-{}", Uuid::new_v4()),
            &[&settings.topics.dead_letter],
        )
        .expect("consumer");
    let mut letters = Vec::new();
    for _ in 0..5 {
        let records = consumer
            .poll(100, Duration::from_secs(1))
            .await
            .unwrap_or_default();
        for r in records {
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            letters.push(format!(
                "{}: {}",
                header("salestrack-dlq-stage"),
                header("salestrack-dlq-error")
            ));
        }
    }
    letters
}

/// Polls `/health/ready` (bounded) until its `status` is `wanted`.
pub async fn ready_becomes(app: &Http, wanted: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, body) = app.get("/health/ready").await;
        if body["status"] == wanted {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/health/ready never became {wanted}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One order a client posted: how many answers other than `202` it got
/// before it was accepted, and whether it was.
#[derive(Debug)]
pub struct Posted {
    pub cart: CartId,
    pub order: OrderId,
    pub refusals: u32,
    pub accepted: bool,
    /// The last answer, `None` when there was none.
    pub last: Option<StatusCode>,
}

/// How long a client keeps sending one order again: past the outage, the
/// restart and the producer's delivery timeout.
pub const RETRY_ONE_ORDER_FOR: Duration = Duration::from_secs(300);

/// Orders posted by 4 clients over the carts until `stop`. Each client does
/// what a `503` tells it: it sends the same order again (a `503` may follow
/// a command the bus took without confirming it) until it is accepted, so
/// every order ends accepted exactly once.
pub fn post_until(
    base: String,
    carts: Vec<CartId>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Posted>> {
    let client = reqwest::Client::builder()
        // Longer than the producer's delivery timeout (30 s): a POST waiting
        // on a killed broker gets its real answer.
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    tokio::spawn(async move {
        let attempts = (0..usize::MAX)
            .map(move |i| (carts[i % carts.len()], OrderId(Uuid::new_v4())))
            .take_while(move |_| !stop.load(Ordering::Relaxed));
        futures::stream::iter(attempts)
            .map(|(cart, order)| {
                let (client, base) = (client.clone(), base.clone());
                async move {
                    let first = Instant::now();
                    let mut posted = Posted {
                        cart,
                        order,
                        refusals: 0,
                        accepted: false,
                        last: None,
                    };
                    while first.elapsed() < RETRY_ONE_ORDER_FOR {
                        let answer = client
                            .post(format!("{base}/orders"))
                            .json(&order_body_for(cart, order, "Fault test"))
                            .send()
                            .await
                            .ok()
                            .map(|r| r.status());
                        posted.accepted = answer == Some(StatusCode::ACCEPTED);
                        posted.last = answer;
                        // A steady stream, not a benchmark: about 40 orders
                        // a second (a minute's outage leaves a backlog of
                        // some 2,400 commands to catch up with while the
                        // posting goes on), and no tight loop while the
                        // engine is down.
                        if posted.accepted {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            break;
                        }
                        posted.refusals += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    posted
                }
            })
            .buffer_unordered(4)
            .collect()
            .await
    })
}

/// How long an engine stays down: longer than the retry budget the runner
/// used to have (10 redeliveries, about 43 s of backoff) before it
/// dead-lettered a record that kept failing for a retryable reason.
pub const OUTAGE: Duration = Duration::from_secs(60);

/// What `/health/ready` said while the engine was down.
#[derive(Debug, Default)]
pub struct Watched {
    pub statuses: BTreeSet<String>,
    /// Most failed deliveries of one waiting record, any loop.
    pub most_attempts: u64,
    /// Longest wait of one record, any loop.
    pub longest_wait: Duration,
    /// The errors waiting records named.
    pub errors: BTreeSet<String>,
    /// The reasons readiness gave.
    pub reasons: BTreeSet<String>,
}

/// Readiness watched from [`watch_readiness`] until [`Watching::stop`].
pub struct Watching {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Watched>,
}

impl Watching {
    /// What readiness said since the watch began.
    pub async fn stop(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("watcher")
    }
}

/// Polls `/health/ready` from now until the watch is stopped, gathering
/// what it says.
pub fn watch_readiness(base: String) -> Watching {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let stop = stopped;
        let client = reqwest::Client::new();
        let mut watched = Watched::default();
        while !stop.load(Ordering::Relaxed) {
            let answer = client.get(format!("{base}/health/ready")).send().await;
            if let Ok(body) = match answer {
                Ok(r) => r.json::<Value>().await,
                Err(e) => Err(e),
            } {
                watched
                    .statuses
                    .insert(body["status"].as_str().unwrap_or("?").to_owned());
                for reason in body["reasons"].as_array().into_iter().flatten() {
                    // Without the figures, which change every second.
                    let text = reason.as_str().unwrap_or_default();
                    let words: String = text
                        .split(' ')
                        .filter(|w| !w.chars().next().is_some_and(|c| c.is_ascii_digit()))
                        .collect::<Vec<_>>()
                        .join(" ");
                    watched.reasons.insert(words);
                }
                for name in ["domain_consumer", "projector_consumer", "payment_consumer"] {
                    let waiting = &body[name]["waiting"];
                    if let Some(attempts) = waiting["attempts"].as_u64() {
                        watched.most_attempts = watched.most_attempts.max(attempts);
                        let waited =
                            Duration::from_millis(waiting["waited_ms"].as_u64().unwrap_or(0));
                        watched.longest_wait = watched.longest_wait.max(waited);
                        let error = waiting["error"].as_str().unwrap_or_default();
                        watched.errors.insert(error.chars().take(120).collect());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        watched
    });
    Watching { stop, task }
}

/// A runner on `settings`, `ready`, with clients posting over 50 carts
/// (for 2 s already): how every fault test begins.
pub struct UnderLoad {
    pub app: TestApp,
    pub stop: Arc<AtomicBool>,
    pub load: tokio::task::JoinHandle<Vec<Posted>>,
}

pub async fn under_load(settings: &Settings) -> UnderLoad {
    let app = spawn(settings).await;
    ready_becomes(&app, "ready", Duration::from_secs(60)).await;
    let carts: Vec<CartId> = (0..50).map(|_| CartId(Uuid::new_v4())).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = post_until(app.base.clone(), carts, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(2)).await;
    UnderLoad { app, stop, load }
}

/// After a fault's restart began at `restarting`: until the runner is
/// `ready` again, 2 s more of posting, then the clients `stop` and every
/// order is accounted for; with how long the recovery took.
pub async fn recover_and_account(
    app: &TestApp,
    settings: &Settings,
    restarting: Instant,
    stop: &AtomicBool,
    load: tokio::task::JoinHandle<Vec<Posted>>,
) -> (Accounting, Duration) {
    ready_becomes(app, "ready", Duration::from_secs(180)).await;
    let recovered = restarting.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = load.await.expect("load");
    (account(app, settings, &answers).await, recovered)
}

/// Every order the clients posted, against what the stores hold.
#[derive(Debug)]
pub struct Accounting {
    /// The orders answered `202`, by cart.
    pub accepted: BTreeMap<CartId, BTreeSet<OrderId>>,
    /// Answers other than `202`, and to how many orders.
    pub refused: u32,
    pub retried: usize,
    /// Orders sent again for [`RETRY_ONE_ORDER_FOR`] and never accepted.
    pub never: Vec<CartId>,
    pub tally: Tally,
    pub letters: Vec<String>,
}

/// Waits until the read models show every accepted order, then counts
/// them in the read models and in the event store.
pub async fn account(app: &TestApp, settings: &Settings, answers: &[Posted]) -> Accounting {
    let mut accepted: BTreeMap<CartId, BTreeSet<OrderId>> = BTreeMap::new();
    for posted in answers.iter().filter(|p| p.accepted) {
        accepted
            .entry(posted.cart)
            .or_default()
            .insert(posted.order);
    }
    wait_for_carts(app, &accepted).await;
    let events = event_store(settings).await;
    let tally = tally(app, &events, &accepted).await;
    Accounting {
        refused: answers.iter().map(|p| p.refusals).sum(),
        retried: answers.iter().filter(|p| p.refusals > 0).count(),
        never: answers
            .iter()
            .filter(|p| !p.accepted)
            .map(|p| p.cart)
            .collect(),
        letters: dead_letters(app, settings).await,
        tally,
        accepted,
    }
}

impl Accounting {
    /// The fault table's middle columns: accepted, refused (to how many
    /// orders), lost, duplicated, dead-lettered.
    pub fn columns(&self) -> String {
        let t = &self.tally;
        format!(
            "{} | {} to {} orders | {} | {} | {}",
            t.accepted,
            self.refused,
            self.retried,
            t.lost,
            t.duplicated,
            self.letters.len()
        )
    }

    /// Every accepted order is shown and stored exactly once, each cart's
    /// stream is versions 1..n and its total exactly its lines', nothing is
    /// dead-lettered, and every accepted command's status is known.
    pub async fn assert_exact(&self, app: &Http, what: &str) {
        assert!(self.tally.accepted > 0, "{what}: no order was accepted");
        assert!(
            self.never.is_empty(),
            "{what}: orders sent again for {RETRY_ONE_ORDER_FOR:?} and never accepted, carts {:?}",
            self.never
        );
        assert_eq!(
            (
                self.tally.lost,
                self.tally.duplicated,
                self.tally.diverged.len()
            ),
            (0, 0, 0),
            "{what}: {:#?}\ndead letters: {:#?}",
            self.tally,
            self.letters
        );
        assert!(
            self.letters.is_empty(),
            "{what}: dead-lettered: {:#?}",
            self.letters
        );
        let subtotal: Decimal = order_body()["subtotal"]
            .as_str()
            .expect("subtotal")
            .parse()
            .expect("decimal");
        for (cart, orders) in &self.accepted {
            let (_, detail) = app.get(&format!("/carts/{cart}")).await;
            let total = subtotal * Decimal::from(orders.len());
            assert_eq!(
                detail["subtotal"],
                total.to_string(),
                "{what}: cart {cart}: {detail}"
            );
        }
        let mut unknown = 0;
        for (cart, orders) in &self.accepted {
            for order in orders {
                let id = salestrack_core::ids::CommandId::for_order(
                    *cart,
                    salestrack_core::command::PLACE_ORDER,
                    *order,
                    order_body()["user_id"].as_str(),
                );
                let (status, _) = app.get(&format!("/commands/{id}")).await;
                if status != StatusCode::OK {
                    unknown += 1;
                }
            }
        }
        assert_eq!(unknown, 0, "{what}: accepted commands without a status");
    }
}
