//! The MSK event shape shared by the local runner and the Kafka-triggered
//! handlers: `aws_lambda_events` `KafkaEvent` batches with records grouped
//! under "topic-partition", base64 keys and values, and headers as lists of
//! `{name: [signed bytes]}`.
//!
//! The runner builds batches with [`batch`]; handlers read them back with
//! [`partitions`] and [`Record::from_kafka`]. Knows nothing of any handler.

use aws_lambda_events::encodings::MillisecondTimestamp;
use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use salestrack_core::ports::BusRecord;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub mod dead_letter;
pub use dead_letter::{
    dead_letter_headers, letter as dead_letter, DeadLetter, DeadLetters, Diverted,
};

/// The `eventSource` Lambda puts on MSK batches.
pub const EVENT_SOURCE: &str = "aws:kafka";

fn to_signed(bytes: &[u8]) -> Vec<i8> {
    bytes.iter().map(|b| i8::from_ne_bytes([*b])).collect()
}

fn to_unsigned(bytes: &[i8]) -> Vec<u8> {
    bytes.iter().map(|b| b.to_ne_bytes()[0]).collect()
}

/// The Lambda record for one bus record.
pub fn kafka_record(r: &BusRecord) -> KafkaRecord {
    let mut record = KafkaRecord::default();
    record.topic = Some(r.topic.clone());
    record.partition = i64::from(r.partition);
    record.offset = r.offset;
    record.timestamp = MillisecondTimestamp(r.timestamp);
    record.timestamp_type = Some("CREATE_TIME".into());
    record.key = r.key.as_deref().map(|k| STANDARD.encode(k));
    record.value = r.value.as_deref().map(|v| STANDARD.encode(v));
    record.headers = r
        .headers
        .iter()
        .map(|(name, value)| HashMap::from([(name.clone(), to_signed(value))]))
        .collect();
    record
}

/// One MSK-style batch of `records`, grouped by "topic-partition" in offset order.
pub fn batch(records: &[BusRecord], event_source_arn: &str, bootstrap_servers: &str) -> KafkaEvent {
    let mut grouped: HashMap<String, Vec<KafkaRecord>> = HashMap::new();
    for r in records {
        grouped
            .entry(format!("{}-{}", r.topic, r.partition))
            .or_default()
            .push(kafka_record(r));
    }
    for list in grouped.values_mut() {
        list.sort_by_key(|r| r.offset);
    }
    let mut event = KafkaEvent::default();
    event.event_source = Some(EVENT_SOURCE.into());
    event.event_source_arn = Some(event_source_arn.into());
    event.bootstrap_servers = Some(bootstrap_servers.into());
    event.records = grouped;
    event
}

/// The batch's partitions, each with its records in offset order. Records of
/// one partition must be handled in order; partitions are independent.
pub fn partitions(event: &KafkaEvent) -> impl Iterator<Item = &[KafkaRecord]> {
    event.records.values().map(Vec::as_slice)
}

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

/// Why a record's bytes could not be read. Permanent: the record is poison.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record has no value")]
    MissingValue,
    #[error("record {field} is not valid base64: {message}")]
    Base64 {
        field: &'static str,
        message: String,
    },
}

/// A Kafka record with its key and value decoded from base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn from_kafka(r: &KafkaRecord) -> Result<Record, RecordError> {
        let decode = |field: &'static str, text: &str| {
            STANDARD.decode(text).map_err(|e| RecordError::Base64 {
                field,
                message: e.to_string(),
            })
        };
        let key = r.key.as_deref().map(|k| decode("key", k)).transpose()?;
        let value = decode(
            "value",
            r.value.as_deref().ok_or(RecordError::MissingValue)?,
        )?;
        Ok(Record {
            topic: r.topic.clone().unwrap_or_default(),
            partition: r.partition,
            offset: r.offset,
            key,
            value,
            headers: headers(r),
        })
    }
}

/// The record's headers as (name, bytes), in order.
pub fn headers(r: &KafkaRecord) -> Vec<(String, Vec<u8>)> {
    r.headers
        .iter()
        .flat_map(|h| {
            h.iter()
                .map(|(name, value)| (name.clone(), to_unsigned(value)))
        })
        .collect()
}

/// A best-effort copy of the record's raw bytes for the dead-letter topic:
/// decoded when the base64 is valid, the base64 text itself when it is not.
pub fn raw_key_and_value(r: &KafkaRecord) -> (Vec<u8>, Vec<u8>) {
    let raw = |text: &Option<String>| {
        text.as_deref()
            .map(|t| STANDARD.decode(t).unwrap_or_else(|_| t.as_bytes().to_vec()))
            .unwrap_or_default()
    };
    (raw(&r.key), raw(&r.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn bus_record(partition: i32, offset: i64) -> BusRecord {
        BusRecord {
            topic: "sales.commands".into(),
            partition,
            offset,
            timestamp: Utc
                .timestamp_millis_opt(1_595_035_749_700)
                .single()
                .unwrap_or_default(),
            key: Some(b"cart".to_vec()),
            value: Some(b"{\"x\":1}".to_vec()),
            headers: vec![("h".into(), vec![0, 127, 128, 255])],
        }
    }

    #[test]
    fn a_batch_has_the_msk_shape_lambda_delivers() {
        let event = batch(
            &[bus_record(0, 7), bus_record(2, 1)],
            "arn:local",
            "localhost:9092",
        );
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(json["eventSource"], "aws:kafka");
        let record = &json["records"]["sales.commands-0"][0];
        assert_eq!(record["offset"], 7);
        assert_eq!(record["key"], "Y2FydA==");
        let back: KafkaEvent = serde_json::from_value(json.clone()).expect("round trip");
        assert_eq!(back, event);
        assert_eq!(
            record["headers"][0]["h"],
            serde_json::json!([0, 127, -128, -1])
        );
        assert!(json["records"]["sales.commands-2"].is_array());
    }

    #[test]
    fn a_record_reads_back_what_the_bus_held() {
        let original = bus_record(3, 9);
        let event = batch(std::slice::from_ref(&original), "arn", "b");
        let decoded = Record::from_kafka(&event.records["sales.commands-3"][0]).expect("decodes");
        assert_eq!(decoded.key, original.key);
        assert_eq!(Some(decoded.value), original.value);
        assert_eq!(decoded.headers, original.headers);
    }

    #[test]
    fn the_aws_example_event_decodes() {
        let json = r#"{"eventSource":"aws:kafka","records":{"AWSKafkaTopic-0":[{"topic":"AWSKafkaTopic","partition":0,"offset":0,
            "timestamp":1595035749700,"timestampType":"CREATE_TIME","key":"OGQ1NTk2YjQ=","value":"OGQ1NTk2YjQ=",
            "headers":[{"headerKey":[104,101,97,100,101,114,86,97,108,117,101]}]}]}}"#;
        let event: KafkaEvent = serde_json::from_str(json).expect("event");
        let record = Record::from_kafka(&event.records["AWSKafkaTopic-0"][0]).expect("record");
        assert_eq!(record.value, b"8d5596b4");
        assert_eq!(
            record.headers,
            vec![("headerKey".to_string(), b"headerValue".to_vec())]
        );
    }

    #[test]
    fn bad_base64_is_a_record_error() {
        let mut record = kafka_record(&bus_record(0, 0));
        record.value = Some("%%% not base64".into());
        assert!(matches!(
            Record::from_kafka(&record),
            Err(RecordError::Base64 { field: "value", .. })
        ));
        assert_eq!(raw_key_and_value(&record).1, b"%%% not base64");
    }

    /// A failure for the per-key tests.
    #[derive(Debug)]
    struct Failed(&'static str);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Failure for Failed {
        fn retryable(&self) -> bool {
            true
        }
    }

    /// A batch whose record values are "key/n" (or anything else: poison),
    /// on partitions as given.
    fn keyed_batch(partitions: &[(i32, &[&str])]) -> KafkaEvent {
        let records: Vec<BusRecord> = partitions
            .iter()
            .flat_map(|(p, values)| {
                values.iter().enumerate().map(|(i, v)| BusRecord {
                    value: Some(v.as_bytes().to_vec()),
                    ..bus_record(*p, i as i64)
                })
            })
            .collect();
        batch(&records, "arn", "b")
    }

    fn key_of(r: &KafkaRecord) -> Result<(String, String), Failed> {
        let value = Record::from_kafka(r).map_err(|_| Failed("base64"))?.value;
        let text = String::from_utf8(value).map_err(|_| Failed("utf8"))?;
        match text.split_once('/') {
            Some((key, _)) => Ok((key.to_owned(), text.clone())),
            None => Err(Failed("poison")),
        }
    }

    /// Runs `each_key`, failing the values listed in `failing`; returns the
    /// values handled per key in order, and the failures' (partition, offset).
    async fn run_keyed(event: &KafkaEvent, failing: &[&str]) -> (Vec<String>, Vec<(i64, i64)>) {
        let keyed = each_key(
            event,
            key_of,
            |_key, records| async move {
                let mut results = Vec::new();
                for d in records {
                    let failed = failing.contains(&d.value.as_str());
                    results.push(if failed {
                        Err(Failed("handler"))
                    } else {
                        Ok(d.value)
                    });
                    if failed {
                        break;
                    }
                }
                results
            },
            8,
        )
        .await;
        let mut handled: Vec<String> = keyed.handled.into_iter().map(|(_, v)| v).collect();
        handled.sort();
        let mut failures: Vec<(i64, i64)> = keyed
            .failures
            .iter()
            .map(|f| (f.partition, f.offset))
            .collect();
        failures.sort();
        (handled, failures)
    }

    #[tokio::test]
    async fn poison_cuts_its_partition_and_leaves_the_records_after_it_for_the_redelivery() {
        let event = keyed_batch(&[(0, &["a/1", "poison", "a/2", "b/1"]), (1, &["c/1"])]);
        let (handled, failures) = run_keyed(&event, &[]).await;
        assert_eq!(handled, vec!["a/1", "c/1"]);
        assert_eq!(failures, vec![(0, 1)]);
    }

    #[tokio::test]
    async fn a_key_stops_at_its_first_failure_while_other_keys_go_on() {
        let event = keyed_batch(&[(0, &["a/1", "b/1", "a/2", "b/2", "a/3"])]);
        let (handled, failures) = run_keyed(&event, &["a/2"]).await;
        assert_eq!(handled, vec!["a/1", "b/1", "b/2"], "a/3 waits for a/2");
        assert_eq!(
            failures,
            vec![(0, 2)],
            "the partition is redelivered from a/2"
        );
    }

    #[tokio::test]
    async fn a_partition_is_failed_at_its_lowest_failed_offset() {
        let event = keyed_batch(&[(0, &["a/1", "b/1", "c/1"]), (1, &["d/1", "e/1"])]);
        let (_, failures) = run_keyed(&event, &["c/1", "b/1", "e/1"]).await;
        assert_eq!(failures, vec![(0, 1), (1, 1)]);
    }

    #[tokio::test]
    async fn keys_run_concurrently() {
        // Each key's handler waits until both have started: run one after
        // the other, they would wait forever.
        let event = keyed_batch(&[(0, &["a/1", "b/1"])]);
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let keyed = each_key(
            &event,
            key_of,
            |_, records| {
                let barrier = std::sync::Arc::clone(&barrier);
                async move {
                    barrier.wait().await;
                    records
                        .into_iter()
                        .map(|d| Ok::<_, Failed>(d.value))
                        .collect::<Vec<_>>()
                }
            },
            2,
        );
        let keyed = tokio::time::timeout(std::time::Duration::from_secs(30), keyed)
            .await
            .expect("both keys ran at once");
        assert_eq!(keyed.handled.len(), 2);
    }

    #[test]
    fn fail_all_names_each_partitions_first_record_unless_an_earlier_failure_stands() {
        let event = keyed_batch(&[(0, &["a/1", "b/1"]), (1, &["c/1"])]);
        let mut keyed: Keyed<'_, ()> = Keyed {
            handled: Vec::new(),
            failures: Vec::new(),
        };
        keyed.fail(&event.records["sales.commands-1"][0], &Failed("earlier"));
        keyed.fail_all(&event, &Failed("publish"));
        let mut got: Vec<(i64, i64, String)> = keyed
            .failures
            .iter()
            .map(|f| (f.partition, f.offset, f.error.clone()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![(0, 0, "publish".to_owned()), (1, 0, "earlier".to_owned())]
        );
    }

    #[test]
    fn a_missing_value_is_a_record_error() {
        let mut record = kafka_record(&bus_record(0, 0));
        record.value = None;
        assert_eq!(Record::from_kafka(&record), Err(RecordError::MissingValue));
    }
}
