//! Commands on `sales.commands`: the envelope, each command's `data`, and
//! the outbound record the command function and the saga produce.

use crate::bus::OutboundRecord;
use crate::command::{
    CancelOrder, CheckoutCart, Command, ExpireCheckout, OrderLine, PaymentResult, PlaceOrder,
    RecordPayment, CANCEL_ORDER, CHECKOUT_CART, EXPIRE_CHECKOUT, PLACE_ORDER, RECORD_PAYMENT,
};
use crate::headers::{self as h, TraceParent};
use crate::ids::{CartId, CommandId, OrderId, PaymentId};
use crate::money::{Currency, Money};
use crate::personal::{PersonalField, Sealed};
use crate::wire::codec::{
    check_schema, from_value, json, to_bytes, to_value, DecodeError, SCHEMA_VERSION,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `place_order`'s data, validated as its HTTP body was, except that its
/// personal fields are sealed (the command function seals them; records
/// from before sealing hold them in the clear): a sealed value must be
/// well-formed, and stands in for the clear one it hides.
fn place_order(mut data: Value) -> Result<PlaceOrder, DecodeError> {
    let mut sealed = Vec::new();
    for field in PersonalField::ALL {
        let Some(Value::String(value)) = data.get_mut(field.as_str()) else {
            continue;
        };
        match Sealed::from_token(value) {
            None => {}
            Some(Ok(_)) => sealed.push((field, std::mem::replace(value, "sealed".into()))),
            Some(Err(e)) => {
                return Err(DecodeError::Inconsistent {
                    kind: PLACE_ORDER,
                    why: format!("`{}`: {e}", field.as_str()),
                })
            }
        }
    }
    let mut order = PlaceOrder::parse(&data)?;
    for (field, token) in sealed {
        let line = &mut order.line;
        *match field {
            PersonalField::ShippingAddress => &mut line.shipping_address,
            PersonalField::BillingAddress => &mut line.billing_address,
            PersonalField::PaymentMethod => &mut line.payment_method,
        } = token;
    }
    Ok(order)
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
    pub fn outbound(&self, topic: &str, trace: TraceParent) -> OutboundRecord {
        OutboundRecord {
            topic: topic.to_owned(),
            key: self.command.cart_id().to_string().into_bytes(),
            value: self.encode(),
            headers: vec![
                (h::CONTENT_TYPE.into(), b"application/json".to_vec()),
                h::message_type(self.command.kind()),
                h::schema_version(SCHEMA_VERSION),
                h::command_id(self.command_id),
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
            PLACE_ORDER => Command::PlaceOrder(place_order(envelope.data)?),
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
