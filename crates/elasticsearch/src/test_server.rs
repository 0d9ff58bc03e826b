//! Real Elasticsearch-API servers for tests, each on a free loopback port
//! with its own data and a unique index prefix per store, stopped on drop:
//!
//! - `noida-db` (PyPI) answers as Elasticsearch 8.15;
//! - `osmem-server` (PyPI, in-memory) answers as OpenSearch 3, the second
//!   opinion.
//!
//! A server whose program is not on `PATH` is skipped with a printed reason,
//! unless `REQUIRE_SEARCH_SERVERS=1` (set by `.ci/run`) makes that a failure.

use crate::{EsConfig, EsReadStore, RefreshPolicy};
use salestrack_port_tests::servers::ServerProcess;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Noida,
    Osmem,
}

impl ServerKind {
    pub const ALL: [ServerKind; 2] = [ServerKind::Noida, ServerKind::Osmem];

    fn program(self) -> &'static str {
        match self {
            ServerKind::Noida => "noida-db",
            ServerKind::Osmem => "osmem-server",
        }
    }
}

/// A running server; killed (with its data) on drop.
pub struct TestSearchServer {
    pub kind: ServerKind,
    /// `http://127.0.0.1:port`.
    pub url: String,
    process: ServerProcess,
}

/// A prefix no other store of this process or of a parallel test uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings for a store of its own on the server at `url`: a fresh prefix,
/// one shard, no replicas, searchable on return.
pub fn config_at(url: &str) -> EsConfig {
    EsConfig {
        refresh: RefreshPolicy::WaitFor,
        shards: Some(1),
        replicas: Some(0),
        // `WaitFor` writes wait for the next refresh: the server's 1 s
        // would make every write of a test take a second.
        refresh_interval: Some("50ms".into()),
        ..EsConfig::new(url, &unique_prefix())
    }
}

/// A connected store with a fresh prefix on the server at `url`.
pub async fn store_at(url: &str) -> EsReadStore {
    EsReadStore::connect(config_at(url))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The server a test runs on: one at a URL it does not own (a shared
/// OpenSearch engine), or an emulator process of its own, which dies with it.
pub struct SearchTarget {
    /// What failure messages call it.
    pub name: String,
    /// `http://127.0.0.1:port`.
    pub url: String,
    _own: Option<TestSearchServer>,
}

impl SearchTarget {
    pub fn at(name: &str, url: &str) -> SearchTarget {
        SearchTarget {
            name: name.to_owned(),
            url: url.to_owned(),
            _own: None,
        }
    }

    /// `None` (having said why) when `kind` is not installed and not required.
    pub fn emulator(kind: ServerKind) -> Option<SearchTarget> {
        let own = TestSearchServer::start(kind)?;
        Some(SearchTarget {
            name: format!("{kind:?}"),
            url: own.url.clone(),
            _own: Some(own),
        })
    }

    /// A connected store with a fresh prefix.
    pub async fn store(&self) -> EsReadStore {
        store_at(&self.url).await
    }
}

impl TestSearchServer {
    /// Starts a server of `kind`, or returns `None` (having said why) when
    /// it is not installed and not required.
    pub fn start(kind: ServerKind) -> Option<TestSearchServer> {
        let process = ServerProcess::start(
            kind.program(),
            "REQUIRE_SEARCH_SERVERS",
            |port, data| match kind {
                ServerKind::Noida => vec![
                    "start".into(),
                    "--only".into(),
                    "elasticsearch".into(),
                    "--elasticsearch-port".into(),
                    port.to_string(),
                    "--data-dir".into(),
                    data.display().to_string(),
                ],
                // In memory; exits with this process.
                ServerKind::Osmem => vec![
                    "-addr".into(),
                    format!("127.0.0.1:{port}"),
                    "-parent-pid".into(),
                    std::process::id().to_string(),
                ],
            },
        )?;
        Some(TestSearchServer {
            kind,
            url: format!("http://127.0.0.1:{}", process.port),
            process,
        })
    }

    /// Settings for a store of its own on this server (see [`config_at`]).
    pub fn config(&self) -> EsConfig {
        config_at(&self.url)
    }

    /// A connected store with a fresh prefix.
    pub async fn store(&self) -> EsReadStore {
        EsReadStore::connect(self.config())
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}\n{}", self.kind, self.log()))
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
