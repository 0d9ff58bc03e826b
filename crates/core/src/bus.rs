//! What travels on the bus: a record to produce, where it landed, a record
//! as consumed, and a partition's lag. The ports that move them are in
//! [`crate::ports::bus`]; the builders of each message's record sit next
//! to its wire type ([`crate::wire`]).

use chrono::{DateTime, Utc};

/// A record to produce. `key` decides the partition, so all records of a cart
/// stay in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where a produced record landed; acknowledged as durable by the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// A record as consumed from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: DateTime<Utc>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// One partition's consumer lag, in records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}
