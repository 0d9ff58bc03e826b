//! Chooses and opens the backends behind the ports from the settings. The bus
//! is Kafka when `SALESTRACK_KAFKA_BROKERS` is set and the embedded SQLite
//! log otherwise; the read store is Elasticsearch when
//! `SALESTRACK_ELASTICSEARCH_URL` is set and embedded otherwise; the event
//! store is Cassandra when `SALESTRACK_CASSANDRA_CONTACT_POINTS` is set and
//! embedded otherwise. Handlers never see which.
//!
//! A binary opens only the ports it [`Uses`], and links only the clients of
//! the engines its features name (`kafka`, `cassandra`, `elasticsearch`): a
//! setting that names an engine the binary was built without is refused at
//! start, never ignored.

use crate::config::Settings;
#[cfg(feature = "cassandra")]
use salestrack_cassandra::{
    parse_consistency, parse_serial_consistency, CassandraConfig, CassandraEventStore,
};
use salestrack_core::ports::{
    BackendError, BusProjectionFeed, Consumer, EventStore, KeyStore, PaymentLedger, Producer,
    ProjectionFeed, ReadStore,
};
#[cfg(feature = "elasticsearch")]
use salestrack_elasticsearch::{EsConfig, EsReadStore, RefreshPolicy};
use salestrack_embedded::{
    EmbeddedBus, EmbeddedEventStore, EmbeddedKeyStore, EmbeddedPaymentLedger, EmbeddedReadStore,
};
#[cfg(feature = "kafka")]
use salestrack_kafka::{KafkaBus, KafkaConfig};
use std::path::Path;
#[cfg(feature = "cassandra")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
enum Bus {
    Embedded(EmbeddedBus),
    // Boxed: the Kafka client's configuration is several times the size of
    // the embedded bus's handle.
    #[cfg(feature = "kafka")]
    Kafka(Box<KafkaBus>),
}

/// The ports a binary uses: only these are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    pub bus: bool,
    pub event_store: bool,
    pub read_store: bool,
    pub payment_ledger: bool,
    pub key_store: bool,
}

impl Uses {
    /// The runner, which hosts every handler.
    pub const ALL: Uses = Uses {
        bus: true,
        event_store: true,
        read_store: true,
        payment_ledger: true,
        key_store: true,
    };
    pub const NOTHING: Uses = Uses {
        bus: false,
        event_store: false,
        read_store: false,
        payment_ledger: false,
        key_store: false,
    };
}

/// The opened backends, as ports; a port the binary does not use is not
/// opened, and asking for it is an error that says so.
#[derive(Clone)]
pub struct Backends {
    producer: Option<Arc<dyn Producer>>,
    event_store: Option<Arc<dyn EventStore>>,
    read_store: Option<Arc<dyn ReadStore>>,
    /// The mock payment gateway's ledger: in the Cassandra keyspace when
    /// Cassandra is configured, else embedded SQLite.
    payment_ledger: Option<Arc<dyn PaymentLedger>>,
    /// The users' data keys: beside the event store (in the Cassandra
    /// keyspace, or an embedded SQLite file of their own).
    key_store: Option<Arc<dyn KeyStore>>,
    bus: Option<Bus>,
    description: String,
}

/// Every port, for a binary that uses them all (the runner).
#[derive(Clone)]
pub struct Ports {
    pub producer: Arc<dyn Producer>,
    pub event_store: Arc<dyn EventStore>,
    pub read_store: Arc<dyn ReadStore>,
    pub payment_ledger: Arc<dyn PaymentLedger>,
    pub key_store: Arc<dyn KeyStore>,
}

fn not_opened(port: &str) -> BackendError {
    BackendError::refused(
        "backends",
        format!("the {port} is not opened by this binary (see `Uses`)"),
    )
}

/// A setting names an engine this binary was built without.
#[cfg(not(all(feature = "kafka", feature = "cassandra", feature = "elasticsearch")))]
fn not_built_in(engine: &str, setting: &str) -> BackendError {
    BackendError::refused(
        "backends",
        format!(
            "{setting} is set, but this binary was built without the {engine} client \
             (cargo feature `{}` of salestrack-platform): unset it, or use a binary that has it",
            engine.to_lowercase()
        ),
    )
}

#[cfg(feature = "kafka")]
fn kafka_config(settings: &Settings) -> KafkaConfig {
    KafkaConfig {
        security_protocol: settings.kafka.security_protocol.clone(),
        sasl_mechanism: settings.kafka.sasl_mechanism.clone(),
        aws_region: settings
            .kafka
            .aws_region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok()),
        sasl_username: settings.kafka.sasl_username.clone(),
        sasl_password: settings
            .kafka
            .sasl_password
            .as_ref()
            .map(|s| s.expose().to_owned()),
        ssl_ca_location: settings.kafka.ssl_ca_location.clone(),
        fetch_wait: Duration::from_millis(settings.kafka.fetch_wait_ms),
        batch_window: Duration::from_millis(settings.kafka.batch_window_ms),
        linger: Duration::from_millis(settings.kafka.linger_ms),
        session_timeout: Duration::from_millis(settings.kafka.session_timeout_ms),
        group_instance_id: settings.kafka.group_instance_id.clone(),
        ..KafkaConfig::new(&settings.kafka.brokers)
    }
}

/// The Kafka bus, with its topics created when configured to.
#[cfg(feature = "kafka")]
async fn connect_kafka(
    settings: &Settings,
) -> Result<(Bus, Arc<dyn Producer>, String), BackendError> {
    let kafka = KafkaBus::connect(kafka_config(settings))?;
    if settings.kafka.create_topics {
        let topics = settings.topics.clone();
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
                settings.kafka.replication_factor,
                settings.kafka.min_insync_replicas(),
            )
            .await?;
    }
    Ok((
        Bus::Kafka(Box::new(kafka.clone())),
        Arc::new(kafka),
        format!("Kafka at {}", settings.kafka.brokers),
    ))
}

#[cfg(not(feature = "kafka"))]
async fn connect_kafka(_: &Settings) -> Result<(Bus, Arc<dyn Producer>, String), BackendError> {
    Err(not_built_in("Kafka", "SALESTRACK_KAFKA_BROKERS"))
}

/// The Cassandra settings, for the runner, the Lambda functions and the
/// rebuild command.
#[cfg(feature = "cassandra")]
pub fn cassandra_config(settings: &Settings) -> Result<CassandraConfig, BackendError> {
    Ok(CassandraConfig {
        local_dc: settings.cassandra.local_dc.clone(),
        username: settings.cassandra.username.clone(),
        password: settings
            .cassandra
            .password
            .as_ref()
            .map(|s| s.expose().to_owned()),
        tls: settings.cassandra.tls,
        ca_location: settings.cassandra.ca_location.as_ref().map(PathBuf::from),
        create_schema: settings.cassandra.create_schema,
        replication: settings.cassandra.replication.clone(),
        consistency: parse_consistency(&settings.cassandra.consistency)?,
        serial_consistency: parse_serial_consistency(&settings.cassandra.serial_consistency)?,
        request_timeout: Duration::from_millis(settings.cassandra.request_timeout_ms),
        page_size: settings.cassandra.page_size,
        await_schema_agreement: settings.cassandra.await_schema_agreement,
        ..CassandraConfig::new(
            &settings.cassandra.contact_points,
            &settings.cassandra.keyspace,
        )
    })
}

/// The projector's notices on the bus (`SALESTRACK_PROJECTIONS_TOPIC`), or
/// none when the topic is set empty (or the binary opened no bus).
pub fn projection_feed(
    settings: &Settings,
    backends: &Backends,
) -> Option<Arc<dyn ProjectionFeed>> {
    let topic = settings.topics.projections.trim();
    let producer = backends.producer.as_ref()?;
    (!topic.is_empty()).then(|| {
        Arc::new(BusProjectionFeed {
            producer: Arc::clone(producer),
            topic: topic.to_owned(),
        }) as Arc<dyn ProjectionFeed>
    })
}

/// The Elasticsearch settings, for the runner and the rebuild command.
#[cfg(feature = "elasticsearch")]
pub fn es_config(settings: &Settings) -> EsConfig {
    use crate::config::EsRefresh;
    EsConfig {
        username: settings.elasticsearch.username.clone(),
        password: settings
            .elasticsearch
            .password
            .as_ref()
            .map(|s| s.expose().to_owned()),
        api_key: settings
            .elasticsearch
            .api_key
            .as_ref()
            .map(|s| s.expose().to_owned()),
        ca_location: settings.elasticsearch.ca_location.clone(),
        refresh: match settings.elasticsearch.refresh {
            EsRefresh::False => RefreshPolicy::None,
            EsRefresh::WaitFor => RefreshPolicy::WaitFor,
        },
        timeout: Duration::from_millis(settings.elasticsearch.timeout_ms),
        max_attempts: settings.elasticsearch.max_attempts.max(1),
        shards: settings.elasticsearch.shards,
        replicas: settings.elasticsearch.replicas,
        refresh_interval: settings.elasticsearch.refresh_interval.clone(),
        ..EsConfig::new(
            &settings.elasticsearch.url,
            &settings.elasticsearch.index_prefix,
        )
    }
}

async fn open_read_store(
    settings: &Settings,
    data_dir: &Path,
) -> Result<(Arc<dyn ReadStore>, String), BackendError> {
    if settings.elasticsearch.url.trim().is_empty() {
        return Ok((
            Arc::new(EmbeddedReadStore::open(&data_dir.join("read.sqlite"))?),
            embedded(data_dir),
        ));
    }
    #[cfg(feature = "elasticsearch")]
    {
        let config = es_config(settings);
        let description = format!(
            "Elasticsearch at {} (indices {}-*)",
            config.url, config.index_prefix
        );
        Ok((Arc::new(EsReadStore::connect(config).await?), description))
    }
    #[cfg(not(feature = "elasticsearch"))]
    Err(not_built_in(
        "Elasticsearch",
        "SALESTRACK_ELASTICSEARCH_URL",
    ))
}

/// What lives beside the event store.
struct EventStores {
    events: Option<Arc<dyn EventStore>>,
    ledger: Option<Arc<dyn PaymentLedger>>,
    keys: Option<Arc<dyn KeyStore>>,
    description: String,
}

/// The event store, the payment ledger and the key store, which live
/// together: in the Cassandra keyspace, or in embedded SQLite files.
async fn open_event_stores(
    settings: &Settings,
    data_dir: &Path,
    uses: Uses,
) -> Result<EventStores, BackendError> {
    if settings.cassandra.contact_points.trim().is_empty() {
        let events: Option<Arc<dyn EventStore>> = match uses.event_store {
            true => Some(Arc::new(EmbeddedEventStore::open(
                &data_dir.join("events.sqlite"),
            )?)),
            false => None,
        };
        let ledger: Option<Arc<dyn PaymentLedger>> = match uses.payment_ledger {
            true => Some(Arc::new(EmbeddedPaymentLedger::open(
                &data_dir.join("payments.sqlite"),
            )?)),
            false => None,
        };
        let keys: Option<Arc<dyn KeyStore>> = match uses.key_store {
            true => Some(Arc::new(EmbeddedKeyStore::open(
                &data_dir.join("keys.sqlite"),
            )?)),
            false => None,
        };
        return Ok(EventStores {
            events,
            ledger,
            keys,
            description: embedded(data_dir),
        });
    }
    #[cfg(feature = "cassandra")]
    {
        let config = cassandra_config(settings)?;
        let description = format!(
            "Cassandra at {} (keyspace {})",
            config.contact_points.join(","),
            config.keyspace
        );
        let store = CassandraEventStore::connect(config).await?;
        let ledger: Option<Arc<dyn PaymentLedger>> = match uses.payment_ledger {
            true => Some(Arc::new(store.payment_ledger().await?)),
            false => None,
        };
        let keys: Option<Arc<dyn KeyStore>> = match uses.key_store {
            true => Some(Arc::new(store.key_store().await?)),
            false => None,
        };
        let events: Option<Arc<dyn EventStore>> = uses.event_store.then(|| Arc::new(store) as _);
        Ok(EventStores {
            events,
            ledger,
            keys,
            description,
        })
    }
    #[cfg(not(feature = "cassandra"))]
    {
        let _ = uses;
        Err(not_built_in(
            "Cassandra",
            "SALESTRACK_CASSANDRA_CONTACT_POINTS",
        ))
    }
}

fn embedded(data_dir: &Path) -> String {
    format!("embedded SQLite in {}", data_dir.display())
}

impl Backends {
    /// Opens every port (the runner's and the tests' way).
    pub async fn connect(settings: &Settings) -> Result<Backends, BackendError> {
        Backends::open(settings, Uses::ALL).await
    }

    /// Opens the ports in `uses`; with Kafka, also creates missing topics
    /// unless `SALESTRACK_KAFKA_CREATE_TOPICS=false`. An embedded store's
    /// SQLite file is opened only when that store is used and stays
    /// embedded: with Kafka, Cassandra and Elasticsearch all configured,
    /// `SALESTRACK_DATA_DIR` is never touched.
    pub async fn open(settings: &Settings, uses: Uses) -> Result<Backends, BackendError> {
        let data_dir = settings.data_dir.as_path();
        let mut described = Vec::new();
        let read_store = match uses.read_store {
            true => {
                let (store, description) = open_read_store(settings, data_dir).await?;
                described.push(format!("read store: {description}"));
                Some(store)
            }
            false => None,
        };
        let (event_store, payment_ledger, key_store) =
            match uses.event_store || uses.payment_ledger || uses.key_store {
                true => {
                    let stores = open_event_stores(settings, data_dir, uses).await?;
                    described.push(format!("event store: {}", stores.description));
                    (stores.events, stores.ledger, stores.keys)
                }
                false => (None, None, None),
            };
        let (bus, producer) = match uses.bus {
            true => {
                let (bus, producer, description) = if settings.kafka.brokers.trim().is_empty() {
                    let retention =
                        Duration::from_secs(settings.bus_retention_hours.saturating_mul(3600));
                    let bus = EmbeddedBus::open(&data_dir.join("bus.sqlite"), settings.partitions)?
                        .with_retention(retention);
                    (
                        Bus::Embedded(bus.clone()),
                        Arc::new(bus) as Arc<dyn Producer>,
                        "embedded".to_owned(),
                    )
                } else {
                    connect_kafka(settings).await?
                };
                described.insert(0, format!("bus: {description}"));
                (Some(bus), Some(producer))
            }
            false => (None, None),
        };
        Ok(Backends {
            producer,
            event_store,
            read_store,
            payment_ledger,
            key_store,
            bus,
            description: described.join("; "),
        })
    }

    pub fn producer(&self) -> Result<Arc<dyn Producer>, BackendError> {
        self.producer.clone().ok_or_else(|| not_opened("bus"))
    }

    pub fn event_store(&self) -> Result<Arc<dyn EventStore>, BackendError> {
        self.event_store
            .clone()
            .ok_or_else(|| not_opened("event store"))
    }

    pub fn read_store(&self) -> Result<Arc<dyn ReadStore>, BackendError> {
        self.read_store
            .clone()
            .ok_or_else(|| not_opened("read store"))
    }

    pub fn payment_ledger(&self) -> Result<Arc<dyn PaymentLedger>, BackendError> {
        self.payment_ledger
            .clone()
            .ok_or_else(|| not_opened("payment ledger"))
    }

    pub fn key_store(&self) -> Result<Arc<dyn KeyStore>, BackendError> {
        self.key_store
            .clone()
            .ok_or_else(|| not_opened("key store"))
    }

    /// Every port; an error when one was not opened.
    pub fn ports(&self) -> Result<Ports, BackendError> {
        Ok(Ports {
            producer: self.producer()?,
            event_store: self.event_store()?,
            read_store: self.read_store()?,
            payment_ledger: self.payment_ledger()?,
            key_store: self.key_store()?,
        })
    }

    fn bus(&self) -> Result<&Bus, BackendError> {
        self.bus.as_ref().ok_or_else(|| not_opened("bus"))
    }

    /// A consumer-group member over `topics`.
    pub fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, BackendError> {
        Ok(match self.bus()? {
            Bus::Embedded(bus) => Box::new(bus.consumer(group, topics)),
            #[cfg(feature = "kafka")]
            Bus::Kafka(bus) => Box::new(bus.consumer(group, topics)?),
        })
    }

    /// The members of `group` over `topics` that one process runs side by
    /// side, each with its own share of the partitions: `lanes` of them (at
    /// most one per partition on the embedded bus, whose split is fixed;
    /// on Kafka the group protocol assigns the partitions, and a member
    /// beyond the partition count gets none); at least one.
    pub fn consumers(
        &self,
        group: &str,
        topics: &[&str],
        lanes: usize,
    ) -> Result<Vec<Box<dyn Consumer>>, BackendError> {
        Ok(match self.bus()? {
            Bus::Embedded(bus) => {
                let partitions = usize::try_from(bus.partitions()).unwrap_or(1).max(1);
                let lanes = lanes.clamp(1, partitions);
                (0..lanes)
                    .map(|lane| Box::new(bus.lane(group, topics, lane, lanes)) as Box<dyn Consumer>)
                    .collect()
            }
            #[cfg(feature = "kafka")]
            Bus::Kafka(bus) => (0..lanes.max(1))
                .map(|_| Ok(Box::new(bus.consumer(group, topics)?) as Box<dyn Consumer>))
                .collect::<Result<_, BackendError>>()?,
        })
    }

    /// A reader of `topic` from its end, in a group of its own that commits
    /// nothing: it sees what is produced from now on, as does every other
    /// process following the topic. `None` on the embedded bus, which only
    /// one process uses: there the runner hands notices over in memory.
    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    pub fn follower(&self, topic: &str) -> Result<Option<Box<dyn Consumer>>, BackendError> {
        Ok(match self.bus()? {
            Bus::Embedded(_) => None,
            #[cfg(feature = "kafka")]
            Bus::Kafka(bus) => {
                let group = format!("salestrack-follower-{}", uuid::Uuid::new_v4());
                Some(Box::new(bus.follower(&group, &[topic])?))
            }
        })
    }

    /// Whether the bus answers (for readiness).
    pub async fn ping_bus(&self) -> Result<(), BackendError> {
        match self.bus()? {
            Bus::Embedded(bus) => bus.topic_len("").await.map(drop),
            #[cfg(feature = "kafka")]
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
            Some(Bus::Embedded(_)) | None => {
                "arn:aws:kafka:local:000000000000:cluster/salestrack-embedded"
            }
            #[cfg(feature = "kafka")]
            Some(Bus::Kafka(_)) => "arn:aws:kafka:local:000000000000:cluster/salestrack-kafka",
        }
    }

    pub fn bootstrap_servers(&self) -> &str {
        match &self.bus {
            Some(Bus::Embedded(_)) | None => "embedded",
            #[cfg(feature = "kafka")]
            Some(Bus::Kafka(bus)) => bus.brokers(),
        }
    }
}
