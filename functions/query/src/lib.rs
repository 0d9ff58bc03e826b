//! The query function: read-only HTTP over the read models.
//!
//! - `GET /carts/{cart_id}`, `GET /carts/{cart_id}/summary`
//! - `GET /carts?user_id=&currency=&from=&to=&q=&limit=&cursor=` (newest first; `q` matches product names)
//! - `GET /commands/{command_id}`: accepted / applied / rejected with the reason
//! - `GET /reports/sales?interval=&group_by=&from=&to=`
//! - `GET /carts/{cart_id}?as_of_version=` / `as_of=`, `GET /carts/{cart_id}/history`
//! - `GET /carts/{cart_id}/live` (Server-Sent Events, [`live`])
//!
//! Any read may carry the consistency token of a `202` (`consistency_token`
//! parameter or `Consistency-Token` header): the read then waits, bounded,
//! until the projection has caught up with that command. If the wait runs
//! out it answers with what the read models hold and says so in the
//! `Consistency: stale` header (`fresh` otherwise).
//!
//! Reads the `ReadStore` port, and the `EventStore` port read only: time
//! travel and history fold the event stream, and a live resume folds the
//! versions a client missed. Never appends, never touches the bus. Personal
//! fields are stored sealed everywhere; every answer opens them with the
//! `KeyStore` port, and one whose user was erased reads `[erased]`.

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use salestrack_core::ports::{key_store, BackendError, EventStore, KeyStore, ReadStore};
use salestrack_core::read_model::{CartDetail, CartSummary};
use salestrack_core::search::{ReportDimension, ReportInterval, SalesBucket};
use salestrack_core::wire::Reason;
use salestrack_platform::auth::{self, Authenticator};
use salestrack_platform::http::{ApiError, ErrorBody};
use serde::Serialize;
use std::sync::Arc;

pub mod carts;
pub mod commands;
pub mod consistency;
pub mod history;
pub mod live;
pub mod params;
pub mod reports;

pub use carts::CartList;
pub use commands::{CommandState, CommandStatus};
pub use consistency::ConsistencyWait;
pub use reports::SalesReport;

#[derive(Clone)]
pub struct QueryState {
    pub read_store: Arc<dyn ReadStore>,
    /// Read only, for time travel and history: the query function never
    /// appends.
    pub event_store: Arc<dyn EventStore>,
    /// How reads wait for a consistency token.
    pub consistency: ConsistencyWait,
    /// Bearer-token authentication; `None`: open to anyone who can reach it.
    pub auth: Option<Arc<Authenticator>>,
    /// The process's live streams.
    pub live: Arc<live::Live>,
    /// Opens the sealed personal fields of what is answered; a field whose
    /// key was destroyed reads as erased.
    pub keys: Arc<dyn KeyStore>,
}

impl QueryState {
    /// The one way a process builds the query function's state: the read
    /// store and the event store (read only) from `backends`, the
    /// consistency wait from `settings`, and the process's authenticator
    /// and live streams.
    pub fn from_settings(
        settings: &salestrack_platform::Settings,
        backends: &salestrack_platform::Backends,
        auth: Option<Arc<Authenticator>>,
        live: Arc<live::Live>,
    ) -> Result<QueryState, salestrack_core::ports::BackendError> {
        Ok(QueryState {
            read_store: backends.read_store()?,
            event_store: backends.event_store()?,
            consistency: ConsistencyWait::from_settings(settings),
            auth,
            live,
            keys: backends.key_store()?,
        })
    }
}

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        carts::get_cart,
        carts::get_cart_summary,
        history::get_history,
        live::live_cart,
        carts::search_carts,
        commands::get_command,
        reports::sales_report
    ),
    components(schemas(
        CartDetail,
        history::CartAsOf,
        history::CartHistory,
        history::HistoryEntry,
        CartSummary,
        CartList,
        CommandStatus,
        CommandState,
        SalesReport,
        SalesBucket,
        ReportDimension,
        ReportInterval,
        Reason,
        ErrorBody
    ))
)]
pub struct QueryApi;

pub fn router(state: QueryState) -> Router {
    let auth = state.auth.clone();
    Router::new()
        .route("/carts", get(carts::search_carts))
        .route("/carts/{cart_id}", get(carts::get_cart))
        .route("/carts/{cart_id}/summary", get(carts::get_cart_summary))
        .route("/carts/{cart_id}/history", get(history::get_history))
        .route("/carts/{cart_id}/live", get(live::live_cart))
        .route("/commands/{command_id}", get(commands::get_command))
        .route("/reports/sales", get(reports::sales_report))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(auth, auth::require))
}

fn path_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_path",
            format!("the {what} in the path must be a UUID"),
        )
    })
}

/// Whether an answer reflects the write a consistency token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No token, or the projection reached it.
    Fresh,
    /// The wait ran out first: the answer may predate the write.
    Stale,
}

impl Freshness {
    fn header(self) -> [(&'static str, &'static str); 1] {
        match self {
            Freshness::Fresh => [(CONSISTENCY_HEADER, "fresh")],
            Freshness::Stale => [(CONSISTENCY_HEADER, "stale")],
        }
    }
}

/// Response header saying whether a read reached its consistency token.
pub const CONSISTENCY_HEADER: &str = "consistency";

impl QueryState {
    /// `body` as JSON, its sealed personal fields opened (or erased).
    async fn opened<T: Serialize>(&self, body: &T) -> Result<serde_json::Value, ApiError> {
        // Serializing the answer's own types does not fail.
        let mut value = serde_json::to_value(body)
            .map_err(|e| BackendError::new("answer", format!("serializing: {e}")))?;
        key_store::open_sealed(&mut value, self.keys.as_ref()).await?;
        Ok(value)
    }
}

/// A read's answer, opened, with its [`Freshness`] in the `Consistency`
/// header.
async fn answer<T: Serialize>(
    state: &QueryState,
    freshness: Freshness,
    result: Result<T, ApiError>,
) -> Response {
    let opened = match result {
        Ok(body) => state.opened(&body).await,
        Err(e) => Err(e),
    };
    match opened {
        Ok(body) => (freshness.header(), Json(body)).into_response(),
        Err(e) => (freshness.header(), e).into_response(),
    }
}
