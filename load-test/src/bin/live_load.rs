//! `salestrack-live-load`: live streams under write load, measured. An
//! in-process runner on embedded backends serves `--streams` live streams
//! spread over `--carts` carts while one writer per cart posts `--orders`
//! lines to it, one after the other. It prints what a stream costs in
//! memory (the process's resident set before and after opening them), how
//! long after its `202` each version reached each stream (median, p90, p99,
//! max), and whether every stream saw every version in order.
//!
//! ```sh
//! cargo run --release -p salestrack-loadtest --bin salestrack-live-load -- \
//!     --streams 1000 --carts 100 --orders 10
//! ```
//!
//! Bounded in count (carts x orders posts) and in time (`--seconds`, 120 by
//! default); loopback only.

use anyhow::{bail, Context};
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Options {
    streams: usize,
    carts: usize,
    orders: usize,
    seconds: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        streams: 1_000,
        carts: 100,
        orders: 10,
        seconds: 120,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .with_context(|| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--streams" => o.streams = n,
            "--carts" => o.carts = n,
            "--orders" => o.orders = n,
            "--seconds" => o.seconds = n as u64,
            other => bail!("unknown option {other} (--streams, --carts, --orders, --seconds)"),
        }
    }
    anyhow::ensure!(
        o.carts > 0 && o.streams >= o.carts,
        "need --streams >= --carts > 0"
    );
    Ok(o)
}

/// The process's resident set, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// When each version of each cart was accepted (`202`).
type Accepted = Arc<Mutex<Vec<Vec<Option<Instant>>>>>;

/// Reads one stream until `last` and returns each version's delay after
/// its `202`; fails on a version out of order.
async fn follow(
    client: reqwest::Client,
    url: String,
    cart: usize,
    last: u64,
    accepted: Accepted,
) -> anyhow::Result<Vec<Duration>> {
    // Opening thousands at once meets the runner's in-flight limit (a `503`
    // says when to try again) and a full accept queue (connect again).
    let mut attempts = 0;
    let mut response = loop {
        let response = match client.get(&url).send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
            break response.error_for_status()?;
        }
        let wait = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    let mut buffer = String::new();
    let mut seen = 0u64;
    let mut delays = Vec::new();
    while seen < last {
        let Some(chunk) = response.chunk().await? else {
            bail!("{url}: the stream ended at version {seen}");
        };
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(id) = block.lines().find_map(|l| l.strip_prefix("id:")) else {
                continue;
            };
            let version: u64 = id.trim().parse()?;
            if version != seen + 1 && seen != 0 {
                bail!("{url}: version {version} after {seen}");
            }
            seen = version;
            if let Some(at) = accepted
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .get(cart)
                .and_then(|c| c.get(version as usize).copied().flatten())
            {
                delays.push(now.saturating_duration_since(at));
            }
        }
    }
    Ok(delays)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let dir = tempfile::tempdir()?;
    let settings = Settings {
        data_dir: dir.path().into(),
        poll_wait_ms: 20,
        live: salestrack_platform::LiveSettings {
            max_streams: o.streams + 10,
            ..Default::default()
        },
        ..Settings::default()
    };
    let backends = Backends::connect(&settings).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(salestrack_local_runner::run(
        listener,
        settings,
        backends,
        shutdown.clone(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.streams + 64)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(o.seconds);

    // One first line per cart, visible before the streams open.
    let carts: Vec<CartId> = (0..o.carts).map(|_| CartId(Uuid::new_v4())).collect();
    for cart in &carts {
        let body = order_body_for(*cart, OrderId(Uuid::new_v4()), "Live load");
        let answer: serde_json::Value = client
            .post(format!("{base}/orders"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = answer["consistency_token"].as_str().context("token")?;
        client
            .get(format!("{base}/carts/{cart}?consistency_token={token}"))
            .send()
            .await?
            .error_for_status()?;
    }
    let rss_before = rss_kib();
    let accepted: Accepted = Arc::new(Mutex::new(vec![vec![None; o.orders + 2]; o.carts]));
    let last = (o.orders + 1) as u64;
    let mut streams = Vec::with_capacity(o.streams);
    for s in 0..o.streams {
        let cart = s % o.carts;
        streams.push(tokio::spawn(follow(
            client.clone(),
            format!("{base}/carts/{}/live", carts[cart]),
            cart,
            last,
            Arc::clone(&accepted),
        )));
    }
    // Every stream open (the first event sent) before the writers start.
    while salestrack_platform::telemetry::prometheus()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("salestrack_live_streams "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        < o.streams as f64
    {
        anyhow::ensure!(Instant::now() < deadline, "the streams never all opened");
        if let Some(failed) = streams.iter().position(|s| s.is_finished()) {
            streams.swap_remove(failed).await??;
            bail!("a stream ended before the writes began");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_open = rss_kib();

    let started = Instant::now();
    let writers: Vec<_> = carts
        .iter()
        .enumerate()
        .map(|(i, cart)| {
            let (client, base, cart, accepted) =
                (client.clone(), base.clone(), *cart, Arc::clone(&accepted));
            let orders = o.orders;
            tokio::spawn(async move {
                for k in 0..orders {
                    let body = order_body_for(cart, OrderId(Uuid::new_v4()), "Live load");
                    client
                        .post(format!("{base}/orders"))
                        .json(&body)
                        .send()
                        .await?
                        .error_for_status()?;
                    // The k-th post after the first line is version k + 2.
                    if let Ok(mut a) = accepted.lock() {
                        a[i][k + 2] = Some(Instant::now());
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let mut delays = Vec::new();
    for s in streams {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = tokio::time::timeout(left, s)
            .await
            .context("the streams did not see every version in time")???;
        delays.extend(got);
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib();
    // The same writes' 202 -> visible in the read models, as the projector
    // measured it: what the streams add on top of projection.
    let metrics = salestrack_platform::telemetry::prometheus().render();
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let visible_mean = metric("salestrack_command_to_visible_seconds_sum ")
        / metric("salestrack_command_to_visible_seconds_count ").max(1.0);
    shutdown.cancel();
    server.await??;

    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "salestrack-live-load: {} streams on {} carts, {} writes per cart, embedded backends",
        o.streams, o.carts, o.orders
    );
    println!(
        "every stream saw every version in order: {} deliveries in {:.2} s ({:.0} events/s out, {:.0} writes/s in)",
        delays.len(),
        elapsed.as_secs_f64(),
        delays.len() as f64 / elapsed.as_secs_f64(),
        (o.carts * o.orders) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "202 -> event on the stream: median {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&delays, 0.5)),
        ms(percentile(&delays, 0.9)),
        ms(percentile(&delays, 0.99)),
        ms(percentile(&delays, 1.0))
    );
    let live_mean =
        delays.iter().map(Duration::as_secs_f64).sum::<f64>() / delays.len().max(1) as f64;
    println!(
        "mean: 202 -> visible in the read models {:.1} ms (projector, every write of the run incl. the first lines), 202 -> event on the stream {:.1} ms: ratio {:.2}",
        visible_mean * 1e3,
        live_mean * 1e3,
        live_mean / visible_mean.max(f64::EPSILON)
    );
    let per_stream = rss_open.saturating_sub(rss_before) as f64 / o.streams as f64;
    println!(
        "resident set: {} MiB before the streams, {} MiB with them open ({:.1} KiB per stream, both ends in this process), {} MiB after the writes",
        rss_before / 1024,
        rss_open / 1024,
        per_stream,
        rss_end / 1024
    );
    Ok(())
}
