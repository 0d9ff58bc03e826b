//! Chooses and opens the backends behind the ports from the settings. The bus
//! is Kafka when `SALESTRACK_KAFKA_BROKERS` is set and the embedded SQLite
//! log otherwise; the read store is Elasticsearch when
//! `SALESTRACK_ELASTICSEARCH_URL` is set and embedded otherwise; the event
//! store is Cassandra when `SALESTRACK_CASSANDRA_CONTACT_POINTS` is set and
//! embedded otherwise. Handlers never see which.

use crate::config::{EsRefresh, Settings};
use salestrack_cassandra::{
    parse_consistency, parse_serial_consistency, CassandraConfig, CassandraEventStore,
};
use salestrack_core::ports::{
    BackendError, BusProjectionFeed, Consumer, EventStore, PaymentLedger, Producer, ProjectionFeed,
    ReadStore,
};
use salestrack_elasticsearch::{EsConfig, EsReadStore, RefreshPolicy};
use salestrack_embedded::{
    EmbeddedBus, EmbeddedEventStore, EmbeddedPaymentLedger, EmbeddedReadStore,
};
use salestrack_kafka::{KafkaBus, KafkaConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
enum Bus {
    Embedded(EmbeddedBus),
    Kafka(KafkaBus),
}

/// The opened backends, as ports.
#[derive(Clone)]
pub struct Backends {
    pub producer: Arc<dyn Producer>,
    pub event_store: Arc<dyn EventStore>,
    pub read_store: Arc<dyn ReadStore>,
    /// The mock payment gateway's ledger: in the Cassandra keyspace when
    /// Cassandra is configured, else embedded SQLite.
    pub payment_ledger: Arc<dyn PaymentLedger>,
    bus: Bus,
    description: String,
}

fn kafka_config(settings: &Settings) -> KafkaConfig {
    KafkaConfig {
        security_protocol: settings.kafka_security_protocol.clone(),
        sasl_mechanism: settings.kafka_sasl_mechanism.clone(),
        aws_region: settings
            .kafka_aws_region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok()),
        sasl_username: settings.kafka_sasl_username.clone(),
        sasl_password: settings
            .kafka_sasl_password
            .as_ref()
            .map(|s| s.expose().to_owned()),
        ssl_ca_location: settings.kafka_ssl_ca_location.clone(),
        fetch_wait: Duration::from_millis(settings.kafka_fetch_wait_ms),
        batch_window: Duration::from_millis(settings.kafka_batch_window_ms),
        linger: Duration::from_millis(settings.kafka_linger_ms),
        session_timeout: Duration::from_millis(settings.kafka_session_timeout_ms),
        group_instance_id: settings.kafka_group_instance_id.clone(),
        ..KafkaConfig::new(&settings.kafka_brokers)
    }
}

/// The Kafka bus, with its topics created when configured to.
async fn connect_kafka(
    settings: &Settings,
    stores: &str,
) -> Result<(Bus, Arc<dyn Producer>, String), BackendError> {
    let kafka = KafkaBus::connect(kafka_config(settings))?;
    if settings.kafka_create_topics {
        let topics = settings.topics();
        kafka
            .ensure_topics(
                &[
                    &topics.commands,
                    &topics.events,
                    &topics.outcomes,
                    &topics.dead_letter,
                    &topics.payments,
                    &topics.projections,
                ]
                .into_iter()
                .map(String::as_str)
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>(),
                settings.partitions,
                settings.kafka_replication_factor,
            )
            .await?;
    }
    Ok((
        Bus::Kafka(kafka.clone()),
        Arc::new(kafka),
        format!("bus: Kafka at {}; {stores}", settings.kafka_brokers),
    ))
}

/// The Cassandra settings, for the runner, the Lambda functions and the
/// rebuild command.
pub fn cassandra_config(settings: &Settings) -> Result<CassandraConfig, BackendError> {
    Ok(CassandraConfig {
        local_dc: settings.cassandra_local_dc.clone(),
        username: settings.cassandra_username.clone(),
        password: settings
            .cassandra_password
            .as_ref()
            .map(|s| s.expose().to_owned()),
        tls: settings.cassandra_tls,
        ca_location: settings.cassandra_ca_location.as_ref().map(PathBuf::from),
        create_schema: settings.cassandra_create_schema,
        replication: settings.cassandra_replication.clone(),
        consistency: parse_consistency(&settings.cassandra_consistency)?,
        serial_consistency: parse_serial_consistency(&settings.cassandra_serial_consistency)?,
        request_timeout: Duration::from_millis(settings.cassandra_request_timeout_ms),
        page_size: settings.cassandra_page_size,
        await_schema_agreement: settings.cassandra_await_schema_agreement,
        ..CassandraConfig::new(
            &settings.cassandra_contact_points,
            &settings.cassandra_keyspace,
        )
    })
}

/// The projector's notices on the bus (`SALESTRACK_PROJECTIONS_TOPIC`), or
/// none when the topic is set empty.
pub fn projection_feed(
    settings: &Settings,
    backends: &Backends,
) -> Option<Arc<dyn ProjectionFeed>> {
    let topic = settings.projections_topic.trim();
    (!topic.is_empty()).then(|| {
        Arc::new(BusProjectionFeed {
            producer: Arc::clone(&backends.producer),
            topic: topic.to_owned(),
        }) as Arc<dyn ProjectionFeed>
    })
}

/// The Elasticsearch settings, for the runner and the rebuild command.
pub fn es_config(settings: &Settings) -> EsConfig {
    EsConfig {
        username: settings.elasticsearch_username.clone(),
        password: settings
            .elasticsearch_password
            .as_ref()
            .map(|s| s.expose().to_owned()),
        api_key: settings
            .elasticsearch_api_key
            .as_ref()
            .map(|s| s.expose().to_owned()),
        ca_location: settings.elasticsearch_ca_location.clone(),
        refresh: match settings.elasticsearch_refresh {
            EsRefresh::False => RefreshPolicy::None,
            EsRefresh::WaitFor => RefreshPolicy::WaitFor,
        },
        timeout: Duration::from_millis(settings.elasticsearch_timeout_ms),
        max_attempts: settings.elasticsearch_max_attempts.max(1),
        shards: settings.elasticsearch_shards,
        replicas: settings.elasticsearch_replicas,
        refresh_interval: settings.elasticsearch_refresh_interval.clone(),
        ..EsConfig::new(
            &settings.elasticsearch_url,
            &settings.elasticsearch_index_prefix,
        )
    }
}

impl Backends {
    /// Opens every backend; with Kafka, also creates missing topics unless
    /// `SALESTRACK_KAFKA_CREATE_TOPICS=false`. An embedded store's SQLite
    /// file is opened only when that store stays embedded: with Kafka,
    /// Cassandra and Elasticsearch all configured, `SALESTRACK_DATA_DIR` is
    /// never touched.
    pub async fn connect(settings: &Settings) -> Result<Backends, BackendError> {
        let data_dir = &settings.data_dir;
        let embedded = || format!("embedded SQLite in {}", data_dir.display());
        let (read_store, read_description): (Arc<dyn ReadStore>, String) =
            if settings.elasticsearch_url.trim().is_empty() {
                (
                    Arc::new(EmbeddedReadStore::open(&data_dir.join("read.sqlite"))?),
                    embedded(),
                )
            } else {
                let config = es_config(settings);
                let description = format!(
                    "Elasticsearch at {} (indices {}-*)",
                    config.url, config.index_prefix
                );
                (Arc::new(EsReadStore::connect(config).await?), description)
            };
        let (event_store, payment_ledger, event_description): (
            Arc<dyn EventStore>,
            Arc<dyn PaymentLedger>,
            String,
        ) = if settings.cassandra_contact_points.trim().is_empty() {
            (
                Arc::new(EmbeddedEventStore::open(&data_dir.join("events.sqlite"))?),
                Arc::new(EmbeddedPaymentLedger::open(
                    &data_dir.join("payments.sqlite"),
                )?),
                embedded(),
            )
        } else {
            let config = cassandra_config(settings)?;
            let description = format!(
                "Cassandra at {} (keyspace {})",
                config.contact_points.join(","),
                config.keyspace
            );
            let store = CassandraEventStore::connect(config).await?;
            let ledger = store.payment_ledger().await?;
            (Arc::new(store), Arc::new(ledger), description)
        };
        let stores = format!("event store: {event_description}; read store: {read_description}");
        let (bus, producer, description): (Bus, Arc<dyn Producer>, String) =
            if settings.kafka_brokers.trim().is_empty() {
                let retention =
                    Duration::from_secs(settings.bus_retention_hours.saturating_mul(3600));
                let bus = EmbeddedBus::open(&data_dir.join("bus.sqlite"), settings.partitions)?
                    .with_retention(retention);
                (
                    Bus::Embedded(bus.clone()),
                    Arc::new(bus),
                    format!("bus: embedded; {stores}"),
                )
            } else {
                connect_kafka(settings, &stores).await?
            };
        Ok(Backends {
            producer,
            event_store,
            read_store,
            payment_ledger,
            bus,
            description,
        })
    }

    /// A consumer-group member over `topics`.
    pub fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, BackendError> {
        Ok(match &self.bus {
            Bus::Embedded(bus) => Box::new(bus.consumer(group, topics)),
            Bus::Kafka(bus) => Box::new(bus.consumer(group, topics)?),
        })
    }

    /// A reader of `topic` from its end, in a group of its own that commits
    /// nothing: it sees what is produced from now on, as does every other
    /// process following the topic. `None` on the embedded bus, which only
    /// one process uses: there the runner hands notices over in memory.
    pub fn follower(&self, topic: &str) -> Result<Option<Box<dyn Consumer>>, BackendError> {
        Ok(match &self.bus {
            Bus::Embedded(_) => None,
            Bus::Kafka(bus) => {
                let group = format!("salestrack-follower-{}", uuid::Uuid::new_v4());
                Some(Box::new(bus.follower(&group, &[topic])?))
            }
        })
    }

    /// Whether the bus answers (for readiness).
    pub async fn ping_bus(&self) -> Result<(), BackendError> {
        match &self.bus {
            Bus::Embedded(bus) => bus.topic_len("").await.map(drop),
            Bus::Kafka(bus) => bus.ping().await,
        }
    }

    /// What the runner is connected to, for the start-up log and readiness.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The ARN-like source name put on runner-built MSK batches.
    pub fn event_source_arn(&self) -> &'static str {
        match self.bus {
            Bus::Embedded(_) => "arn:aws:kafka:local:000000000000:cluster/salestrack-embedded",
            Bus::Kafka(_) => "arn:aws:kafka:local:000000000000:cluster/salestrack-kafka",
        }
    }

    pub fn bootstrap_servers(&self) -> &str {
        match &self.bus {
            Bus::Embedded(_) => "embedded",
            Bus::Kafka(bus) => bus.brokers(),
        }
    }
}
