//! The read store port: the projector's documents in, carts, command
//! statuses, searches and reports out.

use crate::ids::{CartId, CommandId};
use crate::ports::error::BackendError;
use crate::read_model::{CartDetail, CartSummary, SalesLine};
use crate::search::{CartPage, CartSearch, SalesBucket, SalesReportQuery};
use crate::wire::outcome::Outcome;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A document the projector writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadDocument {
    CartDetail(CartDetail),
    CartSummary(CartSummary),
    SalesLine(SalesLine),
    CommandStatus(Outcome),
}

impl ReadDocument {
    pub fn version(&self) -> u64 {
        match self {
            ReadDocument::CartDetail(d) => d.version,
            ReadDocument::CartSummary(d) => d.version,
            ReadDocument::SalesLine(d) => d.version,
            ReadDocument::CommandStatus(d) => d.version,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Written,
    /// The store already held this version or a newer one; nothing changed.
    Stale,
}

/// A checkout still waiting for its payment answer past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueCheckout {
    pub cart_id: CartId,
    /// The stream version of its `checkout_started`.
    pub checkout: u64,
    pub expires_at: DateTime<Utc>,
}

/// Whose documents a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader<'a> {
    /// Any document: the functions themselves, and every reader while
    /// authentication is off.
    Any,
    /// Only this user's: a cart they own, a command they sent. The store's
    /// read itself filters by owner, so another user's document is never
    /// answered.
    Owner(&'a str),
}

impl<'a> From<Option<&'a str>> for Reader<'a> {
    /// `None`: no user to hold the read to.
    fn from(owner: Option<&'a str>) -> Self {
        owner.map_or(Reader::Any, Reader::Owner)
    }
}

#[async_trait]
pub trait ReadStore: Send + Sync {
    /// Stores the document only if its version is newer than the stored one.
    async fn upsert(&self, doc: ReadDocument) -> Result<Upsert, BackendError>;

    /// Several upserts in one round trip where the store can. Each document is
    /// version-guarded on its own; on error some may have been written (they
    /// are idempotent, so the caller retries them all).
    async fn upsert_all(&self, docs: Vec<ReadDocument>) -> Result<Vec<Upsert>, BackendError> {
        let mut results = Vec::with_capacity(docs.len());
        for doc in docs {
            results.push(self.upsert(doc).await?);
        }
        Ok(results)
    }

    /// A cart's detail, if `reader` may see it.
    async fn cart_detail(
        &self,
        cart_id: CartId,
        reader: Reader<'_>,
    ) -> Result<Option<CartDetail>, BackendError>;

    /// The details of several carts, in the order asked (`None` for a cart
    /// without one), for the functions themselves. Stores that can read
    /// them in one round trip; the default reads them concurrently.
    async fn cart_details(
        &self,
        cart_ids: &[CartId],
    ) -> Result<Vec<Option<CartDetail>>, BackendError> {
        futures::future::join_all(cart_ids.iter().map(|id| self.cart_detail(*id, Reader::Any)))
            .await
            .into_iter()
            .collect()
    }
    /// A cart's summary, if `reader` may see it.
    async fn cart_summary(
        &self,
        cart_id: CartId,
        reader: Reader<'_>,
    ) -> Result<Option<CartSummary>, BackendError>;
    /// A command's status, if `reader` may see it.
    async fn command_status(
        &self,
        command_id: CommandId,
        reader: Reader<'_>,
    ) -> Result<Option<Outcome>, BackendError>;
    async fn search_carts(&self, search: &CartSearch) -> Result<CartPage, BackendError>;
    async fn sales_report(
        &self,
        query: &SalesReportQuery,
    ) -> Result<Vec<SalesBucket>, BackendError>;
    /// Up to `limit` carts `checking_out` whose deadline is at or before
    /// `now`, earliest deadline first (then by cart), and after `after` in
    /// that order when given: what the saga's timer cancels, page by page,
    /// so that checkouts the read model still shows open after they settled
    /// cannot hold the first page for good and starve newer deadlines.
    async fn due_checkouts(
        &self,
        now: DateTime<Utc>,
        after: Option<&DueCheckout>,
        limit: u32,
    ) -> Result<Vec<DueCheckout>, BackendError>;
    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), BackendError>;
}
