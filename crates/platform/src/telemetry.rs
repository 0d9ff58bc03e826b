//! Tracing set-up: `RUST_LOG` filters (default `info`), text or JSON lines.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _already_set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The process-wide Prometheus recorder, installed on first use. Handlers
/// record through the `metrics` facade; without this call (as on Lambda)
/// their metrics are no-ops.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // End-to-end latencies get finer buckets: their percentiles are
            // what the benchmark reports.
            let fine = [
                0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
                0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("salestrack_command_to_visible_seconds".into()),
                        &fine,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("salestrack_projection_lag_seconds".into()),
                        &fine,
                    )
                })
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

/// What each metric means, and the counters of rare events at zero, so a
/// dashboard or an alert sees `0`, not "no data", until the first one.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "salestrack_http_request_seconds",
        Unit::Seconds,
        "HTTP request latency by method, route and status"
    );
    describe_counter!(
        "salestrack_http_requests_total",
        "HTTP requests by method, route and status"
    );
    describe_histogram!(
        "salestrack_consumer_batch_seconds",
        Unit::Seconds,
        "handler time per batch, by consumer (function)"
    );
    describe_histogram!(
        "salestrack_consumer_batch_records",
        Unit::Count,
        "records per batch, by consumer"
    );
    describe_gauge!(
        "salestrack_consumer_lag_records",
        Unit::Count,
        "records not yet delivered, per consumer, topic and partition"
    );
    describe_counter!(
        "salestrack_consumer_record_failures_total",
        "records a handler failed, by consumer and kind"
    );
    describe_counter!(
        "salestrack_consumer_dead_lettered_total",
        "records moved to the dead-letter topic, by consumer"
    );
    describe_counter!(
        "salestrack_domain_append_conflicts_total",
        "appends that lost a conditional-write race and were decided again"
    );
    describe_histogram!(
        "salestrack_projection_lag_seconds",
        Unit::Seconds,
        "event recorded by the domain -> visible in the read models"
    );
    describe_histogram!(
        "salestrack_command_to_visible_seconds",
        Unit::Seconds,
        "command accepted (202) -> its event visible in the read models"
    );
    describe_counter!(
        "salestrack_query_stale_reads_total",
        "reads whose consistency wait ran out"
    );
    describe_counter!(
        "salestrack_es_bulk_retries_total",
        "Elasticsearch bulk attempts retried for transient item failures"
    );
    for consumer in ["domain", "projector"] {
        metrics::counter!("salestrack_consumer_dead_lettered_total", "consumer" => consumer)
            .increment(0);
    }
    metrics::counter!("salestrack_domain_append_conflicts_total").increment(0);
    metrics::counter!("salestrack_query_stale_reads_total").increment(0);
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_metrics_render_in_the_prometheus_format() {
        let handle = super::prometheus();
        metrics::counter!("salestrack_test_total", "kind" => "x").increment(2);
        let text = handle.render();
        assert!(
            text.contains("salestrack_test_total{kind=\"x\"} 2"),
            "{text:?}"
        );
    }
}
