//! Contract test suites for the ports. Every implementation of a port runs the
//! same checks: the embedded SQLite backends today, Kafka, Cassandra and
//! Elasticsearch as they arrive. Each check is a plain async function that
//! panics on a broken contract; an adapter's test file calls them one test each.
//!
//! Depends only on the core; never on an adapter.

pub mod bus;
pub mod event_store;
pub mod key_store;
pub mod payment_ledger;
pub mod read_store;
pub mod servers;

use chrono::{DateTime, TimeZone, Utc};
use salestrack_core::command::OrderLine;
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::testing::line;
use uuid::Uuid;

/// A fresh cart id per call, so checks never see each other's data.
pub fn new_cart() -> CartId {
    CartId(Uuid::new_v4())
}

pub fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 10, minute, 0)
        .single()
        .unwrap_or_default()
}

/// A line of `cart` for `user`, product and time chosen by the caller.
pub fn line_of(cart: CartId, user: &str, product: &str, minute: u32) -> OrderLine {
    let mut l = line();
    l.cart_id = cart;
    l.order_id = OrderId(Uuid::new_v4());
    l.user_id = user.into();
    l.product_name = product.into();
    l.created_at = at(minute);
    l
}

/// `events` numbered after `after` in `cart`.
pub fn recorded(cart: CartId, after: u64, events: Vec<Event>) -> Vec<RecordedEvent> {
    RecordedEvent::number(cart, after, CommandId(Uuid::new_v4()), at(0), events)
}

/// The old-event corpus of `crates/core/tests/corpus`: the stored bytes of
/// `stream`'s events as `release` wrote them, in stream order.
pub fn corpus(release: &str, stream: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/corpus")
        .join(release)
        .join(stream);
    let manifest: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("corpus manifest"))
            .expect("corpus manifest JSON");
    manifest
        .iter()
        .map(|entry| {
            let file = entry["file"].as_str().expect("file");
            std::fs::read(dir.join(file)).expect("corpus event")
        })
        .collect()
}

/// The oldest release's corpus, the same events as this build writes
/// them, and a mix: the first `old` events as the oldest release stored
/// them, the rest as this build does.
pub fn mixed_corpus(stream: &str, old: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use salestrack_core::wire::{decode_event, encode_event};
    let oldest = corpus("r1-before-money-with-currency", stream);
    let new: Vec<Vec<u8>> = oldest
        .iter()
        .map(|bytes| encode_event(&decode_event(bytes).expect("the corpus decodes")))
        .collect();
    let mixed = oldest
        .iter()
        .take(old)
        .chain(new.iter().skip(old))
        .cloned()
        .collect();
    (mixed, new)
}
