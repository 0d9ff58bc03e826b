//! Wire formats: the explicit, versioned shapes of everything salestrack puts
//! on Kafka or into a store. Domain types never go on the wire directly.
//!
//! Every record is a JSON envelope `{ "schema_version", "type", ..., "data" }`.
//! `data` is decoded by `type` after the envelope, which keeps decoding free
//! of serde's buffered enum paths (they mangle arbitrary-precision numbers).
//!
//! One module per message family, each with the outbound record (topic,
//! key, headers) it travels in: [`command`], [`event`] (and its
//! [`upcast`]ers), [`payment`], [`outcome`], [`projection`]; [`codec`]
//! holds what they share.

pub mod codec;
pub mod command;
pub mod event;
pub mod outcome;
pub mod payment;
pub mod projection;
pub mod upcast;

pub use codec::{DecodeError, SCHEMA_VERSION};
pub use command::{CancelOrderV1, CommandRecord, OrderLineV1};
pub use event::{decode_event, decode_event_data, encode_event, encode_event_data};
pub use outcome::{Outcome, OutcomeStatus, Reason};
pub use payment::{PaymentRequest, PaymentRequestKind};
pub use projection::CartProjected;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{
        CheckoutCart, Command, ExpireCheckout, PaymentResult, PlaceOrder, RecordPayment,
    };
    use crate::event::{CancelReason, Checkout, Event, RecordedEvent};
    use crate::ids::{CartId, CommandId, PaymentId};
    use crate::testing::{line, order_body};
    use crate::wire::codec::to_value;
    use chrono::TimeZone;
    use chrono::{DateTime, Utc};
    use rust_decimal::Decimal;
    use serde_json::Value;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn a_projection_notice_survives_the_round_trip_and_garbage_is_refused() {
        let notice = CartProjected {
            cart_id: CartId(uuid::Uuid::from_u128(9)),
            version: 42,
        };
        assert_eq!(
            CartProjected::decode(&notice.encode()).expect("decodes"),
            notice
        );
        assert!(matches!(
            CartProjected::decode(br#"{"cart_id":"nope","version":1}"#),
            Err(DecodeError::Json { .. })
        ));
    }

    #[test]
    fn a_command_survives_the_round_trip() {
        let record = CommandRecord {
            command_id: CommandId(uuid::Uuid::from_u128(7)),
            accepted_at: at(),
            command: Command::PlaceOrder(PlaceOrder { line: line() }),
        };
        assert_eq!(
            CommandRecord::decode(&record.encode()).expect("decodes"),
            record
        );
    }

    #[test]
    fn an_event_survives_the_round_trip_with_money_as_strings() {
        let recorded = RecordedEvent::number(
            line().cart_id,
            4,
            CommandId(uuid::Uuid::from_u128(7)),
            at(),
            vec![Event::OrderPlaced(line())],
        )
        .remove(0);
        let bytes = encode_event(&recorded);
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(text.contains(r#""amount":"199.99""#), "{text}");
        assert_eq!(decode_event(&bytes).expect("decodes"), recorded);
        assert_eq!(recorded.version, 5);
    }

    #[test]
    fn an_unknown_command_type_is_a_decode_error_not_a_panic() {
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schema_version": 1, "type": "refund_everything",
            "command_id": uuid::Uuid::nil(), "accepted_at": "2026-11-21T08:00:00Z", "data": {}
        }))
        .expect("json");
        assert!(matches!(
            CommandRecord::decode(&bytes),
            Err(DecodeError::UnknownType { .. })
        ));
    }

    #[test]
    fn a_command_with_an_invalid_line_is_a_decode_error() {
        let mut data = order_body();
        data["quantity"] = serde_json::json!(-3);
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schema_version": 1, "type": "place_order",
            "command_id": uuid::Uuid::nil(), "accepted_at": "2026-11-21T08:00:00Z", "data": data
        }))
        .expect("json");
        assert!(matches!(
            CommandRecord::decode(&bytes),
            Err(DecodeError::InvalidCommand(_))
        ));
    }

    #[test]
    fn a_future_schema_version_is_refused() {
        let bytes = br#"{"schema_version":2,"type":"place_order","command_id":"00000000-0000-0000-0000-000000000000","accepted_at":"2026-11-21T08:00:00Z","data":{}}"#;
        assert!(matches!(
            CommandRecord::decode(bytes),
            Err(DecodeError::SchemaVersion(2))
        ));
    }

    #[test]
    fn garbage_is_a_json_decode_error() {
        assert!(matches!(
            decode_event(b"\xff\x00nope"),
            Err(DecodeError::Json { .. })
        ));
    }

    #[test]
    fn the_sagas_commands_survive_the_round_trip() {
        let cart_id = line().cart_id;
        let payment_id = PaymentId::for_checkout(cart_id, 3);
        for command in [
            Command::CheckoutCart(CheckoutCart {
                cart_id,
                payment_method: Some("test-decline".into()),
                requested_by: Some("user-42".into()),
            }),
            Command::RecordPayment(RecordPayment {
                cart_id,
                checkout: 3,
                payment_id,
                result: PaymentResult::Declined,
                amount: "427.98".parse().expect("amount"),
                reason: Some("insufficient funds".into()),
            }),
            Command::ExpireCheckout(ExpireCheckout {
                cart_id,
                checkout: 3,
            }),
        ] {
            let record = CommandRecord {
                command_id: command.derive_id(None),
                accepted_at: at(),
                command,
            };
            assert_eq!(
                CommandRecord::decode(&record.encode()).expect("decodes"),
                record
            );
        }
    }

    #[test]
    fn the_sagas_events_survive_the_round_trip() {
        let cart_id = line().cart_id;
        let payment_id = PaymentId::for_checkout(cart_id, 2);
        let amount: Decimal = "427.98".parse().expect("amount");
        let events = RecordedEvent::number(
            cart_id,
            1,
            CommandId(uuid::Uuid::from_u128(7)),
            at(),
            vec![
                Event::CheckoutStarted(Checkout {
                    payment_method: "card".into(),
                    amount,
                    currency: line().currency,
                    expires_at: at(),
                }),
                Event::PaymentSucceeded { payment_id, amount },
                Event::CartCancelled {
                    reason: CancelReason::PaymentDeclined,
                    payment_id: Some(payment_id),
                },
                Event::RefundRequested {
                    checkout: 2,
                    payment_id,
                    amount,
                },
            ],
        );
        for e in events {
            assert_eq!(decode_event(&encode_event(&e)).expect("decodes"), e);
        }
    }

    #[test]
    fn a_checkout_asks_for_a_charge_and_a_late_payment_for_a_refund() {
        let cart_id = line().cart_id;
        let amount: Decimal = "427.98".parse().expect("amount");
        let events = RecordedEvent::number(
            cart_id,
            1,
            CommandId(uuid::Uuid::from_u128(7)),
            at(),
            vec![
                Event::CheckoutStarted(Checkout {
                    payment_method: "card".into(),
                    amount,
                    currency: line().currency,
                    expires_at: at(),
                }),
                Event::RefundRequested {
                    checkout: 2,
                    payment_id: PaymentId::for_checkout(cart_id, 2),
                    amount,
                },
            ],
        );
        let charge = PaymentRequest::for_event(&events[0]).expect("a charge");
        assert_eq!(
            (charge.kind, charge.checkout),
            (PaymentRequestKind::Charge, 2)
        );
        assert_eq!(charge.payment_id, PaymentId::for_checkout(cart_id, 2));
        assert_eq!(
            PaymentRequest::decode(&charge.encode()).expect("decodes"),
            charge
        );
        let refund = PaymentRequest::for_event(&events[1]).expect("a refund");
        assert_eq!(
            (refund.kind, refund.payment_id),
            (PaymentRequestKind::Refund, charge.payment_id)
        );
        let placed = RecordedEvent::number(
            cart_id,
            0,
            CommandId(uuid::Uuid::from_u128(7)),
            at(),
            vec![Event::OrderPlaced(line())],
        );
        assert_eq!(PaymentRequest::for_event(&placed[0]), None);
    }

    fn placed_envelope(version: u32, data: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schema_version": version, "type": "order_placed",
            "event_id": uuid::Uuid::nil(), "cart_id": line().cart_id, "version": 1,
            "command_id": uuid::Uuid::nil(), "recorded_at": "2026-12-02T09:00:00Z", "data": data
        }))
        .expect("json")
    }

    #[test]
    fn an_event_of_a_future_schema_version_is_refused_not_guessed() {
        let data = encode_event_data(&Event::OrderPlaced(line()));
        assert!(decode_event(&placed_envelope(2, data.clone())).is_ok());
        assert!(matches!(
            decode_event(&placed_envelope(3, data)),
            Err(DecodeError::SchemaVersion(3))
        ));
    }

    #[test]
    fn a_line_with_money_in_two_currencies_is_not_a_line() {
        let mut data = encode_event_data(&Event::OrderPlaced(line()));
        data["tax"]["currency"] = serde_json::json!("USD");
        assert!(matches!(
            decode_event(&placed_envelope(2, data)),
            Err(DecodeError::Inconsistent { .. })
        ));
    }

    #[test]
    fn version_1_and_version_2_of_a_line_decode_to_the_same_line() {
        let v2 = encode_event_data(&Event::OrderPlaced(line()));
        let v1 = to_value(&OrderLineV1::from(&line()));
        let (a, b) = (
            decode_event(&placed_envelope(1, v1)).expect("v1"),
            decode_event(&placed_envelope(2, v2)).expect("v2"),
        );
        assert_eq!(a.event, b.event);
        assert_eq!((a.schema_version, b.schema_version), (1, 2));
    }
}
