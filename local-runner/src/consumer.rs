//! A consumer loop: poll the bus, hand the records to a handler as one MSK
//! `KafkaEvent` batch, commit only after the handler succeeded.
//!
//! A failed batch is retried as a whole with exponential backoff (the same
//! redelivery Lambda's MSK event source performs); handlers are idempotent, so
//! the records it already handled are safe to see again. On shutdown the loop
//! stops polling, lets the batch in flight finish and commits it.

use aws_lambda_events::event::kafka::KafkaEvent;
use backon::{BackoffBuilder, ExponentialBuilder};
use lambda_runtime::{Context, LambdaEvent};
use salestrack_core::ports::{BusRecord, Consumer};
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Liveness of one loop, read by `/health/ready`.
#[derive(Debug, Default)]
pub struct LoopHealth {
    running: AtomicBool,
    /// True while the current batch keeps failing.
    failing: AtomicBool,
    batches: AtomicU64,
    records: AtomicU64,
}

impl LoopHealth {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

pub struct LoopConfig {
    pub name: &'static str,
    pub batch_size: usize,
    pub poll_wait: Duration,
    pub event_source_arn: String,
    pub bootstrap_servers: String,
}

pub async fn run<H, Fut, R, E>(
    config: LoopConfig,
    mut consumer: Box<dyn Consumer>,
    handler: H,
    health: Arc<LoopHealth>,
    shutdown: CancellationToken,
) where
    H: Fn(LambdaEvent<KafkaEvent>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    E: Display,
{
    health.running.store(true, Ordering::Relaxed);
    tracing::info!(consumer = config.name, "consumer loop started");
    while !shutdown.is_cancelled() {
        let polled = tokio::select! {
            polled = consumer.poll(config.batch_size, config.poll_wait) => polled,
            () = shutdown.cancelled() => break,
        };
        let records = match polled {
            Ok(records) if records.is_empty() => {
                health.failing.store(false, Ordering::Relaxed);
                continue;
            }
            Ok(records) => records,
            Err(e) => {
                tracing::error!(consumer = config.name, error = %e, "poll failed");
                health.failing.store(true, Ordering::Relaxed);
                pause(Duration::from_secs(1), &shutdown).await;
                continue;
            }
        };
        if !deliver(&config, &records, &handler, &health, &shutdown).await {
            // Shut down while the batch kept failing: leave it uncommitted for the next start.
            break;
        }
        if let Err(e) = consumer.commit(&records).await {
            // Not committed means redelivered later, which the handlers tolerate.
            tracing::error!(consumer = config.name, error = %e, "commit failed; the batch will be redelivered");
            if let Err(e) = consumer.rewind().await {
                tracing::error!(consumer = config.name, error = %e, "rewind failed");
            }
        }
        health.batches.fetch_add(1, Ordering::Relaxed);
        health
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
    }
    health.running.store(false, Ordering::Relaxed);
    tracing::info!(consumer = config.name, "consumer loop stopped");
}

/// Calls the handler until it succeeds (true) or shutdown interrupts a retry (false).
async fn deliver<H, Fut, R, E>(
    config: &LoopConfig,
    records: &[BusRecord],
    handler: &H,
    health: &LoopHealth,
    shutdown: &CancellationToken,
) -> bool
where
    H: Fn(LambdaEvent<KafkaEvent>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    E: Display,
{
    let batch = salestrack_msk::batch(records, &config.event_source_arn, &config.bootstrap_servers);
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times()
        .build();
    loop {
        // The handler call itself is never cancelled: a batch in flight finishes.
        let started = std::time::Instant::now();
        let result = handler(LambdaEvent::new(batch.clone(), Context::default())).await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::histogram!("salestrack_consumer_batch_seconds", "consumer" => config.name, "result" => outcome)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("salestrack_consumer_batches_total", "consumer" => config.name, "result" => outcome).increment(1);
        match result {
            Ok(_) => {
                metrics::counter!("salestrack_consumer_records_total", "consumer" => config.name)
                    .increment(records.len() as u64);
                health.failing.store(false, Ordering::Relaxed);
                return true;
            }
            Err(e) => {
                health.failing.store(true, Ordering::Relaxed);
                let delay = backoff.next().unwrap_or(Duration::from_secs(10));
                tracing::warn!(consumer = config.name, error = %e, records = records.len(), retry_in = ?delay, "batch failed; retrying");
                if !pause(delay, shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Sleeps unless shutdown comes first; true if the full delay passed.
async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shutdown.cancelled() => false,
    }
}
