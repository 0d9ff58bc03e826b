//! Embedded backends: the bus, the event store and the read store in SQLite
//! files under one data directory, so `cargo run` needs no server at all.
//!
//! Implements the core ports and nothing else; knows nothing of HTTP, Lambda
//! or the handlers.
//!
//! # Layout
//! - [`bus`]: partitioned, durable log with consumer-group offsets.
//! - [`event_store`]: streams with a unique (cart, version).
//! - [`read_store`]: version-guarded documents, search and report aggregation.
//! - [`payment_ledger`]: the mock gateway's charges, one per checkout.
//! - [`key_store`]: each user's data key, securely deleted on erasure.
//! - [`sqlite`]: the connection wrapper they share.

pub mod bus;
pub mod event_store;
pub mod key_store;
pub mod payment_ledger;
pub mod read_store;
pub mod sqlite;

pub use bus::{EmbeddedBus, EmbeddedConsumer};
pub use event_store::EmbeddedEventStore;
pub use key_store::EmbeddedKeyStore;
pub use payment_ledger::EmbeddedPaymentLedger;
pub use read_store::EmbeddedReadStore;

use salestrack_core::ports::BackendError;
use std::path::Path;

/// The three embedded backends opened in one data directory.
pub struct Embedded {
    pub bus: EmbeddedBus,
    pub event_store: EmbeddedEventStore,
    pub read_store: EmbeddedReadStore,
}

impl Embedded {
    pub fn open(data_dir: &Path, partitions: i32) -> Result<Self, BackendError> {
        Ok(Embedded {
            bus: EmbeddedBus::open(&data_dir.join("bus.sqlite"), partitions)?,
            event_store: EmbeddedEventStore::open(&data_dir.join("events.sqlite"))?,
            read_store: EmbeddedReadStore::open(&data_dir.join("read.sqlite"))?,
        })
    }
}
