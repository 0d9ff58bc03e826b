//! How to reach the cluster and how to write to it.

use std::time::Duration;

/// When written documents become visible to searches. Reads by id (`GET`)
/// see a write at once whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshPolicy {
    /// Let the index's `refresh_interval` decide (cheapest; the default).
    None,
    /// Each bulk returns once its writes are searchable (tests, demos).
    WaitFor,
}

impl RefreshPolicy {
    pub(crate) fn query_value(self) -> &'static str {
        match self {
            RefreshPolicy::None => "false",
            RefreshPolicy::WaitFor => "wait_for",
        }
    }
}

/// Connection and layout settings of [`crate::EsReadStore`].
#[derive(Clone)]
pub struct EsConfig {
    /// `http(s)://host:port`.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// An Elasticsearch API key (`id:key` base64, as Kibana prints it).
    pub api_key: Option<String>,
    /// PEM bundle of the CA that signed the cluster's certificate.
    pub ca_location: Option<String>,
    /// Every index, alias and template name starts with `{prefix}-`.
    pub index_prefix: String,
    pub refresh: RefreshPolicy,
    /// Per request.
    pub timeout: Duration,
    /// Attempts of a bulk item that failed for a transient reason.
    pub max_attempts: usize,
    /// Overrides the templates' shard and replica counts (single-node dev
    /// clusters want 1 and 0).
    pub shards: Option<u32>,
    pub replicas: Option<u32>,
    /// The indices' `refresh_interval` (`1s` by default on the server):
    /// longer is cheaper under heavy writes, shorter makes `WaitFor` writes
    /// return sooner.
    pub refresh_interval: Option<String>,
}

impl EsConfig {
    pub fn new(url: &str, index_prefix: &str) -> EsConfig {
        EsConfig {
            url: url.to_owned(),
            username: None,
            password: None,
            api_key: None,
            ca_location: None,
            index_prefix: index_prefix.to_owned(),
            refresh: RefreshPolicy::None,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            shards: None,
            replicas: None,
            refresh_interval: None,
        }
    }
}

impl std::fmt::Debug for EsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("index_prefix", &self.index_prefix)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}
