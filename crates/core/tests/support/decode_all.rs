//! The oracle of the decoder fuzzing, shared by the proptest run
//! (`tests/decoders.rs`) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/decoders.rs`), so both check the same properties.

use salestrack_core::command::{CancelOrder, PlaceOrder};
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::Snapshot;
use salestrack_core::snapshot;
use salestrack_core::token::ConsistencyToken;
use salestrack_core::wire::{self, CartProjected, CommandRecord, Outcome, PaymentRequest};

/// Runs every decoder on `bytes`; each must answer, never panic, and what
/// decodes must survive encode then decode.
pub fn decode_everything(bytes: &[u8]) {
    if let Ok(record) = CommandRecord::decode(bytes) {
        assert_eq!(CommandRecord::decode(&record.encode()).ok(), Some(record));
    }
    if let Ok(event) = wire::decode_event(bytes) {
        let again = wire::decode_event(&wire::encode_event(&event)).expect("re-encoded event");
        assert_eq!(again.event, event.event);
        assert_eq!(again.version, event.version);
    }
    if let Ok(outcome) = Outcome::decode(bytes) {
        assert_eq!(Outcome::decode(&outcome.encode()).ok(), Some(outcome));
    }
    if let Ok(request) = PaymentRequest::decode(bytes) {
        assert_eq!(
            PaymentRequest::decode(&request.encode()).ok(),
            Some(request)
        );
    }
    if let Ok(notice) = CartProjected::decode(bytes) {
        assert_eq!(CartProjected::decode(&notice.encode()).ok(), Some(notice));
    }
    if let Ok(value) = salestrack_core::json::parse_strict(bytes) {
        let _ = PlaceOrder::parse(&value);
        let _ = CancelOrder::parse(OrderId(uuid::Uuid::nil()), &value);
    }
    let text = String::from_utf8_lossy(bytes);
    if let Ok(token) = ConsistencyToken::decode(&text) {
        assert_eq!(ConsistencyToken::decode(&token.encode()).ok(), Some(token));
    }
    restore_everything(bytes);
}

pub fn restore_everything(state: &[u8]) {
    for version in [1, 3, 1_000, u64::MAX] {
        let stored = Snapshot {
            cart_id: CartId(uuid::Uuid::nil()),
            version,
            format: 2,
            state: state.to_vec(),
        };
        if let Ok(cart) = snapshot::restore(&stored) {
            let taken = snapshot::take(stored.cart_id, &cart);
            let again = snapshot::restore(&taken).expect("a snapshot this build took restores");
            assert_eq!(snapshot::take(stored.cart_id, &again).state, taken.state);
        }
    }
}
