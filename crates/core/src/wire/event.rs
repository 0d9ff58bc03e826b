//! Events in the event store and on `sales.events`: the envelope, each
//! kind's `data` in its current version, and the outbound record the domain
//! publishes. Earlier versions are upcast first ([`crate::wire::upcast`]).

use crate::bus::OutboundRecord;
use crate::command::OrderLine;
use crate::event::{CancelReason, Checkout, Event, EventKind, RecordedEvent};
use crate::headers::{self as h, TraceParent};
use crate::ids::{CartId, CommandId, EventId, OrderId, PaymentId};
use crate::money::{Currency, Money};
use crate::wire::codec::{from_value, json, to_bytes, to_value, DecodeError};
use crate::wire::upcast;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// The record an event is published in: keyed by cart, traced as a child of
/// its command's trace, stamped with the time its command was accepted.
pub fn outbound(
    e: &RecordedEvent,
    topic: &str,
    command_trace: TraceParent,
    accepted_at: DateTime<Utc>,
) -> OutboundRecord {
    let kind = e.event.kind();
    OutboundRecord {
        topic: topic.to_owned(),
        key: e.cart_id.to_string().into_bytes(),
        value: encode_event(e),
        headers: vec![
            h::message_type(kind.as_str()),
            h::schema_version(kind.schema_version()),
            h::event_id(e.event_id),
            h::command_id(e.command_id),
            command_trace.event_in(e.event_id).header(),
            h::accepted_at(accepted_at),
        ],
    }
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

fn event_envelope(e: &RecordedEvent) -> EventEnvelope {
    EventEnvelope {
        schema_version: e.event.kind().schema_version(),
        kind: e.event.kind().as_str().into(),
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
/// ([`crate::wire::upcast`]).
pub fn decode_event(bytes: &[u8]) -> Result<RecordedEvent, DecodeError> {
    let envelope: EventEnvelope = json("event", bytes)?;
    let kind = EventKind::parse(&envelope.kind).ok_or_else(|| DecodeError::UnknownType {
        what: "event",
        kind: envelope.kind.clone(),
    })?;
    let data = upcast::to_current(kind, envelope.schema_version, envelope.data)?;
    let event = decode_event_data(kind, data)?;
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

/// `data` of the current version of `kind`.
pub fn decode_event_data(kind: EventKind, data: Value) -> Result<Event, DecodeError> {
    match kind {
        EventKind::OrderPlaced => Ok(Event::OrderPlaced(
            from_value::<OrderPlacedV2>(kind.as_str(), data)?.try_into()?,
        )),
        EventKind::OrderCancelled => {
            let c: OrderCancelledV1 = from_value(kind.as_str(), data)?;
            Ok(Event::OrderCancelled {
                order_id: c.order_id,
                reason: c.reason,
            })
        }
        EventKind::CheckoutStarted => {
            let c: CheckoutStartedV1 = from_value(kind.as_str(), data)?;
            Ok(Event::CheckoutStarted(Checkout {
                payment_method: c.payment_method,
                amount: c.amount,
                currency: c.currency,
                expires_at: c.expires_at,
            }))
        }
        EventKind::PaymentSucceeded => {
            let p: PaymentV1 = from_value(kind.as_str(), data)?;
            Ok(Event::PaymentSucceeded {
                payment_id: p.payment_id,
                amount: p.amount,
            })
        }
        EventKind::CartCancelled => {
            let c: CartCancelledV1 = from_value(kind.as_str(), data)?;
            let reason = CancelReason::from_code(&c.reason).ok_or(DecodeError::UnknownType {
                what: "cancel reason",
                kind: c.reason,
            })?;
            Ok(Event::CartCancelled {
                reason,
                payment_id: c.payment_id,
            })
        }
        EventKind::RefundRequested => {
            let r: RefundRequestedV1 = from_value(kind.as_str(), data)?;
            Ok(Event::RefundRequested {
                checkout: r.checkout,
                payment_id: r.payment_id,
                amount: r.amount,
            })
        }
    }
}
