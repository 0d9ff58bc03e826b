//! Reading your own writes: how a read waits for a consistency token, and
//! what a reader may see of a cart or a command.

use crate::{Freshness, QueryState};
use salestrack_core::ids::{CartId, CommandId};
use salestrack_core::ports::{BackendError, Reader};
use salestrack_core::read_model::CartDetail;
use salestrack_core::token::ConsistencyToken;
use salestrack_core::wire::{Outcome, OutcomeStatus};
use salestrack_platform::auth::Access;
use salestrack_platform::http::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How reads wait for a consistency token: each at most `wait`, and at
/// most `max_waiting` at once. Beyond, a read that has not reached its token
/// is answered at once, `Consistency: stale`: a client that sends tokens
/// naming commands that never come (a forged token waits the whole `wait`)
/// holds no more than `max_waiting` of the process's request slots.
#[derive(Clone)]
pub struct ConsistencyWait {
    wait: Duration,
    slots: Arc<tokio::sync::Semaphore>,
}

impl ConsistencyWait {
    pub fn new(wait: Duration, max_waiting: usize) -> ConsistencyWait {
        ConsistencyWait {
            wait,
            slots: Arc::new(tokio::sync::Semaphore::new(max_waiting)),
        }
    }

    pub fn from_settings(s: &salestrack_platform::Settings) -> ConsistencyWait {
        ConsistencyWait::new(
            Duration::from_millis(s.consistency.wait_ms),
            s.consistency.max_waiting,
        )
    }
}

impl QueryState {
    /// Waits until the token's command is decided and, if applied, its cart
    /// projected up to the command's version; `None` when the wait ran out.
    /// Polls with a short, growing delay.
    pub(crate) async fn reach(
        &self,
        token: ConsistencyToken,
        access: &Access,
    ) -> Result<Option<Outcome>, ApiError> {
        let deadline = Instant::now() + self.consistency.wait;
        let mut delay = Duration::from_millis(5);
        // Taken once the first look did not reach the token.
        let mut slot = None;
        loop {
            if let Some(outcome) = self.command_status(token.command_id, access).await? {
                let projected = match outcome.status {
                    OutcomeStatus::Rejected => true,
                    // The command's own cart, as the caller may see it: not
                    // the token's cart id, which a client can pair with any
                    // cart to learn whether it exists and its version.
                    OutcomeStatus::Applied => {
                        let version = self
                            .visible_detail(outcome.cart_id, access)
                            .await?
                            .map_or(0, |d| d.version);
                        version >= outcome.version
                    }
                };
                if projected {
                    return Ok(Some(outcome));
                }
            }
            let now = Instant::now();
            if now < deadline && slot.is_none() {
                slot = Arc::clone(&self.consistency.slots).try_acquire_owned().ok();
                if slot.is_none() {
                    metrics::counter!("salestrack_query_waits_refused_total").increment(1);
                }
            }
            if now >= deadline || slot.is_none() {
                metrics::counter!("salestrack_query_stale_reads_total").increment(1);
                return Ok(None);
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// The cart's detail, if `access` may see it (the store filters).
    pub(crate) async fn visible_detail(
        &self,
        cart_id: CartId,
        access: &Access,
    ) -> Result<Option<CartDetail>, BackendError> {
        self.read_store
            .cart_detail(cart_id, Reader::from(access.owner()))
            .await
    }

    /// The command's status, if `access` may see it (the store filters).
    pub(crate) async fn command_status(
        &self,
        command_id: CommandId,
        access: &Access,
    ) -> Result<Option<Outcome>, ApiError> {
        Ok(self
            .read_store
            .command_status(command_id, Reader::from(access.owner()))
            .await?)
    }

    /// Waits for the token, if any. A token is a barrier: any read may wait
    /// for any write, of this cart or another.
    pub(crate) async fn freshness(
        &self,
        token: Option<ConsistencyToken>,
        access: &Access,
    ) -> Result<Freshness, ApiError> {
        match token {
            Some(t) => Ok(match self.reach(t, access).await? {
                Some(_) => Freshness::Fresh,
                None => Freshness::Stale,
            }),
            None => Ok(Freshness::Fresh),
        }
    }
}
