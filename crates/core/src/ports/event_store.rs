//! The event store port: each cart's append-only stream of events, appended
//! with optimistic concurrency, and its snapshots.

use crate::event::RecordedEvent;
use crate::ids::CartId;
use crate::ports::error::BackendError;
use async_trait::async_trait;
use std::ops::RangeInclusive;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended first: reload the stream and decide again.
    #[error("expected stream version {expected}, but the stream is at {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A stream and the version it has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub cart_id: CartId,
    pub version: u64,
}

/// One stream's part of an [`EventStore::append_many`].
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub cart_id: CartId,
    pub expected_version: u64,
    pub events: &'a [RecordedEvent],
}

/// A cart's decision state at a stream version, in a versioned format (see
/// [`crate::snapshot`]). A cache derived from the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub cart_id: CartId,
    pub version: u64,
    pub format: u32,
    pub state: Vec<u8>,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// The cart's events whose versions lie in `versions`, in version order
    /// (empty for a new cart). Long streams are read in pages.
    async fn read_range(
        &self,
        cart_id: CartId,
        versions: RangeInclusive<u64>,
    ) -> Result<Vec<RecordedEvent>, BackendError>;

    /// The cart's events in version order (empty for a new cart).
    async fn read_stream(&self, cart_id: CartId) -> Result<Vec<RecordedEvent>, BackendError> {
        self.read_range(cart_id, 1..=u64::MAX).await
    }

    /// The cart's latest snapshot, if one was saved.
    async fn load_snapshot(&self, cart_id: CartId) -> Result<Option<Snapshot>, BackendError>;

    /// Keeps `snapshot` as the cart's latest (the last saved wins; an older
    /// snapshot is still a valid starting point, only a longer one).
    /// Snapshots live apart from the events: saving one never touches the
    /// stream.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), BackendError>;

    /// Up to `limit` streams with their current version, in an order fixed by
    /// the store, starting after `after` (from the start when `None`). Used to
    /// replay the whole store; streams appended to meanwhile may show their
    /// old or new version.
    async fn list_streams(
        &self,
        after: Option<CartId>,
        limit: u32,
    ) -> Result<Vec<StreamHead>, BackendError>;

    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), BackendError> {
        self.list_streams(None, 1).await.map(drop)
    }

    /// Appends `events` (numbered `expected_version + 1 ..`) only if the stream is
    /// exactly at `expected_version`. All or nothing.
    async fn append(
        &self,
        cart_id: CartId,
        expected_version: u64,
        events: &[RecordedEvent],
    ) -> Result<(), AppendError>;

    /// Appends to several streams (one entry per cart) and answers for each
    /// as [`EventStore::append`] would: each is all or nothing on its own,
    /// one's conflict or failure leaves the others as they are. Stores that
    /// can do it in one round trip or one commit; the default runs the
    /// appends concurrently.
    async fn append_many(&self, appends: &[StreamAppend<'_>]) -> Vec<Result<(), AppendError>> {
        futures::future::join_all(
            appends
                .iter()
                .map(|a| self.append(a.cart_id, a.expected_version, a.events)),
        )
        .await
    }
}
