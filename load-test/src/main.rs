//! Load test of the salestrack HTTP API with goose.
//!
//! ```sh
//! cargo run --release -p salestrack-loadtest                  # in-process runner, embedded backends
//! cargo run --release -p salestrack-loadtest -- --users 16 --iterations 500
//! cargo run --release -p salestrack-loadtest -- --host http://127.0.0.1:8080 --run-time 30s
//! ```
//!
//! Four scenarios (see `scenario`): write-heavy placement, mixed reads and
//! writes, read-your-writes, and checkout; `--scenarios writeheavy` (or any list)
//! picks, all run weighted by default. `--report-file run.html
//! --report-file run.json` writes goose's reports. Without `--host` a runner
//! is started in-process on a free loopback port over a fresh data
//! directory; afterwards every accepted line is checked to have reached the
//! sales report (no accepted command lost).
//!
//! Bounded in count (`--iterations`, default 250 per user) or time
//! (`--run-time`), and always by a hard wall-clock cap. Only loopback hosts
//! are accepted.

use anyhow::{bail, Context};
use goose::prelude::*;
use salestrack_loadtest::{ensure_loopback, scenario};
use salestrack_platform::{Backends, Settings};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Whatever the arguments say, the attack stops after this long.
const HARD_CAP: Duration = Duration::from_secs(300);

/// The value of the first of `names` given on the command line
/// (`--name value` or `--name=value`).
fn argument(names: &[&str]) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().enumerate().find_map(|(i, a)| {
        names.iter().find_map(|name| {
            a.strip_prefix(&format!("{name}="))
                .map(str::to_owned)
                .or_else(|| (a == name).then(|| args.get(i + 1).cloned()).flatten())
        })
    })
}

struct InProcess {
    url: String,
    backends: Backends,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _data: tempfile::TempDir,
}

async fn start_runner() -> anyhow::Result<InProcess> {
    let data = tempfile::tempdir().context("temporary data directory")?;
    let settings = Settings {
        data_dir: data.path().into(),
        ..Settings::default()
    };
    let backends = Backends::connect(&settings).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(salestrack_local_runner::run(
        listener,
        settings,
        backends.clone(),
        shutdown.clone(),
    ));
    Ok(InProcess {
        url,
        backends,
        shutdown,
        server,
        _data: data,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let in_process = match argument(&["--host", "-H"]) {
        Some(host) => {
            ensure_loopback(&host)?;
            None
        }
        None => Some(start_runner().await?),
    };
    let mut attack = GooseAttack::initialize()?
        .register_scenario(scenario::write_heavy())
        .register_scenario(scenario::mixed_read_write())
        .register_scenario(scenario::read_your_writes())
        .register_scenario(scenario::checkout())
        .set_default(GooseDefault::Users, 8)?
        .set_default(GooseDefault::IncreaseRate, "8")?;
    // Goose refuses an iteration count beside a run time: the default count
    // only bounds runs that name neither.
    if argument(&["--run-time", "-t"]).is_none() {
        attack = attack.set_default(GooseDefault::Iterations, 250)?;
    }
    if let Some(runner) = &in_process {
        attack = attack.set_default(GooseDefault::Host, runner.url.as_str())?;
    }
    let metrics = tokio::time::timeout(HARD_CAP, attack.execute())
        .await
        .context("the load test hit its hard time cap")??;

    // Goose keys request metrics by "METHOD name".
    let placed = metrics
        .requests
        .get(&format!("POST {}", scenario::PLACE))
        .map_or(0, |r| r.success_count);
    let seconds = metrics.duration.max(1);
    println!(
        "\nsalestrack: {placed} order lines accepted in {seconds} s = {} lines/s",
        placed / seconds
    );

    if let Some(runner) = in_process {
        let lines =
            scenario::projected_lines(runner.backends.read_store()?.as_ref(), placed).await?;
        println!("salestrack: {lines} of {placed} accepted lines reached the sales report");
        runner.shutdown.cancel();
        runner.server.await??;
        if lines != placed {
            bail!("the read model holds {lines} lines, but {placed} were accepted");
        }
    }
    Ok(())
}
