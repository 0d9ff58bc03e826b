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
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
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

impl TestSearchServer {
    /// Starts a server of `kind`, or returns `None` (having said why) when
    /// it is not installed and not required.
    pub fn start(kind: ServerKind) -> Option<TestSearchServer> {
        let program = kind.program();
        if !installed(program) {
            assert!(
                std::env::var_os("REQUIRE_SEARCH_SERVERS").is_none(),
                "REQUIRE_SEARCH_SERVERS is set but `{program}` is not on PATH"
            );
            eprintln!("skipped on {kind:?}: `{program}` is not on PATH (see .ci/run)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log: {e}"));
        let mut command = Command::new(program);
        match kind {
            ServerKind::Noida => {
                command
                    .args(["start", "--only", "elasticsearch", "--elasticsearch-port"])
                    .arg(port.to_string())
                    .arg("--data-dir")
                    .arg(dir.path().join("data"));
            }
            ServerKind::Osmem => {
                command
                    .arg("-addr")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("-parent-pid")
                    .arg(std::process::id().to_string());
            }
        }
        // osmem-server exits when its stdin closes: keep a pipe open.
        let child = command
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap_or_else(|e| panic!("log: {e}")))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let server = TestSearchServer {
            kind,
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{program} did not listen on {port}:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// Settings for a store of its own on this server: a fresh prefix, one
    /// shard, no replicas, searchable on return.
    pub fn config(&self) -> EsConfig {
        EsConfig {
            refresh: RefreshPolicy::WaitFor,
            shards: Some(1),
            replicas: Some(0),
            ..EsConfig::new(&self.url, &unique_prefix())
        }
    }

    /// A connected store with a fresh prefix.
    pub async fn store(&self) -> EsReadStore {
        EsReadStore::connect(self.config())
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}\n{}", self.kind, self.log()))
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestSearchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
