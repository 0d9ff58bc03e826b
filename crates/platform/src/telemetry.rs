//! Telemetry: `tracing` to stdout (`RUST_LOG` filters, default `info`; text
//! or JSON lines), optionally spans exported over OTLP/HTTP when
//! `SALESTRACK_OTLP_ENDPOINT` is set, and the Prometheus recorder.

use crate::config::LogFormat;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use salestrack_core::headers::TraceParent;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init(format: LogFormat) {
    init_with(format, None, "salestrack");
}

/// The exporting tracer provider, when OTLP export is on.
static PROVIDER: std::sync::OnceLock<SdkTracerProvider> = std::sync::OnceLock::new();

/// Like [`init`], and exports spans to the OTLP/HTTP collector at
/// `otlp_endpoint` (`http://host:4318`) as `service`, if given.
pub fn init_with(format: LogFormat, otlp_endpoint: Option<&str>, service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = otlp_endpoint.and_then(|endpoint| match otlp_provider(endpoint, service) {
        Ok(provider) => {
            let tracer = provider.tracer("salestrack");
            let _ = PROVIDER.set(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        Err(e) => {
            eprintln!("OTLP export to {endpoint} is off: {e}");
            None
        }
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _already_set = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(true))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .try_init(),
    };
}

fn otlp_provider(
    endpoint: &str,
    service: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_headers(std::collections::HashMap::new())
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

/// Exports the spans still buffered (at shutdown; tests).
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "flushing the OTLP exporter failed");
        }
    }
}

/// Makes `span` a child of the W3C trace context `trace` (from an HTTP or
/// Kafka `traceparent`), so exported spans of one order share its trace.
pub fn continue_trace(span: &tracing::Span, trace: &TraceParent) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let context = SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(trace.span_id),
        if trace.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
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
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("salestrack_payment_answer_seconds".into()),
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
        "poison records moved to the dead-letter topic, by consumer"
    );
    describe_gauge!(
        "salestrack_consumer_waiting_seconds",
        "how long the longest-waiting record of a consumer has waited on a retryable failure (0: none)"
    );
    describe_counter!(
        "salestrack_dead_letters_redriven_total",
        "dead letters put back on their source topic"
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
        "salestrack_checkouts_total",
        "checkout saga steps stored, by step: started, paid, payment_declined, payment_timeout, refunded"
    );
    describe_counter!(
        "salestrack_payments_total",
        "payment requests the mock gateway handled, by result"
    );
    describe_counter!(
        "salestrack_checkouts_expired_total",
        "expire_checkout commands the saga's timer sent"
    );
    describe_histogram!(
        "salestrack_payment_answer_seconds",
        Unit::Seconds,
        "checkout recorded -> the gateway's answer on the bus"
    );
    describe_counter!(
        "salestrack_kafka_offsets_skipped_total",
        "records a consumer found gone from the log (deleted by retention before they were handled), by topic"
    );
    describe_counter!(
        "salestrack_es_bulk_retries_total",
        "Elasticsearch bulk attempts retried for transient item failures"
    );
    for consumer in ["domain", "projector", "payment"] {
        metrics::counter!("salestrack_consumer_dead_lettered_total", "consumer" => consumer)
            .increment(0);
        metrics::gauge!("salestrack_consumer_waiting_seconds", "consumer" => consumer).set(0.0);
    }
    metrics::counter!("salestrack_dead_letters_redriven_total").increment(0);
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
