//! The domain function: the only writer of the event store.
//!
//! An MSK batch is handled cart by cart (see [`salestrack_msk::each_key`]):
//! its command records are decoded and grouped by cart; each cart is loaded
//! once, its commands are decided in offset order against the evolving
//! state, and everything they produce is appended with one conditional
//! write (in chunks of at most [`MAX_EVENTS_PER_APPEND`] events, whole
//! commands each). Carts run concurrently, within and across partitions,
//! at most [`msk::CART_CONCURRENCY`] at once. Then the events and outcomes of
//! the whole batch are published together, and awaited together.
//!
//! - A rule-breaking command is *rejected*: its outcome, with a reason code,
//!   goes to the outcomes topic so the client can learn why.
//! - A repeated command appends nothing and re-publishes the events it caused,
//!   which heals a publish lost after a successful append. A command repeated
//!   within one batch is a repeat too.
//! - A lost append race reloads the cart and decides all of its commands
//!   again (at most [`MAX_APPEND_ATTEMPTS`] times, then the cart's records
//!   fail and are redelivered).
//! - A record that cannot be handled is named in the batch's partial
//!   failure response, as poison or retryable, by the partial-batch rule
//!   (ARCHITECTURE.md, "The partial-batch rule, exactly"); a failed publish
//!   fails every partition of the batch from its first record.
//!
//! Depends on the core's ports only; never on a driver.

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use lambda_runtime::LambdaEvent;
use salestrack_core::aggregate::{Cart, Context, DomainError};
use salestrack_core::event::RecordedEvent;
use salestrack_core::headers::TraceParent;
use salestrack_core::ids::CartId;
use salestrack_core::ports::{
    AppendError, BackendError, Clock, EventStore, OutboundRecord, Producer, StreamAppend,
};
use salestrack_core::wire::{
    self, CommandRecord, Outcome, OutcomeStatus, PaymentRequest, Reason, SCHEMA_VERSION,
};
use salestrack_msk::{self as msk, BatchResult, Record};
use salestrack_platform::Topics;
use serde::Serialize;
use std::sync::Arc;
use tracing::Instrument;

mod carts;
mod warm;
pub use carts::Carts;
pub use warm::WarmCarts;

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
    /// How long a checkout waits for its payment answer.
    pub payment_timeout: std::time::Duration,
    /// Carts decided recently, kept between batches (see [`WarmCarts`]).
    pub warm: Arc<WarmCarts>,
}

impl Deps {
    /// The one way a process builds the domain's dependencies: its ports
    /// from `backends`, the rest from `settings`.
    pub fn from_settings(
        settings: &salestrack_platform::Settings,
        backends: &salestrack_platform::Backends,
    ) -> Result<Deps, BackendError> {
        Ok(Deps {
            event_store: backends.event_store()?,
            snapshot_every: settings.snapshot_every,
            producer: backends.producer()?,
            clock: Arc::new(salestrack_core::ports::SystemClock),
            topics: settings.topics.clone(),
            payment_timeout: std::time::Duration::from_millis(settings.payment.timeout_ms),
            warm: Arc::new(WarmCarts::new(settings.warm_cart_events)),
        })
    }
}

/// Counts of what happened to a batch's records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// Appends that lost a race to another writer of the same cart (and were
    /// decided again on the new stream).
    pub conflicts: usize,
}

impl msk::Counts for BatchReport {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("applied", self.applied),
            ("duplicate", self.duplicates),
            ("rejected", self.rejected),
        ]
    }
}

/// Both reports' counts summed.
impl std::ops::Add for BatchReport {
    type Output = BatchReport;

    fn add(mut self, other: BatchReport) -> BatchReport {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.conflicts += other.conflicts;
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
    Poison(#[from] msk::Poison),
}

impl msk::Failure for HandlerError {
    fn retryable(&self) -> bool {
        !matches!(self, HandlerError::Poison(_))
    }
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

impl Handled {
    fn report(&self) -> BatchReport {
        let mut report = BatchReport::default();
        match self {
            Handled::Applied => report.applied = 1,
            Handled::Duplicate => report.duplicates = 1,
            Handled::Rejected => report.rejected = 1,
        }
        report
    }
}

/// Most events in one conditional append. A cart's batch needing more is
/// appended in several, whole commands each: Cassandra refuses a logged
/// batch past `batch_size_fail_threshold` (50 KiB by default), Amazon
/// Keyspaces one of more than 30 statements.
pub const MAX_EVENTS_PER_APPEND: usize = 25;

/// A decoded command record.
struct Incoming {
    command: CommandRecord,
    trace: TraceParent,
}

/// What became of one command, and what it has to publish.
struct Decided {
    handled: Handled,
    records: Vec<OutboundRecord>,
}

/// Handles a batch; never fails as a whole. Records that failed are in the
/// result's `failures` (see [`BatchResult::response`]).
pub async fn handler(event: LambdaEvent<KafkaEvent>, deps: &Deps) -> BatchResult<BatchReport> {
    let batch = &event.payload;
    let (groups, mut keyed) = msk::group_by_key(batch, |r| decode(r).map_err(HandlerError::from));
    let carts: Vec<CartCommands> = groups
        .into_iter()
        .map(|(cart_id, records)| CartCommands {
            cart_id,
            owners: records.iter().map(|d| d.record).collect(),
            commands: records.into_iter().map(|d| d.value).collect(),
        })
        .collect();
    let (decided, conflicts) = decide_all(&carts, deps).await;
    for (cart, decided) in carts.iter().zip(decided) {
        let results = match decided {
            Ok(decided) => decided.into_iter().map(Ok).collect(),
            // Nothing of the cart counts as handled: its first record fails.
            Err(e) => vec![Err(e)],
        };
        keyed.settle(&cart.owners, results);
    }
    let mut records = Vec::new();
    let mut report = BatchReport::default();
    for (_, decided) in &mut keyed.handled {
        records.append(&mut decided.records);
        report = report + decided.handled.report();
    }
    // Every event and outcome of the batch in one go: the bus batches them
    // (one transaction on the embedded bus, pipelined produce requests on
    // Kafka), and per-cart order is the order given.
    if let Err(e) = deps.producer.send_all(records).await {
        tracing::error!(error = %e, "publishing the batch's events and outcomes failed");
        keyed.fail_all(batch, &HandlerError::Backend(e));
        report = BatchReport::default();
    }
    report.conflicts = conflicts;
    msk::finish(
        "salestrack_domain_records_total",
        "command batch",
        report,
        keyed.failures,
    )
}

fn decode(r: &KafkaRecord) -> Result<(CartId, Incoming), msk::Poison> {
    let record = Record::from_kafka(r)?;
    let command = CommandRecord::decode(&record.value)?;
    // Records from producers that send no trace context start one here.
    let trace = TraceParent::from_headers(&record.headers)
        .unwrap_or_else(|| TraceParent::for_command(command.command_id));
    let cart_id = command.command.cart_id();
    msk::check_key(&record, cart_id, "command")?;
    Ok((cart_id, Incoming { command, trace }))
}

fn command_span(incoming: &Incoming) -> tracing::Span {
    let span = tracing::info_span!(
        "command",
        command_id = %incoming.command.command_id,
        cart_id = %incoming.command.command.cart_id(),
        kind = incoming.command.command.kind(),
        trace_id = %incoming.trace.trace_id_hex(),
    );
    salestrack_platform::telemetry::continue_trace(&span, &incoming.trace);
    span
}

/// One cart's commands of a batch, in offset order, with their records.
struct CartCommands<'a> {
    cart_id: CartId,
    owners: Vec<&'a KafkaRecord>,
    commands: Vec<Incoming>,
}

/// What a cart's commands decided on one loaded state.
struct Plan {
    /// The stream version the cart was loaded at.
    base: u64,
    /// The events to append, in order, and after which of them a command ends.
    pending: Vec<RecordedEvent>,
    command_ends: Vec<usize>,
    /// Per command: what happened, its events (new or republished), its outcome.
    decisions: Vec<(Handled, Vec<RecordedEvent>, Outcome)>,
    cart: Cart,
}

/// Decides every cart of the batch: loads and plans the carts (at most
/// [`msk::CART_CONCURRENCY`] at once), appends all of their events with one
/// [`EventStore::append_many`] per chunk round (one commit on the embedded
/// store, concurrent LWTs on Cassandra), and loads, plans and appends again
/// the carts that lost a race, at most [`MAX_APPEND_ATTEMPTS`] times. One
/// answer per cart, in order, and how many appends lost a race.
async fn decide_all(
    carts: &[CartCommands<'_>],
    deps: &Deps,
) -> (Vec<Result<Vec<Decided>, HandlerError>>, usize) {
    use futures::StreamExt;
    let loader = Carts::new(Arc::clone(&deps.event_store), deps.snapshot_every);
    let mut answers: Vec<Option<Result<Vec<Decided>, HandlerError>>> =
        carts.iter().map(|_| None).collect();
    let mut open: Vec<usize> = (0..carts.len()).collect();
    let mut conflicts = 0;
    for attempt in 1..=MAX_APPEND_ATTEMPTS {
        if open.is_empty() {
            break;
        }
        let loader = &loader;
        // Collected first: a stream that kept the mapping closure would make
        // the handler's future `Send` only for one lifetime, not for any.
        let loads: Vec<_> = open
            .iter()
            .map(|&i| async move {
                let cart = &carts[i];
                let span = tracing::info_span!("cart", cart_id = %cart.cart_id, commands = cart.commands.len(), attempt);
                let plan = async {
                    // After a lost race only the stored stream will do.
                    let warm = (attempt == 1).then(|| deps.warm.take(cart.cart_id)).flatten();
                    if let Some(warm) = warm {
                        let plan = plan(warm, &cart.commands, deps).await?;
                        if !plan.rejects() {
                            metrics::counter!("salestrack_domain_warm_carts_total", "result" => "used").increment(1);
                            return Ok(plan);
                        }
                        // Nothing would catch a stale state behind a
                        // rejection: the stored stream decides it.
                        metrics::counter!("salestrack_domain_warm_carts_total", "result" => "rejection_rechecked").increment(1);
                    }
                    let loaded = loader.load(cart.cart_id).await?;
                    plan(loaded, &cart.commands, deps).await
                }
                .instrument(span)
                .await;
                (i, plan)
            })
            .collect();
        let planned: Vec<(usize, Result<Plan, HandlerError>)> = futures::stream::iter(loads)
            .buffer_unordered(msk::CART_CONCURRENCY)
            .collect()
            .await;
        let mut plans = Vec::with_capacity(planned.len());
        for (i, plan) in planned {
            match plan {
                Ok(plan) => plans.push((i, plan)),
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        let appended = append_all(carts, &plans, deps).await;
        open.clear();
        let mut snapshots = Vec::new();
        for ((i, mut plan), appended) in plans.into_iter().zip(appended) {
            match appended {
                Ok(()) => {
                    let cart = &carts[i];
                    // The state the append left: a copy only for a snapshot
                    // that is due, the state itself kept warm.
                    let state = std::mem::take(&mut plan.cart);
                    if loader.snapshot_due(plan.base, state.version()) {
                        snapshots.push((cart.cart_id, state.clone()));
                    }
                    deps.warm.keep(cart.cart_id, state);
                    answers[i] = Some(Ok(finish(cart, plan, deps)));
                }
                Err(AppendError::Conflict { expected, actual }) => {
                    metrics::counter!("salestrack_domain_append_conflicts_total").increment(1);
                    conflicts += 1;
                    tracing::debug!(cart_id = %carts[i].cart_id, attempt, expected, actual,
                        "lost an append race; deciding again");
                    open.push(i);
                }
                Err(AppendError::Backend(e)) => answers[i] = Some(Err(e.into())),
            }
        }
        futures::future::join_all(
            snapshots
                .iter()
                .map(|(cart_id, cart)| loader.save(*cart_id, cart)),
        )
        .await;
    }
    let answers = answers
        .into_iter()
        .zip(carts)
        .map(|(answer, cart)| {
            answer.unwrap_or(Err(HandlerError::Contention {
                cart_id: cart.cart_id,
                attempts: MAX_APPEND_ATTEMPTS,
            }))
        })
        .collect();
    (answers, conflicts)
}

/// Appends every plan's events: round after round, each round one
/// `append_many` with the next chunk of every cart still going (at most
/// [`MAX_EVENTS_PER_APPEND`] events, whole commands). A cart stops at its
/// first conflict or failure; chunks it stored before stay stored, and the
/// retry decides their commands as repeats. One answer per plan.
async fn append_all(
    carts: &[CartCommands<'_>],
    plans: &[(usize, Plan)],
    deps: &Deps,
) -> Vec<Result<(), AppendError>> {
    let mut starts = vec![0usize; plans.len()];
    let mut stopped: Vec<Option<AppendError>> = plans.iter().map(|_| None).collect();
    loop {
        let mut round = Vec::new();
        let mut who = Vec::new();
        for (k, (i, plan)) in plans.iter().enumerate() {
            let start = starts[k];
            if stopped[k].is_some() || start >= plan.pending.len() {
                continue;
            }
            let end = chunk_end(plan, start);
            round.push(StreamAppend {
                cart_id: carts[*i].cart_id,
                expected_version: plan.base + start as u64,
                events: &plan.pending[start..end],
            });
            who.push((k, end));
        }
        if round.is_empty() {
            break;
        }
        let answers = deps.event_store.append_many(&round).await;
        for ((k, end), answer) in who.into_iter().zip(answers) {
            match answer {
                Ok(()) => starts[k] = end,
                Err(e) => stopped[k] = Some(e),
            }
        }
    }
    stopped
        .into_iter()
        .map(|stop| stop.map_or(Ok(()), Err))
        .collect()
}

/// Where the chunk of `plan`'s events starting at `start` ends: as many
/// whole commands as fit in [`MAX_EVENTS_PER_APPEND`], at least one.
fn chunk_end(plan: &Plan, start: usize) -> usize {
    plan.command_ends
        .iter()
        .copied()
        .rev()
        .find(|&end| end > start && end - start <= MAX_EVENTS_PER_APPEND)
        .or_else(|| plan.command_ends.iter().copied().find(|&end| end > start))
        .unwrap_or(plan.pending.len())
}

impl Plan {
    /// Some command of the plan was rejected.
    fn rejects(&self) -> bool {
        self.decisions
            .iter()
            .any(|(handled, ..)| matches!(handled, Handled::Rejected))
    }
}

/// Decides the cart's commands in order, each against the state the ones
/// before it left.
async fn plan(cart: Cart, commands: &[Incoming], deps: &Deps) -> Result<Plan, HandlerError> {
    let base = cart.version();
    let mut plan = Plan {
        base,
        pending: Vec::new(),
        command_ends: Vec::new(),
        decisions: Vec::with_capacity(commands.len()),
        cart,
    };
    let at = Context {
        now: deps.clock.now(),
        payment_timeout: chrono::Duration::from_std(deps.payment_timeout)
            .unwrap_or(chrono::Duration::MAX),
    };
    for incoming in commands {
        let record = &incoming.command;
        let decided = command_span(incoming).in_scope(|| plan.cart.decide(&record.command, &at));
        let decision = match decided {
            Err(reason) => {
                command_span(incoming).in_scope(|| {
                    tracing::info!(code = reason.code(), %reason, "command rejected");
                });
                let outcome = rejected(record, &plan.cart, &reason, deps);
                (Handled::Rejected, Vec::new(), outcome)
            }
            Ok(events) if events.is_empty() => {
                let earlier = match plan.cart.satisfied_at(&record.command) {
                    // Decided earlier in this very batch: not stored yet.
                    Some(version) if version > base => plan
                        .pending
                        .iter()
                        .filter(|e| e.version == version)
                        .cloned()
                        .collect(),
                    Some(version) => {
                        deps.event_store
                            .read_range(record.command.cart_id(), version..=version)
                            .await?
                    }
                    None => Vec::new(),
                };
                // The version the command's effect reached, not the cart's current one.
                let version = earlier.last().map_or(plan.cart.version(), |e| e.version);
                let outcome = applied(record, version, true, deps);
                (Handled::Duplicate, earlier, outcome)
            }
            Ok(events) => {
                // Recorded at the time the decision was made on, so that a
                // checkout's deadline is exactly its timeout after it.
                let recorded = RecordedEvent::number(
                    record.command.cart_id(),
                    plan.cart.version(),
                    record.command_id,
                    at.now,
                    events,
                );
                plan.cart = std::mem::take(&mut plan.cart).apply(&recorded);
                plan.pending.extend(recorded.iter().cloned());
                plan.command_ends.push(plan.pending.len());
                let outcome = applied(record, plan.cart.version(), false, deps);
                (Handled::Applied, recorded, outcome)
            }
        };
        plan.decisions.push(decision);
    }
    Ok(plan)
}

/// The records an appended plan publishes, one [`Decided`] per command.
fn finish(cart: &CartCommands<'_>, plan: Plan, deps: &Deps) -> Vec<Decided> {
    cart.commands
        .iter()
        .zip(plan.decisions)
        .map(|(incoming, (handled, events, outcome))| {
            if matches!(handled, Handled::Applied) {
                events.iter().for_each(count_saga_step);
            }
            command_span(incoming).in_scope(|| {
                tracing::info!(
                    result = handled.label(),
                    version = outcome.version,
                    "command decided"
                );
            });
            Decided {
                handled,
                records: publication(deps, incoming, &events, outcome),
            }
        })
        .collect()
}

/// The checkout saga's steps as they are stored: checkouts started, paid,
/// cancelled (by reason) and late payments refunded.
fn count_saga_step(e: &RecordedEvent) {
    use salestrack_core::event::Event;
    let step = match &e.event {
        Event::CheckoutStarted(_) => "started",
        Event::PaymentSucceeded { .. } => "paid",
        Event::CartCancelled { reason, .. } => reason.code(),
        Event::RefundRequested { .. } => "refunded",
        Event::OrderPlaced(_) | Event::OrderCancelled { .. } => return,
    };
    metrics::counter!("salestrack_checkouts_total", "step" => step).increment(1);
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
        user_id: record.command.sent_by().map(str::to_owned),
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

/// The records a decided command publishes. Events first, then the
/// outcome: a client that sees `applied` can rely on the events being on
/// the bus. Each carries the command's trace and the time it was accepted.
fn publication(
    deps: &Deps,
    incoming: &Incoming,
    events: &[RecordedEvent],
    outcome: Outcome,
) -> Vec<OutboundRecord> {
    let (record, trace) = (&incoming.command, incoming.trace);
    let mut records: Vec<OutboundRecord> = events
        .iter()
        .map(|e| wire::event::outbound(e, &deps.topics.events, trace, record.accepted_at))
        .collect();
    // The saga's requests to the payment gateway: a checkout asks for a
    // charge, a late payment for a refund, a cancel for want of an answer
    // for a reconciliation with the ledger (whose charge, if any, is then
    // answered again and refunded). Republished with their event, so a lost
    // request is healed by a repeated command like a lost event.
    records.extend(events.iter().filter_map(|e| {
        let request = PaymentRequest::for_event(e).or_else(|| match &record.command {
            salestrack_core::command::Command::ExpireCheckout(expire) => {
                PaymentRequest::reconcile(e, expire.checkout)
            }
            _ => None,
        })?;
        Some(request.outbound(&deps.topics.payments, e, trace))
    }));
    records.push(outcome.outbound(&deps.topics.outcomes, trace, record.accepted_at));
    records
}
