//! The assembled application: every router the runner serves, its
//! OpenAPI document, the in-flight budget and the HTTP metrics.

use crate::health::{self, ConsumerState, Loops, Readiness, WaitingRecord};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use salestrack_platform::backends::Ports;
use salestrack_platform::health::Check;
use salestrack_platform::http::ApiError;
use salestrack_platform::{Backends, Settings};
use std::sync::Arc;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "salestrack",
        description = "Event-sourced sales tracking: commands in, read models out."
    ),
    paths(health::live, health::ready),
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

/// The whole HTTP application: the command and query functions' routers,
/// the admin routes, health, metrics, the OpenAPI document and the sales
/// page, behind the in-flight budget and the body limits.
pub fn app(
    settings: &Settings,
    backends: &Backends,
    ports: &Ports,
    loops: Loops,
    auth: Option<Arc<salestrack_platform::auth::Authenticator>>,
    streams: Arc<salestrack_query::live::Live>,
) -> std::io::Result<Router> {
    let admin = crate::redrive::router(
        crate::redrive::DeadLetterTopic {
            backends: backends.clone(),
            producer: Arc::clone(&ports.producer),
            topic: settings.topics.dead_letter.clone(),
        },
        auth.clone(),
    );
    let command = salestrack_command::router(
        salestrack_command::CommandState::from_settings(settings, backends, auth.clone())
            .map_err(std::io::Error::other)?,
    );
    let query = salestrack_query::router(
        salestrack_query::QueryState::from_settings(settings, backends, auth, streams)
            .map_err(std::io::Error::other)?,
    );
    let doc = Arc::new(openapi());
    let prometheus = salestrack_platform::telemetry::prometheus();
    let own = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
        .merge(health::router(settings, backends, loops))
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
        settings.http.max_in_flight.max(1),
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
    Ok(own
        .merge(api)
        .fallback(|| async { ApiError::NotFound("no such route; see /openapi.json".into()) })
        .layer(axum::middleware::from_fn(http_metrics))
        .layer(TraceLayer::new_for_http()))
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
