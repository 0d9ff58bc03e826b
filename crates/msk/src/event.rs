//! The MSK event shape: `aws_lambda_events` `KafkaEvent` batches with
//! records grouped under "topic-partition", base64 keys and values, and
//! headers as lists of `{name: [signed bytes]}`. The runner builds batches
//! with [`batch`]; handlers read them back with [`partitions`] and
//! [`Record::from_kafka`].

use aws_lambda_events::encodings::MillisecondTimestamp;
use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use salestrack_core::bus::BusRecord;
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
