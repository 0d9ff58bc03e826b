//! The runner's health routes: `/health/live` and `/health/ready`, and
//! the readiness they report.

use crate::lanes::ConsumerHealth;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use salestrack_platform::health::{Check, Dependency};
use salestrack_platform::{Backends, Settings};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The consumer loops this runner hosts (`SALESTRACK_CONSUMERS`); `None`:
/// not here.
#[derive(Clone)]
pub struct Loops {
    pub domain: Option<Arc<ConsumerHealth>>,
    pub projector: Option<Arc<ConsumerHealth>>,
    pub payment: Option<Arc<ConsumerHealth>>,
}

#[derive(Clone)]
pub(crate) struct HealthState {
    backends: Backends,
    loops: Loops,
    max_projection_lag: Duration,
    max_stall: Duration,
    max_record_wait: Duration,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`; `degraded` (taking orders, but the event store or the read
    /// store is unavailable, a record has waited on a retryable failure, the
    /// projection lags, or a consumer loop has had no partition or no
    /// progress, for longer than its threshold); `not_ready` (the bus is
    /// unavailable, so no order can be accepted, or a consumer loop is
    /// down).
    pub status: &'static str,
    /// Why the status is not `ready`, one sentence per cause.
    pub reasons: Vec<String>,
    pub bus: Check,
    pub event_store: Check,
    pub read_store: Check,
    /// Event produced -> projected, as of the projector's last batch (0
    /// when it has nothing left to do).
    pub projection_lag_ms: u64,
    pub projection_lag_threshold_ms: u64,
    /// Absent when this runner does not host the loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_consumer: Option<ConsumerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projector_consumer: Option<ConsumerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_consumer: Option<ConsumerState>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsumerState {
    /// Loops of this consumer side by side (`SALESTRACK_CONSUMER_LANES`),
    /// each a member of its group with a batch of its own in flight.
    pub lanes: u64,
    /// Every lane runs.
    pub running: bool,
    /// A batch of some lane keeps failing and is being retried.
    pub failing: bool,
    pub batches: u64,
    pub records: u64,
    /// Partitions of its topics the group assigned to its lanes.
    pub partitions: u64,
    /// Records waiting in those partitions (refreshed every second).
    pub lag_records: u64,
    /// How long a lane has had work without committing any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled_ms: Option<u64>,
    /// How long the group has given none of its lanes a partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unassigned_ms: Option<u64>,
    /// The record that has waited longest on a retryable failure; its
    /// partition waits at it, and it is never dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingRecord>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaitingRecord {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    /// Deliveries that failed so far.
    pub attempts: u32,
    /// Since its first failure.
    pub waited_ms: u64,
    /// The last failure, naming the backend.
    pub error: String,
}

impl From<crate::consumer::Waiting> for WaitingRecord {
    fn from(w: crate::consumer::Waiting) -> Self {
        WaitingRecord {
            waited_ms: millis(w.waited()),
            topic: w.topic,
            partition: w.partition,
            offset: w.offset,
            attempts: w.attempts,
            error: w.error,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&ConsumerHealth> for ConsumerState {
    fn from(h: &ConsumerHealth) -> Self {
        ConsumerState {
            lanes: h.lanes() as u64,
            running: h.is_running(),
            failing: h.is_failing(),
            batches: h.batches(),
            records: h.records(),
            partitions: h.partitions(),
            lag_records: h.lag_records(),
            stalled_ms: h.stalled_for().map(millis),
            unassigned_ms: h.unassigned_for().map(millis),
            waiting: h.waiting().map(WaitingRecord::from),
        }
    }
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "Alive")))]
pub(crate) async fn live() -> impl IntoResponse {
    Json(serde_json::json!({"status": "live"}))
}

/// Each dependency answers (with its latency or error), the consumer loops
/// run, and the projection is within its lag threshold; `degraded` (and why)
/// if not, or if a loop has had no partition, work without progress, or a
/// record waiting on a retryable failure, for longer than its threshold: a
/// consumer that is stuck must not look healthy. Only a bus that is down
/// (no order can be accepted) or a stopped loop make it `not_ready` (`503`):
/// while the event store or the read store is down, orders are still
/// accepted and wait on the bus, so the runner must stay in service.
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
pub(crate) async fn ready(State(state): State<HealthState>) -> impl IntoResponse {
    let b = &state.backends;
    let (bus, event_store, read_store) = tokio::join!(
        Dependency::Bus.check(b),
        Dependency::EventStore.check(b),
        Dependency::ReadStore.check(b),
    );
    let mut reasons = Vec::new();
    for (name, check) in [
        ("bus", &bus),
        ("event store", &event_store),
        ("read store", &read_store),
    ] {
        if let Some(error) = &check.error {
            reasons.push(format!("the {name} is unavailable: {error}"));
        }
    }
    let loops = [
        ("domain", state.loops.domain.as_deref()),
        ("projector", state.loops.projector.as_deref()),
        ("payment", state.loops.payment.as_deref()),
    ];
    let mut running = true;
    for (name, health) in loops.into_iter().filter_map(|(n, h)| Some((n, h?))) {
        if !health.is_running() {
            running = false;
            reasons.push(format!("the {name} consumer loop has stopped"));
        }
        if let Some(d) = health.unassigned_for().filter(|d| *d > state.max_stall) {
            reasons.push(format!(
                "the {name} consumer has had no partition assigned for {} s",
                d.as_secs()
            ));
        }
        if let Some(w) = health
            .waiting()
            .filter(|w| w.waited() > state.max_record_wait)
        {
            reasons.push(format!(
                "the {name} consumer has waited {} s ({} deliveries) at {} partition {} offset {}: {}",
                w.waited().as_secs(),
                w.attempts,
                w.topic,
                w.partition,
                w.offset,
                w.error
            ));
        }
        if let Some(d) = health.stalled_for().filter(|d| *d > state.max_stall) {
            reasons.push(format!(
                "the {name} consumer has had {} records waiting without committing any for {} s",
                health.lag_records(),
                d.as_secs()
            ));
        }
    }
    let lag = state
        .loops
        .projector
        .as_ref()
        .map_or(Duration::ZERO, |p| p.record_age());
    if lag > state.max_projection_lag {
        reasons.push(format!(
            "the projection lags {} ms (threshold {} ms)",
            millis(lag),
            millis(state.max_projection_lag)
        ));
    }
    let up = bus.ok() && running;
    let status = match (up, reasons.is_empty()) {
        (false, _) => "not_ready",
        (true, false) => "degraded",
        (true, true) => "ready",
    };
    let body = Readiness {
        status,
        reasons,
        bus,
        event_store,
        read_store,
        projection_lag_ms: millis(lag),
        projection_lag_threshold_ms: millis(state.max_projection_lag),
        domain_consumer: state.loops.domain.as_deref().map(ConsumerState::from),
        projector_consumer: state.loops.projector.as_deref().map(ConsumerState::from),
        payment_consumer: state.loops.payment.as_deref().map(ConsumerState::from),
    };
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// `/health/live` and `/health/ready`, judged by `settings`' thresholds.
pub(crate) fn router(settings: &Settings, backends: &Backends, loops: Loops) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(HealthState {
            backends: backends.clone(),
            loops,
            max_projection_lag: Duration::from_millis(settings.ready.max_projection_lag_ms),
            max_stall: Duration::from_millis(settings.ready.max_stall_ms),
            max_record_wait: Duration::from_millis(settings.ready.max_record_wait_ms),
        })
}
