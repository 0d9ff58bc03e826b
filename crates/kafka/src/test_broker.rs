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

use salestrack_port_tests::servers::ServerProcess;

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
    process: ServerProcess,
}

impl TestBroker {
    /// Starts a broker of `kind`, or returns `None` (having said why) when
    /// it is not installed and not required.
    pub fn start(kind: BrokerKind) -> Option<TestBroker> {
        Self::start_with(kind, false)
    }

    /// Like [`TestBroker::start`], with tansu on SQLite storage instead of
    /// memory, so that a restart keeps the topics (noida-db always does).
    pub fn start_durable(kind: BrokerKind) -> Option<TestBroker> {
        Self::start_with(kind, true)
    }

    fn start_with(kind: BrokerKind, durable: bool) -> Option<TestBroker> {
        let process =
            ServerProcess::start(kind.program(), "REQUIRE_BROKERS", |port, data| match kind {
                BrokerKind::Noida => vec![
                    "start".into(),
                    "--only".into(),
                    "kafka".into(),
                    "--kafka-port".into(),
                    port.to_string(),
                    "--data-dir".into(),
                    data.display().to_string(),
                ],
                BrokerKind::Tansu => {
                    let url = format!("tcp://127.0.0.1:{port}");
                    vec![
                        "broker".into(),
                        "--listener-url".into(),
                        url.clone(),
                        "--advertised-listener-url".into(),
                        url,
                        "--storage-engine".into(),
                        if durable {
                            let _ = std::fs::create_dir_all(data);
                            // tansu drops the first slash of the path.
                            format!("sqlite:///{}/tansu.db", data.display())
                        } else {
                            "memory://tansu/".into()
                        },
                    ]
                }
            })?;
        Some(TestBroker {
            kind,
            brokers: format!("127.0.0.1:{}", process.port),
            process,
        })
    }

    /// What the broker printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Kills the broker; its data stays for [`TestBroker::restart`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the broker again on the same port over the same data (noida-db
    /// keeps its topics; tansu's memory storage does not).
    pub fn restart(&mut self) {
        self.process.restart();
    }
}
