//! The pure core of salestrack: the sales model, its rules, its wire formats,
//! the read-model folds and the ports every backend implements.
//!
//! It performs no IO and knows nothing of Kafka, Cassandra, Elasticsearch,
//! SQLite, HTTP or Lambda; clocks and ids are passed in.
//!
//! # Layout, lowest layer first
//! `cargo test -p salestrack-core --test layers -- --nocapture` prints the
//! module graph; the test fails on a cycle.
//! - [`ids`], [`money`], [`json`]: value types and canonical JSON.
//! - [`contract`]: the input rules (value checks) validation is built from.
//! - [`fields`]: the fields of request bodies, their rules and errors.
//! - [`personal`]: the one list of personal fields, and their sealing
//!   under each user's data key (crypto-shredding).
//! - [`command`]: the commands (`place_order`, `cancel_order`, the saga's),
//!   parsed and validated field by field.
//! - [`event`]: domain events, their [`event::EventKind`], the recorded event.
//! - [`aggregate`]: the cart's `decide` / `evolve`; [`snapshot`]: its
//!   versioned decision state.
//! - [`read_model`]: cart detail, cart summary and sales lines as folds;
//!   [`search`]: what a reader asks of them (searches, reports).
//! - [`bus`]: records as produced and consumed.
//! - [`wire`]: versioned envelopes per message family (commands, events and
//!   their upcasters, payment requests, outcomes, projection notices), each
//!   with the outbound record it travels in.
//! - [`headers`]: Kafka header names and the W3C trace context;
//!   [`token`]: the read-your-writes consistency token.
//! - [`ports`]: one module per port (bus, event store, read store, payment
//!   ledger), the backend error and the clock.
//! - [`testing`]: sample values for tests of every crate.

pub mod aggregate;
pub mod bus;
pub mod command;
pub mod contract;
pub mod event;
pub mod fields;
pub mod headers;
pub mod ids;
pub mod json;
pub mod money;
pub mod personal;
pub mod ports;
pub mod read_model;
pub mod search;
pub mod snapshot;
pub mod testing;
pub mod token;
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
