//! The embedded message bus: a durable, partitioned log in SQLite with
//! consumer-group offsets. Same semantics the runner relies on from Kafka:
//! per-key ordering (key -> partition), at-least-once delivery, offsets
//! committed only by the consumer.

use crate::sqlite::Db;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use salestrack_core::ports::{
    BackendError, BusRecord, Consumer, Delivery, OutboundRecord, PartitionLag, Producer,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    topic      TEXT    NOT NULL,
    partition  INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    ts_millis  INTEGER NOT NULL,
    key        BLOB,
    value      BLOB,
    -- A BLOB (see `headers`); logs from before hold JSON text.
    headers    BLOB    NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_time ON records (ts_millis);
-- The next offset per partition. Kept apart from `records` so offsets stay
-- monotonic when retention empties a partition.
CREATE TABLE IF NOT EXISTS partition_heads (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS committed_offsets (
    grp        TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    partition  INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
";

/// Records older than this are deleted, as with Kafka's default `retention.ms`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often a producer may spend a `DELETE` on retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Producer side of the embedded bus; hands out consumers for the same log.
#[derive(Clone)]
pub struct EmbeddedBus {
    db: Db,
    partitions: i32,
    appended: Arc<Notify>,
    retention: Duration,
    last_prune: Arc<Mutex<Instant>>,
}

impl EmbeddedBus {
    pub fn open(path: &Path, partitions: i32) -> Result<Self, BackendError> {
        Ok(EmbeddedBus {
            db: Db::open("embedded bus", path, SCHEMA)?,
            partitions: partitions.max(1),
            appended: Arc::new(Notify::new()),
            retention: DEFAULT_RETENTION,
            last_prune: Arc::new(Mutex::new(Instant::now())),
        })
    }

    /// Keeps records for `retention` instead of [`DEFAULT_RETENTION`].
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Deletes every record produced before `cutoff`; returns how many.
    /// Offsets keep counting up: a consumer behind the cutoff resumes at the
    /// oldest record left, as a Kafka consumer does after retention.
    pub async fn prune(&self, cutoff: DateTime<Utc>) -> Result<usize, BackendError> {
        let err = self.db.err();
        let cutoff = cutoff.timestamp_millis();
        let deleted = self
            .db
            .write(move |c| {
                c.execute("DELETE FROM records WHERE ts_millis < ?1", [cutoff])
                    .map_err(err)
            })
            .await?;
        if deleted > 0 {
            tracing::info!(deleted, "embedded bus retention pruned old records");
        }
        Ok(deleted)
    }

    /// Runs retention at most once per [`PRUNE_EVERY`].
    async fn prune_if_due(&self) -> Result<(), BackendError> {
        {
            let mut last = self
                .last_prune
                .lock()
                .map_err(|_| BackendError::new("embedded bus", "poisoned lock"))?;
            if last.elapsed() < PRUNE_EVERY {
                return Ok(());
            }
            *last = Instant::now();
        }
        let retention = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.prune(cutoff).await.map(drop)
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Same key, same partition, across restarts and builds (crc32, not `Hash`).
    fn partition_for(&self, key: &[u8]) -> i32 {
        let hash = crc32fast::hash(key);
        i32::try_from(hash % self.partitions.unsigned_abs()).unwrap_or(0)
    }

    /// The one member of `group`: it owns every partition of `topics`.
    pub fn consumer(&self, group: &str, topics: &[&str]) -> EmbeddedConsumer {
        self.lane(group, topics, 0, 1)
    }

    /// Member `lane` of `lanes` in `group`: it owns the partitions `p` with
    /// `p % lanes == lane`, so that `lanes` loops of one process handle
    /// disjoint partitions side by side, each in partition order (the
    /// embedded bus has no group protocol: the split is fixed). A partition
    /// belongs to one lane only, so a cart's records are never in two
    /// batches at once.
    pub fn lane(
        &self,
        group: &str,
        topics: &[&str],
        lane: usize,
        lanes: usize,
    ) -> EmbeddedConsumer {
        let lanes = lanes.max(1);
        EmbeddedConsumer {
            bus: self.clone(),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            owned: (0..self.partitions)
                .filter(|p| usize::try_from(*p).is_ok_and(|p| p % lanes == lane % lanes))
                .collect(),
            positions: HashMap::new(),
            next_first: 0,
        }
    }

    /// The number of records in a topic, for tests and diagnostics.
    pub async fn topic_len(&self, topic: &str) -> Result<u64, BackendError> {
        let topic = topic.to_owned();
        let err = self.db.err();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM records WHERE topic = ?1",
                    [topic],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n.unsigned_abs())
                .map_err(err)
            })
            .await
    }
}

#[async_trait]
impl Producer for EmbeddedBus {
    async fn send(&self, record: OutboundRecord) -> Result<Delivery, BackendError> {
        Ok(self.send_all(vec![record]).await?.remove(0))
    }

    /// One transaction for the whole set, shared with the concurrent sends
    /// of other callers (group commit: one fsync for all of them).
    async fn send_all(&self, records: Vec<OutboundRecord>) -> Result<Vec<Delivery>, BackendError> {
        let placed: Vec<(i32, OutboundRecord)> = records
            .into_iter()
            .map(|r| (self.partition_for(&r.key), r))
            .collect();
        let err = self.db.err();
        let now = Utc::now().timestamp_millis();
        let deliveries = self
            .db
            .write(move |c| {
                let mut deliveries = Vec::with_capacity(placed.len());
                for (partition, record) in placed {
                    // A partition without a head (a log written before heads existed) starts after its last record.
                    let offset: i64 = c
                        .prepare_cached(
                            "INSERT INTO partition_heads (topic, partition, next_offset) \
                             VALUES (?1, ?2, (SELECT COALESCE(MAX(offset) + 1, 0) FROM records WHERE topic = ?1 AND partition = ?2) + 1) \
                             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = next_offset + 1 \
                             RETURNING next_offset - 1",
                        )
                        .and_then(|mut s| s.query_row(params![record.topic, partition], |r| r.get(0)))
                        .map_err(err)?;
                    let headers = headers::encode(&record.headers);
                    c.prepare_cached(
                        "INSERT INTO records (topic, partition, offset, ts_millis, key, value, headers) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .and_then(|mut s| s.execute(params![record.topic, partition, offset, now, record.key, record.value, headers]))
                    .map_err(err)?;
                    deliveries.push(Delivery { partition, offset });
                }
                Ok(deliveries)
            })
            .await?;
        self.appended.notify_waiters();
        if let Err(e) = self.prune_if_due().await {
            // Retention is housekeeping: the records are already durable.
            tracing::warn!(error = %e, "embedded bus retention failed");
        }
        Ok(deliveries)
    }
}

/// One member of a consumer group: every partition of its topics
/// ([`EmbeddedBus::consumer`]), or a fixed share of them
/// ([`EmbeddedBus::lane`]).
pub struct EmbeddedConsumer {
    bus: EmbeddedBus,
    group: String,
    topics: Vec<String>,
    /// The partitions of each topic this member owns.
    owned: Vec<i32>,
    /// Next offset to deliver, per (topic, partition); loaded from the commits.
    positions: HashMap<(String, i32), i64>,
    /// Which owned partition the next fetch reads first: each fetch starts
    /// one further, so that a backlog in one partition cannot fill every
    /// batch while the others wait.
    next_first: usize,
}

impl EmbeddedConsumer {
    async fn fetch(&mut self, max: usize) -> Result<Vec<BusRecord>, BackendError> {
        let group = self.group.clone();
        let topics = self.topics.clone();
        let mut partitions = self.owned.clone();
        if !partitions.is_empty() {
            let first = self.next_first % partitions.len();
            partitions.rotate_left(first);
            self.next_first = first + 1;
        }
        let positions = self.positions.clone();
        let err = self.bus.db.err();
        let (records, loaded) = self
            .bus
            .db
            .read(move |c| {
                let mut loaded = HashMap::new();
                let mut out = Vec::new();
                for topic in &topics {
                    for &partition in &partitions {
                        if out.len() >= max {
                            break;
                        }
                        let key = (topic.clone(), partition);
                        let from = match positions.get(&key) {
                            Some(p) => *p,
                            None => {
                                let committed: Option<i64> = c
                                    .query_row(
                                        "SELECT next_offset FROM committed_offsets WHERE grp = ?1 AND topic = ?2 AND partition = ?3",
                                        params![group, topic, partition],
                                        |r| r.get(0),
                                    )
                                    .optional()
                                    .map_err(err)?;
                                let from = committed.unwrap_or(0);
                                loaded.insert(key, from);
                                from
                            }
                        };
                        let mut stmt = c
                            .prepare_cached(
                                "SELECT offset, ts_millis, key, value, headers FROM records \
                                 WHERE topic = ?1 AND partition = ?2 AND offset >= ?3 ORDER BY offset LIMIT ?4",
                            )
                            .map_err(err)?;
                        let remaining = i64::try_from(max - out.len()).unwrap_or(i64::MAX);
                        let rows = stmt
                            .query_map(params![topic, partition, from, remaining], |r| {
                                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<Vec<u8>>>(2)?, r.get::<_, Option<Vec<u8>>>(3)?, headers::decode(r.get_ref(4)?)))
                            })
                            .map_err(err)?;
                        for row in rows {
                            let (offset, ts, key, value, headers) = row.map_err(err)?;
                            let headers = headers.map_err(|e| BackendError::new("embedded bus", e))?;
                            out.push(BusRecord {
                                topic: topic.clone(),
                                partition,
                                offset,
                                timestamp: DateTime::from_timestamp_millis(ts).unwrap_or_default(),
                                key,
                                value,
                                headers,
                            });
                        }
                    }
                }
                Ok((out, loaded))
            })
            .await?;
        self.positions.extend(loaded);
        for r in &records {
            self.positions
                .insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        Ok(records)
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BackendError> {
        let group = self.group.clone();
        let topics = self.topics.clone();
        let owned = self.owned.clone();
        let err = self.bus.db.err();
        self.bus
            .db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT h.partition, h.next_offset - COALESCE(o.next_offset, 0) \
                         FROM partition_heads h LEFT JOIN committed_offsets o \
                         ON o.grp = ?1 AND o.topic = h.topic AND o.partition = h.partition \
                         WHERE h.topic = ?2",
                    )
                    .map_err(err)?;
                let mut lags = Vec::new();
                for topic in &topics {
                    let rows = stmt
                        .query_map(params![group, topic], |r| {
                            Ok((r.get::<_, i32>(0)?, r.get::<_, i64>(1)?))
                        })
                        .map_err(err)?;
                    for row in rows {
                        let (partition, lag) = row.map_err(err)?;
                        if !owned.contains(&partition) {
                            continue;
                        }
                        lags.push(PartitionLag {
                            topic: topic.clone(),
                            partition,
                            lag: lag.max(0),
                        });
                    }
                }
                Ok(lags)
            })
            .await
    }

    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<BusRecord>, BackendError> {
        let appended = Arc::clone(&self.bus.appended);
        let notified = appended.notified();
        tokio::pin!(notified);
        // Register for wake-ups before looking, so an append in between is not missed.
        notified.as_mut().enable();
        let records = self.fetch(max).await?;
        if !records.is_empty() {
            return Ok(records);
        }
        if tokio::time::timeout(wait, notified).await.is_err() {
            return Ok(Vec::new());
        }
        self.fetch(max).await
    }

    async fn commit(&mut self, records: &[BusRecord]) -> Result<(), BackendError> {
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for r in records {
            let entry = next
                .entry((r.topic.clone(), r.partition))
                .or_insert(r.offset + 1);
            *entry = (*entry).max(r.offset + 1);
        }
        let group = self.group.clone();
        let err = self.bus.db.err();
        self.bus
            .db
            .write(move |c| {
                for ((topic, partition), offset) in next {
                    c.execute(
                        "INSERT INTO committed_offsets (grp, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
                        params![group, topic, partition, offset],
                    )
                    .map_err(err)?;
                }
                Ok(())
            })
            .await
    }

    /// Its partitions of every topic.
    fn owned_partitions(&self) -> Option<usize> {
        Some(self.owned.len() * self.topics.len())
    }

    /// The assignment is fixed: no other member takes a partition.
    fn may_defer_commits(&self) -> bool {
        true
    }

    async fn rewind(&mut self) -> Result<(), BackendError> {
        self.positions.clear();
        Ok(())
    }
}

/// How record headers are stored: a BLOB of `u32` big-endian length-prefixed
/// names and values, pair after pair. Logs written before it hold a JSON
/// text (`[["name",[bytes]]]`, three to four times larger, which made the
/// headers most of a record's bytes); those rows still read back.
mod headers {
    use rusqlite::types::ValueRef;

    pub fn encode(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
        let size = headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
        let mut out = Vec::with_capacity(size);
        for (name, value) in headers {
            for part in [name.as_bytes(), value.as_slice()] {
                let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&part[..len as usize]);
            }
        }
        out
    }

    /// The next length-prefixed part of `bytes`, which moves past it.
    fn take<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or("headers: truncated length")?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err("headers: truncated value".into());
        }
        let (part, rest) = rest.split_at(len);
        *bytes = rest;
        Ok(part)
    }

    pub fn decode(stored: ValueRef<'_>) -> Result<Vec<(String, Vec<u8>)>, String> {
        match stored {
            ValueRef::Text(json) => {
                serde_json::from_slice(json).map_err(|e| format!("headers: {e}"))
            }
            ValueRef::Blob(mut bytes) => {
                let mut headers = Vec::new();
                while !bytes.is_empty() {
                    let name = String::from_utf8(take(&mut bytes)?.to_vec())
                        .map_err(|e| format!("headers: {e}"))?;
                    headers.push((name, take(&mut bytes)?.to_vec()));
                }
                Ok(headers)
            }
            other => Err(format!("headers: unexpected {:?}", other.data_type())),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn headers_round_trip_and_old_json_rows_still_read() {
            let headers = vec![
                ("traceparent".to_owned(), b"00-abc-01".to_vec()),
                ("empty".to_owned(), Vec::new()),
                ("binary".to_owned(), vec![0, 255, 128]),
            ];
            let blob = encode(&headers);
            assert_eq!(decode(ValueRef::Blob(&blob)), Ok(headers.clone()));
            let json = serde_json::to_string(&headers).unwrap_or_default();
            assert_eq!(decode(ValueRef::Text(json.as_bytes())), Ok(headers));
            assert_eq!(decode(ValueRef::Blob(&[])), Ok(Vec::new()));
            assert!(decode(ValueRef::Blob(&blob[..blob.len() - 1])).is_err());
            assert!(decode(ValueRef::Blob(&[0, 0, 0, 9, 1])).is_err());
        }
    }
}
