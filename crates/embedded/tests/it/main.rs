//! The embedded backends against the port contracts, each on its own database
//! in a fresh temporary directory.

mod group_commit;
mod lanes;

use salestrack_embedded::{EmbeddedBus, EmbeddedEventStore, EmbeddedReadStore};
use salestrack_port_tests as contract;
use std::sync::Arc;
use tempfile::TempDir;

fn event_store() -> (TempDir, Arc<dyn salestrack_core::ports::EventStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedEventStore::open(&dir.path().join("events.sqlite")).expect("open");
    (dir, Arc::new(store))
}

fn read_store() -> (TempDir, Arc<dyn salestrack_core::ports::ReadStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedReadStore::open(&dir.path().join("read.sqlite")).expect("open");
    (dir, Arc::new(store))
}

fn bus() -> (TempDir, EmbeddedBus) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open(&dir.path().join("bus.sqlite"), 4).expect("open");
    (dir, bus)
}

macro_rules! event_store_contract {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (_dir, store) = event_store();
            contract::event_store::$check(store).await;
        }
    )*};
}

macro_rules! read_store_contract {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (_dir, store) = read_store();
            contract::read_store::$check(store).await;
        }
    )*};
}

mod event_store_contract {
    use super::*;
    contract::every_event_store_check!(event_store_contract);
}

mod read_store_contract {
    use super::*;
    read_store_contract!(
        an_upsert_keeps_only_the_newest_version,
        documents_read_back_as_written,
        command_status_keeps_the_first_decision_at_a_version,
        owned_reads_answer_the_owner_only,
        search_filters_by_user_time_currency_and_product_words,
        search_pages_with_a_cursor_without_gaps_or_repeats,
        the_sales_report_sums_exact_money_of_active_lines,
        a_report_without_interval_or_dimension_totals_each_currency,
        a_report_counts_the_lines_of_carts_in_the_status_asked,
        due_checkouts_are_the_carts_checking_out_past_their_deadline,
    );
}

mod payment_ledger_contract {
    use salestrack_core::ports::PaymentLedger;
    use salestrack_embedded::EmbeddedPaymentLedger;
    use std::sync::Arc;
    use tempfile::TempDir;

    async fn ledger() -> Option<(TempDir, Arc<dyn PaymentLedger>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger =
            EmbeddedPaymentLedger::open(&dir.path().join("payments.sqlite")).expect("open");
        Some((dir, Arc::new(ledger)))
    }

    salestrack_port_tests::every_payment_ledger_check!();
}

mod key_store_contract {
    use salestrack_core::ports::KeyStore;
    use salestrack_embedded::EmbeddedKeyStore;
    use std::sync::Arc;
    use tempfile::TempDir;

    async fn key_store() -> Option<(TempDir, Arc<dyn KeyStore>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedKeyStore::open(&dir.path().join("keys.sqlite")).expect("open");
        Some((dir, Arc::new(store)))
    }

    salestrack_port_tests::every_key_store_check!();

    /// Every byte the key store left on disk (the database, its write-ahead
    /// log and shared memory), searched for a secret.
    fn on_disk(dir: &std::path::Path, secret: &[u8]) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("dir")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| {
                let bytes = std::fs::read(path).expect("read");
                bytes.windows(secret.len()).any(|w| w == secret)
            })
            .map(|path| path.display().to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_destroyed_key_is_on_no_byte_of_the_files_and_a_kept_one_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.sqlite");
        let store = EmbeddedKeyStore::open(&path).expect("open");
        let erased = store.sealing_key("erased").await.expect("key");
        // Enough other users that the erased key's page holds other rows,
        // and SQLite's deletion must overwrite a row inside a live page.
        let mut kept = Vec::new();
        for n in 0..50 {
            kept.push(store.sealing_key(&format!("kept-{n}")).await.expect("key"));
        }
        assert!(
            !on_disk(dir.path(), erased.secret()).is_empty(),
            "the search would find the key while it lives"
        );
        assert_eq!(
            store.destroy("erased").await.expect("destroy"),
            vec![erased.id]
        );
        assert_eq!(on_disk(dir.path(), erased.secret()), Vec::<String>::new());
        drop(store);
        let reopened = EmbeddedKeyStore::open(&path).expect("reopen");
        for key in &kept {
            let found = reopened.key(key.id).await.expect("read").expect("kept");
            assert_eq!(found.secret(), key.secret());
        }
        assert!(reopened.key(erased.id).await.expect("read").is_none());
        assert_eq!(on_disk(dir.path(), erased.secret()), Vec::<String>::new());
    }
}

mod bus_contract {
    use super::*;

    #[tokio::test]
    async fn records_of_one_key_arrive_in_order() {
        let (_dir, bus) = bus();
        let mut consumer = bus.consumer("g", &["t"]);
        contract::bus::records_of_one_key_arrive_in_order(&bus, &mut consumer, "t").await;
    }

    #[tokio::test]
    async fn lag_counts_records_not_yet_committed() {
        let (_dir, bus) = bus();
        let mut consumer = bus.consumer("g", &["t"]);
        contract::bus::lag_counts_records_not_yet_committed(&bus, &mut consumer, "t").await;
    }

    #[tokio::test]
    async fn uncommitted_records_are_redelivered() {
        let (_dir, bus) = bus();
        let mut consumer = bus.consumer("g", &["t"]);
        contract::bus::uncommitted_records_are_redelivered(&bus, &mut consumer, "t").await;
    }

    #[tokio::test]
    async fn a_new_group_member_resumes_after_the_last_commit() {
        let (_dir, bus) = bus();
        contract::bus::a_new_group_member_resumes_after_the_last_commit(
            &bus,
            Box::new(bus.consumer("g", &["t"])),
            || Box::new(bus.consumer("g", &["t"])),
            "t",
        )
        .await;
    }

    #[tokio::test]
    async fn an_idle_poll_returns_empty() {
        let (_dir, bus) = bus();
        let mut consumer = bus.consumer("g", &["t"]);
        contract::bus::an_idle_poll_returns_empty(&mut consumer).await;
    }

    #[tokio::test]
    async fn the_log_survives_reopening_the_data_directory() {
        use salestrack_core::ports::{Consumer, OutboundRecord, Producer};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bus.sqlite");
        {
            let bus = EmbeddedBus::open(&path, 4).expect("open");
            let record = OutboundRecord {
                topic: "t".into(),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                headers: vec![],
            };
            bus.send(record).await.expect("send");
            let mut consumer = bus.consumer("g", &["t"]);
            let got = contract::bus::poll_n(&mut consumer, 1).await;
            consumer.commit(&got).await.expect("commit");
            bus.send(OutboundRecord {
                topic: "t".into(),
                key: b"k".to_vec(),
                value: b"w".to_vec(),
                headers: vec![],
            })
            .await
            .expect("send");
        }
        let bus = EmbeddedBus::open(&path, 4).expect("reopen");
        let mut consumer = bus.consumer("g", &["t"]);
        let got = contract::bus::poll_n(&mut consumer, 1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].value.as_deref(),
            Some(&b"w"[..]),
            "resumes after the committed record"
        );
    }
}

mod embedded_bus_retention {
    use super::*;
    use chrono::{Duration, Utc};
    use salestrack_core::ports::{Consumer, OutboundRecord, Producer};

    fn record(value: &str) -> OutboundRecord {
        OutboundRecord {
            topic: "t".into(),
            key: b"k".to_vec(),
            value: value.as_bytes().to_vec(),
            headers: vec![],
        }
    }

    #[tokio::test]
    async fn retention_deletes_old_records_but_offsets_keep_counting() {
        let (_dir, bus) = bus();
        for v in ["a", "b", "c"] {
            bus.send(record(v)).await.expect("send");
        }
        let mut consumer = bus.consumer("g", &["t"]);
        let got = contract::bus::poll_n(&mut consumer, 3).await;
        consumer.commit(&got).await.expect("commit");

        assert_eq!(
            bus.prune(Utc::now() + Duration::seconds(1))
                .await
                .expect("prune"),
            3
        );
        assert_eq!(bus.topic_len("t").await.expect("len"), 0);

        let delivery = bus.send(record("d")).await.expect("send");
        assert_eq!(
            delivery.offset, 3,
            "an emptied partition does not restart at offset 0"
        );
        let next = contract::bus::poll_n(&mut consumer, 1).await;
        assert_eq!(
            next[0].value.as_deref(),
            Some(&b"d"[..]),
            "the committed consumer sees the new record"
        );
    }

    #[tokio::test]
    async fn retention_keeps_records_newer_than_the_cutoff() {
        let (_dir, bus) = bus();
        bus.send(record("a")).await.expect("send");
        assert_eq!(
            bus.prune(Utc::now() - Duration::hours(1))
                .await
                .expect("prune"),
            0
        );
        let mut consumer = bus.consumer("g", &["t"]);
        assert_eq!(contract::bus::poll_n(&mut consumer, 1).await.len(), 1);
    }

    #[tokio::test]
    async fn a_consumer_behind_the_cutoff_resumes_at_the_oldest_record_left() {
        let (_dir, bus) = bus();
        bus.send(record("old")).await.expect("send");
        bus.prune(Utc::now() + Duration::seconds(1))
            .await
            .expect("prune");
        bus.send(record("new")).await.expect("send");
        let mut consumer = bus.consumer("never-committed", &["t"]);
        let got = contract::bus::poll_n(&mut consumer, 1).await;
        assert_eq!(
            (got[0].offset, got[0].value.as_deref()),
            (1, Some(&b"new"[..]))
        );
    }
}
