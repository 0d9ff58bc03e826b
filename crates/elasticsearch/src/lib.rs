//! The read-store port on Elasticsearch or OpenSearch.
//!
//! Owns the index layout and everything that talks to the search engine:
//!
//! - `indices`: the strict index templates of `infra/elasticsearch/`, one
//!   versioned index per read model (`{prefix}-cart-detail-v1`, …) behind an
//!   alias (`{prefix}-cart-detail`) that readers and the projector use;
//! - `documents`: what is stored, beside the read models: sales lines carry
//!   their money as integer minor units so aggregations sum exactly;
//! - `store`: [`EsReadStore`], the `ReadStore` port: its requests and reads
//!   by id; `admin` the templates, indices and aliases; `bulk` the writes,
//!   through `_bulk` with external versioning (document version = stream
//!   version), so a replayed or late event never overwrites a newer
//!   document and a version conflict means "already applied"; `search`
//!   the cart searches; `report` the sales report's aggregation and exact
//!   sums;
//! - `rebuild`: replays the event store into fresh indices and swaps the
//!   aliases while the system keeps taking writes, resumable;
//! - `test_server` (feature `test-server`, tests only): noida-db and
//!   osmem-server processes.
//!
//! Depends on the core's ports only; knows nothing of Kafka, Cassandra or
//! HTTP handlers.

mod admin;
mod bulk;
mod config;
mod documents;
mod indices;
pub mod rebuild;
mod report;
mod search;
mod store;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use config::{EsConfig, RefreshPolicy};
pub use indices::{Model, EVENT_MODELS};
pub use store::EsReadStore;

/// The backend name in errors and logs.
pub(crate) const NAME: &str = "elasticsearch";
