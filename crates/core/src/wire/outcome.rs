//! What the domain decided about each command, on `sales.outcomes`.

use crate::bus::OutboundRecord;
use crate::headers::{self as h, TraceParent};
use crate::ids::{CartId, CommandId, OrderId};
use crate::wire::codec::{check_schema, json, to_bytes, DecodeError, SCHEMA_VERSION};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the domain decided about one command, published on `sales.outcomes`
/// so that a client can learn why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Applied,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Outcome {
    /// The record the outcome travels in, keyed by cart, with its command's
    /// trace and acceptance time.
    pub fn outbound(
        &self,
        topic: &str,
        command_trace: TraceParent,
        accepted_at: DateTime<Utc>,
    ) -> OutboundRecord {
        OutboundRecord {
            topic: topic.to_owned(),
            key: self.cart_id.to_string().into_bytes(),
            value: self.encode(),
            headers: vec![
                h::message_type("outcome"),
                h::schema_version(SCHEMA_VERSION),
                h::command_id(self.command_id),
                command_trace.header(),
                h::accepted_at(accepted_at),
            ],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        to_bytes(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let outcome: Outcome = json("outcome", bytes)?;
        check_schema(outcome.schema_version)?;
        Ok(outcome)
    }
}
