//! Ports: the traits adapters implement. Handlers hold them as `Arc<dyn Port>`.
//!
//! Errors are split by what the caller can do about them: a typed
//! [`AppendError::Conflict`] is retried by re-deciding, every other backend
//! error is infrastructure and fails the batch or request (retryable).
//!
//! One module per port: [`bus`], [`event_store`], [`read_store`],
//! [`payment_ledger`], [`key_store`]; [`error`] holds the error every port returns, [`clock`] the time.

pub mod bus;
pub mod clock;
pub mod error;
pub mod event_store;
pub mod key_store;
pub mod payment_ledger;
pub mod read_store;

pub use crate::bus::{BusRecord, Delivery, OutboundRecord, PartitionLag};
pub use bus::{BusProjectionFeed, Consumer, Producer, ProjectionFeed};
pub use clock::{Clock, SystemClock};
pub use error::BackendError;
pub use event_store::{AppendError, EventStore, Snapshot, StreamAppend, StreamHead};
pub use key_store::KeyStore;
pub use payment_ledger::{Charge, ChargeStatus, PaymentLedger};
pub use read_store::{DueCheckout, ReadDocument, ReadStore, Reader, Upsert};
