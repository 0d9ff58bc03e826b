//! A consumer loop that plays Lambda's Kafka event source mapping: poll the
//! bus, hand the records to a handler as one MSK `KafkaEvent` batch, and
//! honour the handler's partial-batch answer.
//!
//! - Each partition is committed up to its first failed record (all of it
//!   when nothing failed), then the consumer rewinds, so the next poll
//!   redelivers exactly from the failed records. Handlers are idempotent, so
//!   what they see again is safe.
//! - Commits adapt to the load where the bus has a fixed assignment (the
//!   embedded bus; on Kafka a poll may rebalance, so every batch is
//!   committed before the next poll): after a batch that was not full (no
//!   backlog) the loop commits at once, as it always did; while full
//!   batches follow each other it commits at most every [`COMMIT_EVERY`],
//!   the newest handled record of each partition, so that a backlog is not
//!   worked off one durable offset write per batch. Before a rewind, when a
//!   poll finds nothing and when the loop stops, whatever was handled is
//!   committed. A crash loses at most that interval's commits: those
//!   records are delivered again, which the handlers tolerate.
//! - A record that failed for a reason retrying may cure (a backend down, a
//!   timeout) is delivered again with capped exponential backoff, for as
//!   long as it takes: its partition waits at it, so per-cart order holds and
//!   nothing is skipped, however long the outage. `/health/ready` names the
//!   record, the error and how long it has waited.
//! - Poison (a permanent failure) is not retried: it is copied to the
//!   dead-letter topic with the error and its source position
//!   ([`salestrack_msk::DeadLetters`], as the Lambda functions do), and its
//!   partition moves on at once.
//! - On shutdown the loop stops polling, lets the batch in flight finish and
//!   commits what it handled.

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::{Context, LambdaEvent};
use salestrack_core::ports::{BusRecord, Consumer};
use salestrack_msk::{BatchResult, DeadLetters, RecordFailure};
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Liveness of one loop, read by `/health/ready`.
#[derive(Debug, Default)]
pub struct LoopHealth {
    running: AtomicBool,
    /// True while a record keeps failing for a reason retrying may cure.
    failing: AtomicBool,
    batches: AtomicU64,
    records: AtomicU64,
    /// Partitions the group has assigned to this member.
    partitions: AtomicU64,
    /// Age of the newest record of the last batch when it was handled, in
    /// ms; 0 once a poll finds nothing left.
    record_age_ms: AtomicU64,
    /// Records waiting in the owned partitions, as of the last lag query.
    lag_records: AtomicU64,
    /// A batch is in the handler.
    in_flight: AtomicBool,
    /// When (Unix ms) the loop last moved: started, committed records, or
    /// found nothing to do.
    progress_at_ms: AtomicI64,
    /// Since when (Unix ms) the group has given this member no partition; 0
    /// while it has some.
    unassigned_since_ms: AtomicI64,
    /// The record that has waited longest of those failing now.
    waiting: Mutex<Option<Waiting>>,
}

/// A record its partition waits at: it failed for a reason retrying may
/// cure, and is delivered again until it goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    /// Deliveries that failed so far.
    pub attempts: u32,
    /// When (Unix ms) it first failed.
    pub since_ms: i64,
    /// The last failure.
    pub error: String,
}

impl Waiting {
    /// How long its partition has waited at it.
    pub fn waited(&self) -> Duration {
        since(self.since_ms)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn since(at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms() - at_ms).unwrap_or(0))
}

impl LoopHealth {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    pub fn partitions(&self) -> u64 {
        self.partitions.load(Ordering::Relaxed)
    }

    /// How far behind the bus this loop is, by time: for the projector, the
    /// projection lag (event produced -> projected).
    pub fn record_age(&self) -> Duration {
        Duration::from_millis(self.record_age_ms.load(Ordering::Relaxed))
    }

    /// Records waiting in the owned partitions (refreshed every second).
    pub fn lag_records(&self) -> u64 {
        self.lag_records.load(Ordering::Relaxed)
    }

    /// How long the loop has had work (lag, or a batch in the handler)
    /// without committing anything; `None` when it has none.
    pub fn stalled_for(&self) -> Option<Duration> {
        let busy = self.lag_records() > 0 || self.in_flight.load(Ordering::Relaxed);
        busy.then(|| since(self.progress_at_ms.load(Ordering::Relaxed)))
    }

    /// How long the group has given this member no partition; `None` while
    /// it has some (or the bus does not say).
    pub fn unassigned_for(&self) -> Option<Duration> {
        match self.unassigned_since_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(since(at)),
        }
    }

    /// The record that has waited longest of those failing now, if any.
    pub fn waiting(&self) -> Option<Waiting> {
        self.waiting.lock().map_or(None, |w| w.clone())
    }

    fn set_waiting(&self, waiting: Option<Waiting>) {
        if let Ok(mut w) = self.waiting.lock() {
            *w = waiting;
        }
    }

    fn progressed(&self) {
        self.progress_at_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn owns(&self, partitions: usize) {
        self.partitions.store(partitions as u64, Ordering::Relaxed);
        let since = &self.unassigned_since_ms;
        if partitions > 0 {
            since.store(0, Ordering::Relaxed);
        } else if since.load(Ordering::Relaxed) == 0 {
            since.store(now_ms(), Ordering::Relaxed);
        }
    }
}

/// Publishes each partition's consumer lag as a gauge, at most once a
/// second (a Kafka lag query asks the brokers).
struct LagGauges {
    consumer: &'static str,
    last: Option<std::time::Instant>,
}

impl LagGauges {
    async fn update(&mut self, consumer: &mut dyn Consumer, health: &LoopHealth) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last = Some(std::time::Instant::now());
        match consumer.lag().await {
            Ok(lags) => {
                let waiting: i64 = lags.iter().map(|l| l.lag.max(0)).sum();
                health
                    .lag_records
                    .store(waiting.unsigned_abs(), Ordering::Relaxed);
                for l in lags {
                    metrics::gauge!("salestrack_consumer_lag_records", "consumer" => self.consumer,
                        "topic" => l.topic, "partition" => l.partition.to_string())
                    .set(l.lag as f64);
                }
            }
            Err(e) => tracing::warn!(consumer = self.consumer, error = %e, "lag query failed"),
        }
    }
}

#[derive(Clone)]
pub struct LoopConfig {
    pub name: &'static str,
    pub batch_size: usize,
    pub poll_wait: Duration,
    /// Longest pause between two deliveries of a record that keeps failing
    /// for a retryable reason (the backoff doubles from 100 ms up to it).
    pub retry_backoff_max: Duration,
    pub event_source_arn: String,
    pub bootstrap_servers: String,
    /// Where poison goes (its `stage` is this loop's name).
    pub dead_letters: DeadLetters,
}

/// A (topic, partition).
type Partition = (String, i64);

/// How long after a rewind an empty poll is taken for the fetch still under
/// way, not for "nothing waits": Kafka's client fetches again, in the
/// background, after a seek, so the polls right after one can come back
/// empty while the records to deliver again are still failing. Taking that
/// for "nothing waits" reset the waiting record's deliveries and wait, and
/// turned readiness `ready` between deliveries, while two Cassandra nodes
/// of three were down (`tests/replicated`). Past this, a partition that
/// was taken away in a rebalance no longer holds the loop's state.
const REFETCH_GRACE: Duration = Duration::from_secs(10);

/// While full batches follow each other, the longest a handled record waits
/// for its commit.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Handled records whose commit is deferred: the newest of each partition
/// (a commit covers everything before it).
#[derive(Default)]
struct Uncommitted {
    newest: HashMap<Partition, BusRecord>,
    /// When the oldest of them was handled.
    since: Option<std::time::Instant>,
}

impl Uncommitted {
    fn add(&mut self, done: Vec<BusRecord>) {
        for r in done {
            let partition = (r.topic.clone(), i64::from(r.partition));
            match self.newest.get(&partition) {
                Some(kept) if kept.offset >= r.offset => {}
                _ => {
                    self.newest.insert(partition, r);
                }
            }
        }
        if !self.newest.is_empty() {
            self.since.get_or_insert_with(std::time::Instant::now);
        }
    }

    fn due(&self) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= COMMIT_EVERY)
    }

    /// Commits what is pending, if anything.
    async fn commit(&mut self, consumer: &mut dyn Consumer, name: &'static str) {
        self.since = None;
        if self.newest.is_empty() {
            return;
        }
        let records: Vec<BusRecord> = self.newest.drain().map(|(_, r)| r).collect();
        if let Err(e) = consumer.commit(&records).await {
            // Not committed means redelivered later, which the handlers tolerate.
            tracing::error!(consumer = name, error = %e, "commit failed; the records will be redelivered");
        }
    }
}

/// The records partitions wait at, one per partition.
#[derive(Default)]
struct Attempts(HashMap<Partition, Waiting>);

impl Attempts {
    /// Counts one more failure of this record and returns the total.
    fn record(&mut self, f: &RecordFailure) -> u32 {
        let first = || Waiting {
            topic: f.topic.clone(),
            partition: f.partition,
            offset: f.offset,
            attempts: 0,
            since_ms: now_ms(),
            error: String::new(),
        };
        let entry = self
            .0
            .entry((f.topic.clone(), f.partition))
            .or_insert_with(first);
        if entry.offset != f.offset {
            *entry = first();
        }
        entry.attempts += 1;
        entry.error.clone_from(&f.error);
        entry.attempts
    }

    fn clear(&mut self, partition: &Partition) {
        self.0.remove(partition);
    }

    /// The record that has waited longest.
    fn longest(&self) -> Option<&Waiting> {
        self.0.values().min_by_key(|w| w.since_ms)
    }
}

pub async fn run<H, Fut, R>(
    config: LoopConfig,
    mut consumer: Box<dyn Consumer>,
    handler: H,
    health: Arc<LoopHealth>,
    shutdown: CancellationToken,
) where
    H: Fn(LambdaEvent<KafkaEvent>) -> Fut,
    Fut: Future<Output = BatchResult<R>>,
    R: Debug,
{
    health.running.store(true, Ordering::Relaxed);
    health.progressed();
    tracing::info!(consumer = config.name, "consumer loop started");
    let mut attempts = Attempts::default();
    let mut uncommitted = Uncommitted::default();
    let mut lag = LagGauges {
        consumer: config.name,
        last: None,
    };
    // When the loop last went back to the committed positions (after the
    // pause that followed, when there was one).
    let mut rewound_at: Option<std::time::Instant> = None;
    while !shutdown.is_cancelled() {
        lag.update(consumer.as_mut(), &health).await;
        if let Some(owned) = consumer.owned_partitions() {
            health.owns(owned);
        }
        let polled = tokio::select! {
            polled = consumer.poll(config.batch_size, config.poll_wait) => polled,
            () = shutdown.cancelled() => break,
        };
        let records = match polled {
            Ok(records) if records.is_empty() => {
                uncommitted.commit(consumer.as_mut(), config.name).await;
                if rewound_at.is_some_and(|at| at.elapsed() < REFETCH_GRACE) {
                    // The records to deliver again are not fetched yet:
                    // they still wait.
                    continue;
                }
                rewound_at = None;
                // Nothing to redeliver: no record is failing, none is waiting.
                health.failing.store(false, Ordering::Relaxed);
                attempts.0.clear();
                health.set_waiting(None);
                metrics::gauge!("salestrack_consumer_waiting_seconds", "consumer" => config.name)
                    .set(0.0);
                health.record_age_ms.store(0, Ordering::Relaxed);
                if health.lag_records() == 0 {
                    health.progressed();
                }
                continue;
            }
            Ok(records) => records,
            Err(e) => {
                tracing::error!(consumer = config.name, error = %e, "poll failed");
                health.failing.store(true, Ordering::Relaxed);
                pause(Duration::from_secs(1), &shutdown).await;
                continue;
            }
        };
        let batch = salestrack_msk::batch(
            &records,
            &config.event_source_arn,
            &config.bootstrap_servers,
        );
        let newest = records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or_default();
        let age = (chrono::Utc::now() - newest).num_milliseconds().max(0);
        health
            .record_age_ms
            .store(age.unsigned_abs(), Ordering::Relaxed);
        // The handler call itself is never cancelled: a batch in flight finishes.
        let started = std::time::Instant::now();
        health.in_flight.store(true, Ordering::Relaxed);
        let result = handler(LambdaEvent::new(batch.clone(), Context::default())).await;
        health.in_flight.store(false, Ordering::Relaxed);
        let outcome = if result.failures.is_empty() {
            "ok"
        } else {
            "partial"
        };
        metrics::histogram!("salestrack_consumer_batch_seconds", "consumer" => config.name, "result" => outcome)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("salestrack_consumer_batches_total", "consumer" => config.name, "result" => outcome).increment(1);
        let batch_records = records.len();
        metrics::histogram!("salestrack_consumer_batch_records", "consumer" => config.name)
            .record(batch_records as f64);

        let settled = settle(&config, &batch, result.failures, &mut attempts).await;
        let done: Vec<BusRecord> = records.into_iter().filter(|r| settled.is_done(r)).collect();
        for r in &done {
            let partition = (r.topic.clone(), i64::from(r.partition));
            if !settled.stop_at.contains_key(&partition) {
                attempts.clear(&partition);
            }
        }
        let longest = attempts.longest().cloned();
        metrics::gauge!("salestrack_consumer_waiting_seconds", "consumer" => config.name)
            .set(longest.as_ref().map_or(0.0, |w| w.waited().as_secs_f64()));
        health.set_waiting(longest);
        let handled = done.len() as u64;
        let full = batch_records >= config.batch_size;
        if !done.is_empty() {
            health.progressed();
            metrics::counter!("salestrack_consumer_records_total", "consumer" => config.name)
                .increment(handled);
            uncommitted.add(done);
        }
        // A backlog defers the commit where the bus allows it; no backlog,
        // a rewind coming, or the interval up: commit now.
        if !consumer.may_defer_commits()
            || !full
            || !settled.stop_at.is_empty()
            || uncommitted.due()
        {
            uncommitted.commit(consumer.as_mut(), config.name).await;
        }
        health.batches.fetch_add(1, Ordering::Relaxed);
        health.records.fetch_add(handled, Ordering::Relaxed);
        health
            .failing
            .store(settled.retry_in.is_some(), Ordering::Relaxed);
        if settled.stop_at.is_empty() {
            continue;
        }
        // Back to the committed positions: the records to deliver again come
        // first. A rewind that failed is finished by the next poll before
        // it hands over anything (the `Consumer` contract).
        if let Err(e) = consumer.rewind().await {
            tracing::error!(consumer = config.name, error = %e, "rewind failed; the next poll tries again first");
        }
        if let Some(delay) = settled.retry_in {
            if !pause(delay, &shutdown).await {
                break;
            }
        }
        rewound_at = Some(std::time::Instant::now());
    }
    uncommitted.commit(consumer.as_mut(), config.name).await;
    health.running.store(false, Ordering::Relaxed);
    tracing::info!(consumer = config.name, "consumer loop stopped");
}

/// Where each partition that did not get through its batch stands.
struct Settled {
    /// Per such partition: the first offset not done.
    stop_at: HashMap<Partition, i64>,
    /// Set when a record waits on a retryable failure: how long to pause
    /// before delivering it again.
    retry_in: Option<Duration>,
}

impl Settled {
    fn is_done(&self, r: &BusRecord) -> bool {
        self.stop_at
            .get(&(r.topic.clone(), i64::from(r.partition)))
            .is_none_or(|stop| r.offset < *stop)
    }
}

/// Dead-letters the batch's poison, and counts and schedules the retry of
/// every record that failed for a retryable reason: it waits, however many
/// attempts that takes.
async fn settle(
    config: &LoopConfig,
    batch: &KafkaEvent,
    failures: Vec<RecordFailure>,
    attempts: &mut Attempts,
) -> Settled {
    for failure in &failures {
        metrics::counter!("salestrack_consumer_record_failures_total", "consumer" => config.name,
            "retryable" => if failure.retryable { "true" } else { "false" })
        .increment(1);
    }
    let diverted = config.dead_letters.divert(batch, failures).await;
    if !diverted.dead_lettered.is_empty() {
        metrics::counter!("salestrack_consumer_dead_lettered_total", "consumer" => config.name)
            .increment(diverted.dead_lettered.len() as u64);
    }
    let mut settled = Settled {
        stop_at: HashMap::new(),
        retry_in: None,
    };
    for failure in &diverted.waiting {
        let attempt = attempts.record(failure);
        let delay = backoff(attempt).min(config.retry_backoff_max);
        settled.retry_in = Some(settled.retry_in.map_or(delay, |d| d.min(delay)));
        tracing::warn!(consumer = config.name, topic = %failure.topic, partition = failure.partition,
            offset = failure.offset, attempt, retry_in = ?delay, error = %failure.error,
            "record failed; its partition waits for it");
    }
    for failure in &diverted.dead_lettered {
        attempts.clear(&(failure.topic.clone(), failure.partition));
    }
    for failure in diverted.redeliver_from() {
        settled
            .stop_at
            .insert((failure.topic.clone(), failure.partition), failure.offset);
    }
    settled
}

/// 100 ms, doubling, at most 10 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << attempt.saturating_sub(1).min(7))
        .min(Duration::from_secs(10))
}

/// Sleeps unless shutdown comes first; true if the full delay passed.
async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shutdown.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(offset: i64) -> RecordFailure {
        RecordFailure {
            topic: "t".into(),
            partition: 0,
            offset,
            retryable: true,
            error: "boom".into(),
        }
    }

    #[test]
    fn attempts_count_per_record_and_restart_when_the_partition_moves() {
        let mut attempts = Attempts::default();
        assert_eq!(attempts.record(&failure(5)), 1);
        assert_eq!(attempts.record(&failure(5)), 2);
        assert_eq!(attempts.record(&failure(6)), 1);
        assert_eq!(attempts.longest().map(|w| w.offset), Some(6));
        attempts.clear(&("t".into(), 0));
        assert_eq!(attempts.record(&failure(6)), 1);
    }

    /// A record that keeps failing holds the loop: it says for how long,
    /// with the records waiting; once the record goes through, it is not
    /// stalled any more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_loop_that_cannot_commit_says_how_long_it_has_stalled() {
        use salestrack_core::ports::{OutboundRecord, Producer};
        let dir = tempfile::tempdir().expect("tempdir");
        let bus =
            salestrack_embedded::EmbeddedBus::open(&dir.path().join("bus.sqlite"), 1).expect("bus");
        bus.send(OutboundRecord {
            topic: "t".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            headers: vec![],
        })
        .await
        .expect("send");
        let config = LoopConfig {
            name: "test",
            batch_size: 10,
            poll_wait: Duration::from_millis(20),
            retry_backoff_max: Duration::from_millis(50),
            event_source_arn: "arn:test".into(),
            bootstrap_servers: "embedded".into(),
            dead_letters: DeadLetters {
                producer: Arc::new(bus.clone()),
                topic: "dlq".into(),
                stage: "test",
            },
        };
        let healed = Arc::new(AtomicBool::new(false));
        let handler = {
            let healed = Arc::clone(&healed);
            move |event: LambdaEvent<KafkaEvent>| {
                let failures = if healed.load(Ordering::Relaxed) {
                    Vec::new()
                } else {
                    event
                        .payload
                        .records
                        .values()
                        .flatten()
                        .map(|r| RecordFailure {
                            topic: r.topic.clone().unwrap_or_default(),
                            partition: r.partition,
                            offset: r.offset,
                            retryable: true,
                            error: "the store times out".into(),
                        })
                        .collect()
                };
                std::future::ready(BatchResult {
                    report: (),
                    failures,
                })
            }
        };
        let health = Arc::new(LoopHealth::default());
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(run(
            config,
            Box::new(bus.consumer("g", &["t"])),
            handler,
            Arc::clone(&health),
            shutdown.clone(),
        ));
        let until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "never {what}");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        until("stalled for a second", &|| {
            health.stalled_for() > Some(Duration::from_secs(1))
        });
        assert_eq!(health.lag_records(), 1);
        assert_eq!(health.unassigned_for(), None, "it owns its partition");
        let waiting = health.waiting().expect("a record waits");
        assert_eq!((waiting.topic.as_str(), waiting.offset), ("t", 0));
        assert!(waiting.attempts > 1, "{waiting:?}");
        assert_eq!(waiting.error, "the store times out");
        assert!(waiting.waited() > Duration::from_millis(500), "{waiting:?}");

        healed.store(true, Ordering::Relaxed);
        until("moving again", &|| health.stalled_for().is_none());
        assert_eq!(health.records(), 1);
        assert_eq!(health.waiting(), None);
        shutdown.cancel();
        running.await.expect("loop");
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_secs(10));
    }
}
