//! Read models: denormalized documents folded from events. Pure functions only;
//! the projector function stores them through [`crate::ports::ReadStore`].
//!
//! Every document carries `version`, the stream version of the last event
//! folded into it. Stores keep a document only if its version is newer than
//! the stored one, which makes projection idempotent under redelivery.

use crate::command::OrderLine;
use crate::event::{Event, RecordedEvent};
use crate::ids::{CartId, OrderId, PaymentId};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CartStatus {
    /// Takes new lines and cancellations (also once every line is cancelled).
    Open,
    /// Checked out: closed, its payment requested and not yet answered.
    CheckingOut,
    /// The payment succeeded: a confirmed sale.
    Paid,
    /// Compensated: the payment was declined or did not answer in time
    /// (`status_reason` says which). Its lines stay listed.
    Cancelled,
}

impl CartStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CartStatus::Open => "open",
            CartStatus::CheckingOut => "checking_out",
            CartStatus::Paid => "paid",
            CartStatus::Cancelled => "cancelled",
        }
    }
}

/// A cart's checkout: what it charges and how its payment went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutInfo {
    /// Stream version of the `checkout_started` event.
    pub version: u64,
    pub payment_method: String,
    /// Active subtotals plus tax at checkout time.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub amount: Decimal,
    pub started_at: DateTime<Utc>,
    /// When an unanswered payment is given up (`payment_timeout`).
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<PaymentId>,
    /// When the checkout ended: paid or cancelled, and at which version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_version: Option<u64>,
    /// A payment that succeeded after the cancellation, sent back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub refunded: Option<Decimal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    Active,
    Cancelled,
}

/// One document per cart. Cart-level fields come from the first line; totals
/// sum the active lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartDetail {
    pub cart_id: CartId,
    /// When the first line was created.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub user_id: String,
    pub payment_method: String,
    pub shipping_address: String,
    pub billing_address: String,
    pub shipping_method: String,
    pub currency: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tax_amount: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subtotal: Decimal,
    pub items: Vec<CartItem>,
    pub status: CartStatus,
    /// Why the cart is `cancelled`: `payment_declined` or `payment_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<CheckoutInfo>,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartItem {
    pub order_id: OrderId,
    pub product_name: String,
    pub quantity: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub amount: Decimal,
    pub seller_info: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub discounts: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tax_amount: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subtotal: Decimal,
    pub payment_method: String,
    pub created_at: DateTime<Utc>,
    pub status: LineStatus,
    /// Stream version of the last event about this line.
    pub version: u64,
}

/// One document per cart, for listing and full-text search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartSummary {
    pub cart_id: CartId,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    /// The active lines' product names as one text.
    pub products: String,
    pub shipping_address: String,
    pub billing_address: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tax_amount: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subtotal: Decimal,
    pub shipping_method: String,
    pub currency: String,
    pub item_count: u32,
    pub status: CartStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The checkout's `checkout_started` version while it is `checking_out`:
    /// what the saga's deadline names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_version: Option<u64>,
    /// When the checkout's payment is given up, while it is `checking_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_expires_at: Option<DateTime<Utc>>,
    pub version: u64,
}

/// One document per order line, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SalesLine {
    pub cart_id: CartId,
    pub order_id: OrderId,
    pub user_id: String,
    pub day: NaiveDate,
    pub created_at: DateTime<Utc>,
    pub product_name: String,
    pub seller_info: String,
    pub currency: String,
    pub payment_method: String,
    pub quantity: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub amount: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub discounts: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tax_amount: Decimal,
    /// Revenue of the line: amount * quantity - discounts.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subtotal: Decimal,
    pub status: LineStatus,
    /// The cart's status: reports can count only confirmed (`paid`) sales.
    /// Absent in documents projected before the checkout saga: `open`.
    #[serde(default = "open")]
    pub cart_status: CartStatus,
    pub version: u64,
}

fn open() -> CartStatus {
    CartStatus::Open
}

impl SalesLine {
    /// Document id: order ids are unique per cart only.
    pub fn doc_id(&self) -> String {
        format!("{}:{}", self.cart_id, self.order_id)
    }
}

/// What to do with an event given the version a document already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Already folded (a redelivery or replay).
    Skip,
    /// The next event of the stream.
    Apply,
    /// Events between the document and this one are missing; refold from the store.
    Gap,
}

pub fn step(document_version: u64, event_version: u64) -> Step {
    if event_version <= document_version {
        Step::Skip
    } else if event_version == document_version + 1 {
        Step::Apply
    } else {
        Step::Gap
    }
}

impl CartDetail {
    /// Folds one event into the document. `None` in, any event but a
    /// placement: `None` out (only a line can start a stream).
    pub fn apply(doc: Option<CartDetail>, e: &RecordedEvent) -> Option<CartDetail> {
        let mut doc = match (doc, &e.event) {
            (Some(doc), _) => doc,
            (None, Event::OrderPlaced(line)) => CartDetail::open(e.cart_id, line),
            (None, _) => return None,
        };
        match &e.event {
            Event::OrderPlaced(line) => {
                if !doc.items.iter().any(|i| i.order_id == line.order_id) {
                    doc.items.push(CartItem::from_line(line, e.version));
                }
            }
            Event::OrderCancelled { order_id, .. } => {
                if let Some(item) = doc.items.iter_mut().find(|i| i.order_id == *order_id) {
                    item.status = LineStatus::Cancelled;
                    item.version = e.version;
                }
            }
            Event::CheckoutStarted(c) => {
                doc.status = CartStatus::CheckingOut;
                doc.checkout = Some(CheckoutInfo {
                    version: e.version,
                    payment_method: c.payment_method.clone(),
                    amount: c.amount,
                    started_at: e.recorded_at,
                    expires_at: c.expires_at,
                    payment_id: None,
                    settled_at: None,
                    settled_version: None,
                    refunded: None,
                });
            }
            Event::PaymentSucceeded { payment_id, .. } => {
                doc.status = CartStatus::Paid;
                if let Some(checkout) = &mut doc.checkout {
                    checkout.payment_id = Some(*payment_id);
                    checkout.settled_at = Some(e.recorded_at);
                    checkout.settled_version = Some(e.version);
                }
            }
            Event::CartCancelled { reason, payment_id } => {
                doc.status = CartStatus::Cancelled;
                doc.status_reason = Some(reason.code().into());
                if let Some(checkout) = &mut doc.checkout {
                    checkout.payment_id = *payment_id;
                    checkout.settled_at = Some(e.recorded_at);
                    checkout.settled_version = Some(e.version);
                }
            }
            Event::RefundRequested { amount, .. } => {
                if let Some(checkout) = &mut doc.checkout {
                    checkout.refunded = Some(*amount);
                }
            }
        }
        doc.version = e.version;
        doc.updated_at = e.recorded_at;
        doc.recompute();
        Some(doc)
    }

    pub fn fold<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Option<CartDetail> {
        events.into_iter().fold(None, CartDetail::apply)
    }

    fn open(cart_id: CartId, line: &OrderLine) -> CartDetail {
        CartDetail {
            cart_id,
            created_at: line.created_at,
            updated_at: line.created_at,
            user_id: line.user_id.clone(),
            payment_method: line.payment_method.clone(),
            shipping_address: line.shipping_address.clone(),
            billing_address: line.billing_address.clone(),
            shipping_method: line.shipping_method.clone(),
            currency: line.currency.to_string(),
            tax_amount: Decimal::ZERO,
            subtotal: Decimal::ZERO,
            items: Vec::new(),
            status: CartStatus::Open,
            status_reason: None,
            checkout: None,
            version: 0,
        }
    }

    fn active_items(&self) -> impl Iterator<Item = &CartItem> {
        self.items.iter().filter(|i| i.status == LineStatus::Active)
    }

    fn recompute(&mut self) {
        self.tax_amount = self.active_items().map(|i| i.tax_amount).sum();
        self.subtotal = self.active_items().map(|i| i.subtotal).sum();
    }

    /// The stream version of the cart's last status change (0: still open).
    fn status_version(&self) -> u64 {
        self.checkout
            .as_ref()
            .map_or(0, |c| c.settled_version.unwrap_or(c.version))
    }

    pub fn summary(&self) -> CartSummary {
        CartSummary {
            cart_id: self.cart_id,
            user_id: self.user_id.clone(),
            created_at: self.created_at,
            products: self
                .active_items()
                .map(|i| i.product_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            shipping_address: self.shipping_address.clone(),
            billing_address: self.billing_address.clone(),
            tax_amount: self.tax_amount,
            subtotal: self.subtotal,
            shipping_method: self.shipping_method.clone(),
            currency: self.currency.clone(),
            item_count: u32::try_from(self.active_items().count()).unwrap_or(u32::MAX),
            status: self.status,
            status_reason: self.status_reason.clone(),
            checkout_version: self
                .checkout
                .as_ref()
                .filter(|_| self.status == CartStatus::CheckingOut)
                .map(|c| c.version),
            checkout_expires_at: self
                .checkout
                .as_ref()
                .filter(|_| self.status == CartStatus::CheckingOut)
                .map(|c| c.expires_at),
            version: self.version,
        }
    }

    /// The items whose sales-line documents `event` changed, once folded
    /// into this detail: its own line, or, for a cart-level event (the
    /// saga's), every line, whose cart status it changed.
    pub fn lines_changed_by(&self, event: &Event) -> Vec<OrderId> {
        match event.order_id() {
            Some(order_id) => vec![order_id],
            None => self.items.iter().map(|i| i.order_id).collect(),
        }
    }

    /// The sales-line document of one item of this cart.
    pub fn sales_line(&self, order_id: OrderId) -> Option<SalesLine> {
        let item = self.items.iter().find(|i| i.order_id == order_id)?;
        Some(SalesLine {
            cart_id: self.cart_id,
            order_id: item.order_id,
            user_id: self.user_id.clone(),
            day: item.created_at.date_naive(),
            created_at: item.created_at,
            product_name: item.product_name.clone(),
            seller_info: item.seller_info.clone(),
            currency: self.currency.clone(),
            payment_method: item.payment_method.clone(),
            quantity: item.quantity,
            amount: item.amount,
            discounts: item.discounts,
            tax_amount: item.tax_amount,
            subtotal: item.subtotal,
            status: item.status,
            cart_status: self.status,
            // A line's document changes with its cart's status too.
            version: item.version.max(self.status_version()),
        })
    }
}

impl CartItem {
    fn from_line(line: &OrderLine, version: u64) -> CartItem {
        CartItem {
            order_id: line.order_id,
            product_name: line.product_name.clone(),
            quantity: line.quantity,
            amount: line.amount.value(),
            seller_info: line.seller_info.clone(),
            discounts: line.discounts.value(),
            tax_amount: line.tax_amount.value(),
            subtotal: line.subtotal.value(),
            payment_method: line.payment_method.clone(),
            created_at: line.created_at,
            status: LineStatus::Active,
            version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CommandId;
    use crate::testing::{line, other_line};
    use chrono::Utc;

    fn stream(events: Vec<Event>) -> Vec<RecordedEvent> {
        RecordedEvent::number(
            line().cart_id,
            0,
            CommandId(uuid::Uuid::nil()),
            Utc::now(),
            events,
        )
    }

    #[test]
    fn a_cart_detail_sums_the_active_lines() {
        let events = stream(vec![
            Event::OrderPlaced(line()),
            Event::OrderPlaced(other_line()),
        ]);
        let doc = CartDetail::fold(&events).expect("cart");
        assert_eq!(doc.items.len(), 2);
        assert_eq!(doc.subtotal.to_string(), "439.98");
        assert_eq!(doc.tax_amount.to_string(), "47.50");
        assert_eq!(doc.version, 2);
        assert_eq!(doc.status, CartStatus::Open);
        assert_eq!(doc.created_at, line().created_at);
    }

    #[test]
    fn a_cancelled_line_stays_listed_but_leaves_the_totals() {
        let l = line();
        let events = stream(vec![
            Event::OrderPlaced(l.clone()),
            Event::OrderPlaced(other_line()),
            Event::OrderCancelled {
                order_id: l.order_id,
                reason: None,
            },
        ]);
        let doc = CartDetail::fold(&events).expect("cart");
        assert_eq!(doc.items.len(), 2);
        assert_eq!(doc.subtotal.to_string(), "50.00");
        assert_eq!(doc.summary().products, "Coffee grinder");
        let sales = doc.sales_line(l.order_id).expect("line");
        assert_eq!((sales.status, sales.version), (LineStatus::Cancelled, 3));
    }

    #[test]
    fn cancelling_every_line_leaves_an_open_empty_cart() {
        let l = line();
        let events = stream(vec![
            Event::OrderPlaced(l.clone()),
            Event::OrderCancelled {
                order_id: l.order_id,
                reason: None,
            },
        ]);
        let doc = CartDetail::fold(&events).expect("cart");
        assert_eq!(
            (doc.status, doc.subtotal),
            (CartStatus::Open, Decimal::ZERO)
        );
    }

    fn checkout_started() -> Event {
        Event::CheckoutStarted(crate::event::Checkout {
            payment_method: "card".into(),
            amount: "427.98".parse().expect("amount"),
            currency: line().currency,
            expires_at: Utc::now(),
        })
    }

    #[test]
    fn the_saga_moves_the_cart_and_its_lines_through_their_statuses() {
        let l = line();
        let mut events = vec![Event::OrderPlaced(l.clone()), checkout_started()];
        let doc = CartDetail::fold(&stream(events.clone())).expect("cart");
        assert_eq!(doc.status, CartStatus::CheckingOut);
        let summary = doc.summary();
        assert_eq!(summary.checkout_version, Some(2));
        assert!(summary.checkout_expires_at.is_some());
        let sales = doc.sales_line(l.order_id).expect("line");
        assert_eq!(
            (sales.cart_status, sales.version),
            (CartStatus::CheckingOut, 2)
        );

        let payment_id = PaymentId::for_checkout(l.cart_id, 2);
        let mut paid = events.clone();
        paid.push(Event::PaymentSucceeded {
            payment_id,
            amount: "427.98".parse().expect("amount"),
        });
        let doc = CartDetail::fold(&stream(paid)).expect("cart");
        assert_eq!(doc.status, CartStatus::Paid);
        let checkout = doc.checkout.clone().expect("checkout");
        assert_eq!(
            (checkout.payment_id, checkout.settled_version),
            (Some(payment_id), Some(3))
        );
        assert_eq!(doc.summary().checkout_version, None, "no longer due");
        assert_eq!(doc.sales_line(l.order_id).expect("line").version, 3);

        events.push(Event::CartCancelled {
            reason: crate::event::CancelReason::PaymentTimeout,
            payment_id: None,
        });
        let doc = CartDetail::fold(&stream(events)).expect("cart");
        assert_eq!(doc.status, CartStatus::Cancelled);
        assert_eq!(doc.status_reason.as_deref(), Some("payment_timeout"));
        assert_eq!(doc.subtotal.to_string(), "389.98", "nothing is deleted");
        let sales = doc.sales_line(l.order_id).expect("line");
        assert_eq!(
            (sales.status, sales.cart_status),
            (LineStatus::Active, CartStatus::Cancelled)
        );
    }

    #[test]
    fn a_saga_event_cannot_start_a_stream() {
        assert_eq!(CartDetail::fold(&stream(vec![checkout_started()])), None);
    }

    #[test]
    fn folding_the_same_placement_twice_does_not_duplicate_the_item() {
        let events = stream(vec![Event::OrderPlaced(line())]);
        let once = CartDetail::fold(&events).expect("cart");
        let twice = CartDetail::apply(Some(once.clone()), &events[0]).expect("cart");
        assert_eq!(twice.items.len(), 1);
        assert_eq!(twice.subtotal, once.subtotal);
    }

    #[test]
    fn the_summary_joins_product_names() {
        let events = stream(vec![
            Event::OrderPlaced(line()),
            Event::OrderPlaced(other_line()),
        ]);
        let summary = CartDetail::fold(&events).expect("cart").summary();
        assert_eq!(summary.products, "Espresso machine, Coffee grinder");
        assert_eq!(summary.item_count, 2);
    }

    #[test]
    fn step_tells_replays_next_events_and_gaps_apart() {
        assert_eq!(step(3, 2), Step::Skip);
        assert_eq!(step(3, 3), Step::Skip);
        assert_eq!(step(3, 4), Step::Apply);
        assert_eq!(step(3, 6), Step::Gap);
        assert_eq!(step(0, 1), Step::Apply);
    }
}
