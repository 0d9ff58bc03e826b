//! The local runner: one process that hosts the command and query routes,
//! the domain, projector and payment consumer loops and the checkout saga's
//! timer, against whatever backends the settings select (embedded SQLite
//! when nothing is configured).
//!
//! It calls the very same handlers the Lambda binaries call: HTTP routes are
//! the functions' axum routers; Kafka-triggered handlers receive MSK-shaped
//! `KafkaEvent` batches built from real bus records.
//!
//! # Layout
//! - [`run`]: wires everything and serves until the shutdown token fires.
//! - [`consumer`]: the poll -> handle -> commit loop; a retryable failure
//!   waits, poison goes to the dead-letter topic.
//! - [`app`]: the assembled application router and its OpenAPI document.
//! - [`lanes`]: a function's consumer loops side by side, one health.
//! - [`health`]: `/health/live` and `/health/ready`.
//! - [`redrive`]: the dead-letter topic listed and redriven, for the
//!   `salestrack-redrive` command and `/admin/dead-letters`.
//! - [`web`]: the sales page at `/`.
//! - [`rebuild_read_models`]: the `salestrack-rebuild` command.

pub mod app;
pub mod consumer;
pub mod health;
pub mod lanes;
pub mod redrive;
pub mod serve;
pub mod web;

use consumer::{LoopConfig, LoopHealth};
use lanes::ConsumerHealth;
use salestrack_core::ports::SystemClock;
use salestrack_platform::backends::Ports;
use salestrack_platform::{Backends, Settings};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Rebuilds the Elasticsearch read models from the event store the settings
/// name (see `salestrack_elasticsearch::rebuild`), printing progress to
/// stderr about once a second.
pub async fn rebuild_read_models() -> anyhow::Result<salestrack_elasticsearch::rebuild::Rebuilt> {
    let settings = Settings::from_env()?;
    salestrack_platform::telemetry::init(settings.log_format);
    anyhow::ensure!(
        !settings.elasticsearch.url.trim().is_empty(),
        "the rebuild swaps Elasticsearch aliases: set SALESTRACK_ELASTICSEARCH_URL"
    );
    let backends = Backends::connect(&settings).await?;
    let es = salestrack_elasticsearch::EsReadStore::connect(
        salestrack_platform::backends::es_config(&settings),
    )
    .await?;
    let mut printed: Option<std::time::Instant> = None;
    let rebuilt = salestrack_elasticsearch::rebuild::rebuild(
        &es,
        backends.event_store()?.as_ref(),
        |progress| {
            if printed.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                eprintln!("rebuild: {progress}");
                printed = Some(std::time::Instant::now());
            }
        },
    )
    .await?;
    Ok(rebuilt)
}

/// The checkout saga's timer in the runner: every `every`, sends
/// `expire_checkout` for the checkouts past their deadline (see
/// [`salestrack_payment::expire_due`]). Several runners may all run it:
/// the commands are idempotent, and the domain settles each checkout once.
async fn saga_timer(
    ports: Ports,
    clock: Arc<SystemClock>,
    topics: salestrack_platform::Topics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Each sweep goes on after the last one's full page, so checkouts the
    // read model still shows open after they settled cannot hold the first
    // page for good.
    let mut after = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let expired = salestrack_payment::expire_due(
            ports.read_store.as_ref(),
            ports.producer.as_ref(),
            clock.as_ref(),
            &topics,
            after.take(),
        )
        .await;
        match expired {
            Ok((_, next)) => after = next,
            Err(e) => {
                tracing::warn!(error = %e, "the saga timer could not look for due checkouts; trying again");
            }
        }
    }
}

/// Follows the projection topic from its end and tells the live streams
/// of this process. Nothing is committed: a restart starts from the end
/// again, and the streams' own look at the read store covers what a gap
/// hides.
async fn follow_projections(
    mut consumer: Box<dyn salestrack_core::ports::Consumer>,
    live: Arc<salestrack_query::live::Live>,
    shutdown: CancellationToken,
) {
    let wait = Duration::from_millis(200);
    loop {
        let records = tokio::select! {
            records = consumer.poll(1_000, wait) => records,
            () = shutdown.cancelled() => break,
        };
        match records {
            Ok(records) => {
                for record in records {
                    match salestrack_core::wire::CartProjected::decode(
                        record.value.as_deref().unwrap_or_default(),
                    ) {
                        Ok(notice) => live.notify(notice.cart_id, notice.version),
                        Err(e) => {
                            tracing::warn!(error = %e, partition = record.partition, offset = record.offset, "skipping a projection notice that does not decode");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "following the projection topic failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
}

/// Which consumer loops a runner hosts (`SALESTRACK_CONSUMERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hosted {
    pub domain: bool,
    pub projector: bool,
    pub payment: bool,
    pub saga_timer: bool,
}

impl Hosted {
    /// `all`, `none`, or a comma-separated list of `domain`, `projector`,
    /// `payment` and `saga_timer`.
    pub fn parse(text: &str) -> Result<Hosted, String> {
        let mut hosted = Hosted {
            domain: false,
            projector: false,
            payment: false,
            saga_timer: false,
        };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => {
                    hosted = Hosted {
                        domain: true,
                        projector: true,
                        payment: true,
                        saga_timer: true,
                    }
                }
                "none" => {}
                "domain" => hosted.domain = true,
                "projector" => hosted.projector = true,
                "payment" => hosted.payment = true,
                "saga_timer" => hosted.saga_timer = true,
                other => {
                    return Err(format!(
                        "SALESTRACK_CONSUMERS: unknown consumer {other:?} \
                         (all, none, or a list of domain, projector, payment, saga_timer)"
                    ))
                }
            }
        }
        Ok(hosted)
    }
}

/// Starts the consumer loops a runner hosts.
struct Spawner<'a> {
    backends: &'a Backends,
    /// `SALESTRACK_CONSUMER_LANES`.
    lanes: usize,
    shutdown: &'a CancellationToken,
    loops: &'a mut Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl Spawner<'_> {
    /// The loops' health when `hosted` (and the loops started), else
    /// `None`: `lanes` members of `group` (see [`Backends::consumers`]),
    /// each a loop of its own.
    fn hosted<H, Fut, R>(
        &mut self,
        hosted: bool,
        config: LoopConfig,
        group: &str,
        topics: &[&str],
        handler: H,
    ) -> std::io::Result<Option<Arc<ConsumerHealth>>>
    where
        H: Fn(lambda_runtime::LambdaEvent<aws_lambda_events::event::kafka::KafkaEvent>) -> Fut
            + Clone
            + Send
            + 'static,
        Fut: std::future::Future<Output = salestrack_msk::BatchResult<R>> + Send + 'static,
        R: std::fmt::Debug + Send + 'static,
    {
        if !hosted {
            tracing::info!(
                consumer = config.name,
                "not hosted by this runner (SALESTRACK_CONSUMERS)"
            );
            return Ok(None);
        }
        let consumers = self
            .backends
            .consumers(group, topics, self.lanes)
            .map_err(std::io::Error::other)?;
        let name = config.name;
        let mut lanes = Vec::with_capacity(consumers.len());
        for consumer in consumers {
            let health = Arc::new(LoopHealth::default());
            self.loops.push((
                name,
                tokio::spawn(consumer::run(
                    config.clone(),
                    consumer,
                    handler.clone(),
                    Arc::clone(&health),
                    self.shutdown.clone(),
                )),
            ));
            lanes.push(health);
        }
        tracing::info!(
            consumer = name,
            lanes = lanes.len(),
            "consumer lanes started"
        );
        Ok(Some(Arc::new(ConsumerHealth::new(lanes))))
    }
}

/// Serves on `listener` until `shutdown` is cancelled, then stops accepting,
/// lets the consumer loops finish their batch in flight and returns.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    backends: Backends,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Before anything starts: a bad authentication setting stops the runner.
    let auth = salestrack_platform::auth::Authenticator::from_settings(&settings)
        .await
        .map_err(std::io::Error::other)?
        .map(Arc::new);
    let ports = backends.ports().map_err(std::io::Error::other)?;
    let topics = settings.topics.clone();
    let clock = Arc::new(SystemClock);
    let domain = salestrack_domain::Deps::from_settings(&settings, &backends)
        .map_err(std::io::Error::other)?;
    let payment = salestrack_payment::Deps::from_settings(&settings, &backends)
        .map_err(std::io::Error::other)?;
    // Live streams learn of projections from this process's projector in
    // memory (embedded bus: one process) or, on Kafka, from the projection
    // topic every runner's projector publishes to and every runner follows.
    let live = salestrack_query::live::Live::new(
        salestrack_query::live::LiveConfig::from_settings(&settings),
        shutdown.child_token(),
    );
    let follower = if topics.projections.is_empty() {
        None
    } else {
        backends
            .follower(&topics.projections)
            .map_err(std::io::Error::other)?
    };
    let feed: Option<Arc<dyn salestrack_core::ports::ProjectionFeed>> = match &follower {
        None => Some(live.clone()),
        Some(_) => salestrack_platform::backends::projection_feed(&settings, &backends),
    };
    let follower = follower.map(|consumer| {
        tokio::spawn(follow_projections(
            consumer,
            Arc::clone(&live),
            shutdown.clone(),
        ))
    });
    let projector = salestrack_projector::Deps::from_settings(&settings, &backends, feed)
        .map_err(std::io::Error::other)?;
    let loop_config = |name| LoopConfig {
        name,
        batch_size: settings.batch_size,
        poll_wait: Duration::from_millis(settings.poll_wait_ms),
        retry_backoff_max: Duration::from_millis(settings.retry_backoff_max_ms.max(1)),
        event_source_arn: backends.event_source_arn().into(),
        bootstrap_servers: backends.bootstrap_servers().into(),
        dead_letters: salestrack_msk::DeadLetters {
            producer: Arc::clone(&ports.producer),
            topic: topics.dead_letter.clone(),
            stage: name,
        },
    };

    let hosts = Hosted::parse(&settings.consumers).map_err(std::io::Error::other)?;
    let mut loops = Vec::new();
    let mut spawn = Spawner {
        backends: &backends,
        lanes: settings.consumer_lanes,
        shutdown: &shutdown,
        loops: &mut loops,
    };
    let domain_health = spawn.hosted(
        hosts.domain,
        loop_config("domain"),
        &settings.domain_group,
        &[&topics.commands],
        move |event| {
            let deps = domain.clone();
            async move { salestrack_domain::handler(event, &deps).await }
        },
    )?;
    let projector_health = spawn.hosted(
        hosts.projector,
        loop_config("projector"),
        &settings.projector_group,
        &[&topics.events, &topics.outcomes],
        move |event| {
            let deps = projector.clone();
            async move { salestrack_projector::handler(event, &deps).await }
        },
    )?;
    let payment_health = spawn.hosted(
        hosts.payment,
        loop_config("payment"),
        &settings.payment_group,
        &[&topics.payments],
        move |event| {
            let deps = payment.clone();
            async move { salestrack_payment::handler(event, &deps).await }
        },
    )?;
    let timer = hosts.saga_timer.then(|| {
        tokio::spawn(saga_timer(
            ports.clone(),
            clock.clone(),
            topics.clone(),
            Duration::from_millis(settings.payment.sweep_ms.max(10)),
            shutdown.clone(),
        ))
    });

    // The Prometheus recorder keeps histogram samples until they are
    // folded into buckets: by a scrape of /metrics, or here, so memory does
    // not grow with traffic when nothing scrapes.
    let upkeep = {
        let handle = salestrack_platform::telemetry::prometheus();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => handle.run_upkeep(),
                    () = shutdown.cancelled() => break,
                }
            }
        })
    };
    let app = app::app(
        &settings,
        &backends,
        &ports,
        health::Loops {
            domain: domain_health,
            projector: projector_health,
            payment: payment_health,
        },
        auth,
        Arc::clone(&live),
    )?;
    tracing::info!(addr = %listener.local_addr()?, backends = backends.description(), "salestrack local runner listening");
    let limits = serve::HttpLimits::from_settings(&settings);
    let served = serve::serve(listener, app, limits, shutdown.clone()).await;
    // If the server failed on its own, the loops must stop too.
    shutdown.cancel();
    upkeep.abort();
    if let Some(Err(e)) = match timer {
        Some(handle) => Some(handle.await),
        None => None,
    } {
        tracing::error!(error = %e, "the saga timer panicked");
    }
    if let Some(Err(e)) = match follower {
        Some(handle) => Some(handle.await),
        None => None,
    } {
        tracing::error!(error = %e, "the projection follower panicked");
    }
    for (name, handle) in loops {
        if let Err(e) = handle.await {
            tracing::error!(consumer = name, error = %e, "consumer loop panicked");
        }
    }
    tracing::info!("salestrack local runner stopped");
    // The exporter's thread may block on the collector: not on a runtime worker.
    let _ = tokio::task::spawn_blocking(salestrack_platform::telemetry::flush).await;
    served
}
