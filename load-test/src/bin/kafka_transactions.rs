//! `salestrack-kafka-txn`: should the domain publish each batch's events and
//! outcomes in one Kafka transaction (consumers `read_committed`)? This
//! measures the price on Apache Kafka 4 (started here from
//! `crates/test-engines`), side by side in one run:
//!
//! - `idempotent`: what the domain does, the runner's own `KafkaBus`
//!   (idempotent, `acks=all`, every record of the batch in flight at once,
//!   then wait for all deliveries);
//! - `transactional`: the same records from a transactional producer, one
//!   transaction per batch (begin, the same sends, commit).
//!
//! Each batch is shaped like a domain batch: per command, one event on the
//! events topic and one outcome on the outcomes topic, keyed by cart. The
//! two modes take turns batch by batch, so that both see the same machine. Also
//! measured: how long after the publish call returned a consumer has seen
//! the whole batch (`read_uncommitted` for the first mode, `read_committed`
//! for the second, as each mode's consumers would read).
//!
//! ```sh
//! cargo run --release -p salestrack-loadtest --bin salestrack-kafka-txn -- --batches 200 --commands 100
//! ```

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;
use salestrack_core::ports::{OutboundRecord, Producer};
use salestrack_kafka::{KafkaBus, KafkaConfig};
use salestrack_test_engines::{Engine, EngineServer};
use std::time::{Duration, Instant};

/// Each mode's (events, outcomes) topics: a reader sees its mode only.
const PLAIN: [&str; 2] = ["txn-bench.plain.events", "txn-bench.plain.outcomes"];
const TRANSACTED: [&str; 2] = ["txn-bench.txn.events", "txn-bench.txn.outcomes"];

fn arg(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} needs a number")),
        None => Ok(default),
    }
}

/// One batch's records: an event and an outcome per command, 300 bytes
/// each (a typical envelope), keyed by one of 64 carts.
fn batch(topics: [&str; 2], commands: usize, n: usize) -> Vec<OutboundRecord> {
    (0..commands)
        .flat_map(|i| {
            let key = format!("cart-{}", (n * commands + i) % 64).into_bytes();
            topics.map(|topic| OutboundRecord {
                topic: topic.into(),
                key: key.clone(),
                value: vec![b'x'; 300],
                headers: vec![],
            })
        })
        .collect()
}

fn transactional(brokers: &str) -> anyhow::Result<FutureProducer> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", "salestrack-txn-bench")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("compression.type", "lz4")
        .create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    Ok(producer)
}

async fn publish_in_transaction(
    producer: &FutureProducer,
    records: &[OutboundRecord],
) -> anyhow::Result<()> {
    producer.begin_transaction()?;
    let sends = records.iter().map(|r| {
        producer.send(
            FutureRecord::to(&r.topic).key(&r.key).payload(&r.value),
            Duration::from_secs(30),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e)?;
    }
    // Blocking: it waits for the broker's EndTxn answer.
    tokio::task::block_in_place(|| producer.commit_transaction(Duration::from_secs(30)))?;
    Ok(())
}

/// A consumer of `topics` from their ends, at `isolation`.
async fn reader(
    brokers: &str,
    topics: [&str; 2],
    isolation: &str,
) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("txn-bench-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", isolation)
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    consumer.subscribe(&topics)?;
    // Until it owns the partitions and sits at their ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment()?.count() < 8 {
        anyhow::ensure!(Instant::now() < deadline, "no assignment");
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    Ok(consumer)
}

/// Waits until `reader` has received `count` records.
async fn seen(reader: &StreamConsumer, count: usize) -> anyhow::Result<()> {
    for _ in 0..count {
        tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .context("a record never arrived")??;
    }
    Ok(())
}

#[derive(Default)]
struct Figures {
    publish_ms: Vec<f64>,
    visible_ms: Vec<f64>,
    seconds: f64,
    records: usize,
}

impl Figures {
    fn quantile(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    }

    fn print(&self, name: &str) {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.records as f64 / self.seconds.max(1e-9),
            Self::quantile(&self.publish_ms, 0.5),
            Self::quantile(&self.publish_ms, 0.99),
            Self::quantile(&self.visible_ms, 0.5),
            Self::quantile(&self.visible_ms, 0.99),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let batches = arg("--batches", 200)?;
    let commands = arg("--commands", 100)?;
    anyhow::ensure!(
        (1..=10_000).contains(&batches) && (1..=1_000).contains(&commands),
        "--batches 1..=10000, --commands 1..=1000"
    );
    let kafka = EngineServer::start(Engine::Kafka)
        .context("Apache Kafka is not resolved: run crates/test-engines/resolve")?;
    let brokers = kafka.address();
    let bus = KafkaBus::connect(KafkaConfig::new(&brokers))?;
    bus.ensure_topics(&[PLAIN[0], PLAIN[1], TRANSACTED[0], TRANSACTED[1]], 4, 1, 1)
        .await?;
    let txn = transactional(&brokers)?;
    let uncommitted = reader(&brokers, PLAIN, "read_uncommitted").await?;
    let committed = reader(&brokers, TRANSACTED, "read_committed").await?;
    println!(
        "salestrack-kafka-txn: Apache Kafka 4 (one node), {batches} batches per mode of {commands} commands ({} records), the modes taking turns batch by batch",
        commands * 2
    );

    let (mut plain, mut transacted) = (Figures::default(), Figures::default());
    for n in 0..batches {
        let records = batch(PLAIN, commands, n);
        let count = records.len();

        let started = Instant::now();
        bus.send_all(records).await?;
        let published = started.elapsed();
        seen(&uncommitted, count).await?;
        plain.publish_ms.push(published.as_secs_f64() * 1e3);
        plain
            .visible_ms
            .push((started.elapsed() - published).as_secs_f64() * 1e3);
        plain.seconds += published.as_secs_f64();
        plain.records += count;

        let records = batch(TRANSACTED, commands, n);
        let started = Instant::now();
        publish_in_transaction(&txn, &records).await?;
        let published = started.elapsed();
        seen(&committed, count).await?;
        transacted.publish_ms.push(published.as_secs_f64() * 1e3);
        transacted
            .visible_ms
            .push((started.elapsed() - published).as_secs_f64() * 1e3);
        transacted.seconds += published.as_secs_f64();
        transacted.records += count;
    }
    println!("\n| publish mode | records/s while publishing | publish p50 ms | p99 ms | then visible to its consumers p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    plain.print("idempotent, read_uncommitted (today)");
    transacted.print("one transaction per batch, read_committed");
    println!(
        "\ntransactional / idempotent publish time: p50 {:.2}x, p99 {:.2}x",
        Figures::quantile(&transacted.publish_ms, 0.5)
            / Figures::quantile(&plain.publish_ms, 0.5).max(1e-9),
        Figures::quantile(&transacted.publish_ms, 0.99)
            / Figures::quantile(&plain.publish_ms, 0.99).max(1e-9),
    );
    Ok(())
}
