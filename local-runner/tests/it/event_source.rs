//! The runner's Kafka event source emulation on its own: a handler's
//! partial-batch answers decide what is committed, retried and dead-lettered.

use salestrack_core::ports::{BusRecord, Consumer, OutboundRecord, Producer};
use salestrack_embedded::EmbeddedBus;
use salestrack_local_runner::consumer::{self, LoopConfig, LoopHealth};
use salestrack_msk::{BatchResult, RecordFailure};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "in";
const DLQ: &str = "dlq";

/// What the fake handler does with the record at an offset, per delivery.
#[derive(Clone, Copy)]
enum Script {
    /// Fails, retryably, on the first `n` deliveries.
    FailTimes(u32),
    /// Poison.
    Permanent,
}

struct Harness {
    _dir: tempfile::TempDir,
    bus: EmbeddedBus,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    Harness {
        bus: EmbeddedBus::open(&dir.path().join("bus.sqlite"), 1).expect("bus"),
        _dir: dir,
    }
}

impl Harness {
    /// Batches of 10, brisk polls and retries, poison to [`DLQ`].
    fn config(&self) -> LoopConfig {
        LoopConfig {
            name: "test",
            batch_size: 10,
            poll_wait: Duration::from_millis(20),
            retry_backoff_max: Duration::from_millis(5),
            event_source_arn: "arn:test".into(),
            bootstrap_servers: "test".into(),
            dead_letters: salestrack_msk::DeadLetters {
                producer: Arc::new(self.bus.clone()),
                topic: DLQ.into(),
                stage: "test",
            },
        }
    }

    async fn produce(&self, n: usize) {
        for i in 0..n {
            self.bus
                .send(OutboundRecord {
                    topic: TOPIC.into(),
                    key: b"k".to_vec(),
                    value: format!("record {i}").into_bytes(),
                    headers: vec![],
                })
                .await
                .expect("send");
        }
    }

    /// Runs the loop until `expected` records were handled, returning the
    /// offsets in the order the handler handled them and how often each
    /// offset was delivered.
    async fn run(
        &self,
        script: HashMap<i64, Script>,
        expected: usize,
    ) -> (Vec<i64>, HashMap<i64, u32>) {
        let handled = Arc::new(Mutex::new(Vec::new()));
        let deliveries = Arc::new(Mutex::new(HashMap::<i64, u32>::new()));
        let shutdown = CancellationToken::new();
        let config = self.config();
        let handler = {
            let handled = Arc::clone(&handled);
            let deliveries = Arc::clone(&deliveries);
            move |event: lambda_runtime::LambdaEvent<
                aws_lambda_events::event::kafka::KafkaEvent,
            >| {
                let handled = Arc::clone(&handled);
                let deliveries = Arc::clone(&deliveries);
                let script = script.clone();
                async move {
                    let mut failures = Vec::new();
                    for record in event.payload.records.values().flatten() {
                        let n = {
                            let mut d = deliveries.lock().expect("lock");
                            let n = d.entry(record.offset).or_default();
                            *n += 1;
                            *n
                        };
                        let fail = match script.get(&record.offset) {
                            Some(Script::FailTimes(times)) => (n <= *times).then_some(true),
                            Some(Script::Permanent) => Some(false),
                            None => None,
                        };
                        if let Some(retryable) = fail {
                            failures.push(RecordFailure {
                                topic: TOPIC.into(),
                                partition: record.partition,
                                offset: record.offset,
                                retryable,
                                error: format!("scripted failure of {}", record.offset),
                            });
                            break;
                        }
                        handled.lock().expect("lock").push(record.offset);
                    }
                    BatchResult {
                        report: (),
                        failures,
                    }
                }
            }
        };
        let health = Arc::new(LoopHealth::default());
        let task = tokio::spawn(consumer::run(
            config,
            Box::new(self.bus.consumer("group", &[TOPIC])),
            handler,
            Arc::clone(&health),
            shutdown.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while handled.lock().expect("lock").len() < expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "handled only {:?}",
                handled.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One more poll cycle, to see that nothing else arrives.
        tokio::time::sleep(Duration::from_millis(300)).await;
        shutdown.cancel();
        task.await.expect("loop");
        let handled = handled.lock().expect("lock").clone();
        let deliveries = deliveries.lock().expect("lock").clone();
        (handled, deliveries)
    }

    async fn dead_letters(&self) -> Vec<BusRecord> {
        let n = self.bus.topic_len(DLQ).await.expect("len") as usize;
        let mut consumer = self.bus.consumer("dlq-reader", &[DLQ]);
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(
                consumer
                    .poll(n, Duration::from_secs(1))
                    .await
                    .expect("poll"),
            );
        }
        got
    }

    async fn committed_everything(&self) -> bool {
        let mut consumer = self.bus.consumer("group", &[TOPIC]);
        consumer
            .poll(10, Duration::from_millis(50))
            .await
            .expect("poll")
            .is_empty()
    }
}

fn header<'a>(r: &'a BusRecord, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| std::str::from_utf8(v).expect("utf8"))
        .unwrap_or("")
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_nothing_is_skipped_or_dead_lettered() {
    let h = harness();
    h.produce(4).await;
    let (handled, deliveries) = h.run(HashMap::from([(1, Script::FailTimes(2))]), 4).await;
    assert_eq!(handled, vec![0, 1, 2, 3], "in order, each once");
    assert_eq!(deliveries[&1], 3);
    assert_eq!(
        deliveries[&0], 1,
        "what was handled before the failure is committed"
    );
    assert!(h.dead_letters().await.is_empty());
    assert!(h.committed_everything().await);
}

#[tokio::test]
async fn poison_is_dead_lettered_at_once_with_its_reason_and_the_partition_moves_on() {
    let h = harness();
    h.produce(3).await;
    let (handled, deliveries) = h.run(HashMap::from([(1, Script::Permanent)]), 2).await;
    assert_eq!(handled, vec![0, 2]);
    assert_eq!(deliveries[&1], 1, "poison is not retried");
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].value.as_deref(),
        Some(&b"record 1"[..]),
        "the original value"
    );
    assert_eq!(
        header(&dead[0], "salestrack-dlq-error"),
        "scripted failure of 1"
    );
    assert_eq!(header(&dead[0], "salestrack-dlq-stage"), "test");
    assert_eq!(header(&dead[0], "salestrack-dlq-source-offset"), "1");
    assert!(h.committed_everything().await);
}

/// The runner used to give up on a record after 10 redeliveries (about
/// 43 s of backoff) and dead-letter it even when the failure was retryable:
/// an outage longer than that lost accepted commands. 200 failed deliveries
/// (the backoff made short here, so that it takes a second) are 20 times
/// that budget: the record is still delivered again, never dead-lettered,
/// and the records behind it wait for it.
#[tokio::test]
async fn a_retryable_failure_is_never_dead_lettered_however_often_it_fails() {
    let h = harness();
    h.produce(3).await;
    let (handled, deliveries) = h.run(HashMap::from([(1, Script::FailTimes(200))]), 3).await;
    assert_eq!(handled, vec![0, 1, 2], "in order, each once");
    assert_eq!(deliveries[&1], 201, "200 failures, then it went through");
    assert_eq!(deliveries[&2], 1, "the record behind it waited");
    assert!(h.dead_letters().await.is_empty());
    assert!(h.committed_everything().await);
}

/// Poison behind poison, and poison as a partition's last record of a
/// batch: each goes to the dead-letter topic once, nothing else does.
#[tokio::test]
async fn poison_after_poison_and_at_the_end_of_a_batch_is_dead_lettered_once_each() {
    let h = harness();
    h.produce(12).await;
    let script = HashMap::from([
        (1, Script::Permanent),
        (2, Script::Permanent),
        (9, Script::Permanent),
    ]);
    let (handled, deliveries) = h.run(script, 9).await;
    assert_eq!(handled, vec![0, 3, 4, 5, 6, 7, 8, 10, 11]);
    assert!(deliveries.values().all(|n| *n == 1), "{deliveries:?}");
    let dead = h.dead_letters().await;
    let offsets: Vec<&str> = dead
        .iter()
        .map(|r| header(r, "salestrack-dlq-source-offset"))
        .collect();
    assert_eq!(offsets, vec!["1", "2", "9"]);
    assert!(h.committed_everything().await);
}

/// A member that counts its commits, and says whether it may defer them
/// (the embedded bus may; Kafka may not).
struct Counting {
    inner: Box<dyn Consumer>,
    commits: Arc<std::sync::atomic::AtomicUsize>,
    defer: bool,
}

#[async_trait::async_trait]
impl Consumer for Counting {
    async fn poll(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<BusRecord>, salestrack_core::ports::BackendError> {
        self.inner.poll(max, wait).await
    }
    async fn commit(
        &mut self,
        records: &[BusRecord],
    ) -> Result<(), salestrack_core::ports::BackendError> {
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.commit(records).await
    }
    async fn rewind(&mut self) -> Result<(), salestrack_core::ports::BackendError> {
        self.inner.rewind().await
    }
    fn may_defer_commits(&self) -> bool {
        self.defer
    }
    async fn lag(
        &mut self,
    ) -> Result<Vec<salestrack_core::ports::PartitionLag>, salestrack_core::ports::BackendError>
    {
        self.inner.lag().await
    }
}

#[tokio::test]
async fn a_backlog_is_committed_every_interval_not_every_batch_and_fully_once_worked_off() {
    let (batches, commits) = work_off_a_backlog(true).await;
    // Every batch committed on its own would be 100 commits.
    assert!(
        commits * 2 <= batches,
        "{commits} commits for {batches} full batches"
    );
}

#[tokio::test]
async fn a_member_that_may_not_defer_commits_every_batch_before_the_next_poll() {
    assert_eq!(work_off_a_backlog(false).await, (100, 100));
}

/// Works off 1,000 records in full batches of 10 through a member that may
/// (or may not) defer its commits, until everything is committed; returns
/// the batches and the commits.
async fn work_off_a_backlog(defer: bool) -> (u64, u64) {
    let h = harness();
    h.produce(1_000).await;
    let commits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let config = h.config();
    let handler = {
        let handled = Arc::clone(&handled);
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::event::kafka::KafkaEvent>| {
            let handled = Arc::clone(&handled);
            async move {
                let n = event.payload.records.values().map(Vec::len).sum::<usize>();
                handled.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                BatchResult {
                    report: (),
                    failures: Vec::new(),
                }
            }
        }
    };
    let health = Arc::new(LoopHealth::default());
    let task = tokio::spawn(consumer::run(
        config,
        Box::new(Counting {
            inner: Box::new(h.bus.consumer("group", &[TOPIC])),
            commits: Arc::clone(&commits),
            defer,
        }),
        handler,
        Arc::clone(&health),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handled.load(std::sync::atomic::Ordering::Relaxed) < 1_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backlog was not worked off"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The poll after the backlog finds nothing and commits the rest.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !h.committed_everything().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rest was never committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.expect("loop");
    let (batches, commits) = (
        health.batches(),
        commits.load(std::sync::atomic::Ordering::Relaxed) as u64,
    );
    assert_eq!(batches, 100, "1,000 records in full batches of 10");
    assert_eq!(health.records(), 1_000);
    (batches, commits)
}

/// A member whose polls right after a rewind come back empty, as Kafka's do
/// while its client fetches again after the seek.
struct RefetchLag {
    inner: Box<dyn Consumer>,
    /// Empty polls still to give since the last rewind.
    empty: usize,
}

#[async_trait::async_trait]
impl Consumer for RefetchLag {
    async fn poll(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<BusRecord>, salestrack_core::ports::BackendError> {
        if self.empty > 0 {
            self.empty -= 1;
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        self.inner.poll(max, wait).await
    }
    async fn commit(
        &mut self,
        records: &[BusRecord],
    ) -> Result<(), salestrack_core::ports::BackendError> {
        self.inner.commit(records).await
    }
    async fn rewind(&mut self) -> Result<(), salestrack_core::ports::BackendError> {
        self.empty = 2;
        self.inner.rewind().await
    }
    async fn lag(
        &mut self,
    ) -> Result<Vec<salestrack_core::ports::PartitionLag>, salestrack_core::ports::BackendError>
    {
        self.inner.lag().await
    }
}

/// A record that keeps failing is still waiting while the polls after each
/// rewind come back empty: its failed deliveries add up and its wait grows,
/// and the loop says it is failing at every look. Before, each empty poll
/// was taken for "nothing waits": the count started again at 1, and
/// readiness said `ready` between deliveries while two Cassandra nodes of
/// three were down.
#[tokio::test]
async fn a_waiting_record_keeps_its_count_through_the_empty_polls_after_a_rewind() {
    let h = harness();
    h.produce(1).await;
    let shutdown = CancellationToken::new();
    let handler = |event: lambda_runtime::LambdaEvent<
        aws_lambda_events::event::kafka::KafkaEvent,
    >| async move {
        let failures = event
            .payload
            .records
            .values()
            .flatten()
            .map(|r| RecordFailure {
                topic: r.topic.clone().unwrap_or_default(),
                partition: r.partition,
                offset: r.offset,
                retryable: true,
                error: "no quorum".into(),
            })
            .collect();
        BatchResult {
            report: (),
            failures,
        }
    };
    let health = Arc::new(LoopHealth::default());
    let task = tokio::spawn(consumer::run(
        h.config(),
        Box::new(RefetchLag {
            inner: Box::new(h.bus.consumer("group", &[TOPIC])),
            empty: 0,
        }),
        handler,
        Arc::clone(&health),
        shutdown.clone(),
    ));
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.last().copied().unwrap_or(0) < 8 && tokio::time::Instant::now() < deadline {
        if let Some(waiting) = health.waiting() {
            assert!(health.is_failing(), "a waiting record, yet not failing");
            if seen.last() != Some(&waiting.attempts) {
                seen.push(waiting.attempts);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    shutdown.cancel();
    task.await.expect("loop");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]) && seen.last().copied().unwrap_or(0) >= 8,
        "the failed deliveries of the waiting record, as the loop reported them: {seen:?}"
    );
}
