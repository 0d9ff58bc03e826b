//! Carts: a cart's detail and summary, and the search.

use crate::params::Given;
use crate::{answer, history, params, path_id, Freshness, QueryState, DEFAULT_LIMIT};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDate};
use salestrack_core::ids::CartId;
use salestrack_core::ports::Reader;
use salestrack_core::read_model::{CartDetail, CartSummary};
use salestrack_core::search::{CartSearch, SearchCursor};
use salestrack_platform::auth::Access;
use salestrack_platform::http::{ApiError, ErrorBody};
use serde::{Deserialize, Serialize};

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
        return Ok(Json(state.opened(&past).await?).into_response());
    }
    let fresh = state.freshness(given.consistency_token()?, &access).await?;
    let detail = state.visible_detail(cart_id, &access).await?;
    Ok(answer(
        &state,
        fresh,
        detail.ok_or_else(|| ApiError::NotFound(format!("no cart {cart_id}"))),
    )
    .await)
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
    let summary = state
        .read_store
        .cart_summary(cart_id, Reader::from(access.owner()))
        .await?;
    Ok(answer(
        &state,
        fresh,
        summary.ok_or_else(|| ApiError::NotFound(format!("no cart {cart_id}"))),
    )
    .await)
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
                &state,
                Freshness::Fresh,
                Ok(CartList {
                    carts: Vec::new(),
                    next_cursor: None,
                }),
            )
            .await);
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
        &state,
        fresh,
        Ok(CartList {
            carts: page.carts,
            next_cursor: page.next.as_ref().map(encode_cursor),
        }),
    )
    .await)
}
