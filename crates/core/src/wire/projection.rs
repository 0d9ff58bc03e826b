//! The projector's notices on `sales.projections`.

use crate::bus::OutboundRecord;
use crate::ids::CartId;
use crate::wire::codec::{json, to_bytes, DecodeError};
use serde::{Deserialize, Serialize};

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
    /// The record the notice travels in, keyed by cart.
    pub fn outbound(&self, topic: &str) -> OutboundRecord {
        OutboundRecord {
            topic: topic.to_owned(),
            key: self.cart_id.to_string().into_bytes(),
            value: self.encode(),
            headers: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        to_bytes(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        json("cart projection notice", bytes)
    }
}
