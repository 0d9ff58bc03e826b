//! [`EsReadStore`]: the `ReadStore` port on Elasticsearch / OpenSearch.

use crate::config::EsConfig;
use crate::documents::Stored;
use crate::indices::{Layout, Model};
use crate::NAME;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, StatusCode, Url};
use elasticsearch::Elasticsearch;
use salestrack_core::ids::{CartId, CommandId};
use salestrack_core::ports::{BackendError, DueCheckout, ReadDocument, ReadStore, Reader, Upsert};
use salestrack_core::read_model::{CartDetail, CartSummary};
use salestrack_core::search::{CartPage, CartSearch, SalesBucket, SalesReportQuery};
use salestrack_core::wire::Outcome;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

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
pub(crate) fn failure(status: StatusCode, what: &str, body: &Value) -> BackendError {
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

pub(crate) fn error_reason(body: &Value) -> String {
    let error = &body["error"];
    match (error["type"].as_str(), error["reason"].as_str()) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        _ if error.is_string() => error.as_str().unwrap_or_default().to_owned(),
        _ => body.to_string().chars().take(300).collect(),
    }
}

pub(crate) fn transient(status: u16) -> bool {
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

    async fn cart_detail(
        &self,
        cart_id: CartId,
        reader: Reader<'_>,
    ) -> Result<Option<CartDetail>, BackendError> {
        let id = cart_id.to_string();
        match reader {
            Reader::Any => self.get(Model::CartDetail, &id).await,
            Reader::Owner(owner) => self.get_owned(Model::CartDetail, &id, owner).await,
        }
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

    async fn cart_summary(
        &self,
        cart_id: CartId,
        reader: Reader<'_>,
    ) -> Result<Option<CartSummary>, BackendError> {
        let id = cart_id.to_string();
        match reader {
            Reader::Any => self.get(Model::CartSummary, &id).await,
            Reader::Owner(owner) => self.get_owned(Model::CartSummary, &id, owner).await,
        }
    }

    async fn command_status(
        &self,
        command_id: CommandId,
        reader: Reader<'_>,
    ) -> Result<Option<Outcome>, BackendError> {
        let id = command_id.to_string();
        match reader {
            Reader::Any => self.get(Model::CommandStatus, &id).await,
            Reader::Owner(owner) => self.get_owned(Model::CommandStatus, &id, owner).await,
        }
    }

    async fn search_carts(&self, search: &CartSearch) -> Result<CartPage, BackendError> {
        crate::search::search_carts(self, search).await
    }

    async fn sales_report(
        &self,
        query: &SalesReportQuery,
    ) -> Result<Vec<SalesBucket>, BackendError> {
        crate::report::sales_report(self, query).await
    }

    async fn due_checkouts(
        &self,
        now: DateTime<Utc>,
        after: Option<&DueCheckout>,
        limit: u32,
    ) -> Result<Vec<DueCheckout>, BackendError> {
        crate::search::due_checkouts(self, now, after, limit).await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.json(Method::Get, "/", &[], None)
            .await?
            .ok("ping")
            .map(drop)
    }
}
