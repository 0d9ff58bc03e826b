//! The engines salestrack's users run, as test servers: Apache Kafka 4
//! (KRaft, one combined broker and controller), Apache Cassandra 5.0 (one
//! node, real Paxos) and OpenSearch 2.19 (an embedded node of ours,
//! `maven/opensearch`). Each runs from Maven artifacts on Java 17: `resolve`
//! (run by `.ci/run`) puts their class paths into `TEST_ENGINES_DIR`
//! (default `~/.cache/salestrack-engines`).
//!
//! A server gets free loopback ports, a fresh data directory and its own
//! process group, killed when it is dropped or when the test process ends
//! (see `salestrack_port_tests::servers`). It is ready when a real client
//! call answers: a metadata request naming the broker, `SELECT
//! release_version FROM system.local`, a yellow cluster health.
//!
//! A JVM start costs seconds, so a test binary shares one server per engine
//! ([`EngineServer::shared`]) and isolates its tests by topic, keyspace or
//! index prefix; fault tests, which kill their server, start their own
//! ([`EngineServer::start`]). Replicated clusters of three nodes
//! ([`CassandraCluster`], [`KafkaCluster`], in `cluster`) are for the fault
//! tests of replication.
//!
//! When the class paths are missing the tests that need an engine are
//! skipped with a printed reason, unless `REQUIRE_ENGINES=1` (set by
//! `.ci/run`) makes that a failure.

mod cluster;

pub use cluster::{CassandraCluster, KafkaCluster, OpenSearchCluster};

use base64::Engine as _;
use salestrack_port_tests::servers::{free_port, ServerProcess};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Kafka,
    Cassandra,
    OpenSearch,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Kafka, Engine::Cassandra, Engine::OpenSearch];

    fn dir_name(self) -> &'static str {
        match self {
            Engine::Kafka => "kafka",
            Engine::Cassandra => "cassandra",
            Engine::OpenSearch => "opensearch",
        }
    }

    /// How long a start may take on a busy two-core machine.
    fn start_within(self) -> Duration {
        match self {
            Engine::Kafka => Duration::from_secs(60),
            Engine::Cassandra | Engine::OpenSearch => Duration::from_secs(120),
        }
    }
}

/// A running engine; killed (with its data) on drop.
pub struct EngineServer {
    pub engine: Engine,
    process: ServerProcess,
}

/// The class path `resolve` wrote for `engine`, or why there is none.
fn classpath(engine: Engine) -> Result<String, String> {
    let root = std::env::var_os("TEST_ENGINES_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/salestrack-engines"))
        })
        .ok_or("neither TEST_ENGINES_DIR nor HOME is set")?;
    let file = root.join(engine.dir_name()).join("classpath");
    std::fs::read_to_string(&file)
        .map(|cp| cp.trim().to_owned())
        .map_err(|e| format!("{}: {e} (run crates/test-engines/resolve)", file.display()))
}

/// The class path of `engine`, or `None` (having said why) when it is not
/// resolved and `REQUIRE_ENGINES` is unset.
fn required_classpath(engine: Engine) -> Option<String> {
    match classpath(engine) {
        Ok(cp) => Some(cp),
        Err(why) => {
            assert!(
                std::env::var_os("REQUIRE_ENGINES").is_none(),
                "REQUIRE_ENGINES is set but {engine:?} is not resolved: {why}"
            );
            eprintln!("skipped: {engine:?} is not resolved: {why}");
            None
        }
    }
}

/// This crate's own files (configuration the launchers pass on).
fn own_file(relative: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(relative)
        .display()
        .to_string()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Runs `check` until it succeeds or `within` passes; the last error
/// otherwise.
fn retry_until(
    within: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Runs one async client check on a runtime of its own, in a thread of
/// its own: servers start from synchronous code that may itself run inside
/// a test's runtime.
fn on_own_runtime<F>(check: impl FnOnce() -> F + Send + 'static) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(check())
    })
    .join()
    .unwrap_or_else(|_| Err("the readiness check panicked".into()))
}

impl EngineServer {
    /// A server of its own (for tests that kill it), or `None` (having said
    /// why) when the engine is not resolved and not required.
    pub fn start(engine: Engine) -> Option<EngineServer> {
        EngineServer::start_with(engine, &[])
    }

    /// [`EngineServer::start`] with settings added to the engine's own
    /// configuration file, after ours (`cassandra.yaml` lines `key: value`,
    /// Kafka's `server.properties` lines `key=value`): a benchmark's
    /// side-by-side variants. OpenSearch takes none.
    pub fn start_with(engine: Engine, settings: &[(&str, &str)]) -> Option<EngineServer> {
        let classpath = required_classpath(engine)?;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (port, args) = match engine {
            Engine::Kafka => kafka_args(dir.path(), &classpath, &lines(settings, "=")),
            Engine::Cassandra => cassandra_args(dir.path(), &classpath, &lines(settings, ": ")),
            Engine::OpenSearch => {
                assert!(
                    settings.is_empty(),
                    "OpenSearch's test node takes no settings"
                );
                opensearch_args(dir.path(), &classpath)
            }
        };
        let process = ServerProcess::launch(dir, port, "java", args, engine.start_within());
        let server = EngineServer { engine, process };
        server.wait_until_ready();
        Some(server)
    }

    /// The server of `engine` this test binary shares: started by the first
    /// test that asks, killed when the binary ends.
    pub fn shared(engine: Engine) -> Option<&'static EngineServer> {
        static KAFKA: OnceLock<Option<EngineServer>> = OnceLock::new();
        static CASSANDRA: OnceLock<Option<EngineServer>> = OnceLock::new();
        static OPENSEARCH: OnceLock<Option<EngineServer>> = OnceLock::new();
        let cell = match engine {
            Engine::Kafka => &KAFKA,
            Engine::Cassandra => &CASSANDRA,
            Engine::OpenSearch => &OPENSEARCH,
        };
        cell.get_or_init(|| EngineServer::start(engine)).as_ref()
    }

    /// What a client is configured with: `127.0.0.1:port` for Kafka's
    /// bootstrap servers and Cassandra's contact points, `http://127.0.0.1:port`
    /// for OpenSearch.
    pub fn address(&self) -> String {
        match self.engine {
            Engine::OpenSearch => format!("http://127.0.0.1:{}", self.process.port),
            Engine::Kafka | Engine::Cassandra => format!("127.0.0.1:{}", self.process.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The process group leader's id: the JVM runs below it.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL to the whole JVM; its data directory stays for
    /// [`EngineServer::restart`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the engine again on the same ports over the same data, and
    /// waits until it answers.
    pub fn restart(&mut self) {
        self.process.restart();
        self.wait_until_ready();
    }

    /// What the engine printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    fn wait_until_ready(&self) {
        let address = self.address();
        let within = self.engine.start_within();
        let ready = match self.engine {
            Engine::Kafka => retry_until(within, || kafka_answers(&address)),
            Engine::Cassandra => retry_until(within, || {
                let address = address.clone();
                on_own_runtime(move || cassandra_answers(address))
            }),
            Engine::OpenSearch => retry_until(within, || {
                let address = address.clone();
                on_own_runtime(move || opensearch_answers(address))
            }),
        };
        if let Err(e) = ready {
            panic!(
                "{:?} did not become ready: {e}\n{}",
                self.engine,
                self.log()
            );
        }
    }
}

/// `java` arguments for an engine that logs through log4j (Kafka,
/// OpenSearch): a 512 MiB heap, warnings and errors only.
fn log4j_jvm(classpath: &str, main: &str, args: &[String]) -> Vec<String> {
    let mut all: Vec<String> = [
        "-Xms512m",
        "-Xmx512m",
        "-Dlog4j2.level=WARN",
        "-cp",
        classpath,
        main,
    ]
    .map(str::to_owned)
    .to_vec();
    all.extend_from_slice(args);
    all
}

/// `key{sep}value` lines, each ending in a newline.
fn lines(settings: &[(&str, &str)], sep: &str) -> String {
    settings
        .iter()
        .map(|(key, value)| format!("{key}{sep}{value}\n"))
        .collect()
}

/// A KRaft combined node: the storage formatted once, here, with a cluster
/// id of our own.
fn kafka_args(dir: &Path, classpath: &str, extra: &str) -> (u16, Vec<String>) {
    let (port, controller) = (free_port(), free_port());
    let node = KafkaNode {
        id: 1,
        port,
        controller,
        voters: format!("1@127.0.0.1:{controller}"),
        replicas: 1,
    };
    (port, node.args(dir, classpath, &kafka_cluster_id(), extra))
}

/// A new cluster id: 22 characters of URL-safe base64, as `random-uuid`
/// prints. Kafka's own `Uuid.randomUuid` draws again when the text starts
/// with `-`: the storage tool's argument parser takes that for an option (1
/// start in 64 would fail; a CI run did).
fn kafka_cluster_id() -> String {
    std::iter::repeat_with(|| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
    })
    .find(|id| !id.starts_with('-'))
    .unwrap_or_default()
}

/// One KRaft node, broker and controller in one process.
struct KafkaNode {
    id: u32,
    port: u16,
    controller: u16,
    /// `controller.quorum.voters`: every controller of the cluster.
    voters: String,
    /// Replicas of the internal topics (offsets, transactions): the
    /// cluster's size; `min.insync.replicas` for them 2 where there are 3.
    replicas: usize,
}

impl KafkaNode {
    /// Writes its `server.properties` (with `extra` lines) into `dir` and
    /// formats its storage for cluster `cluster_id`; its `java` arguments.
    fn args(&self, dir: &Path, classpath: &str, cluster_id: &str, extra: &str) -> Vec<String> {
        let data = dir.join("data");
        let properties = dir.join("server.properties");
        let (port, controller, replicas) = (self.port, self.controller, self.replicas);
        let min_isr = replicas.min(2);
        write(
            &properties,
            &format!(
                "process.roles=broker,controller\n\
                 node.id={id}\n\
                 controller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 controller.listener.names=CONTROLLER\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
                 log.dirs={data}\n\
                 num.partitions=1\n\
                 auto.create.topics.enable=false\n\
                 offsets.topic.replication.factor={replicas}\n\
                 offsets.topic.num.partitions=1\n\
                 transaction.state.log.replication.factor={replicas}\n\
                 transaction.state.log.min.isr={min_isr}\n\
                 transaction.state.log.num.partitions=1\n\
                 group.initial.rebalance.delay.ms=0\n\
                 share.coordinator.state.topic.replication.factor={replicas}\n\
                 share.coordinator.state.topic.min.isr={min_isr}\n\
                 broker.session.timeout.ms=3000\n\
                 broker.heartbeat.interval.ms=500\n\
                 {extra}",
                id = self.id,
                voters = self.voters,
                data = data.display()
            ),
        );
        let format = std::process::Command::new("java")
            .args([
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
            ])
            .arg(&properties)
            .arg("--ignore-formatted")
            .output()
            .unwrap_or_else(|e| panic!("java: {e}"));
        assert!(
            format.status.success(),
            "formatting Kafka's storage failed: {}{}",
            String::from_utf8_lossy(&format.stdout),
            String::from_utf8_lossy(&format.stderr)
        );
        log4j_jvm(
            classpath,
            "kafka.Kafka",
            &[properties.display().to_string()],
        )
    }
}

fn kafka_answers(brokers: &str) -> Result<(), String> {
    if kafka_metadata(brokers, None, Duration::from_secs(2))?
        .brokers()
        .is_empty()
    {
        return Err("no broker in the metadata yet".into());
    }
    Ok(())
}

/// The metadata of `topic`, or of every topic, from the brokers at
/// `bootstrap`.
fn kafka_metadata(
    bootstrap: &str,
    topic: Option<&str>,
    within: Duration,
) -> Result<rdkafka::metadata::Metadata, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    client
        .fetch_metadata(topic, within)
        .map_err(|e| e.to_string())
}

/// One node, SimpleSnitch, every directory under `dir`; JMX left unset so
/// that servers run side by side. The commit log is synced before a write
/// is answered (`batch`): with one replica, the default periodic sync lost
/// appends Cassandra had acknowledged when the fault test SIGKILLed it (the
/// domain had already published their events, so the read models showed
/// lines the restarted store no longer held). In production, replicas give
/// that durability (replication factor 3, `LOCAL_QUORUM`): see
/// [`CassandraCluster`].
fn cassandra_args(dir: &Path, classpath: &str, extra: &str) -> (u16, Vec<String>) {
    let (port, storage) = (free_port(), free_port());
    let node = CassandraNode {
        host: std::net::Ipv4Addr::LOCALHOST,
        port,
        storage,
        seed: std::net::Ipv4Addr::LOCALHOST,
        token: "0",
        heap: "1g",
    };
    let args = node.args(dir, classpath, &format!("commitlog_sync: batch\n{extra}"));
    (port, args)
}

/// Where one Cassandra node listens and what it owns.
struct CassandraNode {
    host: std::net::Ipv4Addr,
    /// The native protocol's port (CQL).
    port: u16,
    /// Gossip and replication, on every node the same port.
    storage: u16,
    seed: std::net::Ipv4Addr,
    /// Its one token (`num_tokens: 1`): the ring is laid out by hand, so
    /// that nodes of a fresh cluster can join without streaming.
    token: &'static str,
    heap: &'static str,
}

impl CassandraNode {
    /// Writes the node's `cassandra.yaml` (with `extra` lines) into `dir`;
    /// its `java` arguments.
    fn args(&self, dir: &Path, classpath: &str, extra: &str) -> Vec<String> {
        let d = dir.display();
        let yaml = dir.join("cassandra.yaml");
        write(
            &yaml,
            &format!(
                "cluster_name: salestrack-test\n\
                 partitioner: org.apache.cassandra.dht.Murmur3Partitioner\n\
                 endpoint_snitch: SimpleSnitch\n\
                 num_tokens: 1\n\
                 listen_address: {host}\n\
                 rpc_address: {host}\n\
                 storage_port: {storage}\n\
                 native_transport_port: {port}\n\
                 start_native_transport: true\n\
                 seed_provider:\n  \
                   - class_name: org.apache.cassandra.locator.SimpleSeedProvider\n    \
                     parameters:\n      \
                       - seeds: \"{seed}:{storage}\"\n\
                 data_file_directories: [{d}/data]\n\
                 commitlog_directory: {d}/commitlog\n\
                 saved_caches_directory: {d}/saved_caches\n\
                 hints_directory: {d}/hints\n\
                 cdc_raw_directory: {d}/cdc_raw\n\
                 auto_snapshot: false\n\
                 {extra}",
                host = self.host,
                storage = self.storage,
                port = self.port,
                seed = self.seed,
            ),
        );
        let jamm = classpath
            .split(':')
            .find(|jar| jar.contains("/jamm-"))
            .unwrap_or_else(|| panic!("no jamm jar in Cassandra's class path"));
        vec![
            format!("@{}", own_file("maven/cassandra/jvm17.args")),
            format!("-Xms{}", self.heap),
            format!("-Xmx{}", self.heap),
            format!("-javaagent:{jamm}"),
            // After the argument file's, so this one counts.
            format!("-Dcassandra.initial_token={}", self.token),
            format!("-Dcassandra.config=file://{}", yaml.display()),
            format!("-Dcassandra.storagedir={d}"),
            format!("-Dcassandra.logdir={d}/logs"),
            format!(
                "-Dlogback.configurationFile=file://{}",
                own_file("maven/cassandra/logback.xml")
            ),
            "-cp".into(),
            classpath.into(),
            "org.apache.cassandra.service.CassandraDaemon".into(),
        ]
    }
}

async fn cassandra_answers(address: String) -> Result<(), String> {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(&address)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn opensearch_args(dir: &Path, classpath: &str) -> (u16, Vec<String>) {
    let (port, transport) = (free_port(), free_port());
    (
        port,
        opensearch_node_args(dir, classpath, (port, transport), &[]),
    )
}

/// `OpenSearchNode`'s command line on `ports` (HTTP, transport), with
/// `cluster`'s arguments for a node of a cluster (none for a single node).
fn opensearch_node_args(
    dir: &Path,
    classpath: &str,
    (port, transport): (u16, u16),
    cluster: &[String],
) -> Vec<String> {
    let mut args = vec![
        dir.join("home").display().to_string(),
        port.to_string(),
        transport.to_string(),
    ];
    args.extend_from_slice(cluster);
    log4j_jvm(classpath, "salestrack.OpenSearchNode", &args)
}

/// The single node answers its cluster health: one node, yellow or better.
async fn opensearch_answers(url: String) -> Result<(), String> {
    cluster::opensearch_health(url, 1, "yellow").await
}
