//! The projector function: the only writer of the read models.
//!
//! Folds events from the events topic into the cart detail, cart summary and
//! sales-line documents, and command outcomes from the outcomes topic into
//! command-status documents. Every write is guarded by stream version, so a
//! redelivered or older event never overwrites newer state or duplicates an
//! item.
//!
//! The cart detail is written last: its version is the checkpoint. A crash
//! between writes leaves it behind, so redelivery redoes the (idempotent)
//! writes before it. If an event arrives with a gap after the stored version,
//! the cart is refolded from the event store (read only) instead of skipping
//! the missing events. Never calls the domain. A record that cannot be
//! projected stops its partition and is named in the partial failure
//! response, as permanent (poison) or retryable (backend); the event source
//! dead-letters it once retrying is pointless, so it never blocks the partition.

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use lambda_runtime::LambdaEvent;
use salestrack_core::event::RecordedEvent;
use salestrack_core::headers::TraceParent;
use salestrack_core::ports::{BackendError, EventStore, ReadDocument, ReadStore};
use salestrack_core::read_model::{step, CartDetail, Step};
use salestrack_core::wire::{self, DecodeError, Outcome};
use salestrack_msk::{self as msk, BatchResult, Record, RecordError};
use salestrack_platform::Topics;
use serde::Serialize;
use std::sync::Arc;
use tracing::Instrument;

#[derive(Clone)]
pub struct Deps {
    pub read_store: Arc<dyn ReadStore>,
    /// Read only: refolds a cart when events are missing.
    pub event_store: Arc<dyn EventStore>,
    pub topics: Topics,
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

impl BatchReport {
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
    Record(#[from] RecordError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("no projection consumes topic {0:?}")]
    UnknownTopic(String),
    #[error("event {version} of cart {cart_id} cancels a line of a cart that has none")]
    CancelBeforePlace {
        cart_id: salestrack_core::ids::CartId,
        version: u64,
    },
}

// One value per record, never stored: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    Event(RecordedEvent),
    Outcome(Outcome),
}

/// Handles a batch; never fails as a whole. Records that failed are in the
/// result's `failures` (see [`BatchResult::response`]).
pub async fn handler(event: LambdaEvent<KafkaEvent>, deps: &Deps) -> BatchResult<BatchReport> {
    let (handled, failures) =
        msk::each_record(&event.payload, |record| handle_record(record, deps)).await;
    let report = handled
        .into_iter()
        .fold(BatchReport::default(), BatchReport::add);
    for (result, n) in [
        ("projected", report.projected),
        ("skipped", report.skipped),
        ("refolded", report.refolded),
        ("outcome", report.outcomes),
        ("failed", failures.len()),
    ] {
        if n > 0 {
            metrics::counter!("salestrack_projector_records_total", "result" => result)
                .increment(n as u64);
        }
    }
    tracing::info!(?report, failed = failures.len(), "projection batch handled");
    BatchResult { report, failures }
}

/// A decoded record with what its headers say about its command.
struct Decoded {
    input: Input,
    trace: Option<TraceParent>,
    accepted_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn decode(r: &KafkaRecord, topics: &Topics) -> Result<Decoded, Poison> {
    let record = Record::from_kafka(r)?;
    let trace = TraceParent::from_headers(&record.headers);
    let accepted_at = salestrack_core::headers::find_accepted_at(&record.headers);
    decode_value(record, topics).map(|input| Decoded {
        input,
        trace,
        accepted_at,
    })
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

async fn handle_record(r: &KafkaRecord, deps: &Deps) -> Result<BatchReport, HandlerError> {
    let Decoded {
        input,
        trace,
        accepted_at,
    } = decode(r, &deps.topics)?;
    let trace_id = trace.map(|t| t.trace_id_hex()).unwrap_or_default();
    match input {
        Input::Event(event) => {
            let span = tracing::info_span!("project", cart_id = %event.cart_id, version = event.version,
                command_id = %event.command_id, %trace_id);
            if let Some(trace) = &trace {
                salestrack_platform::telemetry::continue_trace(&span, trace);
            }
            let report = project_event(&event, deps).instrument(span).await?;
            if let (Some(accepted), true) = (accepted_at, report.projected > 0) {
                // POST /orders answered 202 -> the event is in the read models.
                let latency = chrono::Utc::now() - accepted;
                metrics::histogram!("salestrack_command_to_visible_seconds")
                    .record(latency.num_milliseconds().max(0) as f64 / 1e3);
            }
            Ok(report)
        }
        Input::Outcome(outcome) => {
            deps.read_store
                .upsert(ReadDocument::CommandStatus(outcome))
                .await?;
            Ok(BatchReport {
                outcomes: 1,
                ..BatchReport::default()
            })
        }
    }
}

async fn project_event(e: &RecordedEvent, deps: &Deps) -> Result<BatchReport, HandlerError> {
    let current = deps.read_store.cart_detail(e.cart_id).await?;
    let stored_version = current.as_ref().map_or(0, |d| d.version);
    let (detail, touched, report) = match step(stored_version, e.version) {
        Step::Skip => {
            return Ok(BatchReport {
                skipped: 1,
                ..BatchReport::default()
            })
        }
        Step::Apply => (
            CartDetail::apply(current, e),
            vec![e.event.order_id()],
            BatchReport {
                projected: 1,
                ..BatchReport::default()
            },
        ),
        Step::Gap => {
            tracing::warn!(
                stored_version,
                "events missing before this one; refolding the cart from the event store"
            );
            let stream = deps.event_store.read_stream(e.cart_id).await?;
            let detail = CartDetail::fold(stream.iter().take_while(|x| x.version <= e.version));
            if detail.as_ref().map_or(0, |d| d.version) < e.version {
                return Err(HandlerError::StoreBehind {
                    cart_id: e.cart_id,
                    version: e.version,
                });
            }
            let touched = detail
                .iter()
                .flat_map(|d| d.items.iter().map(|i| i.order_id))
                .collect();
            (
                detail,
                touched,
                BatchReport {
                    projected: 1,
                    refolded: 1,
                    ..BatchReport::default()
                },
            )
        }
    };
    let Some(detail) = detail else {
        return Err(Poison::CancelBeforePlace {
            cart_id: e.cart_id,
            version: e.version,
        }
        .into());
    };
    // One round trip for the lines and the summary; the detail, the
    // checkpoint, only once they all stuck.
    let mut docs: Vec<ReadDocument> = touched
        .into_iter()
        .filter_map(|order_id| detail.sales_line(order_id))
        .map(ReadDocument::SalesLine)
        .collect();
    docs.push(ReadDocument::CartSummary(detail.summary()));
    deps.read_store.upsert_all(docs).await?;
    deps.read_store
        .upsert(ReadDocument::CartDetail(detail))
        .await?;
    // Event recorded by the domain -> visible in the read models.
    let lag = chrono::Utc::now() - e.recorded_at;
    metrics::histogram!("salestrack_projection_lag_seconds")
        .record(lag.num_milliseconds().max(0) as f64 / 1e3);
    Ok(report)
}
