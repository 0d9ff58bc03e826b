//! Projection rebuild: replays the whole event store into a fresh generation
//! of the event-folded indices and moves the aliases to it, while the system
//! keeps taking writes. Resumable: progress is saved after every page in
//! `{prefix}-rebuild-state`, and running the rebuild again continues it.
//!
//! Why nothing is lost or doubled while writes go on:
//! - documents are keyed (cart, cart, cart+order) and written with external
//!   versions, so replaying a stream twice, or racing the live projector,
//!   never doubles a line or puts an older version over a newer one;
//! - until the swap the live projector writes to the old generation only, so
//!   before swapping a catch-up pass compares every stream's version with
//!   the new generation and replays those that moved;
//! - a projection in flight at the swap may write its lines to the old
//!   generation and its cart detail (the checkpoint) to the new one, so the
//!   detail's version cannot tell whether the new generation is complete.
//!   A last pass after the swap therefore replays every stream whose version
//!   moved since the catch-up listed it (every stream, if the rebuild was
//!   resumed after the swap and that listing is lost). Until it ends, a cart
//!   changed in that short window may read one version behind.
//!
//! Command status is not rebuilt: rejected commands leave no event.

use crate::documents::Stored;
use crate::indices::{Model, EVENT_MODELS};
use crate::store::EsReadStore;
use crate::NAME;
use elasticsearch::http::{Method, StatusCode};
use salestrack_core::event::RecordedEvent;
use salestrack_core::ids::CartId;
use salestrack_core::ports::{BackendError, EventStore, ReadDocument, StreamHead};
use salestrack_core::read_model::CartDetail;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

const STATE_ID: &str = "state";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Every stream into the new generation.
    Replay,
    /// Streams that moved meanwhile, before the aliases move.
    CatchUp,
    /// Aliases moved; streams that moved since the catch-up.
    FinalCatchUp,
}

/// What is saved after every page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    generation: u32,
    phase: Phase,
    /// Last stream done in this phase.
    after: Option<CartId>,
    streams_total: u64,
    streams_done: u64,
    events: u64,
}

/// Where a rebuild stands; printed while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub generation: u32,
    pub phase: Phase,
    pub streams_done: u64,
    pub streams_total: u64,
    /// Events replayed by this run (a resumed run counts from its start).
    pub events: u64,
    pub elapsed: Duration,
}

impl Progress {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    pub fn percent(&self) -> f64 {
        if self.streams_total == 0 {
            100.0
        } else {
            (self.streams_done as f64 * 100.0 / self.streams_total as f64).min(100.0)
        }
    }

    /// Time left in this phase at the pace so far.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.streams_done as f64 / self.elapsed.as_secs_f64().max(1e-3);
        let left = self.streams_total.saturating_sub(self.streams_done) as f64;
        (rate > 0.0).then(|| Duration::from_secs_f64(left / rate))
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v{} {:?}: {:.1}% ({}/{} streams), {} events, {:.0} events/s, ETA {}",
            self.generation,
            self.phase,
            self.percent(),
            self.streams_done,
            self.streams_total,
            self.events,
            self.events_per_second(),
            self.eta()
                .map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
        )
    }
}

/// The result of a finished rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub generation: u32,
    /// Streams replayed in the catch-up passes (moved during the rebuild).
    pub caught_up: u64,
    /// The indices the aliases left; kept for a rollback, delete at will.
    pub previous: Vec<String>,
}

/// Streams listed per page and replayed per bulk.
const PAGE: u32 = 200;

/// Rebuilds, or resumes the rebuild in progress. `progress` is called after
/// every page.
pub async fn rebuild(
    store: &EsReadStore,
    events: &dyn EventStore,
    mut progress: impl FnMut(&Progress) + Send,
) -> Result<Rebuilt, BackendError> {
    let started = Instant::now();
    let mut state = match load_state(store).await? {
        Some(state) => {
            tracing::info!(generation = state.generation, phase = ?state.phase, "resuming the rebuild");
            state
        }
        None => begin(store, events).await?,
    };
    let events_at_start = state.events;
    let report = |state: &State, progress: &mut (dyn FnMut(&Progress) + Send)| {
        progress(&Progress {
            generation: state.generation,
            phase: state.phase,
            streams_done: state.streams_done,
            streams_total: state.streams_total,
            events: state.events - events_at_start,
            elapsed: started.elapsed(),
        })
    };
    let mut caught_up = 0;
    let mut previous = Vec::new();
    // Stream versions as the catch-up listed them; `None` after a resume
    // past the swap.
    let mut listed: Option<HashMap<CartId, u64>> = None;
    loop {
        if state.phase == Phase::CatchUp {
            listed = Some(HashMap::new());
        }
        let (streams, replayed) = run_phase(store, events, &mut state, &mut listed, &mut |s| {
            report(s, &mut progress)
        })
        .await?;
        match state.phase {
            Phase::Replay => {
                state.phase = Phase::CatchUp;
            }
            Phase::CatchUp => {
                caught_up += replayed;
                previous = swap_aliases(store, state.generation).await?;
                state.phase = Phase::FinalCatchUp;
            }
            Phase::FinalCatchUp => {
                caught_up += replayed;
                delete_state(store).await?;
                tracing::info!(
                    generation = state.generation,
                    streams,
                    caught_up,
                    "rebuild finished"
                );
                return Ok(Rebuilt {
                    generation: state.generation,
                    caught_up,
                    previous,
                });
            }
        }
        state.after = None;
        state.streams_done = 0;
        save_state(store, &state).await?;
    }
}

/// Creates the next generation's indices and the state that points to them.
async fn begin(store: &EsReadStore, events: &dyn EventStore) -> Result<State, BackendError> {
    let mut current = 0;
    for model in EVENT_MODELS {
        if let Some(index) = store.alias_target(model).await? {
            current = current.max(store.layout().generation_of(model, &index).unwrap_or(1));
        }
    }
    let generation = current + 1;
    for model in EVENT_MODELS {
        store
            .create_index(&store.layout().index(model, generation), None)
            .await?;
    }
    let state = State {
        generation,
        phase: Phase::Replay,
        after: None,
        streams_total: count_streams(events).await?,
        streams_done: 0,
        events: 0,
    };
    save_state(store, &state).await?;
    Ok(state)
}

async fn count_streams(events: &dyn EventStore) -> Result<u64, BackendError> {
    let mut total = 0;
    let mut after = None;
    loop {
        let page = events.list_streams(after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(total);
        };
        after = Some(last.cart_id);
        total += page.len() as u64;
    }
}

/// Goes through every stream after `state.after`; replay replays all of
/// them, the catch-up only those the new generation is behind on (and
/// records what it listed in `listed`), the final pass those behind or moved
/// since `listed`. Returns (streams seen, streams replayed).
async fn run_phase(
    store: &EsReadStore,
    events: &dyn EventStore,
    state: &mut State,
    listed: &mut Option<HashMap<CartId, u64>>,
    progress: &mut (dyn FnMut(&State) + Send),
) -> Result<(u64, u64), BackendError> {
    let (mut seen, mut replayed) = (0, 0);
    loop {
        let page = events.list_streams(state.after, PAGE).await?;
        let Some(last) = page.last().copied() else {
            return Ok((seen, replayed));
        };
        let behind = match state.phase {
            Phase::Replay => page.clone(),
            Phase::CatchUp | Phase::FinalCatchUp => {
                let held = versions_held(store, state.generation, &page).await?;
                let final_pass = state.phase == Phase::FinalCatchUp;
                let moved = |h: &StreamHead| match (final_pass, listed.as_ref()) {
                    (false, _) => false,
                    (true, Some(listed)) => listed.get(&h.cart_id).is_none_or(|v| *v < h.version),
                    (true, None) => true,
                };
                let behind = page
                    .iter()
                    .filter(|h| held.get(&h.cart_id).copied().unwrap_or(0) < h.version || moved(h))
                    .copied()
                    .collect();
                if let (false, Some(listed)) = (final_pass, listed.as_mut()) {
                    listed.extend(page.iter().map(|h| (h.cart_id, h.version)));
                }
                behind
            }
        };
        let mut docs = Vec::new();
        for head in &behind {
            let stream = events.read_stream(head.cart_id).await?;
            state.events += stream.len() as u64;
            docs.extend(documents_of(&stream)?);
        }
        if !docs.is_empty() {
            store.bulk(&docs, Some(state.generation)).await?;
        }
        seen += page.len() as u64;
        replayed += behind.len() as u64;
        state.after = Some(last.cart_id);
        state.streams_done += page.len() as u64;
        state.streams_total = state.streams_total.max(state.streams_done);
        save_state(store, state).await?;
        progress(state);
    }
}

/// Every document a stream folds into: its lines, summary and detail.
fn documents_of(stream: &[RecordedEvent]) -> Result<Vec<Stored>, BackendError> {
    let Some(detail) = CartDetail::fold(stream) else {
        return Ok(Vec::new());
    };
    let mut docs: Vec<ReadDocument> = detail
        .items
        .iter()
        .filter_map(|i| detail.sales_line(i.order_id))
        .map(ReadDocument::SalesLine)
        .collect();
    docs.push(ReadDocument::CartSummary(detail.summary()));
    docs.push(ReadDocument::CartDetail(detail));
    docs.iter().map(Stored::from_document).collect()
}

/// The cart-detail versions the generation holds for these streams.
async fn versions_held(
    store: &EsReadStore,
    generation: u32,
    page: &[StreamHead],
) -> Result<HashMap<CartId, u64>, BackendError> {
    let ids: Vec<String> = page.iter().map(|h| h.cart_id.to_string()).collect();
    let index = store.layout().index(Model::CartDetail, generation);
    let answer = store
        .json(
            Method::Post,
            &format!("/{index}/_mget"),
            &[],
            Some(&json!({ "ids": ids })),
        )
        .await?
        .ok("reading the new generation's cart versions")?;
    Ok(answer["docs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["found"] == true)
        .filter_map(|d| {
            let id = d["_id"].as_str()?.parse().ok()?;
            Some((id, d["_version"].as_u64()?))
        })
        .collect())
}

/// Points every event-folded alias at `generation` in one atomic call;
/// returns the indices they left (none if already done).
async fn swap_aliases(store: &EsReadStore, generation: u32) -> Result<Vec<String>, BackendError> {
    let mut actions = Vec::new();
    let mut previous = Vec::new();
    for model in EVENT_MODELS {
        let alias = store.layout().alias(model);
        let target = store.layout().index(model, generation);
        match store.alias_target(model).await? {
            Some(current) if current == target => continue,
            Some(current) => {
                actions.push(json!({ "remove": { "index": current, "alias": alias } }));
                previous.push(current);
            }
            None => {}
        }
        actions.push(json!({ "add": { "index": target, "alias": alias } }));
    }
    if !actions.is_empty() {
        store
            .json(
                Method::Post,
                "/_aliases",
                &[],
                Some(&json!({ "actions": actions })),
            )
            .await?
            .ok("moving the aliases")?;
    }
    tracing::info!(
        generation,
        ?previous,
        "aliases moved to the rebuilt indices"
    );
    Ok(previous)
}

async fn load_state(store: &EsReadStore) -> Result<Option<State>, BackendError> {
    let index = store.layout().rebuild_state_index();
    let reply = store
        .json(Method::Get, &format!("/{index}/_doc/{STATE_ID}"), &[], None)
        .await?;
    if reply.status == StatusCode::NOT_FOUND || reply.body["found"] == false {
        return Ok(None);
    }
    let body = reply.ok("reading the rebuild state")?;
    serde_json::from_value(body["_source"].clone())
        .map(Some)
        .map_err(|e| BackendError::new(NAME, format!("corrupt rebuild state: {e}")))
}

async fn save_state(store: &EsReadStore, state: &State) -> Result<(), BackendError> {
    let index = store.layout().rebuild_state_index();
    let body = serde_json::to_value(state).map_err(|e| BackendError::new(NAME, e))?;
    store
        .json(
            Method::Put,
            &format!("/{index}/_doc/{STATE_ID}"),
            &[("refresh", "true")],
            Some(&body),
        )
        .await?
        .ok("saving the rebuild state")
        .map(drop)
}

async fn delete_state(store: &EsReadStore) -> Result<(), BackendError> {
    let index = store.layout().rebuild_state_index();
    let reply = store
        .json(
            Method::Delete,
            &format!("/{index}/_doc/{STATE_ID}"),
            &[],
            None,
        )
        .await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Ok(());
    }
    reply.ok("clearing the rebuild state").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reports_rate_share_and_time_left() {
        let p = Progress {
            generation: 2,
            phase: Phase::Replay,
            streams_done: 250,
            streams_total: 1000,
            events: 1250,
            elapsed: Duration::from_secs(5),
        };
        assert_eq!(p.percent(), 25.0);
        assert_eq!(p.events_per_second(), 250.0);
        assert_eq!(p.eta(), Some(Duration::from_secs(15)));
        assert!(p.to_string().contains("25.0% (250/1000 streams)"), "{p}");
    }
}
