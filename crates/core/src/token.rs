//! The consistency token a `202` hands out: which command to wait for, on
//! which cart. Opaque to clients (`ct1.` + base64url of the two ids).

use crate::ids::{CartId, CommandId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsistencyToken {
    pub command_id: CommandId,
    pub cart_id: CartId,
}

pub const PREFIX: &str = "ct1.";
/// The bytes after the prefix: the command id, then the cart id.
pub const BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("malformed consistency token")]
pub struct MalformedToken;

impl ConsistencyToken {
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; BYTES];
        bytes[..16].copy_from_slice(self.command_id.0.as_bytes());
        bytes[16..].copy_from_slice(self.cart_id.0.as_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn decode(token: &str) -> Result<Self, MalformedToken> {
        let body = token.strip_prefix(PREFIX).ok_or(MalformedToken)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| MalformedToken)?;
        let (command, cart) = bytes.split_at_checked(16).ok_or(MalformedToken)?;
        Ok(ConsistencyToken {
            command_id: CommandId(uuid::Uuid::from_slice(command).map_err(|_| MalformedToken)?),
            cart_id: CartId(uuid::Uuid::from_slice(cart).map_err(|_| MalformedToken)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_decodes_to_what_was_encoded() {
        let token = ConsistencyToken {
            command_id: CommandId(uuid::Uuid::from_u128(1)),
            cart_id: CartId(uuid::Uuid::from_u128(2)),
        };
        assert_eq!(
            ConsistencyToken::decode(&token.encode()).expect("decodes"),
            token
        );
    }

    #[test]
    fn a_tampered_token_is_malformed() {
        assert!(ConsistencyToken::decode("ct1.AAAA").is_err());
        assert!(ConsistencyToken::decode("nope").is_err());
    }
}
