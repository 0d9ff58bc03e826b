//! The bus ports: producing, consuming as a group member, and the
//! projector's feed of "cart projected" notices.

use crate::bus::{BusRecord, Delivery, OutboundRecord, PartitionLag};
use crate::ports::error::BackendError;
use crate::wire::projection::CartProjected;
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
pub trait Producer: Send + Sync {
    /// Returns once the record is durably stored by the bus.
    async fn send(&self, record: OutboundRecord) -> Result<Delivery, BackendError>;

    /// Sends several records; on error some may have been sent (callers are idempotent).
    async fn send_all(&self, records: Vec<OutboundRecord>) -> Result<Vec<Delivery>, BackendError> {
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            deliveries.push(self.send(record).await?);
        }
        Ok(deliveries)
    }
}

/// Where the projector says that carts' read models moved on (see
/// [`CartProjected`]), for the live streams of every query
/// process. Best effort by design: a notice lost here delays a live stream
/// until its next look at the read store, it never loses a change.
#[async_trait]
pub trait ProjectionFeed: Send + Sync {
    async fn publish(&self, notices: &[CartProjected]) -> Result<(), BackendError>;
}

/// A [`ProjectionFeed`] on a bus topic, keyed by cart: every query process
/// follows the topic (see the runner's live follower).
pub struct BusProjectionFeed {
    pub producer: std::sync::Arc<dyn Producer>,
    pub topic: String,
}

#[async_trait]
impl ProjectionFeed for BusProjectionFeed {
    async fn publish(&self, notices: &[CartProjected]) -> Result<(), BackendError> {
        let records = notices.iter().map(|n| n.outbound(&self.topic)).collect();
        self.producer.send_all(records).await.map(drop)
    }
}

/// A consumer-group member. Delivery is at-least-once: positions only become
/// durable through [`Consumer::commit`], and [`Consumer::rewind`] goes back to
/// the last commit so a failed batch is delivered again.
#[async_trait]
pub trait Consumer: Send {
    /// Up to `max` records, waiting at most `wait` for the first one.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<BusRecord>, BackendError>;
    /// Marks everything up to and including these records as processed.
    async fn commit(&mut self, records: &[BusRecord]) -> Result<(), BackendError>;
    /// Forgets uncommitted progress: the next poll starts at the committed offsets.
    /// A rewind that fails still holds: no poll hands over a record past
    /// the committed offsets until the rewind is done (each poll tries it
    /// again first), so a retryable failure is never skipped.
    async fn rewind(&mut self) -> Result<(), BackendError>;

    /// How many records of each partition this member holds the group has
    /// not committed yet (end of the partition minus committed offset, as
    /// Kafka tools report it). May trail by a second or so.
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BackendError>;

    /// How many partitions the group has assigned to this member now, when
    /// the bus tells (a member without any handles nothing).
    fn owned_partitions(&self) -> Option<usize> {
        None
    }

    /// Whether handled records may stay uncommitted across polls. Only where
    /// no other member can be given the partition in between (a fixed
    /// assignment): on Kafka a poll may rebalance, and a partition must not
    /// move with handled records its new owner would not know of.
    fn may_defer_commits(&self) -> bool {
        false
    }
}
