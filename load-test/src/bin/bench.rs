//! `salestrack-bench`: the performance figures of BENCHMARKS.md, measured
//! side by side in one run on one machine.
//!
//! ```sh
//! cargo run --release -p salestrack-loadtest --bin salestrack-bench -- --seconds 10 --users 1,4,16,64
//! ```
//!
//! `--kafka-linger-ms 0,5` adds a Kafka phase per producer `linger.ms`
//! value (the default phase runs the default, 0 ms). `--lanes 1,2` adds
//! an embedded phase per consumer lane count (`SALESTRACK_CONSUMER_LANES`,
//! the default phase runs the default, 1), `--warm-cart-events 0,100000`
//! one per domain warm-cart budget, `--batch-size 100,500` one per
//! handler batch size. `--engines` adds a
//! phase on the real engines (Apache Kafka 4, Apache Cassandra 5, OpenSearch
//! 2.19 from `crates/test-engines`), with each engine's CPU per order,
//! and beside it the Pekko peer on the same engines (`load-test/peer-pekko`:
//! Apache Pekko Persistence with its Cassandra plugin, publishing to Kafka,
//! projected into OpenSearch; one JVM for the run, warmed up like the
//! engines; `--no-pekko` leaves it out);
//! `--engines-vary SALESTRACK_BATCH_SIZE=100,500` adds an engines phase
//! per value of one runner setting, on the same engines.
//! `--cassandra-paxos v1,v2` adds engine phases, each on a Cassandra of
//! its own started with that `paxos_variant`, beside the same Kafka and
//! OpenSearch. The engines first run `--engines-warmup` seconds (default 80) of the
//! same load unmeasured, so that their JIT compilers are done.
//! `--profile-engines DIR` samples each engine's JVM with async-profiler
//! during those phases and prints where its CPU went (see
//! `salestrack_loadtest::jvm_profile`).
//!
//! For each number of users, each phase against a fresh server process on a
//! free loopback port, driven by the same goose write-heavy scenario (same
//! body generator, closed loop):
//! 1. a bare axum `POST /orders` that parses the JSON and answers 202: the
//!    ceiling of HTTP + JSON on this machine;
//! 2. the runner's `POST /orders` on the embedded backends, then until
//!    every accepted line is visible in the read models: command rate and
//!    sustained end-to-end orders/s;
//! 3. the same with the bus on Kafka (tansu, when installed);
//! 4. the peer a user would pick instead: cqrs-es 0.5 + postgres-es 0.5
//!    behind axum (`load-test/peer`, built here), on a PostgreSQL from
//!    Debian this bench starts (fsync on), where an answered request is
//!    already visible;
//!
//! 5. the checkout saga on a fresh embedded runner (goose checkout scenario:
//!    carts of 1 to 10 lines, then `POST /carts/{id}/checkout`, no
//!    declines): checkouts paid per second end to end beside the order
//!    lines, and the time to payment from the runner's histogram;
//!
//! and once, at 16 users (or the largest count below it), a fresh embedded
//! runner offered half its sustained rate: command -> visible p50/p99 from
//! its own histogram. Every server's peak RSS (`VmHWM`) and CPU time
//! (user + system, its process and its children) per order are reported.
//! Servers are this binary started again with `--serve-baseline` /
//! `--serve-runner`, so load generator and server never share a process.
//! Bounded: every phase has a run time and a catch-up deadline.

use anyhow::{bail, Context};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use salestrack_kafka::test_broker::{BrokerKind, TestBroker};
use salestrack_loadtest::jvm_profile::JvmProfile;
use salestrack_loadtest::scenario;
use salestrack_test_engines::{Engine, EngineServer};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Options {
    seconds: usize,
    users: Vec<usize>,
    /// Extra Kafka phases, one per producer `linger.ms` value.
    lingers: Vec<u64>,
    /// Extra embedded phases, one per `SALESTRACK_CONSUMER_LANES` value.
    lanes: Vec<u64>,
    /// Extra embedded phases, one per `SALESTRACK_WARM_CART_EVENTS` value.
    warm: Vec<u64>,
    /// Extra embedded phases, one per `SALESTRACK_BATCH_SIZE` value.
    batch: Vec<u64>,
    /// A phase on the three real engines.
    engines: bool,
    /// With `engines`, the Pekko peer on them too (off with `--no-pekko`).
    pekko: bool,
    /// Extra engine phases, each on a Cassandra of its own started with
    /// `paxos_variant` set to one of these (`--cassandra-paxos v1,v2`).
    paxos: Vec<String>,
    /// Extra engine phases on the default engines, one per value of one
    /// runner setting (`--engines-vary SALESTRACK_BATCH_SIZE=100,500`).
    engines_vary: Option<(String, Vec<String>)>,
    /// Seconds of unmeasured load on the engines before the first engines
    /// phase (`--engines-warmup`), so that the JVMs' JIT compilers are done.
    engines_warmup: usize,
    /// Where the engine phases' async-profiler stacks go (`--profile-engines`).
    profile: Option<std::path::PathBuf>,
}

fn options() -> anyhow::Result<Options> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args.get(i + 1));
    let seconds = match value("--seconds") {
        Some(v) => v
            .and_then(|v| v.parse().ok())
            .context("--seconds needs a number")?,
        None => 10,
    };
    let list = |flag: &str, default: Vec<u64>| -> anyhow::Result<Vec<u64>> {
        match value(flag) {
            Some(v) => v
                .with_context(|| format!("{flag} needs a list"))?
                .split(',')
                .map(|n| n.trim().parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{flag} takes numbers separated by commas")),
            None => Ok(default),
        }
    };
    let users: Vec<usize> = list("--users", vec![1, 4, 16, 64])?
        .into_iter()
        .map(|u| usize::try_from(u).unwrap_or(usize::MAX))
        .collect();
    if seconds == 0 || seconds > 120 || users.is_empty() || users.iter().any(|&u| u == 0 || u > 256)
    {
        bail!("--seconds must be 1..=120 and every --users count 1..=256");
    }
    let lingers = list("--kafka-linger-ms", Vec::new())?;
    let lanes = list("--lanes", Vec::new())?;
    let warm = list("--warm-cart-events", Vec::new())?;
    let batch = list("--batch-size", Vec::new())?;
    Ok(Options {
        seconds,
        users,
        lingers,
        lanes,
        warm,
        batch,
        engines: args.iter().any(|a| a == "--engines"),
        pekko: !args.iter().any(|a| a == "--no-pekko"),
        paxos: match value("--cassandra-paxos") {
            Some(v) => v
                .context("--cassandra-paxos needs a list (v1,v2)")?
                .split(',')
                .map(|v| v.trim().to_owned())
                .collect(),
            None => Vec::new(),
        },
        engines_vary: match value("--engines-vary") {
            Some(v) => {
                let v = v.context("--engines-vary needs NAME=v1,v2")?;
                let (name, values) = v
                    .split_once('=')
                    .context("--engines-vary takes NAME=v1,v2")?;
                anyhow::ensure!(
                    name.starts_with("SALESTRACK_"),
                    "--engines-vary takes a SALESTRACK_ setting"
                );
                Some((
                    name.to_owned(),
                    values.split(',').map(str::to_owned).collect(),
                ))
            }
            None => None,
        },
        engines_warmup: match value("--engines-warmup") {
            Some(v) => v
                .and_then(|v| v.parse().ok())
                .context("--engines-warmup needs a number of seconds")?,
            None => 80,
        },
        profile: match value("--profile-engines") {
            Some(dir) => Some(dir.context("--profile-engines needs a directory")?.into()),
            None => None,
        },
    })
}

/// User + system CPU seconds of `pid` and every live process below it
/// (with what their reaped children used), from `/proc`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    // Fields after the command name: state ppid ... utime(14) stime cutime cstime.
    let stat = |pid: u32| -> Option<(u32, f64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let ticks: f64 = fields
            .get(11..15)?
            .iter()
            .filter_map(|f| f.parse::<f64>().ok())
            .sum();
        Some((ppid, ticks))
    };
    let all: Vec<(u32, u32, f64)> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| stat(p).map(|(ppid, ticks)| (p, ppid, ticks)))
        .collect();
    let mut tree = vec![pid];
    let mut ticks = 0.0;
    while let Some(p) = tree.pop() {
        ticks += all.iter().find(|(q, ..)| *q == p).map_or(0.0, |t| t.2);
        tree.extend(all.iter().filter(|(_, ppid, _)| *ppid == p).map(|t| t.0));
    }
    // The kernel's USER_HZ, 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// A server process of this binary; killed on drop.
struct Server {
    child: Child,
    url: String,
    _data: Option<tempfile::TempDir>,
}

impl Server {
    fn baseline() -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let child = Command::new(std::env::current_exe()?)
            .args(["--serve-baseline", &addr])
            .stdin(Stdio::null())
            .spawn()?;
        Ok(Server {
            child,
            url: format!("http://{addr}"),
            _data: None,
        })
    }

    fn runner(kafka: Option<&str>) -> anyhow::Result<Server> {
        Server::runner_with(kafka, &[])
    }

    /// A runner with `settings` (`SALESTRACK_*` name, value) on top.
    fn runner_with(kafka: Option<&str>, settings: &[(&str, String)]) -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let data = tempfile::tempdir()?;
        let mut command = Command::new(std::env::current_exe()?);
        // Only what this phase sets: never settings of the caller's shell.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("SALESTRACK_")) {
            command.env_remove(name);
        }
        command
            .arg("--serve-runner")
            .env("SALESTRACK_HTTP_ADDR", &addr)
            .env("SALESTRACK_DATA_DIR", data.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(brokers) = kafka {
            command
                .env("SALESTRACK_KAFKA_BROKERS", brokers)
                .env("SALESTRACK_PARTITIONS", "4");
        }
        for (name, value) in settings {
            command.env(name, value);
        }
        Ok(Server {
            child: command.spawn()?,
            url: format!("http://{addr}"),
            _data: Some(data),
        })
    }

    /// The peer service (`load-test/peer`) on the database at `postgres`.
    fn peer(binary: &std::path::Path, postgres: &str) -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let child = Command::new(binary)
            .args([addr.as_str(), postgres])
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Server {
            child,
            url: format!("http://{addr}"),
            _data: None,
        })
    }

    /// The Pekko peer (`load-test/peer-pekko`, class path `classpath`) on
    /// `engines`, with a keyspace, topic, group and index of its own.
    fn pekko(classpath: &str, engines: &Engines) -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let child = Command::new("java")
            .args([
                "-Xms1g",
                "-Xmx1g",
                "-cp",
                classpath,
                "salestrack.peer.PekkoPeer",
            ])
            .args([
                addr.clone(),
                engines.kafka.address(),
                engines.cassandra.address(),
                engines.opensearch.address(),
                run,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the Pekko peer (java)")?;
        Ok(Server {
            child,
            url: format!("http://{addr}"),
            _data: None,
        })
    }

    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.child.id())
    }

    async fn wait_ready(&self, path: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = client
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} never answered {path}", self.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Peak resident set size so far, in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one goose run measured of `POST /orders`.
struct Load {
    accepted: usize,
    failed: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.accepted as f64 / self.seconds.max(1e-3)
    }
}

/// Runs `scenario` for the phase's time; its metrics and how long it took.
async fn attack(
    host: &str,
    users: usize,
    o: &Options,
    throttle: Option<usize>,
    scenario: Scenario,
) -> anyhow::Result<(goose::metrics::GooseMetrics, f64)> {
    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
        .register_scenario(scenario)
        .set_default(GooseDefault::Host, host)?
        .set_default(GooseDefault::Users, users)?
        .set_default(GooseDefault::IncreaseRate, users.to_string().as_str())?
        .set_default(GooseDefault::RunTime, o.seconds)?
        .set_default(GooseDefault::Quiet, 1)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoErrorSummary, true)?
        .set_default(GooseDefault::NoTelnet, true)?
        // Count every request: goose otherwise forgets those made while
        // the users were being launched, and the end-to-end wait would
        // stop short of lines that were accepted.
        .set_default(GooseDefault::NoResetMetrics, true)?;
    if let Some(rate) = throttle {
        attack = attack.set_default(GooseDefault::ThrottleRequests, rate.max(1))?;
    }
    let started = Instant::now();
    let metrics = attack.execute().await?;
    Ok((metrics, started.elapsed().as_secs_f64()))
}

/// The requests named `name` of a run.
fn requests(
    metrics: &goose::metrics::GooseMetrics,
    name: &str,
    seconds: f64,
) -> anyhow::Result<Load> {
    let post = metrics
        .requests
        .get(name)
        .with_context(|| format!("no {name} was made"))?;
    Ok(Load {
        accepted: post.success_count,
        failed: post.fail_count,
        seconds,
        p50_ms: post.raw_data.percentile_us(0.5) as f64 / 1e3,
        p99_ms: post.raw_data.percentile_us(0.99) as f64 / 1e3,
    })
}

async fn load(
    host: &str,
    users: usize,
    o: &Options,
    throttle: Option<usize>,
) -> anyhow::Result<Load> {
    let (metrics, seconds) = attack(host, users, o, throttle, scenario::write_heavy()).await?;
    requests(&metrics, &format!("POST {}", scenario::PLACE), seconds)
}

/// The checkout saga under load: users fill carts of 1 to 10 lines and
/// check them out, against a fresh embedded runner whose gateway declines
/// nothing; then until every accepted checkout is paid.
struct Checkouts {
    checkouts: Load,
    lines: Load,
    /// Accepted checkouts / (load time + time until the last one was paid).
    paid_per_second: f64,
    /// Checkout recorded -> the gateway's answer on the bus.
    answer_p50_ms: Option<f64>,
    answer_p99_ms: Option<f64>,
}

/// The runner's counter `salestrack_checkouts_total{step="paid"}`.
async fn paid(url: &str) -> anyhow::Result<u64> {
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with("salestrack_checkouts_total{") && l.contains("step=\"paid\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

async fn checkout_phase(users: usize, o: &Options) -> anyhow::Result<Checkouts> {
    let server = Server::runner_with(None, &[("SALESTRACK_PAYMENT_DECLINE_RATE", "0".into())])?;
    server.wait_ready("/health/ready").await?;
    let started = Instant::now();
    let (metrics, seconds) = attack(&server.url, users, o, None, scenario::checkout()).await?;
    let checkouts = requests(&metrics, &format!("POST {}", scenario::CHECKOUT), seconds)?;
    let lines = requests(&metrics, &format!("POST {}", scenario::PLACE), seconds)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while paid(&server.url).await? < checkouts.accepted as u64 {
        if Instant::now() > deadline {
            bail!("the checkouts were not all paid within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let paid_per_second = checkouts.accepted as f64 / started.elapsed().as_secs_f64();
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await?
        .text()
        .await?;
    Ok(Checkouts {
        checkouts,
        lines,
        paid_per_second,
        answer_p50_ms: quantile(&text, "salestrack_payment_answer_seconds", 0.5).map(|s| s * 1e3),
        answer_p99_ms: quantile(&text, "salestrack_payment_answer_seconds", 0.99).map(|s| s * 1e3),
    })
}

/// Order lines the read models hold (the sales report's order count).
async fn visible(url: &str) -> anyhow::Result<usize> {
    let report: serde_json::Value = reqwest::get(format!("{url}/reports/sales"))
        .await?
        .json()
        .await?;
    Ok(report["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["orders"].as_u64())
        .sum::<u64>() as usize)
}

/// Load at full speed, then wait until every accepted line is visible.
struct EndToEnd {
    load: Load,
    /// Accepted lines / (load time + catch-up time).
    sustained: f64,
    rss_mib: Option<f64>,
    /// CPU time the server (and `also`'s processes) spent per accepted line.
    cpu_ms_per_order: Option<f64>,
}

/// No other process works for the server.
fn nothing_else() -> Option<f64> {
    Some(0.0)
}

/// `also`: the CPU seconds so far of the processes that work for the server
/// (its database, its engines), counted with it. A server that ran earlier
/// phases (the Pekko peer) keeps their lines: only those beyond what was
/// visible at the start count.
async fn end_to_end(
    server: &Server,
    users: usize,
    o: &Options,
    also: &dyn Fn() -> Option<f64>,
) -> anyhow::Result<EndToEnd> {
    server.wait_ready("/health/ready").await?;
    let already = visible(&server.url).await?;
    let cpu = || Some(server.cpu_seconds()? + also()?);
    let cpu_before = cpu();
    let started = Instant::now();
    let load = load(&server.url, users, o, None).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while visible(&server.url).await? < already + load.accepted {
        if Instant::now() > deadline {
            bail!("the projection did not catch up within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sustained = load.accepted as f64 / started.elapsed().as_secs_f64();
    let cpu_ms_per_order = cpu_before
        .zip(cpu())
        .map(|(before, after)| (after - before) * 1e3 / load.accepted.max(1) as f64);
    Ok(EndToEnd {
        sustained,
        rss_mib: server.peak_rss_mib(),
        cpu_ms_per_order,
        load,
    })
}

/// A PostgreSQL cluster of Debian's `postgresql` package in a temporary
/// directory, on a free loopback port, with its default durability (fsync,
/// synchronous commit). Stopped on drop.
struct Postgres {
    /// Run as `postgres` (we are root): PostgreSQL refuses root.
    root: bool,
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: String,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// `None` (having said why) when PostgreSQL is not installed.
    fn start() -> anyhow::Result<Option<Postgres>> {
        let Some(bin) = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
        else {
            eprintln!(
                "peer phase skipped: PostgreSQL is not installed (apt-get install postgresql)"
            );
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let port = free_addr()?
            .rsplit_once(':')
            .map(|(_, p)| p.to_owned())
            .context("a port")?;
        // PostgreSQL refuses to run as root: as root, run it as `postgres`.
        let root = std::fs::read_to_string("/proc/self/status")?
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        let as_owner = |program: &str| as_owner(root, &bin, program);
        if root {
            let owned = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(owned.success(), "chown of the PostgreSQL directory failed");
        }
        let initdb = as_owner("initdb")
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "-D",
            ])
            .arg(&data)
            .status()?;
        anyhow::ensure!(initdb.success(), "initdb failed");
        let started = as_owner("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-l"])
            .arg(dir.path().join("postgres.log"))
            .arg("-o")
            .arg(format!(
                "-h 127.0.0.1 -p {port} -k {} -c max_connections=100",
                dir.path().display()
            ))
            .args(["-w", "start"])
            .status()?;
        anyhow::ensure!(started.success(), "PostgreSQL did not start");
        Ok(Some(Postgres {
            root,
            port,
            bin,
            data,
            _dir: dir,
        }))
    }

    /// CPU seconds of the postmaster and its backends.
    fn cpu_seconds(&self) -> Option<f64> {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        cpu_seconds(pid.lines().next()?.trim().parse().ok()?)
    }

    /// A fresh database for one phase.
    fn database(&self, name: &str) -> anyhow::Result<String> {
        let created = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &self.port, name])
            .status()?;
        anyhow::ensure!(created.success(), "createdb {name} failed");
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_owner(self.root, &self.bin, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stderr(Stdio::null())
            .status();
    }
}

/// `program` of PostgreSQL's `bin`, run as `postgres` when we are `root`,
/// with no input and its output discarded.
fn as_owner(root: bool, bin: &std::path::Path, program: &str) -> Command {
    let mut c = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    };
    c.stdin(Stdio::null()).stdout(Stdio::null());
    c
}

/// Builds the peer (`load-test/peer`, outside the workspace) in release
/// mode and returns its binary.
fn build_peer() -> anyhow::Result<std::path::PathBuf> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/peer/Cargo.toml");
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/peer/target").to_owned());
    eprintln!("building the peer ({manifest})...");
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--manifest-path",
            manifest,
        ])
        .env("CARGO_TARGET_DIR", &target)
        .status()?;
    anyhow::ensure!(built.success(), "building the peer failed");
    Ok(std::path::Path::new(&target).join("release/salestrack-peer"))
}

/// Resolves and compiles the Pekko peer (`load-test/peer-pekko/build`,
/// cached outside the clone); its JVM class path.
fn build_pekko_peer() -> anyhow::Result<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peer-pekko/build");
    eprintln!("building the Pekko peer ({script})...");
    let built = Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {script}"))?;
    anyhow::ensure!(built.status.success(), "building the Pekko peer failed");
    let file = String::from_utf8(built.stdout)?;
    Ok(std::fs::read_to_string(file.trim())?)
}

/// The `q` quantile of a Prometheus histogram in `/metrics` text, with
/// linear interpolation inside the bucket (as `histogram_quantile` does).
fn quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (count - lower.1).max(1e-9);
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, count);
    }
    None
}

async fn serve_baseline(addr: &str) -> anyhow::Result<()> {
    use axum::routing::post;
    use axum::Json;
    async fn accept(
        Json(body): Json<serde_json::Value>,
    ) -> (axum::http::StatusCode, Json<serde_json::Value>) {
        let token = body["order_id"].as_str().unwrap_or_default().to_owned();
        (
            axum::http::StatusCode::ACCEPTED,
            Json(serde_json::json!({ "consistency_token": token })),
        )
    }
    let app = axum::Router::new()
        .route("/orders", post(accept))
        .route("/health/live", axum::routing::get(|| async { "live" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn serve_runner() -> anyhow::Result<()> {
    let (settings, backends) = salestrack_platform::start(|_| salestrack_platform::Uses::ALL)
        .await
        .map_err(anyhow::Error::from_boxed)?;
    let listener = tokio::net::TcpListener::bind(settings.http.addr).await?;
    salestrack_local_runner::run(
        listener,
        settings,
        backends,
        tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    Ok(())
}

/// The runner on Kafka with `settings` on top, on a tansu broker of its
/// own (a group that a killed runner still belongs to would hold the next
/// phase's partitions); `None` without tansu.
async fn kafka_phase(
    users: usize,
    o: &Options,
    settings: Vec<(&'static str, String)>,
) -> anyhow::Result<Option<EndToEnd>> {
    let Some(broker) = TestBroker::start(BrokerKind::Tansu) else {
        return Ok(None);
    };
    let runner = Server::runner_with(Some(&broker.brokers), &settings)?;
    let measured = end_to_end(&runner, users, o, &nothing_else)
        .await
        .with_context(|| format!("Kafka phase {settings:?}, {users} users"))?;
    Ok(Some(measured))
}

/// One embedded phase per value of the setting `name`, each on a fresh
/// runner.
async fn embedded_phases(
    name: &str,
    values: &[u64],
    users: usize,
    o: &Options,
) -> anyhow::Result<Vec<(u64, EndToEnd)>> {
    let mut measured = Vec::new();
    for &value in values {
        let runner = Server::runner_with(None, &[(name, value.to_string())])?;
        let phase = end_to_end(&runner, users, o, &nothing_else)
            .await
            .with_context(|| format!("embedded phase, {name}={value}, {users} users"))?;
        measured.push((value, phase));
    }
    Ok(measured)
}

/// The three real engines, shared by the engine phases (each phase on
/// topics, groups, keyspace and index prefix of its own). A variant has a
/// Cassandra of its own beside the same Kafka and OpenSearch.
struct Engines {
    kafka: std::sync::Arc<EngineServer>,
    cassandra: EngineServer,
    opensearch: std::sync::Arc<EngineServer>,
    /// What this set's Cassandra was started with beyond the test node's
    /// configuration ("" for none).
    label: String,
}

impl Engines {
    fn start() -> anyhow::Result<Engines> {
        Ok(Engines {
            kafka: std::sync::Arc::new(start_engine(Engine::Kafka, &[])?),
            cassandra: start_engine(Engine::Cassandra, &[])?,
            opensearch: std::sync::Arc::new(start_engine(Engine::OpenSearch, &[])?),
            label: String::new(),
        })
    }

    /// The same Kafka and OpenSearch beside a Cassandra started with
    /// `settings` added to its `cassandra.yaml`.
    fn variant(&self, settings: &[(&str, &str)]) -> anyhow::Result<Engines> {
        let label = settings
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Engines {
            kafka: self.kafka.clone(),
            cassandra: start_engine(Engine::Cassandra, settings)?,
            opensearch: self.opensearch.clone(),
            label,
        })
    }

    fn each(&self) -> [&EngineServer; 3] {
        [&self.kafka, &self.cassandra, &self.opensearch]
    }

    /// Each engine's CPU seconds so far.
    fn cpu_seconds(&self) -> Option<[f64; 3]> {
        let [k, c, o] = self.each().map(|e| cpu_seconds(e.pid()));
        Some([k?, c?, o?])
    }

    /// Each engine's JVM: the watchdog shell's only child.
    fn jvm_pids(&self) -> [Option<u32>; 3] {
        self.each().map(|e| {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", e.pid())).ok()?;
            children.split_whitespace().next()?.parse().ok()
        })
    }

    /// Each engine's resident set now, in MiB (the JVMs size their heaps
    /// up front, so this is close to their peak).
    fn rss_mib(&self) -> [Option<f64>; 3] {
        self.jvm_pids().map(|jvm| {
            let status = std::fs::read_to_string(format!("/proc/{}/status", jvm?)).ok()?;
            let kib: f64 = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(kib / 1024.0)
        })
    }
}

fn start_engine(engine: Engine, settings: &[(&str, &str)]) -> anyhow::Result<EngineServer> {
    EngineServer::start_with(engine, settings)
        .with_context(|| format!("{engine:?} is not resolved: run crates/test-engines/resolve"))
}

/// A phase's label as a file-name part: "" or `-paxos_variant-v2`,
/// `-SALESTRACK_BATCH_SIZE-500`.
fn slug(label: &str) -> String {
    label
        .split([',', ':', ' ', '='])
        .filter(|w| !w.is_empty())
        .map(|w| format!("-{w}"))
        .collect()
}

/// The runner on the three engines, and what each engine's CPU cost per
/// order (Kafka, Cassandra, OpenSearch).
async fn engines_phase(
    users: usize,
    o: &Options,
    engines: &Engines,
    extra: &[(&str, String)],
) -> anyhow::Result<(EndToEnd, [f64; 3])> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut settings: Vec<(&str, String)> = vec![
        ("SALESTRACK_KAFKA_BROKERS", engines.kafka.address()),
        ("SALESTRACK_PARTITIONS", "4".to_owned()),
        ("SALESTRACK_COMMANDS_TOPIC", format!("commands-{run}")),
        ("SALESTRACK_EVENTS_TOPIC", format!("events-{run}")),
        ("SALESTRACK_OUTCOMES_TOPIC", format!("outcomes-{run}")),
        ("SALESTRACK_DEAD_LETTER_TOPIC", format!("dead-letter-{run}")),
        ("SALESTRACK_DOMAIN_GROUP", format!("domain-{run}")),
        ("SALESTRACK_PROJECTOR_GROUP", format!("projector-{run}")),
        (
            "SALESTRACK_CASSANDRA_CONTACT_POINTS",
            engines.cassandra.address(),
        ),
        ("SALESTRACK_CASSANDRA_KEYSPACE", format!("bench{run}")),
        ("SALESTRACK_ELASTICSEARCH_URL", engines.opensearch.address()),
        (
            "SALESTRACK_ELASTICSEARCH_INDEX_PREFIX",
            format!("bench-{run}"),
        ),
        ("SALESTRACK_ELASTICSEARCH_SHARDS", "1".to_owned()),
        ("SALESTRACK_ELASTICSEARCH_REPLICAS", "0".to_owned()),
    ];
    settings.extend_from_slice(extra);
    let runner = Server::runner_with(None, &settings)?;
    // The engines' variant and the runner's extra settings: one name per
    // phase, so that no phase's profile overwrites another's.
    let phase = slug(&engines.label)
        + &slug(
            &extra
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    measure_on_engines(&runner, users, o, engines, &phase, false)
        .await
        .with_context(|| format!("engines phase, {users} users"))
}

/// `server` end to end on `engines`, with each engine's CPU ms per order
/// (Kafka, Cassandra, OpenSearch), counted in the server's figure too.
/// With `--profile-engines`, each engine's JVM is sampled during the
/// phase, and so is the server's own when it is one (`own_jvm`: the Pekko
/// peer); `phase` names the files.
async fn measure_on_engines(
    server: &Server,
    users: usize,
    o: &Options,
    engines: &Engines,
    phase: &str,
    own_jvm: bool,
) -> anyhow::Result<(EndToEnd, [f64; 3])> {
    let mut jvms: Vec<(&str, Option<u32>)> = ["kafka", "cassandra", "opensearch"]
        .into_iter()
        .zip(engines.jvm_pids())
        .collect();
    if own_jvm {
        jvms.push(("server", Some(server.child.id())));
    }
    let profiles = match &o.profile {
        Some(dir) => Some(start_profiles(
            &jvms,
            dir,
            &format!("{phase}-{users}-users"),
        )?),
        None => None,
    };
    let before = engines.cpu_seconds();
    let all = || Some(engines.cpu_seconds()?.iter().sum::<f64>());
    let measured = end_to_end(server, users, o, &all).await?;
    let per_engine = before
        .zip(engines.cpu_seconds())
        .map(|(b, a)| [0, 1, 2].map(|i| (a[i] - b[i]) * 1e3 / measured.load.accepted.max(1) as f64))
        .unwrap_or_default();
    if let (Some(profiles), Some(dir)) = (profiles, &o.profile) {
        let mut report = String::new();
        for ((name, _), profile) in jvms.iter().zip(profiles) {
            report.push_str(
                &profile
                    .stop()?
                    .report(&format!("{name}{phase}, {users} users"), 12),
            );
        }
        std::fs::write(
            dir.join(format!("engines{phase}-{users}-users.txt")),
            &report,
        )?;
        println!("{report}");
    }
    Ok((measured, per_engine))
}

/// Unmeasured load on freshly started engines, in slices of 20 s at the
/// largest number of users, until `--engines-warmup` seconds have run.
/// A JVM compiles its hot code as it meets it: in the first minute on two
/// cores more than half of each engine's CPU went to its JIT compiler
/// threads (async-profiler, `--profile-engines`), a cost a long-running
/// engine has long paid; the figures settled after about a minute at 64
/// users. Each slice's figures are printed, so that the run shows them
/// settle.
///
/// With `pekko`, the same for the Pekko peer's JVM (on engines already
/// warm): its slices run on that one process, which every measured Pekko
/// phase uses after.
async fn warm_up(engines: &Engines, o: &Options, pekko: Option<&Server>) -> anyhow::Result<()> {
    const SLICE: usize = 20;
    let users = o.users.iter().copied().max().unwrap_or(16);
    let slice = Options {
        seconds: SLICE,
        profile: None,
        ..o.clone()
    };
    let name = match pekko {
        Some(_) => "Pekko peer".to_owned(),
        None => format!("engines{}", slug(&engines.label)),
    };
    for round in 1..=o.engines_warmup.div_ceil(SLICE) {
        let (e, [k, c, s]) = match pekko {
            Some(peer) => measure_on_engines(peer, users, &slice, engines, "", true).await,
            None => engines_phase(users, &slice, engines, &[]).await,
        }
        .with_context(|| format!("{name} warm-up"))?;
        println!(
            "{name} warm-up {round} ({users} users, {SLICE} s): {:.0} orders/s, CPU per order {} (Kafka {k:.2} / Cassandra {c:.2} / OpenSearch {s:.2} ms)",
            e.sustained,
            e.cpu_ms_per_order.map_or("-".to_owned(), |c| format!("{c:.2} ms")),
        );
    }
    Ok(())
}

/// async-profiler in each named JVM for one engines phase; stacks to
/// `dir/{name}{phase}.collapsed`.
fn start_profiles(
    jvms: &[(&str, Option<u32>)],
    dir: &std::path::Path,
    phase: &str,
) -> anyhow::Result<Vec<JvmProfile>> {
    let lib = match std::env::var_os("ASYNC_PROFILER_LIB") {
        Some(lib) => std::path::PathBuf::from(lib),
        None => std::process::Command::new("load-test/async-profiler")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().into())
            .context("no async-profiler: set ASYNC_PROFILER_LIB or run from the repository root (load-test/async-profiler)")?,
    };
    std::fs::create_dir_all(dir)?;
    jvms.iter()
        .map(|(name, pid)| {
            let pid = pid.with_context(|| format!("no JVM found for {name}"))?;
            JvmProfile::start(&lib, pid, dir.join(format!("{name}{phase}.collapsed")))
        })
        .collect()
}

/// Everything measured at one number of users.
struct Round {
    users: usize,
    bare: Load,
    embedded: EndToEnd,
    kafka: Option<EndToEnd>,
    peer: Option<EndToEnd>,
    /// Kafka phases at other producer `linger.ms` values.
    lingers: Vec<(u64, EndToEnd)>,
    /// Embedded phases at other consumer lane counts.
    lanes: Vec<(u64, EndToEnd)>,
    /// Embedded phases at other warm-cart budgets.
    warm: Vec<(u64, EndToEnd)>,
    /// Embedded phases at other batch sizes.
    batch: Vec<(u64, EndToEnd)>,
    /// On the real engines, with each engine's CPU ms per order.
    engines: Option<(EndToEnd, [f64; 3])>,
    /// The same on each Cassandra variant (`--cassandra-paxos`) and at each
    /// value of `--engines-vary`, by label.
    engine_variants: Vec<(String, (EndToEnd, [f64; 3]))>,
    /// The Pekko peer on the same engines, with each engine's CPU ms per order.
    pekko: Option<(EndToEnd, [f64; 3])>,
    /// The checkout saga on the embedded backends.
    checkout: Checkouts,
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}x", a / b.max(1e-9))
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.0}{unit}"))
}

fn print_round(r: &Round) {
    let bare = r.bare.rate();
    println!("\n{} users", r.users);
    println!(
        "  bare axum POST /orders                {:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms",
        bare, r.bare.p50_ms, r.bare.p99_ms
    );
    let phase = |name: &str, e: &EndToEnd| {
        println!(
            "  {name:<38}{:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  = {} bare; end to end {:.0} orders/s; peak RSS {}; CPU {} per order",
            e.load.rate(),
            e.load.p50_ms,
            e.load.p99_ms,
            ratio(e.load.rate(), bare),
            e.sustained,
            opt(e.rss_mib, " MiB"),
            e.cpu_ms_per_order.map_or("-".to_owned(), |c| format!("{c:.2} ms")),
        );
    };
    phase("runner, embedded (202 = fsync'd)", &r.embedded);
    if let Some(k) = &r.kafka {
        phase("runner, Kafka (tansu, acks=all)", k);
    }
    if let Some(p) = &r.peer {
        phase("peer: cqrs-es + postgres-es", p);
    }
    for (linger, k) in &r.lingers {
        phase(&format!("runner, Kafka, linger.ms = {linger}"), k);
    }
    for (lanes, e) in &r.lanes {
        phase(&format!("runner, embedded, {lanes} lane(s)"), e);
    }
    for (events, e) in &r.warm {
        phase(&format!("runner, embedded, warm {events} events"), e);
    }
    for (records, e) in &r.batch {
        phase(&format!("runner, embedded, batches of {records}"), e);
    }
    let on_engines = [
        ("runner, Kafka + Cassandra + OpenSearch", &r.engines),
        ("Pekko peer: Kafka + Cassandra + OpenSearch", &r.pekko),
    ];
    for (name, measured) in on_engines {
        if let Some((e, [kafka, cassandra, opensearch])) = measured {
            phase(name, e);
            println!(
                "    of its CPU per order: Kafka {kafka:.2} ms, Cassandra {cassandra:.2} ms, OpenSearch {opensearch:.2} ms"
            );
        }
    }
    let c = &r.checkout;
    println!(
        "  {:<38}{:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms; end to end {:.0} checkouts paid/s beside {:.0} lines/s; time to payment p50 {} p99 {}",
        "checkout saga, embedded",
        c.checkouts.rate(),
        c.checkouts.p50_ms,
        c.checkouts.p99_ms,
        c.paid_per_second,
        c.lines.rate(),
        opt(c.answer_p50_ms, " ms"),
        opt(c.answer_p99_ms, " ms"),
    );
}

/// Checkouts beside order lines, end to end on the embedded backends.
fn print_checkout_table(rounds: &[Round]) {
    println!("\n| users | end-to-end order lines/s (write-heavy) | checkouts paid/s, end to end | order lines/s in the checkout run | checkout POST p50 / p99 | time to payment p50 / p99 |");
    println!("|---|---|---|---|---|---|");
    for r in rounds {
        let c = &r.checkout;
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} / {:.2} ms | {} / {} |",
            r.users,
            r.embedded.sustained,
            c.paid_per_second,
            c.lines.rate(),
            c.checkouts.p50_ms,
            c.checkouts.p99_ms,
            opt(c.answer_p50_ms, " ms"),
            opt(c.answer_p99_ms, " ms"),
        );
    }
}

/// The table BENCHMARKS.md shows: every figure a ratio within the run.
fn print_table(rounds: &[Round]) {
    println!("\n| users | bare axum req/s | POST embedded (x bare) | POST Kafka (x bare) | end-to-end embedded orders/s (x peer) | end-to-end Kafka (x peer) | peer orders/s | peak RSS embedded / Kafka / peer | CPU per order embedded / Kafka / peer |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rounds {
        let bare = r.bare.rate();
        let peer = r.peer.as_ref().map(|p| p.sustained);
        let vs_peer = |v: f64| peer.map_or(String::new(), |p| format!(" ({})", ratio(v, p)));
        let kafka = |f: &dyn Fn(&EndToEnd) -> String| r.kafka.as_ref().map_or("-".to_owned(), f);
        let ms = |e: Option<&EndToEnd>| {
            e.and_then(|e| e.cpu_ms_per_order)
                .map_or("-".to_owned(), |c| format!("{c:.2} ms"))
        };
        let mib = |e: Option<&EndToEnd>| opt(e.and_then(|e| e.rss_mib), "");
        println!(
            "| {} | {:.0} | {:.0} ({}) | {} | {:.0}{} | {} | {} | {} / {} / {} MiB | {} / {} / {} |",
            r.users,
            bare,
            r.embedded.load.rate(),
            ratio(r.embedded.load.rate(), bare),
            kafka(&|k| format!("{:.0} ({})", k.load.rate(), ratio(k.load.rate(), bare))),
            r.embedded.sustained,
            vs_peer(r.embedded.sustained),
            kafka(&|k| format!("{:.0}{}", k.sustained, vs_peer(k.sustained))),
            opt(peer, ""),
            mib(Some(&r.embedded)),
            mib(r.kafka.as_ref()),
            mib(r.peer.as_ref()),
            ms(Some(&r.embedded)),
            ms(r.kafka.as_ref()),
            ms(r.peer.as_ref()),
        );
    }
}

/// What sealing personal data costs per order, beside the first round's
/// CPU per order (which includes it).
async fn print_personal_cost(rounds: &[Round]) -> anyhow::Result<()> {
    const ORDERS: usize = 20_000;
    let cost = salestrack_loadtest::personal_cost::measure(ORDERS).await?;
    let share = |e: Option<&EndToEnd>| {
        e.and_then(|e| e.cpu_ms_per_order)
            .map_or("-".to_owned(), |ms| {
                format!(
                    "{:.1} %",
                    (cost.seal_us + cost.open_us) / (ms * 1e3) * 100.0
                )
            })
    };
    let first = rounds.first();
    println!(
        "\npersonal data ({ORDERS} orders, one after the other): the command function's key read and sealing {:.1} us per order, an answer's key read and opening {:.1} us; together {} of the embedded CPU per order, {} of Kafka's ({} users)",
        cost.seal_us,
        cost.open_us,
        share(first.map(|r| &r.embedded)),
        share(first.and_then(|r| r.kafka.as_ref())),
        first.map_or(0, |r| r.users),
    );
    Ok(())
}

/// The real engines beside the embedded backends and the peer.
fn print_engines_table(rounds: &[Round], engines: &Engines) {
    println!("\n| users | end-to-end embedded orders/s | end-to-end real engines orders/s (x embedded) | (x peer) | (x Pekko peer) | CPU per order: server + Kafka + Cassandra + OpenSearch | of which Kafka / Cassandra / OpenSearch |");
    println!("|---|---|---|---|---|---|---|");
    for r in rounds {
        let rows = r.engines.iter().map(|e| ("", e)).chain(
            r.engine_variants
                .iter()
                .map(|(label, e)| (label.as_str(), e)),
        );
        let pekko = r.pekko.as_ref().map(|(p, _)| p.sustained);
        let row = |label: &str, e: &EndToEnd, [k, c, o]: [f64; 3]| {
            let vs = |other: Option<f64>| other.map_or("-".to_owned(), |p| ratio(e.sustained, p));
            let users = match label {
                "" => r.users.to_string(),
                label => format!("{} ({label})", r.users),
            };
            println!(
                "| {users} | {:.0} | {:.0} ({}) | {} | {} | {} | {k:.2} / {c:.2} / {o:.2} ms |",
                r.embedded.sustained,
                e.sustained,
                ratio(e.sustained, r.embedded.sustained),
                vs(r.peer.as_ref().map(|p| p.sustained)),
                vs(pekko),
                e.cpu_ms_per_order
                    .map_or("-".to_owned(), |c| format!("{c:.2} ms")),
            );
        };
        for (label, (e, per_engine)) in rows {
            row(label, e, *per_engine);
        }
        if let Some((e, per_engine)) = &r.pekko {
            row("Pekko peer", e, *per_engine);
        }
    }
    let [k, c, o] = engines.rss_mib();
    println!(
        "\nengines' resident sets at the end: Kafka {}, Cassandra {}, OpenSearch {}",
        opt(k, " MiB"),
        opt(c, " MiB"),
        opt(o, " MiB")
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve-baseline") => {
            return serve_baseline(args.get(2).context("an address")?).await
        }
        Some("--serve-runner") => return serve_runner().await,
        _ => {}
    }
    let o = options()?;
    println!(
        "salestrack-bench: {} s per phase, users {:?}, goose write-heavy scenario, {} cores",
        o.seconds,
        o.users,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let postgres = Postgres::start()?;
    let peer_binary = match &postgres {
        Some(_) => Some(build_peer()?),
        None => None,
    };

    let engines = if o.engines {
        let engines = Engines::start()?;
        warm_up(&engines, &o, None).await?;
        Some(engines)
    } else {
        None
    };
    let pekko = match &engines {
        Some(engines) if o.pekko => {
            let peer = Server::pekko(&build_pekko_peer()?, engines)?;
            warm_up(engines, &o, Some(&peer)).await?;
            Some(peer)
        }
        _ => None,
    };
    let mut variants = Vec::new();
    for paxos in &o.paxos {
        let Some(engines) = &engines else {
            bail!("--cassandra-paxos needs --engines");
        };
        let variant = engines.variant(&[("paxos_variant", paxos)])?;
        warm_up(&variant, &o, None).await?;
        variants.push(variant);
    }

    let mut rounds = Vec::new();
    for (i, &users) in o.users.iter().enumerate() {
        let baseline = Server::baseline()?;
        baseline.wait_ready("/health/live").await?;
        let bare = load(&baseline.url, users, &o, None).await?;
        drop(baseline);

        let embedded = end_to_end(&Server::runner(None)?, users, &o, &nothing_else)
            .await
            .with_context(|| format!("embedded phase, {users} users"))?;

        let kafka = kafka_phase(users, &o, Vec::new()).await?;
        let mut lingers = Vec::new();
        for &linger in &o.lingers {
            let settings = vec![("SALESTRACK_KAFKA_LINGER_MS", linger.to_string())];
            if let Some(measured) = kafka_phase(users, &o, settings).await? {
                lingers.push((linger, measured));
            }
        }
        let lanes = embedded_phases("SALESTRACK_CONSUMER_LANES", &o.lanes, users, &o).await?;
        let warm = embedded_phases("SALESTRACK_WARM_CART_EVENTS", &o.warm, users, &o).await?;
        let batch = embedded_phases("SALESTRACK_BATCH_SIZE", &o.batch, users, &o).await?;
        let peer = match (&postgres, &peer_binary) {
            (Some(pg), Some(binary)) => {
                let db = pg.database(&format!("peer_{i}"))?;
                Some(
                    end_to_end(&Server::peer(binary, &db)?, users, &o, &|| pg.cpu_seconds())
                        .await
                        .with_context(|| format!("peer phase, {users} users"))?,
                )
            }
            _ => None,
        };
        let on_engines = match &engines {
            Some(engines) => Some(engines_phase(users, &o, engines, &[]).await?),
            None => None,
        };
        let mut engine_variants = Vec::new();
        for variant in &variants {
            let measured = engines_phase(users, &o, variant, &[]).await?;
            engine_variants.push((variant.label.clone(), measured));
        }
        if let (Some(engines), Some((name, values))) = (&engines, &o.engines_vary) {
            for value in values {
                let extra = [(name.as_str(), value.clone())];
                let measured = engines_phase(users, &o, engines, &extra).await?;
                engine_variants.push((format!("{name}={value}"), measured));
            }
        }
        let on_pekko = match (&engines, &pekko) {
            (Some(engines), Some(peer)) => Some(
                measure_on_engines(peer, users, &o, engines, "-pekko", true)
                    .await
                    .with_context(|| format!("Pekko peer phase, {users} users"))?,
            ),
            _ => None,
        };
        let checkout = checkout_phase(users, &o)
            .await
            .with_context(|| format!("checkout phase, {users} users"))?;
        let round = Round {
            users,
            bare,
            embedded,
            kafka,
            peer,
            lingers,
            lanes,
            warm,
            batch,
            engines: on_engines,
            engine_variants,
            pekko: on_pekko,
            checkout,
        };
        print_round(&round);
        rounds.push(round);
    }

    // Latency at half the sustained embedded rate, at 16 users or the
    // largest count below it.
    let at = rounds
        .iter()
        .filter(|r| r.users <= 16)
        .max_by_key(|r| r.users)
        .or(rounds.first())
        .context("no round ran")?;
    let half = (at.embedded.sustained / 2.0).floor().max(1.0) as usize;
    let steady = Server::runner(None)?;
    steady.wait_ready("/health/ready").await?;
    let at_half = load(&steady.url, at.users, &o, Some(half)).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while visible(&steady.url).await? < at_half.accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = reqwest::get(format!("{}/metrics", steady.url))
        .await?
        .text()
        .await?;
    let c2v = |q| {
        quantile(&metrics, "salestrack_command_to_visible_seconds", q)
            .map_or("-".to_owned(), |s| format!("{:.1} ms", s * 1e3))
    };
    println!(
        "\ncommand -> visible, embedded, {} users at 50% of the sustained rate ({half}/s): p50 {}  p99 {}  ({} lines); peak RSS {}",
        at.users,
        c2v(0.5),
        c2v(0.99),
        at_half.accepted,
        opt(steady.peak_rss_mib(), " MiB")
    );
    drop(steady);
    print_table(&rounds);
    print_personal_cost(&rounds).await?;
    print_checkout_table(&rounds);
    if let Some(engines) = &engines {
        print_engines_table(&rounds, engines);
    }
    let failed: usize = rounds
        .iter()
        .map(|r| {
            r.bare.failed
                + r.embedded.load.failed
                + r.kafka.as_ref().map_or(0, |k| k.load.failed)
                + r.peer.as_ref().map_or(0, |p| p.load.failed)
                + r.engines.as_ref().map_or(0, |(e, _)| e.load.failed)
                + r.pekko.as_ref().map_or(0, |(e, _)| e.load.failed)
        })
        .sum::<usize>()
        + at_half.failed;
    println!("\nfailed requests (all phases): {failed}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{quantile, slug};

    #[test]
    fn each_engines_phase_has_a_file_name_of_its_own() {
        assert_eq!(slug(""), "");
        assert_eq!(slug("paxos_variant: v2"), "-paxos_variant-v2");
        assert_eq!(
            slug("SALESTRACK_BATCH_SIZE=500"),
            "-SALESTRACK_BATCH_SIZE-500"
        );
        assert_ne!(
            slug("SALESTRACK_BATCH_SIZE=100"),
            slug("SALESTRACK_BATCH_SIZE=500")
        );
    }

    #[test]
    fn a_histogram_quantile_interpolates_within_its_bucket() {
        let text =
            "x_bucket{le=\"0.01\"} 50\nx_bucket{le=\"0.02\"} 100\nx_bucket{le=\"+Inf\"} 100\n";
        assert_eq!(quantile(text, "x", 0.5), Some(0.01));
        let p75 = quantile(text, "x", 0.75).unwrap_or_default();
        assert!((p75 - 0.015).abs() < 1e-9, "{p75}");
        assert_eq!(quantile("", "x", 0.5), None);
    }
}
