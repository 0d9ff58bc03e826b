//! Every decoder of bytes from outside, under property-based fuzzing on the
//! stable toolchain (proptest): command, event, outcome, payment-request
//! and projection-notice envelopes (every event schema version, from the
//! committed corpus), snapshots, consistency tokens, strict JSON and order
//! bodies. Properties:
//!
//! - no input panics a decoder; a refusal is the decoder's own error type;
//! - what decodes encodes to bytes that decode to the same value;
//! - generated values survive encode then decode unchanged;
//! - a length an input claims is checked against the input, never
//!   allocated on trust.
//!
//! Inputs are random bytes and valid encodings mutated (bytes flipped,
//! cut, inserted); the valid ones are the corpus in `tests/corpus/` and
//! the samples of `salestrack_core::testing`. Failing cases proptest finds
//! are kept in `proptest-regressions/` and replayed first.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use salestrack_core::command::{CancelOrder, Command, PlaceOrder, MAX_QUANTITY};
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::ports::Snapshot;
use salestrack_core::snapshot;
use salestrack_core::testing::{line, order_body};
use salestrack_core::token::ConsistencyToken;
use salestrack_core::wire::{self, CartProjected, CommandRecord};
use std::path::Path;

#[path = "support/mutate.rs"]
mod mutate_bytes;
use mutate_bytes::{byte_mutation, ByteMutation};

#[path = "support/decode_all.rs"]
mod decode_all;
use decode_all::{decode_everything, restore_everything};

/// Valid encodings to mutate: every committed corpus event, and fresh ones.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs = vec![corpus];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("corpus").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json")
                && !path.ends_with("manifest.json")
                && !path.ends_with("expected.json")
            {
                seeds.push(std::fs::read(&path).expect("corpus file"));
            }
        }
    }
    assert!(seeds.len() >= 10, "the event corpus is missing");
    let record = CommandRecord {
        command_id: CommandId(uuid::Uuid::from_u128(1)),
        accepted_at: Utc
            .with_ymd_and_hms(2026, 12, 3, 8, 0, 0)
            .single()
            .unwrap_or_default(),
        command: Command::PlaceOrder(PlaceOrder { line: line() }),
    };
    seeds.push(record.encode());
    seeds.push(
        CommandRecord {
            command: Command::CancelOrder(CancelOrder {
                cart_id: line().cart_id,
                order_id: line().order_id,
                reason: Some("changed my mind".into()),
                requested_by: None,
            }),
            ..record
        }
        .encode(),
    );
    seeds.push(
        CartProjected {
            cart_id: line().cart_id,
            version: 7,
        }
        .encode(),
    );
    seeds.push(order_body().to_string().into_bytes());
    seeds
}

fn snapshot_seed() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/snapshot-format-2.bin"))
        .expect("the snapshot golden bytes")
}

fn mutate(mut bytes: Vec<u8>, mutations: &[ByteMutation]) -> Vec<u8> {
    for m in mutations {
        m.apply(&mut bytes);
    }
    bytes
}

/// JSON's own delimiters and the characters decoders trip on.
fn mutation() -> impl Strategy<Value = ByteMutation> {
    byte_mutation(vec![
        &b"\""[..],
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"null",
        b"1e400",
        b"-0",
        b"\\ud800",
        b"\x00",
        b"99999999999999999999",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_valid_encodings_never_panic_a_decoder(
        seed in prop::sample::select(seeds()),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        decode_everything(&mutate(seed, &mutations));
    }

    #[test]
    fn mutated_snapshots_restore_or_say_why(
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        restore_everything(&mutate(snapshot_seed(), &mutations));
    }

    #[test]
    fn order_lines_survive_the_command_and_event_envelopes(
        // Text is not blank: a first character that is not white space.
        product in "[^\\s\\p{C}]\\PC{0,255}",
        user in "[a-z0-9@._-]{1,128}",
        quantity in 1..=MAX_QUANTITY,
        cents in 0u64..10_000_000,
        scale in 0u32..=4,
        seconds in 0i64..253_402_300_799,
    ) {
        let mut l = line();
        l.product_name = product;
        l.user_id = user;
        l.quantity = quantity;
        let amount = rust_decimal::Decimal::new(cents as i64, scale);
        l.amount = salestrack_core::money::Money::non_negative(amount).expect("non-negative");
        l.discounts = salestrack_core::money::Money::non_negative(rust_decimal::Decimal::ZERO).expect("zero");
        // A subtotal stays below 10^14, as validation demands.
        let limit = rust_decimal::Decimal::from(10_i64.pow(salestrack_core::contract::MONEY_INTEGER_DIGITS));
        let gross = match amount.checked_mul(quantity.into()) {
            Some(gross) if gross < limit => gross,
            _ => {
                l.quantity = 1;
                amount
            }
        };
        l.subtotal = salestrack_core::money::Money::non_negative(gross).expect("non-negative");
        l.created_at = Utc.timestamp_opt(seconds, 0).single().unwrap_or_default();
        let record = CommandRecord {
            command_id: CommandId(uuid::Uuid::from_u128(2)),
            accepted_at: l.created_at,
            command: Command::PlaceOrder(PlaceOrder { line: l.clone() }),
        };
        prop_assert_eq!(CommandRecord::decode(&record.encode()).ok(), Some(record));
        let events = RecordedEvent::number(
            l.cart_id, 0, CommandId(uuid::Uuid::from_u128(3)), l.created_at,
            vec![Event::OrderPlaced(l.clone())],
        );
        let decoded = wire::decode_event(&wire::encode_event(&events[0])).expect("decodes");
        prop_assert_eq!(decoded.event, Event::OrderPlaced(l));
    }

    #[test]
    fn tokens_survive_the_round_trip(command in any::<u128>(), cart in any::<u128>()) {
        let token = ConsistencyToken {
            command_id: CommandId(uuid::Uuid::from_u128(command)),
            cart_id: CartId(uuid::Uuid::from_u128(cart)),
        };
        prop_assert_eq!(ConsistencyToken::decode(&token.encode()).ok(), Some(token));
    }

    #[test]
    fn notices_survive_the_round_trip(cart in any::<u128>(), version in any::<u64>()) {
        let notice = CartProjected { cart_id: CartId(uuid::Uuid::from_u128(cart)), version };
        prop_assert_eq!(CartProjected::decode(&notice.encode()).ok(), Some(notice));
    }
}

/// A snapshot that claims a 4 GiB header, or a million lines, in a few
/// bytes is refused at once: lengths are checked against the input.
#[test]
fn claimed_lengths_are_checked_against_the_input() {
    for state in [vec![0xff, 0xff, 0xff, 0xff, b'{', b'}'], {
        let mut s = 2u32.to_be_bytes().to_vec();
        s.extend_from_slice(b"{}");
        s.extend(std::iter::repeat_n(0u8, 7));
        s
    }] {
        let stored = Snapshot {
            cart_id: line().cart_id,
            version: 1,
            format: 2,
            state,
        };
        assert!(snapshot::restore(&stored).is_err());
    }
    let _ = OrderId(uuid::Uuid::nil());
}
