//! Upcasters: pure functions from every earlier schema version of an event
//! type's `data` to the current one, applied to the stored JSON before it
//! is decoded. Stored events are never rewritten; handlers, folds and
//! snapshots only ever see the current shape.
//!
//! Versions (see ARCHITECTURE.md, "Event versions"):
//! - `order_placed` 1 -> 2: money as amount + currency. Version 1 had the
//!   line's `currency` once and four bare amounts (`amount`, `discounts`,
//!   `tax_amount`, `subtotal`); version 2 has four money values
//!   `{ "amount", "currency" }`: `unit_price`, `discounts`, `tax`,
//!   `subtotal`.
//! - every other type: version 1 only.

use crate::event::EventKind;
use crate::wire::codec::DecodeError;
use serde_json::{Map, Value};

/// `data`, stored as version `from` of `kind`, in the current version's
/// shape. A version after the current one is refused: this build cannot
/// know what it means.
pub fn to_current(kind: EventKind, from: u32, data: Value) -> Result<Value, DecodeError> {
    let current = kind.schema_version();
    if from == 0 || from > current {
        return Err(DecodeError::SchemaVersion(from));
    }
    let mut data = data;
    for version in from..current {
        data = step(kind, version, data)?;
    }
    Ok(data)
}

/// One version up.
fn step(kind: EventKind, from: u32, data: Value) -> Result<Value, DecodeError> {
    match (kind, from) {
        (EventKind::OrderPlaced, 1) => order_placed_1_to_2(data),
        _ => Err(DecodeError::SchemaVersion(from)),
    }
}

fn order_placed_1_to_2(data: Value) -> Result<Value, DecodeError> {
    let broken = |why: &str| DecodeError::Upcast {
        kind: "order_placed",
        from: 1,
        why: why.to_owned(),
    };
    let Value::Object(mut line) = data else {
        return Err(broken("data is not an object"));
    };
    let currency = line
        .remove("currency")
        .ok_or_else(|| broken("no currency"))?;
    for (old, new) in [
        ("amount", "unit_price"),
        ("discounts", "discounts"),
        ("tax_amount", "tax"),
        ("subtotal", "subtotal"),
    ] {
        let amount = line
            .remove(old)
            .ok_or_else(|| broken(&format!("no {old}")))?;
        let mut money = Map::new();
        money.insert("amount".into(), amount);
        money.insert("currency".into(), currency.clone());
        line.insert(new.into(), Value::Object(money));
    }
    Ok(Value::Object(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_placed_1_becomes_money_with_its_currency() {
        let v1 = json!({"order_id": "o", "amount": "199.99", "discounts": "10",
            "tax_amount": "38.00", "subtotal": "389.98", "currency": "EUR", "quantity": 2});
        let v2 = to_current(EventKind::OrderPlaced, 1, v1).expect("upcast");
        assert_eq!(
            v2,
            json!({"order_id": "o", "quantity": 2,
                "unit_price": {"amount": "199.99", "currency": "EUR"},
                "discounts": {"amount": "10", "currency": "EUR"},
                "tax": {"amount": "38.00", "currency": "EUR"},
                "subtotal": {"amount": "389.98", "currency": "EUR"}})
        );
    }

    #[test]
    fn the_current_version_passes_unchanged_and_a_future_one_is_refused() {
        let v2 = json!({"anything": 1});
        assert_eq!(
            to_current(EventKind::OrderPlaced, 2, v2.clone()).expect("as is"),
            v2
        );
        assert_eq!(
            to_current(EventKind::OrderCancelled, 1, v2.clone()).expect("as is"),
            v2
        );
        assert!(matches!(
            to_current(EventKind::OrderPlaced, 3, v2.clone()),
            Err(DecodeError::SchemaVersion(3))
        ));
        assert!(matches!(
            to_current(EventKind::OrderCancelled, 2, v2),
            Err(DecodeError::SchemaVersion(2))
        ));
    }

    #[test]
    fn a_version_1_line_without_its_money_is_a_clear_error() {
        let err =
            to_current(EventKind::OrderPlaced, 1, json!({"currency": "EUR"})).expect_err("broken");
        assert!(err.to_string().contains("no amount"), "{err}");
    }
}
