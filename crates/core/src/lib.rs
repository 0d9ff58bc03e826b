//! The pure core of salestrack: the sales model, its rules, its wire formats,
//! the read-model folds and the ports every backend implements.
//!
//! It performs no IO and knows nothing of Kafka, Cassandra, Elasticsearch,
//! SQLite, HTTP or Lambda; clocks and ids are passed in.
//!
//! # Layout
//! - [`ids`], [`money`]: value types (UUID newtypes, `Decimal` money, ISO currency).
//! - [`command`]: `PlaceOrder` / `CancelOrder` and their field-level validation.
//! - [`contract`]: the input rules, shared by validation and the OpenAPI document.
//! - [`event`]: domain events and the recorded (numbered) event.
//! - [`aggregate`]: the cart's `decide` / `evolve`.
//! - [`read_model`]: cart detail, cart summary and sales lines as folds.
//! - [`wire`]: versioned JSON envelopes for commands, events and outcomes.
//! - [`upcast`]: every earlier event schema version to the current one.
//! - [`headers`]: Kafka header names and the W3C trace context.
//! - [`token`]: the read-your-writes consistency token.
//! - [`snapshot`]: the versioned snapshot format of a cart's decision state.
//! - [`ports`]: `Producer`, `Consumer`, `EventStore`, `ReadStore`, `Clock`.
//! - [`testing`]: sample values for tests of every crate.

pub mod aggregate;
pub mod command;
pub mod contract;
pub mod event;
pub mod headers;
pub mod ids;
pub mod json;
pub mod money;
pub mod ports;
pub mod read_model;
pub mod snapshot;
pub mod testing;
pub mod token;
pub mod upcast;
pub mod wire;

/// Topic names, shared by every role. Overridable through configuration.
pub mod topics {
    pub const COMMANDS: &str = "sales.commands";
    pub const EVENTS: &str = "sales.events";
    pub const OUTCOMES: &str = "sales.outcomes";
    pub const DEAD_LETTER: &str = "sales.dead-letter";
    pub const PAYMENTS: &str = "sales.payments";
    /// "Cart X is projected up to version N": what live streams follow.
    pub const PROJECTIONS: &str = "sales.projections";
}
