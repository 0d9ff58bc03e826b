//! Where a partition resumes after a rewind or a rebalance: at the group's
//! committed offset, sought with a look-back
//! (docs/decisions/0002-resume-look-back.md).

use chrono::{DateTime, TimeZone, Utc};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::Offset;
use salestrack_core::ports::BusRecord;
use std::collections::BTreeMap;

/// How far before a committed offset a rewind seeks, so that it lands on
/// the start of the producer batch holding that offset. Kafka hands out the
/// whole batch around a fetch offset; some brokers (tansu 0.6) only batches
/// that start at or after it, so fetching from inside a batch silently
/// skips its remaining records. The records before the commit are dropped
/// here, so the lookback costs a few re-read records, nothing more.
pub(crate) const REWIND_LOOKBACK: i64 = 64;

/// A partition sought to `committed - lookback`, waiting for the record at
/// `committed`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resume {
    pub(crate) committed: i64,
    pub(crate) lookback: i64,
}

impl Resume {
    /// Where to seek: `lookback` records before the commit, or the start.
    pub(crate) fn seek_offset(self) -> Offset {
        match self.committed - self.lookback {
            o if o > 0 => Offset::Offset(o),
            _ => Offset::Beginning,
        }
    }
}

/// What [`KafkaConsumer::screen`] makes of a record of a resumed partition.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Screened {
    /// Hand it over.
    Keep,
    /// Before the commit: already handled.
    Drop,
    /// Past the commit with the records between them never delivered: seek
    /// further back (everything after it in this poll is dropped too).
    SeekBack(Offset),
}

pub(crate) fn timestamp(m: &BorrowedMessage<'_>) -> DateTime<Utc> {
    m.timestamp()
        .to_millis()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or_else(Utc::now)
}

pub(crate) fn to_bus_record(m: &BorrowedMessage<'_>) -> BusRecord {
    BusRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: timestamp(m),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// One record of a poll against the partition's pending [`Resume`], which
/// it settles or widens.
pub(crate) fn screen(resume: &mut BTreeMap<(String, i32), Resume>, r: &BusRecord) -> Screened {
    let partition = (r.topic.clone(), r.partition);
    let Some(pending) = resume.get_mut(&partition) else {
        return Screened::Keep;
    };
    if r.offset < pending.committed {
        return Screened::Drop;
    }
    if r.offset > pending.committed {
        if pending.seek_offset() != Offset::Beginning {
            pending.lookback = pending.lookback.saturating_mul(4);
            return Screened::SeekBack(pending.seek_offset());
        }
        tracing::error!(
            topic = %r.topic,
            partition = r.partition,
            committed = pending.committed,
            next = r.offset,
            "records between the committed offset and the first one left are gone from the log"
        );
        metrics::counter!("salestrack_kafka_offsets_skipped_total", "topic" => r.topic.clone())
            .increment(u64::try_from(r.offset - pending.committed).unwrap_or(0));
    }
    resume.remove(&partition);
    Screened::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> BusRecord {
        BusRecord {
            topic: "t".into(),
            partition,
            offset,
            timestamp: Utc::now(),
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    fn resuming(committed: i64) -> BTreeMap<(String, i32), Resume> {
        BTreeMap::from([(
            ("t".to_owned(), 0),
            Resume {
                committed,
                lookback: REWIND_LOOKBACK,
            },
        )])
    }

    #[test]
    fn a_rewind_seeks_before_the_commit_and_never_below_the_start() {
        let at = |committed| {
            Resume {
                committed,
                lookback: REWIND_LOOKBACK,
            }
            .seek_offset()
        };
        assert_eq!(at(1_000), Offset::Offset(1_000 - REWIND_LOOKBACK));
        assert_eq!(at(REWIND_LOOKBACK), Offset::Beginning);
        assert_eq!(at(3), Offset::Beginning);
    }

    #[test]
    fn records_before_the_commit_are_dropped_until_the_committed_one_arrives() {
        let mut resume = resuming(100);
        assert_eq!(screen(&mut resume, &record(0, 40)), Screened::Drop);
        assert_eq!(screen(&mut resume, &record(0, 99)), Screened::Drop);
        assert_eq!(screen(&mut resume, &record(1, 7)), Screened::Keep);
        assert_eq!(screen(&mut resume, &record(0, 100)), Screened::Keep);
        assert!(resume.is_empty(), "settled");
        assert_eq!(screen(&mut resume, &record(0, 50)), Screened::Keep);
    }

    #[test]
    fn a_resume_past_the_commit_seeks_further_back_until_the_start() {
        let mut resume = resuming(1_000);
        assert_eq!(
            screen(&mut resume, &record(0, 1_003)),
            Screened::SeekBack(Offset::Offset(1_000 - 4 * REWIND_LOOKBACK))
        );
        assert_eq!(
            screen(&mut resume, &record(0, 1_003)),
            Screened::SeekBack(Offset::Beginning)
        );
        // From the start the gap is real: hand the record over and go on.
        assert_eq!(screen(&mut resume, &record(0, 1_003)), Screened::Keep);
        assert!(resume.is_empty());
    }
}
