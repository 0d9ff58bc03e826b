//! Wire formats: the explicit, versioned shapes of everything salestrack puts
//! on Kafka or into a store. Domain types never go on the wire directly.
//!
//! Every record is a JSON envelope `{ "schema_version", "type", ..., "data" }`.
//! `data` is decoded by `type` after the envelope, which keeps decoding free
//! of serde's buffered enum paths (they mangle arbitrary-precision numbers).

use crate::command::{
    CancelOrder, CheckoutCart, Command, ExpireCheckout, OrderLine, PaymentResult, PlaceOrder,
    RecordPayment, ValidationErrors, CANCEL_ORDER, CHECKOUT_CART, EXPIRE_CHECKOUT, PLACE_ORDER,
    RECORD_PAYMENT,
};
use crate::event::{CancelReason, Checkout, Event, RecordedEvent};
use crate::ids::{CartId, CommandId, EventId, OrderId, PaymentId};
use crate::money::{Currency, Money};
use crate::ports::OutboundRecord;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SCHEMA_VERSION: u32 = 1;

/// Why bytes could not be turned into a record. A decode error is permanent:
/// the record is poison and goes to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not valid JSON for a {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported schema_version {0}")]
    SchemaVersion(u32),
    #[error("unknown {what} type {kind:?}")]
    UnknownType { what: &'static str, kind: String },
    #[error("invalid command: {0}")]
    InvalidCommand(#[from] ValidationErrors),
    #[error("{kind} version {from} cannot be upcast: {why}")]
    Upcast {
        kind: &'static str,
        from: u32,
        why: String,
    },
    #[error("{kind}: {why}")]
    Inconsistent { kind: &'static str, why: String },
}

fn json<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|source| DecodeError::Json { what, source })
}

fn from_value<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    value: Value,
) -> Result<T, DecodeError> {
    serde_json::from_value(value).map_err(|source| DecodeError::Json { what, source })
}

fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (string keys, no maps of non-string keys) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn check_schema(version: u32) -> Result<(), DecodeError> {
    if version == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(DecodeError::SchemaVersion(version))
    }
}

/// The order line as it travels and is stored (schema 1). Field names match the HTTP body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderLineV1 {
    pub order_id: OrderId,
    pub cart_id: CartId,
    pub user_id: String,
    pub product_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_info: Option<String>,
    pub quantity: u32,
    pub amount: Money,
    pub discounts: Money,
    pub tax_amount: Money,
    pub subtotal: Money,
    pub payment_method: String,
    pub shipping_address: String,
    pub billing_address: String,
    pub shipping_method: String,
    pub currency: Currency,
    pub seller_info: String,
    pub created_at: DateTime<Utc>,
}

impl From<&OrderLine> for OrderLineV1 {
    fn from(l: &OrderLine) -> Self {
        OrderLineV1 {
            order_id: l.order_id,
            cart_id: l.cart_id,
            user_id: l.user_id.clone(),
            product_name: l.product_name.clone(),
            product_info: l.product_info.clone(),
            quantity: l.quantity,
            amount: l.amount,
            discounts: l.discounts,
            tax_amount: l.tax_amount,
            subtotal: l.subtotal,
            payment_method: l.payment_method.clone(),
            shipping_address: l.shipping_address.clone(),
            billing_address: l.billing_address.clone(),
            shipping_method: l.shipping_method.clone(),
            currency: l.currency,
            seller_info: l.seller_info.clone(),
            created_at: l.created_at,
        }
    }
}

impl From<OrderLineV1> for OrderLine {
    fn from(l: OrderLineV1) -> Self {
        OrderLine {
            order_id: l.order_id,
            cart_id: l.cart_id,
            user_id: l.user_id,
            product_name: l.product_name,
            product_info: l.product_info,
            quantity: l.quantity,
            amount: l.amount,
            discounts: l.discounts,
            tax_amount: l.tax_amount,
            subtotal: l.subtotal,
            payment_method: l.payment_method,
            shipping_address: l.shipping_address,
            billing_address: l.billing_address,
            shipping_method: l.shipping_method,
            currency: l.currency,
            seller_info: l.seller_info,
            created_at: l.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelOrderV1 {
    pub cart_id: CartId,
    pub order_id: OrderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Added without a version bump: absent in older records, which were
    /// accepted with authentication off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckoutCartV1 {
    cart_id: CartId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payment_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordPaymentV1 {
    cart_id: CartId,
    checkout: u64,
    payment_id: PaymentId,
    result: PaymentResult,
    amount: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExpireCheckoutV1 {
    cart_id: CartId,
    checkout: u64,
}

// ---------------------------------------------------------------- commands

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommandEnvelope {
    schema_version: u32,
    #[serde(rename = "type")]
    kind: String,
    command_id: CommandId,
    accepted_at: DateTime<Utc>,
    data: Value,
}

/// A command as produced by the command function onto `sales.commands`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub command_id: CommandId,
    pub accepted_at: DateTime<Utc>,
    pub command: Command,
}

impl CommandRecord {
    pub fn encode(&self) -> Vec<u8> {
        let data = match &self.command {
            Command::PlaceOrder(p) => to_value(&OrderLineV1::from(&p.line)),
            Command::CancelOrder(c) => to_value(&CancelOrderV1 {
                cart_id: c.cart_id,
                order_id: c.order_id,
                reason: c.reason.clone(),
                requested_by: c.requested_by.clone(),
            }),
            Command::CheckoutCart(c) => to_value(&CheckoutCartV1 {
                cart_id: c.cart_id,
                payment_method: c.payment_method.clone(),
                requested_by: c.requested_by.clone(),
            }),
            Command::RecordPayment(p) => to_value(&RecordPaymentV1 {
                cart_id: p.cart_id,
                checkout: p.checkout,
                payment_id: p.payment_id,
                result: p.result,
                amount: p.amount,
                reason: p.reason.clone(),
            }),
            Command::ExpireCheckout(e) => to_value(&ExpireCheckoutV1 {
                cart_id: e.cart_id,
                checkout: e.checkout,
            }),
        };
        to_bytes(&CommandEnvelope {
            schema_version: SCHEMA_VERSION,
            kind: self.command.kind().into(),
            command_id: self.command_id,
            accepted_at: self.accepted_at,
            data,
        })
    }

    /// The record on the commands topic: keyed by cart (one partition keeps
    /// a cart's commands in order), with the headers every consumer reads.
    pub fn outbound(&self, topic: &str, trace: crate::headers::TraceParent) -> OutboundRecord {
        use crate::headers as h;
        OutboundRecord {
            topic: topic.to_owned(),
            key: self.command.cart_id().to_string().into_bytes(),
            value: self.encode(),
            headers: vec![
                (h::CONTENT_TYPE.into(), b"application/json".to_vec()),
                (
                    h::MESSAGE_TYPE.into(),
                    self.command.kind().as_bytes().to_vec(),
                ),
                (
                    h::SCHEMA_VERSION.into(),
                    SCHEMA_VERSION.to_string().into_bytes(),
                ),
                (
                    h::COMMAND_ID.into(),
                    self.command_id.to_string().into_bytes(),
                ),
                trace.header(),
                h::accepted_at(self.accepted_at),
            ],
        }
    }

    /// Decodes and re-validates: the domain never trusts a producer it does not own.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: CommandEnvelope = json("command", bytes)?;
        check_schema(envelope.schema_version)?;
        let command = match envelope.kind.as_str() {
            PLACE_ORDER => Command::PlaceOrder(PlaceOrder::parse(&envelope.data)?),
            CANCEL_ORDER => {
                let c: CancelOrderV1 = from_value("cancel_order", envelope.data)?;
                Command::CancelOrder(CancelOrder {
                    cart_id: c.cart_id,
                    order_id: c.order_id,
                    reason: c.reason,
                    requested_by: c.requested_by,
                })
            }
            CHECKOUT_CART => {
                let c: CheckoutCartV1 = from_value(CHECKOUT_CART, envelope.data)?;
                Command::CheckoutCart(CheckoutCart {
                    cart_id: c.cart_id,
                    payment_method: c.payment_method,
                    requested_by: c.requested_by,
                })
            }
            RECORD_PAYMENT => {
                let p: RecordPaymentV1 = from_value(RECORD_PAYMENT, envelope.data)?;
                Command::RecordPayment(RecordPayment {
                    cart_id: p.cart_id,
                    checkout: p.checkout,
                    payment_id: p.payment_id,
                    result: p.result,
                    amount: p.amount,
                    reason: p.reason,
                })
            }
            EXPIRE_CHECKOUT => {
                let e: ExpireCheckoutV1 = from_value(EXPIRE_CHECKOUT, envelope.data)?;
                Command::ExpireCheckout(ExpireCheckout {
                    cart_id: e.cart_id,
                    checkout: e.checkout,
                })
            }
            other => {
                return Err(DecodeError::UnknownType {
                    what: "command",
                    kind: other.into(),
                })
            }
        };
        Ok(CommandRecord {
            command_id: envelope.command_id,
            accepted_at: envelope.accepted_at,
            command,
        })
    }
}

// ---------------------------------------------------------------- events

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EventEnvelope {
    schema_version: u32,
    #[serde(rename = "type")]
    kind: String,
    event_id: EventId,
    cart_id: CartId,
    version: u64,
    command_id: CommandId,
    recorded_at: DateTime<Utc>,
    data: Value,
}

/// The shape of a recorded event in the event store and on `sales.events`.
pub fn encode_event(e: &RecordedEvent) -> Vec<u8> {
    to_bytes(&event_envelope(e))
}

/// The `data` part only, in the current version of its type.
pub fn encode_event_data(event: &Event) -> Value {
    match event {
        Event::OrderPlaced(line) => to_value(&OrderPlacedV2::from(line)),
        Event::OrderCancelled { order_id, reason } => to_value(&OrderCancelledV1 {
            order_id: *order_id,
            reason: reason.clone(),
        }),
        Event::CheckoutStarted(c) => to_value(&CheckoutStartedV1 {
            payment_method: c.payment_method.clone(),
            amount: c.amount,
            currency: c.currency,
            expires_at: c.expires_at,
        }),
        Event::PaymentSucceeded { payment_id, amount } => to_value(&PaymentV1 {
            payment_id: *payment_id,
            amount: *amount,
        }),
        Event::CartCancelled { reason, payment_id } => to_value(&CartCancelledV1 {
            reason: reason.code().into(),
            payment_id: *payment_id,
        }),
        Event::RefundRequested {
            checkout,
            payment_id,
            amount,
        } => to_value(&RefundRequestedV1 {
            checkout: *checkout,
            payment_id: *payment_id,
            amount: *amount,
        }),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckoutStartedV1 {
    payment_method: String,
    amount: Decimal,
    currency: Currency,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentV1 {
    payment_id: PaymentId,
    amount: Decimal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefundRequestedV1 {
    checkout: u64,
    payment_id: PaymentId,
    amount: Decimal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CartCancelledV1 {
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payment_id: Option<PaymentId>,
}

/// The schema version this build writes events of type `kind` in.
pub fn event_schema_version(kind: &str) -> u32 {
    crate::upcast::current_version(kind)
}

fn event_envelope(e: &RecordedEvent) -> EventEnvelope {
    EventEnvelope {
        schema_version: event_schema_version(e.event.kind()),
        kind: e.event.kind().into(),
        event_id: e.event_id,
        cart_id: e.cart_id,
        version: e.version,
        command_id: e.command_id,
        recorded_at: e.recorded_at,
        data: encode_event_data(&e.event),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderCancelledV1 {
    order_id: OrderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Money as it is stored since `order_placed` version 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MoneyV2 {
    amount: Money,
    currency: Currency,
}

/// `order_placed`, version 2: every amount with its currency.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlacedV2 {
    order_id: OrderId,
    cart_id: CartId,
    user_id: String,
    product_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    product_info: Option<String>,
    quantity: u32,
    unit_price: MoneyV2,
    discounts: MoneyV2,
    tax: MoneyV2,
    subtotal: MoneyV2,
    payment_method: String,
    shipping_address: String,
    billing_address: String,
    shipping_method: String,
    seller_info: String,
    created_at: DateTime<Utc>,
}

impl From<&OrderLine> for OrderPlacedV2 {
    fn from(l: &OrderLine) -> Self {
        let money = |amount: Money| MoneyV2 {
            amount,
            currency: l.currency,
        };
        OrderPlacedV2 {
            order_id: l.order_id,
            cart_id: l.cart_id,
            user_id: l.user_id.clone(),
            product_name: l.product_name.clone(),
            product_info: l.product_info.clone(),
            quantity: l.quantity,
            unit_price: money(l.amount),
            discounts: money(l.discounts),
            tax: money(l.tax_amount),
            subtotal: money(l.subtotal),
            payment_method: l.payment_method.clone(),
            shipping_address: l.shipping_address.clone(),
            billing_address: l.billing_address.clone(),
            shipping_method: l.shipping_method.clone(),
            seller_info: l.seller_info.clone(),
            created_at: l.created_at,
        }
    }
}

impl TryFrom<OrderPlacedV2> for OrderLine {
    type Error = DecodeError;

    /// A line has one currency: money in several is not a line.
    fn try_from(l: OrderPlacedV2) -> Result<Self, DecodeError> {
        let currency = l.unit_price.currency;
        if [&l.discounts, &l.tax, &l.subtotal]
            .iter()
            .any(|m| m.currency != currency)
        {
            return Err(DecodeError::Inconsistent {
                kind: "order_placed",
                why: "a line's money is in more than one currency".into(),
            });
        }
        Ok(OrderLine {
            order_id: l.order_id,
            cart_id: l.cart_id,
            user_id: l.user_id,
            product_name: l.product_name,
            product_info: l.product_info,
            quantity: l.quantity,
            amount: l.unit_price.amount,
            discounts: l.discounts.amount,
            tax_amount: l.tax.amount,
            subtotal: l.subtotal.amount,
            payment_method: l.payment_method,
            shipping_address: l.shipping_address,
            billing_address: l.billing_address,
            shipping_method: l.shipping_method,
            currency,
            seller_info: l.seller_info,
            created_at: l.created_at,
        })
    }
}

/// Events are facts: decoding does not re-apply today's validation rules.
/// Every earlier version of a type is upcast to the current one first
/// ([`crate::upcast`]).
pub fn decode_event(bytes: &[u8]) -> Result<RecordedEvent, DecodeError> {
    let envelope: EventEnvelope = json("event", bytes)?;
    let data = crate::upcast::to_current(&envelope.kind, envelope.schema_version, envelope.data)?;
    let event = decode_event_data(&envelope.kind, data)?;
    Ok(RecordedEvent {
        event_id: envelope.event_id,
        cart_id: envelope.cart_id,
        version: envelope.version,
        command_id: envelope.command_id,
        recorded_at: envelope.recorded_at,
        schema_version: envelope.schema_version,
        event,
    })
}

pub fn decode_event_data(kind: &str, data: Value) -> Result<Event, DecodeError> {
    match kind {
        "order_placed" => Ok(Event::OrderPlaced(
            from_value::<OrderPlacedV2>("order_placed", data)?.try_into()?,
        )),
        "order_cancelled" => {
            let c: OrderCancelledV1 = from_value("order_cancelled", data)?;
            Ok(Event::OrderCancelled {
                order_id: c.order_id,
                reason: c.reason,
            })
        }
        "checkout_started" => {
            let c: CheckoutStartedV1 = from_value("checkout_started", data)?;
            Ok(Event::CheckoutStarted(Checkout {
                payment_method: c.payment_method,
                amount: c.amount,
                currency: c.currency,
                expires_at: c.expires_at,
            }))
        }
        "payment_succeeded" => {
            let p: PaymentV1 = from_value("payment_succeeded", data)?;
            Ok(Event::PaymentSucceeded {
                payment_id: p.payment_id,
                amount: p.amount,
            })
        }
        "cart_cancelled" => {
            let c: CartCancelledV1 = from_value("cart_cancelled", data)?;
            let reason = CancelReason::from_code(&c.reason).ok_or(DecodeError::UnknownType {
                what: "cancel reason",
                kind: c.reason,
            })?;
            Ok(Event::CartCancelled {
                reason,
                payment_id: c.payment_id,
            })
        }
        "refund_requested" => {
            let r: RefundRequestedV1 = from_value("refund_requested", data)?;
            Ok(Event::RefundRequested {
                checkout: r.checkout,
                payment_id: r.payment_id,
                amount: r.amount,
            })
        }
        other => Err(DecodeError::UnknownType {
            what: "event",
            kind: other.into(),
        }),
    }
}

// ---------------------------------------------------------------- payments

/// What the domain asks of the payment gateway, on the payments topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentRequestKind {
    /// Charge a checkout (from `checkout_started`).
    Charge,
    /// Give back a payment that succeeded after its checkout was cancelled
    /// (from `refund_requested`).
    Refund,
    /// The checkout was cancelled for want of an answer (`cart_cancelled`
    /// with `payment_timeout`): if the ledger holds a charge of it after
    /// all (its answer was lost), answer again from the ledger, so the
    /// domain asks for the refund a late payment gets.
    Reconcile,
}

/// A payment request, keyed by cart like every other record about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequest {
    pub schema_version: u32,
    #[serde(rename = "type")]
    pub kind: PaymentRequestKind,
    /// The gateway's idempotency key: one per checkout.
    pub payment_id: PaymentId,
    pub cart_id: CartId,
    /// The stream version of the checkout's `checkout_started`.
    pub checkout: u64,
    pub amount: Decimal,
    /// The checkout's currency and payment method (charges only: a refund
    /// goes back the way its charge came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// When the domain stops waiting for the answer (charges only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the domain recorded the event that asked.
    pub requested_at: DateTime<Utc>,
}

impl PaymentRequest {
    /// The request an event asks for: `checkout_started` charges,
    /// `refund_requested` refunds; other events ask nothing.
    pub fn for_event(e: &RecordedEvent) -> Option<PaymentRequest> {
        let request = |kind, checkout, amount| PaymentRequest {
            schema_version: SCHEMA_VERSION,
            kind,
            payment_id: PaymentId::for_checkout(e.cart_id, checkout),
            cart_id: e.cart_id,
            checkout,
            amount,
            currency: None,
            payment_method: None,
            expires_at: None,
            requested_at: e.recorded_at,
        };
        match &e.event {
            Event::CheckoutStarted(c) => Some(PaymentRequest {
                currency: Some(c.currency),
                payment_method: Some(c.payment_method.clone()),
                expires_at: Some(c.expires_at),
                ..request(PaymentRequestKind::Charge, e.version, c.amount)
            }),
            Event::RefundRequested {
                checkout, amount, ..
            } => Some(request(PaymentRequestKind::Refund, *checkout, *amount)),
            _ => None,
        }
    }

    /// The request a cancel for `payment_timeout` asks for: reconcile the
    /// checkout at stream version `checkout` (the `expire_checkout`
    /// command's) with the ledger; other events ask nothing of it.
    pub fn reconcile(e: &RecordedEvent, checkout: u64) -> Option<PaymentRequest> {
        let Event::CartCancelled {
            reason: crate::event::CancelReason::PaymentTimeout,
            ..
        } = &e.event
        else {
            return None;
        };
        Some(PaymentRequest {
            schema_version: SCHEMA_VERSION,
            kind: PaymentRequestKind::Reconcile,
            payment_id: PaymentId::for_checkout(e.cart_id, checkout),
            cart_id: e.cart_id,
            checkout,
            amount: Decimal::ZERO,
            currency: None,
            payment_method: None,
            expires_at: None,
            requested_at: e.recorded_at,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        to_bytes(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let request: PaymentRequest = json("payment request", bytes)?;
        check_schema(request.schema_version)?;
        Ok(request)
    }
}

// ---------------------------------------------------------------- outcomes

/// What the domain decided about one command, published on `sales.outcomes`
/// so that a client can learn why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    pub schema_version: u32,
    pub command_id: CommandId,
    pub cart_id: CartId,
    /// The order line of `place_order` and `cancel_order`; none for the
    /// cart-level commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    /// `place_order`, `cancel_order`, `checkout_cart`, `record_payment` or
    /// `expire_checkout`.
    pub command_type: String,
    pub status: OutcomeStatus,
    /// The cart's stream version once the command was decided.
    pub version: u64,
    /// True when the command repeated one already applied (an idempotent no-op).
    #[serde(default)]
    pub duplicate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub decided_at: DateTime<Utc>,
    /// Who sent the command (the line's user, or the authenticated sender
    /// of a cancel): only they may read its status when authentication is
    /// on. Absent in outcomes decided before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Applied,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Outcome {
    pub fn encode(&self) -> Vec<u8> {
        to_bytes(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let outcome: Outcome = json("outcome", bytes)?;
        check_schema(outcome.schema_version)?;
        Ok(outcome)
    }
}

// ------------------------------------------------------------- projections

/// The projector's word that a cart's read models reached a stream version:
/// published on `sales.projections` after the documents are written, so a
/// reader told of it reads at least that version. A hint, never a fact:
/// live streams read the read models themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartProjected {
    pub cart_id: CartId,
    pub version: u64,
}

impl CartProjected {
    pub fn encode(&self) -> Vec<u8> {
        to_bytes(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        json("cart projection notice", bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{line, order_body};
    use chrono::TimeZone;

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
