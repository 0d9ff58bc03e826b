//! Domain events: what happened to a cart. In-memory types only; their stored
//! and published shape lives in `crate::wire`.

use crate::command::OrderLine;
use crate::ids::{CartId, CommandId, EventId, OrderId, PaymentId};
use crate::money::Currency;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

// The large variant is the common one: boxing it would add an allocation
// to nearly every value for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    OrderPlaced(OrderLine),
    OrderCancelled {
        order_id: OrderId,
        reason: Option<String>,
    },
    /// The cart is closed and its payment requested; the saga has until
    /// `expires_at` to hear from the gateway.
    CheckoutStarted(Checkout),
    /// The gateway charged the checkout: the cart is paid.
    PaymentSucceeded {
        payment_id: PaymentId,
        amount: Decimal,
    },
    /// Compensation: the checkout failed (declined, or no answer in time)
    /// and the cart is cancelled. Nothing is deleted.
    CartCancelled {
        reason: CancelReason,
        /// The declined payment; none for a timeout.
        payment_id: Option<PaymentId>,
    },
    /// A payment succeeded after its checkout had been cancelled: the money
    /// goes back. The cart stays cancelled.
    RefundRequested {
        /// The stream version of the checkout the payment answered.
        checkout: u64,
        payment_id: PaymentId,
        amount: Decimal,
    },
}

/// What a checkout charges, and until when the saga waits for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub payment_method: String,
    /// The active lines' subtotals plus their tax at checkout time.
    pub amount: Decimal,
    pub currency: Currency,
    pub expires_at: DateTime<Utc>,
}

/// Why the saga cancelled a cart; the wire code is [`CancelReason::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    PaymentDeclined,
    PaymentTimeout,
}

impl CancelReason {
    pub fn code(self) -> &'static str {
        match self {
            CancelReason::PaymentDeclined => "payment_declined",
            CancelReason::PaymentTimeout => "payment_timeout",
        }
    }

    pub fn from_code(code: &str) -> Option<CancelReason> {
        [CancelReason::PaymentDeclined, CancelReason::PaymentTimeout]
            .into_iter()
            .find(|r| r.code() == code)
    }
}

impl Event {
    /// The order line the event is about; cart-level events have none.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Event::OrderPlaced(line) => Some(line.order_id),
            Event::OrderCancelled { order_id, .. } => Some(*order_id),
            Event::CheckoutStarted(_)
            | Event::PaymentSucceeded { .. }
            | Event::CartCancelled { .. }
            | Event::RefundRequested { .. } => None,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Event::OrderPlaced(_) => EventKind::OrderPlaced,
            Event::OrderCancelled { .. } => EventKind::OrderCancelled,
            Event::CheckoutStarted(_) => EventKind::CheckoutStarted,
            Event::PaymentSucceeded { .. } => EventKind::PaymentSucceeded,
            Event::CartCancelled { .. } => EventKind::CartCancelled,
            Event::RefundRequested { .. } => EventKind::RefundRequested,
        }
    }
}

/// The type of an event: its `type` on the wire, and the schema version
/// this build writes it in. Every match on it is exhaustive, so a new kind
/// is not forgotten by the codec, the upcasters or the folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    OrderPlaced,
    OrderCancelled,
    CheckoutStarted,
    PaymentSucceeded,
    CartCancelled,
    RefundRequested,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::OrderPlaced,
        EventKind::OrderCancelled,
        EventKind::CheckoutStarted,
        EventKind::PaymentSucceeded,
        EventKind::CartCancelled,
        EventKind::RefundRequested,
    ];

    /// The `type` of the event's envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OrderPlaced => "order_placed",
            EventKind::OrderCancelled => "order_cancelled",
            EventKind::CheckoutStarted => "checkout_started",
            EventKind::PaymentSucceeded => "payment_succeeded",
            EventKind::CartCancelled => "cart_cancelled",
            EventKind::RefundRequested => "refund_requested",
        }
    }

    /// The kind whose `type` is `s`; `None` for a type this build does not know.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == s)
    }

    /// The schema version this build writes events of this kind in (see
    /// [`crate::wire::upcast`] for the earlier ones).
    pub fn schema_version(self) -> u32 {
        match self {
            EventKind::OrderPlaced => 2,
            EventKind::OrderCancelled
            | EventKind::CheckoutStarted
            | EventKind::PaymentSucceeded
            | EventKind::CartCancelled
            | EventKind::RefundRequested => 1,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event as it sits in a cart's stream: numbered, attributed to the command
/// that caused it, and stamped with the time it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub event_id: EventId,
    pub cart_id: CartId,
    /// Position in the cart's stream, starting at 1.
    pub version: u64,
    pub command_id: CommandId,
    pub recorded_at: DateTime<Utc>,
    pub event: Event,
    /// The schema version of its type it was stored in: what it was decoded
    /// (and upcast) from, or, for a new event, the version this build writes.
    pub schema_version: u32,
}

impl RecordedEvent {
    /// Numbers fresh events after `current_version`. Ids are derived from the
    /// position, so the same append attempted twice carries the same ids.
    pub fn number(
        cart_id: CartId,
        current_version: u64,
        command_id: CommandId,
        recorded_at: DateTime<Utc>,
        events: Vec<Event>,
    ) -> Vec<RecordedEvent> {
        events
            .into_iter()
            .zip(current_version + 1..)
            .map(|(event, version)| RecordedEvent {
                event_id: EventId::for_version(cart_id, version),
                cart_id,
                version,
                command_id,
                recorded_at,
                schema_version: event.kind().schema_version(),
                event,
            })
            .collect()
    }
}

/// Why `events` cannot be appended after version `expected` of `cart_id`:
/// they must belong to the cart and be numbered `expected + 1, + 2, ...`.
/// A store refuses such an append before writing anything; it is a bug in
/// the caller.
pub fn misnumbered(cart_id: CartId, expected: u64, events: &[RecordedEvent]) -> Option<String> {
    events
        .iter()
        .zip(expected + 1..)
        .find(|(event, version)| event.cart_id != cart_id || event.version != *version)
        .map(|(event, version)| {
            format!(
                "event {} of cart {} numbered {} where {version} of cart {cart_id} was expected",
                event.event_id, event.cart_id, event.version
            )
        })
}
