//! The Cassandra event store over the wire.
//!
//! What runs against what:
//! - `kassandra`: the port contract's checks that need no lightweight
//!   transaction (schema, prepared statements, encoding, range reads,
//!   paging with 16-row pages, snapshots), through `scylla-proxy`, which
//!   turns kassandra's `Void` answer to a conditional write into the
//!   `[applied] = true` row Cassandra sends.
//! - `forged`: the conflict and ambiguity paths, with `[applied] = false`,
//!   write timeouts and unavailable replicas forged by the proxy.
//! - `apache_cassandra`: the whole contract, Paxos included, on a real
//!   Apache Cassandra 5.0 node (`salestrack-test-engines`), or on the
//!   cluster `SALESTRACK_TEST_CASSANDRA` names.

use salestrack_cassandra::test_server::{Fault, FaultProxy, Kassandra};
use salestrack_cassandra::{CassandraConfig, CassandraEventStore};
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::CartId;
use salestrack_core::ports::{AppendError, EventStore};
use salestrack_port_tests::{self as contract, line_of, new_cart, recorded};
use std::sync::Arc;

fn unique_keyspace() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

fn test_config(contact_points: &str) -> CassandraConfig {
    let mut config = CassandraConfig::new(contact_points, &unique_keyspace());
    // Small pages, so that every long read crosses pages.
    config.page_size = 16;
    config
}

/// A store on a fresh kassandra behind the proxy, in its own keyspace.
async fn on_kassandra() -> (FaultProxy, CassandraEventStore) {
    let proxy = FaultProxy::start().await.expect("proxy");
    let mut config = test_config(&proxy.addr().to_string());
    config.await_schema_agreement = false;
    config.fetch_schema_metadata = false;
    let store = CassandraEventStore::connect(config).await.expect("connect");
    (proxy, store)
}

macro_rules! kassandra_contract {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (_proxy, store) = on_kassandra().await;
            contract::event_store::$check(Arc::new(store)).await;
        }
    )*};
}

mod kassandra {
    use super::*;
    kassandra_contract!(
        a_new_stream_is_empty,
        appended_events_read_back_in_order,
        streams_are_isolated_by_cart,
        misnumbered_events_are_refused,
        a_range_read_returns_exactly_those_versions,
        a_long_stream_reads_back_whole_and_in_order,
        snapshots_round_trip_and_the_latest_saved_wins,
    );

    #[tokio::test]
    async fn the_schema_applies_again_over_an_existing_keyspace() {
        let proxy = FaultProxy::start().await.expect("proxy");
        let mut config = test_config(&proxy.addr().to_string());
        config.await_schema_agreement = false;
        config.fetch_schema_metadata = false;
        let first = CassandraEventStore::connect(config.clone())
            .await
            .expect("first");
        let cart = new_cart();
        let events = one(cart, 0, "a");
        first.append(cart, 0, &events).await.expect("append");
        let again = CassandraEventStore::connect(config).await.expect("again");
        assert_eq!(again.read_stream(cart).await.expect("read"), events);
    }

    /// A server that answers a conditional write without `[applied]` did
    /// not run it as one: the adapter says so instead of assuming success.
    #[tokio::test]
    async fn a_server_without_lightweight_transactions_is_refused_loudly() {
        let server = Kassandra::start().expect("kassandra");
        let mut config = test_config(&server.addr().to_string());
        config.await_schema_agreement = false;
        config.fetch_schema_metadata = false;
        let store = CassandraEventStore::connect(config).await.expect("connect");
        let cart = new_cart();
        let err = store
            .append(cart, 0, &one(cart, 0, "a"))
            .await
            .expect_err("no [applied] answer");
        assert!(
            err.to_string().contains("[applied]") || err.to_string().contains("no rows"),
            "{err}"
        );
    }
}

fn one(cart: CartId, after: u64, product: &str) -> Vec<RecordedEvent> {
    recorded(
        cart,
        after,
        vec![Event::OrderPlaced(line_of(cart, "u", product, 1))],
    )
}

fn many(cart: CartId, after: u64, count: usize, product: &str) -> Vec<RecordedEvent> {
    recorded(
        cart,
        after,
        (0..count)
            .map(|i| Event::OrderPlaced(line_of(cart, "u", &format!("{product}{i}"), 1)))
            .collect(),
    )
}

/// What the proxy matches a write by: the command id in its bound values.
fn marker(events: &[RecordedEvent]) -> Vec<u8> {
    events[0].command_id.0.as_bytes().to_vec()
}

mod forged {
    use super::*;

    /// `winner` is stored; `loser`, appended after `expected` while the
    /// proxy answers its write with `fault`, must come back as a conflict at
    /// the stored version and leave the stream as the winner wrote it.
    async fn the_loser_conflicts(
        winner: impl Fn(CartId) -> Vec<RecordedEvent>,
        expected: u64,
        loser: impl Fn(CartId) -> Vec<RecordedEvent>,
        fault: Fault,
    ) {
        let (mut proxy, store) = on_kassandra().await;
        let cart = new_cart();
        let winner = winner(cart);
        store.append(cart, 0, &winner).await.expect("append");
        let loser = loser(cart);
        proxy.fault_writes_containing(&marker(&loser), fault, 1);
        let stored = winner.len() as u64;
        match store.append(cart, expected, &loser).await {
            Err(AppendError::Conflict {
                expected: e,
                actual: a,
            }) if e == expected && a == stored => {}
            other => panic!("expected a conflict at {stored}, got {other:?}"),
        }
        assert_eq!(store.read_stream(cart).await.expect("read"), winner);
    }

    #[tokio::test]
    async fn applied_false_is_a_conflict_at_the_stored_version() {
        the_loser_conflicts(
            |cart| one(cart, 0, "a"),
            0,
            |cart| one(cart, 0, "b"),
            Fault::NotApplied,
        )
        .await;
    }

    #[tokio::test]
    async fn a_batch_answered_applied_false_is_a_conflict_and_writes_nothing() {
        the_loser_conflicts(
            |cart| many(cart, 0, 2, "a"),
            1,
            |cart| many(cart, 1, 3, "b"),
            Fault::NotApplied,
        )
        .await;
    }

    #[tokio::test]
    async fn a_write_timeout_that_did_not_land_is_a_retryable_error() {
        let (mut proxy, store) = on_kassandra().await;
        let cart = new_cart();
        let events = many(cart, 0, 2, "a");
        proxy.fault_writes_containing(&marker(&events), Fault::WriteTimeout, 1);
        match store.append(cart, 0, &events).await {
            Err(AppendError::Backend(e)) => {
                assert!(!e.permanent, "{e}");
                assert!(e.message.contains("did not apply"), "{e}");
            }
            other => panic!("expected a retryable error, got {other:?}"),
        }
        assert!(store.read_stream(cart).await.expect("read").is_empty());
        store
            .append(cart, 0, &events)
            .await
            .expect("the retry applies");
        assert_eq!(store.read_stream(cart).await.expect("read"), events);
    }

    /// The write landed but its answer was lost: reading the versions back
    /// finds our own events, so the append succeeded.
    #[tokio::test]
    async fn a_write_timeout_whose_write_landed_is_a_success() {
        let (mut proxy, store) = on_kassandra().await;
        let cart = new_cart();
        let events = one(cart, 0, "a");
        store.append(cart, 0, &events).await.expect("append");
        proxy.fault_writes_containing(&marker(&events), Fault::WriteTimeout, 1);
        store
            .append(cart, 0, &events)
            .await
            .expect("settled as applied");
        assert_eq!(store.read_stream(cart).await.expect("read"), events);
    }

    #[tokio::test]
    async fn a_write_timeout_after_another_writer_won_is_a_conflict() {
        the_loser_conflicts(
            |cart| one(cart, 0, "a"),
            0,
            |cart| one(cart, 0, "b"),
            Fault::WriteTimeout,
        )
        .await;
    }

    #[tokio::test]
    async fn unavailable_replicas_fail_the_append_without_writing() {
        let (mut proxy, store) = on_kassandra().await;
        let cart = new_cart();
        let events = one(cart, 0, "a");
        proxy.fault_writes_containing(&marker(&events), Fault::Unavailable, 100);
        match store.append(cart, 0, &events).await {
            Err(AppendError::Backend(e)) => assert!(!e.permanent, "{e}"),
            other => panic!("expected a retryable error, got {other:?}"),
        }
        assert!(store.read_stream(cart).await.expect("read").is_empty());
        proxy.heal();
        store.append(cart, 0, &events).await.expect("healed");
    }
}

mod apache_cassandra {
    use super::*;
    use salestrack_test_engines::{Engine, EngineServer};

    /// A store in a keyspace of its own on the binary's shared Apache
    /// Cassandra 5 node, or on the cluster `SALESTRACK_TEST_CASSANDRA` names
    /// (`host:port,...`: ScyllaDB, Keyspaces, a real ring) when it is set.
    async fn store() -> Option<CassandraEventStore> {
        let contact_points = match std::env::var("SALESTRACK_TEST_CASSANDRA") {
            Ok(points) => points,
            Err(_) => EngineServer::shared(Engine::Cassandra)?.address(),
        };
        Some(
            CassandraEventStore::connect(test_config(&contact_points))
                .await
                .expect("connect to Cassandra"),
        )
    }

    macro_rules! real_contract {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = store().await {
                    contract::event_store::$check(Arc::new(store)).await;
                }
            }
        )*};
    }

    contract::every_event_store_check!(real_contract);

    mod payment_ledger_contract {
        use super::*;
        use salestrack_core::ports::PaymentLedger;

        async fn ledger() -> Option<((), Arc<dyn PaymentLedger>)> {
            let store = store().await?;
            let ledger = store.payment_ledger().await.expect("prepare the ledger");
            Some(((), Arc::new(ledger)))
        }

        salestrack_port_tests::every_payment_ledger_check!();
    }

    mod key_store_contract {
        use super::*;
        use salestrack_core::ports::KeyStore;

        async fn key_store() -> Option<((), Arc<dyn KeyStore>)> {
            let store = store().await?;
            let keys = store.key_store().await.expect("prepare the key store");
            Some(((), Arc::new(keys)))
        }

        salestrack_port_tests::every_key_store_check!();
    }
}
