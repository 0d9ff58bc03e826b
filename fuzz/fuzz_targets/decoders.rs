//! Every decoder of outside bytes in salestrack-core on one input: the
//! command, event, outcome, payment-request and projection-notice
//! envelopes, strict JSON and order bodies, consistency tokens and
//! snapshots. A panic, or a value that does not survive encode then
//! decode, is a finding. Seeds: `fuzz/corpus/decoders/` (the committed
//! event corpus, a snapshot, an order body, a token).
#![no_main]

use libfuzzer_sys::fuzz_target;
use salestrack_core::command::{CancelOrder, PlaceOrder};
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::Snapshot;
use salestrack_core::token::ConsistencyToken;
use salestrack_core::wire::{self, CartProjected, CommandRecord, Outcome, PaymentRequest};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(record) = CommandRecord::decode(bytes) {
        assert_eq!(CommandRecord::decode(&record.encode()).ok(), Some(record));
    }
    if let Ok(event) = wire::decode_event(bytes) {
        let again = wire::decode_event(&wire::encode_event(&event)).expect("re-encoded event");
        assert_eq!(again.event, event.event);
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
    if let Ok(token) = ConsistencyToken::decode(&String::from_utf8_lossy(bytes)) {
        assert_eq!(ConsistencyToken::decode(&token.encode()).ok(), Some(token));
    }
    let stored = Snapshot {
        cart_id: CartId(uuid::Uuid::nil()),
        version: 1_000,
        format: 2,
        state: bytes.to_vec(),
    };
    if let Ok(cart) = salestrack_core::snapshot::restore(&stored) {
        let taken = salestrack_core::snapshot::take(stored.cart_id, &cart);
        let again = salestrack_core::snapshot::restore(&taken)
            .expect("a snapshot this build took restores");
        assert_eq!(
            salestrack_core::snapshot::take(stored.cart_id, &again).state,
            taken.state
        );
    }
});
