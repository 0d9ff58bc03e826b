//! The query function: read-only HTTP over the read models.
//!
//! - `GET /carts/{cart_id}`, `GET /carts/{cart_id}/summary`
//! - `GET /carts?user_id=&currency=&from=&to=&q=&limit=&cursor=` (newest first; `q` matches product names)
//! - `GET /commands/{command_id}`: accepted / applied / rejected with the reason
//! - `GET /reports/sales?interval=&group_by=&from=&to=`
//!
//! Any read may carry the consistency token of a `202` (`consistency_token`
//! parameter or `Consistency-Token` header): the read then waits, bounded,
//! until the projection has caught up with that command. If the wait runs
//! out it answers with what the read models hold and says so in the
//! `Consistency: stale` header (`fresh` otherwise).
//!
//! Depends on the `ReadStore` port only; never touches the event store or the bus.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use salestrack_core::command::CHECKOUT_CART;
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::money::Currency;
use salestrack_core::ports::{
    BackendError, CartSearch, EventStore, ReadStore, ReportDimension, ReportInterval, ReportStatus,
    SalesBucket, SalesReportQuery, SearchCursor,
};
use salestrack_core::read_model::{CartDetail, CartStatus, CartSummary};
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

#[derive(Clone)]
pub struct QueryState {
    pub read_store: Arc<dyn ReadStore>,
    /// Read only, for time travel and history: the query function never
    /// appends.
    pub event_store: Arc<dyn EventStore>,
    /// Upper bound on a read-your-writes wait.
    pub consistency_wait: Duration,
    /// Bearer-token authentication; `None`: open to anyone who can reach it.
    pub auth: Option<Arc<Authenticator>>,
    /// The process's live streams.
    pub live: Arc<live::Live>,
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

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct ConsistencyParams {
    /// The `consistency_token` of a `202`: wait until the projection reached it.
    pub consistency_token: Option<String>,
}

fn token(
    params: &ConsistencyParams,
    headers: &HeaderMap,
) -> Result<Option<ConsistencyToken>, ApiError> {
    let from_header = headers
        .get("consistency-token")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    match params.consistency_token.clone().or(from_header) {
        None => Ok(None),
        Some(text) => ConsistencyToken::decode(&text).map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_consistency_token",
                "the consistency token is malformed",
            )
        }),
    }
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
        let deadline = Instant::now() + self.consistency_wait;
        let mut delay = Duration::from_millis(5);
        loop {
            if let Some(outcome) = self.command_status(token.command_id, access).await? {
                let projected = match outcome.status {
                    OutcomeStatus::Rejected => true,
                    OutcomeStatus::Applied => {
                        let version = self
                            .read_store
                            .cart_detail(token.cart_id)
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
            if now >= deadline {
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

    /// Waits for the token, if any; its cart must be `cart_id` when given.
    async fn freshness(
        &self,
        token: Option<ConsistencyToken>,
        cart_id: Option<CartId>,
        access: &Access,
    ) -> Result<Freshness, ApiError> {
        match token {
            Some(t) if cart_id.is_some_and(|c| c != t.cart_id) => Err(ApiError::bad_request(
                "consistency_token_mismatch",
                "the consistency token belongs to another cart",
            )),
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
    params(("cart_id" = String, Path, format = Uuid), CartParams),
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
    Query(params): Query<CartParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cart_id: CartId = path_id(&cart_id, "cart id")?;
    if let Some(as_of) = history::as_of(params.as_of_version.as_deref(), params.as_of.as_deref())? {
        let past = history::cart_as_of(&state, &access, cart_id, as_of).await?;
        return Ok(Json(past).into_response());
    }
    let consistency = ConsistencyParams {
        consistency_token: params.consistency_token,
    };
    let fresh = state
        .freshness(token(&consistency, &headers)?, Some(cart_id), &access)
        .await?;
    let detail = state.visible_detail(cart_id, &access).await?;
    Ok(answer(
        fresh,
        detail.ok_or_else(|| ApiError::NotFound(format!("no cart {cart_id}"))),
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct CartParams {
    /// The `consistency_token` of a `202`: wait until the projection reached it.
    pub consistency_token: Option<String>,
    /// The cart as it was after its event at this stream version, folded
    /// from the event store (with `as_of`: when it became so).
    pub as_of_version: Option<String>,
    /// The cart as it was at this RFC 3339 instant, folded from the event
    /// store.
    pub as_of: Option<String>,
}

/// The cart summary: product names as one text, totals, addresses.
#[utoipa::path(
    get, path = "/carts/{cart_id}/summary", tag = "queries",
    params(("cart_id" = String, Path, format = Uuid), ConsistencyParams),
    responses((status = 200, body = CartSummary), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 404, description = "No such cart, or not the caller's", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn get_cart_summary(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Path(cart_id): Path<String>,
    Query(params): Query<ConsistencyParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cart_id: CartId = path_id(&cart_id, "cart id")?;
    let fresh = state
        .freshness(token(&params, &headers)?, Some(cart_id), &access)
        .await?;
    let summary = match access.owner() {
        None => state.read_store.cart_summary(cart_id).await?,
        Some(owner) => state.read_store.owned_cart_summary(cart_id, owner).await?,
    };
    Ok(answer(
        fresh,
        summary.ok_or_else(|| ApiError::NotFound(format!("no cart {cart_id}"))),
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct SearchParams {
    /// Only this user's carts.
    pub user_id: Option<String>,
    /// Only carts in this ISO 4217 currency.
    pub currency: Option<String>,
    /// Carts created at or after this RFC 3339 time.
    pub from: Option<String>,
    /// Carts created before this RFC 3339 time.
    pub to: Option<String>,
    /// Words that must all occur in the product names (case-insensitive).
    pub q: Option<String>,
    /// 1..=100, default 20.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// The `consistency_token` of a `202`: wait until the projection reached it.
    pub consistency_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CartList {
    pub carts: Vec<CartSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A page size: 1..=[`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn limit(text: Option<&str>) -> Result<u32, ApiError> {
    match text {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("`limit` must be an integer in 1..={MAX_LIMIT}"),
                )
            }),
    }
}

fn datetime(name: &'static str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("`{name}` must be an RFC 3339 date-time"),
                )
            })
    })
    .transpose()
}

fn date(name: &'static str, text: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    text.map(|t| {
        NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("`{name}` must be a date (YYYY-MM-DD)"),
            )
        })
    })
    .transpose()
}

fn encode_cursor(cursor: &SearchCursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode_cursor(text: &str) -> Result<SearchCursor, ApiError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                "`cursor` is not a cursor this API returned",
            )
        })
}

/// Search carts, newest first, a page at a time.
#[utoipa::path(
    get, path = "/carts", tag = "queries", params(SearchParams),
    responses((status = 200, description = "With authentication on, the caller's carts only", body = CartList), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn search_carts(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Query(p): Query<SearchParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = limit(p.limit.as_deref())?;
    let currency = p
        .currency
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.to_uppercase()
                .parse::<Currency>()
                .map(|c| c.as_str().to_owned())
                .map_err(|e| ApiError::bad_request("invalid_parameter", format!("`currency`: {e}")))
        })
        .transpose()?;
    let consistency = ConsistencyParams {
        consistency_token: p.consistency_token,
    };
    let asked = p.user_id.filter(|u| !u.is_empty());
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
        from: datetime("from", p.from.as_deref())?,
        to: datetime("to", p.to.as_deref())?,
        q: p.q.filter(|q| !q.trim().is_empty()),
        limit,
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
    };
    let fresh = state
        .freshness(token(&consistency, &headers)?, None, &access)
        .await?;
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
    params(("command_id" = String, Path, format = Uuid), ConsistencyParams),
    responses((status = 200, body = CommandStatus), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 404, description = "Not decided yet, unknown, or not the caller's", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn get_command(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Path(command_id): Path<String>,
    Query(params): Query<ConsistencyParams>,
    headers: HeaderMap,
) -> Result<Json<CommandStatus>, ApiError> {
    let command_id: CommandId = path_id(&command_id, "command id")?;
    match token(&params, &headers)? {
        Some(t) if t.command_id != command_id => Err(ApiError::bad_request(
            "consistency_token_mismatch",
            "the consistency token belongs to another command",
        )),
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
            None => Err(ApiError::NotFound(format!(
                "no decision for command {command_id} yet (unknown, or not processed yet: pass its consistency_token to wait)"
            ))),
        },
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct ReportParams {
    /// Time buckets: `hour`, `day` or `month` (UTC). None: one bucket for the range.
    pub interval: Option<String>,
    /// `product`, `seller`, `currency` or `payment_method`. Buckets are always per currency too.
    pub group_by: Option<String>,
    /// Start, inclusive: a date (`YYYY-MM-DD`, its midnight UTC) or an RFC 3339 time.
    pub from: Option<String>,
    /// End: a date is inclusive (the whole day), an RFC 3339 time exclusive.
    pub to: Option<String>,
    /// Which carts count, by status: `all` (default: every active line),
    /// `open` (open and checking out), `paid` (confirmed sales only) or
    /// `cancelled` (compensated checkouts).
    pub status: Option<String>,
    /// The `consistency_token` of a `202`: wait until the projection reached it.
    pub consistency_token: Option<String>,
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

fn choice<T: Copy>(
    name: &'static str,
    text: Option<&str>,
    options: &[(&str, T)],
) -> Result<Option<T>, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    options
        .iter()
        .find(|(n, _)| *n == text)
        .map(|(_, v)| Some(*v))
        .ok_or_else(|| {
            let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
            ApiError::bad_request(
                "invalid_parameter",
                format!("`{name}` must be one of {}, got {text:?}", names.join(", ")),
            )
        })
}

/// A report bound: a date means its midnight (UTC), or the next one for an
/// inclusive end; an RFC 3339 time is taken as is.
fn bound(
    name: &'static str,
    text: Option<&str>,
    inclusive_end: bool,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Ok(Some(day)) = date(name, Some(text)) {
        let day = if inclusive_end {
            day.succ_opt()
        } else {
            Some(day)
        };
        return Ok(day
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()));
    }
    datetime(name, Some(text)).map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("`{name}` must be a date (YYYY-MM-DD) or an RFC 3339 date-time"),
        )
    })
}

/// Units, revenue, tax and order count of the active sales lines, by time
/// bucket and dimension, per currency.
#[utoipa::path(
    get, path = "/reports/sales", tag = "queries", params(ReportParams),
    responses((status = 200, body = SalesReport), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 403, description = "Authentication is on and the caller lacks the `admin` role", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn sales_report(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Query(p): Query<ReportParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !access.is_admin() {
        return Err(ApiError::Forbidden(
            "the sales report needs the `admin` role".into(),
        ));
    }
    let interval = choice(
        "interval",
        p.interval.as_deref(),
        &[
            ("hour", ReportInterval::Hour),
            ("day", ReportInterval::Day),
            ("month", ReportInterval::Month),
        ],
    )?;
    let group_by = choice(
        "group_by",
        p.group_by.as_deref(),
        &[
            ("product", ReportDimension::Product),
            ("seller", ReportDimension::Seller),
            ("currency", ReportDimension::Currency),
            ("payment_method", ReportDimension::PaymentMethod),
        ],
    )?;
    let status = choice(
        "status",
        p.status.as_deref(),
        &[
            ("all", ReportStatus::All),
            ("open", ReportStatus::Open),
            ("paid", ReportStatus::Paid),
            ("cancelled", ReportStatus::Cancelled),
        ],
    )?
    .unwrap_or_default();
    let from = bound("from", p.from.as_deref(), false)?;
    let to = bound("to", p.to.as_deref(), true)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "`from` must be before `to`",
            ));
        }
    }
    let consistency = ConsistencyParams {
        consistency_token: p.consistency_token,
    };
    let fresh = state
        .freshness(token(&consistency, &headers)?, None, &access)
        .await?;
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
