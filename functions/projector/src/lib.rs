//! The projector function: the only writer of the read models.
//!
//! Folds events from the events topic into the cart detail, cart summary and
//! sales-line documents, and command outcomes from the outcomes topic into
//! command-status documents. An MSK batch is folded cart by cart (see
//! [`salestrack_msk::each_key`]; carts concurrently, each in offset order):
//! a cart's detail is read once, every event of the batch is folded onto
//! it, and each document the cart touched is written once. The writes of
//! the whole batch go out together, in two rounds: the sales lines and
//! summaries, then, only once they all stuck, the details and command
//! statuses. Every write is guarded by stream version, so a redelivered or
//! older event never overwrites newer state or duplicates an item.
//!
//! The cart detail is written last: its version is the checkpoint. A crash
//! between writes leaves it behind, so redelivery redoes the (idempotent)
//! writes before it. If an event arrives with a gap after the stored version,
//! the cart is refolded from the event store (read only) instead of skipping
//! the missing events. Never calls the domain. A record that cannot be
//! projected is named in the partial failure response by the partial-batch
//! rule (ARCHITECTURE.md, "The partial-batch rule, exactly").
//!
//! Once a batch's documents are written, the carts it moved on are told to
//! the projection feed (`sales.projections`), which the live streams of
//! every query process follow.

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use salestrack_core::event::RecordedEvent;
use salestrack_core::headers::TraceParent;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::{BackendError, EventStore, ProjectionFeed, ReadDocument, ReadStore};
use salestrack_core::read_model::{step, CartDetail, Step};
use salestrack_core::wire::{self, CartProjected, DecodeError, Outcome};
use salestrack_msk::{self as msk, BatchResult, Record, RecordError};
use salestrack_platform::Topics;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;

#[derive(Clone)]
pub struct Deps {
    pub read_store: Arc<dyn ReadStore>,
    /// Read only: refolds a cart when events are missing.
    pub event_store: Arc<dyn EventStore>,
    pub topics: Topics,
    /// Told which carts each batch moved on, once their documents are
    /// written (live streams follow it); `None`: nobody follows.
    pub feed: Option<Arc<dyn ProjectionFeed>>,
}

impl Deps {
    /// The one way a process builds the projector's dependencies: its
    /// ports from `backends`, its topics from `settings`, and the feed the
    /// process's live streams follow, if any.
    pub fn from_settings(
        settings: &salestrack_platform::Settings,
        backends: &salestrack_platform::Backends,
        feed: Option<Arc<dyn ProjectionFeed>>,
    ) -> Result<Deps, BackendError> {
        Ok(Deps {
            read_store: backends.read_store()?,
            event_store: backends.event_store()?,
            topics: settings.topics.clone(),
            feed,
        })
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub projected: usize,
    /// Events already folded (redelivery, replay).
    pub skipped: usize,
    /// Events that found a gap and refolded the cart from the event store.
    pub refolded: usize,
    pub outcomes: usize,
}

impl msk::Counts for BatchReport {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("projected", self.projected),
            ("skipped", self.skipped),
            ("refolded", self.refolded),
            ("outcome", self.outcomes),
        ]
    }
}

/// Both reports' counts summed.
impl std::ops::Add for BatchReport {
    type Output = BatchReport;

    fn add(mut self, o: BatchReport) -> BatchReport {
        self.projected += o.projected;
        self.skipped += o.skipped;
        self.refolded += o.refolded;
        self.outcomes += o.outcomes;
        self
    }
}

/// Why a record could not be projected.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("backend failure: {0}")]
    Backend(#[from] BackendError),
    #[error("cart {cart_id}: the event store has no version {version} yet")]
    StoreBehind {
        cart_id: salestrack_core::ids::CartId,
        version: u64,
    },
    #[error(transparent)]
    Poison(#[from] Poison),
}

impl msk::Failure for HandlerError {
    /// Poison, and documents the read store refuses (a mapping conflict),
    /// go to the dead-letter topic at once; outages are retried.
    fn retryable(&self) -> bool {
        match self {
            HandlerError::Poison(_) => false,
            HandlerError::Backend(e) => !e.permanent,
            HandlerError::StoreBehind { .. } => true,
        }
    }
}

/// Why a record is poison: no redelivery can make it projectable.
#[derive(Debug, thiserror::Error)]
pub enum Poison {
    #[error(transparent)]
    Batch(#[from] msk::Poison),
    #[error("no projection consumes topic {0:?}")]
    UnknownTopic(String),
    #[error("event {version} of cart {cart_id} changes a cart that has no line")]
    CancelBeforePlace {
        cart_id: salestrack_core::ids::CartId,
        version: u64,
    },
}

impl From<RecordError> for Poison {
    fn from(e: RecordError) -> Self {
        Poison::Batch(e.into())
    }
}

impl From<DecodeError> for Poison {
    fn from(e: DecodeError) -> Self {
        Poison::Batch(e.into())
    }
}

// One value per record, never stored: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    Event(RecordedEvent),
    Outcome(Outcome),
}

/// What projecting one record did.
struct Projected<'a> {
    report: BatchReport,
    /// The event's 202 and recording times, when it changed the read models.
    visible: Option<(Option<DateTime<Utc>>, DateTime<Utc>)>,
    /// The cart's writes, on the last record the cart handled.
    writes: Option<Writes<'a>>,
}

/// The documents one cart's records of a batch produce.
#[derive(Default)]
struct Writes<'a> {
    /// The cart's first record: named when the store refuses its documents.
    first: Option<&'a KafkaRecord>,
    lines_and_summary: Vec<ReadDocument>,
    /// The detail (checkpoint) and command statuses, written after the rest.
    checkpoint: Vec<ReadDocument>,
    /// The version the cart's read models are at once written: told to the
    /// feed (also on a redelivery that changed nothing, in case the notice
    /// of the first delivery was lost).
    notice: Option<CartProjected>,
}

/// Handles a batch; never fails as a whole. Records that failed are in the
/// result's `failures` (see [`BatchResult::response`]).
pub async fn handler(event: LambdaEvent<KafkaEvent>, deps: &Deps) -> BatchResult<BatchReport> {
    let batch = &event.payload;
    let (groups, mut keyed) = msk::group_by_key(batch, |r| {
        decode(r, &deps.topics).map_err(HandlerError::from)
    });
    // Every detail the batch folds onto, in one read.
    let wanted: Vec<CartId> = groups
        .iter()
        .filter(|(_, records)| {
            records
                .iter()
                .any(|d| matches!(d.value.input, Input::Event(_)))
        })
        .map(|(cart_id, _)| *cart_id)
        .collect();
    let mut details: HashMap<CartId, Option<CartDetail>> =
        match deps.read_store.cart_details(&wanted).await {
            Ok(found) => wanted.into_iter().zip(found).collect(),
            Err(e) => {
                tracing::error!(error = %e, "reading the batch's cart details failed");
                keyed.fail_all(batch, &HandlerError::Backend(e));
                return BatchResult {
                    report: BatchReport::default(),
                    failures: keyed.failures,
                };
            }
        };
    let groups = groups
        .into_iter()
        .map(|(cart_id, records)| ((cart_id, details.remove(&cart_id).flatten()), records))
        .collect();
    let mut keyed = msk::each_group(
        groups,
        keyed,
        |(cart_id, detail), records| project_cart(cart_id, records, detail, deps),
        msk::CART_CONCURRENCY,
    )
    .await;
    let writes: Vec<Writes> = keyed
        .handled
        .iter_mut()
        .filter_map(|(_, p)| p.writes.take())
        .collect();
    let mut report = keyed
        .handled
        .iter()
        .fold(BatchReport::default(), |r, (_, p)| r + p.report);
    match write_all(&writes, deps).await {
        Ok(()) => {
            record_latencies(&keyed.handled);
            publish(writes.iter().filter_map(|w| w.notice), deps).await;
        }
        Err(e) if e.permanent => {
            tracing::warn!(error = %e, "the read store refused a document; writing cart by cart");
            let mut written = Vec::with_capacity(writes.len());
            for cart in &writes {
                match (
                    write_all(std::slice::from_ref(cart), deps).await,
                    cart.first,
                ) {
                    (Err(e), Some(first)) => keyed.fail(first, &HandlerError::Backend(e)),
                    (Err(_), None) => {}
                    (Ok(()), _) => written.extend(cart.notice),
                }
            }
            publish(written.into_iter(), deps).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "writing the batch's documents failed");
            keyed.fail_all(batch, &HandlerError::Backend(e));
            report = BatchReport::default();
        }
    }
    msk::finish(
        "salestrack_projector_records_total",
        "projection batch",
        report,
        keyed.failures,
    )
}

/// Tells the feed, if any, which carts moved on. A failure is logged and
/// counted, never failed on: live streams also look at the read store
/// themselves, so a lost notice only delays them.
async fn publish(notices: impl Iterator<Item = CartProjected>, deps: &Deps) {
    let Some(feed) = &deps.feed else { return };
    let notices: Vec<CartProjected> = notices.collect();
    if notices.is_empty() {
        return;
    }
    if let Err(e) = feed.publish(&notices).await {
        metrics::counter!("salestrack_projector_notices_lost_total")
            .increment(notices.len() as u64);
        tracing::warn!(error = %e, carts = notices.len(), "telling live streams of the batch failed; they catch up at their next look");
    }
}

/// Lines and summaries of every cart in one round trip, then the details
/// (the checkpoints) and command statuses in a second one, only once the
/// first fully succeeded.
async fn write_all(writes: &[Writes<'_>], deps: &Deps) -> Result<(), BackendError> {
    for round in [
        writes
            .iter()
            .flat_map(|w| w.lines_and_summary.iter().cloned())
            .collect::<Vec<_>>(),
        writes
            .iter()
            .flat_map(|w| w.checkpoint.iter().cloned())
            .collect(),
    ] {
        if !round.is_empty() {
            deps.read_store.upsert_all(round).await?;
        }
    }
    Ok(())
}

fn record_latencies(handled: &[(&KafkaRecord, Projected<'_>)]) {
    let now = Utc::now();
    let seconds = |since: DateTime<Utc>| (now - since).num_milliseconds().max(0) as f64 / 1e3;
    for (accepted, recorded) in handled.iter().filter_map(|(_, p)| p.visible) {
        if let Some(accepted) = accepted {
            // POST /orders answered 202 -> the event is in the read models.
            metrics::histogram!("salestrack_command_to_visible_seconds").record(seconds(accepted));
        }
        // Event recorded by the domain -> visible in the read models.
        metrics::histogram!("salestrack_projection_lag_seconds").record(seconds(recorded));
    }
}

/// A decoded record with what its headers say about its command.
struct Decoded {
    input: Input,
    trace: Option<TraceParent>,
    accepted_at: Option<DateTime<Utc>>,
}

fn decode(r: &KafkaRecord, topics: &Topics) -> Result<(CartId, Decoded), Poison> {
    let record = Record::from_kafka(r)?;
    let trace = TraceParent::from_headers(&record.headers);
    let accepted_at = salestrack_core::headers::find_accepted_at(&record.headers);
    let input = decode_value(record, topics)?;
    let cart_id = match &input {
        Input::Event(e) => e.cart_id,
        Input::Outcome(o) => o.cart_id,
    };
    Ok((
        cart_id,
        Decoded {
            input,
            trace,
            accepted_at,
        },
    ))
}

fn decode_value(record: Record, topics: &Topics) -> Result<Input, Poison> {
    if record.topic == topics.events {
        Ok(Input::Event(wire::decode_event(&record.value)?))
    } else if record.topic == topics.outcomes {
        Ok(Input::Outcome(Outcome::decode(&record.value)?))
    } else {
        Err(Poison::UnknownTopic(record.topic))
    }
}

/// Folds one cart's records of the batch onto its stored `detail`; one result
/// per record, in order, up to the first failure. The documents go on the
/// last record handled.
async fn project_cart<'a>(
    cart_id: CartId,
    records: Vec<msk::Decoded<'a, Decoded>>,
    mut detail: Option<CartDetail>,
    deps: &Deps,
) -> Vec<Result<Projected<'a>, HandlerError>> {
    let stored_version = detail.as_ref().map_or(0, |d: &CartDetail| d.version);
    let mut writes = Writes {
        first: records.first().map(|d| d.record),
        ..Writes::default()
    };
    let mut touched: Vec<OrderId> = Vec::new();
    let mut results = Vec::with_capacity(records.len());
    let mut events = false;
    for d in records {
        let Decoded {
            input,
            trace,
            accepted_at,
        } = d.value;
        let result = match input {
            Input::Outcome(outcome) => {
                writes.checkpoint.push(ReadDocument::CommandStatus(outcome));
                Ok(Projected {
                    report: BatchReport {
                        outcomes: 1,
                        ..BatchReport::default()
                    },
                    visible: None,
                    writes: None,
                })
            }
            Input::Event(event) => {
                events = true;
                let span = tracing::info_span!("project", %cart_id, version = event.version,
                    command_id = %event.command_id, trace_id = %trace.map(|t| t.trace_id_hex()).unwrap_or_default());
                if let Some(trace) = &trace {
                    salestrack_platform::telemetry::continue_trace(&span, trace);
                }
                fold_event(&mut detail, &mut touched, &event, deps)
                    .instrument(span)
                    .await
                    .map(|report| Projected {
                        visible: (report.projected > 0).then_some((accepted_at, event.recorded_at)),
                        report,
                        writes: None,
                    })
            }
        };
        let failed = result.is_err();
        results.push(result);
        if failed {
            break;
        }
    }
    if events {
        writes.notice = detail.as_ref().map(|d| CartProjected {
            cart_id,
            version: d.version,
        });
    }
    if let Some(detail) = detail.filter(|d| d.version > stored_version) {
        writes.lines_and_summary.extend(
            touched
                .into_iter()
                .filter_map(|order_id| detail.sales_line(order_id))
                .map(ReadDocument::SalesLine),
        );
        writes
            .lines_and_summary
            .push(ReadDocument::CartSummary(detail.summary()));
        writes.checkpoint.push(ReadDocument::CartDetail(detail));
    }
    if let Some(Ok(last)) = results.iter_mut().rev().find(|r| r.is_ok()) {
        last.writes = Some(writes);
    }
    results
}

/// Folds one event onto the cart's detail as the batch left it so far.
async fn fold_event(
    detail: &mut Option<CartDetail>,
    touched: &mut Vec<OrderId>,
    e: &RecordedEvent,
    deps: &Deps,
) -> Result<BatchReport, HandlerError> {
    let version = detail.as_ref().map_or(0, |d| d.version);
    let cancel_before_place = || Poison::CancelBeforePlace {
        cart_id: e.cart_id,
        version: e.version,
    };
    let mut touch = |order_id: OrderId| {
        if !touched.contains(&order_id) {
            touched.push(order_id);
        }
    };
    match step(version, e.version) {
        Step::Skip => Ok(BatchReport {
            skipped: 1,
            ..BatchReport::default()
        }),
        Step::Apply => {
            // `apply` only answers `None` for a first event that cancels,
            // when there was no detail to lose.
            let folded = CartDetail::apply(detail.take(), e).ok_or_else(cancel_before_place)?;
            folded
                .lines_changed_by(&e.event)
                .into_iter()
                .for_each(&mut touch);
            *detail = Some(folded);
            Ok(BatchReport {
                projected: 1,
                ..BatchReport::default()
            })
        }
        Step::Gap => {
            tracing::warn!(
                stored_version = version,
                "events missing before this one; refolding the cart from the event store"
            );
            let stream = deps.event_store.read_stream(e.cart_id).await?;
            let refolded = CartDetail::fold(stream.iter().take_while(|x| x.version <= e.version));
            if refolded.as_ref().map_or(0, |d| d.version) < e.version {
                return Err(HandlerError::StoreBehind {
                    cart_id: e.cart_id,
                    version: e.version,
                });
            }
            let refolded = refolded.ok_or_else(cancel_before_place)?;
            refolded.items.iter().for_each(|i| touch(i.order_id));
            *detail = Some(refolded);
            Ok(BatchReport {
                projected: 1,
                refolded: 1,
                ..BatchReport::default()
            })
        }
    }
}
