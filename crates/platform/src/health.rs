//! Dependency checks for readiness probes: the runner's `/health/ready`
//! and the HTTP Lambda functions' own `/health/live` and `/health/ready`.

use crate::Backends;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use salestrack_core::ports::BackendError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// One dependency's answer to a ping.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    /// Times `ping`; one that hangs counts as unavailable after 2 s.
    pub async fn run(ping: impl Future<Output = Result<(), BackendError>>) -> Check {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(2), ping).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer within 2 s".to_owned()),
        };
        Check {
            status: if error.is_none() { "ok" } else { "unavailable" },
            latency_ms,
            error,
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A backend a function depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Bus,
    EventStore,
    ReadStore,
}

impl Dependency {
    fn name(self) -> &'static str {
        match self {
            Dependency::Bus => "bus",
            Dependency::EventStore => "event_store",
            Dependency::ReadStore => "read_store",
        }
    }

    pub async fn check(self, backends: &Backends) -> Check {
        match self {
            Dependency::Bus => Check::run(backends.ping_bus()).await,
            Dependency::EventStore => {
                Check::run(async { backends.event_store()?.ping().await }).await
            }
            Dependency::ReadStore => {
                Check::run(async { backends.read_store()?.ping().await }).await
            }
        }
    }
}

#[derive(Clone)]
struct Probe {
    backends: Backends,
    dependencies: &'static [Dependency],
}

/// `/health/live` and `/health/ready` (the listed dependencies, each with
/// latency and error) for a function served on its own, as on Lambda.
pub fn router(backends: Backends, dependencies: &'static [Dependency]) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(serde_json::json!({ "status": "live" })) }),
        )
        .route("/health/ready", get(ready))
        .with_state(Probe {
            backends,
            dependencies,
        })
}

async fn ready(State(probe): State<Probe>) -> (StatusCode, Json<serde_json::Value>) {
    let mut checks = BTreeMap::new();
    for dependency in probe.dependencies {
        checks.insert(dependency.name(), dependency.check(&probe.backends).await);
    }
    let up = checks.values().all(Check::ok);
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::json!({ "status": if up { "ready" } else { "not_ready" } });
    for (name, check) in checks {
        body[name] = serde_json::to_value(check).unwrap_or_default();
    }
    (status, Json(body))
}
