//! The cart aggregate: pure `decide` and `evolve`.
//!
//! Rules (SPEC):
//! - an order id is unique per cart; placing the same line again is a no-op,
//!   placing a *different* line under a used order id is rejected;
//! - every line of a cart has the same currency and belongs to the same user;
//! - cancelling needs an existing line; cancelling twice is a no-op;
//! - a cart holds at most [`MAX_LINES_PER_CART`] lines, which bounds the stream
//!   the domain function loads per command.

use crate::command::{CancelOrder, Command, OrderLine, PlaceOrder};
use crate::event::{Event, RecordedEvent};
use crate::ids::OrderId;
use crate::money::Currency;
use std::collections::HashMap;

pub const MAX_LINES_PER_CART: usize = 1000;

/// The decision state of one cart: only what the rules need.
///
/// Its fields are what a snapshot stores (see [`crate::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cart {
    pub(crate) version: u64,
    pub(crate) user_id: Option<String>,
    pub(crate) currency: Option<Currency>,
    pub(crate) lines: HashMap<OrderId, Line>,
}

/// What the rules keep of a line: its content's digest (placing the same
/// line again is a no-op, a different one under its id is refused) and the
/// stream versions of the events that placed and cancelled it, so that a
/// repeated command finds the event it caused without reading the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) digest: LineDigest,
    pub(crate) placed_at: u64,
    pub(crate) cancelled_at: Option<u64>,
}

/// SHA-256 of a line's fields in a fixed, length-prefixed order, money
/// normalized so that `1.5` and `1.50` agree as [`OrderLine`]'s equality
/// does. Part of the snapshot format: changing it means a new format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineDigest(pub [u8; 32]);

impl LineDigest {
    pub fn of(l: &OrderLine) -> LineDigest {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        field(l.order_id.0.as_bytes());
        field(l.cart_id.0.as_bytes());
        field(l.user_id.as_bytes());
        field(l.product_name.as_bytes());
        match &l.product_info {
            Some(info) => {
                field(b"some");
                field(info.as_bytes());
            }
            None => field(b"none"),
        }
        field(&l.quantity.to_be_bytes());
        for money in [l.amount, l.discounts, l.tax_amount, l.subtotal] {
            field(money.value().normalize().to_string().as_bytes());
        }
        field(l.payment_method.as_bytes());
        field(l.shipping_address.as_bytes());
        field(l.billing_address.as_bytes());
        field(l.shipping_method.as_bytes());
        field(l.currency.as_str().as_bytes());
        field(l.seller_info.as_bytes());
        field(&l.created_at.timestamp().to_be_bytes());
        field(&l.created_at.timestamp_subsec_nanos().to_be_bytes());
        LineDigest(hash.finalize().into())
    }
}

/// Why a command was refused. Each is the client's concern, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the cart is in {cart}; every line of a cart must use the same currency, got {line}")]
    CurrencyMismatch { cart: Currency, line: Currency },
    #[error("the cart belongs to another user")]
    UserMismatch,
    #[error("order {order_id} already exists in this cart with different content")]
    OrderIdConflict { order_id: OrderId },
    #[error("order {order_id} does not exist in this cart")]
    OrderNotFound { order_id: OrderId },
    #[error("the cart already holds the maximum of {max} lines")]
    CartFull { max: usize },
}

impl DomainError {
    /// Stable, machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::CurrencyMismatch { .. } => "currency_mismatch",
            DomainError::UserMismatch => "user_mismatch",
            DomainError::OrderIdConflict { .. } => "order_id_conflict",
            DomainError::OrderNotFound { .. } => "order_not_found",
            DomainError::CartFull { .. } => "cart_full",
        }
    }
}

impl Cart {
    pub fn from_history<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Cart {
        Cart::default().apply(events)
    }

    /// Folds the events that follow this state (a snapshot's, say) onto it.
    pub fn apply<'a>(self, events: impl IntoIterator<Item = &'a RecordedEvent>) -> Cart {
        events.into_iter().fold(self, |cart, recorded| {
            let mut cart = cart.evolve(&recorded.event);
            cart.version = recorded.version;
            cart
        })
    }

    /// Stream version: the number of events applied.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Applies one event. Never fails: events are facts.
    pub fn evolve(mut self, event: &Event) -> Cart {
        self.version += 1;
        match event {
            Event::OrderPlaced(line) => {
                self.user_id.get_or_insert_with(|| line.user_id.clone());
                self.currency.get_or_insert(line.currency);
                self.lines.insert(
                    line.order_id,
                    Line {
                        digest: LineDigest::of(line),
                        placed_at: self.version,
                        cancelled_at: None,
                    },
                );
            }
            Event::OrderCancelled { order_id, .. } => {
                if let Some(line) = self.lines.get_mut(order_id) {
                    line.cancelled_at.get_or_insert(self.version);
                }
            }
        }
        self
    }

    /// Decides which events a command produces. An empty list means the command
    /// was already applied (an idempotent repeat).
    pub fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        match command {
            Command::PlaceOrder(place) => self.place(place),
            Command::CancelOrder(cancel) => self.cancel(cancel),
        }
    }

    /// The stream version of the event that already satisfies `command`, for
    /// a repeated command: it re-publishes that event, so that a publish lost
    /// after a successful append is healed by the retry.
    pub fn satisfied_at(&self, command: &Command) -> Option<u64> {
        let line = self.lines.get(&command.order_id())?;
        match command {
            Command::PlaceOrder(_) => Some(line.placed_at),
            Command::CancelOrder(_) => line.cancelled_at,
        }
    }

    fn place(&self, PlaceOrder { line }: &PlaceOrder) -> Result<Vec<Event>, DomainError> {
        if let Some(existing) = self.lines.get(&line.order_id) {
            return if existing.digest == LineDigest::of(line) {
                Ok(vec![])
            } else {
                Err(DomainError::OrderIdConflict {
                    order_id: line.order_id,
                })
            };
        }
        if self
            .user_id
            .as_ref()
            .is_some_and(|owner| *owner != line.user_id)
        {
            return Err(DomainError::UserMismatch);
        }
        if let Some(cart) = self.currency.filter(|c| *c != line.currency) {
            return Err(DomainError::CurrencyMismatch {
                cart,
                line: line.currency,
            });
        }
        if self.lines.len() >= MAX_LINES_PER_CART {
            return Err(DomainError::CartFull {
                max: MAX_LINES_PER_CART,
            });
        }
        Ok(vec![Event::OrderPlaced(line.clone())])
    }

    fn cancel(&self, cancel: &CancelOrder) -> Result<Vec<Event>, DomainError> {
        // Another user's line reads as no line at all: a cancel tells its
        // sender nothing about carts that are not theirs.
        let foreign = cancel
            .requested_by
            .as_ref()
            .is_some_and(|asker| self.user_id.as_ref() != Some(asker));
        match self.lines.get(&cancel.order_id).filter(|_| !foreign) {
            None => Err(DomainError::OrderNotFound {
                order_id: cancel.order_id,
            }),
            Some(line) if line.cancelled_at.is_some() => Ok(vec![]),
            Some(_) => Ok(vec![Event::OrderCancelled {
                order_id: cancel.order_id,
                reason: cancel.reason.clone(),
            }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::PlaceOrder;
    use crate::ids::{CartId, CommandId};
    use crate::testing::{line, other_line};
    use chrono::Utc;

    /// given(events).when(command).then(result)
    struct Scenario {
        cart: Cart,
    }

    fn given(events: Vec<Event>) -> Scenario {
        let cart_id = CartId(uuid::Uuid::nil());
        let recorded =
            RecordedEvent::number(cart_id, 0, CommandId(uuid::Uuid::nil()), Utc::now(), events);
        Scenario {
            cart: Cart::from_history(&recorded),
        }
    }

    impl Scenario {
        fn when(self, command: Command) -> Result<Vec<Event>, DomainError> {
            self.cart.decide(&command)
        }
    }

    fn place(line: OrderLine) -> Command {
        Command::PlaceOrder(PlaceOrder { line })
    }

    fn cancel(line: &OrderLine) -> Command {
        Command::CancelOrder(CancelOrder {
            cart_id: line.cart_id,
            order_id: line.order_id,
            reason: Some("changed my mind".into()),
            requested_by: None,
        })
    }

    #[test]
    fn placing_a_line_in_an_empty_cart_records_it() {
        let l = line();
        assert_eq!(
            given(vec![]).when(place(l.clone())),
            Ok(vec![Event::OrderPlaced(l)])
        );
    }

    #[test]
    fn placing_the_same_line_twice_is_a_no_op() {
        let l = line();
        assert_eq!(
            given(vec![Event::OrderPlaced(l.clone())]).when(place(l)),
            Ok(vec![])
        );
    }

    #[test]
    fn reusing_an_order_id_for_a_different_line_is_rejected() {
        let l = line();
        let mut changed = l.clone();
        changed.quantity += 1;
        assert_eq!(
            given(vec![Event::OrderPlaced(l.clone())]).when(place(changed)),
            Err(DomainError::OrderIdConflict {
                order_id: l.order_id
            })
        );
    }

    #[test]
    fn a_line_in_another_currency_is_rejected() {
        let mut usd = other_line();
        usd.currency = "USD".parse().expect("currency");
        let err = given(vec![Event::OrderPlaced(line())])
            .when(place(usd))
            .expect_err("rejected");
        assert_eq!(err.code(), "currency_mismatch");
    }

    #[test]
    fn a_line_of_another_user_is_rejected() {
        let mut foreign = other_line();
        foreign.user_id = "somebody-else".into();
        assert_eq!(
            given(vec![Event::OrderPlaced(line())]).when(place(foreign)),
            Err(DomainError::UserMismatch)
        );
    }

    #[test]
    fn cancelling_a_placed_line_records_the_cancellation() {
        let l = line();
        let events = given(vec![Event::OrderPlaced(l.clone())])
            .when(cancel(&l))
            .expect("ok");
        assert!(
            matches!(&events[..], [Event::OrderCancelled { order_id, .. }] if *order_id == l.order_id)
        );
    }

    #[test]
    fn cancelling_twice_is_a_no_op() {
        let l = line();
        let history = vec![
            Event::OrderPlaced(l.clone()),
            Event::OrderCancelled {
                order_id: l.order_id,
                reason: None,
            },
        ];
        assert_eq!(given(history).when(cancel(&l)), Ok(vec![]));
    }

    #[test]
    fn only_the_carts_owner_may_cancel_its_lines() {
        let l = line();
        let asked_by = |who: &str| {
            let Command::CancelOrder(mut c) = cancel(&l) else {
                unreachable!("cancel() builds a cancel")
            };
            c.requested_by = Some(who.into());
            Command::CancelOrder(c)
        };
        let placed = || given(vec![Event::OrderPlaced(l.clone())]);
        assert_eq!(
            placed().when(asked_by("somebody-else")),
            Err(DomainError::OrderNotFound {
                order_id: l.order_id
            }),
            "another user's line reads as no line"
        );
        let events = placed().when(asked_by(&l.user_id)).expect("the owner");
        assert!(matches!(&events[..], [Event::OrderCancelled { .. }]));
    }

    #[test]
    fn cancelling_an_unknown_line_is_rejected() {
        let l = line();
        assert_eq!(
            given(vec![]).when(cancel(&l)),
            Err(DomainError::OrderNotFound {
                order_id: l.order_id
            })
        );
    }

    #[test]
    fn a_full_cart_takes_no_more_lines() {
        let base = line();
        let history = (0..MAX_LINES_PER_CART)
            .map(|i| {
                let mut l = base.clone();
                l.order_id = OrderId(uuid::Uuid::from_u128(i as u128 + 1));
                Event::OrderPlaced(l)
            })
            .collect();
        assert_eq!(
            given(history).when(place(other_line())),
            Err(DomainError::CartFull {
                max: MAX_LINES_PER_CART
            })
        );
    }

    #[test]
    fn the_version_counts_the_events_of_the_stream() {
        let l = line();
        let scenario = given(vec![
            Event::OrderPlaced(l.clone()),
            Event::OrderCancelled {
                order_id: l.order_id,
                reason: None,
            },
        ]);
        assert_eq!(scenario.cart.version(), 2);
    }

    #[test]
    fn the_line_digest_follows_line_equality() {
        let l = line();
        let mut same = l.clone();
        same.amount = crate::money::Money::non_negative(
            same.amount.value().round_dp(2) + rust_decimal::Decimal::new(0, 4),
        )
        .expect("money");
        assert_eq!(same, l, "the same amount at another scale");
        assert_eq!(LineDigest::of(&same), LineDigest::of(&l));
        let variants: [fn(&mut OrderLine); 7] = [
            |l| l.quantity += 1,
            |l| l.product_name.push('!'),
            |l| l.product_info = Some(String::new()),
            |l| l.shipping_address.push('!'),
            |l| l.seller_info.push('!'),
            |l| l.created_at += chrono::Duration::nanoseconds(1),
            |l| l.currency = "USD".parse().expect("currency"),
        ];
        for change in variants {
            let mut other = l.clone();
            change(&mut other);
            assert_ne!(other, l);
            assert_ne!(LineDigest::of(&other), LineDigest::of(&l), "{other:?}");
        }
    }

    #[test]
    fn a_repeated_command_finds_the_event_it_caused() {
        let l = line();
        let scenario = given(vec![
            Event::OrderPlaced(other_line()),
            Event::OrderPlaced(l.clone()),
            Event::OrderCancelled {
                order_id: l.order_id,
                reason: None,
            },
        ]);
        assert_eq!(scenario.cart.satisfied_at(&place(l.clone())), Some(2));
        assert_eq!(scenario.cart.satisfied_at(&cancel(&l)), Some(3));
        assert_eq!(scenario.cart.satisfied_at(&cancel(&other_line())), None);
    }
}
