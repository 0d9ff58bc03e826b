//! A hosted function's consumer loops seen as one: each lane is a member of
//! the function's group with its own partitions, its own batch in flight
//! and its own [`LoopHealth`]; readiness reads them together.

use crate::consumer::{LoopHealth, Waiting};
use std::sync::Arc;
use std::time::Duration;

/// The health of every lane of one consumer.
#[derive(Debug, Default)]
pub struct ConsumerHealth {
    lanes: Vec<Arc<LoopHealth>>,
}

impl ConsumerHealth {
    pub fn new(lanes: Vec<Arc<LoopHealth>>) -> ConsumerHealth {
        ConsumerHealth { lanes }
    }

    /// How many loops run side by side.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Every lane runs.
    pub fn is_running(&self) -> bool {
        !self.lanes.is_empty() && self.lanes.iter().all(|l| l.is_running())
    }

    /// Some lane has a record failing for a reason retrying may cure.
    pub fn is_failing(&self) -> bool {
        self.lanes.iter().any(|l| l.is_failing())
    }

    pub fn batches(&self) -> u64 {
        self.lanes.iter().map(|l| l.batches()).sum()
    }

    pub fn records(&self) -> u64 {
        self.lanes.iter().map(|l| l.records()).sum()
    }

    pub fn partitions(&self) -> u64 {
        self.lanes.iter().map(|l| l.partitions()).sum()
    }

    pub fn lag_records(&self) -> u64 {
        self.lanes.iter().map(|l| l.lag_records()).sum()
    }

    /// The oldest record handled last, across the lanes.
    pub fn record_age(&self) -> Duration {
        self.lanes
            .iter()
            .map(|l| l.record_age())
            .max()
            .unwrap_or_default()
    }

    /// The longest any lane has had work without committing.
    pub fn stalled_for(&self) -> Option<Duration> {
        self.lanes.iter().filter_map(|l| l.stalled_for()).max()
    }

    /// How long no lane has had a partition: on Kafka a lane beyond the
    /// partition count rightly has none, so only all of them idle counts.
    pub fn unassigned_for(&self) -> Option<Duration> {
        self.lanes
            .iter()
            .map(|l| l.unassigned_for())
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    /// The record that has waited longest, across the lanes.
    pub fn waiting(&self) -> Option<Waiting> {
        self.lanes
            .iter()
            .filter_map(|l| l.waiting())
            .min_by_key(|w| w.since_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_add_up_and_the_worst_lane_speaks_for_all() {
        let health = ConsumerHealth::new(vec![
            Arc::new(LoopHealth::default()),
            Arc::new(LoopHealth::default()),
        ]);
        assert_eq!(health.lanes(), 2);
        assert!(!health.is_running(), "no lane has started");
        assert!(!health.is_failing());
        assert_eq!(health.waiting(), None);
        assert_eq!(health.stalled_for(), None);
        assert!(!ConsumerHealth::default().is_running(), "no lane at all");
    }
}
