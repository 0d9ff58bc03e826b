//! The domain function: the only writer of the event store.
//!
//! For each command record of an MSK batch: decode it, load the cart's
//! stream, decide, append with an expected version, then publish the new
//! events and the command's outcome. Records of one partition are handled in
//! order; partitions run concurrently.
//!
//! - A rule-breaking command is *rejected*: its outcome, with a reason code,
//!   goes to the outcomes topic so the client can learn why.
//! - A repeated command appends nothing and re-publishes the events it caused,
//!   which heals a publish lost after a successful append.
//! - A record that cannot be handled stops its partition and is named in the
//!   batch's partial failure response, as permanent (poison: bad base64, bad
//!   JSON, unknown type, invalid command) or retryable (a backend failure,
//!   endless append races). The event source redelivers from that record and
//!   dead-letters it once retrying is pointless, so poison never blocks its
//!   partition. Redelivery is safe because every step above is idempotent.
//!
//! Depends on the core's ports only; never on a driver.

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use lambda_runtime::LambdaEvent;
use salestrack_core::aggregate::{Cart, DomainError};
use salestrack_core::event::RecordedEvent;
use salestrack_core::headers::{self as h, TraceParent};
use salestrack_core::ids::CartId;
use salestrack_core::ports::{
    AppendError, BackendError, Clock, EventStore, OutboundRecord, Producer,
};
use salestrack_core::wire::{
    self, CommandRecord, DecodeError, Outcome, OutcomeStatus, Reason, SCHEMA_VERSION,
};
use salestrack_msk::{self as msk, BatchResult, Record, RecordError};
use salestrack_platform::Topics;
use serde::Serialize;
use std::sync::Arc;
use tracing::Instrument;

mod carts;
pub use carts::Carts;

/// How often a command is re-decided after losing an append race before the
/// record fails (and is redelivered).
pub const MAX_APPEND_ATTEMPTS: u32 = 5;

/// What the handler needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    pub event_store: Arc<dyn EventStore>,
    /// Snapshot interval in events (see [`Carts`]); 0 turns snapshots off.
    pub snapshot_every: u64,
    pub producer: Arc<dyn Producer>,
    pub clock: Arc<dyn Clock>,
    pub topics: Topics,
}

/// Counts of what happened to a batch's records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

impl BatchReport {
    fn add(mut self, other: BatchReport) -> BatchReport {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self
    }
}

/// Why a record could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("backend failure: {0}")]
    Backend(#[from] BackendError),
    #[error("cart {cart_id}: lost {attempts} append races in a row")]
    Contention { cart_id: CartId, attempts: u32 },
    #[error(transparent)]
    Poison(#[from] Poison),
}

impl msk::Failure for HandlerError {
    fn retryable(&self) -> bool {
        !matches!(self, HandlerError::Poison(_))
    }
}

/// Why a record is poison: no redelivery can make it valid.
#[derive(Debug, thiserror::Error)]
pub enum Poison {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("record key {key:?} does not match the command's cart {cart_id}")]
    KeyMismatch { key: String, cart_id: CartId },
}

enum Handled {
    Applied,
    Duplicate,
    Rejected,
}

impl Handled {
    fn label(&self) -> &'static str {
        match self {
            Handled::Applied => "applied",
            Handled::Duplicate => "duplicate",
            Handled::Rejected => "rejected",
        }
    }
}

impl From<Handled> for BatchReport {
    fn from(h: Handled) -> BatchReport {
        let mut report = BatchReport::default();
        match h {
            Handled::Applied => report.applied = 1,
            Handled::Duplicate => report.duplicates = 1,
            Handled::Rejected => report.rejected = 1,
        }
        report
    }
}

/// Handles a batch; never fails as a whole. Records that failed are in the
/// result's `failures` (see [`BatchResult::response`]).
pub async fn handler(event: LambdaEvent<KafkaEvent>, deps: &Deps) -> BatchResult<BatchReport> {
    let (handled, failures) =
        msk::each_record(&event.payload, |record| handle_record(record, deps)).await;
    let report = handled
        .into_iter()
        .fold(BatchReport::default(), |report, handled| {
            metrics::counter!("salestrack_domain_records_total", "result" => handled.label())
                .increment(1);
            report.add(handled.into())
        });
    if !failures.is_empty() {
        metrics::counter!("salestrack_domain_records_total", "result" => "failed")
            .increment(failures.len() as u64);
    }
    tracing::info!(?report, failed = failures.len(), "command batch handled");
    BatchResult { report, failures }
}

fn decode(r: &KafkaRecord) -> Result<(CommandRecord, TraceParent), Poison> {
    let record = Record::from_kafka(r)?;
    let command = CommandRecord::decode(&record.value)?;
    // Records from producers that send no trace context start one here.
    let trace = TraceParent::from_headers(&record.headers)
        .unwrap_or_else(|| TraceParent::for_command(command.command_id));
    let cart_id = command.command.cart_id();
    if let Some(key) = record
        .key
        .as_deref()
        .filter(|k| *k != cart_id.to_string().as_bytes())
    {
        return Err(Poison::KeyMismatch {
            key: String::from_utf8_lossy(key).into_owned(),
            cart_id,
        });
    }
    Ok((command, trace))
}

async fn handle_record(r: &KafkaRecord, deps: &Deps) -> Result<Handled, HandlerError> {
    let (command, trace) = decode(r)?;
    let span = tracing::info_span!(
        "command",
        command_id = %command.command_id,
        cart_id = %command.command.cart_id(),
        kind = command.command.kind(),
        trace_id = %trace.trace_id_hex(),
    );
    salestrack_platform::telemetry::continue_trace(&span, &trace);
    decide_and_append(&command, trace, deps)
        .instrument(span)
        .await
}

async fn decide_and_append(
    record: &CommandRecord,
    trace: TraceParent,
    deps: &Deps,
) -> Result<Handled, HandlerError> {
    let cart_id = record.command.cart_id();
    let carts = Carts::new(Arc::clone(&deps.event_store), deps.snapshot_every);
    for attempt in 1..=MAX_APPEND_ATTEMPTS {
        let cart = carts.load(cart_id).await?;
        let events = match cart.decide(&record.command) {
            Ok(events) => events,
            Err(reason) => {
                tracing::info!(code = reason.code(), %reason, "command rejected");
                publish(
                    deps,
                    record,
                    trace,
                    &[],
                    rejected(record, &cart, &reason, deps),
                )
                .await?;
                return Ok(Handled::Rejected);
            }
        };
        if events.is_empty() {
            let earlier = match cart.satisfied_at(&record.command) {
                Some(version) => {
                    deps.event_store
                        .read_range(cart_id, version..=version)
                        .await?
                }
                None => Vec::new(),
            };
            // The version the command's effect reached, not the cart's current one.
            let version = earlier.last().map_or(cart.version(), |e| e.version);
            tracing::info!(
                republished = earlier.len(),
                version,
                "command already applied"
            );
            publish(
                deps,
                record,
                trace,
                &earlier,
                applied(record, version, true, deps),
            )
            .await?;
            return Ok(Handled::Duplicate);
        }
        let recorded = RecordedEvent::number(
            cart_id,
            cart.version(),
            record.command_id,
            deps.clock.now(),
            events,
        );
        match deps
            .event_store
            .append(cart_id, cart.version(), &recorded)
            .await
        {
            Ok(()) => {
                let before = cart.version();
                let cart = cart.apply(&recorded);
                let version = cart.version();
                publish(
                    deps,
                    record,
                    trace,
                    &recorded,
                    applied(record, version, false, deps),
                )
                .await?;
                carts.appended(cart_id, before, &cart).await;
                tracing::info!(version, "command applied");
                return Ok(Handled::Applied);
            }
            Err(AppendError::Conflict { expected, actual }) => {
                metrics::counter!("salestrack_domain_append_conflicts_total").increment(1);
                tracing::debug!(
                    attempt,
                    expected,
                    actual,
                    "lost an append race; deciding again"
                );
            }
            Err(AppendError::Backend(e)) => return Err(e.into()),
        }
    }
    Err(HandlerError::Contention {
        cart_id,
        attempts: MAX_APPEND_ATTEMPTS,
    })
}

fn outcome(record: &CommandRecord, version: u64, deps: &Deps) -> Outcome {
    Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: record.command_id,
        cart_id: record.command.cart_id(),
        order_id: record.command.order_id(),
        command_type: record.command.kind().into(),
        status: OutcomeStatus::Applied,
        version,
        duplicate: false,
        reason: None,
        decided_at: deps.clock.now(),
    }
}

fn applied(record: &CommandRecord, version: u64, duplicate: bool, deps: &Deps) -> Outcome {
    Outcome {
        duplicate,
        ..outcome(record, version, deps)
    }
}

fn rejected(record: &CommandRecord, cart: &Cart, reason: &DomainError, deps: &Deps) -> Outcome {
    Outcome {
        status: OutcomeStatus::Rejected,
        reason: Some(Reason {
            code: reason.code().into(),
            message: reason.to_string(),
        }),
        ..outcome(record, cart.version(), deps)
    }
}

/// Events first, then the outcome: a client that sees `applied` can rely on
/// the events being on the bus. Each carries the command's trace and the
/// time it was accepted.
async fn publish(
    deps: &Deps,
    record: &CommandRecord,
    trace: TraceParent,
    events: &[RecordedEvent],
    outcome: Outcome,
) -> Result<(), BackendError> {
    let schema = SCHEMA_VERSION.to_string().into_bytes();
    let mut records: Vec<OutboundRecord> = events
        .iter()
        .map(|e| OutboundRecord {
            topic: deps.topics.events.clone(),
            key: e.cart_id.to_string().into_bytes(),
            value: wire::encode_event(e),
            headers: vec![
                (h::MESSAGE_TYPE.into(), e.event.kind().as_bytes().to_vec()),
                (h::SCHEMA_VERSION.into(), schema.clone()),
                (h::EVENT_ID.into(), e.event_id.to_string().into_bytes()),
                (h::COMMAND_ID.into(), e.command_id.to_string().into_bytes()),
                trace.event_in(e.event_id).header(),
                h::accepted_at(record.accepted_at),
            ],
        })
        .collect();
    records.push(OutboundRecord {
        topic: deps.topics.outcomes.clone(),
        key: outcome.cart_id.to_string().into_bytes(),
        value: outcome.encode(),
        headers: vec![
            (h::MESSAGE_TYPE.into(), b"outcome".to_vec()),
            (h::SCHEMA_VERSION.into(), schema),
            (
                h::COMMAND_ID.into(),
                outcome.command_id.to_string().into_bytes(),
            ),
            trace.header(),
            h::accepted_at(record.accepted_at),
        ],
    });
    deps.producer.send_all(records).await.map(drop)
}
