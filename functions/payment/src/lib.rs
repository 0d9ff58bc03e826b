//! The payment function: the mock payment gateway of the checkout saga, and
//! the saga's timer.
//!
//! **Gateway.** Triggered by MSK batches of the payments topic, where the
//! domain puts a charge request for every `checkout_started` and a refund
//! request for every `refund_requested`. A batch is handled cart by cart
//! (see [`salestrack_msk::each_key`]). A charge is decided by the mock
//! rules ([`Gateway`]) and recorded in the [`PaymentLedger`] at most once
//! per checkout: a redelivered request gets the charge the ledger already
//! holds, never a second one, and answers the same. Answers go back to the
//! domain as `record_payment` commands on the commands topic, keyed by
//! cart, so they are decided in order with everything else about the cart.
//! A refund marks the checkout's charge refunded, once. A reconciliation
//! (asked when the saga cancelled a checkout for want of an answer) looks
//! for a charge of that checkout in the ledger: one whose answer was lost
//! is answered again, and the domain, which sees a payment after its
//! checkout ended, asks for its refund.
//!
//! **Timer** ([`expire_due`]). A checkout whose payment has not been
//! answered by its deadline is cancelled by an `expire_checkout` command.
//! Nothing waits in memory: the timer asks the read store for checkouts
//! past their deadline and sends the commands; the domain checks the
//! deadline against its own clock and ignores a checkout already settled,
//! so an early, repeated or late command changes nothing. The runner runs
//! it in a loop; on AWS a schedule invokes this function with an
//! EventBridge event.
//!
//! Depends on the core's ports only; never on a driver.

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use salestrack_core::command::{Command, ExpireCheckout, PaymentResult, RecordPayment};
use salestrack_core::headers::TraceParent;
use salestrack_core::ids::CartId;
use salestrack_core::personal::{self, PersonalField, Sealed, ERASED};
use salestrack_core::ports::{
    key_store, BackendError, Charge, ChargeStatus, Clock, KeyStore, OutboundRecord, PaymentLedger,
    Producer, ReadStore,
};
use salestrack_core::wire::{CommandRecord, PaymentRequest, PaymentRequestKind};
use salestrack_msk::{self as msk, BatchResult, Record};
use salestrack_platform::Topics;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Payment methods the mock gateway treats specially (SPEC).
pub const ALWAYS_DECLINED: &str = "test-decline";
pub const NEVER_ANSWERED: &str = "test-timeout";

/// The mock gateway's rules besides the two test payment methods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gateway {
    /// Share of charges declined at random, 0.0..=1.0.
    pub decline_rate: f64,
    /// How long the gateway takes to answer a batch.
    pub delay: Duration,
}

/// What the handler needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    pub ledger: Arc<dyn PaymentLedger>,
    pub producer: Arc<dyn Producer>,
    pub clock: Arc<dyn Clock>,
    pub topics: Topics,
    pub gateway: Gateway,
    /// Opens the sealed payment method of a charge (the gateway's own
    /// business); the ledger keeps it sealed.
    pub keys: Arc<dyn KeyStore>,
}

impl Deps {
    /// The one way a process builds the payment function's dependencies:
    /// its ports from `backends`, the mock gateway from `settings`.
    pub fn from_settings(
        settings: &salestrack_platform::Settings,
        backends: &salestrack_platform::Backends,
    ) -> Result<Deps, BackendError> {
        Ok(Deps {
            ledger: backends.payment_ledger()?,
            producer: backends.producer()?,
            clock: Arc::new(salestrack_core::ports::SystemClock),
            topics: settings.topics.clone(),
            gateway: Gateway {
                decline_rate: settings.payment.decline_rate,
                delay: std::time::Duration::from_millis(settings.payment.delay_ms),
            },
            keys: backends.key_store()?,
        })
    }
}

/// Counts of what happened to a batch's requests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub succeeded: usize,
    pub declined: usize,
    /// Charges of `test-timeout`: never answered.
    pub unanswered: usize,
    pub refunded: usize,
    /// Checkouts cancelled for want of an answer whose charge the ledger
    /// held: answered again, so that it is refunded.
    pub reconciled: usize,
}

impl msk::Counts for BatchReport {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("succeeded", self.succeeded),
            ("declined", self.declined),
            ("unanswered", self.unanswered),
            ("refunded", self.refunded),
            ("reconciled", self.reconciled),
        ]
    }
}

/// Both reports' counts summed.
impl std::ops::Add for BatchReport {
    type Output = BatchReport;

    fn add(mut self, b: BatchReport) -> BatchReport {
        self.succeeded += b.succeeded;
        self.declined += b.declined;
        self.unanswered += b.unanswered;
        self.refunded += b.refunded;
        self.reconciled += b.reconciled;
        self
    }
}

/// Why a record could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("backend failure: {0}")]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Poison(#[from] msk::Poison),
}

impl msk::Failure for HandlerError {
    fn retryable(&self) -> bool {
        !matches!(self, HandlerError::Poison(_))
    }
}

struct Incoming {
    request: PaymentRequest,
    trace: Option<TraceParent>,
}

/// What one request led to.
struct Handled {
    report: BatchReport,
    answer: Option<OutboundRecord>,
    /// When the checkout asked: for the time-to-answer histogram.
    requested_at: DateTime<Utc>,
}

/// Handles a batch of payment requests; never fails as a whole. Records
/// that failed are in the result's `failures`.
pub async fn handler(event: LambdaEvent<KafkaEvent>, deps: &Deps) -> BatchResult<BatchReport> {
    let batch = &event.payload;
    let mut keyed = msk::each_key(
        batch,
        |r| decode(r).map_err(HandlerError::from),
        |_cart, records| async move {
            let mut results = Vec::with_capacity(records.len());
            for d in records {
                let result = handle(d.value, deps).await;
                let failed = result.is_err();
                results.push(result);
                if failed {
                    break;
                }
            }
            results
        },
        msk::CART_CONCURRENCY,
    )
    .await;
    let answers: Vec<OutboundRecord> = keyed
        .handled
        .iter_mut()
        .filter_map(|(_, handled)| handled.answer.take())
        .collect();
    if !answers.is_empty() && !deps.gateway.delay.is_zero() {
        tokio::time::sleep(deps.gateway.delay).await;
    }
    let mut report = keyed
        .handled
        .iter()
        .fold(BatchReport::default(), |r, (_, h)| r + h.report);
    match deps.producer.send_all(answers).await {
        Ok(_) => {
            let now = deps.clock.now();
            for (_, handled) in &keyed.handled {
                if handled.report.succeeded + handled.report.declined > 0 {
                    let waited = (now - handled.requested_at).num_milliseconds().max(0);
                    metrics::histogram!("salestrack_payment_answer_seconds")
                        .record(waited as f64 / 1e3);
                }
            }
        }
        Err(e) => {
            // The charges are in the ledger: the redelivery answers the same.
            tracing::error!(error = %e, "publishing the batch's payment answers failed");
            keyed.fail_all(batch, &HandlerError::Backend(e));
            report = BatchReport::default();
        }
    }
    msk::finish(
        "salestrack_payments_total",
        "payment batch",
        report,
        keyed.failures,
    )
}

fn decode(r: &KafkaRecord) -> Result<(CartId, Incoming), msk::Poison> {
    let record = Record::from_kafka(r)?;
    let request = PaymentRequest::decode(&record.value)?;
    msk::check_key(&record, request.cart_id, "request")?;
    let trace = TraceParent::from_headers(&record.headers);
    Ok((request.cart_id, Incoming { request, trace }))
}

async fn handle(incoming: Incoming, deps: &Deps) -> Result<Handled, HandlerError> {
    let Incoming { request, trace } = incoming;
    let mut handled = Handled {
        report: BatchReport::default(),
        answer: None,
        requested_at: request.requested_at,
    };
    match request.kind {
        PaymentRequestKind::Refund => {
            let refunded = deps
                .ledger
                .refund(request.cart_id, request.checkout, deps.clock.now())
                .await?;
            tracing::info!(cart_id = %request.cart_id, checkout = request.checkout,
                found = refunded.is_some(), "late payment refunded");
            handled.report.refunded = 1;
        }
        PaymentRequestKind::Reconcile => {
            // The charge of this checkout the ledger holds, if its answer
            // was lost: answered again, it reaches the domain as the late
            // payment it is, which asks for its refund.
            let charges = deps.ledger.charges(request.cart_id).await?;
            let unanswered = charges.into_iter().find(|c| {
                c.checkout == request.checkout
                    && c.status == ChargeStatus::Succeeded
                    && c.refunded_at.is_none()
            });
            tracing::info!(cart_id = %request.cart_id, checkout = request.checkout,
                charged = unanswered.is_some(), "checkout cancelled for want of an answer, reconciled with the ledger");
            if let Some(charge) = unanswered {
                handled.report.reconciled = 1;
                handled.answer = Some(answer(&charge, trace, deps));
            }
        }
        PaymentRequestKind::Charge => {
            let method = payment_method(&request, deps).await?;
            if method == NEVER_ANSWERED {
                tracing::info!(cart_id = %request.cart_id, checkout = request.checkout,
                    "test-timeout: the gateway never answers");
                handled.report.unanswered = 1;
                return Ok(handled);
            }
            let stored = deps
                .ledger
                .charge_once(&charge(&request, &method, deps))
                .await?;
            match stored.status {
                ChargeStatus::Succeeded => handled.report.succeeded = 1,
                ChargeStatus::Declined => handled.report.declined = 1,
            }
            handled.answer = Some(answer(&stored, trace, deps));
        }
    }
    Ok(handled)
}

/// The charge the mock gateway would make now. Only the first one made for
/// a checkout is kept (the ledger's), whatever later attempts decide.
/// The charge's payment method in the clear: opened when sealed, as it is
/// for events from before sealing. An erased one cannot be charged.
async fn payment_method(request: &PaymentRequest, deps: &Deps) -> Result<String, BackendError> {
    let given = request.payment_method.as_deref().unwrap_or_default();
    let Some(sealed) = Sealed::from_token(given) else {
        return Ok(given.to_owned());
    };
    let ids = sealed.as_ref().map(|s| s.key).into_iter();
    let keys = key_store::keys_of(deps.keys.as_ref(), ids).await?;
    Ok(personal::opened(
        Some(PersonalField::PaymentMethod),
        sealed,
        &keys,
    ))
}

/// `method` is the request's payment method in the clear; the charge keeps
/// the request's own (sealed) value.
fn charge(request: &PaymentRequest, method: &str, deps: &Deps) -> Charge {
    let decline = if method == ALWAYS_DECLINED {
        Some("test-decline: always declined".to_owned())
    } else if method == ERASED {
        Some("the payment method was erased with its user's personal data".to_owned())
    } else if rand::random::<f64>() < deps.gateway.decline_rate {
        Some("declined by the mock gateway's random decline rate".to_owned())
    } else {
        None
    };
    Charge {
        payment_id: request.payment_id,
        cart_id: request.cart_id,
        checkout: request.checkout,
        status: if decline.is_some() {
            ChargeStatus::Declined
        } else {
            ChargeStatus::Succeeded
        },
        amount: request.amount,
        currency: request
            .currency
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        payment_method: request.payment_method.clone().unwrap_or_default(),
        decline_reason: decline,
        charged_at: deps.clock.now(),
        refunded_at: None,
    }
}

/// The `record_payment` command that tells the domain how a charge went.
fn answer(charge: &Charge, trace: Option<TraceParent>, deps: &Deps) -> OutboundRecord {
    let command = Command::RecordPayment(RecordPayment {
        cart_id: charge.cart_id,
        checkout: charge.checkout,
        payment_id: charge.payment_id,
        result: match charge.status {
            ChargeStatus::Succeeded => PaymentResult::Succeeded,
            ChargeStatus::Declined => PaymentResult::Declined,
        },
        amount: charge.amount,
        reason: charge.decline_reason.clone(),
    });
    command_record(command, trace, &deps.topics.commands, deps.clock.now())
}

/// A saga command as the command function would produce it.
fn command_record(
    command: Command,
    trace: Option<TraceParent>,
    topic: &str,
    now: DateTime<Utc>,
) -> OutboundRecord {
    let command_id = command.derive_id(None);
    let trace = trace.map_or_else(
        || TraceParent::for_command(command_id),
        |t| t.command_in(command_id),
    );
    CommandRecord {
        command_id,
        accepted_at: now,
        command,
    }
    .outbound(topic, trace)
}

/// Most deadlines one timer run sends commands for; the next run takes
/// the rest.
pub const EXPIRE_BATCH: u32 = 500;

/// Where the saga's timer goes on from: the last checkout of its last full
/// page (`None`: from the earliest deadline).
pub type SweepCursor = Option<salestrack_core::ports::DueCheckout>;

/// The saga's timer, one page: sends an `expire_checkout` command for each
/// of the next [`EXPIRE_BATCH`] checkouts (after `after`) the read store
/// has `checking_out` past their deadline. Answers how many it sent, and
/// where the next page starts (`None` once the last page was short: the
/// next sweep starts over). The read store lags the event store a little;
/// the domain decides on the event store, so a checkout settled meanwhile
/// is left alone, and the cursor keeps such checkouts from holding the
/// first page for good while newer deadlines wait behind them.
pub async fn expire_due(
    read_store: &dyn ReadStore,
    producer: &dyn Producer,
    clock: &dyn Clock,
    topics: &Topics,
    after: SweepCursor,
) -> Result<(usize, SweepCursor), BackendError> {
    let now = clock.now();
    let due = read_store
        .due_checkouts(now, after.as_ref(), EXPIRE_BATCH)
        .await?;
    let next = match due.len() < EXPIRE_BATCH as usize {
        true => None,
        false => due.last().cloned(),
    };
    let records: Vec<OutboundRecord> = due
        .iter()
        .map(|d| {
            let command = Command::ExpireCheckout(ExpireCheckout {
                cart_id: d.cart_id,
                checkout: d.checkout,
            });
            command_record(command, None, &topics.commands, now)
        })
        .collect();
    let sent = records.len();
    if sent > 0 {
        producer.send_all(records).await?;
        metrics::counter!("salestrack_checkouts_expired_total").increment(sent as u64);
        tracing::info!(
            sent,
            "expire_checkout sent for checkouts past their deadline"
        );
    }
    Ok((sent, next))
}
