//! Searches of the cart summaries: `GET /carts` and the saga's due checkouts.

//! [`EsReadStore`]: the `ReadStore` port on Elasticsearch / OpenSearch.

use crate::indices::Model;
use crate::store::EsReadStore;
use crate::NAME;
use chrono::{DateTime, SecondsFormat, Utc};
use salestrack_core::ids::CartId;
use salestrack_core::ports::{BackendError, DueCheckout};
use salestrack_core::read_model::CartSummary;
use salestrack_core::search::{CartPage, CartSearch};
use serde_json::{json, Value};

/// `[from, to)` on `created_at`, either end open when `None`.
pub(crate) fn created_at_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Value {
    let mut range = serde_json::Map::new();
    if let Some(from) = from {
        range.insert("gte".into(), json!(from.timestamp_millis()));
    }
    if let Some(to) = to {
        range.insert("lt".into(), json!(to.timestamp_millis()));
    }
    range.insert("format".into(), json!("epoch_millis"));
    json!({ "range": { "created_at": range } })
}

/// `search_after` values of a summary in the `(created_at desc, cart_id desc)` order.
fn sort_values(created_at: DateTime<Utc>, cart_id: CartId) -> Value {
    json!([created_at.timestamp_millis(), cart_id.to_string()])
}

/// `GET /carts`: the newest carts first, `(created_at, cart_id)` as the cursor.
pub(crate) async fn search_carts(
    store: &EsReadStore,
    search: &CartSearch,
) -> Result<CartPage, BackendError> {
    let mut filter = Vec::new();
    let mut must = Vec::new();
    if let Some(user) = &search.user_id {
        filter.push(json!({ "term": { "user_id": user } }));
    }
    if let Some(currency) = &search.currency {
        filter.push(json!({ "term": { "currency": currency } }));
    }
    if search.from.is_some() || search.to.is_some() {
        filter.push(created_at_range(search.from, search.to));
    }
    if let Some(q) = search.q.as_deref().filter(|q| !q.trim().is_empty()) {
        must.push(json!({ "match": { "products": { "query": q, "operator": "and" } } }));
    }
    let limit = search.limit.clamp(1, 1000);
    let mut body = json!({
        "size": limit + 1,
        "query": { "bool": { "filter": filter, "must": must } },
        "sort": [ { "created_at": "desc" }, { "cart_id": "desc" } ],
        "track_total_hits": false,
    });
    if let Some(after) = &search.after {
        body["search_after"] = sort_values(after.created_at, after.cart_id);
    }
    let answer = store
        .search(&store.layout().alias(Model::CartSummary), &body)
        .await?;
    let carts = answer["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hit| {
            serde_json::from_value::<CartSummary>(hit["_source"].clone())
                .map_err(|e| BackendError::new(NAME, format!("corrupt cart summary: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CartPage::from_overfetch(carts, limit))
}

/// Checkouts past their deadline, the oldest deadline first.
pub(crate) async fn due_checkouts(
    store: &EsReadStore,
    now: DateTime<Utc>,
    after: Option<&DueCheckout>,
    limit: u32,
) -> Result<Vec<DueCheckout>, BackendError> {
    let mut body = json!({
        "size": limit.clamp(1, 10_000),
        "track_total_hits": false,
        "_source": ["cart_id", "checkout_version", "checkout_expires_at"],
        "query": { "bool": { "filter": [
            { "term": { "status": "checking_out" } },
            { "range": { "checkout_expires_at": { "lte": now.to_rfc3339_opts(SecondsFormat::Micros, true) } } },
        ]}},
        "sort": [ { "checkout_expires_at": "asc" }, { "cart_id": "asc" } ],
    });
    if let Some(after) = after {
        // A `date` field sorts by its epoch milliseconds.
        body["search_after"] = json!([
            after.expires_at.timestamp_millis(),
            after.cart_id.to_string()
        ]);
    }
    let answer = store
        .search(&store.layout().alias(Model::CartSummary), &body)
        .await?;
    answer["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hit| {
            let source = &hit["_source"];
            let corrupt = || BackendError::new(NAME, format!("corrupt due checkout: {source}"));
            Ok(DueCheckout {
                cart_id: source["cart_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(corrupt)?,
                checkout: source["checkout_version"].as_u64().ok_or_else(corrupt)?,
                expires_at: source["checkout_expires_at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .ok_or_else(corrupt)?
                    .with_timezone(&Utc),
            })
        })
        .collect()
}
