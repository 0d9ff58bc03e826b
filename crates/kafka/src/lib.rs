//! The bus ports on Apache Kafka, through `rdkafka` (librdkafka).
//!
//! - [`KafkaBus`] is the [`Producer`]: idempotent, `acks=all`, keyed by cart
//!   id, so a `send` that returns has been acknowledged by every in-sync
//!   replica and retries never duplicate or reorder a partition's records.
//! - [`KafkaConsumer`] is a group member (`subscribe`, never `assign`) with
//!   auto-commit off: offsets move only through [`Consumer::commit`], and
//!   [`Consumer::rewind`] seeks back to the group's committed offsets.
//! - [`KafkaBus::ensure_topics`] creates missing topics, since brokers may not
//!   auto-create them.
//!
//! Rebalances only happen inside `poll` (librdkafka serves them from the
//! consumer queue), and the runner commits each batch before it polls again,
//! so a revoked partition never has handled-but-uncommitted records and two
//! members never work on one partition at once, as long as a batch takes
//! less than `max.poll.interval.ms`.

pub mod acks;
pub mod bus;
pub mod config;
pub mod consumer;
pub mod msk_iam;
mod resume;
#[cfg(feature = "test-broker")]
pub mod test_broker;

pub use bus::KafkaBus;
pub use config::KafkaConfig;
pub use consumer::KafkaConsumer;

use salestrack_core::ports::BackendError;

pub(crate) const BACKEND: &str = "kafka";

/// A client's error as a backend error that keeps it as its source.
fn backend_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> BackendError {
    BackendError::caused_by(BACKEND, e)
}
