//! What the producer's own writes say about the cluster, for readiness.
//!
//! A metadata request answered by any broker is not proof that the cluster
//! takes writes: with two brokers of three down, the one left answered
//! metadata from its last view (no controller quorum to change it) while
//! every `acks=all` write waited for replicas that were gone, and every
//! `POST /orders` ended in `503` after the delivery timeout; readiness said
//! `ready` (`local-runner/tests/replicated`). So readiness also asks the
//! writes in flight: one unacknowledged for longer than a leader failover
//! takes, or a last write that failed, means the bus is not taking orders;
//! a write acknowledged a moment ago means it is, whatever one metadata
//! request says (with a broker just killed, one timed out now and then while
//! every order was accepted).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longer than a leader failover (Kafka's default broker session timeout is
/// 9 s, then an election): a write waiting longer than this is not a
/// failover, the cluster is not taking writes.
pub const UNACKNOWLEDGED_AFTER: Duration = Duration::from_secs(10);

/// How long a failed write keeps readiness down when nothing is written
/// after it: afterwards the metadata ping alone decides again, so a runner
/// that no one writes through after an outage is not held out of service.
/// During an outage the writes retried meanwhile (clients' repeats, the
/// loops' redeliveries) are in flight again within this.
pub const FAILURE_SAYS_FOR: Duration = Duration::from_secs(15);

/// How recent an acknowledged write must be to vouch for the cluster.
pub const ACKNOWLEDGED_VOUCHES_FOR: Duration = Duration::from_secs(5);

/// The writes in flight (by start) and the last one's outcome.
#[derive(Debug, Default)]
pub struct Acks {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    in_flight: BTreeMap<u64, Instant>,
    /// When the last write was answered, and its failure if it failed.
    last: Option<(Instant, Option<String>)>,
}

/// One write in flight; it is no longer counted when finished or dropped
/// (abandoned).
pub struct InFlight<'a> {
    acks: &'a Acks,
    id: u64,
}

impl Acks {
    /// Counts a write from now until the returned guard is finished or
    /// dropped.
    pub fn start(&self) -> InFlight<'_> {
        let mut state = self.lock();
        let id = state.next;
        state.next += 1;
        state.in_flight.insert(id, Instant::now());
        InFlight { acks: self, id }
    }

    /// Whether the last write was acknowledged in the last
    /// [`ACKNOWLEDGED_VOUCHES_FOR`]. Ask [`Acks::trouble`] first: a write
    /// unacknowledged for long outweighs it.
    pub fn vouch(&self) -> bool {
        self.lock().last.as_ref().is_some_and(|(at, failure)| {
            failure.is_none() && at.elapsed() < ACKNOWLEDGED_VOUCHES_FOR
        })
    }

    /// Why the cluster is not taking writes, if the writes say so.
    pub fn trouble(&self) -> Option<String> {
        let state = self.lock();
        let oldest = state.in_flight.values().next().map(Instant::elapsed);
        if let Some(age) = oldest.filter(|age| *age > UNACKNOWLEDGED_AFTER) {
            return Some(format!(
                "a record sent {} s ago is not acknowledged yet",
                age.as_secs()
            ));
        }
        match &state.last {
            Some((at, Some(error))) if at.elapsed() < FAILURE_SAYS_FOR => Some(format!(
                "the last record sent failed {} s ago: {error}",
                at.elapsed().as_secs()
            )),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl InFlight<'_> {
    /// The write's outcome: it is no longer in flight, and it is the last
    /// one answered.
    pub fn finish(self, failure: Option<String>) {
        let mut state = self.acks.lock();
        state.in_flight.remove(&self.id);
        state.last = Some((Instant::now(), failure));
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.acks.lock().in_flight.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_writes_say_nothing_and_a_failure_is_cleared_by_the_next_success() {
        let acks = Acks::default();
        assert_eq!(acks.trouble(), None);
        assert!(!acks.vouch(), "nothing written yet");
        let write = acks.start();
        assert_eq!(acks.trouble(), None, "a write just sent");
        write.finish(Some("Message timed out".into()));
        let said = acks.trouble().unwrap_or_default();
        assert!(
            said.contains("failed") && said.contains("Message timed out"),
            "{said}"
        );
        assert!(!acks.vouch());
        acks.start().finish(None);
        assert_eq!(acks.trouble(), None, "a success after the failure");
        assert!(acks.vouch(), "a write acknowledged just now");
    }

    #[test]
    fn a_write_unacknowledged_past_a_failover_says_so_until_it_is_answered_or_dropped() {
        let acks = Acks::default();
        let old = acks.start();
        let young = acks.start();
        // Backdate the first write.
        if let Some(started) = acks.lock().in_flight.get_mut(&old.id) {
            *started -= UNACKNOWLEDGED_AFTER + Duration::from_secs(1);
        }
        let said = acks.trouble().unwrap_or_default();
        assert!(said.contains("not acknowledged"), "{said}");
        drop(old);
        assert_eq!(acks.trouble(), None, "only a young write in flight");
        young.finish(None);
        assert!(acks.lock().in_flight.is_empty());
    }
}
