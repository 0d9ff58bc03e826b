//! The runner's own routes and the assembled application router.

use crate::consumer::LoopHealth;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use salestrack_core::ports::Clock;
use salestrack_platform::backends::Ports;
use salestrack_platform::health::{Check, Dependency};
use salestrack_platform::http::ApiError;
use salestrack_platform::{Backends, Settings};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

/// The consumer loops this runner hosts (`SALESTRACK_CONSUMERS`); `None`:
/// not here.
#[derive(Clone)]
pub struct Loops {
    pub domain: Option<Arc<LoopHealth>>,
    pub projector: Option<Arc<LoopHealth>>,
    pub payment: Option<Arc<LoopHealth>>,
}

#[derive(Clone)]
struct HealthState {
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
    pub running: bool,
    /// The current batch keeps failing and is being retried.
    pub failing: bool,
    pub batches: u64,
    pub records: u64,
    /// Partitions of its topics the group assigned to this member.
    pub partitions: u64,
    /// Records waiting in those partitions (refreshed every second).
    pub lag_records: u64,
    /// How long it has had work without committing any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled_ms: Option<u64>,
    /// How long the group has given it no partition.
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

impl From<&LoopHealth> for ConsumerState {
    fn from(h: &LoopHealth) -> Self {
        ConsumerState {
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

#[derive(OpenApi)]
#[openapi(
    info(
        title = "salestrack",
        description = "Event-sourced sales tracking: commands in, read models out."
    ),
    paths(live, ready),
    components(schemas(Readiness, Check, ConsumerState, WaitingRecord))
)]
struct RunnerApi;

/// The OpenAPI document of everything the runner serves.
pub fn openapi() -> serde_json::Value {
    let mut doc = RunnerApi::openapi();
    doc.merge(salestrack_command::CommandApi::openapi());
    doc.merge(salestrack_query::QueryApi::openapi());
    rules_beyond_schema(&mut doc);
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    links_from_accepted_orders(&mut doc);
    doc
}

fn operation<'a>(
    doc: &'a mut utoipa::openapi::OpenApi,
    path: &str,
    post: bool,
) -> Option<&'a mut utoipa::openapi::path::Operation> {
    let item = doc.paths.paths.get_mut(path)?;
    match post {
        true => item.post.as_mut(),
        false => item.get.as_mut(),
    }
}

/// The rules between fields or parameters that JSON Schema cannot say,
/// machine-readable (`x-salestrack-rules`) and in the description. The
/// schemathesis run keeps them (`.ci/schemathesis/hooks.py`).
fn rules_beyond_schema(doc: &mut utoipa::openapi::OpenApi) {
    use salestrack_query::params;
    let annotated: [(&str, bool, &[&str]); 3] = [
        ("/orders", true, salestrack_core::command::ORDER_RULES),
        ("/carts/{cart_id}", false, params::cart::RULES),
        ("/reports/sales", false, params::report::RULES),
    ];
    for (path, post, rules) in annotated {
        let Some(op) = operation(doc, path, post) else {
            continue;
        };
        let said = format!("Also refused with `400`: {}.", rules.join("; "));
        op.description = Some(match op.description.take() {
            Some(d) => format!("{d}\n\n{said}"),
            None => said,
        });
        let extension = utoipa::openapi::extensions::ExtensionsBuilder::new()
            .add("x-salestrack-rules", serde_json::json!(rules))
            .build();
        match &mut op.extensions {
            Some(extensions) => extensions.merge(extension),
            None => op.extensions = Some(extension),
        }
    }
}

/// Where an accepted order leads: the reads of its cart and command, with
/// its consistency token (the stateful phase of schemathesis follows them).
/// Written as JSON: utoipa 5.5 names a link's fields in snake case
/// (`operation_id`), where OpenAPI says `operationId`.
fn links_from_accepted_orders(doc: &mut serde_json::Value) {
    let token = "$response.body#/consistency_token";
    let cart = "$response.body#/cart_id";
    let read = |operation: &str, id: &str, value: &str| {
        serde_json::json!({
            "operationId": operation,
            "parameters": { id: value, "consistency_token": token },
        })
    };
    let links = serde_json::json!({
        "GetCart": read("get_cart", "cart_id", cart),
        "GetCartSummary": read("get_cart_summary", "cart_id", cart),
        "GetCartHistory": {
            "operationId": "get_history",
            "parameters": { "cart_id": cart },
        },
        "GetCommand": read("get_command", "command_id", "$response.body#/command_id"),
        "CheckoutCart": {
            "operationId": "checkout_cart",
            "parameters": { "cart_id": cart },
        },
    });
    if let Some(accepted) = doc.pointer_mut("/paths/~1orders/post/responses/202") {
        accepted["links"] = links;
    }
}

pub fn app(
    settings: &Settings,
    backends: &Backends,
    ports: &Ports,
    clock: Arc<dyn Clock>,
    loops: Loops,
    auth: Option<Arc<salestrack_platform::auth::Authenticator>>,
    streams: Arc<salestrack_query::live::Live>,
) -> Router {
    let admin = crate::redrive::router(
        crate::redrive::DeadLetterTopic {
            backends: backends.clone(),
            producer: Arc::clone(&ports.producer),
            topic: settings.dead_letter_topic.clone(),
        },
        auth.clone(),
    );
    let command = salestrack_command::router(salestrack_command::CommandState {
        producer: Arc::clone(&ports.producer),
        clock,
        topic: settings.commands_topic.clone(),
        max_body_bytes: settings.max_body_bytes,
        auth: auth.clone(),
    });
    let query = salestrack_query::router(salestrack_query::QueryState {
        read_store: Arc::clone(&ports.read_store),
        event_store: Arc::clone(&ports.event_store),
        consistency: salestrack_query::ConsistencyWait::from_settings(settings),
        auth,
        live: streams,
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
            max_stall: Duration::from_millis(settings.ready_max_stall_ms),
            max_record_wait: Duration::from_millis(settings.ready_max_record_wait_ms),
        })
        .route(
            "/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .merge(crate::web::router());
    // Requests past the limit are refused at once (503, Retry-After)
    // rather than queued: memory stays bounded under overload, and a
    // client learns to back off. One budget for every API route (a layer's
    // own state would be per route); health and metrics are never shed.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        settings.http_max_in_flight.max(1),
    ));
    let api = command
        .merge(query)
        .merge(admin)
        .layer(axum::middleware::from_fn_with_state(in_flight, shed))
        // Outside the budget: a body is read before its request takes a
        // slot, so a slow body holds a connection, never a slot.
        .layer(axum::middleware::from_fn_with_state(
            crate::serve::HttpLimits::from_settings(settings),
            crate::serve::buffer_body,
        ));
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
async fn ready(State(state): State<HealthState>) -> impl IntoResponse {
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
