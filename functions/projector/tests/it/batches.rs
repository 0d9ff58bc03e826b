//! Batches folded cart by cart: one read of every cart's detail, each document
//! written once per batch in two rounds (lines and summaries, then details
//! and statuses), and what a failed write does to the batch.

use super::*;
use async_trait::async_trait;
use salestrack_core::ids::OrderId;
use salestrack_core::ports::{BackendError, ReadDocument, Reader, Upsert};
use salestrack_core::read_model::{CartDetail, CartSummary};
use salestrack_core::search::{CartPage, CartSearch, SalesBucket};
use salestrack_core::wire::{Outcome, OutcomeStatus};
use std::sync::Mutex;

/// How the wrapped store misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    None,
    /// Refuses (permanently) any write that carries a document of this cart.
    Refuse(CartId),
    /// Every write fails, transiently.
    Down,
}

/// Counts the projector's calls and injects write failures.
struct Watched {
    inner: EmbeddedReadStore,
    fault: Fault,
    /// Calls that read cart details (one or many).
    detail_reads: Mutex<usize>,
    /// The documents of each `upsert_all` call, by kind.
    writes: Mutex<Vec<Vec<&'static str>>>,
}

fn cart_of(doc: &ReadDocument) -> CartId {
    match doc {
        ReadDocument::CartDetail(d) => d.cart_id,
        ReadDocument::CartSummary(d) => d.cart_id,
        ReadDocument::SalesLine(d) => d.cart_id,
        ReadDocument::CommandStatus(d) => d.cart_id,
    }
}

fn kind(doc: &ReadDocument) -> &'static str {
    match doc {
        ReadDocument::CartDetail(_) => "detail",
        ReadDocument::CartSummary(_) => "summary",
        ReadDocument::SalesLine(_) => "line",
        ReadDocument::CommandStatus(_) => "status",
    }
}

#[async_trait]
impl ReadStore for Watched {
    async fn upsert(&self, doc: ReadDocument) -> Result<Upsert, BackendError> {
        let mut written = self.upsert_all(vec![doc]).await?;
        Ok(written.remove(0))
    }

    async fn upsert_all(&self, docs: Vec<ReadDocument>) -> Result<Vec<Upsert>, BackendError> {
        let mut kinds: Vec<&'static str> = docs.iter().map(kind).collect();
        kinds.sort_unstable();
        self.writes.lock().expect("lock").push(kinds);
        match self.fault {
            Fault::Refuse(cart) if docs.iter().any(|d| cart_of(d) == cart) => {
                Err(BackendError::refused("watched", "mapping conflict"))
            }
            Fault::Down => Err(BackendError::new("watched", "connection refused")),
            _ => self.inner.upsert_all(docs).await,
        }
    }

    async fn cart_detail(
        &self,
        cart_id: CartId,
        reader: Reader<'_>,
    ) -> Result<Option<CartDetail>, BackendError> {
        *self.detail_reads.lock().expect("lock") += 1;
        self.inner.cart_detail(cart_id, reader).await
    }

    async fn cart_details(
        &self,
        cart_ids: &[CartId],
    ) -> Result<Vec<Option<CartDetail>>, BackendError> {
        *self.detail_reads.lock().expect("lock") += 1;
        self.inner.cart_details(cart_ids).await
    }

    async fn cart_summary(
        &self,
        cart_id: CartId,
        reader: Reader<'_>,
    ) -> Result<Option<CartSummary>, BackendError> {
        self.inner.cart_summary(cart_id, reader).await
    }

    async fn command_status(
        &self,
        command_id: CommandId,
        reader: Reader<'_>,
    ) -> Result<Option<Outcome>, BackendError> {
        self.inner.command_status(command_id, reader).await
    }

    async fn search_carts(&self, search: &CartSearch) -> Result<CartPage, BackendError> {
        self.inner.search_carts(search).await
    }

    async fn sales_report(
        &self,
        query: &SalesReportQuery,
    ) -> Result<Vec<SalesBucket>, BackendError> {
        self.inner.sales_report(query).await
    }

    async fn due_checkouts(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        after: Option<&salestrack_core::ports::DueCheckout>,
        limit: u32,
    ) -> Result<Vec<salestrack_core::ports::DueCheckout>, BackendError> {
        self.inner.due_checkouts(now, after, limit).await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.inner.ping().await
    }
}

impl World {
    fn watched(&self, fault: Fault) -> Arc<Watched> {
        Arc::new(Watched {
            inner: self.read.clone(),
            fault,
            detail_reads: Mutex::new(0),
            writes: Mutex::new(Vec::new()),
        })
    }

    async fn run_on(&self, store: Arc<Watched>, event: KafkaEvent) -> BatchResult<BatchReport> {
        let deps = Deps {
            read_store: store,
            event_store: Arc::new(self.events.clone()),
            topics: Topics::default(),
            feed: None,
        };
        handler(LambdaEvent::new(event, Context::default()), &deps).await
    }
}

fn outcome_of(e: &RecordedEvent) -> Outcome {
    Outcome {
        schema_version: wire::SCHEMA_VERSION,
        command_id: e.command_id,
        cart_id: e.cart_id,
        order_id: e.event.order_id(),
        command_type: "place_order".into(),
        status: OutcomeStatus::Applied,
        version: e.version,
        duplicate: false,
        reason: None,
        decided_at: Utc::now(),
        user_id: None,
    }
}

/// A cart of one placed line.
fn one_line_cart() -> Vec<RecordedEvent> {
    let mut l = line();
    l.cart_id = CartId(uuid::Uuid::new_v4());
    l.order_id = OrderId(uuid::Uuid::new_v4());
    stream(l.cart_id, vec![Event::OrderPlaced(l)])
}

/// Records on partition 0 in the order given: events, or an outcome for
/// the events marked `true`.
fn mixed_batch(records: &[(&RecordedEvent, bool)]) -> KafkaEvent {
    let records: Vec<BusRecord> = records
        .iter()
        .enumerate()
        .map(|(i, (e, outcome))| {
            if *outcome {
                bus_record("sales.outcomes", i as i64, outcome_of(e).encode())
            } else {
                bus_record("sales.events", i as i64, wire::encode_event(e))
            }
        })
        .collect();
    salestrack_msk::batch(&records, "arn:test", "test")
}

#[tokio::test]
async fn a_batch_reads_each_carts_detail_once_and_writes_each_document_once() {
    let w = world();
    let a = three_events();
    let b = one_line_cart();
    let store = w.watched(Fault::None);
    let result = w
        .run_on(
            store.clone(),
            mixed_batch(&[
                (&a[0], false),
                (&b[0], false),
                (&a[1], false),
                (&a[0], true),
                (&a[2], false),
                (&b[0], true),
            ]),
        )
        .await;
    assert_eq!(result.failures, vec![]);
    assert_eq!(
        result.report,
        BatchReport {
            projected: 4,
            outcomes: 2,
            ..BatchReport::default()
        }
    );
    assert_eq!(
        *store.detail_reads.lock().expect("lock"),
        1,
        "one read for both carts' details"
    );
    assert_eq!(
        *store.writes.lock().expect("lock"),
        vec![
            // Cart a's two lines (one of them since cancelled) and b's one.
            vec!["line", "line", "line", "summary", "summary"],
            vec!["detail", "detail", "status", "status"],
        ],
        "two round trips for the whole batch, the checkpoints last"
    );
    let detail = w
        .read
        .cart_detail(a[0].cart_id, Reader::Any)
        .await
        .expect("get")
        .expect("a");
    assert_eq!(detail.version, 3);
    assert_eq!(
        w.read
            .cart_detail(b[0].cart_id, Reader::Any)
            .await
            .expect("get")
            .expect("b")
            .version,
        1
    );
}

#[tokio::test]
async fn a_document_the_store_refuses_fails_only_its_carts_first_record() {
    let w = world();
    let (a, refused, c) = (one_line_cart(), one_line_cart(), one_line_cart());
    let store = w.watched(Fault::Refuse(refused[0].cart_id));
    let result = w
        .run_on(
            store,
            mixed_batch(&[(&a[0], false), (&refused[0], false), (&c[0], false)]),
        )
        .await;
    assert_eq!(
        result
            .failures
            .iter()
            .map(|f| (f.offset, f.retryable))
            .collect::<Vec<_>>(),
        vec![(1, false)],
        "dead-lettered at once, the partition redelivered from it"
    );
    for (cart, stored) in [(&a, true), (&refused, false), (&c, true)] {
        assert_eq!(
            w.read
                .cart_detail(cart[0].cart_id, Reader::Any)
                .await
                .expect("get")
                .is_some(),
            stored
        );
    }
}

#[tokio::test]
async fn a_read_store_outage_fails_every_partition_from_its_first_record() {
    let w = world();
    let (a, b) = (one_line_cart(), one_line_cart());
    let mut event = mixed_batch(&[(&a[0], false)]);
    let mut second = mixed_batch(&[(&b[0], false)]);
    let mut moved = second.records.remove("sales.events-0").expect("records");
    moved[0].partition = 5;
    event.records.insert("sales.events-5".into(), moved);
    let result = w.run_on(w.watched(Fault::Down), event.clone()).await;
    let mut failed: Vec<(i64, i64, bool)> = result
        .failures
        .iter()
        .map(|f| (f.partition, f.offset, f.retryable))
        .collect();
    failed.sort();
    assert_eq!(failed, vec![(0, 0, true), (5, 0, true)]);
    assert_eq!(result.report, BatchReport::default());
    // Back up: the redelivery projects both.
    assert_eq!(w.run(event).await.projected, 2);
}
