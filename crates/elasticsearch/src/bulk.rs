//! Writes: `_bulk` with external versioning, retried while transient.

//! [`EsReadStore`]: the `ReadStore` port on Elasticsearch / OpenSearch.

use crate::documents::Stored;
use crate::store::{error_reason, transient, EsReadStore};
use crate::NAME;
use backon::{BackoffBuilder, ExponentialBuilder};
use elasticsearch::http::Method;
use salestrack_core::ports::{BackendError, Upsert};
use serde_json::{json, Value};
use std::time::Duration;

impl EsReadStore {
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
            .with_max_times(self.config().max_attempts.saturating_sub(1))
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
                Some(g) => self.layout().index(doc.model, g),
                None => self.layout().alias(doc.model),
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
        let refresh = self.config().refresh.query_value();
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
