//! The bus ports on Apache Kafka, through `rdkafka` (librdkafka).
//!
//! - [`KafkaBus`] is the [`Producer`]: idempotent, `acks=all`, keyed by cart
//!   id, so a `send` that returns has been acknowledged by every in-sync
//!   replica and retries never duplicate or reorder a partition's records.
//! - [`KafkaConsumer`] is a group member (`subscribe`, never `assign`) with
//!   auto-commit off: offsets move only through [`Consumer::commit`], and
//!   [`Consumer::rewind`] seeks back to the group's committed offsets.
//! - [`KafkaBus::ensure_topics`] creates missing topics, since brokers may not
//!   auto-create them.
//!
//! Rebalances only happen inside `poll` (librdkafka serves them from the
//! consumer queue), and the runner commits each batch before it polls again,
//! so a revoked partition never has handled-but-uncommitted records and two
//! members never work on one partition at once, as long as a batch takes
//! less than `max.poll.interval.ms`.

pub mod msk_iam;
#[cfg(feature = "test-broker")]
pub mod test_broker;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use salestrack_core::ports::{
    BackendError, BusRecord, Consumer, Delivery, OutboundRecord, PartitionLag, Producer,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BACKEND: &str = "kafka";

fn backend_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(BACKEND, e)
}

/// How to reach the cluster and how consumers batch. Built from the
/// `SALESTRACK_KAFKA_*` settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,host:port`.
    pub brokers: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `AWS_MSK_IAM` (with a
    /// SASL protocol; see [`msk_iam`]).
    pub sasl_mechanism: Option<String>,
    /// The MSK cluster's region, for `AWS_MSK_IAM`.
    pub aws_region: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates.
    pub ssl_ca_location: Option<String>,
    /// Most time the broker holds a fetch open waiting for data.
    pub fetch_wait: Duration,
    /// After the first record of a poll, how long to keep filling the batch
    /// (the event source mapping's batching window).
    pub batch_window: Duration,
    /// How long a produce may take before it fails (retries included).
    pub delivery_timeout: Duration,
    /// How long the producer waits for more records before sending a
    /// batch (`linger.ms`). Every `202` waits for its record's batch, so
    /// this is latency added to a lone request; under load batches fill
    /// while earlier ones are in flight anyway.
    pub linger: Duration,
    /// How long the group waits for a silent member (a crashed runner)
    /// before giving its partitions to the others.
    pub session_timeout: Duration,
    /// Static group membership (KIP-345): a stable name per runner
    /// instance, so a restarted instance takes its partitions back at once
    /// instead of waiting for its old session to expire.
    pub group_instance_id: Option<String>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            security_protocol: "plaintext".into(),
            sasl_mechanism: None,
            aws_region: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            fetch_wait: Duration::from_millis(10),
            batch_window: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(30),
            linger: Duration::ZERO,
            session_timeout: Duration::from_secs(10),
            group_instance_id: None,
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("security.protocol", &self.security_protocol)
            .set("client.id", "salestrack")
            // After a broker restart, reconnect within a second or two
            // (librdkafka backs off up to 10 s between attempts by default,
            // which kept readiness and the consumers down that much longer
            // than the broker).
            .set("reconnect.backoff.max.ms", "1000");
        let sasl_mechanism = self.sasl_mechanism.as_ref().map(|m| {
            if m.eq_ignore_ascii_case(msk_iam::MECHANISM) {
                "OAUTHBEARER".to_owned()
            } else {
                m.clone()
            }
        });
        let optional = [
            ("sasl.mechanism", &sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
            ("ssl.ca.location", &self.ssl_ca_location),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                c.set(key, value);
            }
        }
        c
    }

    /// What every client of this config carries: the MSK IAM signer when
    /// that is the mechanism.
    fn context(&self) -> Result<BusContext, BackendError> {
        let iam = self
            .sasl_mechanism
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(msk_iam::MECHANISM));
        if !iam {
            return Ok(BusContext { msk_iam: None });
        }
        let region = self.aws_region.as_deref().ok_or_else(|| {
            backend_error(
                "AWS_MSK_IAM needs the cluster's region: set SALESTRACK_KAFKA_AWS_REGION or AWS_REGION",
            )
        })?;
        let signer = msk_iam::MskIam::from_environment(region).map_err(backend_error)?;
        Ok(BusContext {
            msk_iam: Some(signer),
        })
    }
}

/// The client context of the producer and the admin client; the group
/// consumers' [`GroupContext`] embeds one.
#[derive(Clone)]
struct BusContext {
    msk_iam: Option<msk_iam::MskIam>,
}

impl ClientContext for BusContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    /// Only called when `sasl.mechanism` is OAUTHBEARER, which only
    /// `AWS_MSK_IAM` sets.
    fn generate_oauth_token(
        &self,
        _: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        let token = self
            .msk_iam
            .as_ref()
            .ok_or("OAUTHBEARER is only supported as AWS_MSK_IAM")?
            .issue();
        if let Err(e) = &token {
            tracing::error!(error = %e, "signing the MSK IAM token failed");
        }
        token
    }
}

/// The cluster connection: the producer, a factory of group consumers and
/// topic administration.
#[derive(Clone)]
pub struct KafkaBus {
    config: KafkaConfig,
    producer: FutureProducer<BusContext>,
}

impl KafkaBus {
    /// Builds the producer; no request goes out until the first send.
    pub fn connect(config: KafkaConfig) -> Result<KafkaBus, BackendError> {
        let producer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("compression.type", "lz4")
            // Bounded memory under overload: past 32 MiB of records not yet
            // acknowledged, a send waits for room (librdkafka's default is
            // 1 GiB).
            .set("queue.buffering.max.kbytes", "32768")
            .set(
                "delivery.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            )
            .create_with_context(config.context()?)
            .map_err(backend_error)?;
        Ok(KafkaBus { config, producer })
    }

    pub fn brokers(&self) -> &str {
        &self.config.brokers
    }

    /// Creates the topics that do not exist yet, with `replication` replicas
    /// of which `min_insync` must hold a record before an `acks=all` write
    /// is acknowledged (`min.insync.replicas`); existing ones are left as
    /// they are.
    pub async fn ensure_topics(
        &self,
        topics: &[&str],
        partitions: i32,
        replication: i32,
        min_insync: i32,
    ) -> Result<(), BackendError> {
        if !(1..=replication).contains(&min_insync) {
            return Err(backend_error(format!(
                "min.insync.replicas {min_insync} must be between 1 and the replication factor {replication}"
            )));
        }
        let min_insync_text = min_insync.to_string();
        let admin: AdminClient<BusContext> = self
            .config
            .client()
            .create_with_context(self.config.context()?)
            .map_err(backend_error)?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| {
                NewTopic::new(t, partitions, TopicReplication::Fixed(replication))
                    .set("min.insync.replicas", &min_insync_text)
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&new, &options)
            .await
            .map_err(backend_error)?;
        for result in results {
            match result {
                Ok(topic) => {
                    tracing::info!(topic, partitions, replication, min_insync, "topic created")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(backend_error(format!("creating topic {topic}: {code}")))
                }
            }
        }
        Ok(())
    }

    /// A member of consumer group `group`, subscribed to `topics`; a new
    /// group starts from the earliest record.
    pub fn consumer(&self, group: &str, topics: &[&str]) -> Result<KafkaConsumer, BackendError> {
        let mut client = self.config.client();
        if let Some(instance) = &self.config.group_instance_id {
            client.set("group.instance.id", format!("{group}-{instance}"));
        }
        self.member(client, group, topics, "earliest")
    }

    /// The only member of `group`, subscribed to `topics` from their end
    /// (`auto.offset.reset=latest`): for readers of notices that only care
    /// what happens from now on, and commit nothing.
    pub fn follower(&self, group: &str, topics: &[&str]) -> Result<KafkaConsumer, BackendError> {
        self.member(self.config.client(), group, topics, "latest")
    }

    fn member(
        &self,
        mut client: ClientConfig,
        group: &str,
        topics: &[&str],
        offset_reset: &str,
    ) -> Result<KafkaConsumer, BackendError> {
        let consumer: StreamConsumer<GroupContext> = client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", offset_reset)
            .set("isolation.level", "read_committed")
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait.as_millis().to_string(),
            )
            .set("partition.assignment.strategy", "roundrobin")
            // Prefetch what a few batches need (at most 1,000 records a
            // partition, 4 MiB in all), not librdkafka's 100,000 records
            // and 64 MiB per consumer: under a backlog those defaults kept
            // hundreds of MiB of records in memory across the loops.
            .set("queued.max.messages.kbytes", "4096")
            .set("queued.min.messages", "1000")
            .set(
                "session.timeout.ms",
                self.config.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.config.session_timeout.as_millis() / 3).to_string(),
            )
            .set("statistics.interval.ms", "1000")
            .create_with_context(GroupContext {
                bus: self.config.context()?,
                group: group.to_owned(),
                member: format!(
                    "{group}#{}",
                    MEMBERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ),
                revoked: std::sync::Mutex::new(Vec::new()),
                assigned: std::sync::Mutex::new(Vec::new()),
                owned: std::sync::atomic::AtomicUsize::new(0),
                lags: std::sync::Mutex::new(Vec::new()),
            })
            .map_err(backend_error)?;
        consumer.subscribe(topics).map_err(backend_error)?;
        Ok(KafkaConsumer {
            inner: Arc::new(consumer),
            batch_window: self.config.batch_window,
            touched: BTreeSet::new(),
            resume: BTreeMap::new(),
        })
    }

    /// Reaches a broker and reads the cluster metadata (for readiness).
    pub async fn ping(&self) -> Result<(), BackendError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(drop)
                .map_err(backend_error)
        })
        .await
        .map_err(backend_error)?
    }
}

#[async_trait]
impl Producer for KafkaBus {
    async fn send(&self, record: OutboundRecord) -> Result<Delivery, BackendError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let future = FutureRecord::to(&record.topic)
            .key(&record.key)
            .payload(&record.value)
            .headers(headers);
        match self
            .producer
            .send(future, self.config.delivery_timeout)
            .await
        {
            Ok(delivery) => Ok(Delivery {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((e, _)) => {
                metrics::counter!("salestrack_kafka_produce_errors_total").increment(1);
                Err(backend_error(format!("producing to {}: {e}", record.topic)))
            }
        }
    }

    /// All in flight at once; the idempotent producer keeps each partition's
    /// order, so the records of one key land in the order given.
    async fn send_all(&self, records: Vec<OutboundRecord>) -> Result<Vec<Delivery>, BackendError> {
        futures::future::join_all(records.into_iter().map(|r| self.send(r)))
            .await
            .into_iter()
            .collect()
    }
}

/// Numbers the consumers of this process, for their log lines.
static MEMBERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Logs the group's rebalances and remembers revoked partitions, so a poll
/// that saw a rebalance drops what it fetched from them: their new owner
/// starts from the group's commit, and no record is handled twice at once.
struct GroupContext {
    bus: BusContext,
    group: String,
    /// Tells this member's log lines from the other members' of a process.
    member: String,
    revoked: std::sync::Mutex<Vec<(String, i32)>>,
    /// Partitions assigned since the last poll looked.
    assigned: std::sync::Mutex<Vec<(String, i32)>>,
    /// Partitions this member owns (assignment is eager: each rebalance
    /// revokes everything, then assigns the whole new set).
    owned: std::sync::atomic::AtomicUsize,
    /// Per assigned partition, from librdkafka's last statistics.
    lags: std::sync::Mutex<Vec<PartitionLag>>,
}

impl ClientContext for GroupContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.bus.generate_oauth_token(config)
    }

    /// librdkafka reports each fetched partition's lag (high watermark
    /// minus committed offset) from its own fetch state: no broker call.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lags = statistics
            .topics
            .into_iter()
            .flat_map(|(topic, t)| {
                t.partitions.into_values().filter_map(move |p| {
                    (p.partition >= 0 && p.consumer_lag >= 0 && p.fetch_state == "active").then(
                        || PartitionLag {
                            topic: topic.clone(),
                            partition: p.partition,
                            lag: p.consumer_lag,
                        },
                    )
                })
            })
            .collect();
        if let Ok(mut current) = self.lags.lock() {
            *current = lags;
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.group, member = %self.member, partitions = ?partition_names(tpl), "partitions revoked");
                self.owned.store(0, std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut revoked) = self.revoked.lock() {
                    revoked.extend(
                        tpl.elements()
                            .iter()
                            .map(|e| (e.topic().to_owned(), e.partition())),
                    );
                }
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, member = %self.member, partitions = ?partition_names(tpl), "partitions assigned");
                self.owned
                    .store(tpl.count(), std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut assigned) = self.assigned.lock() {
                    assigned.extend(
                        tpl.elements()
                            .iter()
                            .map(|e| (e.topic().to_owned(), e.partition())),
                    );
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance error")
            }
        }
    }
}

/// `topic-partition: first..=last` of each partition in `records`.
fn offset_ranges(records: &[BusRecord]) -> Vec<String> {
    let mut ranges: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    for r in records {
        let range = ranges
            .entry((r.topic.clone(), r.partition))
            .or_insert((r.offset, r.offset));
        range.0 = range.0.min(r.offset);
        range.1 = range.1.max(r.offset);
    }
    ranges
        .into_iter()
        .map(|((topic, partition), (first, last))| format!("{topic}-{partition}: {first}..={last}"))
        .collect()
}

fn partition_names(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}-{}", e.topic(), e.partition()))
        .collect()
}

/// A consumer-group member; see the crate docs for its guarantees.
pub struct KafkaConsumer {
    inner: Arc<StreamConsumer<GroupContext>>,
    batch_window: Duration,
    /// Partitions polled since the last rewind, which may need seeking back.
    touched: BTreeSet<(String, i32)>,
    /// Partitions sought back to their committed offset whose first record
    /// since has not arrived yet.
    resume: BTreeMap<(String, i32), Resume>,
}

/// How far before a committed offset a rewind seeks, so that it lands on
/// the start of the producer batch holding that offset. Kafka hands out the
/// whole batch around a fetch offset; some brokers (tansu 0.6) only batches
/// that start at or after it, so fetching from inside a batch silently
/// skips its remaining records. The records before the commit are dropped
/// here, so the lookback costs a few re-read records, nothing more.
const REWIND_LOOKBACK: i64 = 64;

/// A partition sought to `committed - lookback`, waiting for the record at
/// `committed`.
#[derive(Debug, Clone, Copy)]
struct Resume {
    committed: i64,
    lookback: i64,
}

impl Resume {
    /// Where to seek: `lookback` records before the commit, or the start.
    fn seek_offset(self) -> Offset {
        match self.committed - self.lookback {
            o if o > 0 => Offset::Offset(o),
            _ => Offset::Beginning,
        }
    }
}

/// What [`KafkaConsumer::screen`] makes of a record of a resumed partition.
#[derive(Debug, PartialEq, Eq)]
enum Screened {
    /// Hand it over.
    Keep,
    /// Before the commit: already handled.
    Drop,
    /// Past the commit with the records between them never delivered: seek
    /// further back (everything after it in this poll is dropped too).
    SeekBack(Offset),
}

fn timestamp(m: &BorrowedMessage<'_>) -> DateTime<Utc> {
    m.timestamp()
        .to_millis()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or_else(Utc::now)
}

fn to_bus_record(m: &BorrowedMessage<'_>) -> BusRecord {
    BusRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: timestamp(m),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// One record of a poll against the partition's pending [`Resume`], which
/// it settles or widens.
fn screen(resume: &mut BTreeMap<(String, i32), Resume>, r: &BusRecord) -> Screened {
    let partition = (r.topic.clone(), r.partition);
    let Some(pending) = resume.get_mut(&partition) else {
        return Screened::Keep;
    };
    if r.offset < pending.committed {
        return Screened::Drop;
    }
    if r.offset > pending.committed {
        if pending.seek_offset() != Offset::Beginning {
            pending.lookback = pending.lookback.saturating_mul(4);
            return Screened::SeekBack(pending.seek_offset());
        }
        tracing::error!(
            topic = %r.topic,
            partition = r.partition,
            committed = pending.committed,
            next = r.offset,
            "records between the committed offset and the first one left are gone from the log"
        );
        metrics::counter!("salestrack_kafka_offsets_skipped_total", "topic" => r.topic.clone())
            .increment(u64::try_from(r.offset - pending.committed).unwrap_or(0));
    }
    resume.remove(&partition);
    Screened::Keep
}

impl KafkaConsumer {
    /// The next record, or `None` when `wait` passes first.
    async fn next(&self, wait: Duration) -> Result<Option<BusRecord>, BackendError> {
        match tokio::time::timeout(wait, self.inner.recv()).await {
            Err(_) => Ok(None),
            Ok(Ok(m)) => Ok(Some(to_bus_record(&m))),
            Ok(Err(e)) => Err(backend_error(e)),
        }
    }

    /// Up to `max` records: waits `wait` for the first, then fills the batch
    /// for at most the batching window.
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<BusRecord>, BackendError> {
        let Some(first) = self.next(wait).await? else {
            return Ok(Vec::new());
        };
        let mut records = vec![first];
        let window_ends = Instant::now() + self.batch_window;
        while records.len() < max {
            let left = window_ends.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(Some(r)) => records.push(r),
                Ok(None) => break,
                // The position is already past what arrived: dropping it
                // here would skip it. Hand it over; a lasting error shows
                // again on the next poll.
                Err(e) => {
                    tracing::warn!(error = %e, received = records.len(), "consumer error mid-batch; handing over what arrived");
                    break;
                }
            }
        }
        Ok(records)
    }

    /// Checks the records of partitions just sought back: drops those before
    /// the commit, and when the first one after it is missing (the broker
    /// resumed past a batch), seeks further back, four times as far each
    /// time. From the very beginning, a gap is real (retention deleted the
    /// records): it is logged and counted, and the partition moves on.
    async fn screen(&mut self, records: Vec<BusRecord>) -> Result<Vec<BusRecord>, BackendError> {
        if self.resume.is_empty() {
            return Ok(records);
        }
        let mut kept = Vec::with_capacity(records.len());
        let mut seeks: BTreeMap<(String, i32), Offset> = BTreeMap::new();
        for r in records {
            let partition = (r.topic.clone(), r.partition);
            if seeks.contains_key(&partition) {
                continue;
            }
            match screen(&mut self.resume, &r) {
                Screened::Keep => kept.push(r),
                Screened::Drop => {}
                Screened::SeekBack(offset) => {
                    seeks.insert(partition, offset);
                }
            }
        }
        if !seeks.is_empty() {
            tracing::info!(partitions = ?seeks, "records after the committed offset were not delivered: seeking further back");
            self.blocking(move |c| {
                for ((topic, partition), offset) in seeks {
                    c.seek(&topic, partition, offset, Duration::from_secs(10))?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(kept)
    }

    /// Runs a blocking librdkafka call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StreamConsumer<GroupContext>) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(backend_error)?
            .map_err(backend_error)
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<BusRecord>, BackendError> {
        let records = self.fetch(max, wait).await?;
        // Rebalances run inside `recv`, so only during a poll, never while a
        // batch is handled. After one, nothing fetched from a partition that
        // was revoked or (re)assigned during this poll is handed over, and
        // every such partition still ours is sought back to the group's
        // committed offset (see `REWIND_LOOKBACK` for why librdkafka's own
        // resume position is not trusted).
        let context = self.inner.context();
        let moved: BTreeSet<(String, i32)> = [&context.revoked, &context.assigned]
            .into_iter()
            .map(|list| {
                list.lock()
                    .map(|mut l| std::mem::take(&mut *l))
                    .map_err(|_| backend_error("poisoned rebalance state"))
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let (records, dropped): (Vec<BusRecord>, Vec<BusRecord>) = records
            .into_iter()
            .partition(|r| !moved.contains(&(r.topic.clone(), r.partition)));
        if !moved.is_empty() {
            tracing::info!(
                member = %context.member,
                dropped = dropped.len(),
                partitions = moved.len(),
                "rebalanced: seeking the partitions still assigned to their committed offsets"
            );
            let kept = std::mem::replace(&mut self.touched, moved);
            let rewound = self.rewind().await;
            self.touched = kept;
            rewound?;
        }
        let records = self.screen(records).await?;
        for r in &records {
            self.touched.insert((r.topic.clone(), r.partition));
        }
        if tracing::enabled!(tracing::Level::DEBUG) && !records.is_empty() {
            tracing::debug!(member = %self.inner.context().member, ranges = ?offset_ranges(&records), "polled");
        }
        Ok(records)
    }

    async fn commit(&mut self, records: &[BusRecord]) -> Result<(), BackendError> {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for r in records {
            let entry = next.entry((r.topic.clone(), r.partition)).or_insert(0);
            *entry = (*entry).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        tracing::debug!(member = %self.inner.context().member, offsets = ?next, "committing");
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(backend_error)?;
        }
        self.blocking(move |c| c.commit(&tpl, CommitMode::Sync))
            .await
    }

    fn owned_partitions(&self) -> Option<usize> {
        Some(
            self.inner
                .context()
                .owned
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// As of librdkafka's last statistics (every second): partitions this
    /// member fetches, high watermark minus committed offset.
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BackendError> {
        self.inner
            .context()
            .lags
            .lock()
            .map(|l| l.clone())
            .map_err(|_| backend_error("poisoned lag state"))
    }

    /// Seeks every partition polled since the last rewind back to the group's
    /// committed offset (the beginning if none); see [`REWIND_LOOKBACK`].
    /// Partitions no longer assigned are skipped: their new owner starts from
    /// the commit anyway.
    async fn rewind(&mut self) -> Result<(), BackendError> {
        let touched = std::mem::take(&mut self.touched);
        if touched.is_empty() {
            return Ok(());
        }
        let sought = self
            .blocking(move |c| {
                let assigned = c.assignment()?;
                let mut tpl = TopicPartitionList::new();
                for (topic, partition) in &touched {
                    if assigned.find_partition(topic, *partition).is_some() {
                        tpl.add_partition(topic, *partition);
                    }
                }
                let mut sought = Vec::new();
                if tpl.count() == 0 {
                    return Ok(sought);
                }
                let committed = c.committed_offsets(tpl, Duration::from_secs(10))?;
                for e in committed.elements() {
                    let resume = match e.offset() {
                        Offset::Offset(committed) => Some(Resume {
                            committed,
                            lookback: REWIND_LOOKBACK,
                        }),
                        _ => None,
                    };
                    let offset = resume.map_or(Offset::Beginning, Resume::seek_offset);
                    tracing::debug!(
                        topic = e.topic(),
                        partition = e.partition(),
                        ?resume,
                        ?offset,
                        "seeking back to the committed offset"
                    );
                    c.seek(e.topic(), e.partition(), offset, Duration::from_secs(10))?;
                    sought.push(((e.topic().to_owned(), e.partition()), resume));
                }
                Ok(sought)
            })
            .await?;
        for (partition, resume) in sought {
            match resume {
                Some(resume) => self.resume.insert(partition, resume),
                None => self.resume.remove(&partition),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> BusRecord {
        BusRecord {
            topic: "t".into(),
            partition,
            offset,
            timestamp: Utc::now(),
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    fn resuming(committed: i64) -> BTreeMap<(String, i32), Resume> {
        BTreeMap::from([(
            ("t".to_owned(), 0),
            Resume {
                committed,
                lookback: REWIND_LOOKBACK,
            },
        )])
    }

    #[test]
    fn a_rewind_seeks_before_the_commit_and_never_below_the_start() {
        let at = |committed| {
            Resume {
                committed,
                lookback: REWIND_LOOKBACK,
            }
            .seek_offset()
        };
        assert_eq!(at(1_000), Offset::Offset(1_000 - REWIND_LOOKBACK));
        assert_eq!(at(REWIND_LOOKBACK), Offset::Beginning);
        assert_eq!(at(3), Offset::Beginning);
    }

    #[test]
    fn records_before_the_commit_are_dropped_until_the_committed_one_arrives() {
        let mut resume = resuming(100);
        assert_eq!(screen(&mut resume, &record(0, 40)), Screened::Drop);
        assert_eq!(screen(&mut resume, &record(0, 99)), Screened::Drop);
        assert_eq!(screen(&mut resume, &record(1, 7)), Screened::Keep);
        assert_eq!(screen(&mut resume, &record(0, 100)), Screened::Keep);
        assert!(resume.is_empty(), "settled");
        assert_eq!(screen(&mut resume, &record(0, 50)), Screened::Keep);
    }

    #[test]
    fn a_resume_past_the_commit_seeks_further_back_until_the_start() {
        let mut resume = resuming(1_000);
        assert_eq!(
            screen(&mut resume, &record(0, 1_003)),
            Screened::SeekBack(Offset::Offset(1_000 - 4 * REWIND_LOOKBACK))
        );
        assert_eq!(
            screen(&mut resume, &record(0, 1_003)),
            Screened::SeekBack(Offset::Beginning)
        );
        // From the start the gap is real: hand the record over and go on.
        assert_eq!(screen(&mut resume, &record(0, 1_003)), Screened::Keep);
        assert!(resume.is_empty());
    }
}
