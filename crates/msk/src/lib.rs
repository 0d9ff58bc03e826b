//! The MSK event shape shared by the local runner and the Kafka-triggered
//! handlers, and the kit every handler builds its batch on. Knows nothing
//! of any handler.
//!
//! - [`event`]: the `KafkaEvent` shape, built by the runner ([`batch`]) and
//!   read back by handlers ([`partitions`], [`Record::from_kafka`]).
//! - [`batch`](mod@batch): a batch handled key by key under the partial-batch rule,
//!   its result, and the poison, metrics and log every handler shares.
//! - [`dead_letter`]: the dead-letter path, for poison only, and its way
//!   back.

pub mod batch;
pub mod dead_letter;
pub mod event;

pub use batch::{
    check_key, each_group, each_key, finish, group_by_key, BatchResult, Counts, Decoded, Failure,
    Group, KafkaBatchItemFailure, KafkaBatchResponse, KafkaItemIdentifier, KeyMismatch, Keyed,
    Poison, RecordFailure, CART_CONCURRENCY,
};
pub use dead_letter::{
    dead_letter_headers, letter as dead_letter, DeadLetter, DeadLetters, Diverted,
};
pub use event::{
    batch, headers, kafka_record, partitions, raw_key_and_value, Record, RecordError, EVENT_SOURCE,
};

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
    use chrono::{TimeZone, Utc};
    use salestrack_core::bus::BusRecord;

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
