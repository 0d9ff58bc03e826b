//! Carts kept warm between batches: decided without a stream read, and
//! decided again on the stored stream whenever the warm state may be stale
//! (a lost append race, a rejection).

use super::batches::{batch_of_commands, cancel, line_n, place};
use super::*;

/// What another writer of the cart (another runner, another Lambda
/// environment) appends behind this process's back: `line` placed at the
/// version after `at`.
async fn placed_elsewhere(w: &World, line: &OrderLine, at: u64) {
    let events = RecordedEvent::number(
        line.cart_id,
        at,
        CommandId(uuid::Uuid::new_v4()),
        Utc::now(),
        vec![Event::OrderPlaced(line.clone())],
    );
    w.store
        .append(line.cart_id, at, &events)
        .await
        .expect("the rival's append");
}

fn order_of(
    stream: &[RecordedEvent],
) -> Vec<(u64, &'static str, Option<salestrack_core::ids::OrderId>)> {
    stream
        .iter()
        .map(|e| (e.version, e.event.kind().as_str(), e.event.order_id()))
        .collect()
}

#[tokio::test]
async fn a_warm_cart_is_decided_without_reading_its_stream_and_kept_in_step() {
    let w = world();
    let (l1, l2, l3) = (line_n(1), line_n(2), line_n(3));
    assert_eq!(w.run(batch_of_commands(&[place(&l1)])).await.applied, 1);
    assert_eq!(w.warm.len(), 1, "the appended state is kept");
    // The store cannot be read any more: only the warm state can decide.
    let blind = w.deps_with(Arc::new(WriteOnly(w.store.clone())));
    let result = handler(
        LambdaEvent::new(
            batch_of_commands(&[place(&l2), place(&l3)]),
            Context::default(),
        ),
        &blind,
    )
    .await;
    assert_eq!(result.failures, vec![]);
    assert_eq!(
        (
            result.report.applied,
            result.report.duplicates,
            result.report.conflicts
        ),
        (2, 0, 0)
    );
    let stream = w.store.read_stream(l1.cart_id).await.expect("stream");
    assert_eq!(
        order_of(&stream),
        vec![
            (1, "order_placed", Some(l1.order_id)),
            (2, "order_placed", Some(l2.order_id)),
            (3, "order_placed", Some(l3.order_id)),
        ]
    );
    // A repeat republishes the event it caused, which it reads back.
    let report = w.run(batch_of_commands(&[place(&l1)])).await;
    assert_eq!((report.applied, report.duplicates), (0, 1));
}

#[tokio::test]
async fn a_lost_append_race_on_a_warm_cart_is_decided_again_on_the_stored_stream() {
    let w = world();
    let (l1, l2, l3) = (line_n(1), line_n(2), line_n(3));
    assert_eq!(w.run(batch_of_commands(&[place(&l1)])).await.applied, 1);
    placed_elsewhere(&w, &l2, 1).await;
    let report = w.run(batch_of_commands(&[place(&l3)])).await;
    assert_eq!((report.applied, report.conflicts), (1, 1), "{report:?}");
    let stream = w.store.read_stream(l1.cart_id).await.expect("stream");
    assert_eq!(
        order_of(&stream),
        vec![
            (1, "order_placed", Some(l1.order_id)),
            (2, "order_placed", Some(l2.order_id)),
            (3, "order_placed", Some(l3.order_id)),
        ],
        "the rival's line kept, ours after it"
    );
    let outcomes = w.outcomes().await;
    assert_eq!(outcomes.last().map(|o| o.version), Some(3));
}

#[tokio::test]
async fn a_rejection_on_a_warm_cart_is_decided_again_on_the_stored_stream() {
    let w = world();
    let (l1, l2) = (line_n(1), line_n(2));
    assert_eq!(w.run(batch_of_commands(&[place(&l1)])).await.applied, 1);
    // The warm state has never heard of l2: it would reject its cancel as
    // an unknown order, and no conditional append would catch that.
    placed_elsewhere(&w, &l2, 1).await;
    let report = w.run(batch_of_commands(&[cancel(&l2)])).await;
    assert_eq!((report.applied, report.rejected), (1, 0), "{report:?}");
    let stream = w.store.read_stream(l1.cart_id).await.expect("stream");
    assert_eq!(
        order_of(&stream).last(),
        Some(&(3, "order_cancelled", Some(l2.order_id)))
    );
    // A rejection the stored stream confirms is still a rejection.
    let unknown = line_n(9);
    let report = w.run(batch_of_commands(&[cancel(&unknown)])).await;
    assert_eq!((report.applied, report.rejected), (0, 1), "{report:?}");
}

/// An event store whose reads fail: a batch through it can only be decided
/// on warm states.
struct WriteOnly(EmbeddedEventStore);

#[async_trait]
impl EventStore for WriteOnly {
    async fn read_range(
        &self,
        _: CartId,
        _: RangeInclusive<u64>,
    ) -> Result<Vec<RecordedEvent>, BackendError> {
        Err(BackendError::new("test store", "reads are off"))
    }
    async fn load_snapshot(&self, _: CartId) -> Result<Option<Snapshot>, BackendError> {
        Err(BackendError::new("test store", "reads are off"))
    }
    async fn save_snapshot(&self, s: &Snapshot) -> Result<(), BackendError> {
        self.0.save_snapshot(s).await
    }
    async fn list_streams(
        &self,
        after: Option<CartId>,
        limit: u32,
    ) -> Result<Vec<StreamHead>, BackendError> {
        self.0.list_streams(after, limit).await
    }
    async fn append(
        &self,
        cart_id: CartId,
        expected: u64,
        events: &[RecordedEvent],
    ) -> Result<(), AppendError> {
        self.0.append(cart_id, expected, events).await
    }
    async fn append_many(&self, appends: &[StreamAppend<'_>]) -> Vec<Result<(), AppendError>> {
        self.0.append_many(appends).await
    }
}
