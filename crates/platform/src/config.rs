//! One typed configuration, read from `SALESTRACK_*` environment variables at
//! start-up. Every default starts the embedded mode on loopback.

use figment::providers::{Env, Serialized};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every setting, grouped by concern. Each is a `SALESTRACK_*` variable
/// named by its group and field (`kafka.brokers` is
/// `SALESTRACK_KAFKA_BROKERS`, `topics.commands` is
/// `SALESTRACK_COMMANDS_TOPIC`; see [`env_key`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Directory of the embedded backends' files (`SALESTRACK_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Partitions of each topic (embedded, and Kafka topics the runner creates).
    pub partitions: i32,
    /// How long the embedded bus keeps records.
    pub bus_retention_hours: u64,
    /// The consumer loops this runner hosts, comma-separated from `domain`,
    /// `projector`, `payment` and `saga_timer`; `all` (the default) or
    /// `none` (an HTTP-only runner).
    pub consumers: String,
    /// The query Lambda answers through response streaming (the function
    /// URL's `InvokeMode: RESPONSE_STREAM`); off: buffered answers.
    pub lambda_streaming: bool,
    /// Consumer group of the domain loop (the event source mapping's
    /// `ConsumerGroupId`): two deployments sharing a cluster need their own.
    pub domain_group: String,
    /// Consumer group of the projector loop.
    pub projector_group: String,
    /// Consumer group of the payment loop.
    pub payment_group: String,
    /// Most records handed to a handler in one batch. A batch takes what
    /// is waiting (on Kafka, what arrives within `kafka.batch_window_ms`
    /// of its first record), so without a backlog batches stay small and
    /// this bound does not change their latency; under a backlog a larger
    /// bound spreads each batch's fixed round trips
    /// (the event store's append per cart, the read store's rounds, the
    /// offset commit) over more orders. 500 (the default): on the real
    /// engines it carried 1.2-1.9x the orders per second of 100 at
    /// 0.6-0.8x the CPU per order (BENCHMARKS.md, issue 31).
    pub batch_size: usize,
    /// Consumer loops per hosted function, each a member of the function's
    /// group with its own share of the partitions and its own batch in
    /// flight (at most one per partition on the embedded bus). 1 (the
    /// default): on two cores a second lane cost more CPU per order than it
    /// won (BENCHMARKS.md); more runners add members on Kafka too.
    pub consumer_lanes: usize,
    /// How long an idle consumer waits for records before polling again.
    pub poll_wait_ms: u64,
    /// Longest pause between two deliveries of a record that keeps failing
    /// for a retryable reason. Such a record is never dead-lettered: its
    /// partition waits for it however long it takes (poison is
    /// dead-lettered at once).
    pub retry_backoff_max_ms: u64,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// OTLP/HTTP collector (`http://host:4318`) to export spans to; unset: none.
    pub otlp_endpoint: Option<String>,
    /// A cart snapshot every this many events; 0 turns snapshots off.
    pub snapshot_every: u64,
    /// The domain keeps the decision state of recently decided carts, up
    /// to this many of their events in all, so that their next commands are
    /// decided without reading the stream (the conditional append still
    /// decides); 0 turns it off.
    pub warm_cart_events: u64,
    /// A Lambda function's own secret (Secrets Manager ARN), read at start
    /// through the AWS Parameters and Secrets Lambda Extension: its
    /// credentials override the Cassandra and Elasticsearch ones above.
    pub secret_arn: Option<String>,
    /// The extension's loopback port (`PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`).
    pub secrets_extension_port: u16,
    /// Topic names (`SALESTRACK_<NAME>_TOPIC`).
    pub topics: Topics,
    /// How the runner serves HTTP: its address, limits and timeouts.
    pub http: HttpSettings,
    /// Live streams (`GET /carts/{id}/live`).
    pub live: LiveSettings,
    /// The checkout saga and the mock payment gateway.
    pub payment: PaymentSettings,
    /// How reads wait for a consistency token.
    pub consistency: ConsistencySettings,
    /// When `/health/ready` says `degraded`.
    pub ready: ReadySettings,
    /// The bus on Kafka; empty `brokers` keeps the embedded bus.
    pub kafka: KafkaSettings,
    /// The read store on Elasticsearch / OpenSearch; empty `url` keeps the embedded read store.
    pub elasticsearch: ElasticsearchSettings,
    /// Bearer-token authentication; a JWKS turns it on.
    pub auth: AuthSettings,
    /// The event store and payment ledger on Cassandra; empty `contact_points` keeps the embedded stores.
    pub cassandra: CassandraSettings,
}

/// How the runner serves HTTP: its address, limits and timeouts. (`SALESTRACK_HTTP_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Where the local runner listens (`SALESTRACK_HTTP_ADDR`).
    pub addr: SocketAddr,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// API requests served at once; beyond it a request is answered `503`
    /// with `Retry-After` at once instead of queueing without bound.
    pub max_in_flight: usize,
    /// Connections a runner holds open at once; beyond, it accepts no more
    /// until one closes (they wait in the listen backlog).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, from the
    /// connection's start or the previous response; then it is closed.
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request's body once its headers
    /// arrived; then `408 request_timeout`. The body is read before the
    /// request takes a slot of `http_max_in_flight`.
    pub body_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            max_in_flight: 1024,
            max_connections: 4096,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
        }
    }
}

/// Live streams (`GET /carts/{id}/live`). (`SALESTRACK_LIVE_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// Live streams (`GET /carts/{id}/live`) served at once; beyond it `503`
    /// with `Retry-After`.
    pub max_streams: usize,
    /// A comment line on an idle live stream this often.
    pub heartbeat_ms: u64,
    /// How often a live stream looks at the read store itself, besides the
    /// projection notices: the safety net for a lost notice, and on Lambda
    /// (no notices) the only source.
    pub poll_ms: u64,
    /// Events a live stream may have waiting for its client; a client that
    /// falls further behind is slow and is dropped.
    pub buffer: usize,
    /// A live client that takes no event for this long while one waits
    /// is dropped (it reconnects with `Last-Event-ID` when it can keep up).
    pub slow_ms: u64,
    /// Longest a live stream lasts (0: until the client or shutdown ends
    /// it); on Lambda it must end before the function's timeout.
    pub max_lifetime_s: u64,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            max_streams: 1_000,
            heartbeat_ms: 15_000,
            poll_ms: 15_000,
            buffer: 16,
            slow_ms: 10_000,
            max_lifetime_s: 0,
        }
    }
}

/// The checkout saga and the mock payment gateway. (`SALESTRACK_PAYMENT_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// How long a checkout waits for its payment answer before the saga
    /// cancels it (`payment_timeout`).
    pub timeout_ms: u64,
    /// The mock gateway declines this share of charges at random (0.0..=1.0).
    pub decline_rate: f64,
    /// The mock gateway answers this much later.
    pub delay_ms: u64,
    /// How often the runner's saga timer looks for checkouts past their
    /// deadline.
    pub sweep_ms: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            timeout_ms: 30_000,
            decline_rate: 0.0,
            delay_ms: 0,
            sweep_ms: 1_000,
        }
    }
}

/// How reads wait for a consistency token. (`SALESTRACK_CONSISTENCY_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistencySettings {
    /// How long a read with a consistency token waits for the projection.
    pub wait_ms: u64,
    /// Reads that may wait for a consistency token at once; beyond, a read
    /// is answered at once, `Consistency: stale` if the token is not reached.
    pub max_waiting: usize,
}

impl Default for ConsistencySettings {
    fn default() -> Self {
        ConsistencySettings {
            wait_ms: 5_000,
            max_waiting: 256,
        }
    }
}

/// When `/health/ready` says `degraded`. (`SALESTRACK_READY_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadySettings {
    /// `/health/ready` says `degraded` when the projection lags more.
    pub max_projection_lag_ms: u64,
    /// `/health/ready` says `degraded` when a consumer loop has had no
    /// partition, or has had work without committing any, for longer.
    pub max_stall_ms: u64,
    /// `/health/ready` says `degraded`, naming the record and its error,
    /// when a record has waited longer on a retryable failure.
    pub max_record_wait_ms: u64,
}

impl Default for ReadySettings {
    fn default() -> Self {
        ReadySettings {
            max_projection_lag_ms: 30_000,
            max_stall_ms: 60_000,
            max_record_wait_ms: 10_000,
        }
    }
}

/// The bus on Kafka; empty `brokers` keeps the embedded bus. (`SALESTRACK_KAFKA_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Kafka bootstrap servers (`host:port,...`); empty keeps the embedded bus.
    pub brokers: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, or `AWS_MSK_IAM` (MSK's
    /// IAM access control: OAUTHBEARER tokens signed with the AWS
    /// credentials of the environment, e.g. a Lambda's role).
    pub sasl_mechanism: Option<String>,
    /// Region of the MSK cluster for `AWS_MSK_IAM`; unset: `AWS_REGION`.
    pub aws_region: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<Secret>,
    /// CA bundle (PEM) for TLS to the brokers.
    pub ssl_ca_location: Option<String>,
    /// Create missing topics at start (brokers may not auto-create them).
    pub create_topics: bool,
    pub replication_factor: i32,
    /// `min.insync.replicas` of the topics the runner creates: how many
    /// replicas hold a record before a `202` (an `acks=all` write) is
    /// answered. Unset: 2 when the replication factor is 3 or more, else 1.
    pub min_insync_replicas: Option<i32>,
    /// Longest a broker holds a fetch waiting for data.
    pub fetch_wait_ms: u64,
    /// After a batch's first record, how long to keep filling it.
    pub batch_window_ms: u64,
    /// How long the producer lingers for more records before a send.
    pub linger_ms: u64,
    /// Stable name of this runner instance in its consumer groups (static
    /// membership): a restart takes its partitions back without waiting.
    pub group_instance_id: Option<String>,
    /// How long a silent group member keeps its partitions.
    pub session_timeout_ms: u64,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: String::new(),
            security_protocol: "plaintext".into(),
            sasl_mechanism: None,
            aws_region: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            create_topics: true,
            replication_factor: 1,
            min_insync_replicas: None,
            fetch_wait_ms: 10,
            batch_window_ms: 100,
            linger_ms: 0,
            group_instance_id: None,
            session_timeout_ms: 10_000,
        }
    }
}

/// The read store on Elasticsearch / OpenSearch; empty `url` keeps the embedded read store. (`SALESTRACK_ELASTICSEARCH_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElasticsearchSettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub api_key: Option<Secret>,
    pub ca_location: Option<String>,
    pub index_prefix: String,
    pub refresh: EsRefresh,
    pub timeout_ms: u64,
    pub max_attempts: usize,
    pub shards: Option<u32>,
    pub replicas: Option<u32>,
    pub refresh_interval: Option<String>,
}

impl Default for ElasticsearchSettings {
    fn default() -> Self {
        ElasticsearchSettings {
            url: String::new(),
            username: None,
            password: None,
            api_key: None,
            ca_location: None,
            index_prefix: "salestrack".into(),
            refresh: EsRefresh::False,
            timeout_ms: 10_000,
            max_attempts: 5,
            shards: None,
            replicas: None,
            refresh_interval: None,
        }
    }
}

/// Bearer-token authentication; a JWKS turns it on. (`SALESTRACK_AUTH_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// JWKS of the identity provider (`https://…/.well-known/jwks.json`):
    /// turns authentication on.
    pub jwks_url: Option<String>,
    /// The same from a file, instead of a URL.
    pub jwks_file: Option<PathBuf>,
    /// The `iss` every token must carry (required with a JWKS).
    pub issuer: Option<String>,
    /// The `aud` every token must name (required with a JWKS).
    pub audience: Option<String>,
    /// The claim holding the user's roles (an array or a space-separated
    /// string); `admin` may read reports.
    pub roles_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
    /// A token naming an unknown `kid` fetches the JWKS again, at most this
    /// often.
    pub jwks_min_refresh_s: u64,
    /// Keys held longer are fetched again in the background when next used:
    /// a key the provider withdrew is trusted at most this much longer.
    pub jwks_max_age_s: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwks_url: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            roles_claim: "roles".into(),
            leeway_s: 30,
            jwks_min_refresh_s: 30,
            jwks_max_age_s: 300,
        }
    }
}

/// The event store and payment ledger on Cassandra; empty `contact_points` keeps the embedded stores. (`SALESTRACK_CASSANDRA_*`)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CassandraSettings {
    /// Cassandra contact points (`host:port,...`); empty keeps the embedded
    /// event store.
    pub contact_points: String,
    pub keyspace: String,
    /// Data centre whose nodes coordinate requests (`LOCAL_*` consistency).
    pub local_dc: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// TLS to the nodes (required by Amazon Keyspaces).
    pub tls: bool,
    /// CA bundle (PEM) for TLS; unset: the system's roots.
    pub ca_location: Option<String>,
    /// Apply `infra/cassandra/*.cql` at start (idempotent).
    pub create_schema: bool,
    /// The keyspace's replication map, used when the schema is applied.
    pub replication: String,
    /// Consistency of reads and writes.
    pub consistency: String,
    /// Consistency of the Paxos phase of conditional appends.
    pub serial_consistency: String,
    pub request_timeout_ms: u64,
    /// Events per page when reading a stream.
    pub page_size: i32,
    /// Wait for the nodes to agree on the schema after applying it. Only a
    /// single-node test server that cannot answer (kassandra) turns it off.
    pub await_schema_agreement: bool,
}

impl Default for CassandraSettings {
    fn default() -> Self {
        CassandraSettings {
            contact_points: String::new(),
            keyspace: "salestrack".into(),
            local_dc: None,
            username: None,
            password: None,
            tls: false,
            ca_location: None,
            create_schema: true,
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            consistency: "LOCAL_QUORUM".into(),
            serial_consistency: "LOCAL_SERIAL".into(),
            request_timeout_ms: 5_000,
            page_size: 1_000,
            await_schema_agreement: true,
        }
    }
}

/// `SALESTRACK_ELASTICSEARCH_REFRESH`: when bulk writes become searchable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EsRefresh {
    /// The index's refresh interval decides (cheapest).
    False,
    /// Each bulk waits until its writes are searchable.
    WaitFor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./data"),
            partitions: 8,
            bus_retention_hours: 7 * 24,
            consumers: "all".into(),
            lambda_streaming: false,
            domain_group: "salestrack-domain".into(),
            projector_group: "salestrack-projector".into(),
            payment_group: "salestrack-payment".into(),
            batch_size: 500,
            consumer_lanes: 1,
            warm_cart_events: 100_000,
            poll_wait_ms: 500,
            retry_backoff_max_ms: 10_000,
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            snapshot_every: 100,
            secret_arn: None,
            secrets_extension_port: 2773,
            topics: Topics::default(),
            http: HttpSettings::default(),
            live: LiveSettings::default(),
            payment: PaymentSettings::default(),
            consistency: ConsistencySettings::default(),
            ready: ReadySettings::default(),
            kafka: KafkaSettings::default(),
            elasticsearch: ElasticsearchSettings::default(),
            auth: AuthSettings::default(),
            cassandra: CassandraSettings::default(),
        }
    }
}

/// A setting never printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A setting that is missing, malformed or unknown; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl KafkaSettings {
    /// `min.insync.replicas` for the topics the runner creates.
    pub fn min_insync_replicas(&self) -> i32 {
        self.min_insync_replicas
            .unwrap_or(if self.replication_factor >= 3 { 2 } else { 1 })
    }
}

/// The groups whose variables are `SALESTRACK_<GROUP>_<FIELD>`.
const GROUPS: [&str; 9] = [
    "http",
    "live",
    "payment",
    "consistency",
    "ready",
    "kafka",
    "elasticsearch",
    "auth",
    "cassandra",
];

/// Variables that belong to another group than their name says.
const MOVED: [(&str, &str); 2] = [
    ("max_body_bytes", "http.max_body_bytes"),
    // A consumer group, like `domain_group`: not a payment setting.
    ("payment_group", "payment_group"),
];

/// The settings key of the variable `SALESTRACK_<name>` (`name` lowercased):
/// `kafka_brokers` is `kafka.brokers`, `commands_topic` is
/// `topics.commands`, `data_dir` stays `data_dir`.
pub fn env_key(name: &str) -> String {
    if let Some((_, key)) = MOVED.iter().find(|(from, _)| *from == name) {
        return (*key).to_owned();
    }
    if let Some(topic) = name.strip_suffix("_topic") {
        return format!("topics.{topic}");
    }
    GROUPS
        .iter()
        .find_map(|group| {
            name.strip_prefix(group)
                .and_then(|rest| rest.strip_prefix('_'))
                .map(|field| format!("{group}.{field}"))
        })
        .unwrap_or_else(|| name.to_owned())
}

/// The variable of a settings key: the inverse of [`env_key`].
pub fn env_name(key: &str) -> String {
    let flat = match MOVED.iter().find(|(_, to)| *to == key) {
        Some((from, _)) => (*from).to_owned(),
        None => match key.split_once('.') {
            Some(("topics", topic)) => format!("{topic}_topic"),
            Some((group, field)) => format!("{group}_{field}"),
            None => key.to_owned(),
        },
    };
    format!("SALESTRACK_{}", flat.to_uppercase())
}

impl Settings {
    /// Defaults, overridden by `SALESTRACK_*` variables. Fails fast on a bad
    /// or unknown one, naming the variable.
    pub fn from_env() -> Result<Settings, ConfigError> {
        let settings: Settings = Self::figment().extract().map_err(|e| {
            let mut path = e.path.clone();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                path.push(field.clone());
            }
            let name = env_name(&path.join("."));
            ConfigError(Box::new(figment::Error::from(format!("{name}: {e}"))))
        })?;
        let (rf, min_insync) = (
            settings.kafka.replication_factor,
            settings.kafka.min_insync_replicas(),
        );
        if !(1..=rf.max(1)).contains(&min_insync) {
            return Err(ConfigError(Box::new(figment::Error::from(format!(
                "SALESTRACK_KAFKA_MIN_INSYNC_REPLICAS must be between 1 and \
                 SALESTRACK_KAFKA_REPLICATION_FACTOR ({rf}), got {min_insync}"
            )))));
        }
        if !(0.0..=1.0).contains(&settings.payment.decline_rate) {
            return Err(ConfigError(Box::new(figment::Error::from(format!(
                "SALESTRACK_PAYMENT_DECLINE_RATE must be within 0.0..=1.0, got {}",
                settings.payment.decline_rate
            )))));
        }
        Ok(settings)
    }

    pub fn figment() -> Figment {
        // SALESTRACK_TEST_CASSANDRA names a cluster for the Cassandra tests;
        // it is not a setting of the running system.
        Figment::from(Serialized::defaults(Settings::default())).merge(
            Env::prefixed("SALESTRACK_")
                .ignore(&["TEST_CASSANDRA"])
                .map(|name| env_key(&name.as_str().to_lowercase()).into()),
        )
    }
}

/// The topic names every role agrees on (`SALESTRACK_<NAME>_TOPIC`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    pub commands: String,
    pub events: String,
    pub outcomes: String,
    pub dead_letter: String,
    pub payments: String,
    /// Empty: no projection notices.
    pub projections: String,
}

impl Default for Topics {
    fn default() -> Self {
        use salestrack_core::topics;
        Topics {
            commands: topics::COMMANDS.into(),
            events: topics::EVENTS.into(),
            outcomes: topics::OUTCOMES.into(),
            dead_letter: topics::DEAD_LETTER.into(),
            payments: topics::PAYMENTS.into(),
            projections: topics::PROJECTIONS.into(),
        }
    }
}

#[cfg(test)]
// figment::Jail closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    #[test]
    fn min_insync_replicas_follow_the_replication_factor_unless_set() {
        let with = |rf, set| Settings {
            kafka: KafkaSettings {
                replication_factor: rf,
                min_insync_replicas: set,
                ..Default::default()
            },
            ..Settings::default()
        };
        assert_eq!(with(1, None).kafka.min_insync_replicas(), 1);
        assert_eq!(with(2, None).kafka.min_insync_replicas(), 1);
        assert_eq!(with(3, None).kafka.min_insync_replicas(), 2);
        assert_eq!(with(5, None).kafka.min_insync_replicas(), 2);
        assert_eq!(with(5, Some(3)).kafka.min_insync_replicas(), 3);
        figment::Jail::expect_with(|jail| {
            jail.set_env("SALESTRACK_KAFKA_REPLICATION_FACTOR", "3");
            jail.set_env("SALESTRACK_KAFKA_MIN_INSYNC_REPLICAS", "4");
            let err = Settings::from_env().expect_err("more in sync than there are replicas");
            assert!(
                err.to_string()
                    .contains("SALESTRACK_KAFKA_MIN_INSYNC_REPLICAS"),
                "{err}"
            );
            Ok(())
        });
    }

    use super::*;
    use figment::Jail;

    /// Every setting's key, `group.field` or `field`, from the defaults.
    fn keys() -> Vec<String> {
        let defaults = serde_json::to_value(Settings::default()).expect("json");
        let mut keys = Vec::new();
        for (name, value) in defaults.as_object().expect("an object") {
            match value.as_object() {
                Some(group) => keys.extend(group.keys().map(|field| format!("{name}.{field}"))),
                None => keys.push(name.clone()),
            }
        }
        keys
    }

    #[test]
    fn every_setting_has_its_variable_and_the_variable_reaches_it() {
        let keys = keys();
        assert!(keys.len() > 90, "{keys:?}");
        for key in &keys {
            let name = env_name(key);
            let back = env_key(&name["SALESTRACK_".len()..].to_lowercase());
            assert_eq!(&back, key, "{name}");
        }
        // The variables did not change when the settings were grouped.
        for (key, name) in [
            ("kafka.brokers", "SALESTRACK_KAFKA_BROKERS"),
            ("topics.dead_letter", "SALESTRACK_DEAD_LETTER_TOPIC"),
            ("http.max_body_bytes", "SALESTRACK_MAX_BODY_BYTES"),
            ("payment_group", "SALESTRACK_PAYMENT_GROUP"),
            ("payment.timeout_ms", "SALESTRACK_PAYMENT_TIMEOUT_MS"),
            ("data_dir", "SALESTRACK_DATA_DIR"),
        ] {
            assert_eq!(env_name(key), name);
        }
        Jail::expect_with(|jail| {
            jail.set_env("SALESTRACK_KAFKA_BROKERS", "127.0.0.1:9092");
            jail.set_env("SALESTRACK_DEAD_LETTER_TOPIC", "dl");
            jail.set_env("SALESTRACK_MAX_BODY_BYTES", "10");
            jail.set_env("SALESTRACK_PAYMENT_GROUP", "pay");
            let s = Settings::from_env().expect("settings");
            assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
            assert_eq!(s.topics.dead_letter, "dl");
            assert_eq!(s.http.max_body_bytes, 10);
            assert_eq!(s.payment_group, "pay");
            Ok(())
        });
    }

    #[test]
    fn with_no_environment_the_defaults_start_embedded_on_loopback() {
        Jail::expect_with(|_| {
            let s = Settings::from_env().expect("defaults");
            assert_eq!(s.http.addr.to_string(), "127.0.0.1:8080");
            assert_eq!(s.data_dir, PathBuf::from("./data"));
            Ok(())
        });
    }

    #[test]
    fn salestrack_variables_override_the_defaults() {
        Jail::expect_with(|jail| {
            jail.set_env("SALESTRACK_HTTP_ADDR", "127.0.0.1:9999");
            jail.set_env("SALESTRACK_DATA_DIR", "/tmp/elsewhere");
            jail.set_env("SALESTRACK_LOG_FORMAT", "json");
            let s = Settings::from_env().expect("settings");
            assert_eq!(s.http.addr.port(), 9999);
            assert_eq!(s.data_dir, PathBuf::from("/tmp/elsewhere"));
            assert_eq!(s.log_format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    fn the_cassandra_test_switch_is_not_a_setting() {
        Jail::expect_with(|jail| {
            jail.set_env("SALESTRACK_TEST_CASSANDRA", "127.0.0.1:9042");
            Settings::from_env().expect("ignored");
            Ok(())
        });
    }

    #[test]
    fn a_malformed_or_unknown_setting_fails_fast_and_names_it() {
        Jail::expect_with(|jail| {
            jail.set_env("SALESTRACK_HTTP_ADDR", "not an address");
            let err = Settings::from_env().expect_err("invalid").to_string();
            assert!(err.to_lowercase().contains("http_addr"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("SALESTRACK_HTTP_ADDRESS", "127.0.0.1:1");
            let err = Settings::from_env().expect_err("unknown").to_string();
            assert!(err.to_lowercase().contains("http_address"), "{err}");
            Ok(())
        });
    }
}
