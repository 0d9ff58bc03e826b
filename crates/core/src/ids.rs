//! Identifier newtypes. Each wraps a [`Uuid`] so that a cart id can never be
//! passed where an order id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Not a hyphenated UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a hyphenated UUID")]
pub struct NotAUuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NotAUuid;
            /// The hyphenated form only, as the API documents it.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                crate::contract::parse_uuid(s).map(Self).ok_or(NotAUuid)
            }
        }
    };
}

uuid_id!(
    /// The aggregate (stream) id; also the Kafka key of every record about the cart.
    CartId
);
uuid_id!(
    /// One order line of a cart; unique per cart.
    OrderId
);
uuid_id!(
    /// One accepted command. Derived deterministically from the request so a
    /// retried POST maps onto the same command.
    CommandId
);
uuid_id!(
    /// One payment of a checkout: derived from (cart, checkout version), it is
    /// the idempotency key the gateway charges under, so a redelivered
    /// payment request can never charge twice.
    PaymentId
);
uuid_id!(
    /// One recorded event. Derived from (cart, version) so a replay has the same id.
    EventId
);
uuid_id!(
    /// One user's data key (see [`crate::personal`]): random, named by every
    /// value sealed under it, and gone with the key when the user is erased.
    KeyId
);

/// Namespace for the name-based (v5) ids salestrack derives.
const NAMESPACE: Uuid = Uuid::from_u128(0x5a1e_57ac_0000_4000_8000_0000_0000_0001);

/// The v5 id of `name`, scoped to `requester` when there is one: a
/// request by another user never derives your command's id (issue 29).
/// The scope is length-prefixed, so no user id and key can spell another's.
fn scoped(requester: Option<&str>, name: &str) -> Uuid {
    match requester {
        Some(user) => {
            let name = format!("by/{}:{user}/{name}", user.len());
            Uuid::new_v5(&NAMESPACE, name.as_bytes())
        }
        None => Uuid::new_v5(&NAMESPACE, name.as_bytes()),
    }
}

impl CommandId {
    /// The command id for a client-supplied idempotency key, scoped to the
    /// cart and to who asked.
    pub fn from_idempotency_key(
        cart_id: CartId,
        kind: &str,
        key: &str,
        requester: Option<&str>,
    ) -> Self {
        Self(scoped(
            requester,
            &format!("idempotency/{cart_id}/{kind}/{key}"),
        ))
    }

    /// The command id when no key was supplied: the order id is the natural
    /// key, scoped to who asked.
    pub fn for_order(
        cart_id: CartId,
        kind: &str,
        order_id: OrderId,
        requester: Option<&str>,
    ) -> Self {
        Self(scoped(
            requester,
            &format!("order/{cart_id}/{kind}/{order_id}"),
        ))
    }

    /// The command id of a cart-level command (a checkout, a payment
    /// answer, a deadline) without a client key: one per cart, `step` (the
    /// checkout's stream version for the saga's commands, 0 for the checkout
    /// itself) and who asked (nobody for the saga's own commands).
    pub fn for_cart(cart_id: CartId, kind: &str, step: u64, requester: Option<&str>) -> Self {
        Self(scoped(requester, &format!("cart/{cart_id}/{kind}/{step}")))
    }
}

impl PaymentId {
    pub fn for_checkout(cart_id: CartId, checkout: u64) -> Self {
        let name = format!("payment/{cart_id}/{checkout}");
        Self(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

impl EventId {
    pub fn for_version(cart_id: CartId, version: u64) -> Self {
        let name = format!("event/{cart_id}/{version}");
        Self(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}
