//! Carts kept warm between batches: the state each successful append left,
//! so that the cart's next batch is decided without reading its stream.
//!
//! The cache is an optimisation the event store still polices:
//! - a command *applied* on a warm state is appended on the condition that
//!   the stream is still at the state's version: if another writer got
//!   there first (another runner after a rebalance, a Lambda environment
//!   that held the partition before), the append loses the race, the warm
//!   state is dropped and the cart is decided again on its stored stream;
//! - a command *rejected* on a warm state is decided again on the stored
//!   stream before the rejection is answered: a rejection appends nothing,
//!   so no condition would catch a stale state behind it;
//! - a *repeat* on a warm state is a repeat on any later state too (the
//!   stream only grows).
//!
//! Bounded by the events the kept carts hold ([`WarmCarts::new`]): the
//! least recently used cart goes first.

use hashlink::LinkedHashMap;
use salestrack_core::aggregate::Cart;
use salestrack_core::ids::CartId;
use std::sync::Mutex;

/// Decision states of recently decided carts, least recently used first.
#[derive(Debug)]
pub struct WarmCarts {
    budget: u64,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    carts: LinkedHashMap<CartId, Cart>,
    /// The sum of the kept carts' weights.
    weight: u64,
}

/// What a kept cart counts against the budget: its events (a cart's state
/// never holds more lines than it has events), at least one.
fn weight(cart: &Cart) -> u64 {
    cart.version().max(1)
}

impl WarmCarts {
    /// Keeps carts up to `budget_events` events in all; 0 keeps none.
    pub fn new(budget_events: u64) -> WarmCarts {
        WarmCarts {
            budget: budget_events,
            kept: Mutex::new(Kept::default()),
        }
    }

    /// The kept state of `cart_id`, taken out: whoever decides on it puts
    /// back the state its append left ([`WarmCarts::keep`]), or nothing.
    pub fn take(&self, cart_id: CartId) -> Option<Cart> {
        let mut kept = self.kept.lock().ok()?;
        let cart = kept.carts.remove(&cart_id)?;
        kept.weight -= weight(&cart);
        Some(cart)
    }

    /// Keeps `cart` as the latest stored state of `cart_id`.
    pub fn keep(&self, cart_id: CartId, cart: Cart) {
        let w = weight(&cart);
        if w > self.budget {
            return;
        }
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        if let Some(old) = kept.carts.insert(cart_id, cart) {
            kept.weight -= weight(&old);
        }
        kept.weight += w;
        while kept.weight > self.budget {
            let Some((_, oldest)) = kept.carts.pop_front() else {
                break;
            };
            kept.weight -= weight(&oldest);
        }
    }

    /// How many carts are kept.
    pub fn len(&self) -> usize {
        self.kept.lock().map_or(0, |k| k.carts.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salestrack_core::event::RecordedEvent;
    use salestrack_core::testing::line;

    fn cart_of(events: u64) -> Cart {
        let l = line();
        let placed = salestrack_core::event::Event::OrderPlaced(l.clone());
        let history: Vec<RecordedEvent> = (0..events)
            .map(|v| {
                RecordedEvent::number(
                    l.cart_id,
                    v,
                    salestrack_core::ids::CommandId(uuid::Uuid::new_v4()),
                    chrono::Utc::now(),
                    vec![placed.clone()],
                )
                .remove(0)
            })
            .collect();
        Cart::from_history(&history)
    }

    #[test]
    fn a_taken_cart_is_gone_until_kept_again() {
        let warm = WarmCarts::new(100);
        let id = CartId(uuid::Uuid::new_v4());
        warm.keep(id, cart_of(3));
        assert_eq!(warm.take(id).map(|c| c.version()), Some(3));
        assert!(warm.take(id).is_none(), "taken: not there twice");
        assert!(warm.is_empty());
    }

    #[test]
    fn the_least_recently_kept_carts_go_first_past_the_budget() {
        let warm = WarmCarts::new(10);
        let ids: Vec<CartId> = (0..4).map(|_| CartId(uuid::Uuid::new_v4())).collect();
        for id in &ids {
            warm.keep(*id, cart_of(3));
        }
        // 4 x 3 events over a budget of 10: the first one went.
        assert_eq!(warm.len(), 3);
        assert!(warm.take(ids[0]).is_none());
        assert!(warm.take(ids[3]).is_some());
        // A cart larger than the whole budget is not kept at all.
        warm.keep(ids[0], cart_of(11));
        assert!(warm.take(ids[0]).is_none());
        assert!(WarmCarts::new(0).take(ids[1]).is_none());
    }
}
