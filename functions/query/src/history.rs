//! Time travel and history: a cart as it was at a stream version or an
//! instant, folded from the event store's read path by the same pure fold
//! the projector uses, and the list of a cart's events. The query function
//! only ever reads the event store.

use crate::params::{self, Given};
use crate::{path_id, QueryState, DEFAULT_LIMIT};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use salestrack_core::event::RecordedEvent;
use salestrack_core::ids::{CartId, CommandId, EventId};
use salestrack_core::read_model::CartDetail;
use salestrack_platform::auth::Access;
use salestrack_platform::http::{ApiError, ErrorBody};
use serde::{Deserialize, Serialize};

/// Where in a cart's past to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After the event at this stream version (1 = the first).
    Version(u64),
    /// After every event recorded at or before this instant.
    Instant(DateTime<Utc>),
}

/// The `as_of_version` / `as_of` parameters: at most one, well formed.
pub fn as_of(given: &Given) -> Result<Option<AsOf>, ApiError> {
    let version = given.integer(&params::cart::AS_OF_VERSION)?;
    let instant = given.datetime(&params::cart::AS_OF)?;
    match (version, instant) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_parameter",
            "give `as_of_version` or `as_of`, not both",
        )),
        (Some(v), None) => Ok(Some(AsOf::Version(v))),
        (None, Some(t)) => Ok(Some(AsOf::Instant(t))),
    }
}

/// A cart detail as it was, with the time it became so.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CartAsOf {
    #[serde(flatten)]
    pub detail: CartDetail,
    /// When the cart became this: the recording time of its event at
    /// `version`, the last one folded.
    pub as_of: DateTime<Utc>,
}

fn no_cart(cart_id: CartId) -> ApiError {
    ApiError::NotFound(format!("no cart {cart_id}"))
}

/// Whether `access` may see the cart whose first event is `first`: its
/// owner's line placed it. Another user's cart reads as no cart.
fn visible(first: &RecordedEvent, access: &Access) -> bool {
    access.owner().is_none_or(|owner| {
        CartDetail::fold(std::slice::from_ref(first)).is_some_and(|d| d.user_id == owner)
    })
}

/// The cart as it was at `as_of`.
pub async fn cart_as_of(
    state: &QueryState,
    access: &Access,
    cart_id: CartId,
    as_of: AsOf,
) -> Result<CartAsOf, ApiError> {
    let events = match as_of {
        AsOf::Version(version) => {
            let events = state.event_store.read_range(cart_id, 1..=version).await?;
            let head = events.last().map_or(0, |e| e.version);
            if !events.first().is_some_and(|first| visible(first, access)) {
                return Err(no_cart(cart_id));
            }
            if head < version {
                return Err(ApiError::NotFound(format!(
                    "cart {cart_id} has {head} events: version {version} is past its head"
                )));
            }
            events
        }
        AsOf::Instant(at) => {
            let stream = state.event_store.read_stream(cart_id).await?;
            let Some(first) = stream.first().filter(|first| visible(first, access)) else {
                return Err(no_cart(cart_id));
            };
            if first.recorded_at > at {
                return Err(ApiError::NotFound(format!(
                    "cart {cart_id} did not exist yet at {at}: its first event was recorded at {}",
                    first.recorded_at
                )));
            }
            stream
                .into_iter()
                .take_while(|e| e.recorded_at <= at)
                .collect()
        }
    };
    let as_of = events.last().map_or_else(Utc::now, |e| e.recorded_at);
    let detail = CartDetail::fold(&events).ok_or_else(|| no_cart(cart_id))?;
    Ok(CartAsOf { detail, as_of })
}

/// One event of a cart's history.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub version: u64,
    /// `order_placed`, `order_cancelled`, `checkout_started`,
    /// `payment_succeeded`, `cart_cancelled` or `refund_requested`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The schema version of its type it was stored in.
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub command_id: CommandId,
    pub event_id: EventId,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CartHistory {
    pub cart_id: CartId,
    /// In stream order.
    pub events: Vec<HistoryEntry>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// A cart's events, oldest first, paged, read from the event store.
#[utoipa::path(
    get, path = "/carts/{cart_id}/history", tag = "queries",
    params(("cart_id" = String, Path, format = Uuid), params::HistoryParams),
    responses(
        (status = 200, body = CartHistory),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody),
        (status = 404, description = "No such cart, or not the caller's", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_history(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Path(cart_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<CartHistory>, ApiError> {
    let cart_id: CartId = path_id(&cart_id, "cart id")?;
    let given = Given::new(params::history::ALL, &query, &headers)?;
    let after = given.integer(&params::history::AFTER)?.unwrap_or(0);
    let limit = given
        .integer(&params::LIMIT)?
        .unwrap_or(u64::from(DEFAULT_LIMIT));
    // One more than a page: whether another page follows.
    let mut events = state
        .event_store
        .read_range(
            cart_id,
            after.saturating_add(1)..=after.saturating_add(limit + 1),
        )
        .await?;
    // The first event names the owner; the first page holds it already.
    let first = match after {
        0 => events.first().cloned(),
        _ => state.event_store.read_range(cart_id, 1..=1).await?.pop(),
    };
    if !first.is_some_and(|first| visible(&first, &access)) {
        return Err(no_cart(cart_id));
    }
    let more = events.len() as u64 > limit;
    events.truncate(limit as usize);
    Ok(Json(CartHistory {
        cart_id,
        next_after: more.then(|| events.last().map(|e| e.version)).flatten(),
        events: events
            .into_iter()
            .map(|e| HistoryEntry {
                version: e.version,
                kind: e.event.kind().as_str().to_owned(),
                schema_version: e.schema_version,
                recorded_at: e.recorded_at,
                command_id: e.command_id,
                event_id: e.event_id,
            })
            .collect(),
    }))
}
