//! The dead-letter path, for poison only, and its way back.
//!
//! A record that failed for a reason retrying may cure (a backend down, a
//! timeout, throttling) is never dead-lettered: its partition waits at it,
//! however long that takes. A record that can never succeed (it does not
//! decode, or a store refuses it as malformed) is copied to the dead-letter
//! topic with why, where and where from ([`letter`]), and its partition
//! moves on at once. [`DeadLetters::divert`] makes that split for a batch's
//! failures, the same way in the runner's event source and in a Lambda
//! function (whose event source mapping retries without limit, so it never
//! skips a record on its own). [`DeadLetter`] reads a letter back, and
//! [`DeadLetter::redrive`] puts it on its source topic again.

use crate::{headers, raw_key_and_value, KafkaBatchResponse, RecordFailure};
use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use chrono::{DateTime, Utc};
use salestrack_core::ports::{BusRecord, OutboundRecord, Producer};
use std::sync::Arc;

/// Headers a dead-lettered record carries, besides its original ones.
pub mod dead_letter_headers {
    pub const ERROR: &str = "salestrack-dlq-error";
    pub const STAGE: &str = "salestrack-dlq-stage";
    pub const SOURCE_TOPIC: &str = "salestrack-dlq-source-topic";
    pub const SOURCE_PARTITION: &str = "salestrack-dlq-source-partition";
    pub const SOURCE_OFFSET: &str = "salestrack-dlq-source-offset";
    /// On a redriven record: the dead letter it came from
    /// (`topic/partition/offset`).
    pub const REDRIVEN_FROM: &str = "salestrack-redriven-from";

    /// The headers of a letter: a redrive takes them off again (and a
    /// letter of a record that was redriven replaces them).
    pub const LETTER: [&str; 5] = [ERROR, STAGE, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET];
}

/// The dead-letter copy of a record that can never succeed: the original
/// key, value and headers, plus why (`error`), where (`stage`) and where
/// from.
pub fn letter(
    r: &KafkaRecord,
    topic: &str,
    stage: &str,
    error: &dyn std::fmt::Display,
) -> OutboundRecord {
    use dead_letter_headers as h;
    let (key, value) = raw_key_and_value(r);
    let mut headers = headers(r);
    headers.retain(|(name, _)| !h::LETTER.contains(&name.as_str()));
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
    OutboundRecord {
        topic: topic.to_owned(),
        key,
        value,
        headers,
    }
}

/// Where a consumer's poison goes: the dead-letter topic, written through
/// `producer`, each letter marked with `stage` (the consumer's name).
#[derive(Clone)]
pub struct DeadLetters {
    pub producer: Arc<dyn Producer>,
    pub topic: String,
    pub stage: &'static str,
}

/// A batch's failures once its poison went to the dead-letter topic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diverted {
    /// Records that failed for a reason retrying may cure (or poison whose
    /// letter could not be written): each partition waits at its record,
    /// and the record is delivered again.
    pub waiting: Vec<RecordFailure>,
    /// Where a partition goes on after its dead-lettered record: the next
    /// record of the batch, which the handler did not handle (the partition
    /// stopped at the poison), so it is delivered again at once. A poison
    /// record that was its partition's last in the batch has none.
    pub resume: Vec<RecordFailure>,
    /// The poison, now on the dead-letter topic.
    pub dead_lettered: Vec<RecordFailure>,
}

impl Diverted {
    /// The records each partition is delivered again from.
    pub fn redeliver_from(&self) -> impl Iterator<Item = &RecordFailure> {
        self.waiting.iter().chain(&self.resume)
    }

    /// The partial-batch response for Lambda's event source mapping: it
    /// checkpoints each partition at the record named and delivers again
    /// from there, so a partition moves past its poison and waits at a
    /// retryable failure.
    pub fn response(&self) -> KafkaBatchResponse {
        crate::BatchResult {
            report: (),
            failures: self.redeliver_from().cloned().collect(),
        }
        .response()
    }
}

fn record_at<'a>(batch: &'a KafkaEvent, f: &RecordFailure) -> Option<&'a KafkaRecord> {
    batch
        .records
        .get(&format!("{}-{}", f.topic, f.partition))?
        .iter()
        .find(|r| r.offset == f.offset)
}

/// The record after `f` in its partition's part of the batch.
fn next_in_batch<'a>(batch: &'a KafkaEvent, f: &RecordFailure) -> Option<&'a KafkaRecord> {
    batch
        .records
        .get(&format!("{}-{}", f.topic, f.partition))?
        .iter()
        .filter(|r| r.offset > f.offset)
        .min_by_key(|r| r.offset)
}

impl DeadLetters {
    /// Splits `failures` (at most one per partition, as handlers answer):
    /// retryable ones wait; poison is written to the dead-letter topic and
    /// its partition resumes after it. A letter that cannot be written
    /// leaves its record waiting too: nothing is skipped unless it is on
    /// the dead-letter topic.
    pub async fn divert(&self, batch: &KafkaEvent, failures: Vec<RecordFailure>) -> Diverted {
        let mut diverted = Diverted::default();
        for failure in failures {
            if failure.retryable {
                diverted.waiting.push(failure);
                continue;
            }
            let Some(record) = record_at(batch, &failure) else {
                tracing::error!(
                    stage = self.stage,
                    ?failure,
                    "the handler named a record that is not in the batch"
                );
                diverted.waiting.push(RecordFailure {
                    retryable: true,
                    ..failure
                });
                continue;
            };
            let sent = self
                .producer
                .send(letter(record, &self.topic, self.stage, &failure.error))
                .await;
            if let Err(e) = sent {
                tracing::error!(stage = self.stage, topic = %failure.topic, partition = failure.partition,
                    offset = failure.offset, error = %e, "could not write the dead letter; the record waits");
                diverted.waiting.push(RecordFailure {
                    retryable: true,
                    error: format!(
                        "{} (and its dead letter could not be written: {e})",
                        failure.error
                    ),
                    ..failure
                });
                continue;
            }
            tracing::warn!(stage = self.stage, topic = %failure.topic, partition = failure.partition,
                offset = failure.offset, error = %failure.error, dead_letter_topic = %self.topic,
                "poison dead-lettered; its partition moves on");
            if let Some(next) = next_in_batch(batch, &failure) {
                diverted.resume.push(RecordFailure {
                    offset: next.offset,
                    retryable: true,
                    error: format!("resumes after offset {}, dead-lettered", failure.offset),
                    ..failure.clone()
                });
            }
            diverted.dead_lettered.push(failure);
        }
        diverted
    }

    /// One Lambda invocation of a Kafka-triggered function: `handle` runs
    /// on the batch, its failures are [`divert`](Self::divert)ed, and the
    /// answer is the partial-batch response. Also prints one CloudWatch
    /// embedded-metric line (namespace `salestrack`, dimension `consumer`)
    /// with how long the oldest waiting record has waited
    /// (`RecordWaitSeconds`, its age) and how many records went to the
    /// dead-letter topic (`DeadLettered`), which the template's alarms
    /// watch.
    pub async fn lambda_response<R, Fut>(
        &self,
        batch: KafkaEvent,
        handle: impl FnOnce(KafkaEvent) -> Fut,
    ) -> KafkaBatchResponse
    where
        Fut: std::future::Future<Output = crate::BatchResult<R>>,
    {
        // The handler takes the batch; the diversion needs it afterwards.
        let failures = handle(batch.clone()).await.failures;
        let diverted = self.divert(&batch, failures).await;
        println!("{}", self.metric_line(&batch, &diverted, Utc::now()));
        diverted.response()
    }

    fn metric_line(&self, batch: &KafkaEvent, diverted: &Diverted, now: DateTime<Utc>) -> String {
        let waited = diverted
            .waiting
            .iter()
            .filter_map(|f| record_at(batch, f))
            .map(|r| (now - r.timestamp.0).num_milliseconds().max(0))
            .max()
            .unwrap_or(0);
        serde_json::json!({
            "_aws": {
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": "salestrack",
                    "Dimensions": [["consumer"]],
                    "Metrics": [
                        {"Name": "RecordWaitSeconds", "Unit": "Seconds"},
                        {"Name": "DeadLettered", "Unit": "Count"},
                    ],
                }],
            },
            "consumer": self.stage,
            "RecordWaitSeconds": waited as f64 / 1000.0,
            "DeadLettered": diverted.dead_lettered.len(),
        })
        .to_string()
    }
}

/// A record read back from the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where the letter itself is.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
    /// The consumer that gave up on it.
    pub stage: String,
    pub error: String,
    /// Where the record was when it failed.
    pub source_topic: String,
    pub source_partition: i64,
    pub source_offset: i64,
    /// The original record: key (the cart, for every salestrack topic),
    /// value and headers (with `salestrack-redriven-from` if it was itself
    /// a redrive).
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A record on the dead-letter topic that is not a letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{topic}/{partition}/{offset} is not a dead letter: {why}")]
pub struct NotALetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub why: String,
}

impl DeadLetter {
    /// Reads a record of the dead-letter topic.
    pub fn read(r: &BusRecord) -> Result<DeadLetter, NotALetter> {
        use dead_letter_headers as h;
        let not = |why: String| NotALetter {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            why,
        };
        let header = |name: &str| {
            r.headers
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .ok_or_else(|| not(format!("no {name} header")))
        };
        let number = |name: &str| {
            header(name)?
                .parse::<i64>()
                .map_err(|e| not(format!("{name}: {e}")))
        };
        Ok(DeadLetter {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            at: r.timestamp,
            stage: header(h::STAGE)?,
            error: header(h::ERROR)?,
            source_topic: header(h::SOURCE_TOPIC)?,
            source_partition: number(h::SOURCE_PARTITION)?,
            source_offset: number(h::SOURCE_OFFSET)?,
            key: r.key.clone().unwrap_or_default(),
            value: r.value.clone().unwrap_or_default(),
            headers: r
                .headers
                .iter()
                .filter(|(k, _)| !h::LETTER.contains(&k.as_str()))
                .cloned()
                .collect(),
        })
    }

    /// `topic/partition/offset` of the letter: how a redrive names it.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    /// The record's key as text (a cart id on salestrack's topics).
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// The record as it was, for its source topic again: same key (so the
    /// same partition and per-cart order as any newer record of its cart),
    /// value and headers, plus where it was redriven from. Handlers treat a
    /// record they already applied as the repeat it is, so redriving twice,
    /// or a record that was meanwhile applied, changes nothing.
    pub fn redrive(&self) -> OutboundRecord {
        let mut headers = self.headers.clone();
        headers.retain(|(name, _)| name != dead_letter_headers::REDRIVEN_FROM);
        headers.push((
            dead_letter_headers::REDRIVEN_FROM.to_owned(),
            self.id().into_bytes(),
        ));
        OutboundRecord {
            topic: self.source_topic.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use salestrack_core::ports::{BackendError, Delivery};
    use std::sync::Mutex;

    /// A producer that keeps what it was sent, or refuses everything.
    #[derive(Default)]
    struct Kept {
        sent: Mutex<Vec<OutboundRecord>>,
        refuse: bool,
    }

    #[async_trait]
    impl Producer for Kept {
        async fn send(&self, record: OutboundRecord) -> Result<Delivery, BackendError> {
            if self.refuse {
                return Err(BackendError::new("bus", "the bus is down"));
            }
            let mut sent = self.sent.lock().expect("lock");
            sent.push(record);
            Ok(Delivery {
                partition: 0,
                offset: sent.len() as i64 - 1,
            })
        }
    }

    fn bus_record(partition: i32, offset: i64) -> BusRecord {
        BusRecord {
            topic: "sales.commands".into(),
            partition,
            offset,
            timestamp: Utc::now() - chrono::Duration::seconds(90),
            key: Some(b"cart-1".to_vec()),
            value: Some(format!("value {offset}").into_bytes()),
            headers: vec![("traceparent".into(), b"00-abc".to_vec())],
        }
    }

    fn failure(partition: i64, offset: i64, retryable: bool) -> RecordFailure {
        RecordFailure {
            topic: "sales.commands".into(),
            partition,
            offset,
            retryable,
            error: format!("failure at {offset}"),
        }
    }

    fn dead_letters(producer: Arc<Kept>) -> DeadLetters {
        DeadLetters {
            producer,
            topic: "sales.dead-letter".into(),
            stage: "domain",
        }
    }

    fn batch() -> KafkaEvent {
        crate::batch(
            &[
                bus_record(0, 4),
                bus_record(0, 5),
                bus_record(0, 6),
                bus_record(1, 9),
                bus_record(2, 3),
            ],
            "arn",
            "b",
        )
    }

    #[tokio::test]
    async fn poison_is_dead_lettered_and_its_partition_resumes_at_the_next_record() {
        let kept = Arc::new(Kept::default());
        let diverted = dead_letters(Arc::clone(&kept))
            .divert(&batch(), vec![failure(0, 5, false), failure(1, 9, false)])
            .await;
        assert_eq!(diverted.waiting, vec![]);
        let resume: Vec<(i64, i64)> = diverted
            .resume
            .iter()
            .map(|f| (f.partition, f.offset))
            .collect();
        assert_eq!(
            resume,
            vec![(0, 6)],
            "partition 1's poison was its last record"
        );
        assert_eq!(diverted.dead_lettered.len(), 2);
        let sent = kept.sent.lock().expect("lock");
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].topic, "sales.dead-letter");
        assert_eq!(sent[0].value, b"value 5");
        let response = serde_json::to_value(diverted.response()).expect("json");
        assert_eq!(
            response,
            serde_json::json!({"batchItemFailures": [
                {"itemIdentifier": {"partition": "sales.commands-0", "offset": 6}}
            ]})
        );
    }

    #[tokio::test]
    async fn a_retryable_failure_is_never_dead_lettered() {
        let kept = Arc::new(Kept::default());
        let diverted = dead_letters(Arc::clone(&kept))
            .divert(&batch(), vec![failure(2, 3, true)])
            .await;
        assert_eq!(diverted.waiting, vec![failure(2, 3, true)]);
        assert!(diverted.resume.is_empty() && diverted.dead_lettered.is_empty());
        assert!(kept.sent.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn poison_whose_letter_cannot_be_written_waits_instead_of_being_skipped() {
        let refusing = Arc::new(Kept {
            refuse: true,
            ..Kept::default()
        });
        let diverted = dead_letters(refusing)
            .divert(&batch(), vec![failure(0, 4, false)])
            .await;
        assert_eq!(diverted.waiting.len(), 1);
        assert_eq!(diverted.waiting[0].offset, 4);
        assert!(diverted.waiting[0].retryable);
        assert!(diverted.waiting[0].error.contains("the bus is down"));
        assert!(diverted.dead_lettered.is_empty());
    }

    #[test]
    fn the_metric_line_says_how_long_the_oldest_waiting_record_has_waited() {
        let letters = dead_letters(Arc::new(Kept::default()));
        let batch = batch();
        let diverted = Diverted {
            waiting: vec![failure(2, 3, true)],
            resume: vec![],
            dead_lettered: vec![failure(0, 4, false)],
        };
        let line: serde_json::Value =
            serde_json::from_str(&letters.metric_line(&batch, &diverted, Utc::now()))
                .expect("json");
        let waited = line["RecordWaitSeconds"].as_f64().expect("seconds");
        assert!((89.0..100.0).contains(&waited), "{line}");
        assert_eq!(line["DeadLettered"], 1);
        assert_eq!(line["consumer"], "domain");
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "salestrack"
        );
    }

    #[test]
    fn a_letter_reads_back_and_redrives_as_the_record_it_was() {
        let original = bus_record(3, 17);
        let event = crate::batch(std::slice::from_ref(&original), "arn", "b");
        let sent = letter(
            &event.records["sales.commands-3"][0],
            "sales.dead-letter",
            "domain",
            &"cannot decode",
        );
        let on_the_topic = BusRecord {
            topic: sent.topic.clone(),
            partition: 0,
            offset: 41,
            timestamp: Utc::now(),
            key: Some(sent.key.clone()),
            value: Some(sent.value.clone()),
            headers: sent.headers.clone(),
        };
        let read = DeadLetter::read(&on_the_topic).expect("a letter");
        assert_eq!(read.stage, "domain");
        assert_eq!(read.error, "cannot decode");
        assert_eq!(
            (
                read.source_topic.as_str(),
                read.source_partition,
                read.source_offset
            ),
            ("sales.commands", 3, 17)
        );
        assert_eq!(read.id(), "sales.dead-letter/0/41");
        assert_eq!(read.key_text(), "cart-1");
        let again = read.redrive();
        assert_eq!(again.topic, "sales.commands");
        assert_eq!(Some(again.key.clone()), original.key);
        assert_eq!(Some(again.value.clone()), original.value);
        assert_eq!(
            again.headers,
            vec![
                ("traceparent".to_owned(), b"00-abc".to_vec()),
                (
                    dead_letter_headers::REDRIVEN_FROM.to_owned(),
                    b"sales.dead-letter/0/41".to_vec()
                ),
            ]
        );
        // Dead-lettered again after a redrive, it carries one set of
        // headers, not two.
        let event = crate::batch(
            &[BusRecord {
                topic: again.topic.clone(),
                partition: 3,
                offset: 99,
                timestamp: Utc::now(),
                key: Some(again.key.clone()),
                value: Some(again.value.clone()),
                headers: again.headers.clone(),
            }],
            "arn",
            "b",
        );
        let twice = letter(
            &event.records["sales.commands-3"][0],
            "sales.dead-letter",
            "domain",
            &"still poison",
        );
        let names: Vec<&str> = twice.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names
                .iter()
                .filter(|n| **n == "salestrack-dlq-error")
                .count(),
            1
        );
        assert!(
            names.contains(&dead_letter_headers::REDRIVEN_FROM),
            "{names:?}"
        );
    }

    #[test]
    fn a_record_without_the_headers_is_not_a_letter() {
        let err = DeadLetter::read(&bus_record(0, 1)).expect_err("not a letter");
        assert!(err.why.contains("salestrack-dlq-stage"), "{err}");
    }
}
