//! The engines as users run them, replicated on one machine:
//!
//! - [`CassandraCluster`]: Apache Cassandra 5 with three nodes on
//!   127.0.0.1-3 (as ccm lays them out), each on the same ports of its own
//!   loopback address, one token each, evenly spaced. Unlike the single
//!   test node, the commit log is synced every 10 s (`periodic`, Cassandra's
//!   default and what production runs): replicas, not an fsync per write,
//!   make an acknowledged write durable, which the replicated fault tests
//!   put to the proof. Ready when every running node answers on its own
//!   address and writes to a probe keyspace replicated to every node
//!   succeed at a consistency needing every running node, several times in
//!   a row (so every coordinator the driver picks sees them all up).
//! - [`KafkaCluster`]: Apache Kafka 4 with three KRaft nodes, each broker
//!   and controller, the internal topics replicated to all three with
//!   `min.insync.replicas=2`. Ready when the metadata names every running
//!   broker and every partition has a leader and its full set of replicas
//!   in sync.
//! - [`OpenSearchCluster`]: OpenSearch 2.19 with two nodes, the first
//!   cluster manager and data, the second data only: with two
//!   cluster-manager-eligible nodes neither could be lost (a majority of two
//!   votes is two; OpenSearch leaves one out of the voting configuration
//!   instead, and which one is its choice), so the node a two-node cluster
//!   can lose is the one that does not manage it. Indices get one replica,
//!   so each shard has a copy on each node. Ready when the health of the
//!   running nodes is green (yellow with one down: the replicas it held
//!   have nowhere to go).

use crate::{
    kafka_cluster_id, kafka_metadata, on_own_runtime, opensearch_node_args, required_classpath,
    retry_until, CassandraNode, Engine, KafkaNode,
};
use salestrack_port_tests::servers::{free_port, ServerProcess};
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::unprepared::Statement;
use scylla::statement::Consistency;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

/// One token per node, evenly spaced over Murmur3's range.
const TOKENS: [&str; 3] = [
    "-9223372036854775808",
    "-3074457345618258603",
    "3074457345618258602",
];

/// Three heaps of this beside the runner and the tests on two cores.
const HEAP: &str = "768m";

/// Production's commit log (the default), and no streaming: a fresh
/// cluster's nodes own no data yet.
const CLUSTER_NODE: &str = "commitlog_sync: periodic\n\
                            commitlog_sync_period: 10000ms\n\
                            auto_bootstrap: false\n";

/// A start or restart on a busy two-core machine, and gossip after it.
const READY_WITHIN: Duration = Duration::from_secs(240);

/// The keyspace readiness writes to, replicated to every node.
const PROBE: &str = "salestrack_cluster_probe";

/// A running cluster of engine `E`'s nodes; every node killed (with its
/// data) on drop.
pub struct Cluster<E> {
    nodes: Vec<ServerProcess>,
    up: Vec<bool>,
    engine: std::marker::PhantomData<E>,
}

/// How a cluster of one engine tells that it is ready.
pub trait Readiness: Sized {
    const NAME: &'static str;

    /// Whether the running nodes serve as a whole, or why not yet.
    fn answers(cluster: &Cluster<Self>) -> Result<(), String>;
}

/// Apache Cassandra's nodes.
pub struct Cassandra;
/// Apache Kafka's nodes.
pub struct Kafka;
/// OpenSearch's nodes.
pub struct OpenSearch;

pub type CassandraCluster = Cluster<Cassandra>;
pub type KafkaCluster = Cluster<Kafka>;
pub type OpenSearchCluster = Cluster<OpenSearch>;

impl<E: Readiness> Cluster<E> {
    fn new(nodes: Vec<ServerProcess>) -> Cluster<E> {
        let cluster = Cluster {
            up: vec![true; nodes.len()],
            nodes,
            engine: std::marker::PhantomData,
        };
        cluster.wait_until_ready();
        cluster
    }

    /// Until [`Readiness::answers`] says so; panics with the nodes' logs
    /// past [`READY_WITHIN`].
    pub fn wait_until_ready(&self) {
        if let Err(e) = retry_until(READY_WITHIN, || E::answers(self)) {
            panic!(
                "the {} cluster did not become ready: {e}\n{}",
                E::NAME,
                self.logs()
            );
        }
    }

    /// How many nodes it has (and replicas a keyspace or topic of it may).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// SIGKILL to node `i`'s JVM; its data stays for [`Cluster::restart`].
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
        self.up[i] = false;
    }

    /// Node `i` again on its data, and until the cluster is ready again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.up[i] = true;
        self.wait_until_ready();
    }

    /// What every node printed so far.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node on {}:{}:\n{}", n.host, n.port, n.log()))
            .collect()
    }

    /// `host:port` of the nodes `which` picks.
    fn addresses(&self, which: impl Fn(usize) -> bool) -> Vec<String> {
        (0..self.nodes.len())
            .filter(|&i| which(i))
            .map(|i| format!("{}:{}", self.nodes[i].host, self.nodes[i].port))
            .collect()
    }
}

/// The nodes `indices` names, started side by side by `launch`.
fn launch_together(
    indices: std::ops::Range<usize>,
    launch: impl Fn(usize) -> ServerProcess + Sync,
) -> Vec<ServerProcess> {
    std::thread::scope(|s| {
        let launch = &launch;
        let starting: Vec<_> = indices.map(|i| s.spawn(move || launch(i))).collect();
        starting
            .into_iter()
            .map(|node| {
                node.join()
                    .unwrap_or_else(|_| panic!("a node did not start"))
            })
            .collect()
    })
}

/// A port free on each of `hosts`: every node listens on the same one.
fn port_free_on(hosts: &[Ipv4Addr]) -> u16 {
    loop {
        let port = free_port();
        if hosts.iter().all(|h| TcpListener::bind((*h, port)).is_ok()) {
            return port;
        }
    }
}

impl Cluster<Cassandra> {
    /// Three nodes, or `None` (having said why) when Cassandra is not
    /// resolved and not required. The seed starts first; the other two
    /// join it together.
    pub fn start() -> Option<CassandraCluster> {
        let classpath = required_classpath(Engine::Cassandra)?;
        let hosts: Vec<Ipv4Addr> = (1..=TOKENS.len() as u8)
            .map(|i| Ipv4Addr::new(127, 0, 0, i))
            .collect();
        let (port, storage) = (port_free_on(&hosts), port_free_on(&hosts));
        let launch = |i: usize| {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let node = CassandraNode {
                host: hosts[i],
                port,
                storage,
                seed: hosts[0],
                token: TOKENS[i],
                heap: HEAP,
            };
            let args = node.args(dir.path(), &classpath, CLUSTER_NODE);
            ServerProcess::launch_on(dir, hosts[i], port, "java", args, READY_WITHIN)
        };
        let mut nodes = vec![launch(0)];
        nodes.extend(launch_together(1..hosts.len(), launch));
        Some(Cluster::new(nodes))
    }

    /// `host:port` of every node, for the driver's contact points.
    pub fn contact_points(&self) -> String {
        self.addresses(|_| true).join(",")
    }
}

impl Readiness for Cassandra {
    const NAME: &'static str = "Cassandra";

    fn answers(cluster: &Cluster<Cassandra>) -> Result<(), String> {
        let live = cluster.addresses(|i| cluster.up[i]);
        let replicas = cluster.len();
        on_own_runtime(move || cluster_answers(live, replicas))
    }
}

/// Every address in `live` answers, and writes replicated to `replicas`
/// nodes succeed at a consistency needing every live one.
async fn cluster_answers(live: Vec<String>, replicas: usize) -> Result<(), String> {
    for address in &live {
        crate::cassandra_answers(address.clone()).await?;
    }
    let session = SessionBuilder::new()
        .known_nodes(&live)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let schema = [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {PROBE} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': {replicas}}}"
        ),
        format!("CREATE TABLE IF NOT EXISTS {PROBE}.up (k int PRIMARY KEY)"),
    ];
    for statement in schema {
        session
            .query_unpaged(statement, &[])
            .await
            .map_err(|e| e.to_string())?;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|e| e.to_string())?;
    let mut write = Statement::new(format!("INSERT INTO {PROBE}.up (k) VALUES (0)"));
    write.set_consistency(match live.len() {
        1 => Consistency::One,
        2 => Consistency::Two,
        _ => Consistency::Three,
    });
    for _ in 0..2 * replicas {
        session
            .query_unpaged(write.clone(), &[])
            .await
            .map_err(|e| format!("a write at {:?}: {e}", write.get_consistency()))?;
    }
    Ok(())
}

/// Three nodes: two make a controller quorum and `min.insync.replicas`.
const KAFKA_NODES: usize = 3;

/// How long one metadata request of the cluster may take.
const METADATA_WITHIN: Duration = Duration::from_secs(5);

impl Cluster<Kafka> {
    /// Three nodes, or `None` (having said why) when Kafka is not resolved
    /// and not required. They start together: a controller needs a quorum
    /// of its voters before its broker takes requests.
    pub fn start() -> Option<KafkaCluster> {
        let classpath = required_classpath(Engine::Kafka)?;
        let ports: Vec<(u16, u16)> = (0..KAFKA_NODES)
            .map(|_| (free_port(), free_port()))
            .collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = kafka_cluster_id();
        let nodes = launch_together(0..KAFKA_NODES, |i| {
            let (port, controller) = ports[i];
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let node = KafkaNode {
                id: i as u32 + 1,
                port,
                controller,
                voters: voters.clone(),
                replicas: KAFKA_NODES,
            };
            let args = node.args(dir.path(), &classpath, &cluster_id, "");
            ServerProcess::launch(dir, port, "java", args, READY_WITHIN)
        });
        Some(Cluster::new(nodes))
    }

    /// Every broker, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addresses(|_| true).join(",")
    }

    /// The node that leads `partition` of `topic` now, by the metadata.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<usize, String> {
        let metadata = kafka_metadata(&self.bootstrap(), Some(topic), METADATA_WITHIN)?;
        let leader = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .find(|p| p.id() == partition)
            .map(|p| p.leader())
            .ok_or_else(|| format!("{topic} has no partition {partition}"))?;
        usize::try_from(leader - 1)
            .ok()
            .filter(|&i| i < self.nodes.len())
            .ok_or_else(|| format!("{topic}/{partition} has no leader ({leader})"))
    }
}

impl Readiness for Kafka {
    const NAME: &'static str = "Kafka";

    fn answers(cluster: &Cluster<Kafka>) -> Result<(), String> {
        let live = cluster.up.iter().filter(|u| **u).count();
        let full = live == cluster.len();
        let metadata = kafka_metadata(&cluster.bootstrap(), None, METADATA_WITHIN)?;
        if metadata.brokers().len() != live {
            return Err(format!(
                "{} brokers in the metadata, {live} running",
                metadata.brokers().len()
            ));
        }
        for topic in metadata.topics() {
            for p in topic.partitions() {
                if p.leader() < 0 || (full && p.isr().len() != p.replicas().len()) {
                    return Err(format!(
                        "{}/{}: leader {}, replicas {:?}, in sync {:?}",
                        topic.name(),
                        p.id(),
                        p.leader(),
                        p.replicas(),
                        p.isr()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The cluster manager (which also holds data) and one data node.
const OPENSEARCH_ROLES: [&str; 2] = ["cluster_manager,data,ingest", "data,ingest"];

impl Cluster<OpenSearch> {
    /// Two nodes, or `None` (having said why) when OpenSearch is not
    /// resolved and not required. They start together and find each other
    /// through their transport ports.
    pub fn start() -> Option<OpenSearchCluster> {
        let classpath = required_classpath(Engine::OpenSearch)?;
        let ports: Vec<(u16, u16)> = OPENSEARCH_ROLES
            .iter()
            .map(|_| (free_port(), free_port()))
            .collect();
        let seeds = ports
            .iter()
            .map(|(_, transport)| transport.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let nodes = launch_together(0..OPENSEARCH_ROLES.len(), |i| {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let cluster = [
                format!("salestrack-{i}"),
                OPENSEARCH_ROLES[i].to_owned(),
                seeds.clone(),
                "salestrack-0".to_owned(),
            ];
            let args = opensearch_node_args(dir.path(), &classpath, ports[i], &cluster);
            ServerProcess::launch(dir, ports[i].0, "java", args, READY_WITHIN)
        });
        Some(Cluster::new(nodes))
    }

    /// The cluster manager's URL, which the runner is given: as a managed
    /// domain's endpoint does, it serves through whichever nodes are up.
    pub fn url(&self) -> String {
        format!("http://{}", self.addresses(|i| i == 0)[0])
    }

    /// The node that holds data only: the one the cluster can lose.
    pub fn data_node(&self) -> usize {
        1
    }
}

impl Readiness for OpenSearch {
    const NAME: &'static str = "OpenSearch";

    fn answers(cluster: &Cluster<OpenSearch>) -> Result<(), String> {
        let live = cluster.up.iter().filter(|u| **u).count();
        let status = if live == cluster.len() {
            "green"
        } else {
            "yellow"
        };
        let url = cluster.url();
        on_own_runtime(move || opensearch_health(url, live, status))
    }
}

/// The cluster's health names `nodes` nodes and is at least `status`.
pub(crate) async fn opensearch_health(
    url: String,
    nodes: usize,
    status: &str,
) -> Result<(), String> {
    let body = reqwest::Client::new()
        .get(format!(
            "{url}/_cluster/health?wait_for_nodes={nodes}&wait_for_status={status}&timeout=5s"
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let health: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if health["timed_out"] == false && health["number_of_nodes"] == nodes {
        Ok(())
    } else {
        Err(format!(
            "cluster health, waiting for {nodes} nodes and {status}: {health}"
        ))
    }
}
