//! `salestrack-cart-load`: what loading a cart costs the domain function at
//! 10, 1,000 and 10,000 events, with snapshots off and on, side by side in
//! one run on the embedded event store.
//!
//! ```sh
//! cargo run --release -p salestrack-loadtest --bin salestrack-cart-load
//! ```
//!
//! Each stream holds one `order_placed` event per line, written in appends
//! of up to 100 events (the cart rules cap a real cart at 1,000 lines; the
//! benchmark writes the events directly to measure the load path alone).
//! With snapshots on (every 100 events) the load reads the snapshot and the
//! 50 events written after it, a mid-interval tail; with them off it folds
//! the whole stream. Each figure is the median of repeated loads; ratios are
//! what to compare across machines.

use anyhow::Context;
use chrono::Utc;
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::ports::EventStore;
use salestrack_core::testing::line;
use salestrack_domain::Carts;
use salestrack_embedded::EmbeddedEventStore;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const EVERY: u64 = 100;
const TAIL: u64 = 50;
const SIZES: [u64; 3] = [10, 1_000, 10_000];

async fn append_lines(
    store: &dyn EventStore,
    cart: CartId,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let mut version = from;
    while version < to {
        let n = (to - version).min(100);
        let events = (0..n)
            .map(|_| {
                let mut l = line();
                l.cart_id = cart;
                l.order_id = OrderId(Uuid::new_v4());
                Event::OrderPlaced(l)
            })
            .collect();
        let recorded =
            RecordedEvent::number(cart, version, CommandId(Uuid::new_v4()), Utc::now(), events);
        store.append(cart, version, &recorded).await?;
        version += n;
    }
    Ok(())
}

/// Median time of `carts.load(cart)` over enough loads to fill ~1 s.
async fn median_load(carts: &Carts, cart: CartId, events: u64) -> anyhow::Result<Duration> {
    let iterations = (20_000 / events).clamp(9, 501);
    let mut times = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let started = Instant::now();
        let loaded = carts.load(cart).await?;
        times.push(started.elapsed());
        anyhow::ensure!(
            loaded.version() == events,
            "loaded {} of {events}",
            loaded.version()
        );
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn EventStore> =
        Arc::new(EmbeddedEventStore::open(&dir.path().join("events.sqlite")).context("store")?);
    let with = Carts::new(Arc::clone(&store), EVERY);
    let without = Carts::new(Arc::clone(&store), 0);

    println!(
        "salestrack-cart-load: embedded event store, snapshot every {EVERY} events, tail {TAIL}"
    );
    println!(
        "{:>7} | {:>14} | {:>14} | {:>7} | snapshot",
        "events", "snapshots off", "snapshots on", "off/on"
    );
    let mut rows = Vec::new();
    for events in SIZES {
        let cart = CartId(Uuid::new_v4());
        // Up to the tail, then one load with snapshots on writes the
        // snapshot (its tail is long enough), then the tail.
        let before_tail = events.saturating_sub(TAIL);
        append_lines(store.as_ref(), cart, 0, before_tail).await?;
        with.load(cart).await?;
        append_lines(store.as_ref(), cart, before_tail, events).await?;
        let snapshot = store.load_snapshot(cart).await?;
        let off = median_load(&without, cart, events).await?;
        let on = median_load(&with, cart, events).await?;
        let snapshot = snapshot
            .map_or("none (stream shorter than the interval)".to_string(), |s| {
                format!("at {} ({} KiB)", s.version, s.state.len() / 1024)
            });
        println!(
            "{events:>7} | {:>14} | {:>14} | {:>6.1}x | {snapshot}",
            micros(off),
            micros(on),
            off.as_secs_f64() / on.as_secs_f64()
        );
        rows.push((events, off, on));
    }
    let ratio = |pick: fn(&(u64, Duration, Duration)) -> Duration| {
        pick(&rows[2]).as_secs_f64() / pick(&rows[0]).as_secs_f64()
    };
    println!(
        "load at 10,000 events / load at 10 events: snapshots off {:.0}x, snapshots on {:.0}x",
        ratio(|r| r.1),
        ratio(|r| r.2)
    );
    Ok(())
}
