//! The `EventStore` contract.

use crate::{line_of, new_cart, recorded};
use salestrack_core::event::Event;
use salestrack_core::ports::{AppendError, EventStore};
use std::sync::Arc;

pub async fn a_new_stream_is_empty(store: Arc<dyn EventStore>) {
    assert!(store
        .read_stream(new_cart())
        .await
        .expect("read")
        .is_empty());
}

pub async fn appended_events_read_back_in_order(store: Arc<dyn EventStore>) {
    let cart = new_cart();
    let first = recorded(
        cart,
        0,
        vec![Event::OrderPlaced(line_of(cart, "u", "a", 1))],
    );
    store.append(cart, 0, &first).await.expect("first append");
    let second = recorded(
        cart,
        1,
        vec![
            Event::OrderPlaced(line_of(cart, "u", "b", 2)),
            Event::OrderPlaced(line_of(cart, "u", "c", 3)),
        ],
    );
    store.append(cart, 1, &second).await.expect("second append");
    let stream = store.read_stream(cart).await.expect("read");
    assert_eq!(stream, [first, second].concat());
}

pub async fn an_append_at_a_stale_version_is_a_conflict(store: Arc<dyn EventStore>) {
    let cart = new_cart();
    let events = recorded(
        cart,
        0,
        vec![Event::OrderPlaced(line_of(cart, "u", "a", 1))],
    );
    store.append(cart, 0, &events).await.expect("append");
    let again = recorded(
        cart,
        0,
        vec![Event::OrderPlaced(line_of(cart, "u", "b", 1))],
    );
    match store.append(cart, 0, &again).await {
        Err(AppendError::Conflict {
            expected: 0,
            actual: 1,
        }) => {}
        other => panic!("expected a conflict at version 1, got {other:?}"),
    }
    assert_eq!(
        store.read_stream(cart).await.expect("read"),
        events,
        "the losing append wrote nothing"
    );
}

pub async fn concurrent_writers_cannot_both_win(store: Arc<dyn EventStore>) {
    let cart = new_cart();
    let attempts = (0..8).map(|i| {
        let store = Arc::clone(&store);
        let events = recorded(
            cart,
            0,
            vec![Event::OrderPlaced(line_of(cart, "u", &format!("p{i}"), 1))],
        );
        tokio::spawn(async move { store.append(cart, 0, &events).await })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(()) => won += 1,
            Err(AppendError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one writer wins version 1");
    assert_eq!(store.read_stream(cart).await.expect("read").len(), 1);
}

pub async fn streams_are_isolated_by_cart(store: Arc<dyn EventStore>) {
    let (a, b) = (new_cart(), new_cart());
    store
        .append(
            a,
            0,
            &recorded(a, 0, vec![Event::OrderPlaced(line_of(a, "u", "x", 1))]),
        )
        .await
        .expect("append a");
    store
        .append(
            b,
            0,
            &recorded(b, 0, vec![Event::OrderPlaced(line_of(b, "u", "y", 1))]),
        )
        .await
        .expect("append b");
    let stream = store.read_stream(a).await.expect("read");
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0].cart_id, a);
}

pub async fn misnumbered_events_are_refused(store: Arc<dyn EventStore>) {
    let cart = new_cart();
    let events = recorded(
        cart,
        5,
        vec![Event::OrderPlaced(line_of(cart, "u", "a", 1))],
    );
    assert!(store.append(cart, 0, &events).await.is_err());
    assert!(store.read_stream(cart).await.expect("read").is_empty());
}

pub async fn listing_streams_pages_through_every_stream_once(store: Arc<dyn EventStore>) {
    let mut mine = Vec::new();
    for events in 1..=5_u64 {
        let cart = new_cart();
        let lines = (0..events)
            .map(|i| Event::OrderPlaced(line_of(cart, "u", "a", i as u32)))
            .collect();
        store
            .append(cart, 0, &recorded(cart, 0, lines))
            .await
            .expect("append");
        mine.push(salestrack_core::ports::StreamHead {
            cart_id: cart,
            version: events,
        });
    }
    // Other checks may share the store: page through all of it, keep ours.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_streams(after, 2).await.expect("page");
        assert!(page.len() <= 2, "a page never exceeds its limit");
        let Some(last) = page.last() else { break };
        after = Some(last.cart_id);
        seen.extend(page);
    }
    let mut ids: Vec<_> = seen.iter().map(|h| h.cart_id).collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no stream listed twice");
    let mut found: Vec<_> = seen.into_iter().filter(|h| mine.contains(h)).collect();
    found.sort_by_key(|h| h.version);
    assert_eq!(found, mine, "every stream, at its current version");
}
