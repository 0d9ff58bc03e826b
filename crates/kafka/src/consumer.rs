//! The group member: `subscribe`, auto-commit off, offsets moved only by
//! `commit`, rewinds to the committed offsets.

use crate::backend_error;
use crate::config::BusContext;
use crate::resume::{screen, to_bus_record, Resume, Screened, REWIND_LOOKBACK};
use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use salestrack_core::ports::{BackendError, BusRecord, Consumer, PartitionLag};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Numbers the consumers of this process, for their log lines.
pub(crate) static MEMBERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Logs the group's rebalances and remembers revoked partitions, so a poll
/// that saw a rebalance drops what it fetched from them: their new owner
/// starts from the group's commit, and no record is handled twice at once.
pub(crate) struct GroupContext {
    pub(crate) bus: BusContext,
    pub(crate) group: String,
    /// Tells this member's log lines from the other members' of a process.
    pub(crate) member: String,
    pub(crate) revoked: std::sync::Mutex<Vec<(String, i32)>>,
    /// Partitions assigned since the last poll looked.
    pub(crate) assigned: std::sync::Mutex<Vec<(String, i32)>>,
    /// Partitions this member owns (assignment is eager: each rebalance
    /// revokes everything, then assigns the whole new set).
    pub(crate) owned: std::sync::atomic::AtomicUsize,
    /// Per assigned partition, from librdkafka's last statistics.
    pub(crate) lags: std::sync::Mutex<Vec<PartitionLag>>,
}

impl ClientContext for GroupContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.bus.generate_oauth_token(config)
    }

    /// librdkafka reports each fetched partition's lag (high watermark
    /// minus committed offset) from its own fetch state: no broker call.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lags = statistics
            .topics
            .into_iter()
            .flat_map(|(topic, t)| {
                t.partitions.into_values().filter_map(move |p| {
                    (p.partition >= 0 && p.consumer_lag >= 0 && p.fetch_state == "active").then(
                        || PartitionLag {
                            topic: topic.clone(),
                            partition: p.partition,
                            lag: p.consumer_lag,
                        },
                    )
                })
            })
            .collect();
        if let Ok(mut current) = self.lags.lock() {
            *current = lags;
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.group, member = %self.member, partitions = ?partition_names(tpl), "partitions revoked");
                self.owned.store(0, std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut revoked) = self.revoked.lock() {
                    revoked.extend(
                        tpl.elements()
                            .iter()
                            .map(|e| (e.topic().to_owned(), e.partition())),
                    );
                }
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, member = %self.member, partitions = ?partition_names(tpl), "partitions assigned");
                self.owned
                    .store(tpl.count(), std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut assigned) = self.assigned.lock() {
                    assigned.extend(
                        tpl.elements()
                            .iter()
                            .map(|e| (e.topic().to_owned(), e.partition())),
                    );
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance error")
            }
        }
    }
}

/// `topic-partition: first..=last` of each partition in `records`.
fn offset_ranges(records: &[BusRecord]) -> Vec<String> {
    let mut ranges: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    for r in records {
        let range = ranges
            .entry((r.topic.clone(), r.partition))
            .or_insert((r.offset, r.offset));
        range.0 = range.0.min(r.offset);
        range.1 = range.1.max(r.offset);
    }
    ranges
        .into_iter()
        .map(|((topic, partition), (first, last))| format!("{topic}-{partition}: {first}..={last}"))
        .collect()
}

fn partition_names(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}-{}", e.topic(), e.partition()))
        .collect()
}

/// A consumer-group member; see the crate docs for its guarantees.
pub struct KafkaConsumer {
    pub(crate) inner: Arc<StreamConsumer<GroupContext>>,
    pub(crate) batch_window: Duration,
    /// Partitions polled since the last rewind, which may need seeking back.
    pub(crate) touched: BTreeSet<(String, i32)>,
    /// Partitions sought back to their committed offset whose first record
    /// since has not arrived yet.
    pub(crate) resume: BTreeMap<(String, i32), Resume>,
    /// Partitions that must be sought back to the group's committed offset
    /// before anything more is handed over: a rewind's or a rebalance's,
    /// kept until the seek succeeds. A seek that failed (the coordinator
    /// down with two brokers of three) left librdkafka's position past the
    /// records to deliver again, and the next poll handed over the ones
    /// after them, whose commit then skipped the failed records for good.
    pub(crate) unsought: BTreeSet<(String, i32)>,
}

impl KafkaConsumer {
    /// The next record, or `None` when `wait` passes first.
    async fn next(&self, wait: Duration) -> Result<Option<BusRecord>, BackendError> {
        match tokio::time::timeout(wait, self.inner.recv()).await {
            Err(_) => Ok(None),
            Ok(Ok(m)) => Ok(Some(to_bus_record(&m))),
            Ok(Err(e)) => Err(backend_error(e)),
        }
    }

    /// Up to `max` records: waits `wait` for the first, then fills the batch
    /// for at most the batching window.
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<BusRecord>, BackendError> {
        let Some(first) = self.next(wait).await? else {
            return Ok(Vec::new());
        };
        let mut records = vec![first];
        let window_ends = Instant::now() + self.batch_window;
        while records.len() < max {
            let left = window_ends.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(Some(r)) => records.push(r),
                Ok(None) => break,
                // The position is already past what arrived: dropping it
                // here would skip it. Hand it over; a lasting error shows
                // again on the next poll.
                Err(e) => {
                    tracing::warn!(error = %e, received = records.len(), "consumer error mid-batch; handing over what arrived");
                    break;
                }
            }
        }
        Ok(records)
    }

    /// Checks the records of partitions just sought back: drops those before
    /// the commit, and when the first one after it is missing (the broker
    /// resumed past a batch), seeks further back, four times as far each
    /// time. From the very beginning, a gap is real (retention deleted the
    /// records): it is logged and counted, and the partition moves on.
    async fn screen(&mut self, records: Vec<BusRecord>) -> Result<Vec<BusRecord>, BackendError> {
        if self.resume.is_empty() {
            return Ok(records);
        }
        let mut kept = Vec::with_capacity(records.len());
        let mut seeks: BTreeMap<(String, i32), Offset> = BTreeMap::new();
        for r in records {
            let partition = (r.topic.clone(), r.partition);
            if seeks.contains_key(&partition) {
                continue;
            }
            match screen(&mut self.resume, &r) {
                Screened::Keep => kept.push(r),
                Screened::Drop => {}
                Screened::SeekBack(offset) => {
                    seeks.insert(partition, offset);
                }
            }
        }
        if !seeks.is_empty() {
            tracing::info!(partitions = ?seeks, "records after the committed offset were not delivered: seeking further back");
            let partitions: Vec<(String, i32)> = seeks.keys().cloned().collect();
            let sought = self
                .blocking(move |c| {
                    for ((topic, partition), offset) in seeks {
                        c.seek(&topic, partition, offset, Duration::from_secs(10))?;
                    }
                    Ok(())
                })
                .await;
            // The records kept are past their partitions' positions already:
            // hand them over; the partitions not sought are before the next
            // poll's first step.
            if let Err(e) = sought {
                tracing::warn!(error = %e, ?partitions, "seeking further back failed; trying again before the next poll");
                self.unsought.extend(partitions);
            }
        }
        Ok(kept)
    }

    /// Seeks every partition in [`KafkaConsumer::unsought`] that is still
    /// assigned back to the group's committed offset (the beginning if
    /// none); on failure they all stay there, for the next try.
    async fn seek_unsought(&mut self) -> Result<(), BackendError> {
        if self.unsought.is_empty() {
            return Ok(());
        }
        let unsought = self.unsought.clone();
        let sought = self
            .blocking(move |c| {
                let assigned = c.assignment()?;
                let mut tpl = TopicPartitionList::new();
                for (topic, partition) in &unsought {
                    if assigned.find_partition(topic, *partition).is_some() {
                        tpl.add_partition(topic, *partition);
                    }
                }
                let mut sought = Vec::new();
                if tpl.count() == 0 {
                    return Ok(sought);
                }
                let committed = c.committed_offsets(tpl, Duration::from_secs(10))?;
                for e in committed.elements() {
                    // A partition's own error (its coordinator loading, say)
                    // is no "nothing committed": seeking to the beginning
                    // would redeliver the whole log.
                    e.error()?;
                    let resume = match e.offset() {
                        Offset::Offset(committed) => Some(Resume {
                            committed,
                            lookback: REWIND_LOOKBACK,
                        }),
                        _ => None,
                    };
                    let offset = resume.map_or(Offset::Beginning, Resume::seek_offset);
                    tracing::debug!(
                        topic = e.topic(),
                        partition = e.partition(),
                        ?resume,
                        ?offset,
                        "seeking back to the committed offset"
                    );
                    c.seek(e.topic(), e.partition(), offset, Duration::from_secs(10))?;
                    sought.push(((e.topic().to_owned(), e.partition()), resume));
                }
                Ok(sought)
            })
            .await?;
        // Partitions no longer assigned are dropped too: their new owner
        // starts from the commit anyway.
        self.unsought.clear();
        for (partition, resume) in sought {
            match resume {
                Some(resume) => self.resume.insert(partition, resume),
                None => self.resume.remove(&partition),
            };
        }
        Ok(())
    }

    /// Runs a blocking librdkafka call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StreamConsumer<GroupContext>) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(backend_error)?
            .map_err(backend_error)
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<BusRecord>, BackendError> {
        // A rewind that failed is finished first: nothing past the records
        // it was to deliver again may be handed over.
        self.seek_unsought().await?;
        let records = self.fetch(max, wait).await?;
        // Rebalances run inside `recv`, so only during a poll, never while a
        // batch is handled. After one, nothing fetched from a partition that
        // was revoked or (re)assigned during this poll is handed over, and
        // every such partition still ours is sought back to the group's
        // committed offset (see `REWIND_LOOKBACK` for why librdkafka's own
        // resume position is not trusted).
        let context = self.inner.context();
        let moved: BTreeSet<(String, i32)> = [&context.revoked, &context.assigned]
            .into_iter()
            .map(|list| {
                list.lock()
                    .map(|mut l| std::mem::take(&mut *l))
                    .map_err(|_| BackendError::new(crate::BACKEND, "poisoned rebalance state"))
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let (records, dropped): (Vec<BusRecord>, Vec<BusRecord>) = records
            .into_iter()
            .partition(|r| !moved.contains(&(r.topic.clone(), r.partition)));
        if !moved.is_empty() {
            tracing::info!(
                member = %context.member,
                dropped = dropped.len(),
                partitions = moved.len(),
                "rebalanced: seeking the partitions still assigned to their committed offsets"
            );
            // What was fetched from them is dropped above; should the seek
            // fail, the next poll tries again before fetching anything.
            self.unsought.extend(moved);
            self.seek_unsought().await?;
        }
        let records = self.screen(records).await?;
        for r in &records {
            self.touched.insert((r.topic.clone(), r.partition));
        }
        if tracing::enabled!(tracing::Level::DEBUG) && !records.is_empty() {
            tracing::debug!(member = %self.inner.context().member, ranges = ?offset_ranges(&records), "polled");
        }
        Ok(records)
    }

    async fn commit(&mut self, records: &[BusRecord]) -> Result<(), BackendError> {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for r in records {
            let entry = next.entry((r.topic.clone(), r.partition)).or_insert(0);
            *entry = (*entry).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        tracing::debug!(member = %self.inner.context().member, offsets = ?next, "committing");
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(backend_error)?;
        }
        self.blocking(move |c| c.commit(&tpl, CommitMode::Sync))
            .await
    }

    fn owned_partitions(&self) -> Option<usize> {
        Some(
            self.inner
                .context()
                .owned
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// As of librdkafka's last statistics (every second): partitions this
    /// member fetches, high watermark minus committed offset.
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BackendError> {
        self.inner
            .context()
            .lags
            .lock()
            .map(|l| l.clone())
            .map_err(|_| BackendError::new(crate::BACKEND, "poisoned lag state"))
    }

    /// Seeks every partition polled since the last rewind back to the group's
    /// committed offset (the beginning if none); see [`REWIND_LOOKBACK`].
    /// Partitions no longer assigned are skipped: their new owner starts from
    /// the commit anyway. On failure the partitions stay to be sought, and
    /// every poll tries again before it hands over any record.
    async fn rewind(&mut self) -> Result<(), BackendError> {
        let touched = std::mem::take(&mut self.touched);
        self.unsought.extend(touched);
        self.seek_unsought().await
    }
}
