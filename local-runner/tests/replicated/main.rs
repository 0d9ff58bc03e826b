//! The runner on replicated engines, each cluster on this one machine
//! (`salestrack_test_engines::{CassandraCluster, KafkaCluster}`), the other
//! engines the binary's single nodes. Clients post orders throughout each
//! fault, and every order answered `202` is then accounted for in the read
//! models and the event store (`common/faults.rs`).
//!
//! Apache Cassandra 5, three nodes (127.0.0.1-3), keyspaces at replication
//! factor 3, the runner's production consistency (`LOCAL_QUORUM` reads and
//! writes, `LOCAL_SERIAL` Paxos), the commit log synced every 10 s as in
//! production:
//!
//! - One node SIGKILLed under load, restarted 30 s later: no order is
//!   refused, orders keep becoming visible while it is down, and afterwards
//!   every accepted order is stored and shown exactly once, each cart's
//!   stream versions 1..n.
//! - Two nodes SIGKILLed for 60 s (past any retry budget): no quorum, so
//!   appends fail; orders are still accepted (the bus has them), their
//!   commands wait, readiness says `degraded`, nothing is dead-lettered;
//!   once one of the two is back, everything accepted is visible exactly
//!   once (the other is restarted after the accounting).
//!
//! - A coordinator SIGKILLed with Paxos rounds in flight (200 carts
//!   appended to at once, straight through the event store): each such
//!   append fails without an answer, and the serial read that settles it
//!   finishes whatever round a quorum had accepted. Whether a round had
//!   got that far is chance: those that had are found landed (`applied`),
//!   the others not. A "did not apply" is never contradicted by a later
//!   round, and every stream is exactly what its writer was told.
//!
//! Apache Kafka 4, three KRaft nodes, the runner's topics at replication
//! factor 3 with `min.insync.replicas=2`, its producer at `acks=all`:
//!
//! - The leader of a commands partition SIGKILLed under load, restarted
//!   30 s later: the clients fail over, every accepted order is there
//!   exactly once (so no `202` was answered for a command the cluster did
//!   not keep), and the runner is `ready` again.
//! - Two brokers SIGKILLed: orders posted then are answered `503`, never
//!   `202`; after the restart everything accepted is there exactly once.
//!
//! OpenSearch 2.19, two nodes (a cluster manager that holds data, and a
//! data node), the runner's indices at two shards and one replica:
//!
//! - The data node SIGKILLed under load, restarted 30 s later: its
//!   primaries' replicas on the other node take over, orders keep becoming
//!   visible, nobody is refused; back, the cluster is green and both copies
//!   of every shard hold the same documents, and the read models are exact.
//!
//! Each cluster is started once for the binary, by the first test that
//! needs it (Cassandra's about two and a half minutes on two cores); the
//! tests run one at a time. Each prints its row of docs/testing.md's fault
//! table.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/faults.rs"]
mod faults;

use faults::{ready_becomes, recover_and_account, under_load, watch_readiness, UnderLoad};
use salestrack_cassandra::CassandraEventStore;
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::CartId;
use salestrack_core::ports::{AppendError, EventStore};
use salestrack_elasticsearch::test_server::unique_prefix;
use salestrack_platform::Settings;
use salestrack_test_engines::{
    CassandraCluster, Engine, EngineServer, KafkaCluster, OpenSearchCluster,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// One fault at a time: two clusters' JVMs and their load at once would
/// measure the machine, not the recovery.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binary's clusters, started by the first test that needs each; every
/// test leaves every node running when it is done.
static CASSANDRA: tokio::sync::Mutex<Option<CassandraCluster>> =
    tokio::sync::Mutex::const_new(None);
static KAFKA: tokio::sync::Mutex<Option<KafkaCluster>> = tokio::sync::Mutex::const_new(None);
static OPENSEARCH: tokio::sync::Mutex<Option<OpenSearchCluster>> =
    tokio::sync::Mutex::const_new(None);

/// Runner settings on `kafka` and `cassandra` (replicated `replicas` times
/// each, 1 for a single node), with a keyspace, topics and index prefix of
/// their own; OpenSearch is the binary's single node.
fn settings(kafka: (&str, usize), cassandra: (&str, usize), data_dir: &Path) -> Option<Settings> {
    let opensearch = EngineServer::shared(Engine::OpenSearch)?.address();
    Some(settings_on(kafka, cassandra, (&opensearch, 0), data_dir))
}

/// [`settings`] on the OpenSearch at `opensearch.0`, its indices with
/// `opensearch.1` replicas (and two shards where there are replicas, so
/// each node of two leads some).
fn settings_on(
    kafka: (&str, usize),
    cassandra: (&str, usize),
    opensearch: (&str, u32),
    data_dir: &Path,
) -> Settings {
    let (opensearch, replicas) = opensearch;
    let base = common::engine_settings(
        common::OnEngines {
            kafka: kafka.0,
            cassandra: cassandra.0,
            keyspace: format!("replicated{}", Uuid::new_v4().simple()),
            opensearch,
            index_prefix: unique_prefix(),
        },
        data_dir,
    );
    let kafka_replicas = i32::try_from(kafka.1).expect("replicas");
    Settings {
        cassandra: salestrack_platform::CassandraSettings {
            replication: format!(
                "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                cassandra.1
            ),
            consistency: "LOCAL_QUORUM".into(),
            serial_consistency: "LOCAL_SERIAL".into(),
            ..base.cassandra
        },
        kafka: salestrack_platform::KafkaSettings {
            replication_factor: kafka_replicas,
            min_insync_replicas: Some(kafka_replicas.min(2)),
            ..base.kafka
        },
        elasticsearch: salestrack_platform::ElasticsearchSettings {
            shards: Some(if replicas > 0 { 2 } else { 1 }),
            replicas: Some(replicas),
            ..base.elasticsearch
        },
        // A waiting record is delivered again every 200 ms at most.
        retry_backoff_max_ms: 200,
        ready: salestrack_platform::ReadySettings {
            max_record_wait_ms: 1_000,
            ..base.ready
        },
        ..base
    }
}

/// The cluster behind `cell`, started on first use by `start`; `None`
/// when its engine is not resolved (and not required).
async fn started<C: Send + 'static>(
    cell: &'static tokio::sync::Mutex<Option<C>>,
    start: fn() -> Option<C>,
) -> tokio::sync::MutexGuard<'static, Option<C>> {
    let mut guard = cell.lock().await;
    if guard.is_none() {
        *guard = tokio::task::spawn_blocking(start)
            .await
            .expect("starting the cluster");
    }
    guard
}

/// Runs `f` on the cluster in a blocking thread (a start or stop waits for
/// JVMs, gossip and elections).
async fn on_cluster<C: Send + 'static>(
    cluster: &mut Option<C>,
    f: impl FnOnce(&mut C) + Send + 'static,
) {
    let mut taken = cluster.take().expect("the cluster");
    let taken = tokio::task::spawn_blocking(move || {
        f(&mut taken);
        taken
    })
    .await
    .expect("the cluster's nodes");
    *cluster = Some(taken);
}

/// SIGKILL `nodes` under load, restart them (in order) after `outage`, and
/// account for every order: [`run`].
struct Fault {
    nodes: &'static [usize],
    outage: Duration,
    /// Readiness once the runner noticed, and until the restart.
    down_status: &'static str,
}

#[derive(Debug)]
struct Outcome {
    watched: faults::Watched,
    accounting: faults::Accounting,
    /// Orders that became visible in 15 s while the nodes were down.
    visible_while_down: u64,
}

/// Order lines the sales report counts.
async fn orders_visible(app: &common::Http) -> u64 {
    let (_, report) = app.get("/reports/sales").await;
    report["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["orders"].as_u64())
        .sum()
}

/// The fault, with clients posting throughout; what readiness said while
/// the nodes were down, and the accounting (already asserted exact), for
/// the caller's assertions. `None` when an engine is not resolved.
async fn run(fault: Fault, name: &str) -> Option<Outcome> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut guard = started(&CASSANDRA, CassandraCluster::start).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka = EngineServer::shared(Engine::Kafka)?.address();
    let (contact_points, replicas) = {
        let cluster = guard.as_ref()?;
        (cluster.contact_points(), cluster.len())
    };
    let settings = settings((&kafka, 1), (&contact_points, replicas), dir.path())?;
    let UnderLoad { app, stop, load } = under_load(&settings).await;

    let killed = Instant::now();
    let nodes = fault.nodes;
    on_cluster(&mut guard, move |c| nodes.iter().for_each(|&i| c.kill(i))).await;
    ready_becomes(&app, fault.down_status, Duration::from_secs(60)).await;
    let noticed = killed.elapsed();
    let watching = watch_readiness(app.base.clone());

    // Whether orders keep becoming visible while the nodes are down: the
    // sales report's count over 15 s, once what was in flight has settled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = orders_visible(&app).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let visible_while_down = orders_visible(&app).await.saturating_sub(before);
    tokio::time::sleep(fault.outage.saturating_sub(killed.elapsed())).await;
    let watched = watching.stop().await;

    // One node back makes a quorum again: everything is accounted for
    // before the others return.
    let restarting = Instant::now();
    let (&first, others) = fault.nodes.split_first().expect("a node to kill");
    on_cluster(&mut guard, move |c| c.restart(first)).await;
    let restarted = restarting.elapsed();
    let (accounting, recovered) =
        recover_and_account(&app, &settings, restarting, &stop, load).await;
    eprintln!(
        "| Cassandra, 3 nodes, RF 3 | {name}, down {} s, then one restarted on its data | {} | {:.1} s | {:.1} s | {:.1} s |",
        fault.outage.as_secs(),
        accounting.columns(),
        noticed.as_secs_f64(),
        restarted.as_secs_f64(),
        recovered.as_secs_f64(),
    );
    eprintln!("while down: {watched:#?}\nvisible in 15 s while down: {visible_while_down}");
    accounting.assert_exact(&app, name).await;
    app.stop().await;
    for &node in others {
        on_cluster(&mut guard, move |c| c.restart(node)).await;
    }
    Some(Outcome {
        watched,
        accounting,
        visible_while_down,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_of_three_killed_under_load_costs_no_accepted_order() {
    let fault = Fault {
        nodes: &[1],
        outage: Duration::from_secs(30),
        down_status: "ready",
    };
    let Some(outcome) = run(fault, "SIGKILL of 1 node of 3").await else {
        return;
    };
    // The command function needs the bus only, and appends need two
    // replicas of three: nobody was turned away, and the pipeline went on.
    assert_eq!(
        outcome.accounting.refused, 0,
        "orders refused while one node of three was down: {outcome:#?}"
    );
    assert!(
        !outcome.watched.statuses.contains("not_ready"),
        "out of service with a quorum up: {outcome:#?}"
    );
    assert!(
        outcome.visible_while_down > 0,
        "nothing became visible while one node of three was down: {outcome:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_of_three_killed_stop_appends_and_lose_no_accepted_order() {
    let fault = Fault {
        nodes: &[1, 2],
        // Longer than the retry budget the runner used to have (10
        // redeliveries, about 43 s of backoff).
        outage: faults::OUTAGE,
        down_status: "degraded",
    };
    let Some(outcome) = run(fault, "SIGKILL of 2 nodes of 3").await else {
        return;
    };
    let watched = &outcome.watched;
    // No quorum: nothing new was appended, so nothing new became visible,
    // while the bus went on taking orders.
    assert_eq!(
        outcome.visible_while_down, 0,
        "orders became visible without a quorum: {outcome:#?}"
    );
    assert!(
        !watched.statuses.contains("ready") && !watched.statuses.contains("not_ready"),
        "readiness while two of three nodes were down: {watched:#?}"
    );
    // A command waited through the outage, past the 43 s of backoff after
    // which the runner used to dead-letter it (each delivery now takes
    // seconds: the coordinator waits for replicas that do not answer).
    assert!(
        watched.longest_wait > Duration::from_secs(43),
        "no command waited out the outage: {watched:#?}"
    );
}

/// A runner on the Kafka cluster (topics at replication factor 3,
/// `min.insync.replicas=2`) and the binary's single Cassandra, `ready`,
/// with clients posting; `None` when an engine is not resolved.
struct OnKafka {
    app: common::TestApp,
    settings: Settings,
    stop: Arc<AtomicBool>,
    load: tokio::task::JoinHandle<Vec<faults::Posted>>,
    _dir: tempfile::TempDir,
}

/// This test's turn, the Kafka cluster (started on first use) and a runner
/// on it with clients posting; `None` when an engine is not resolved.
async fn kafka_turn() -> Option<(
    tokio::sync::MutexGuard<'static, ()>,
    tokio::sync::MutexGuard<'static, Option<KafkaCluster>>,
    OnKafka,
)> {
    let turn = ONE_AT_A_TIME.lock().await;
    let guard = started(&KAFKA, KafkaCluster::start).await;
    let run = on_kafka(guard.as_ref()?).await?;
    Some((turn, guard, run))
}

async fn on_kafka(cluster: &KafkaCluster) -> Option<OnKafka> {
    let cassandra = EngineServer::shared(Engine::Cassandra)?.address();
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(
        (&cluster.bootstrap(), cluster.len()),
        (&cassandra, 1),
        dir.path(),
    )?;
    let UnderLoad { app, stop, load } = under_load(&settings).await;
    Some(OnKafka {
        app,
        settings,
        stop,
        load,
        _dir: dir,
    })
}

impl OnKafka {
    /// Stops the clients once the runner is `ready`, accounts for every
    /// order (asserting it exact) and prints the fault table's row.
    async fn account(
        self,
        name: &str,
        down: Duration,
        (restarting, restarted): (Instant, Duration),
        watched: &faults::Watched,
    ) {
        let (accounting, recovered) =
            recover_and_account(&self.app, &self.settings, restarting, &self.stop, self.load).await;
        eprintln!(
            "| Kafka, 3 brokers, RF 3, min ISR 2 | {name}, down {} s, restarted on their data | {} | {:?} | {:.1} s | {:.1} s |",
            down.as_secs(),
            accounting.columns(),
            watched.statuses,
            restarted.as_secs_f64(),
            recovered.as_secs_f64(),
        );
        accounting.assert_exact(&self.app, name).await;
        self.app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_of_a_commands_partition_killed_under_load_costs_no_accepted_order() {
    let Some((_turn, mut guard, run)) = kafka_turn().await else {
        return;
    };
    let leader = guard
        .as_ref()
        .expect("the cluster")
        .leader(&run.settings.topics.commands, 0)
        .expect("the commands topic's leader");
    on_cluster(&mut guard, move |c| c.kill(leader)).await;
    let watching = watch_readiness(run.app.base.clone());
    let down = Duration::from_secs(30);
    tokio::time::sleep(down).await;
    let watched = watching.stop().await;
    eprintln!("with the leader of commands/0 down: {watched:#?}");
    // Two brokers of three take every write: the runner stays in service
    // (a metadata request that timed out on the busy machine used to turn
    // it `not_ready` while every order was accepted).
    assert!(
        !watched.statuses.contains("not_ready"),
        "out of service with two brokers of three up: {watched:#?}"
    );
    let restarting = Instant::now();
    on_cluster(&mut guard, move |c| c.restart(leader)).await;
    let restarted = restarting.elapsed();
    run.account(
        "SIGKILL of the leader of commands/0",
        down,
        (restarting, restarted),
        &watched,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_brokers_of_three_killed_answer_503_never_202() {
    let Some((_turn, mut guard, run)) = kafka_turn().await else {
        return;
    };
    let killed = Instant::now();
    on_cluster(&mut guard, |c| {
        c.kill(1);
        c.kill(2);
    })
    .await;
    // The writes in flight tell: none is acknowledged (the broker left
    // cannot reach `min.insync.replicas`), so the bus is down.
    ready_becomes(&run.app, "not_ready", Duration::from_secs(60)).await;
    let noticed = killed.elapsed();
    let watching = watch_readiness(run.app.base.clone());
    // Orders posted now, to carts of their own: one broker cannot hold a
    // command with another replica, so none may be answered 202.
    let client = reqwest::Client::builder()
        // Longer than the producer's delivery timeout (30 s).
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let probes = futures::future::join_all((0..8).map(|_| {
        let (client, base) = (client.clone(), run.app.base.clone());
        async move {
            let body = salestrack_core::testing::order_body_for(
                CartId(Uuid::new_v4()),
                salestrack_core::ids::OrderId(Uuid::new_v4()),
                "Fault test",
            );
            client
                .post(format!("{base}/orders"))
                .json(&body)
                .send()
                .await
                .map(|r| r.status())
                .map_err(|e| e.to_string())
        }
    }))
    .await;
    let down = killed.elapsed();
    let watched = watching.stop().await;
    let restarting = Instant::now();
    on_cluster(&mut guard, |c| {
        c.restart(1);
        c.restart(2);
    })
    .await;
    let restarted = restarting.elapsed();
    eprintln!(
        "answers with two brokers of three down: {probes:?}\nnot_ready after {:.1} s; then: {watched:#?}",
        noticed.as_secs_f64()
    );
    assert!(
        probes.iter().all(|p| p
            .as_ref()
            .is_ok_and(|s| *s == reqwest::StatusCode::SERVICE_UNAVAILABLE)),
        "orders posted with two brokers of three down: {probes:?}"
    );
    assert!(
        !watched.statuses.contains("ready") && !watched.statuses.contains("degraded"),
        "in service with two brokers of three down: {watched:#?}"
    );
    run.account(
        "SIGKILL of 2 brokers of 3",
        down,
        (restarting, restarted),
        &watched,
    )
    .await;
}

/// A copy of a shard, as `_cat/shards` lists it.
#[derive(Debug)]
struct ShardCopy {
    primary: bool,
    state: String,
    docs: Option<u64>,
    node: Option<String>,
}

/// Each shard's copies in the indices under `prefix`, by (index, shard),
/// after a refresh.
async fn shard_copies(url: &str, prefix: &str) -> BTreeMap<(String, u64), Vec<ShardCopy>> {
    let client = reqwest::Client::new();
    client
        .post(format!("{url}/{prefix}*/_refresh"))
        .send()
        .await
        .expect("refresh");
    let shards: Vec<serde_json::Value> = client
        .get(format!(
            "{url}/_cat/shards/{prefix}*?format=json&h=index,shard,prirep,state,docs,node"
        ))
        .send()
        .await
        .expect("_cat/shards")
        .json()
        .await
        .expect("shards");
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let number = |v: &serde_json::Value| text(v).and_then(|t| t.parse().ok());
    let mut copies: BTreeMap<(String, u64), Vec<ShardCopy>> = BTreeMap::new();
    for s in shards {
        let shard = (
            text(&s["index"]).unwrap_or_default(),
            number(&s["shard"]).unwrap_or_default(),
        );
        copies.entry(shard).or_default().push(ShardCopy {
            primary: s["prirep"] == "p",
            state: text(&s["state"]).unwrap_or_default(),
            docs: number(&s["docs"]),
            node: text(&s["node"]),
        });
    }
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_data_node_of_two_killed_under_load_projection_goes_on_on_the_replicas() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut guard = started(&OPENSEARCH, OpenSearchCluster::start).await;
    let Some((url, data_node)) = guard.as_ref().map(|c| (c.url(), c.data_node())) else {
        return;
    };
    let (Some(kafka), Some(cassandra)) = (
        EngineServer::shared(Engine::Kafka),
        EngineServer::shared(Engine::Cassandra),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings_on(
        (&kafka.address(), 1),
        (&cassandra.address(), 1),
        (&url, 1),
        dir.path(),
    );
    let prefix = settings.elasticsearch.index_prefix.clone();
    let UnderLoad { app, stop, load } = under_load(&settings).await;
    // Every index's replicas allocated before the fault, and primaries on
    // the node to be killed: their replicas must take over.
    on_cluster(&mut guard, |c| c.wait_until_ready()).await;
    let before_kill = shard_copies(&url, &prefix).await;
    let data_node_name = format!("salestrack-{data_node}");
    let led_there = before_kill
        .values()
        .flatten()
        .filter(|c| c.primary && c.node.as_deref() == Some(data_node_name.as_str()))
        .count();
    assert!(
        led_there > 0,
        "no primary on the data node: {before_kill:#?}"
    );

    let killed = Instant::now();
    on_cluster(&mut guard, move |c| c.kill(data_node)).await;
    let watching = watch_readiness(app.base.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = orders_visible(&app).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let visible_while_down = orders_visible(&app).await.saturating_sub(before);
    let down = Duration::from_secs(30);
    tokio::time::sleep(down.saturating_sub(killed.elapsed())).await;
    let watched = watching.stop().await;
    let while_down = shard_copies(&url, &prefix).await;

    let restarting = Instant::now();
    // Until the health is green with both nodes: every replica recovered.
    on_cluster(&mut guard, move |c| c.restart(data_node)).await;
    let restarted = restarting.elapsed();
    let (accounting, recovered) =
        recover_and_account(&app, &settings, restarting, &stop, load).await;
    let copies = shard_copies(&url, &prefix).await;
    eprintln!(
        "| OpenSearch, 2 nodes, 1 replica | SIGKILL of the data node, down {} s, restarted on its data | {} | {:?} | {:.1} s | {:.1} s |",
        down.as_secs(),
        accounting.columns(),
        watched.statuses,
        restarted.as_secs_f64(),
        recovered.as_secs_f64(),
    );
    eprintln!(
        "primaries on the data node before: {led_there}\nwhile down: {watched:#?}\n\
         visible in 15 s while down: {visible_while_down}\n\
         shard copies while down: {while_down:#?}\nafter: {copies:#?}"
    );
    accounting
        .assert_exact(&app, "SIGKILL of the data node")
        .await;
    // The read store is not the command side's: nobody was turned away,
    // and the projection went on with the copies on the node left.
    assert_eq!(accounting.refused, 0, "orders refused: {watched:#?}");
    assert!(
        !watched.statuses.contains("not_ready"),
        "out of service with one node of two: {watched:#?}"
    );
    assert!(
        visible_while_down > 0,
        "nothing became visible with the data node down: {watched:#?}"
    );
    // While down, the replicas on the node left had become the primaries.
    assert!(
        while_down
            .values()
            .all(|copies| copies.iter().any(|c| c.primary && c.state == "STARTED")),
        "a shard without a primary while the data node was down: {while_down:#?}"
    );
    // Back: each shard has both copies started, and they hold the same
    // documents (the replica caught up with what was written meanwhile).
    for (shard, both) in &copies {
        let docs: BTreeSet<Option<u64>> = both.iter().map(|c| c.docs).collect();
        assert!(
            both.len() == 2 && both.iter().all(|c| c.state == "STARTED") && docs.len() == 1,
            "{shard:?}: {copies:#?}"
        );
    }
    app.stop().await;
}

/// Counts the event store's appends settled by a serial read, by outcome,
/// from its log line (`salestrack_cassandra`'s "settled by a serial read").
#[derive(Clone, Default)]
struct Settles(Arc<std::sync::Mutex<BTreeMap<String, usize>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Settles {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Outcome(Option<String>);
        impl tracing::field::Visit for Outcome {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "outcome" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if event.metadata().target() != "salestrack_cassandra" {
            return;
        }
        let mut outcome = Outcome(None);
        event.record(&mut outcome);
        if let (Some(outcome), Ok(mut counts)) = (outcome.0, self.0.lock()) {
            *counts.entry(outcome).or_default() += 1;
        }
    }
}

/// What one cart's writer saw.
#[derive(Debug)]
struct Written {
    cart: CartId,
    /// Every event whose append was acknowledged (or settled as applied).
    appended: Vec<RecordedEvent>,
    /// Appends answered with an error, each tried again at its version.
    errors: usize,
    /// Of those tries again, the ones that found their own events already
    /// stored: an earlier try's Paxos round that landed after all.
    landed_on_retry: usize,
    /// Of those, the ones the store had settled as not applied: a verdict
    /// that a later round contradicted.
    landed_after_not_applied: usize,
}

/// Appends one event at a time to `cart` until `stop`. An append answered
/// with an error is tried again with the same events at the same version,
/// as the domain's redelivery does; a conflict there must be its own
/// events, stored by an earlier try.
async fn write_cart(
    store: Arc<CassandraEventStore>,
    cart: CartId,
    stop: Arc<AtomicBool>,
) -> Written {
    let mut written = Written {
        cart,
        appended: Vec::new(),
        errors: 0,
        landed_on_retry: 0,
        landed_after_not_applied: 0,
    };
    // Whether the store said the last failed try did not apply.
    let mut settled_not_applied = false;
    let mut retry: Option<Vec<RecordedEvent>> = None;
    // Bounded once told to stop: the try in hand, with two nodes of three.
    let mut deadline: Option<Instant> = None;
    while retry.is_some() || !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            let at = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(60));
            assert!(
                Instant::now() < at,
                "cart {cart}: version {} still failing a minute after the writers stopped \
                 ({} errors)",
                written.appended.len() + 1,
                written.errors
            );
        }
        let after = written.appended.len() as u64;
        let events = retry.take().unwrap_or_else(|| {
            let line = salestrack_port_tests::line_of(cart, "u", "p", 1);
            salestrack_port_tests::recorded(cart, after, vec![Event::OrderPlaced(line)])
        });
        match store.append(cart, after, &events).await {
            Ok(()) => written.appended.extend(events),
            Err(AppendError::Conflict { .. }) if written.errors > 0 => {
                let stored = store
                    .read_stream(cart)
                    .await
                    .expect("read after a conflict");
                assert_eq!(
                    stored.get(written.appended.len()..),
                    Some(events.as_slice()),
                    "cart {cart}: a conflict that is not this writer's earlier try"
                );
                written.landed_on_retry += 1;
                written.landed_after_not_applied += usize::from(settled_not_applied);
                written.appended.extend(events);
            }
            Err(AppendError::Conflict { .. }) => panic!("cart {cart}: a conflict with one writer"),
            Err(e) => {
                written.errors += 1;
                settled_not_applied = e.to_string().contains("did not apply");
                retry = Some(events);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    written
}

/// The coordinator of Paxos rounds in flight SIGKILLed: each such append
/// failed without an answer, and the serial read that settles it (run by a
/// node left) finishes a round a quorum had accepted. Every cart's stream
/// is then exactly what its writer was told: nothing acknowledged missing,
/// nothing refused stored.
#[tokio::test(flavor = "current_thread")]
async fn appends_in_flight_on_a_killed_coordinator_settle_as_paxos_decided() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let settles = Settles::default();
    // `TEST_LOG` prints the store's and the driver's warnings as well.
    let printed = std::env::var_os("TEST_LOG").map(|_| {
        tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(tracing_subscriber::EnvFilter::new("warn"))
    });
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(settles.clone())
            .with(printed),
    );
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut guard = started(&CASSANDRA, CassandraCluster::start).await;
    let Some((contact_points, replicas)) = guard.as_ref().map(|c| (c.contact_points(), c.len()))
    else {
        return;
    };
    let mut config = salestrack_cassandra::CassandraConfig::new(
        &contact_points,
        &format!("settle{}", Uuid::new_v4().simple()),
    );
    config.replication = format!("{{'class': 'SimpleStrategy', 'replication_factor': {replicas}}}");
    let store = Arc::new(CassandraEventStore::connect(config).await.expect("connect"));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            tokio::spawn(write_cart(
                Arc::clone(&store),
                CartId(Uuid::new_v4()),
                Arc::clone(&stop),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    on_cluster(&mut guard, |c| c.kill(1)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut carts = Vec::new();
    for writer in writers {
        carts.push(writer.await.expect("writer"));
    }
    on_cluster(&mut guard, |c| c.restart(1)).await;

    let mut stored_events = 0;
    for written in &carts {
        let cart = written.cart;
        let stream = store.read_stream(cart).await.expect("read");
        assert!(
            stream == written.appended,
            "cart {cart}: {} events stored, {} acknowledged; first difference at version {:?}",
            stream.len(),
            written.appended.len(),
            stream
                .iter()
                .zip(&written.appended)
                .find(|(a, b)| a != b)
                .map(|(a, _)| a.version)
        );
        stored_events += stream.len();
    }
    let settles = settles.0.lock().expect("settles").clone();
    let errors: usize = carts.iter().map(|w| w.errors).sum();
    let landed_on_retry: usize = carts.iter().map(|w| w.landed_on_retry).sum();
    let contradicted: usize = carts.iter().map(|w| w.landed_after_not_applied).sum();
    eprintln!(
        "{WRITERS} writers, {stored_events} events stored, each stream exactly as acknowledged; \
         appends answered with an error {errors}, of which found landed when tried again \
         {landed_on_retry} ({contradicted} after a settle said not applied); settled by a \
         serial read, by outcome: {settles:?}"
    );
    // Appends were in flight on the killed node, and settled. Whether any
    // round had got past its proposal when the node died is chance (most
    // are in their prepare): what lands is counted, and the streams above
    // hold whichever way each went.
    assert!(
        settles.keys().any(|outcome| outcome != "unsettled"),
        "no append in flight on the killed node was settled: {settles:?}"
    );
    // A "did not apply" is final: no later round completed such a try.
    assert_eq!(
        contradicted, 0,
        "tries settled as not applied that landed later"
    );
}

/// Carts appended to at once: enough rounds in flight on the killed node
/// that some are past their proposal.
const WRITERS: usize = 200;
