//! [`EsReadStore`]: the `ReadStore` port on Elasticsearch / OpenSearch.

use crate::config::EsConfig;
use crate::documents::{limb_field, Stored, LIMBED, LIMBS, LIMB_BITS};
use crate::indices::{Layout, Model, ALL_MODELS};
use crate::NAME;
use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, SecondsFormat, Utc};
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, StatusCode, Url};
use elasticsearch::Elasticsearch;
use rust_decimal::Decimal;
use salestrack_core::ids::{CartId, CommandId};
use salestrack_core::money::{display_sum, MAX_SCALE};
use salestrack_core::ports::{BackendError, DueCheckout, ReadDocument, ReadStore, Upsert};
use salestrack_core::read_model::{CartDetail, CartSummary};
use salestrack_core::search::{
    CartPage, CartSearch, ReportDimension, SalesBucket, SalesReportQuery,
};
use salestrack_core::wire::Outcome;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::time::Duration;

/// Most buckets one report level may have; a report that would need more
/// fails with a clear error instead of silently dropping buckets.
const MAX_TERMS: u32 = 10_000;
/// Sums of integers in doubles are exact below this.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The read store on an Elasticsearch-API cluster. Cheap to clone.
#[derive(Clone)]
pub struct EsReadStore {
    client: Elasticsearch,
    layout: Layout,
    config: EsConfig,
}

/// An answer: status and JSON body (`Null` when empty or not JSON).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub(crate) fn ok(self, what: &str) -> Result<Value, BackendError> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(failure(self.status, what, &self.body))
        }
    }
}

/// A failed call as a [`BackendError`]: a 4xx other than 408/429 means the
/// request itself is wrong, which no retry fixes.
fn failure(status: StatusCode, what: &str, body: &Value) -> BackendError {
    let reason = error_reason(body);
    let message = format!("{what}: HTTP {status}: {reason}");
    if status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
    {
        BackendError::refused(NAME, message)
    } else {
        BackendError::new(NAME, message)
    }
}

fn error_reason(body: &Value) -> String {
    let error = &body["error"];
    match (error["type"].as_str(), error["reason"].as_str()) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        _ if error.is_string() => error.as_str().unwrap_or_default().to_owned(),
        _ => body.to_string().chars().take(300).collect(),
    }
}

fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

impl EsReadStore {
    /// Builds the client (no request yet). See [`EsReadStore::connect`].
    pub fn new(config: EsConfig) -> Result<EsReadStore, BackendError> {
        let url = Url::parse(&config.url)
            .map_err(|e| BackendError::new(NAME, format!("invalid URL {:?}: {e}", config.url)))?;
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(config.timeout)
            .disable_proxy();
        if let Some(key) = &config.api_key {
            transport = transport.auth(Credentials::EncodedApiKey(key.clone()));
        } else if let Some(user) = &config.username {
            transport = transport.auth(Credentials::Basic(
                user.clone(),
                config.password.clone().unwrap_or_default(),
            ));
        }
        if let Some(path) = &config.ca_location {
            let pem = std::fs::read(path)
                .map_err(|e| BackendError::new(NAME, format!("CA bundle {path}: {e}")))?;
            let ca = Certificate::from_pem(&pem)
                .map_err(|e| BackendError::new(NAME, format!("CA bundle {path}: {e}")))?;
            transport = transport.cert_validation(CertificateValidation::Full(ca));
        }
        let transport = transport
            .build()
            .map_err(|e| BackendError::new(NAME, format!("client: {e}")))?;
        Ok(EsReadStore {
            client: Elasticsearch::new(transport),
            layout: Layout {
                prefix: config.index_prefix.clone(),
            },
            config,
        })
    }

    /// Builds the client and makes sure the templates, indices and aliases
    /// exist (idempotent; safe when several processes start at once).
    pub async fn connect(config: EsConfig) -> Result<EsReadStore, BackendError> {
        let store = EsReadStore::new(config)?;
        store.ensure_indices().await?;
        Ok(store)
    }

    pub fn config(&self) -> &EsConfig {
        &self.config
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// One request. Transport errors become retryable backend errors.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
        content_type: &'static str,
    ) -> Result<Reply, BackendError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let response = self
            .client
            .send(method, path, headers, Some(query), body, None)
            .await
            .map_err(|e| BackendError::context(NAME, format!("{method:?} {path}"), e))?;
        let status = response.status_code();
        let text = response
            .text()
            .await
            .map_err(|e| BackendError::context(NAME, format!("{method:?} {path}"), e))?;
        Ok(Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, BackendError> {
        self.call(
            method,
            path,
            query,
            body.map(Value::to_string),
            "application/json",
        )
        .await
    }

    /// Puts every template and creates each model's first index with its
    /// alias unless the alias already points somewhere.
    pub async fn ensure_indices(&self) -> Result<(), BackendError> {
        for model in ALL_MODELS {
            let template = self
                .layout
                .template(
                    model,
                    self.config.shards,
                    self.config.replicas,
                    self.config.refresh_interval.as_deref(),
                )
                .map_err(|e| {
                    BackendError::refused(NAME, format!("template {}: {e}", model.name()))
                })?;
            self.json(
                Method::Put,
                &format!("/_index_template/{}", self.layout.alias(model)),
                &[],
                Some(&template),
            )
            .await?
            .ok("putting an index template")?;
            if self.alias_target(model).await?.is_none() {
                self.create_index(
                    &self.layout.index(model, 1),
                    Some(&self.layout.alias(model)),
                )
                .await?;
            } else {
                // An index made by an older release lacks the fields added
                // since (mappings are strict): add them. Adding is all a
                // mapping update may do; a changed field still needs a
                // rebuild, and the cluster says so here.
                self.json(
                    Method::Put,
                    &format!("/{}/_mapping", self.layout.alias(model)),
                    &[],
                    Some(&template["template"]["mappings"]),
                )
                .await?
                .ok("adding the template's new fields to the live index")?;
            }
        }
        Ok(())
    }

    /// Creates `index` (its template applies), with `alias` if given. An index
    /// that already exists is fine: another process was first.
    pub(crate) async fn create_index(
        &self,
        index: &str,
        alias: Option<&str>,
    ) -> Result<(), BackendError> {
        let body = match alias {
            Some(alias) => json!({ "aliases": { alias: {} } }),
            None => json!({}),
        };
        let reply = self
            .json(Method::Put, &format!("/{index}"), &[], Some(&body))
            .await?;
        let exists = reply.body["error"]["type"] == "resource_already_exists_exception";
        if reply.status.is_success() || exists {
            Ok(())
        } else {
            Err(failure(reply.status, "creating an index", &reply.body))
        }
    }

    /// The index `model`'s alias points to, if any.
    pub async fn alias_target(&self, model: Model) -> Result<Option<String>, BackendError> {
        let reply = self
            .json(
                Method::Get,
                &format!("/_alias/{}", self.layout.alias(model)),
                &[],
                None,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = reply.ok("reading an alias")?;
        Ok(body
            .as_object()
            .and_then(|indices| indices.keys().next().cloned()))
    }

    /// Writes `docs` with one `_bulk` per attempt into the model's alias or,
    /// when `generation` is given, into that generation's index. Items that
    /// failed transiently are retried with backoff; a version conflict is
    /// `Stale`; an item the engine refuses fails the call as permanent.
    pub(crate) async fn bulk(
        &self,
        docs: &[Stored],
        generation: Option<u32>,
    ) -> Result<Vec<Upsert>, BackendError> {
        let mut results: Vec<Option<Upsert>> = vec![None; docs.len()];
        let mut pending: Vec<usize> = (0..docs.len()).collect();
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(self.config.max_attempts.saturating_sub(1))
            .with_jitter()
            .build();
        loop {
            let last_error = match self.bulk_once(docs, &pending, generation).await {
                Ok(items) => {
                    let mut retry = Vec::new();
                    let mut last = None;
                    for (i, item) in pending.iter().zip(items) {
                        match item {
                            Item::Done(upsert) => results[*i] = Some(upsert),
                            Item::Transient(reason) => {
                                retry.push(*i);
                                last = Some(BackendError::new(NAME, reason));
                            }
                            Item::Refused(reason) => {
                                metrics::counter!("salestrack_es_bulk_items_total", "result" => "refused")
                                    .increment(1);
                                return Err(BackendError::refused(NAME, reason));
                            }
                        }
                    }
                    pending = retry;
                    last
                }
                Err(e) if e.permanent => return Err(e),
                Err(e) => Some(e),
            };
            let Some(error) = last_error else {
                return Ok(results
                    .into_iter()
                    .map(|r| r.unwrap_or(Upsert::Stale))
                    .collect());
            };
            match delays.next() {
                Some(delay) => {
                    metrics::counter!("salestrack_es_bulk_retries_total").increment(1);
                    tracing::warn!(%error, pending = pending.len(), ?delay, "bulk items failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(error),
            }
        }
    }

    async fn bulk_once(
        &self,
        docs: &[Stored],
        pending: &[usize],
        generation: Option<u32>,
    ) -> Result<Vec<Item>, BackendError> {
        let mut body = String::new();
        for &i in pending {
            let doc = &docs[i];
            let index = match generation {
                Some(g) => self.layout.index(doc.model, g),
                None => self.layout.alias(doc.model),
            };
            let action = json!({ "index": {
                "_index": index, "_id": doc.id,
                "version": doc.version, "version_type": "external",
            }});
            body.push_str(&action.to_string());
            body.push('\n');
            body.push_str(&doc.source.to_string());
            body.push('\n');
        }
        let refresh = self.config.refresh.query_value();
        let reply = self
            .call(
                Method::Post,
                "/_bulk",
                &[("refresh", refresh)],
                Some(body),
                "application/x-ndjson",
            )
            .await?;
        let body = reply.ok("bulk")?;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.len() != pending.len() {
            return Err(BackendError::new(
                NAME,
                format!(
                    "bulk answered {} items for {} documents",
                    items.len(),
                    pending.len()
                ),
            ));
        }
        Ok(items
            .iter()
            .map(|item| Item::from_json(&item["index"]))
            .collect())
    }

    async fn get<T: DeserializeOwned>(
        &self,
        model: Model,
        id: &str,
    ) -> Result<Option<T>, BackendError> {
        let reply = self
            .json(
                Method::Get,
                &format!("/{}/_doc/{id}", self.layout.alias(model)),
                &[],
                None,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = reply.ok("get")?;
        if body["found"] == false {
            return Ok(None);
        }
        serde_json::from_value(body["_source"].clone())
            .map(Some)
            .map_err(|e| BackendError::new(NAME, format!("corrupt {} {id}: {e}", model.name())))
    }

    /// The document `id` of `model` if its `user_id` is `owner`: a realtime
    /// `_get`, its owner checked here before the document is decoded, so no
    /// other user's document leaves this function.
    ///
    /// Not a search filtered by id and owner, as before: a search sees
    /// writes only once the index refreshes, while the consistency wait
    /// checks with a `_get`, which sees them at once; an owner's read
    /// answered `Consistency: fresh` could come from before the write
    /// (issue 29).
    async fn get_owned<T: DeserializeOwned>(
        &self,
        model: Model,
        id: &str,
        owner: &str,
    ) -> Result<Option<T>, BackendError> {
        let Some(document) = self.get::<Value>(model, id).await? else {
            return Ok(None);
        };
        if document["user_id"].as_str() != Some(owner) {
            return Ok(None);
        }
        serde_json::from_value(document)
            .map(Some)
            .map_err(|e| BackendError::new(NAME, format!("corrupt {} {id}: {e}", model.name())))
    }

    pub(crate) async fn search(&self, index: &str, query: &Value) -> Result<Value, BackendError> {
        self.json(Method::Post, &format!("/{index}/_search"), &[], Some(query))
            .await?
            .ok("search")
    }
}

/// What happened to one bulk item.
enum Item {
    Done(Upsert),
    Transient(String),
    Refused(String),
}

impl Item {
    fn from_json(item: &Value) -> Item {
        let status = item["status"].as_u64().unwrap_or(0) as u16;
        let reason = || {
            format!(
                "{} {}: HTTP {status}: {}",
                item["_index"],
                item["_id"],
                error_reason(item)
            )
        };
        match status {
            200..=299 => {
                metrics::counter!("salestrack_es_bulk_items_total", "result" => "written")
                    .increment(1);
                Item::Done(Upsert::Written)
            }
            // External versioning refused an older or equal version: the
            // store already holds this state or a newer one.
            409 => {
                metrics::counter!("salestrack_es_bulk_items_total", "result" => "stale")
                    .increment(1);
                Item::Done(Upsert::Stale)
            }
            s if transient(s) || s == 0 => Item::Transient(reason()),
            _ => Item::Refused(reason()),
        }
    }
}

/// `[from, to)` on `created_at`, either end open when `None`.
fn created_at_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Value {
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

fn dimension_field(d: ReportDimension) -> &'static str {
    match d {
        ReportDimension::Product => "product_name",
        ReportDimension::Seller => "seller_info",
        ReportDimension::Currency => "currency",
        ReportDimension::PaymentMethod => "payment_method",
    }
}

/// A grouping level of the report aggregation, outermost first.
#[derive(Debug, Clone, Copy)]
enum Level {
    Period,
    Key,
    Currency,
}

fn report_aggregation(query: &SalesReportQuery) -> (Vec<Level>, Value) {
    let mut levels = Vec::new();
    if query.interval.is_some() {
        levels.push(Level::Period);
    }
    if query.group_by.is_some() {
        levels.push(Level::Key);
    }
    levels.push(Level::Currency);
    // Each limb of each summed integer, over the lines that have limbs;
    // the plain sums over lines written before the limbs were (schema 1,
    // exact while they stay below 2^53; a rebuild gives them limbs).
    let mut limb_sums = serde_json::Map::new();
    for name in LIMBED {
        for i in 0..LIMBS {
            limb_sums.insert(
                format!("{name}_l{i}"),
                json!({ "sum": { "field": limb_field(name, i) } }),
            );
        }
    }
    let has_limbs = json!({ "exists": { "field": limb_field("subtotal", 0) } });
    let mut aggs = json!({
        "limbed": { "filter": has_limbs, "aggs": limb_sums },
        "legacy": {
            "filter": { "bool": { "must_not": [has_limbs] } },
            "aggs": {
                "subtotal": { "sum": { "field": "subtotal_minor" } },
                "tax": { "sum": { "field": "tax_minor" } },
                "quantity": { "sum": { "field": "quantity" } },
            },
        },
    });
    for level in levels.iter().rev() {
        let grouping = match level {
            Level::Period => {
                let interval = match query.interval {
                    Some(salestrack_core::search::ReportInterval::Hour) => "hour",
                    Some(salestrack_core::search::ReportInterval::Month) => "month",
                    _ => "day",
                };
                json!({ "date_histogram": {
                    "field": "created_at", "calendar_interval": interval,
                    "time_zone": "UTC", "min_doc_count": 1,
                }})
            }
            Level::Key => json!({ "terms": {
                "field": dimension_field(query.group_by.unwrap_or(ReportDimension::Product)),
                "size": MAX_TERMS,
            }}),
            Level::Currency => json!({ "terms": { "field": "currency", "size": 500 } }),
        };
        let mut with_children = grouping;
        with_children["aggs"] = aggs;
        aggs = json!({ "group": with_children });
    }
    (levels, aggs)
}

/// The exact sum of `name` (one of [`LIMBED`]) in a report bucket: its
/// limbs' sums put together, plus the plain sum over lines without limbs.
fn bucket_sum(bucket: &Value, name: &str) -> Result<i128, BackendError> {
    let limbed = &bucket["limbed"];
    // Each limb is below 2^LIMB_BITS: their sum is exact below this many.
    let most_lines = 1_u64 << (53 - LIMB_BITS);
    if limbed["doc_count"].as_u64().unwrap_or(0) >= most_lines {
        return Err(BackendError::new(
            NAME,
            format!("a report bucket holds {most_lines} lines or more; narrow the report"),
        ));
    }
    let mut total = i128::from(exact_sum(&bucket["legacy"][name], name)?);
    for i in 0..LIMBS {
        let limb = exact_sum(&limbed[format!("{name}_l{i}")], name)?;
        total += i128::from(limb) << (i * LIMB_BITS as usize);
    }
    Ok(total)
}

/// A bucket's exact sum of money in minor units, as a decimal.
fn money_sum(bucket: &Value, name: &str) -> Result<Decimal, BackendError> {
    let minor = bucket_sum(bucket, name)?;
    Decimal::try_from_i128_with_scale(minor, MAX_SCALE)
        .map(display_sum)
        .map_err(|_| {
            BackendError::new(
                NAME,
                format!("the {name} of a report bucket is beyond {}", Decimal::MAX),
            )
        })
}

fn exact_sum(value: &Value, what: &str) -> Result<i64, BackendError> {
    let sum = value["value"].as_f64().unwrap_or(0.0);
    if sum.abs() >= EXACT_LIMIT {
        return Err(BackendError::new(
            NAME,
            format!("the {what} of a report bucket is beyond exact range; narrow the report"),
        ));
    }
    Ok(sum.round() as i64)
}

/// Walks the nested buckets into flat [`SalesBucket`]s.
fn collect_buckets(
    group: &Value,
    levels: &[Level],
    period: Option<DateTime<Utc>>,
    key: Option<String>,
    out: &mut Vec<SalesBucket>,
) -> Result<(), BackendError> {
    let Some((level, rest)) = levels.split_first() else {
        return Ok(());
    };
    if group["sum_other_doc_count"].as_u64().unwrap_or(0) > 0 {
        return Err(BackendError::new(
            NAME,
            format!("a report level has more than {MAX_TERMS} values; narrow the report"),
        ));
    }
    for bucket in group["buckets"].as_array().into_iter().flatten() {
        if bucket["doc_count"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        let label = || -> String {
            bucket["key"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| bucket["key"].to_string())
        };
        match level {
            Level::Period => {
                let start = bucket["key"]
                    .as_i64()
                    .and_then(DateTime::from_timestamp_millis);
                collect_buckets(&bucket["group"], rest, start, key.clone(), out)?;
            }
            Level::Key => {
                collect_buckets(&bucket["group"], rest, period, Some(label()), out)?;
            }
            Level::Currency => out.push(SalesBucket {
                period,
                key: key.clone(),
                currency: label(),
                revenue: money_sum(bucket, "subtotal")?,
                tax: money_sum(bucket, "tax")?,
                units: u64::try_from(bucket_sum(bucket, "quantity")?).map_err(|_| {
                    BackendError::new(NAME, "the units of a report bucket are beyond 2^64")
                })?,
                orders: bucket["doc_count"].as_u64().unwrap_or(0),
            }),
        }
    }
    Ok(())
}

#[async_trait]
impl ReadStore for EsReadStore {
    async fn upsert(&self, doc: ReadDocument) -> Result<Upsert, BackendError> {
        let stored = Stored::from_document(&doc)?;
        let results = self.bulk(&[stored], None).await?;
        Ok(results.into_iter().next().unwrap_or(Upsert::Stale))
    }

    async fn upsert_all(&self, docs: Vec<ReadDocument>) -> Result<Vec<Upsert>, BackendError> {
        let stored = docs
            .iter()
            .map(Stored::from_document)
            .collect::<Result<Vec<_>, _>>()?;
        self.bulk(&stored, None).await
    }

    async fn cart_detail(&self, cart_id: CartId) -> Result<Option<CartDetail>, BackendError> {
        self.get(Model::CartDetail, &cart_id.to_string()).await
    }

    /// One `_mget` on the cart-detail alias.
    async fn cart_details(
        &self,
        cart_ids: &[CartId],
    ) -> Result<Vec<Option<CartDetail>>, BackendError> {
        if cart_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = cart_ids.iter().map(ToString::to_string).collect();
        let body = self
            .json(
                Method::Post,
                &format!("/{}/_mget", self.layout.alias(Model::CartDetail)),
                &[],
                Some(&json!({ "ids": ids })),
            )
            .await?
            .ok("mget")?;
        let docs = body["docs"].as_array().cloned().unwrap_or_default();
        if docs.len() != ids.len() {
            return Err(BackendError::new(
                NAME,
                format!(
                    "_mget answered {} documents for {} ids",
                    docs.len(),
                    ids.len()
                ),
            ));
        }
        docs.into_iter()
            .zip(&ids)
            .map(|(doc, id)| {
                if let Some(error) = doc.get("error") {
                    return Err(BackendError::new(NAME, format!("_mget {id}: {error}")));
                }
                if doc["found"] != true {
                    return Ok(None);
                }
                serde_json::from_value(doc["_source"].clone())
                    .map(Some)
                    .map_err(|e| BackendError::new(NAME, format!("corrupt cart detail {id}: {e}")))
            })
            .collect()
    }

    async fn cart_summary(&self, cart_id: CartId) -> Result<Option<CartSummary>, BackendError> {
        self.get(Model::CartSummary, &cart_id.to_string()).await
    }

    async fn command_status(&self, command_id: CommandId) -> Result<Option<Outcome>, BackendError> {
        self.get(Model::CommandStatus, &command_id.to_string())
            .await
    }

    async fn owned_cart_detail(
        &self,
        cart_id: CartId,
        owner: &str,
    ) -> Result<Option<CartDetail>, BackendError> {
        self.get_owned(Model::CartDetail, &cart_id.to_string(), owner)
            .await
    }

    async fn owned_cart_summary(
        &self,
        cart_id: CartId,
        owner: &str,
    ) -> Result<Option<CartSummary>, BackendError> {
        self.get_owned(Model::CartSummary, &cart_id.to_string(), owner)
            .await
    }

    async fn owned_command_status(
        &self,
        command_id: CommandId,
        owner: &str,
    ) -> Result<Option<Outcome>, BackendError> {
        self.get_owned(Model::CommandStatus, &command_id.to_string(), owner)
            .await
    }

    async fn search_carts(&self, search: &CartSearch) -> Result<CartPage, BackendError> {
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
        let answer = self
            .search(&self.layout.alias(Model::CartSummary), &body)
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

    async fn sales_report(
        &self,
        query: &SalesReportQuery,
    ) -> Result<Vec<SalesBucket>, BackendError> {
        let (levels, aggs) = report_aggregation(query);
        let mut filter = vec![
            json!({ "term": { "status": "active" } }),
            created_at_range(query.from, query.to),
        ];
        if let Some(statuses) = query.status.cart_statuses() {
            let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
            // Lines projected before the saga have no `cart_status`: open.
            let open = json!({ "bool": { "must_not": { "exists": { "field": "cart_status" } } } });
            let mut any = vec![json!({ "terms": { "cart_status": statuses } })];
            if statuses.contains(&"open") {
                any.push(open);
            }
            filter.push(json!({ "bool": { "should": any, "minimum_should_match": 1 } }));
        }
        let body = json!({
            "size": 0,
            "track_total_hits": false,
            "query": { "bool": { "filter": filter } },
            "aggs": aggs,
        });
        let answer = self
            .search(&self.layout.alias(Model::SalesLines), &body)
            .await?;
        let mut buckets = Vec::new();
        collect_buckets(
            &answer["aggregations"]["group"],
            &levels,
            None,
            None,
            &mut buckets,
        )?;
        buckets.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        Ok(buckets)
    }

    async fn due_checkouts(
        &self,
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
        let answer = self
            .search(&self.layout.alias(Model::CartSummary), &body)
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

    async fn ping(&self) -> Result<(), BackendError> {
        self.json(Method::Get, "/", &[], None)
            .await?
            .ok("ping")
            .map(drop)
    }
}

/// Decimal sums are exact: minor units through integer doubles.
#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn a_sum_beyond_exact_range_is_an_error_not_a_rounded_figure() {
        assert!(exact_sum(&json!({ "value": 9.1e15 }), "revenue").is_err());
        assert_eq!(
            exact_sum(&json!({ "value": 20000000004002.0 }), "revenue").ok(),
            Some(20_000_000_004_002)
        );
    }

    /// The largest amounts the API accepts, summed past 2^53 minor units
    /// and past `i64`: the limbs' sums stay exact, and so does the total.
    #[test]
    fn limbs_sum_the_largest_amounts_exactly() {
        use crate::documents::limbs;
        let largest = 999_999_999_999_999_999_u64; // 99,999,999,999,999.9999
        let lines = 1_000_u64;
        let mut sums = [0_f64; LIMBS];
        for _ in 0..lines {
            for (sum, limb) in sums.iter_mut().zip(limbs(largest)) {
                *sum += limb as f64;
            }
        }
        let mut limbed = json!({ "doc_count": lines });
        for (i, sum) in sums.iter().enumerate() {
            limbed[format!("subtotal_l{i}")] = json!({ "value": sum });
        }
        let bucket =
            json!({ "limbed": limbed, "legacy": { "doc_count": 0, "subtotal": { "value": 0.0 } } });
        let total = money_sum(&bucket, "subtotal").expect("exact");
        assert_eq!(
            total,
            Decimal::from_i128_with_scale(i128::from(largest) * i128::from(lines), MAX_SCALE)
        );
        assert_eq!(total.to_string(), "99999999999999999.90");
        // The plain double sum would have rounded.
        assert!(exact_sum(
            &json!({ "value": largest as f64 * lines as f64 }),
            "subtotal"
        )
        .is_err());
    }

    #[test]
    fn nested_buckets_flatten_with_their_period_and_key() {
        let query = SalesReportQuery {
            interval: Some(salestrack_core::search::ReportInterval::Day),
            group_by: Some(ReportDimension::Seller),
            from: None,
            to: None,
            ..Default::default()
        };
        let (levels, _) = report_aggregation(&query);
        let answer = json!({ "buckets": [ { "key": 1795132800000_i64, "doc_count": 2, "group": {
            "sum_other_doc_count": 0,
            "buckets": [ { "key": "acme", "doc_count": 2, "group": { "buckets": [
                { "key": "EUR", "doc_count": 2,
                  "limbed": { "doc_count": 1,
                    "subtotal_l0": { "value": 1000.0 }, "subtotal_l1": { "value": 0.0 }, "subtotal_l2": { "value": 0.0 },
                    "tax_l0": { "value": 200.0 }, "tax_l1": { "value": 0.0 }, "tax_l2": { "value": 0.0 },
                    "quantity_l0": { "value": 2.0 }, "quantity_l1": { "value": 0.0 }, "quantity_l2": { "value": 0.0 } },
                  "legacy": { "doc_count": 1,
                    "subtotal": { "value": 1000.0 }, "tax": { "value": 200.0 }, "quantity": { "value": 1.0 } } }
            ]}}]
        }}]});
        let mut out = Vec::new();
        collect_buckets(&answer, &levels, None, None, &mut out).expect("buckets");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key.as_deref(), Some("acme"));
        assert_eq!(out[0].revenue, Decimal::new(20, 2));
        assert_eq!((out[0].units, out[0].orders), (3, 2));
        assert_eq!(
            out[0].period.map(|p| p.to_rfc3339()),
            Some("2026-11-20T00:00:00+00:00".to_string())
        );
    }
}
