//! The MSK record decoder under property-based fuzzing (proptest): what
//! Lambda hands the Kafka-triggered functions, a JSON `KafkaEvent` with
//! base64 keys and values and headers as arrays of signed bytes.
//!
//! - any bus record survives the trip through the event's JSON and back;
//! - a key or value that is not base64 is a `RecordError` naming the
//!   field, never a panic;
//! - arbitrary bytes as an event body never panic the event's decoder.

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use salestrack_core::ports::BusRecord;
use salestrack_msk::{batch, kafka_record, partitions, Record, RecordError};

fn bus_record() -> impl Strategy<Value = BusRecord> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(
            ("[a-z-]{1,16}", prop::collection::vec(any::<u8>(), 0..32)),
            0..4,
        ),
        0i32..64,
        0i64..i64::MAX,
        0i64..4_102_444_800_000,
    )
        .prop_map(
            |(key, value, headers, partition, offset, millis)| BusRecord {
                topic: "sales.events".into(),
                partition,
                offset,
                timestamp: Utc
                    .timestamp_millis_opt(millis)
                    .single()
                    .unwrap_or_default(),
                key,
                value: Some(value),
                headers,
            },
        )
}

fn empty_record() -> BusRecord {
    BusRecord {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        timestamp: Utc::now(),
        key: None,
        value: Some(b"x".to_vec()),
        headers: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn a_record_survives_the_event_json(records in prop::collection::vec(bus_record(), 1..8)) {
        let event = batch(&records, "arn:test", "b-1:9098");
        let json = serde_json::to_vec(&event).expect("serializes");
        let parsed: KafkaEvent = serde_json::from_slice(&json).expect("parses back");
        let mut decoded: Vec<Record> = partitions(&parsed)
            .flatten()
            .map(|r| Record::from_kafka(r).expect("decodes"))
            .collect();
        decoded.sort_by_key(|r| (r.partition, r.offset));
        let mut expected = records.clone();
        expected.sort_by_key(|r| (i64::from(r.partition), r.offset));
        prop_assert_eq!(decoded.len(), expected.len());
        for (got, want) in decoded.iter().zip(&expected) {
            prop_assert_eq!(&got.key, &want.key);
            prop_assert_eq!(Some(&got.value), want.value.as_ref());
            prop_assert_eq!(&got.headers, &want.headers);
        }
    }

    #[test]
    fn text_that_is_not_base64_is_a_record_error(key in "\\PC{0,64}", value in "\\PC{0,64}") {
        let mut record = kafka_record(&empty_record());
        record.key = Some(key);
        record.value = Some(value);
        match Record::from_kafka(&record) {
            Ok(_) | Err(RecordError::Base64 { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_event_decoder(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(event) = serde_json::from_slice::<KafkaEvent>(&bytes) {
            for record in partitions(&event).flatten() {
                let _ = Record::from_kafka(record);
            }
        }
    }
}

#[test]
fn a_record_without_a_value_says_so() {
    let mut record = kafka_record(&empty_record());
    record.value = None;
    assert!(matches!(
        Record::from_kafka(&record),
        Err(RecordError::MissingValue)
    ));
}
