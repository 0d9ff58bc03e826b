//! The saga's requests to the payment gateway, on `sales.payments`.

use crate::bus::OutboundRecord;
use crate::event::{CancelReason, Event, RecordedEvent};
use crate::headers::{self as h, TraceParent};
use crate::ids::{CartId, PaymentId};
use crate::money::Currency;
use crate::wire::codec::{check_schema, json, to_bytes, DecodeError, SCHEMA_VERSION};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

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
            reason: CancelReason::PaymentTimeout,
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

    /// The record the request travels in, keyed by cart and traced as a
    /// child of `cause`, the event that asked for it.
    pub fn outbound(
        &self,
        topic: &str,
        cause: &RecordedEvent,
        command_trace: TraceParent,
    ) -> OutboundRecord {
        OutboundRecord {
            topic: topic.to_owned(),
            key: self.cart_id.to_string().into_bytes(),
            value: self.encode(),
            headers: vec![
                h::message_type("payment_request"),
                h::schema_version(SCHEMA_VERSION),
                h::event_id(cause.event_id),
                h::command_id(cause.command_id),
                command_trace.event_in(cause.event_id).header(),
            ],
        }
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
