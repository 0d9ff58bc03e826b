//! How to reach the cluster, and the driver session built from it.

use crate::CassandraError;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::{Consistency, SerialConsistency};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct CassandraConfig {
    /// `host:port` of one or more nodes; the driver discovers the others.
    pub contact_points: Vec<String>,
    pub keyspace: String,
    /// Data centre whose nodes coordinate requests; others only on failover.
    pub local_dc: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS to the nodes, verified against `ca_location` or the system roots.
    pub tls: bool,
    pub ca_location: Option<PathBuf>,
    /// Apply `infra/cassandra/*.cql` on connect.
    pub create_schema: bool,
    /// The keyspace's replication map when the schema is applied.
    pub replication: String,
    /// Reads and writes (`LOCAL_QUORUM` by default).
    pub consistency: Consistency,
    /// The Paxos phase of conditional appends and the reads that settle an
    /// ambiguous one (`LOCAL_SERIAL` by default).
    pub serial_consistency: SerialConsistency,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Rows per page when reading a stream.
    pub page_size: i32,
    /// Wait for every node to agree on the schema after changing it. Real
    /// clusters need it; the in-memory test server cannot answer it.
    pub await_schema_agreement: bool,
    /// Read the cluster's schema: token-aware routing needs the keyspace's
    /// replication to send a request to a replica of its partition. Real
    /// clusters want it; the in-memory test server cannot answer it.
    pub fetch_schema_metadata: bool,
}

impl CassandraConfig {
    pub fn new(contact_points: &str, keyspace: &str) -> CassandraConfig {
        CassandraConfig {
            contact_points: contact_points
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            keyspace: keyspace.into(),
            local_dc: None,
            username: None,
            password: None,
            tls: false,
            ca_location: None,
            create_schema: true,
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            page_size: 1_000,
            await_schema_agreement: true,
            fetch_schema_metadata: true,
        }
    }
}

/// `LOCAL_QUORUM`, `quorum`, `one`, ... as the driver's consistency.
pub fn parse_consistency(name: &str) -> Result<Consistency, CassandraError> {
    let c = match name.trim().to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        other => {
            return Err(CassandraError::Config(format!(
            "consistency {other:?}: use ONE, QUORUM, LOCAL_QUORUM, LOCAL_ONE, EACH_QUORUM or ALL"
        )))
        }
    };
    Ok(c)
}

/// `SERIAL` or `LOCAL_SERIAL`.
pub fn parse_serial_consistency(name: &str) -> Result<SerialConsistency, CassandraError> {
    match name.trim().to_ascii_uppercase().as_str() {
        "SERIAL" => Ok(SerialConsistency::Serial),
        "LOCAL_SERIAL" => Ok(SerialConsistency::LocalSerial),
        other => Err(CassandraError::Config(format!(
            "serial consistency {other:?}: use SERIAL or LOCAL_SERIAL"
        ))),
    }
}

pub(crate) async fn connect(config: &CassandraConfig) -> Result<Session, CassandraError> {
    if config.contact_points.is_empty() {
        return Err(CassandraError::Config("no contact points".into()));
    }
    if config.page_size <= 0 {
        return Err(CassandraError::Config(format!(
            "page size {} must be positive",
            config.page_size
        )));
    }
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.local_dc {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(config.consistency)
        .serial_consistency(Some(config.serial_consistency))
        .request_timeout(Some(config.request_timeout))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.contact_points)
        .connection_timeout(config.connect_timeout)
        .default_execution_profile_handle(profile.into_handle())
        .auto_await_schema_agreement(config.await_schema_agreement)
        // The keyspaces' replication, which token-aware routing needs to
        // find a partition's replicas (the driver says so when it is off).
        .fetch_schema_metadata(config.fetch_schema_metadata);
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => builder = builder.user(user, password),
        (None, None) => {}
        _ => {
            return Err(CassandraError::Config(
                "set both the username and the password, or neither".into(),
            ))
        }
    }
    if config.tls {
        builder = builder.tls_context(Some(tls(config.ca_location.as_ref())?));
    }
    builder
        .build()
        .await
        .map_err(|e| CassandraError::Connect(e.to_string()))
}

fn tls(ca: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>, CassandraError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    CassandraError::Config(format!("CA bundle {}: {e}", path.display()))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(CassandraError::Config(format!(
                    "CA bundle {} holds no usable certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CassandraError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_names_parse_and_unknown_ones_are_named() {
        assert_eq!(
            parse_consistency("local_quorum").expect("ok"),
            Consistency::LocalQuorum
        );
        assert_eq!(
            parse_serial_consistency("SERIAL").expect("ok"),
            SerialConsistency::Serial
        );
        let err = parse_consistency("MOST").expect_err("unknown").to_string();
        assert!(err.contains("MOST"), "{err}");
        assert!(parse_serial_consistency("QUORUM").is_err());
    }

    #[test]
    fn contact_points_are_split_and_trimmed() {
        let c = CassandraConfig::new(" a:9042, b:9042 ,,", "ks");
        assert_eq!(c.contact_points, ["a:9042", "b:9042"]);
    }

    #[test]
    fn a_missing_ca_bundle_is_a_configuration_error() {
        let err = tls(Some(&PathBuf::from("/nonexistent/ca.pem")))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
