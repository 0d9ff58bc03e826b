//! Cart snapshots: the decision state at a stream version, so that loading a
//! cart reads the latest snapshot and the events after it instead of the
//! whole stream.
//!
//! A snapshot is a cache, never a source of truth: it is derived from the
//! events and is unusable when its format is not [`FORMAT`] or it does not
//! decode; the loader (the domain function's `Carts`) then folds the cart
//! from its first event as if there were none.

use crate::aggregate::{Cart, CheckoutState, Line, LineDigest, Settled};
use crate::ids::{CartId, OrderId, PaymentId};
use crate::money::Currency;
use crate::ports::event_store::Snapshot;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The snapshot format this build writes and reads. Bump it when the layout
/// below or [`LineDigest`] changes: older snapshots are then ignored and
/// replaced.
///
/// Format 2: `[u32 header length][header: JSON {user_id, currency,
/// payment_method, checkout, settled, refunds}]` then one fixed 80-byte
/// record per line, ordered by `placed_at`: `[order id: 16][digest:
/// 32][placed_at: u64][cancelled_at: u64, 0 = no][charge: 16, rust_decimal's
/// serialized form]`, integers big-endian. A line costs 80 bytes whatever
/// its content, and restoring is a copy per line, no parsing.
///
/// Format 1 (64-byte lines, no checkout) predates the checkout saga: its
/// carts lack each line's charge, so it is ignored and replaced.
pub const FORMAT: u32 = 2;

const LINE: usize = 80;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    currency: Option<Currency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payment_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkout: Option<CheckoutHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settled: Option<SettledHeader>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    refunds: Vec<(PaymentId, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckoutHeader {
    version: u64,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SettledHeader {
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payment_id: Option<PaymentId>,
    paid: bool,
}

/// The snapshot of `cart` as it stands.
pub fn take(cart_id: CartId, cart: &Cart) -> Snapshot {
    // Every field of the decision state, by name: a field added to `Cart`
    // does not compile here until it is written (and `FORMAT` bumped).
    let Cart {
        version,
        user_id,
        currency,
        payment_method,
        lines,
        checkout,
        settled,
        refunds,
    } = cart;
    let header = Header {
        user_id: user_id.clone(),
        currency: *currency,
        payment_method: payment_method.clone(),
        checkout: checkout.as_ref().map(|c| CheckoutHeader {
            version: c.version,
            expires_at: c.expires_at,
        }),
        settled: settled.as_ref().map(|s| SettledHeader {
            version: s.version,
            payment_id: s.payment_id,
            paid: s.paid,
        }),
        refunds: refunds.clone(),
    };
    // Strings, numbers and ids only: serializing cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut lines: Vec<_> = lines.iter().collect();
    // Stable bytes for the same state.
    lines.sort_by_key(|(order_id, l)| (l.placed_at, **order_id));
    let mut state = Vec::with_capacity(4 + header.len() + LINE * lines.len());
    state.extend_from_slice(&(header.len() as u32).to_be_bytes());
    state.extend_from_slice(&header);
    for (order_id, l) in lines {
        state.extend_from_slice(order_id.0.as_bytes());
        state.extend_from_slice(&l.digest.0);
        state.extend_from_slice(&l.placed_at.to_be_bytes());
        state.extend_from_slice(&l.cancelled_at.unwrap_or(0).to_be_bytes());
        state.extend_from_slice(&l.charge.serialize());
    }
    Snapshot {
        cart_id,
        version: *version,
        format: FORMAT,
        state,
    }
}

/// Why a stored snapshot was not used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("snapshot format {found}, this build reads {FORMAT}")]
    Format { found: u32 },
    #[error("snapshot does not decode: {0}")]
    Corrupt(String),
}

fn corrupt(why: impl std::fmt::Display) -> Unusable {
    Unusable::Corrupt(why.to_string())
}

/// The cart a snapshot holds.
pub fn restore(snapshot: &Snapshot) -> Result<Cart, Unusable> {
    if snapshot.format != FORMAT {
        return Err(Unusable::Format {
            found: snapshot.format,
        });
    }
    let state = snapshot.state.as_slice();
    let (length, rest) = state
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("no header length"))?;
    let length = u32::from_be_bytes(*length) as usize;
    if rest.len() < length {
        return Err(corrupt("header longer than the snapshot"));
    }
    let (header, records) = rest.split_at(length);
    let header: Header = serde_json::from_slice(header).map_err(corrupt)?;
    if records.len() % LINE != 0 {
        return Err(corrupt(format!("{} bytes of lines", records.len())));
    }
    let mut lines = HashMap::with_capacity(records.len() / LINE);
    for record in records.chunks_exact(LINE) {
        let (id, rest) = record.split_at(16);
        let (digest, rest) = rest.split_at(32);
        let (placed_at, rest) = rest.split_at(8);
        let (cancelled_at, charge) = rest.split_at(8);
        let number = |bytes: &[u8]| {
            <[u8; 8]>::try_from(bytes)
                .map(u64::from_be_bytes)
                .map_err(corrupt)
        };
        let order_id = OrderId(uuid::Uuid::from_slice(id).map_err(corrupt)?);
        let line = Line {
            digest: LineDigest(<[u8; 32]>::try_from(digest).map_err(corrupt)?),
            placed_at: number(placed_at)?,
            cancelled_at: Some(number(cancelled_at)?).filter(|v| *v != 0),
            charge: Decimal::deserialize(<[u8; 16]>::try_from(charge).map_err(corrupt)?),
        };
        if line.placed_at == 0 || line.placed_at > snapshot.version {
            return Err(corrupt(format!(
                "line {order_id} placed at {}",
                line.placed_at
            )));
        }
        if line
            .cancelled_at
            .is_some_and(|at| at <= line.placed_at || at > snapshot.version)
        {
            return Err(corrupt(format!(
                "line {order_id} placed at {} and cancelled at {:?}",
                line.placed_at, line.cancelled_at
            )));
        }
        if lines.insert(order_id, line).is_some() {
            return Err(corrupt(format!("line {order_id} twice")));
        }
    }
    let within = |version: u64| version > 0 && version <= snapshot.version;
    if header.checkout.as_ref().is_some_and(|c| !within(c.version))
        || header.settled.as_ref().is_some_and(|s| !within(s.version))
        || header.refunds.iter().any(|(_, v)| !within(*v))
    {
        return Err(corrupt("a checkout step past the snapshot's version"));
    }
    Ok(Cart {
        version: snapshot.version,
        user_id: header.user_id,
        currency: header.currency,
        payment_method: header.payment_method,
        lines,
        checkout: header.checkout.map(|c| CheckoutState {
            version: c.version,
            expires_at: c.expires_at,
        }),
        settled: header.settled.map(|s| Settled {
            version: s.version,
            payment_id: s.payment_id,
            paid: s.paid,
        }),
        refunds: header.refunds,
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
            requested_by: None,
        });
        let mut foreign = other_line();
        foreign.user_id = "somebody-else".into();
        for command in [
            cancel,
            Command::PlaceOrder(PlaceOrder { line: foreign }),
            Command::PlaceOrder(PlaceOrder { line: line() }),
        ] {
            let at = crate::aggregate::Context {
                now: Utc::now(),
                payment_timeout: chrono::Duration::seconds(30),
            };
            assert_eq!(restored.decide(&command, &at), cart.decide(&command, &at));
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
        let whole = snapshot.state.clone();
        for broken in [
            b"{not json".to_vec(),
            whole[..whole.len() - 1].to_vec(),
            [whole.as_slice(), &whole[whole.len() - LINE..]].concat(),
        ] {
            snapshot.state = broken;
            assert!(matches!(restore(&snapshot), Err(Unusable::Corrupt(_))));
        }
    }

    #[test]
    fn a_checked_out_cancelled_and_refunded_cart_survives_its_snapshot() {
        use crate::event::{CancelReason, Checkout};
        let l = line();
        let payment_id = crate::ids::PaymentId::for_checkout(l.cart_id, 2);
        let events = RecordedEvent::number(
            l.cart_id,
            0,
            CommandId(uuid::Uuid::nil()),
            Utc::now(),
            vec![
                Event::OrderPlaced(l.clone()),
                Event::CheckoutStarted(Checkout {
                    payment_method: "card".into(),
                    amount: "427.98".parse().expect("amount"),
                    currency: l.currency,
                    expires_at: Utc::now(),
                }),
                Event::CartCancelled {
                    reason: CancelReason::PaymentTimeout,
                    payment_id: None,
                },
                Event::RefundRequested {
                    checkout: 2,
                    payment_id,
                    amount: "427.98".parse().expect("amount"),
                },
            ],
        );
        let cart = Cart::from_history(&events);
        let restored = restore(&take(l.cart_id, &cart)).expect("restore");
        assert_eq!(restored, cart);
    }

    #[test]
    fn a_format_1_snapshot_is_ignored() {
        let mut snapshot = take(line().cart_id, &Cart::from_history(&history()));
        snapshot.format = 1;
        assert!(matches!(
            restore(&snapshot),
            Err(Unusable::Format { found: 1 })
        ));
    }
}
