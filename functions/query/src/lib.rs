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
//! versions a client missed. Never appends, never touches the bus.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use params::Given;
use salestrack_core::command::CHECKOUT_CART;
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::ports::{BackendError, EventStore, ReadStore};
use salestrack_core::read_model::{CartDetail, CartStatus, CartSummary};
use salestrack_core::search::{
    CartSearch, ReportDimension, ReportInterval, ReportStatus, SalesBucket, SalesReportQuery,
    SearchCursor,
};
use salestrack_core::token::ConsistencyToken;
use salestrack_core::wire::{Outcome, OutcomeStatus, Reason};
use salestrack_platform::auth::{self, Access, Authenticator};
use salestrack_platform::http::{ApiError, ErrorBody};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub mod history;
pub mod live;
pub mod params;

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
}

/// How reads wait for a consistency token: each at most `wait`, and at
/// most `max_waiting` at once. Beyond, a read that has not reached its token
/// is answered at once, `Consistency: stale`: a client that sends tokens
/// naming commands that never come (a forged token waits the whole `wait`)
/// holds no more than `max_waiting` of the process's request slots.
#[derive(Clone)]
pub struct ConsistencyWait {
    wait: Duration,
    slots: Arc<tokio::sync::Semaphore>,
}

impl ConsistencyWait {
    pub fn new(wait: Duration, max_waiting: usize) -> ConsistencyWait {
        ConsistencyWait {
            wait,
            slots: Arc::new(tokio::sync::Semaphore::new(max_waiting)),
        }
    }

    pub fn from_settings(s: &salestrack_platform::Settings) -> ConsistencyWait {
        ConsistencyWait::new(
            Duration::from_millis(s.consistency_wait_ms),
            s.consistency_max_waiting,
        )
    }
}

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        get_cart,
        get_cart_summary,
        history::get_history,
        live::live_cart,
        search_carts,
        get_command,
        sales_report
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
        .route("/carts", get(search_carts))
        .route("/carts/{cart_id}", get(get_cart))
        .route("/carts/{cart_id}/summary", get(get_cart_summary))
        .route("/carts/{cart_id}/history", get(history::get_history))
        .route("/carts/{cart_id}/live", get(live::live_cart))
        .route("/commands/{command_id}", get(get_command))
        .route("/reports/sales", get(sales_report))
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

/// A read's answer with its [`Freshness`] in the `Consistency` header.
fn answer<T: Serialize>(freshness: Freshness, result: Result<T, ApiError>) -> Response {
    match result {
        Ok(body) => (freshness.header(), Json(body)).into_response(),
        Err(e) => (freshness.header(), e).into_response(),
    }
}

impl QueryState {
    /// Waits until the token's command is decided and, if applied, its cart
    /// projected up to the command's version; `None` when the wait ran out.
    /// Polls with a short, growing delay.
    async fn reach(
        &self,
        token: ConsistencyToken,
        access: &Access,
    ) -> Result<Option<Outcome>, ApiError> {
        let deadline = Instant::now() + self.consistency.wait;
        let mut delay = Duration::from_millis(5);
        // Taken once the first look did not reach the token.
        let mut slot = None;
        loop {
            if let Some(outcome) = self.command_status(token.command_id, access).await? {
                let projected = match outcome.status {
                    OutcomeStatus::Rejected => true,
                    // The command's own cart, as the caller may see it: not
                    // the token's cart id, which a client can pair with any
                    // cart to learn whether it exists and its version.
                    OutcomeStatus::Applied => {
                        let version = self
                            .visible_detail(outcome.cart_id, access)
                            .await?
                            .map_or(0, |d| d.version);
                        version >= outcome.version
                    }
                };
                if projected {
                    return Ok(Some(outcome));
                }
            }
            let now = Instant::now();
            if now < deadline && slot.is_none() {
                slot = Arc::clone(&self.consistency.slots).try_acquire_owned().ok();
                if slot.is_none() {
                    metrics::counter!("salestrack_query_waits_refused_total").increment(1);
                }
            }
            if now >= deadline || slot.is_none() {
                metrics::counter!("salestrack_query_stale_reads_total").increment(1);
                return Ok(None);
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// The cart's detail, if `access` may see it (the store filters).
    async fn visible_detail(
        &self,
        cart_id: CartId,
        access: &Access,
    ) -> Result<Option<CartDetail>, BackendError> {
        match access.owner() {
            None => self.read_store.cart_detail(cart_id).await,
            Some(owner) => self.read_store.owned_cart_detail(cart_id, owner).await,
        }
    }

    /// The command's status, if `access` may see it (the store filters).
    async fn command_status(
        &self,
        command_id: CommandId,
        access: &Access,
    ) -> Result<Option<Outcome>, ApiError> {
        Ok(match access.owner() {
            None => self.read_store.command_status(command_id).await?,
            Some(owner) => {
                self.read_store
                    .owned_command_status(command_id, owner)
                    .await?
            }
        })
    }

    /// Waits for the token, if any. A token is a barrier: any read may wait
    /// for any write, of this cart or another.
    async fn freshness(
        &self,
        token: Option<ConsistencyToken>,
        access: &Access,
    ) -> Result<Freshness, ApiError> {
        match token {
            Some(t) => Ok(match self.reach(t, access).await? {
                Some(_) => Freshness::Fresh,
                None => Freshness::Stale,
            }),
            None => Ok(Freshness::Fresh),
        }
    }
}

/// The full cart: lines, totals, status and stream version.
#[utoipa::path(
    get, path = "/carts/{cart_id}", tag = "queries",
    params(("cart_id" = String, Path, format = Uuid), params::CartParams),
    responses(
        (status = 200, description = "The cart detail; with `as_of_version` or `as_of`, as it was then (`CartAsOf`: the same plus `as_of`)", body = CartDetail),
        (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 404, description = "No such cart, or not the caller's; or a version past the stream's head, or an instant before its first event", body = ErrorBody),
        (status = 503, description = "Backend unavailable", body = ErrorBody),
    )
)]
pub async fn get_cart(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Path(cart_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cart_id: CartId = path_id(&cart_id, "cart id")?;
    let given = Given::new(params::cart::ALL, &query, &headers)?;
    if let Some(as_of) = history::as_of(&given)? {
        let past = history::cart_as_of(&state, &access, cart_id, as_of).await?;
        return Ok(Json(past).into_response());
    }
    let fresh = state.freshness(given.consistency_token()?, &access).await?;
    let detail = state.visible_detail(cart_id, &access).await?;
    Ok(answer(
        fresh,
        detail.ok_or_else(|| ApiError::NotFound(format!("no cart {cart_id}"))),
    ))
}

/// The cart summary: product names as one text, totals, addresses.
#[utoipa::path(
    get, path = "/carts/{cart_id}/summary", tag = "queries",
    params(("cart_id" = String, Path, format = Uuid), params::ConsistencyParams),
    responses((status = 200, body = CartSummary), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 404, description = "No such cart, or not the caller's", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn get_cart_summary(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Path(cart_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cart_id: CartId = path_id(&cart_id, "cart id")?;
    let given = Given::new(params::CONSISTENCY, &query, &headers)?;
    let fresh = state.freshness(given.consistency_token()?, &access).await?;
    let summary = match access.owner() {
        None => state.read_store.cart_summary(cart_id).await?,
        Some(owner) => state.read_store.owned_cart_summary(cart_id, owner).await?,
    };
    Ok(answer(
        fresh,
        summary.ok_or_else(|| ApiError::NotFound(format!("no cart {cart_id}"))),
    ))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CartList {
    pub carts: Vec<CartSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn encode_cursor(cursor: &SearchCursor) -> String {
    let mut bytes = [0u8; params::CURSOR_BYTES];
    bytes[..8].copy_from_slice(&cursor.created_at.timestamp_micros().to_be_bytes());
    bytes[8..].copy_from_slice(cursor.cart_id.0.as_bytes());
    format!("{}{}", params::CURSOR_PREFIX, URL_SAFE_NO_PAD.encode(bytes))
}

/// Every cursor of the documented shape is a position in the search order:
/// one outside the years 0..=9999 (which no cart can have) reads as the
/// nearest end.
fn decode_cursor(text: &str) -> Option<SearchCursor> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.strip_prefix(params::CURSOR_PREFIX)?)
        .ok()?;
    let (micros, cart) = bytes.split_at_checked(8)?;
    let micros = i64::from_be_bytes(micros.try_into().ok()?);
    let first = NaiveDate::from_ymd_opt(0, 1, 1)?
        .and_hms_opt(0, 0, 0)?
        .and_utc();
    let last = NaiveDate::from_ymd_opt(9999, 12, 31)?
        .and_hms_micro_opt(23, 59, 59, 999_999)?
        .and_utc();
    let micros = micros.clamp(first.timestamp_micros(), last.timestamp_micros());
    Some(SearchCursor {
        created_at: DateTime::from_timestamp_micros(micros)?,
        cart_id: CartId(uuid::Uuid::from_slice(cart).ok()?),
    })
}

/// Search carts, newest first, a page at a time.
#[utoipa::path(
    get, path = "/carts", tag = "queries", params(params::SearchParams),
    responses((status = 200, description = "With authentication on, the caller's carts only", body = CartList), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn search_carts(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use params::search;
    let given = Given::new(search::ALL, &query, &headers)?;
    let limit = given
        .integer(&params::LIMIT)?
        .map_or(DEFAULT_LIMIT, |n| n as u32);
    let currency = given.text(&search::CURRENCY)?.map(str::to_owned);
    let asked = given.text(&search::USER_ID)?.map(str::to_owned);
    // An authenticated user searches their own carts: the store's query is
    // filtered by them, and asking for another user's finds nothing.
    let user_id = match (access.owner(), asked) {
        (None, asked) => asked,
        (Some(owner), Some(asked)) if asked != owner => {
            return Ok(answer(
                Freshness::Fresh,
                Ok(CartList {
                    carts: Vec::new(),
                    next_cursor: None,
                }),
            ));
        }
        (Some(owner), _) => Some(owner.to_owned()),
    };
    let search = CartSearch {
        user_id,
        currency,
        from: given.datetime(&search::FROM)?,
        to: given.datetime(&search::TO)?,
        q: given.text(&search::Q)?.map(str::to_owned),
        limit,
        after: match given.text(&search::CURSOR)? {
            None => None,
            Some(text) => Some(decode_cursor(text).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    "`cursor` is not a cursor this API returned",
                )
            })?),
        },
    };
    let fresh = state.freshness(given.consistency_token()?, &access).await?;
    let page = state.read_store.search_carts(&search).await?;
    Ok(answer(
        fresh,
        Ok(CartList {
            carts: page.carts,
            next_cursor: page.next.as_ref().map(encode_cursor),
        }),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Durably on the bus, not decided yet.
    Accepted,
    Applied,
    Rejected,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandStatus {
    pub command_id: CommandId,
    pub cart_id: CartId,
    pub status: CommandState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_type: Option<String>,
    /// The cart's stream version once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// True when the command repeated one already applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// For a checkout: where its cart stands now (`checking_out`, `paid`,
    /// `cancelled`), as far as the read models have it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_status: Option<CartStatus>,
    /// Why the cart was cancelled: `payment_declined` or `payment_timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_status_reason: Option<String>,
}

impl From<Outcome> for CommandStatus {
    fn from(o: Outcome) -> Self {
        CommandStatus {
            command_id: o.command_id,
            cart_id: o.cart_id,
            status: match o.status {
                OutcomeStatus::Applied => CommandState::Applied,
                OutcomeStatus::Rejected => CommandState::Rejected,
            },
            order_id: o.order_id,
            command_type: Some(o.command_type),
            version: Some(o.version),
            duplicate: Some(o.duplicate),
            reason: o.reason,
            decided_at: Some(o.decided_at),
            cart_status: None,
            cart_status_reason: None,
        }
    }
}

impl QueryState {
    /// A decided command's status; a checkout's carries its cart's status.
    async fn decided(&self, outcome: Outcome, access: &Access) -> Result<CommandStatus, ApiError> {
        let checkout = outcome.command_type == CHECKOUT_CART;
        let cart_id = outcome.cart_id;
        let mut status = CommandStatus::from(outcome);
        if checkout {
            let summary = match access.owner() {
                None => self.read_store.cart_summary(cart_id).await?,
                Some(owner) => self.read_store.owned_cart_summary(cart_id, owner).await?,
            };
            if let Some(summary) = summary {
                status.cart_status = Some(summary.status);
                status.cart_status_reason = summary.status_reason;
            }
        }
        Ok(status)
    }
}

/// Where a command stands. Unknown ids are `404`; with the command's
/// consistency token the call waits for the decision and answers `accepted`
/// if it is still pending when the wait ends.
#[utoipa::path(
    get, path = "/commands/{command_id}", tag = "queries",
    params(("command_id" = String, Path, format = Uuid), params::ConsistencyParams),
    responses((status = 200, body = CommandStatus), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 404, description = "Not decided yet, unknown, or not the caller's", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn get_command(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Path(command_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Json<CommandStatus>, ApiError> {
    let command_id: CommandId = path_id(&command_id, "command id")?;
    let given = Given::new(params::CONSISTENCY, &query, &headers)?;
    match given.consistency_token()? {
        // Another command's token is a barrier like on any read: wait for
        // it, then answer about this one.
        Some(t) if t.command_id != command_id => {
            state.reach(t, &access).await?;
            match state.command_status(command_id, &access).await? {
                Some(outcome) => Ok(Json(state.decided(outcome, &access).await?)),
                None => Err(undecided(command_id)),
            }
        }
        Some(t) => match state.reach(t, &access).await? {
            Some(outcome) => Ok(Json(state.decided(outcome, &access).await?)),
            None => Ok(Json(CommandStatus {
                command_id,
                cart_id: t.cart_id,
                status: CommandState::Accepted,
                order_id: None,
                command_type: None,
                version: None,
                duplicate: None,
                reason: None,
                decided_at: None,
                cart_status: None,
                cart_status_reason: None,
            })),
        },
        None => match state.command_status(command_id, &access).await? {
            Some(outcome) => Ok(Json(state.decided(outcome, &access).await?)),
            None => Err(undecided(command_id)),
        },
    }
}

fn undecided(command_id: CommandId) -> ApiError {
    ApiError::NotFound(format!(
        "no decision for command {command_id} yet (unknown, or not processed yet: pass its consistency_token to wait)"
    ))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SalesReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<ReportInterval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<ReportDimension>,
    /// The range covered, `[from, to)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Which carts' lines were counted.
    pub status: ReportStatus,
    /// Units, revenue (subtotal), tax and order lines of active lines per
    /// bucket, ordered by period, key and currency.
    pub buckets: Vec<SalesBucket>,
}

#[utoipa::path(
    get, path = "/reports/sales", tag = "queries", params(params::ReportParams),
    responses((status = 200, body = SalesReport), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 403, description = "Authentication is on and the caller lacks the `admin` role", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn sales_report(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use params::report;
    if !access.is_admin() {
        return Err(ApiError::Forbidden(
            "the sales report needs the `admin` role".into(),
        ));
    }
    let given = Given::new(report::ALL, &query, &headers)?;
    let interval = given.choice::<ReportInterval>(&report::INTERVAL)?;
    let group_by = given.choice::<ReportDimension>(&report::GROUP_BY)?;
    let status = given
        .choice::<ReportStatus>(&report::STATUS)?
        .unwrap_or_default();
    let from = given.bound(&report::FROM, false)?;
    let to = given.bound(&report::TO, true)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "`from` must be before `to`",
            ));
        }
    }
    let fresh = state.freshness(given.consistency_token()?, &access).await?;
    let query = SalesReportQuery {
        interval,
        group_by,
        from,
        to,
        status,
    };
    let buckets = state.read_store.sales_report(&query).await?;
    Ok(answer(
        fresh,
        Ok(SalesReport {
            interval,
            group_by,
            from,
            to,
            status,
            buckets,
        }),
    ))
}
