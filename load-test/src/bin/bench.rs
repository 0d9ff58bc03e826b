//! `salestrack-bench`: the performance figures of BENCHMARKS.md, measured
//! side by side in one run on one machine.
//!
//! ```sh
//! cargo run --release -p salestrack-loadtest --bin salestrack-bench -- --seconds 10 --users 16
//! ```
//!
//! Phases, each against a fresh server process on a free loopback port,
//! driven by the same goose write-heavy scenario (same body generator):
//! 1. a bare axum `POST /orders` that parses the JSON and answers 202: the
//!    ceiling of HTTP + JSON on this machine;
//! 2. the runner's `POST /orders` on the embedded backends, then until
//!    every accepted line is visible in the read models: command rate and
//!    sustained end-to-end orders/s;
//! 3. the same with the bus on Kafka (tansu, when installed);
//! 4. a fresh embedded runner offered half the sustained rate: command ->
//!    visible p50/p99 from its own histogram;
//!
//! and each runner's peak RSS (`VmHWM`). Servers are this binary started
//! again with `--serve-baseline` / `--serve-runner`, so load generator and
//! server never share a process. Bounded: every phase has a run time and
//! a catch-up deadline.

use anyhow::{bail, Context};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use salestrack_kafka::test_broker::{BrokerKind, TestBroker};
use salestrack_loadtest::scenario;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    seconds: usize,
    users: usize,
}

fn options() -> anyhow::Result<Options> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| -> anyhow::Result<usize> {
        match args.iter().position(|a| a == flag) {
            Some(i) => args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{flag} needs a number")),
            None => Ok(default),
        }
    };
    let o = Options {
        seconds: value("--seconds", 10)?,
        users: value("--users", 16)?,
    };
    if o.seconds == 0 || o.seconds > 120 || o.users == 0 || o.users > 256 {
        bail!("--seconds must be 1..=120 and --users 1..=256");
    }
    Ok(o)
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
        Ok(Server {
            child: command.spawn()?,
            url: format!("http://{addr}"),
            _data: Some(data),
        })
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

async fn load(host: &str, o: &Options, throttle: Option<usize>) -> anyhow::Result<Load> {
    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
        .register_scenario(scenario::write_heavy())
        .set_default(GooseDefault::Host, host)?
        .set_default(GooseDefault::Users, o.users)?
        .set_default(GooseDefault::IncreaseRate, o.users.to_string().as_str())?
        .set_default(GooseDefault::RunTime, o.seconds)?
        .set_default(GooseDefault::Quiet, 1)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoErrorSummary, true)?
        .set_default(GooseDefault::NoTelnet, true)?;
    if let Some(rate) = throttle {
        attack = attack.set_default(GooseDefault::ThrottleRequests, rate.max(1))?;
    }
    let started = Instant::now();
    let metrics = attack.execute().await?;
    let seconds = started.elapsed().as_secs_f64();
    let post = metrics
        .requests
        .get(&format!("POST {}", scenario::PLACE))
        .context("no POST /orders was made")?;
    Ok(Load {
        accepted: post.success_count,
        failed: post.fail_count,
        seconds,
        p50_ms: post.raw_data.percentile_us(0.5) as f64 / 1e3,
        p99_ms: post.raw_data.percentile_us(0.99) as f64 / 1e3,
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
}

async fn end_to_end(server: &Server, o: &Options) -> anyhow::Result<EndToEnd> {
    server.wait_ready("/health/ready").await?;
    let started = Instant::now();
    let load = load(&server.url, o, None).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while visible(&server.url).await? < load.accepted {
        if Instant::now() > deadline {
            bail!("the projection did not catch up within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(EndToEnd {
        sustained: load.accepted as f64 / started.elapsed().as_secs_f64(),
        rss_mib: server.peak_rss_mib(),
        load,
    })
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
    let (settings, backends) = salestrack_platform::start()
        .await
        .map_err(anyhow::Error::from_boxed)?;
    let listener = tokio::net::TcpListener::bind(settings.http_addr).await?;
    salestrack_local_runner::run(
        listener,
        settings,
        backends,
        tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    Ok(())
}

fn row(what: &str, value: String) {
    println!("{what:<58} {value}");
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
        "salestrack-bench: {} s per phase, {} users, goose write-heavy scenario, {} cores",
        o.seconds,
        o.users,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let baseline = Server::baseline()?;
    baseline.wait_ready("/health/live").await?;
    let bare = load(&baseline.url, &o, None).await?;
    drop(baseline);

    let embedded = end_to_end(&Server::runner(None)?, &o).await?;

    let broker = TestBroker::start(BrokerKind::Tansu);
    let kafka = match &broker {
        Some(b) => Some(end_to_end(&Server::runner(Some(&b.brokers))?, &o).await?),
        None => None,
    };
    drop(broker);

    let half = (embedded.sustained / 2.0).floor().max(1.0) as usize;
    let steady = Server::runner(None)?;
    steady.wait_ready("/health/ready").await?;
    let at_half = load(&steady.url, &o, Some(half)).await?;
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
    let steady_rss = steady.peak_rss_mib();
    drop(steady);

    println!();
    row(
        "bare axum POST /orders (baseline)",
        format!(
            "{:>8.0} req/s   p50 {:.2} ms  p99 {:.2} ms",
            bare.rate(),
            bare.p50_ms,
            bare.p99_ms
        ),
    );
    let command = &embedded.load;
    row(
        "runner POST /orders, embedded bus (202 = fsync'd)",
        format!(
            "{:>8.0} req/s   p50 {:.2} ms  p99 {:.2} ms   = {:.3} x baseline",
            command.rate(),
            command.p50_ms,
            command.p99_ms,
            command.rate() / bare.rate().max(1e-9)
        ),
    );
    row(
        "sustained end-to-end, embedded (accepted -> visible)",
        format!("{:>8.0} orders/s", embedded.sustained),
    );
    match &kafka {
        Some(k) => {
            row(
                "runner POST /orders, Kafka bus (tansu, acks=all)",
                format!(
                    "{:>8.0} req/s   p50 {:.2} ms  p99 {:.2} ms   = {:.3} x baseline",
                    k.load.rate(),
                    k.load.p50_ms,
                    k.load.p99_ms,
                    k.load.rate() / bare.rate().max(1e-9)
                ),
            );
            row(
                "sustained end-to-end, Kafka (tansu)",
                format!(
                    "{:>8.0} orders/s   = {:.3} x embedded",
                    k.sustained,
                    k.sustained / embedded.sustained.max(1e-9)
                ),
            );
        }
        None => row("Kafka phases", "skipped: `tansu` is not on PATH".into()),
    }
    row(
        &format!("command -> visible at 50% of embedded sustained ({half}/s)"),
        format!(
            "p50 {}  p99 {}  ({} lines)",
            c2v(0.5),
            c2v(0.99),
            at_half.accepted
        ),
    );
    let mib = |v: Option<f64>| v.map_or("-".to_owned(), |m| format!("{m:.0} MiB"));
    row(
        "runner peak RSS: embedded full load / Kafka full load / 50% load",
        format!(
            "{} / {} / {}",
            mib(embedded.rss_mib),
            mib(kafka.as_ref().and_then(|k| k.rss_mib)),
            mib(steady_rss)
        ),
    );
    let failed = bare.failed
        + embedded.load.failed
        + at_half.failed
        + kafka.as_ref().map_or(0, |k| k.load.failed);
    row("failed requests (all phases)", failed.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quantile;

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
