//! The cart aggregate: pure `decide` and `evolve`.
//!
//! Rules (SPEC):
//! - an order id is unique per cart; placing the same line again is a no-op,
//!   placing a *different* line under a used order id is rejected;
//! - every line of a cart has the same currency and belongs to the same user;
//! - cancelling needs an existing line; cancelling twice is a no-op;
//! - a cart holds at most [`MAX_LINES_PER_CART`] lines, which bounds the stream
//!   the domain function loads per command;
//! - the checkout saga: only the owner's cart with an active line checks out
//!   (a repeat is a no-op); a checked-out cart takes no line changes
//!   (`cart_closed`); the checkout's payment answer pays or cancels it
//!   (`payment_declined`), its deadline cancels it if still unanswered
//!   (`payment_timeout`); an answer after that changes nothing, except that
//!   a late success is refunded.

use crate::command::{
    CancelOrder, CheckoutCart, Command, ExpireCheckout, OrderLine, PaymentResult, PlaceOrder,
    RecordPayment,
};
use crate::event::{CancelReason, Checkout, Event, RecordedEvent};
use crate::ids::{OrderId, PaymentId};
use crate::money::Currency;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// What a decision depends on besides the cart and the command: the
/// domain's clock and the saga's configured payment timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub payment_timeout: chrono::Duration,
}

pub const MAX_LINES_PER_CART: usize = 1000;

/// The decision state of one cart: only what the rules need.
///
/// Its fields are what a snapshot stores (see [`crate::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cart {
    pub(crate) version: u64,
    pub(crate) user_id: Option<String>,
    pub(crate) currency: Option<Currency>,
    /// The first line's: what a checkout charges by default.
    pub(crate) payment_method: Option<String>,
    pub(crate) lines: HashMap<OrderId, Line>,
    pub(crate) checkout: Option<CheckoutState>,
    pub(crate) settled: Option<Settled>,
    /// Late payments refunded, with the version of their `refund_requested`.
    pub(crate) refunds: Vec<(PaymentId, u64)>,
}

/// The checkout of a cart: where it is in the stream and its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckoutState {
    pub(crate) version: u64,
    pub(crate) expires_at: DateTime<Utc>,
}

/// How a checkout ended: paid, or cancelled (declined, timed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settled {
    pub(crate) version: u64,
    pub(crate) payment_id: Option<PaymentId>,
    pub(crate) paid: bool,
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
    /// Subtotal plus tax: what the line adds to a checkout while active.
    pub(crate) charge: Decimal,
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
    #[error("the cart is checked out: its lines can no longer change")]
    CartClosed,
    #[error("there is no such cart")]
    CartNotFound,
    #[error("the cart has no active line to check out")]
    CartEmpty,
    #[error("the cart has no checkout at version {checkout}")]
    CheckoutNotFound { checkout: u64 },
    #[error("the checkout runs until {expires_at}")]
    CheckoutNotDue { expires_at: DateTime<Utc> },
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
            DomainError::CartClosed => "cart_closed",
            DomainError::CartNotFound => "cart_not_found",
            DomainError::CartEmpty => "cart_empty",
            DomainError::CheckoutNotFound { .. } => "checkout_not_found",
            DomainError::CheckoutNotDue { .. } => "checkout_not_due",
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
                self.payment_method
                    .get_or_insert_with(|| line.payment_method.clone());
                self.lines.insert(
                    line.order_id,
                    Line {
                        digest: LineDigest::of(line),
                        placed_at: self.version,
                        cancelled_at: None,
                        charge: line.subtotal.value() + line.tax_amount.value(),
                    },
                );
            }
            Event::OrderCancelled { order_id, .. } => {
                if let Some(line) = self.lines.get_mut(order_id) {
                    line.cancelled_at.get_or_insert(self.version);
                }
            }
            Event::CheckoutStarted(checkout) => {
                self.checkout.get_or_insert(CheckoutState {
                    version: self.version,
                    expires_at: checkout.expires_at,
                });
            }
            Event::PaymentSucceeded { payment_id, .. } => {
                self.settled.get_or_insert(Settled {
                    version: self.version,
                    payment_id: Some(*payment_id),
                    paid: true,
                });
            }
            Event::CartCancelled { payment_id, .. } => {
                self.settled.get_or_insert(Settled {
                    version: self.version,
                    payment_id: *payment_id,
                    paid: false,
                });
            }
            Event::RefundRequested { payment_id, .. } => {
                self.refunds.push((*payment_id, self.version));
            }
        }
        self
    }

    /// What the active lines add up to: subtotals plus tax.
    fn active_charge(&self) -> Decimal {
        self.lines
            .values()
            .filter(|l| l.cancelled_at.is_none())
            .map(|l| l.charge)
            .sum()
    }

    /// The cart's owner asked, or nobody in particular (authentication off).
    fn asked_by_owner(&self, asker: Option<&String>) -> bool {
        asker.is_none_or(|asker| self.user_id.as_ref() == Some(asker))
    }

    /// Decides which events a command produces. An empty list means the command
    /// was already applied (an idempotent repeat).
    pub fn decide(&self, command: &Command, at: &Context) -> Result<Vec<Event>, DomainError> {
        match command {
            Command::PlaceOrder(place) => self.place(place),
            Command::CancelOrder(cancel) => self.cancel(cancel),
            Command::CheckoutCart(checkout) => self.check_out(checkout, at),
            Command::RecordPayment(payment) => self.record_payment(payment),
            Command::ExpireCheckout(expire) => self.expire(expire, at),
        }
    }

    /// The stream version of the event that already satisfies `command`, for
    /// a repeated command: it re-publishes that event, so that a publish lost
    /// after a successful append is healed by the retry.
    pub fn satisfied_at(&self, command: &Command) -> Option<u64> {
        match command {
            Command::PlaceOrder(p) => self.lines.get(&p.line.order_id).map(|l| l.placed_at),
            Command::CancelOrder(c) => self.lines.get(&c.order_id)?.cancelled_at,
            Command::CheckoutCart(_) => self.checkout.as_ref().map(|c| c.version),
            Command::RecordPayment(p) => {
                let settled = self.settled.as_ref()?;
                if settled.payment_id == Some(p.payment_id) {
                    return Some(settled.version);
                }
                self.refunds
                    .iter()
                    .find(|(id, _)| *id == p.payment_id)
                    .map(|(_, version)| *version)
            }
            Command::ExpireCheckout(e) => self
                .settled
                .as_ref()
                .filter(|s| s.payment_id.is_none() && self.checkout_at(e.checkout).is_ok())
                .map(|s| s.version),
        }
    }

    /// Whether the cart's checkout is the one at stream version `checkout`.
    fn checkout_at(&self, checkout: u64) -> Result<&CheckoutState, DomainError> {
        self.checkout
            .as_ref()
            .filter(|c| c.version == checkout)
            .ok_or(DomainError::CheckoutNotFound { checkout })
    }

    fn check_out(&self, command: &CheckoutCart, at: &Context) -> Result<Vec<Event>, DomainError> {
        if self.version == 0 || !self.asked_by_owner(command.requested_by.as_ref()) {
            return Err(DomainError::CartNotFound);
        }
        if self.checkout.is_some() {
            return Ok(vec![]);
        }
        if !self.lines.values().any(|l| l.cancelled_at.is_none()) {
            return Err(DomainError::CartEmpty);
        }
        let (Some(currency), Some(first_method)) = (self.currency, self.payment_method.as_ref())
        else {
            // A cart with a line has both: they come with the first line.
            return Err(DomainError::CartEmpty);
        };
        Ok(vec![Event::CheckoutStarted(Checkout {
            payment_method: command
                .payment_method
                .clone()
                .unwrap_or_else(|| first_method.clone()),
            amount: self.active_charge(),
            currency,
            expires_at: at.now + at.payment_timeout,
        })])
    }

    fn record_payment(&self, payment: &RecordPayment) -> Result<Vec<Event>, DomainError> {
        self.checkout_at(payment.checkout)?;
        let Some(settled) = &self.settled else {
            return Ok(vec![match payment.result {
                PaymentResult::Succeeded => Event::PaymentSucceeded {
                    payment_id: payment.payment_id,
                    amount: payment.amount,
                },
                PaymentResult::Declined => Event::CartCancelled {
                    reason: CancelReason::PaymentDeclined,
                    payment_id: Some(payment.payment_id),
                },
            }]);
        };
        // The checkout has ended: a repeat, or an answer that came too late.
        let late_success = payment.result == PaymentResult::Succeeded
            && settled.payment_id != Some(payment.payment_id)
            && !self.refunds.iter().any(|(id, _)| *id == payment.payment_id);
        Ok(if late_success {
            vec![Event::RefundRequested {
                checkout: payment.checkout,
                payment_id: payment.payment_id,
                amount: payment.amount,
            }]
        } else {
            vec![]
        })
    }

    fn expire(&self, expire: &ExpireCheckout, at: &Context) -> Result<Vec<Event>, DomainError> {
        let checkout = self.checkout_at(expire.checkout)?;
        if self.settled.is_some() {
            return Ok(vec![]);
        }
        if at.now < checkout.expires_at {
            return Err(DomainError::CheckoutNotDue {
                expires_at: checkout.expires_at,
            });
        }
        Ok(vec![Event::CartCancelled {
            reason: CancelReason::PaymentTimeout,
            payment_id: None,
        }])
    }

    fn place(&self, PlaceOrder { line }: &PlaceOrder) -> Result<Vec<Event>, DomainError> {
        // Another user's line is refused before anything else is looked
        // at: the answer tells them nothing of the cart (its order ids,
        // whether it is checked out) beyond that it is not theirs.
        if self
            .user_id
            .as_ref()
            .is_some_and(|owner| *owner != line.user_id)
        {
            return Err(DomainError::UserMismatch);
        }
        if let Some(existing) = self.lines.get(&line.order_id) {
            return if existing.digest == LineDigest::of(line) {
                Ok(vec![])
            } else {
                Err(DomainError::OrderIdConflict {
                    order_id: line.order_id,
                })
            };
        }
        if self.checkout.is_some() {
            return Err(DomainError::CartClosed);
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
        let foreign = !self.asked_by_owner(cancel.requested_by.as_ref());
        match self.lines.get(&cancel.order_id).filter(|_| !foreign) {
            None => Err(DomainError::OrderNotFound {
                order_id: cancel.order_id,
            }),
            Some(line) if line.cancelled_at.is_some() => Ok(vec![]),
            Some(_) if self.checkout.is_some() => Err(DomainError::CartClosed),
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
            self.cart.decide(&command, &at())
        }
    }

    fn at() -> Context {
        Context {
            now: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 1, 12, 0, 0)
                .single()
                .unwrap_or_default(),
            payment_timeout: chrono::Duration::seconds(30),
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
    fn another_users_line_learns_nothing_of_the_cart_but_that_it_is_not_theirs() {
        // Her order id, his user id: not `order_id_conflict`, which would
        // tell that she has a line of that id.
        let mut hers_as_his = line();
        hers_as_his.user_id = "somebody-else".into();
        assert_eq!(
            given(vec![Event::OrderPlaced(line())]).when(place(hers_as_his.clone())),
            Err(DomainError::UserMismatch)
        );
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

    // ------------------------------------------------------------ the saga

    fn checkout() -> Command {
        Command::CheckoutCart(CheckoutCart {
            cart_id: line().cart_id,
            payment_method: None,
            requested_by: None,
        })
    }

    fn started(amount: &str) -> Event {
        Event::CheckoutStarted(Checkout {
            payment_method: line().payment_method,
            amount: amount.parse().expect("amount"),
            currency: line().currency,
            expires_at: at().now + at().payment_timeout,
        })
    }

    /// The answer to the checkout at version `checkout`.
    fn answer(checkout: u64, result: PaymentResult) -> Command {
        Command::RecordPayment(RecordPayment {
            cart_id: line().cart_id,
            checkout,
            payment_id: PaymentId::for_checkout(line().cart_id, checkout),
            result,
            amount: "427.98".parse().expect("amount"),
            reason: None,
        })
    }

    fn expire(checkout: u64) -> Command {
        Command::ExpireCheckout(ExpireCheckout {
            cart_id: line().cart_id,
            checkout,
        })
    }

    fn checked_out() -> Vec<Event> {
        vec![Event::OrderPlaced(line()), started("427.98")]
    }

    #[test]
    fn a_checkout_charges_the_active_lines_with_their_tax() {
        let l = line();
        let history = vec![
            Event::OrderPlaced(l.clone()),
            Event::OrderPlaced(other_line()),
            Event::OrderCancelled {
                order_id: other_line().order_id,
                reason: None,
            },
        ];
        // 389.98 subtotal + 38.00 tax; the cancelled line adds nothing.
        assert_eq!(given(history).when(checkout()), Ok(vec![started("427.98")]));
    }

    #[test]
    fn a_checkout_may_name_another_payment_method() {
        let Command::CheckoutCart(mut c) = checkout() else {
            unreachable!("checkout() builds a checkout")
        };
        c.payment_method = Some("test-decline".into());
        let events = given(vec![Event::OrderPlaced(line())])
            .when(Command::CheckoutCart(c))
            .expect("ok");
        assert!(
            matches!(&events[..], [Event::CheckoutStarted(c)] if c.payment_method == "test-decline")
        );
    }

    #[test]
    fn only_an_owned_cart_with_an_active_line_checks_out() {
        assert_eq!(
            given(vec![]).when(checkout()),
            Err(DomainError::CartNotFound)
        );
        let l = line();
        let emptied = vec![
            Event::OrderPlaced(l.clone()),
            Event::OrderCancelled {
                order_id: l.order_id,
                reason: None,
            },
        ];
        assert_eq!(given(emptied).when(checkout()), Err(DomainError::CartEmpty));
        let Command::CheckoutCart(mut foreign) = checkout() else {
            unreachable!("checkout() builds a checkout")
        };
        foreign.requested_by = Some("somebody-else".into());
        assert_eq!(
            given(vec![Event::OrderPlaced(l)]).when(Command::CheckoutCart(foreign)),
            Err(DomainError::CartNotFound),
            "another user's cart reads as no cart"
        );
    }

    #[test]
    fn a_repeated_checkout_is_a_no_op_that_finds_its_event() {
        let scenario = given(checked_out());
        assert_eq!(scenario.cart.satisfied_at(&checkout()), Some(2));
        assert_eq!(scenario.when(checkout()), Ok(vec![]));
    }

    #[test]
    fn a_checked_out_cart_takes_no_line_changes() {
        let l = line();
        assert_eq!(
            given(checked_out()).when(place(other_line())),
            Err(DomainError::CartClosed)
        );
        assert_eq!(
            given(checked_out()).when(cancel(&l)),
            Err(DomainError::CartClosed)
        );
        assert_eq!(
            given(checked_out()).when(place(l)),
            Ok(vec![]),
            "a repeated placement stays a no-op"
        );
    }

    #[test]
    fn a_successful_payment_pays_the_cart_once() {
        let events = given(checked_out())
            .when(answer(2, PaymentResult::Succeeded))
            .expect("ok");
        assert!(matches!(&events[..], [Event::PaymentSucceeded { .. }]));
        let mut paid = checked_out();
        paid.extend(events);
        let scenario = given(paid);
        assert_eq!(
            scenario
                .cart
                .satisfied_at(&answer(2, PaymentResult::Succeeded)),
            Some(3)
        );
        assert_eq!(
            scenario.when(answer(2, PaymentResult::Succeeded)),
            Ok(vec![])
        );
    }

    #[test]
    fn a_declined_payment_cancels_the_cart() {
        let events = given(checked_out())
            .when(answer(2, PaymentResult::Declined))
            .expect("ok");
        assert_eq!(
            events,
            vec![Event::CartCancelled {
                reason: CancelReason::PaymentDeclined,
                payment_id: Some(PaymentId::for_checkout(line().cart_id, 2)),
            }]
        );
    }

    #[test]
    fn an_answer_for_another_checkout_is_rejected() {
        assert_eq!(
            given(checked_out()).when(answer(7, PaymentResult::Succeeded)),
            Err(DomainError::CheckoutNotFound { checkout: 7 })
        );
        assert_eq!(
            given(vec![Event::OrderPlaced(line())]).when(expire(2)),
            Err(DomainError::CheckoutNotFound { checkout: 2 })
        );
    }

    #[test]
    fn the_deadline_cancels_an_unanswered_checkout_once_it_has_passed() {
        let mut early = given(checked_out()).cart;
        let not_yet = Context {
            now: at().now + at().payment_timeout - chrono::Duration::milliseconds(1),
            ..at()
        };
        assert!(matches!(
            early.decide(&expire(2), &not_yet),
            Err(DomainError::CheckoutNotDue { .. })
        ));
        let due = Context {
            now: at().now + at().payment_timeout,
            ..at()
        };
        let events = early.decide(&expire(2), &due).expect("due");
        assert_eq!(
            events,
            vec![Event::CartCancelled {
                reason: CancelReason::PaymentTimeout,
                payment_id: None,
            }]
        );
        early = early.apply(&RecordedEvent::number(
            line().cart_id,
            2,
            CommandId(uuid::Uuid::nil()),
            due.now,
            events,
        ));
        assert_eq!(early.satisfied_at(&expire(2)), Some(3));
        assert_eq!(early.decide(&expire(2), &due), Ok(vec![]));
    }

    #[test]
    fn a_late_success_changes_nothing_but_is_refunded_once() {
        let mut timed_out = checked_out();
        timed_out.push(Event::CartCancelled {
            reason: CancelReason::PaymentTimeout,
            payment_id: None,
        });
        let late = answer(2, PaymentResult::Succeeded);
        let events = given(timed_out.clone()).when(late.clone()).expect("ok");
        assert!(matches!(&events[..], [Event::RefundRequested { .. }]));
        timed_out.extend(events);
        let scenario = given(timed_out.clone());
        assert_eq!(scenario.cart.satisfied_at(&late), Some(4));
        assert_eq!(scenario.when(late), Ok(vec![]), "refunded once");
        assert_eq!(
            given(timed_out).when(answer(2, PaymentResult::Declined)),
            Ok(vec![]),
            "a late decline changes nothing"
        );
    }
}
