//! Real Kafka-protocol brokers for tests, started on a free loopback port
//! with their own data directory and stopped on drop:
//!
//! - `noida-db` (PyPI): fast, creates topics on demand;
//! - `tansu` (crates.io): no auto-creation, so the adapter's topic bootstrap
//!   runs for real.
//!
//! A broker whose binary is not on `PATH` is skipped with a printed reason,
//! unless `REQUIRE_BROKERS=1` (set by `.ci/run`) makes that a
//! failure.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Noida,
    Tansu,
}

impl BrokerKind {
    pub const ALL: [BrokerKind; 2] = [BrokerKind::Noida, BrokerKind::Tansu];

    fn program(self) -> &'static str {
        match self {
            BrokerKind::Noida => "noida-db",
            BrokerKind::Tansu => "tansu",
        }
    }
}

/// A running broker; killed (with its data) on drop.
pub struct TestBroker {
    pub kind: BrokerKind,
    /// `127.0.0.1:port`.
    pub brokers: String,
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

impl TestBroker {
    /// Starts a broker of `kind`, or returns `None` (having said why) when
    /// it is not installed and not required.
    pub fn start(kind: BrokerKind) -> Option<TestBroker> {
        let program = kind.program();
        if !installed(program) {
            assert!(
                std::env::var_os("REQUIRE_BROKERS").is_none(),
                "REQUIRE_BROKERS is set but `{program}` is not on PATH"
            );
            eprintln!("skipped on {kind:?}: `{program}` is not on PATH (see .ci/run)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let log = dir.path().join("broker.log");
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log: {e}"));
        let mut command = Command::new(program);
        match kind {
            BrokerKind::Noida => {
                command
                    .args(["start", "--only", "kafka", "--kafka-port"])
                    .arg(port.to_string())
                    .arg("--data-dir")
                    .arg(dir.path().join("data"));
            }
            BrokerKind::Tansu => {
                let url = format!("tcp://127.0.0.1:{port}");
                command
                    .args([
                        "broker",
                        "--listener-url",
                        &url,
                        "--advertised-listener-url",
                        &url,
                    ])
                    .args(["--storage-engine", "memory://tansu/"]);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap_or_else(|e| panic!("log: {e}")))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let broker = TestBroker {
            kind,
            brokers: format!("127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{program} did not listen on {port}:\n{}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(broker)
    }

    /// What the broker printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
