//! The `EventStore` contract.

use crate::{line_of, new_cart, recorded};
use salestrack_core::event::Event;
use salestrack_core::ports::{AppendError, EventStore, StreamAppend};
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

/// `count` single-line events of `cart` after `after`, as one append.
fn lines(
    cart: salestrack_core::ids::CartId,
    after: u64,
    count: u64,
    tag: &str,
) -> Vec<salestrack_core::event::RecordedEvent> {
    let events = (0..count)
        .map(|i| Event::OrderPlaced(line_of(cart, "u", &format!("{tag}{i}"), (i % 60) as u32)))
        .collect();
    recorded(cart, after, events)
}

pub async fn a_range_read_returns_exactly_those_versions(store: Arc<dyn EventStore>) {
    let cart = new_cart();
    let events = lines(cart, 0, 6, "p");
    store.append(cart, 0, &events).await.expect("append");
    let versions = |read: Vec<salestrack_core::event::RecordedEvent>| {
        read.iter().map(|e| e.version).collect::<Vec<_>>()
    };
    assert_eq!(
        versions(store.read_range(cart, 3..=u64::MAX).await.expect("from 3")),
        [3, 4, 5, 6]
    );
    assert_eq!(
        versions(store.read_range(cart, 2..=4).await.expect("2 to 4")),
        [2, 3, 4]
    );
    assert_eq!(
        versions(store.read_range(cart, 5..=5).await.expect("5")),
        [5]
    );
    assert!(store
        .read_range(cart, 7..=u64::MAX)
        .await
        .expect("past the end")
        .is_empty());
    assert_eq!(
        store.read_range(cart, 2..=4).await.expect("again"),
        events[1..4].to_vec()
    );
}

/// More events than a page holds (adapters under test use small pages).
pub async fn a_long_stream_reads_back_whole_and_in_order(store: Arc<dyn EventStore>) {
    let cart = new_cart();
    let mut all = Vec::new();
    for chunk in 0..5 {
        let events = lines(cart, chunk * 50, 50, &format!("c{chunk}-"));
        store
            .append(cart, chunk * 50, &events)
            .await
            .expect("append");
        all.extend(events);
    }
    assert_eq!(store.read_stream(cart).await.expect("read"), all);
    assert_eq!(
        store.read_range(cart, 101..=u64::MAX).await.expect("tail"),
        all[100..].to_vec()
    );
}

/// Two writers append three events each at the same version: the stream
/// ends up with exactly one writer's three, never a mix.
pub async fn a_multi_event_append_is_all_or_nothing(store: Arc<dyn EventStore>) {
    for _ in 0..5 {
        let cart = new_cart();
        let (a, b) = (lines(cart, 0, 3, "a"), lines(cart, 0, 3, "b"));
        let (sa, sb) = (Arc::clone(&store), Arc::clone(&store));
        let (ea, eb) = (a.clone(), b.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { sa.append(cart, 0, &ea).await }),
            tokio::spawn(async move { sb.append(cart, 0, &eb).await }),
        );
        let won: Vec<bool> = [ra.expect("task"), rb.expect("task")]
            .into_iter()
            .map(|r| match r {
                Ok(()) => true,
                Err(AppendError::Conflict {
                    expected: 0,
                    actual: 3,
                }) => false,
                Err(e) => panic!("unexpected: {e}"),
            })
            .collect();
        let stream = store.read_stream(cart).await.expect("read");
        match won.as_slice() {
            [true, false] => assert_eq!(stream, a),
            [false, true] => assert_eq!(stream, b),
            other => panic!("exactly one writer wins, got {other:?}"),
        }
    }
}

/// Appending the very same events again (a redelivered command whose append
/// had applied) is a conflict and stores nothing twice.
pub async fn replaying_an_applied_append_changes_nothing(store: Arc<dyn EventStore>) {
    let cart = new_cart();
    let first = lines(cart, 0, 1, "a");
    store.append(cart, 0, &first).await.expect("append");
    let pair = lines(cart, 1, 2, "b");
    store.append(cart, 1, &pair).await.expect("append pair");
    for (expected, events) in [(0, &first), (1, &pair)] {
        match store.append(cart, expected, events).await {
            Err(AppendError::Conflict { actual: 3, .. }) => {}
            other => panic!("a replay at {expected} must conflict at 3, got {other:?}"),
        }
    }
    assert_eq!(
        store.read_stream(cart).await.expect("read"),
        [first, pair].concat()
    );
}

pub async fn snapshots_round_trip_and_the_latest_saved_wins(store: Arc<dyn EventStore>) {
    use salestrack_core::ports::Snapshot;
    let cart = new_cart();
    assert_eq!(store.load_snapshot(cart).await.expect("none yet"), None);
    let events = lines(cart, 0, 7, "p");
    store.append(cart, 0, &events).await.expect("append");
    let at = |version: u64, state: &[u8]| Snapshot {
        cart_id: cart,
        version,
        format: 1,
        state: state.to_vec(),
    };
    store
        .save_snapshot(&at(3, b"{\"at\":3}"))
        .await
        .expect("save 3");
    assert_eq!(
        store.load_snapshot(cart).await.expect("load"),
        Some(at(3, b"{\"at\":3}"))
    );
    let binary: Vec<u8> = (0..=255).collect();
    store.save_snapshot(&at(7, &binary)).await.expect("save 7");
    assert_eq!(
        store.load_snapshot(cart).await.expect("load"),
        Some(at(7, &binary))
    );
    assert_eq!(
        store.load_snapshot(new_cart()).await.expect("other cart"),
        None
    );
    assert_eq!(
        store.read_stream(cart).await.expect("read"),
        events,
        "snapshots never touch the stream"
    );
}

pub async fn appends_to_several_streams_answer_for_each_on_its_own(store: Arc<dyn EventStore>) {
    let (fresh, stale, two) = (new_cart(), new_cart(), new_cart());
    let taken = recorded(
        stale,
        0,
        vec![Event::OrderPlaced(line_of(stale, "u", "first", 1))],
    );
    store.append(stale, 0, &taken).await.expect("append");
    let fresh_events = recorded(
        fresh,
        0,
        vec![Event::OrderPlaced(line_of(fresh, "u", "a", 1))],
    );
    let stale_events = recorded(
        stale,
        0,
        vec![Event::OrderPlaced(line_of(stale, "u", "late", 1))],
    );
    let two_events = recorded(
        two,
        0,
        vec![
            Event::OrderPlaced(line_of(two, "u", "b", 1)),
            Event::OrderPlaced(line_of(two, "u", "c", 2)),
        ],
    );
    let answers = store
        .append_many(&[
            StreamAppend {
                cart_id: fresh,
                expected_version: 0,
                events: &fresh_events,
            },
            StreamAppend {
                cart_id: stale,
                expected_version: 0,
                events: &stale_events,
            },
            StreamAppend {
                cart_id: two,
                expected_version: 0,
                events: &two_events,
            },
        ])
        .await;
    assert_eq!(answers.len(), 3);
    assert!(answers[0].is_ok(), "{:?}", answers[0]);
    assert!(
        matches!(
            answers[1],
            Err(AppendError::Conflict {
                expected: 0,
                actual: 1
            })
        ),
        "{:?}",
        answers[1]
    );
    assert!(answers[2].is_ok(), "{:?}", answers[2]);
    assert_eq!(store.read_stream(fresh).await.expect("read"), fresh_events);
    assert_eq!(
        store.read_stream(stale).await.expect("read"),
        taken,
        "the conflicting append wrote nothing"
    );
    assert_eq!(store.read_stream(two).await.expect("read"), two_events);
}

/// Calls the adapter's test-generating macro `$adapter!` with every check
/// of this contract, so each adapter that runs the whole contract gets a
/// new check without being edited.
#[macro_export]
macro_rules! every_event_store_check {
    ($adapter:ident) => {
        $adapter!(
            a_new_stream_is_empty,
            appended_events_read_back_in_order,
            an_append_at_a_stale_version_is_a_conflict,
            concurrent_writers_cannot_both_win,
            streams_are_isolated_by_cart,
            misnumbered_events_are_refused,
            listing_streams_pages_through_every_stream_once,
            a_range_read_returns_exactly_those_versions,
            a_long_stream_reads_back_whole_and_in_order,
            a_multi_event_append_is_all_or_nothing,
            replaying_an_applied_append_changes_nothing,
            snapshots_round_trip_and_the_latest_saved_wins,
            appends_to_several_streams_answer_for_each_on_its_own,
        );
    };
}
