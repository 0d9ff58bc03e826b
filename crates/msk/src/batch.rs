//! A Kafka-triggered handler's batch, key by key: decoding and grouping
//! ([`group_by_key`], [`each_key`]), the partial-batch rule, the result and
//! Lambda's partial-batch response ([`BatchResult`]), and what every
//! handler shares at a batch's end ([`finish`]) and in its poison
//! ([`Poison`], [`check_key`]).

use crate::event::{partitions, Record, RecordError};
use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use salestrack_core::ids::CartId;
use salestrack_core::wire::DecodeError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A record-level failure: whether redelivering the record can help.
///
/// Poison (undecodable, invalid, contradicting the stream) is permanent;
/// a backend failure is transient.
pub trait Failure: std::fmt::Display {
    fn retryable(&self) -> bool;
}

/// One record a handler could not handle. Its partition stopped there: the
/// records after it were not handled and come again with the redelivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    pub retryable: bool,
    pub error: String,
}

impl RecordFailure {
    fn new(r: &KafkaRecord, failure: &dyn Failure) -> RecordFailure {
        RecordFailure {
            topic: r.topic.clone().unwrap_or_default(),
            partition: r.partition,
            offset: r.offset,
            retryable: failure.retryable(),
            error: failure.to_string(),
        }
    }
}

/// What a Kafka-triggered handler did with a batch: its own report of the
/// records it handled, and at most one failure per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult<R> {
    pub report: R,
    pub failures: Vec<RecordFailure>,
}

impl<R> BatchResult<R> {
    /// The partial-batch response Lambda's Kafka event source mapping reads
    /// when `ReportBatchItemFailures` is on: it checkpoints each partition at
    /// its failed record and redelivers from there.
    pub fn response(&self) -> KafkaBatchResponse {
        KafkaBatchResponse {
            batch_item_failures: self
                .failures
                .iter()
                .map(|f| KafkaBatchItemFailure {
                    item_identifier: KafkaItemIdentifier {
                        partition: format!("{}-{}", f.topic, f.partition),
                        offset: f.offset,
                    },
                })
                .collect(),
        }
    }
}

/// `{"batchItemFailures": [{"itemIdentifier": {"partition": "topic-0", "offset": 7}}]}`:
/// Lambda's partial-batch response for Kafka event sources, where a record
/// is named by its topic-partition and offset. An empty list is a full success.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchResponse {
    pub batch_item_failures: Vec<KafkaBatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchItemFailure {
    pub item_identifier: KafkaItemIdentifier,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaItemIdentifier {
    /// "topic-partition", as the batch's `records` keys name it.
    pub partition: String,
    pub offset: i64,
}

/// One decoded record of a batch, with the record it came from.
#[derive(Debug)]
pub struct Decoded<'a, D> {
    pub record: &'a KafkaRecord,
    pub value: D,
}

/// One key's records of a batch, in offset order.
pub type Group<'a, K, D> = (K, Vec<Decoded<'a, D>>);

/// What [`each_key`] did with a batch: every record a key's handler handled,
/// with its result, and at most one failure per partition.
#[derive(Debug)]
pub struct Keyed<'a, T> {
    pub handled: Vec<(&'a KafkaRecord, T)>,
    pub failures: Vec<RecordFailure>,
}

impl<'a, T> Keyed<'a, T> {
    /// Names `record` as failed unless its partition already failed at an
    /// earlier offset: a partition is redelivered from its lowest failure.
    pub fn fail(&mut self, record: &KafkaRecord, failure: &dyn Failure) {
        let new = RecordFailure::new(record, failure);
        match self
            .failures
            .iter_mut()
            .find(|f| f.topic == new.topic && f.partition == new.partition)
        {
            Some(old) if old.offset <= new.offset => {}
            Some(old) => *old = new,
            None => self.failures.push(new),
        }
    }

    /// Takes one key's results, one per record of `owners` in order, up to
    /// and including its first failure (later results are ignored: the
    /// key's records after a failure are not handled).
    pub fn settle<E: Failure>(&mut self, owners: &[&'a KafkaRecord], results: Vec<Result<T, E>>) {
        for (&record, result) in owners.iter().zip(results) {
            match result {
                Ok(t) => self.handled.push((record, t)),
                Err(e) => {
                    warn_failed(record, &e);
                    self.fail(record, &e);
                    break;
                }
            }
        }
    }

    /// Fails every partition of the batch from its first record: for a
    /// failure after the per-key work that no single record owns (the
    /// batch's results could not be published).
    pub fn fail_all(&mut self, event: &KafkaEvent, failure: &dyn Failure) {
        for records in partitions(event) {
            if let Some(first) = records.first() {
                self.fail(first, failure);
            }
        }
    }
}

/// Handles a batch key by key (a cart): the records are decoded, grouped by
/// the key `decode` gives them, and each key's records handed to `handle`
/// in offset order; keys run concurrently, at most `concurrency` at once,
/// within and across partitions.
///
/// The partial-batch rule, exactly:
/// - A record that does not decode is poison that names no key: its
///   partition is cut there, and none of the partition's later records is
///   handled in this delivery (they come again with the redelivery).
/// - `handle` answers one result per record, in order, and stops at its
///   first `Err`: a key's later records are not handled, so a key never
///   skips ahead of a record it could not handle.
/// - A partition is reported failed at its lowest failed offset. Records of
///   *other* keys after that offset may already have been handled: the
///   event source redelivers them with the failed one, and handlers must
///   (and do) treat them as the repeats they are.
pub async fn each_key<'a, K, D, T, E, Dec, H, Fut>(
    event: &'a KafkaEvent,
    decode: Dec,
    handle: H,
    concurrency: usize,
) -> Keyed<'a, T>
where
    K: Eq + std::hash::Hash + Clone,
    Dec: Fn(&'a KafkaRecord) -> Result<(K, D), E>,
    H: Fn(K, Vec<Decoded<'a, D>>) -> Fut,
    Fut: std::future::Future<Output = Vec<Result<T, E>>>,
    E: Failure,
{
    let (groups, keyed) = group_by_key(event, decode);
    each_group(groups, keyed, handle, concurrency).await
}

/// The second half of [`each_key`], for handlers that prepare the groups
/// of [`group_by_key`] first (the projector reads every cart's detail in
/// one call): runs `handle` on each group, at most `concurrency` at once,
/// and settles its results into `keyed`.
pub async fn each_group<'a, K, D, T, E, H, Fut>(
    groups: Vec<Group<'a, K, D>>,
    mut keyed: Keyed<'a, T>,
    handle: H,
    concurrency: usize,
) -> Keyed<'a, T>
where
    H: Fn(K, Vec<Decoded<'a, D>>) -> Fut,
    Fut: std::future::Future<Output = Vec<Result<T, E>>>,
    E: Failure,
{
    use futures::StreamExt;
    let handle = &handle;
    // Collected first: a stream that kept the mapping closure would make
    // the caller's future `Send` only for one lifetime, not for any.
    let runs: Vec<_> = groups
        .into_iter()
        .map(|(key, records)| {
            let owners: Vec<&'a KafkaRecord> = records.iter().map(|d| d.record).collect();
            async move { (owners, handle(key, records).await) }
        })
        .collect();
    let mut runs = futures::stream::iter(runs).buffer_unordered(concurrency.max(1));
    while let Some((owners, results)) = runs.next().await {
        keyed.settle(&owners, results);
    }
    keyed
}

/// The first half of [`each_key`], for handlers that work on all keys of a
/// batch at once (the domain appends every cart in one store call): the
/// batch decoded and grouped by key, keys in order of first appearance,
/// and a [`Keyed`] holding the poison found while decoding. Hand each
/// key's results to [`Keyed::settle`].
pub fn group_by_key<'a, K, D, T, E, Dec>(
    event: &'a KafkaEvent,
    decode: Dec,
) -> (Vec<Group<'a, K, D>>, Keyed<'a, T>)
where
    K: Eq + std::hash::Hash + Clone,
    Dec: Fn(&'a KafkaRecord) -> Result<(K, D), E>,
    E: Failure,
{
    let mut keyed = Keyed {
        handled: Vec::new(),
        failures: Vec::new(),
    };
    let mut order: Vec<K> = Vec::new();
    let mut groups: HashMap<K, Vec<Decoded<'a, D>>> = HashMap::new();
    for records in partitions(event) {
        for record in records {
            match decode(record) {
                Ok((key, value)) => {
                    if !groups.contains_key(&key) {
                        order.push(key.clone());
                    }
                    groups
                        .entry(key)
                        .or_default()
                        .push(Decoded { record, value });
                }
                Err(e) => {
                    warn_failed(record, &e);
                    keyed.fail(record, &e);
                    break;
                }
            }
        }
    }
    let groups = order
        .into_iter()
        .filter_map(|key| groups.remove(&key).map(|records| (key, records)))
        .collect();
    (groups, keyed)
}

fn warn_failed(record: &KafkaRecord, e: &dyn Failure) {
    tracing::warn!(topic = ?record.topic, partition = record.partition, offset = record.offset,
        retryable = e.retryable(), error = %e, "record failed; its partition is redelivered from here");
}

/// Carts handled at once within a batch, by every handler.
pub const CART_CONCURRENCY: usize = 64;

/// What a handler counts of a batch: its report's figures by result label.
pub trait Counts: Default + std::fmt::Debug + std::ops::Add<Output = Self> {
    /// `(result, records)` for the handler's records counter.
    fn counts(&self) -> Vec<(&'static str, usize)>;
}

/// The end of every handler's batch: counts its records by result (and the
/// failed ones) on `metric`, logs `what` with the report, and answers the
/// result.
pub fn finish<R: Counts>(
    metric: &'static str,
    what: &'static str,
    report: R,
    failures: Vec<RecordFailure>,
) -> BatchResult<R> {
    let failed = failures.len();
    for (result, n) in report.counts().into_iter().chain([("failed", failed)]) {
        if n > 0 {
            metrics::counter!(metric, "result" => result).increment(n as u64);
        }
    }
    tracing::info!(?report, failed, "{what} handled");
    BatchResult { report, failures }
}

/// The poison every handler can meet: no redelivery can make the record
/// valid.
#[derive(Debug, thiserror::Error)]
pub enum Poison {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    KeyMismatch(#[from] KeyMismatch),
}

/// A record keyed by another cart than the one its content is about.
#[derive(Debug, thiserror::Error)]
#[error("record key {key:?} does not match the {what}'s cart {cart_id}")]
pub struct KeyMismatch {
    /// What the record holds: `command`, `request`.
    pub what: &'static str,
    pub key: String,
    pub cart_id: CartId,
}

/// `Ok` when `record` has no key or the key of `cart_id`, which its content
/// (a `what`) is about.
pub fn check_key(record: &Record, cart_id: CartId, what: &'static str) -> Result<(), KeyMismatch> {
    match record
        .key
        .as_deref()
        .filter(|k| *k != cart_id.to_string().as_bytes())
    {
        Some(key) => Err(KeyMismatch {
            what,
            key: String::from_utf8_lossy(key).into_owned(),
            cart_id,
        }),
        None => Ok(()),
    }
}
