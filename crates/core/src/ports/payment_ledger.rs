//! The payment ledger port: the mock gateway's durable book of charges.

use crate::ids::{CartId, PaymentId};
use crate::ports::error::BackendError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How the gateway answered a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    Succeeded,
    Declined,
}

/// One charge of the payment ledger: at most one per checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub payment_id: PaymentId,
    pub cart_id: CartId,
    /// The stream version of the checkout it charged.
    pub checkout: u64,
    pub status: ChargeStatus,
    pub amount: Decimal,
    pub currency: String,
    pub payment_method: String,
    /// Why it was declined.
    pub decline_reason: Option<String>,
    pub charged_at: DateTime<Utc>,
    /// Set once when a late payment was given back.
    pub refunded_at: Option<DateTime<Utc>>,
}

/// The mock gateway's durable book of charges. Charging is idempotent per
/// checkout: the first charge recorded wins, and every later attempt (a
/// redelivered request) gets that one back.
#[async_trait]
pub trait PaymentLedger: Send + Sync {
    /// Records `charge` unless its checkout already has one, atomically;
    /// answers the charge the ledger holds afterwards.
    async fn charge_once(&self, charge: &Charge) -> Result<Charge, BackendError>;
    /// Marks the checkout's charge refunded (once; the first time stays).
    /// `None`: nothing was charged.
    async fn refund(
        &self,
        cart_id: CartId,
        checkout: u64,
        at: DateTime<Utc>,
    ) -> Result<Option<Charge>, BackendError>;
    /// Every charge of a cart, by checkout.
    async fn charges(&self, cart_id: CartId) -> Result<Vec<Charge>, BackendError>;
    async fn ping(&self) -> Result<(), BackendError>;
}
