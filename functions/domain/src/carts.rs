//! Loading a cart: its latest usable snapshot and the events after it, or
//! its whole stream; and writing a snapshot after an append that crossed a
//! multiple of the configured interval ([`Carts::snapshot_due`]).

use salestrack_core::aggregate::Cart;
use salestrack_core::event::RecordedEvent;
use salestrack_core::ids::CartId;
use salestrack_core::ports::{BackendError, EventStore};
use salestrack_core::snapshot::{restore, take};
use std::sync::Arc;

/// Loads carts from an event store, through snapshots when they are on.
#[derive(Clone)]
pub struct Carts {
    store: Arc<dyn EventStore>,
    /// A snapshot is written each time a cart's version crosses a multiple
    /// of this; 0 turns snapshots off (reads and writes).
    every: u64,
}

impl Carts {
    pub fn new(store: Arc<dyn EventStore>, every: u64) -> Carts {
        Carts { store, every }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The cart's current decision state: its latest usable snapshot and the
    /// events after it, or its whole stream.
    pub async fn load(&self, cart_id: CartId) -> Result<Cart, BackendError> {
        let base: Cart = self.latest_snapshot(cart_id).await?.unwrap_or_default();
        let tail = self
            .store
            .read_range(cart_id, base.version() + 1..=u64::MAX)
            .await?;
        check_contiguous(cart_id, base.version(), &tail)?;
        let cart = base.apply(&tail);
        // No snapshot yet, or an unusable one, or snapshots just turned on:
        // a long fold is worth saving so the next load is short.
        if self.every > 0 && tail.len() as u64 >= self.every {
            self.save(cart_id, &cart).await;
        }
        Ok(cart)
    }

    async fn latest_snapshot(&self, cart_id: CartId) -> Result<Option<Cart>, BackendError> {
        if self.every == 0 {
            return Ok(None);
        }
        let Some(snapshot) = self.store.load_snapshot(cart_id).await? else {
            return Ok(None);
        };
        match restore(&snapshot) {
            Ok(cart) => Ok(Some(cart)),
            Err(why) => {
                metrics::counter!("salestrack_snapshots_ignored_total").increment(1);
                tracing::warn!(%cart_id, version = snapshot.version, %why, "snapshot ignored; folding the whole stream");
                Ok(None)
            }
        }
    }

    /// Whether an append from version `before` to `after` crossed a
    /// multiple of the interval, so that a snapshot is due.
    pub fn snapshot_due(&self, before: u64, after: u64) -> bool {
        self.every > 0 && before / self.every != after / self.every
    }

    /// Writes a snapshot of `cart`. A failure is logged, not returned: the
    /// events are stored, the snapshot is only a shortcut the next load can
    /// do without.
    pub async fn save(&self, cart_id: CartId, cart: &Cart) {
        match self.store.save_snapshot(&take(cart_id, cart)).await {
            Ok(()) => metrics::counter!("salestrack_snapshots_written_total").increment(1),
            Err(e) => {
                metrics::counter!("salestrack_snapshot_write_failures_total").increment(1);
                tracing::warn!(%cart_id, version = cart.version(), error = %e, "snapshot not written");
            }
        }
    }
}

/// The events after a snapshot must continue it without a gap; a store that
/// answers otherwise is broken, and deciding on such a state would be wrong.
fn check_contiguous(
    cart_id: CartId,
    after: u64,
    events: &[RecordedEvent],
) -> Result<(), BackendError> {
    for (event, expected) in events.iter().zip(after + 1..) {
        if event.version != expected {
            return Err(BackendError::new(
                "event store",
                format!(
                    "cart {cart_id}: read version {} where {expected} was expected",
                    event.version
                ),
            ));
        }
    }
    Ok(())
}
