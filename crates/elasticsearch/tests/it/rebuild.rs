//! The projection rebuild on real servers: an interrupted rebuild resumes
//! where it stopped and ends with every stream folded exactly once.

use salestrack_core::event::Event;
use salestrack_core::ports::{EventStore, ReadStore, Reader};
use salestrack_core::read_model::CartDetail;
use salestrack_core::search::{ReportDimension, SalesReportQuery};
use salestrack_elasticsearch::rebuild::{rebuild, Phase};
use salestrack_elasticsearch::test_server::{store_at, ServerKind, TestSearchServer};
use salestrack_elasticsearch::{EsReadStore, Model};
use salestrack_embedded::EmbeddedEventStore;
use salestrack_port_tests::{line_of, new_cart, recorded};
use salestrack_test_engines::{Engine, EngineServer};

/// `server` names the server `store` is on.
async fn an_interrupted_rebuild_resumes_and_completes(server: &str, store: EsReadStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = EmbeddedEventStore::open(&dir.path().join("events.sqlite")).expect("open");
    // More streams than one page, so the interruption falls mid-replay.
    let mut carts = Vec::new();
    for i in 0..450_u32 {
        let cart = new_cart();
        let mut stream = vec![Event::OrderPlaced(line_of(cart, "u", "Teapot", i % 60))];
        if i % 3 == 0 {
            stream.push(Event::OrderPlaced(line_of(cart, "u", "Kettle", i % 60)));
        }
        let stream = recorded(cart, 0, stream);
        events.append(cart, 0, &stream).await.expect("append");
        carts.push((cart, stream));
    }

    // Stop after the first saved page, as a killed process would.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let first = {
        let (store, events) = (store.clone(), events.clone());
        tokio::spawn(async move {
            rebuild(&store, &events, |p| {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(p.clone());
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            })
            .await
        })
    };
    let seen = rx.await.expect("a first page");
    first.abort();
    let _ = first.await;
    assert_eq!((seen.phase, seen.generation), (Phase::Replay, 2));
    assert!(seen.streams_done < 450, "interrupted mid-replay: {seen}");

    let mut last = None;
    let rebuilt = rebuild(&store, &events, |p| last = Some(p.clone()))
        .await
        .expect("resumed rebuild");
    assert_eq!(
        rebuilt.generation, 2,
        "{server}: the resumed run kept its generation"
    );
    let last = last.expect("progress");
    assert!(
        last.events < 600,
        "{server}: the resumed run did not start over: {last}"
    );
    assert_eq!(
        store.alias_target(Model::SalesLines).await.expect("alias"),
        Some(format!("{}-sales-lines-v2", store.config().index_prefix))
    );
    for (cart, stream) in carts.iter().step_by(37) {
        assert_eq!(
            store.cart_detail(*cart, Reader::Any).await.expect("detail"),
            CartDetail::fold(stream),
            "{server}"
        );
    }
    let report = store
        .sales_report(&SalesReportQuery {
            interval: None,
            group_by: Some(ReportDimension::Product),
            from: None,
            to: None,
            ..Default::default()
        })
        .await
        .expect("report");
    let orders: Vec<_> = report.iter().map(|b| (b.key.clone(), b.orders)).collect();
    assert_eq!(
        orders,
        vec![(Some("Kettle".into()), 150), (Some("Teapot".into()), 450)],
        "{server}: every line once"
    );
}

async fn on_emulator(kind: ServerKind) {
    let Some(server) = TestSearchServer::start(kind) else {
        return;
    };
    an_interrupted_rebuild_resumes_and_completes(&format!("{kind:?}"), server.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_resumes_and_completes_on_opensearch() {
    let Some(server) = EngineServer::shared(Engine::OpenSearch) else {
        return;
    };
    let store = store_at(&server.address()).await;
    an_interrupted_rebuild_resumes_and_completes("OpenSearch 2.19", store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_resumes_and_completes_on_noida() {
    on_emulator(ServerKind::Noida).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_resumes_and_completes_on_osmem() {
    on_emulator(ServerKind::Osmem).await;
}

/// Every document a cart has, as JSON, and the store's reports.
async fn documents(
    store: &EsReadStore,
    carts: &[salestrack_core::ids::CartId],
) -> serde_json::Value {
    use salestrack_core::search::ReportStatus;
    let mut out = Vec::new();
    for cart in carts {
        out.push(serde_json::json!({
            "detail": store.cart_detail(*cart, Reader::Any).await.expect("detail"),
            "summary": store.cart_summary(*cart, Reader::Any).await.expect("summary"),
        }));
    }
    let report = |status| SalesReportQuery {
        group_by: Some(ReportDimension::Product),
        status,
        ..Default::default()
    };
    serde_json::json!({
        "carts": out,
        "all": store.sales_report(&report(ReportStatus::All)).await.expect("report"),
        "paid": store.sales_report(&report(ReportStatus::Paid)).await.expect("report"),
        "cancelled": store.sales_report(&report(ReportStatus::Cancelled)).await.expect("report"),
    })
}

/// `salestrack-rebuild` over an event store holding events of the oldest
/// release and of this build in one stream gives the documents a store
/// written by this build alone gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_over_old_and_new_event_versions_gives_identical_documents() {
    let Some(server) = EngineServer::shared(Engine::OpenSearch) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mixed_store = EmbeddedEventStore::open(&dir.path().join("mixed.sqlite")).expect("open");
    let new_store = EmbeddedEventStore::open(&dir.path().join("new.sqlite")).expect("open");
    let mut carts = Vec::new();
    for stream in ["paid", "refunded"] {
        let (mixed, new) = salestrack_port_tests::mixed_corpus(stream, 3);
        let cart = salestrack_core::wire::decode_event(&new[0])
            .expect("decodes")
            .cart_id;
        mixed_store.import(cart, 0, mixed).await.expect("import");
        new_store.import(cart, 0, new).await.expect("import");
        carts.push(cart);
    }
    let (from_mixed, from_new) = (
        store_at(&server.address()).await,
        store_at(&server.address()).await,
    );
    rebuild(&from_mixed, &mixed_store, |_| {})
        .await
        .expect("rebuild");
    rebuild(&from_new, &new_store, |_| {})
        .await
        .expect("rebuild");
    let expected = documents(&from_new, &carts).await;
    assert!(!expected["carts"][0]["detail"].is_null(), "{expected}");
    assert_eq!(documents(&from_mixed, &carts).await, expected);
}
