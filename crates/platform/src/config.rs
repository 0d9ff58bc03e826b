//! One typed configuration, read from `SALESTRACK_*` environment variables at
//! start-up. Every default starts the embedded mode on loopback.

use figment::providers::{Env, Serialized};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the local runner listens (`SALESTRACK_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Directory of the embedded backends' files (`SALESTRACK_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Partitions of each topic (embedded, and Kafka topics the runner creates).
    pub partitions: i32,
    /// How long the embedded bus keeps records.
    pub bus_retention_hours: u64,
    pub commands_topic: String,
    pub events_topic: String,
    pub outcomes_topic: String,
    pub dead_letter_topic: String,
    /// Payment requests, from the domain to the payment function.
    pub payments_topic: String,
    /// The projector's "cart X is projected up to version N" notices, which
    /// every runner's live streams follow; empty: the projector sends none
    /// (the query Lambda's streams look at the read store instead).
    pub projections_topic: String,
    /// The consumer loops this runner hosts, comma-separated from `domain`,
    /// `projector`, `payment` and `saga_timer`; `all` (the default) or
    /// `none` (an HTTP-only runner).
    pub consumers: String,
    /// Live streams (`GET /carts/{id}/live`) served at once; beyond it `503`
    /// with `Retry-After`.
    pub live_max_streams: usize,
    /// A comment line on an idle live stream this often.
    pub live_heartbeat_ms: u64,
    /// How often a live stream looks at the read store itself, besides the
    /// projection notices: the safety net for a lost notice, and on Lambda
    /// (no notices) the only source.
    pub live_poll_ms: u64,
    /// Events a live stream may have waiting for its client; a client that
    /// falls further behind is slow and is dropped.
    pub live_buffer: usize,
    /// A live client that takes no event for this long while one waits
    /// is dropped (it reconnects with `Last-Event-ID` when it can keep up).
    pub live_slow_ms: u64,
    /// Longest a live stream lasts (0: until the client or shutdown ends
    /// it); on Lambda it must end before the function's timeout.
    pub live_max_lifetime_s: u64,
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
    /// How long a checkout waits for its payment answer before the saga
    /// cancels it (`payment_timeout`).
    pub payment_timeout_ms: u64,
    /// The mock gateway declines this share of charges at random (0.0..=1.0).
    pub payment_decline_rate: f64,
    /// The mock gateway answers this much later.
    pub payment_delay_ms: u64,
    /// How often the runner's saga timer looks for checkouts past their
    /// deadline.
    pub payment_sweep_ms: u64,
    /// Most records handed to a handler in one batch.
    pub batch_size: usize,
    /// How long an idle consumer waits for records before polling again.
    pub poll_wait_ms: u64,
    /// Longest pause between two deliveries of a record that keeps failing
    /// for a retryable reason. Such a record is never dead-lettered: its
    /// partition waits for it however long it takes (poison is
    /// dead-lettered at once).
    pub retry_backoff_max_ms: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// API requests served at once; beyond it a request is answered `503`
    /// with `Retry-After` at once instead of queueing without bound.
    pub http_max_in_flight: usize,
    /// Connections a runner holds open at once; beyond, it accepts no more
    /// until one closes (they wait in the listen backlog).
    pub http_max_connections: usize,
    /// How long a client may take to send a request's headers, from the
    /// connection's start or the previous response; then it is closed.
    pub http_header_timeout_ms: u64,
    /// How long a client may take to send a request's body once its headers
    /// arrived; then `408 request_timeout`. The body is read before the
    /// request takes a slot of `http_max_in_flight`.
    pub http_body_timeout_ms: u64,
    /// How long a read with a consistency token waits for the projection.
    pub consistency_wait_ms: u64,
    /// Reads that may wait for a consistency token at once; beyond, a read
    /// is answered at once, `Consistency: stale` if the token is not reached.
    pub consistency_max_waiting: usize,
    /// `/health/ready` says `degraded` when the projection lags more.
    pub ready_max_projection_lag_ms: u64,
    /// `/health/ready` says `degraded` when a consumer loop has had no
    /// partition, or has had work without committing any, for longer.
    pub ready_max_stall_ms: u64,
    /// `/health/ready` says `degraded`, naming the record and its error,
    /// when a record has waited longer on a retryable failure.
    pub ready_max_record_wait_ms: u64,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// OTLP/HTTP collector (`http://host:4318`) to export spans to; unset: none.
    pub otlp_endpoint: Option<String>,
    /// Kafka bootstrap servers (`host:port,...`); empty keeps the embedded bus.
    pub kafka_brokers: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub kafka_security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, or `AWS_MSK_IAM` (MSK's
    /// IAM access control: OAUTHBEARER tokens signed with the AWS
    /// credentials of the environment, e.g. a Lambda's role).
    pub kafka_sasl_mechanism: Option<String>,
    /// Region of the MSK cluster for `AWS_MSK_IAM`; unset: `AWS_REGION`.
    pub kafka_aws_region: Option<String>,
    pub kafka_sasl_username: Option<String>,
    pub kafka_sasl_password: Option<Secret>,
    /// CA bundle (PEM) for TLS to the brokers.
    pub kafka_ssl_ca_location: Option<String>,
    /// Create missing topics at start (brokers may not auto-create them).
    pub kafka_create_topics: bool,
    pub kafka_replication_factor: i32,
    /// `min.insync.replicas` of the topics the runner creates: how many
    /// replicas hold a record before a `202` (an `acks=all` write) is
    /// answered. Unset: 2 when the replication factor is 3 or more, else 1.
    pub kafka_min_insync_replicas: Option<i32>,
    /// Longest a broker holds a fetch waiting for data.
    pub kafka_fetch_wait_ms: u64,
    /// After a batch's first record, how long to keep filling it.
    pub kafka_batch_window_ms: u64,
    /// How long the producer lingers for more records before a send.
    pub kafka_linger_ms: u64,
    /// Stable name of this runner instance in its consumer groups (static
    /// membership): a restart takes its partitions back without waiting.
    pub kafka_group_instance_id: Option<String>,
    /// How long a silent group member keeps its partitions.
    pub kafka_session_timeout_ms: u64,
    pub elasticsearch_url: String,
    pub elasticsearch_username: Option<String>,
    pub elasticsearch_password: Option<Secret>,
    pub elasticsearch_api_key: Option<Secret>,
    pub elasticsearch_ca_location: Option<String>,
    pub elasticsearch_index_prefix: String,
    pub elasticsearch_refresh: EsRefresh,
    pub elasticsearch_timeout_ms: u64,
    pub elasticsearch_max_attempts: usize,
    pub elasticsearch_shards: Option<u32>,
    pub elasticsearch_replicas: Option<u32>,
    pub elasticsearch_refresh_interval: Option<String>,
    /// JWKS of the identity provider (`https://…/.well-known/jwks.json`):
    /// turns authentication on.
    pub auth_jwks_url: Option<String>,
    /// The same from a file, instead of a URL.
    pub auth_jwks_file: Option<PathBuf>,
    /// The `iss` every token must carry (required with a JWKS).
    pub auth_issuer: Option<String>,
    /// The `aud` every token must name (required with a JWKS).
    pub auth_audience: Option<String>,
    /// The claim holding the user's roles (an array or a space-separated
    /// string); `admin` may read reports.
    pub auth_roles_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub auth_leeway_s: u64,
    /// A token naming an unknown `kid` fetches the JWKS again, at most this
    /// often.
    pub auth_jwks_min_refresh_s: u64,
    /// Keys held longer are fetched again in the background when next used:
    /// a key the provider withdrew is trusted at most this much longer.
    pub auth_jwks_max_age_s: u64,
    /// A cart snapshot every this many events; 0 turns snapshots off.
    pub snapshot_every: u64,
    /// Cassandra contact points (`host:port,...`); empty keeps the embedded
    /// event store.
    pub cassandra_contact_points: String,
    pub cassandra_keyspace: String,
    /// Data centre whose nodes coordinate requests (`LOCAL_*` consistency).
    pub cassandra_local_dc: Option<String>,
    pub cassandra_username: Option<String>,
    /// A Lambda function's own secret (Secrets Manager ARN), read at start
    /// through the AWS Parameters and Secrets Lambda Extension: its
    /// credentials override the Cassandra and Elasticsearch ones above.
    pub secret_arn: Option<String>,
    /// The extension's loopback port (`PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`).
    pub secrets_extension_port: u16,
    pub cassandra_password: Option<Secret>,
    /// TLS to the nodes (required by Amazon Keyspaces).
    pub cassandra_tls: bool,
    /// CA bundle (PEM) for TLS; unset: the system's roots.
    pub cassandra_ca_location: Option<String>,
    /// Apply `infra/cassandra/*.cql` at start (idempotent).
    pub cassandra_create_schema: bool,
    /// The keyspace's replication map, used when the schema is applied.
    pub cassandra_replication: String,
    /// Consistency of reads and writes.
    pub cassandra_consistency: String,
    /// Consistency of the Paxos phase of conditional appends.
    pub cassandra_serial_consistency: String,
    pub cassandra_request_timeout_ms: u64,
    /// Events per page when reading a stream.
    pub cassandra_page_size: i32,
    /// Wait for the nodes to agree on the schema after applying it. Only a
    /// single-node test server that cannot answer (kassandra) turns it off.
    pub cassandra_await_schema_agreement: bool,
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
        use salestrack_core::topics;
        Settings {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            partitions: 8,
            bus_retention_hours: 7 * 24,
            commands_topic: topics::COMMANDS.into(),
            events_topic: topics::EVENTS.into(),
            outcomes_topic: topics::OUTCOMES.into(),
            dead_letter_topic: topics::DEAD_LETTER.into(),
            payments_topic: topics::PAYMENTS.into(),
            projections_topic: topics::PROJECTIONS.into(),
            consumers: "all".into(),
            live_max_streams: 1_000,
            live_heartbeat_ms: 15_000,
            live_poll_ms: 15_000,
            live_buffer: 16,
            live_slow_ms: 10_000,
            live_max_lifetime_s: 0,
            lambda_streaming: false,
            domain_group: "salestrack-domain".into(),
            projector_group: "salestrack-projector".into(),
            payment_group: "salestrack-payment".into(),
            payment_timeout_ms: 30_000,
            payment_decline_rate: 0.0,
            payment_delay_ms: 0,
            payment_sweep_ms: 1_000,
            batch_size: 100,
            poll_wait_ms: 500,
            retry_backoff_max_ms: 10_000,
            max_body_bytes: 64 * 1024,
            http_max_in_flight: 1024,
            http_max_connections: 4096,
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 10_000,
            consistency_wait_ms: 5_000,
            consistency_max_waiting: 256,
            ready_max_projection_lag_ms: 30_000,
            ready_max_stall_ms: 60_000,
            ready_max_record_wait_ms: 10_000,
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            kafka_brokers: String::new(),
            kafka_security_protocol: "plaintext".into(),
            kafka_sasl_mechanism: None,
            kafka_aws_region: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ssl_ca_location: None,
            kafka_create_topics: true,
            kafka_replication_factor: 1,
            kafka_min_insync_replicas: None,
            kafka_fetch_wait_ms: 10,
            kafka_batch_window_ms: 100,
            kafka_linger_ms: 0,
            kafka_group_instance_id: None,
            kafka_session_timeout_ms: 10_000,
            elasticsearch_url: String::new(),
            elasticsearch_username: None,
            elasticsearch_password: None,
            elasticsearch_api_key: None,
            elasticsearch_ca_location: None,
            elasticsearch_index_prefix: "salestrack".into(),
            elasticsearch_refresh: EsRefresh::False,
            elasticsearch_timeout_ms: 10_000,
            elasticsearch_max_attempts: 5,
            elasticsearch_shards: None,
            elasticsearch_replicas: None,
            elasticsearch_refresh_interval: None,
            auth_jwks_url: None,
            auth_jwks_file: None,
            auth_issuer: None,
            auth_audience: None,
            auth_roles_claim: "roles".into(),
            auth_leeway_s: 30,
            auth_jwks_min_refresh_s: 30,
            auth_jwks_max_age_s: 300,
            snapshot_every: 100,
            cassandra_contact_points: String::new(),
            cassandra_keyspace: "salestrack".into(),
            cassandra_local_dc: None,
            cassandra_username: None,
            secret_arn: None,
            secrets_extension_port: 2773,
            cassandra_password: None,
            cassandra_tls: false,
            cassandra_ca_location: None,
            cassandra_create_schema: true,
            cassandra_replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            cassandra_consistency: "LOCAL_QUORUM".into(),
            cassandra_serial_consistency: "LOCAL_SERIAL".into(),
            cassandra_request_timeout_ms: 5_000,
            cassandra_page_size: 1_000,
            cassandra_await_schema_agreement: true,
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

impl Settings {
    /// `min.insync.replicas` for the topics the runner creates.
    pub fn kafka_min_insync_replicas(&self) -> i32 {
        self.kafka_min_insync_replicas
            .unwrap_or(if self.kafka_replication_factor >= 3 {
                2
            } else {
                1
            })
    }

    /// Defaults, overridden by `SALESTRACK_*` variables. Fails fast on a bad or unknown one.
    pub fn from_env() -> Result<Settings, ConfigError> {
        let settings: Settings = Self::figment()
            .extract()
            .map_err(|e| ConfigError(Box::new(e)))?;
        let (rf, min_insync) = (
            settings.kafka_replication_factor,
            settings.kafka_min_insync_replicas(),
        );
        if !(1..=rf.max(1)).contains(&min_insync) {
            return Err(ConfigError(Box::new(figment::Error::from(format!(
                "SALESTRACK_KAFKA_MIN_INSYNC_REPLICAS must be between 1 and \
                 SALESTRACK_KAFKA_REPLICATION_FACTOR ({rf}), got {min_insync}"
            )))));
        }
        if !(0.0..=1.0).contains(&settings.payment_decline_rate) {
            return Err(ConfigError(Box::new(figment::Error::from(format!(
                "SALESTRACK_PAYMENT_DECLINE_RATE must be within 0.0..=1.0, got {}",
                settings.payment_decline_rate
            )))));
        }
        Ok(settings)
    }

    pub fn figment() -> Figment {
        // SALESTRACK_TEST_CASSANDRA names a cluster for the Cassandra tests;
        // it is not a setting of the running system.
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Env::prefixed("SALESTRACK_").ignore(&["TEST_CASSANDRA"]))
    }

    pub fn topics(&self) -> Topics {
        Topics {
            commands: self.commands_topic.clone(),
            events: self.events_topic.clone(),
            outcomes: self.outcomes_topic.clone(),
            dead_letter: self.dead_letter_topic.clone(),
            payments: self.payments_topic.clone(),
            projections: self.projections_topic.clone(),
        }
    }
}

/// The topic names every role agrees on.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        Settings::default().topics()
    }
}

#[cfg(test)]
// figment::Jail closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    #[test]
    fn min_insync_replicas_follow_the_replication_factor_unless_set() {
        let with = |rf, set| Settings {
            kafka_replication_factor: rf,
            kafka_min_insync_replicas: set,
            ..Settings::default()
        };
        assert_eq!(with(1, None).kafka_min_insync_replicas(), 1);
        assert_eq!(with(2, None).kafka_min_insync_replicas(), 1);
        assert_eq!(with(3, None).kafka_min_insync_replicas(), 2);
        assert_eq!(with(5, None).kafka_min_insync_replicas(), 2);
        assert_eq!(with(5, Some(3)).kafka_min_insync_replicas(), 3);
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

    #[test]
    fn with_no_environment_the_defaults_start_embedded_on_loopback() {
        Jail::expect_with(|_| {
            let s = Settings::from_env().expect("defaults");
            assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
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
            assert_eq!(s.http_addr.port(), 9999);
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
