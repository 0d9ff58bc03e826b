//! Ports: the traits adapters implement. Handlers hold them as `Arc<dyn Port>`.
//!
//! Errors are split by what the caller can do about them: a typed
//! [`AppendError::Conflict`] is retried by re-deciding, every other backend
//! error is infrastructure and fails the batch or request (retryable).

use crate::event::RecordedEvent;
use crate::ids::{CartId, CommandId, PaymentId};
use crate::read_model::{CartDetail, CartStatus, CartSummary, SalesLine};
use crate::wire::Outcome;
use async_trait::async_trait;
use chrono::{DateTime, Datelike, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;
use std::time::Duration;

/// A failure of a backend, not the client's fault. Usually infrastructure and
/// worth retrying; `permanent` when the backend refused the data itself (a
/// document its mapping rejects), which no redelivery can fix.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
    pub permanent: bool,
}

impl BackendError {
    pub fn new(backend: &'static str, error: impl std::fmt::Display) -> Self {
        BackendError {
            backend,
            message: error.to_string(),
            permanent: false,
        }
    }

    /// The backend refused the data: retrying the same write cannot succeed.
    pub fn refused(backend: &'static str, error: impl std::fmt::Display) -> Self {
        BackendError {
            permanent: true,
            ..BackendError::new(backend, error)
        }
    }
}

// ------------------------------------------------------------------ bus

/// A record to produce. `key` decides the partition, so all records of a cart
/// stay in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where a produced record landed; acknowledged as durable by the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

#[async_trait]
pub trait Producer: Send + Sync {
    /// Returns once the record is durably stored by the bus.
    async fn send(&self, record: OutboundRecord) -> Result<Delivery, BackendError>;

    /// Sends several records; on error some may have been sent (callers are idempotent).
    async fn send_all(&self, records: Vec<OutboundRecord>) -> Result<Vec<Delivery>, BackendError> {
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            deliveries.push(self.send(record).await?);
        }
        Ok(deliveries)
    }
}

/// Where the projector says that carts' read models moved on (see
/// [`crate::wire::CartProjected`]), for the live streams of every query
/// process. Best effort by design: a notice lost here delays a live stream
/// until its next look at the read store, it never loses a change.
#[async_trait]
pub trait ProjectionFeed: Send + Sync {
    async fn publish(&self, notices: &[crate::wire::CartProjected]) -> Result<(), BackendError>;
}

/// A [`ProjectionFeed`] on a bus topic, keyed by cart: every query process
/// follows the topic (see the runner's live follower).
pub struct BusProjectionFeed {
    pub producer: std::sync::Arc<dyn Producer>,
    pub topic: String,
}

#[async_trait]
impl ProjectionFeed for BusProjectionFeed {
    async fn publish(&self, notices: &[crate::wire::CartProjected]) -> Result<(), BackendError> {
        let records = notices
            .iter()
            .map(|n| OutboundRecord {
                topic: self.topic.clone(),
                key: n.cart_id.to_string().into_bytes(),
                value: n.encode(),
                headers: Vec::new(),
            })
            .collect();
        self.producer.send_all(records).await.map(drop)
    }
}

/// A record as consumed from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: DateTime<Utc>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A consumer-group member. Delivery is at-least-once: positions only become
/// durable through [`Consumer::commit`], and [`Consumer::rewind`] goes back to
/// the last commit so a failed batch is delivered again.
#[async_trait]
pub trait Consumer: Send {
    /// Up to `max` records, waiting at most `wait` for the first one.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<BusRecord>, BackendError>;
    /// Marks everything up to and including these records as processed.
    async fn commit(&mut self, records: &[BusRecord]) -> Result<(), BackendError>;
    /// Forgets uncommitted progress: the next poll starts at the committed offsets.
    async fn rewind(&mut self) -> Result<(), BackendError>;

    /// How many records of each partition this member holds the group has
    /// not committed yet (end of the partition minus committed offset, as
    /// Kafka tools report it). May trail by a second or so.
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BackendError>;

    /// How many partitions the group has assigned to this member now, when
    /// the bus tells (a member without any handles nothing).
    fn owned_partitions(&self) -> Option<usize> {
        None
    }
}

/// One partition's consumer lag, in records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

// ------------------------------------------------------------------ event store

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended first: reload the stream and decide again.
    #[error("expected stream version {expected}, but the stream is at {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A stream and the version it has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub cart_id: CartId,
    pub version: u64,
}

/// One stream's part of an [`EventStore::append_many`].
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub cart_id: CartId,
    pub expected_version: u64,
    pub events: &'a [RecordedEvent],
}

/// A cart's decision state at a stream version, in a versioned format (see
/// [`crate::snapshot`]). A cache derived from the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub cart_id: CartId,
    pub version: u64,
    pub format: u32,
    pub state: Vec<u8>,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// The cart's events whose versions lie in `versions`, in version order
    /// (empty for a new cart). Long streams are read in pages.
    async fn read_range(
        &self,
        cart_id: CartId,
        versions: RangeInclusive<u64>,
    ) -> Result<Vec<RecordedEvent>, BackendError>;

    /// The cart's events in version order (empty for a new cart).
    async fn read_stream(&self, cart_id: CartId) -> Result<Vec<RecordedEvent>, BackendError> {
        self.read_range(cart_id, 1..=u64::MAX).await
    }

    /// The cart's latest snapshot, if one was saved.
    async fn load_snapshot(&self, cart_id: CartId) -> Result<Option<Snapshot>, BackendError>;

    /// Keeps `snapshot` as the cart's latest (the last saved wins; an older
    /// snapshot is still a valid starting point, only a longer one).
    /// Snapshots live apart from the events: saving one never touches the
    /// stream.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), BackendError>;

    /// Up to `limit` streams with their current version, in an order fixed by
    /// the store, starting after `after` (from the start when `None`). Used to
    /// replay the whole store; streams appended to meanwhile may show their
    /// old or new version.
    async fn list_streams(
        &self,
        after: Option<CartId>,
        limit: u32,
    ) -> Result<Vec<StreamHead>, BackendError>;

    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), BackendError> {
        self.list_streams(None, 1).await.map(drop)
    }

    /// Appends `events` (numbered `expected_version + 1 ..`) only if the stream is
    /// exactly at `expected_version`. All or nothing.
    async fn append(
        &self,
        cart_id: CartId,
        expected_version: u64,
        events: &[RecordedEvent],
    ) -> Result<(), AppendError>;

    /// Appends to several streams (one entry per cart) and answers for each
    /// as [`EventStore::append`] would: each is all or nothing on its own,
    /// one's conflict or failure leaves the others as they are. Stores that
    /// can do it in one round trip or one commit; the default runs the
    /// appends concurrently.
    async fn append_many(&self, appends: &[StreamAppend<'_>]) -> Vec<Result<(), AppendError>> {
        futures::future::join_all(
            appends
                .iter()
                .map(|a| self.append(a.cart_id, a.expected_version, a.events)),
        )
        .await
    }
}

// ------------------------------------------------------------------ read store

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

/// `GET /carts` filters. `q` matches every word against product names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CartSearch {
    pub user_id: Option<String>,
    /// ISO 4217 code, upper case.
    pub currency: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub q: Option<String>,
    pub limit: u32,
    pub after: Option<SearchCursor>,
}

/// Position in the `(created_at desc, cart_id desc)` order of a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchCursor {
    pub created_at: DateTime<Utc>,
    pub cart_id: CartId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartPage {
    pub carts: Vec<CartSummary>,
    /// Set when more results may follow.
    pub next: Option<SearchCursor>,
}

impl CartPage {
    /// A page from up to `limit + 1` results: the extra one only says that
    /// another page follows, starting after the last one kept.
    pub fn from_overfetch(mut carts: Vec<CartSummary>, limit: u32) -> CartPage {
        let more = carts.len() > limit as usize;
        carts.truncate(limit as usize);
        let next = more
            .then(|| {
                carts.last().map(|c| SearchCursor {
                    created_at: c.created_at,
                    cart_id: c.cart_id,
                })
            })
            .flatten();
        CartPage { carts, next }
    }
}

/// The time buckets of a sales report (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportInterval {
    Hour,
    Day,
    Month,
}

impl ReportInterval {
    /// The start of the bucket `at` falls in.
    pub fn bucket_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let day = at.date_naive();
        let start = match self {
            ReportInterval::Hour => day.and_hms_opt(at.hour(), 0, 0),
            ReportInterval::Day => day.and_hms_opt(0, 0, 0),
            ReportInterval::Month => day.with_day(1).and_then(|d| d.and_hms_opt(0, 0, 0)),
        };
        start.map_or(at, |s| s.and_utc())
    }
}

/// What a sales report groups by besides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportDimension {
    Product,
    Seller,
    Currency,
    PaymentMethod,
}

impl ReportDimension {
    /// The line's value of this dimension.
    pub fn of(self, line: &SalesLine) -> &str {
        match self {
            ReportDimension::Product => &line.product_name,
            ReportDimension::Seller => &line.seller_info,
            ReportDimension::Currency => &line.currency,
            ReportDimension::PaymentMethod => &line.payment_method,
        }
    }
}

/// Totals of active sales lines created in `[from, to)`, per time bucket
/// (`interval`), per dimension value (`group_by`) and always per currency.
/// Without interval and dimension: one total per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesReportQuery {
    pub interval: Option<ReportInterval>,
    pub group_by: Option<ReportDimension>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Which carts' lines count (`all` by default).
    pub status: ReportStatus,
}

/// The carts whose active lines a report counts, by cart status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Every active line, whatever its cart's status.
    #[default]
    All,
    /// Carts not yet settled: `open` and `checking_out`.
    Open,
    /// Confirmed sales only.
    Paid,
    /// Carts the checkout saga cancelled.
    Cancelled,
}

impl ReportStatus {
    /// The cart statuses counted; `None`: all of them.
    pub fn cart_statuses(self) -> Option<&'static [CartStatus]> {
        match self {
            ReportStatus::All => None,
            ReportStatus::Open => Some(&[CartStatus::Open, CartStatus::CheckingOut]),
            ReportStatus::Paid => Some(&[CartStatus::Paid]),
            ReportStatus::Cancelled => Some(&[CartStatus::Cancelled]),
        }
    }

    /// Whether a line of a cart in `status` counts.
    pub fn counts(self, status: CartStatus) -> bool {
        self.cart_statuses().is_none_or(|s| s.contains(&status))
    }
}

/// A checkout still waiting for its payment answer past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueCheckout {
    pub cart_id: CartId,
    /// The stream version of its `checkout_started`.
    pub checkout: u64,
    pub expires_at: DateTime<Utc>,
}

/// Totals of the active sales lines of one bucket, per currency (amounts in
/// different currencies are never added together). Stores return buckets
/// ordered by period, key, currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SalesBucket {
    /// Start of the time bucket, when the report has an interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<DateTime<Utc>>,
    /// The dimension's value, when the report groups by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub currency: String,
    /// Sum of the lines' subtotals.
    #[schema(value_type = String)]
    pub revenue: Decimal,
    #[schema(value_type = String)]
    pub tax: Decimal,
    pub units: u64,
    /// Order lines counted.
    pub orders: u64,
}

impl SalesBucket {
    /// Sort key shared by every store.
    pub fn order_key(&self) -> (Option<DateTime<Utc>>, Option<&str>, &str) {
        (self.period, self.key.as_deref(), &self.currency)
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

    async fn cart_detail(&self, cart_id: CartId) -> Result<Option<CartDetail>, BackendError>;

    /// The details of several carts, in the order asked (`None` for a cart
    /// without one). Stores that can read them in one round trip; the
    /// default reads them concurrently.
    async fn cart_details(
        &self,
        cart_ids: &[CartId],
    ) -> Result<Vec<Option<CartDetail>>, BackendError> {
        futures::future::join_all(cart_ids.iter().map(|id| self.cart_detail(*id)))
            .await
            .into_iter()
            .collect()
    }
    async fn cart_summary(&self, cart_id: CartId) -> Result<Option<CartSummary>, BackendError>;
    async fn command_status(&self, command_id: CommandId) -> Result<Option<Outcome>, BackendError>;
    /// [`ReadStore::cart_detail`] of a cart `owner` owns: the store's query
    /// itself filters by owner, so another user's cart is never fetched.
    async fn owned_cart_detail(
        &self,
        cart_id: CartId,
        owner: &str,
    ) -> Result<Option<CartDetail>, BackendError>;
    /// [`ReadStore::cart_summary`] of a cart `owner` owns (filtered by the store).
    async fn owned_cart_summary(
        &self,
        cart_id: CartId,
        owner: &str,
    ) -> Result<Option<CartSummary>, BackendError>;
    /// [`ReadStore::command_status`] of a command `owner` sent (filtered by
    /// the store).
    async fn owned_command_status(
        &self,
        command_id: CommandId,
        owner: &str,
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

// ------------------------------------------------------------------ payments

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

// ------------------------------------------------------------------ clock

/// Time is passed in, never read inside the core.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
