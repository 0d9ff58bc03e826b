//! How to reach the cluster and how consumers batch.

use crate::msk_iam;
use rdkafka::config::ClientConfig;
use rdkafka::ClientContext;
use salestrack_core::ports::BackendError;
use std::time::Duration;

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

    pub(crate) fn client(&self) -> ClientConfig {
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
    pub(crate) fn context(&self) -> Result<BusContext, BackendError> {
        let iam = self
            .sasl_mechanism
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(msk_iam::MECHANISM));
        if !iam {
            return Ok(BusContext { msk_iam: None });
        }
        let region = self.aws_region.as_deref().ok_or_else(|| {
            BackendError::new(
                crate::BACKEND,
                "AWS_MSK_IAM needs the cluster's region: set SALESTRACK_KAFKA_AWS_REGION or AWS_REGION",
            )
        })?;
        let signer = msk_iam::MskIam::from_environment(region)
            .map_err(|e| BackendError::new(crate::BACKEND, e))?;
        Ok(BusContext {
            msk_iam: Some(signer),
        })
    }
}

/// The client context of the producer and the admin client; the group
/// consumers' [`GroupContext`] embeds one.
#[derive(Clone)]
pub(crate) struct BusContext {
    pub(crate) msk_iam: Option<msk_iam::MskIam>,
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
