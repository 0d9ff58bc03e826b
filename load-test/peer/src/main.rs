//! `salestrack-peer ADDR POSTGRES_URL`: the benchmark peer. A cqrs-es cart
//! aggregate stored by postgres-es, with a cart view (a `GenericQuery` on a
//! `PostgresViewRepository`) that cqrs-es updates before `execute` returns:
//! an answered `POST /orders` is stored and already visible. PostgreSQL
//! runs with its defaults (fsync on, synchronous commit).
//!
//! It takes the same order-line JSON as salestrack's `POST /orders` and
//! answers `202`; `GET /reports/sales` counts the lines its views hold, in
//! the shape salestrack-bench reads.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::GenericQuery;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, Query, View};
use postgres_es::{PostgresCqrs, PostgresViewRepository};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The order line a client posts (the fields the rules need; the rest is kept as sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderLine {
    order_id: String,
    cart_id: String,
    user_id: String,
    product_name: String,
    quantity: u32,
    amount: Decimal,
    subtotal: Decimal,
    tax_amount: Decimal,
    currency: String,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CartEvent {
    OrderPlaced(OrderLine),
}

impl DomainEvent for CartEvent {
    fn event_type(&self) -> String {
        "OrderPlaced".into()
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error)]
enum CartError {
    #[error("the cart has another currency")]
    CurrencyMismatch,
    #[error("the cart belongs to another user")]
    UserMismatch,
    #[error("invalid {0}")]
    BadLine(&'static str),
}

/// The rules salestrack's domain applies to a placement: one user and one
/// currency per cart, a repeated line is a no-op, a valid quantity.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cart {
    user_id: Option<String>,
    currency: Option<String>,
    lines: BTreeMap<String, OrderLine>,
}

impl Aggregate for Cart {
    const TYPE: &'static str = "cart";
    type Command = OrderLine;
    type Event = CartEvent;
    type Error = CartError;
    type Services = ();

    async fn handle(
        &mut self,
        line: OrderLine,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CartError> {
        if line.quantity == 0 {
            return Err(CartError::BadLine("quantity"));
        }
        if line.product_name.trim().is_empty() {
            return Err(CartError::BadLine("product_name"));
        }
        if self.lines.contains_key(&line.order_id) {
            return Ok(());
        }
        if self.user_id.as_ref().is_some_and(|u| *u != line.user_id) {
            return Err(CartError::UserMismatch);
        }
        if self.currency.as_ref().is_some_and(|c| *c != line.currency) {
            return Err(CartError::CurrencyMismatch);
        }
        sink.write(CartEvent::OrderPlaced(line), self).await;
        Ok(())
    }

    fn apply(&mut self, event: CartEvent) {
        let CartEvent::OrderPlaced(line) = event;
        self.user_id.get_or_insert_with(|| line.user_id.clone());
        self.currency.get_or_insert_with(|| line.currency.clone());
        self.lines.insert(line.order_id.clone(), line);
    }
}

/// The cart detail a reader sees.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CartView {
    cart_id: String,
    lines: Vec<OrderLine>,
    total: Decimal,
}

impl View<Cart> for CartView {
    fn update(&mut self, event: &EventEnvelope<Cart>) {
        let CartEvent::OrderPlaced(line) = &event.payload;
        self.cart_id.clone_from(&line.cart_id);
        self.total += line.subtotal;
        self.lines.push(line.clone());
    }
}

struct App {
    cqrs: PostgresCqrs<Cart>,
    pool: sqlx::PgPool,
}

async fn place(
    State(app): State<Arc<App>>,
    Json(line): Json<OrderLine>,
) -> (StatusCode, Json<serde_json::Value>) {
    let cart_id = line.cart_id.clone();
    match app.cqrs.execute(&cart_id, line).await {
        // The bench's scenario reads a token from every 202, as
        // salestrack's clients do; here the view is already up to date.
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"cart_id": cart_id, "consistency_token": cart_id})),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": e.to_string()})),
        ),
    }
}

/// `{"buckets": [{"orders": n}]}`: the lines every cart view holds.
async fn report(State(app): State<Arc<App>>) -> (StatusCode, Json<serde_json::Value>) {
    let counted: Result<(Option<i64>,), _> =
        sqlx::query_as("SELECT SUM(json_array_length(payload->'lines'))::bigint FROM cart_view")
            .fetch_one(&app.pool)
            .await;
    match counted {
        Ok((n,)) => (
            StatusCode::OK,
            Json(serde_json::json!({"buckets": [{"orders": n.unwrap_or(0)}]})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": e.to_string()})),
        ),
    }
}

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
     sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, event_version text NOT NULL, \
     payload json NOT NULL, metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE IF NOT EXISTS cart_view (view_id text NOT NULL, version bigint CHECK (version >= 0) NOT NULL, \
     payload json NOT NULL, PRIMARY KEY (view_id))",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(url)) = (args.get(1), args.get(2)) else {
        return Err("usage: salestrack-peer ADDR POSTGRES_URL".into());
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .connect(url)
        .await?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&pool).await?;
    }
    let view = Arc::new(PostgresViewRepository::<CartView, Cart>::new(
        "cart_view",
        pool.clone(),
    ));
    let query: Box<dyn Query<Cart>> = Box::new(GenericQuery::new(view));
    let cqrs = postgres_es::postgres_cqrs(pool.clone(), vec![query], ());
    let app = Router::new()
        .route("/orders", post(place))
        .route("/reports/sales", get(report))
        .route("/health/ready", get(|| async { "ready" }))
        .with_state(Arc::new(App { cqrs, pool }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
