//! Index administration: templates, first indices and their aliases.

//! [`EsReadStore`]: the `ReadStore` port on Elasticsearch / OpenSearch.

use crate::indices::{Model, ALL_MODELS};
use crate::store::{failure, EsReadStore};
use crate::NAME;
use elasticsearch::http::{Method, StatusCode};
use salestrack_core::ports::BackendError;
use serde_json::json;

impl EsReadStore {
    /// Puts every template and creates each model's first index with its
    /// alias unless the alias already points somewhere.
    pub async fn ensure_indices(&self) -> Result<(), BackendError> {
        for model in ALL_MODELS {
            let template = self
                .layout()
                .template(
                    model,
                    self.config().shards,
                    self.config().replicas,
                    self.config().refresh_interval.as_deref(),
                )
                .map_err(|e| {
                    BackendError::refused(NAME, format!("template {}: {e}", model.name()))
                })?;
            self.json(
                Method::Put,
                &format!("/_index_template/{}", self.layout().alias(model)),
                &[],
                Some(&template),
            )
            .await?
            .ok("putting an index template")?;
            if self.alias_target(model).await?.is_none() {
                self.create_index(
                    &self.layout().index(model, 1),
                    Some(&self.layout().alias(model)),
                )
                .await?;
            } else {
                // An index made by an older release lacks the fields added
                // since (mappings are strict): add them. Adding is all a
                // mapping update may do; a changed field still needs a
                // rebuild, and the cluster says so here.
                self.json(
                    Method::Put,
                    &format!("/{}/_mapping", self.layout().alias(model)),
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
                &format!("/_alias/{}", self.layout().alias(model)),
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
}
