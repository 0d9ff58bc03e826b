//! The runner's own routes and the assembled application router.

use crate::consumer::LoopHealth;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use salestrack_core::ports::Clock;
use salestrack_platform::health::{Check, Dependency};
use salestrack_platform::http::ApiError;
use salestrack_platform::{Backends, Settings};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

#[derive(Clone)]
pub struct Loops {
    pub domain: Arc<LoopHealth>,
    pub projector: Arc<LoopHealth>,
}

#[derive(Clone)]
struct HealthState {
    backends: Backends,
    loops: Loops,
    max_projection_lag: Duration,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`; `degraded` (serving, but the projection lags more than the
    /// threshold); `not_ready` (a dependency or a consumer loop is down).
    pub status: &'static str,
    pub bus: Check,
    pub event_store: Check,
    pub read_store: Check,
    /// Event produced -> projected, as of the projector's last batch (0
    /// when it has nothing left to do).
    pub projection_lag_ms: u64,
    pub projection_lag_threshold_ms: u64,
    pub domain_consumer: ConsumerState,
    pub projector_consumer: ConsumerState,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsumerState {
    pub running: bool,
    /// The current batch keeps failing and is being retried.
    pub failing: bool,
    pub batches: u64,
    pub records: u64,
    /// Partitions of its topics the group assigned to this member.
    pub partitions: u64,
}

impl From<&LoopHealth> for ConsumerState {
    fn from(h: &LoopHealth) -> Self {
        ConsumerState {
            running: h.is_running(),
            failing: h.is_failing(),
            batches: h.batches(),
            records: h.records(),
            partitions: h.partitions(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "salestrack",
        description = "Event-sourced sales tracking: commands in, read models out."
    ),
    paths(live, ready),
    components(schemas(Readiness, Check, ConsumerState))
)]
struct RunnerApi;

/// The OpenAPI document of everything the runner serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = RunnerApi::openapi();
    doc.merge(salestrack_command::CommandApi::openapi());
    doc.merge(salestrack_query::QueryApi::openapi());
    doc
}

pub fn app(
    settings: &Settings,
    backends: &Backends,
    clock: Arc<dyn Clock>,
    loops: Loops,
) -> Router {
    let command = salestrack_command::router(salestrack_command::CommandState {
        producer: Arc::clone(&backends.producer),
        clock,
        topic: settings.commands_topic.clone(),
        max_body_bytes: settings.max_body_bytes,
    });
    let query = salestrack_query::router(salestrack_query::QueryState {
        read_store: Arc::clone(&backends.read_store),
        consistency_wait: Duration::from_millis(settings.consistency_wait_ms),
    });
    let doc = Arc::new(openapi());
    let prometheus = salestrack_platform::telemetry::prometheus();
    let own = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(HealthState {
            backends: backends.clone(),
            loops,
            max_projection_lag: Duration::from_millis(settings.ready_max_projection_lag_ms),
        })
        .route(
            "/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        );
    // Requests past the limit are refused at once (503, Retry-After)
    // rather than queued: memory stays bounded under overload, and a
    // client learns to back off. One budget for every API route (a layer's
    // own state would be per route); health and metrics are never shed.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        settings.http_max_in_flight.max(1),
    ));
    let api = command
        .merge(query)
        .layer(axum::middleware::from_fn_with_state(in_flight, shed));
    own.merge(api)
        .fallback(|| async { ApiError::NotFound("no such route; see /openapi.json".into()) })
        .layer(axum::middleware::from_fn(http_metrics))
        .layer(TraceLayer::new_for_http())
}

/// Serves the request if a slot of the in-flight budget is free, else
/// answers `503 overloaded` at once.
async fn shed(
    State(in_flight): State<Arc<tokio::sync::Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match in_flight.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => {
            metrics::counter!("salestrack_http_shed_total").increment(1);
            ApiError::Overloaded.into_response()
        }
    }
}

/// Request count and latency by method, route template and status.
async fn http_metrics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::histogram!("salestrack_http_request_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("salestrack_http_requests_total", &labels).increment(1);
    response
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "Alive")))]
async fn live() -> impl IntoResponse {
    Json(serde_json::json!({"status": "live"}))
}

/// Each dependency answers (with its latency or error), both consumer loops
/// run, and the projection is within its lag threshold (`degraded` if not).
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
async fn ready(State(state): State<HealthState>) -> impl IntoResponse {
    let b = &state.backends;
    let (bus, event_store, read_store) = tokio::join!(
        Dependency::Bus.check(b),
        Dependency::EventStore.check(b),
        Dependency::ReadStore.check(b),
    );
    let domain = ConsumerState::from(state.loops.domain.as_ref());
    let projector = ConsumerState::from(state.loops.projector.as_ref());
    let lag = state.loops.projector.record_age();
    let up = bus.ok() && event_store.ok() && read_store.ok() && domain.running && projector.running;
    let status = match (up, lag > state.max_projection_lag) {
        (false, _) => "not_ready",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let body = Readiness {
        status,
        bus,
        event_store,
        read_store,
        projection_lag_ms: u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
        projection_lag_threshold_ms: u64::try_from(state.max_projection_lag.as_millis())
            .unwrap_or(u64::MAX),
        domain_consumer: domain,
        projector_consumer: projector,
    };
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
