//! Cart snapshots: the decision state at a stream version, so that loading a
//! cart reads the latest snapshot and the events after it instead of the
//! whole stream.
//!
//! A snapshot is a cache, never a source of truth: it is derived from the
//! events and is unusable when its format is not [`FORMAT`] or it does not
//! decode; the loader (the domain function's `Carts`) then folds the cart
//! from its first event as if there were none.

use crate::aggregate::{Cart, Line};
use crate::ids::{CartId, OrderId};
use crate::money::Currency;
use crate::ports::Snapshot;
use crate::wire::OrderLineV1;
use serde::{Deserialize, Serialize};

/// The snapshot format this build writes and reads. Bump it when the shape
/// of [`CartStateV1`] changes: older snapshots are then ignored and replaced.
pub const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct CartStateV1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    currency: Option<Currency>,
    lines: Vec<LineV1>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LineV1 {
    line: OrderLineV1,
    placed_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancelled_at: Option<u64>,
}

/// The snapshot of `cart` as it stands.
pub fn take(cart_id: CartId, cart: &Cart) -> Snapshot {
    let mut lines: Vec<_> = cart
        .lines
        .values()
        .map(|l| LineV1 {
            line: OrderLineV1::from(&l.line),
            placed_at: l.placed_at,
            cancelled_at: l.cancelled_at,
        })
        .collect();
    // Stable bytes for the same state.
    lines.sort_by_key(|l| l.placed_at);
    let state = CartStateV1 {
        user_id: cart.user_id.clone(),
        currency: cart.currency,
        lines,
    };
    Snapshot {
        cart_id,
        version: cart.version,
        format: FORMAT,
        // A plain struct of strings and numbers: serializing cannot fail.
        state: serde_json::to_vec(&state).unwrap_or_default(),
    }
}

/// Why a stored snapshot was not used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("snapshot format {found}, this build reads {FORMAT}")]
    Format { found: u32 },
    #[error("snapshot does not decode: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// The cart a snapshot holds.
pub fn restore(snapshot: &Snapshot) -> Result<Cart, Unusable> {
    if snapshot.format != FORMAT {
        return Err(Unusable::Format {
            found: snapshot.format,
        });
    }
    let state: CartStateV1 = serde_json::from_slice(&snapshot.state)?;
    let lines = state
        .lines
        .into_iter()
        .map(|l| {
            let line: crate::command::OrderLine = l.line.into();
            (
                line.order_id,
                Line {
                    line,
                    placed_at: l.placed_at,
                    cancelled_at: l.cancelled_at,
                },
            )
        })
        .collect::<std::collections::HashMap<OrderId, Line>>();
    Ok(Cart {
        version: snapshot.version,
        user_id: state.user_id,
        currency: state.currency,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CancelOrder, Command, PlaceOrder};
    use crate::event::{Event, RecordedEvent};
    use crate::ids::CommandId;
    use crate::testing::{line, other_line};
    use chrono::Utc;

    fn history() -> Vec<RecordedEvent> {
        let l = line();
        RecordedEvent::number(
            l.cart_id,
            0,
            CommandId(uuid::Uuid::nil()),
            Utc::now(),
            vec![
                Event::OrderPlaced(l.clone()),
                Event::OrderPlaced(other_line()),
                Event::OrderCancelled {
                    order_id: l.order_id,
                    reason: Some("no".into()),
                },
            ],
        )
    }

    #[test]
    fn a_snapshot_restores_the_state_it_was_taken_of() {
        let cart = Cart::from_history(&history());
        let restored = restore(&take(line().cart_id, &cart)).expect("restore");
        assert_eq!(restored, cart);
        assert_eq!(restored.version(), 3);
    }

    #[test]
    fn a_restored_cart_decides_like_the_folded_one() {
        let cart = Cart::from_history(&history());
        let restored = restore(&take(line().cart_id, &cart)).expect("restore");
        let cancel = Command::CancelOrder(CancelOrder {
            cart_id: line().cart_id,
            order_id: line().order_id,
            reason: None,
        });
        let mut foreign = other_line();
        foreign.user_id = "somebody-else".into();
        for command in [
            cancel,
            Command::PlaceOrder(PlaceOrder { line: foreign }),
            Command::PlaceOrder(PlaceOrder { line: line() }),
        ] {
            assert_eq!(restored.decide(&command), cart.decide(&command));
            assert_eq!(restored.satisfied_at(&command), cart.satisfied_at(&command));
        }
    }

    #[test]
    fn a_snapshot_of_another_format_is_unusable() {
        let mut snapshot = take(line().cart_id, &Cart::from_history(&history()));
        snapshot.format = FORMAT + 1;
        assert!(
            matches!(restore(&snapshot), Err(Unusable::Format { found }) if found == FORMAT + 1)
        );
        snapshot.format = FORMAT;
        snapshot.state = b"{not json".to_vec();
        assert!(matches!(restore(&snapshot), Err(Unusable::Corrupt(_))));
    }
}
