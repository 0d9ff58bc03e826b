//! The cluster connection: the producer (idempotent, `acks=all`), the
//! factory of group consumers, and the topic bootstrap.

use crate::acks::Acks;
use crate::backend_error;
use crate::config::{BusContext, KafkaConfig};
use crate::consumer::{GroupContext, KafkaConsumer, MEMBERS};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use salestrack_core::ports::{BackendError, Delivery, OutboundRecord, Producer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The cluster connection: the producer, a factory of group consumers and
/// topic administration.
#[derive(Clone)]
pub struct KafkaBus {
    config: KafkaConfig,
    producer: FutureProducer<BusContext>,
    /// What the writes say about the cluster, for readiness.
    acks: Arc<Acks>,
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
        Ok(KafkaBus {
            config,
            producer,
            acks: Arc::default(),
        })
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
            return Err(BackendError::new(
                crate::BACKEND,
                format!(
                    "min.insync.replicas {min_insync} must be between 1 and the replication factor {replication}"
                ),
            ));
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
                    return Err(BackendError::new(
                        crate::BACKEND,
                        format!("creating topic {topic}: {code}"),
                    ))
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
            unsought: BTreeSet::new(),
        })
    }

    /// For readiness: the writes in flight are acknowledged in time and the
    /// last one went through (see [`crate::acks`]); then either a write was
    /// acknowledged a moment ago or a broker answers a metadata request.
    pub async fn ping(&self) -> Result<(), BackendError> {
        if let Some(trouble) = self.acks.trouble() {
            return Err(BackendError::new(crate::BACKEND, trouble));
        }
        if self.acks.vouch() {
            return Ok(());
        }
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
        let in_flight = self.acks.start();
        let sent = self
            .producer
            .send(future, self.config.delivery_timeout)
            .await;
        in_flight.finish(sent.as_ref().err().map(|(e, _)| e.to_string()));
        match sent {
            Ok(delivery) => Ok(Delivery {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((e, _)) => {
                metrics::counter!("salestrack_kafka_produce_errors_total").increment(1);
                Err(BackendError::context(
                    crate::BACKEND,
                    format!("producing to {}", record.topic),
                    e,
                ))
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
