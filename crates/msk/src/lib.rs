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

/// Handles every record of a batch: a partition's records one after the other
/// in offset order, partitions concurrently. A partition stops at its first
/// failure, which is reported; the records after it are left for the
/// redelivery, so a partition never skips ahead of a record it could not
/// handle and the other partitions keep their progress.
pub async fn each_record<'a, T, E, F, Fut>(
    event: &'a KafkaEvent,
    handle: F,
) -> (Vec<T>, Vec<RecordFailure>)
where
    F: Fn(&'a KafkaRecord) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Failure,
{
    let handle = &handle;
    let partitions = partitions(event).map(|records| async move {
        let mut handled = Vec::with_capacity(records.len());
        for record in records {
            match handle(record).await {
                Ok(t) => handled.push(t),
                Err(e) => {
                    tracing::warn!(topic = ?record.topic, partition = record.partition, offset = record.offset,
                        retryable = e.retryable(), error = %e, "record failed; its partition stops here");
                    return (handled, Some(RecordFailure::new(record, &e)));
                }
            }
        }
        (handled, None)
    });
    let mut all = Vec::new();
    let mut failures = Vec::new();
    for (handled, failure) in futures::future::join_all(partitions).await {
        all.extend(handled);
        failures.extend(failure);
    }
    (all, failures)
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

    #[test]
    fn a_missing_value_is_a_record_error() {
        let mut record = kafka_record(&bus_record(0, 0));
        record.value = None;
        assert_eq!(Record::from_kafka(&record), Err(RecordError::MissingValue));
    }
}

/// Headers a dead-lettered record carries, besides its original ones.
pub mod dead_letter_headers {
    pub const ERROR: &str = "salestrack-dlq-error";
    pub const STAGE: &str = "salestrack-dlq-stage";
    pub const SOURCE_TOPIC: &str = "salestrack-dlq-source-topic";
    pub const SOURCE_PARTITION: &str = "salestrack-dlq-source-partition";
    pub const SOURCE_OFFSET: &str = "salestrack-dlq-source-offset";
}

/// The dead-letter copy of a record that failed for good: the original key,
/// value and headers, plus why (`error`), where (`stage`) and where from.
pub fn dead_letter(
    r: &KafkaRecord,
    topic: &str,
    stage: &str,
    error: &dyn std::fmt::Display,
) -> salestrack_core::ports::OutboundRecord {
    use dead_letter_headers as h;
    let (key, value) = raw_key_and_value(r);
    let mut headers = headers(r);
    headers.extend([
        (h::ERROR.to_owned(), error.to_string().into_bytes()),
        (h::STAGE.to_owned(), stage.as_bytes().to_vec()),
        (
            h::SOURCE_TOPIC.to_owned(),
            r.topic.clone().unwrap_or_default().into_bytes(),
        ),
        (
            h::SOURCE_PARTITION.to_owned(),
            r.partition.to_string().into_bytes(),
        ),
        (
            h::SOURCE_OFFSET.to_owned(),
            r.offset.to_string().into_bytes(),
        ),
    ]);
    salestrack_core::ports::OutboundRecord {
        topic: topic.to_owned(),
        key,
        value,
        headers,
    }
}
