//! The query routes over HTTP (`oneshot`) against a real embedded read store.

mod time_travel;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use http_body_util::BodyExt;
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::ports::{ReadDocument, ReadStore};
use salestrack_core::testing::{line, other_line};
use salestrack_core::token::ConsistencyToken;
use salestrack_core::wire::{Outcome, OutcomeStatus, Reason, SCHEMA_VERSION};
use salestrack_embedded::EmbeddedReadStore;
use salestrack_port_tests::read_store::project;
use salestrack_query::{router, QueryState};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

struct App {
    _dir: tempfile::TempDir,
    store: EmbeddedReadStore,
    router: axum::Router,
}

fn spawn_app(wait: Duration) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedReadStore::open(&dir.path().join("read.sqlite")).expect("store");
    let events = salestrack_embedded::EmbeddedEventStore::open(&dir.path().join("events.sqlite"))
        .expect("event store");
    let router = router(QueryState {
        read_store: Arc::new(store.clone()),
        event_store: Arc::new(events),
        consistency: salestrack_query::ConsistencyWait::new(wait, 64),
        auth: None,
        live: salestrack_query::live::Live::new(
            salestrack_query::live::LiveConfig::from_settings(&Default::default()),
            Default::default(),
        ),
        keys: Arc::new(
            salestrack_embedded::EmbeddedKeyStore::open(&dir.path().join("keys.sqlite"))
                .expect("keys"),
        ),
    });
    App {
        _dir: dir,
        store,
        router,
    }
}

async fn get(router: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = get_with_headers(router, uri).await;
    (status, body)
}

async fn get_with_headers(
    router: &axum::Router,
    uri: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn sample_events(command_id: CommandId) -> Vec<RecordedEvent> {
    RecordedEvent::number(
        line().cart_id,
        0,
        command_id,
        Utc::now(),
        vec![Event::OrderPlaced(line()), Event::OrderPlaced(other_line())],
    )
}

fn outcome(command_id: CommandId, status: OutcomeStatus, version: u64) -> Outcome {
    Outcome {
        schema_version: SCHEMA_VERSION,
        command_id,
        cart_id: line().cart_id,
        order_id: Some(line().order_id),
        command_type: "place_order".into(),
        status,
        version,
        duplicate: false,
        reason: (status == OutcomeStatus::Rejected).then(|| Reason {
            code: "currency_mismatch".into(),
            message: "the cart is in EUR".into(),
        }),
        decided_at: Utc::now(),
        user_id: Some(line().user_id),
    }
}

#[tokio::test]
async fn a_projected_cart_reads_back_with_exact_money() {
    let app = spawn_app(Duration::from_millis(50));
    project(
        &app.store as &dyn ReadStore,
        &sample_events(CommandId(uuid::Uuid::new_v4())),
    )
    .await;
    let (status, cart) = get(&app.router, &format!("/carts/{}", line().cart_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cart["subtotal"], "439.98");
    assert_eq!(cart["items"].as_array().expect("items").len(), 2);
    assert_eq!(cart["version"], 2);
    let (status, summary) = get(&app.router, &format!("/carts/{}/summary", line().cart_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(summary["products"], "Espresso machine, Coffee grinder");
}

#[tokio::test]
async fn an_unknown_cart_is_404_and_a_bad_id_is_400() {
    let app = spawn_app(Duration::from_millis(50));
    let (status, body) = get(&app.router, &format!("/carts/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = get(&app.router, "/carts/42").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path"))
    );
}

#[tokio::test]
async fn search_finds_carts_by_product_words_and_pages_with_a_cursor() {
    let app = spawn_app(Duration::from_millis(50));
    for _ in 0..3 {
        let cart = CartId(uuid::Uuid::new_v4());
        let mut l = line();
        l.cart_id = cart;
        project(
            &app.store,
            &RecordedEvent::number(
                cart,
                0,
                CommandId(uuid::Uuid::new_v4()),
                Utc::now(),
                vec![Event::OrderPlaced(l)],
            ),
        )
        .await;
    }
    let (status, page) = get(&app.router, "/carts?user_id=user-42&q=ESPRESSO&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["carts"].as_array().expect("carts").len(), 2);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, next) = get(
        &app.router,
        &format!("/carts?user_id=user-42&q=espresso&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(next["carts"].as_array().expect("carts").len(), 1);
    assert!(next.get("next_cursor").is_none(), "last page");
    let (_, none) = get(&app.router, "/carts?q=teapot").await;
    assert!(none["carts"].as_array().expect("carts").is_empty());
    let (_, window) = get(
        &app.router,
        "/carts?from=2026-11-20T10:15:00Z&to=2026-11-20T10:15:01Z",
    )
    .await;
    assert_eq!(window["carts"].as_array().expect("carts").len(), 3);
}

#[tokio::test]
async fn bad_search_parameters_are_clear_400s() {
    let app = spawn_app(Duration::from_millis(50));
    for (query, needle) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("from=yesterday", "from"),
        ("cursor=%%%", "cursor"),
    ] {
        let (status, body) = get(&app.router, &format!("/carts?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["message"].as_str().expect("message").contains(needle),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn a_command_status_tells_applied_from_rejected_with_the_reason() {
    let app = spawn_app(Duration::from_millis(50));
    let (applied, rejected) = (
        CommandId(uuid::Uuid::new_v4()),
        CommandId(uuid::Uuid::new_v4()),
    );
    app.store
        .upsert(ReadDocument::CommandStatus(outcome(
            applied,
            OutcomeStatus::Applied,
            1,
        )))
        .await
        .expect("write");
    app.store
        .upsert(ReadDocument::CommandStatus(outcome(
            rejected,
            OutcomeStatus::Rejected,
            1,
        )))
        .await
        .expect("write");
    let (_, body) = get(&app.router, &format!("/commands/{applied}")).await;
    assert_eq!(body["status"], "applied");
    let (_, body) = get(&app.router, &format!("/commands/{rejected}")).await;
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["reason"]["code"], "currency_mismatch");
    let (status, _) = get(&app.router, &format!("/commands/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_read_with_a_consistency_token_waits_for_the_projection() {
    let app = spawn_app(Duration::from_secs(30));
    let command_id = CommandId(uuid::Uuid::new_v4());
    let token = ConsistencyToken {
        command_id,
        cart_id: line().cart_id,
    }
    .encode();
    let router = app.router.clone();
    let uri = format!("/carts/{}?consistency_token={token}", line().cart_id);
    let read = tokio::spawn(async move { get(&router, &uri).await });
    // Outcome first, projection second: the read must wait for both.
    app.store
        .upsert(ReadDocument::CommandStatus(outcome(
            command_id,
            OutcomeStatus::Applied,
            2,
        )))
        .await
        .expect("outcome");
    project(&app.store as &dyn ReadStore, &sample_events(command_id)).await;
    let (status, cart) = read.await.expect("read");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cart["version"], 2,
        "never an older version than the token's command"
    );
}

#[tokio::test]
async fn a_consistency_wait_that_runs_out_answers_the_current_state_marked_stale() {
    let app = spawn_app(Duration::from_millis(30));
    let command_id = CommandId(uuid::Uuid::new_v4());
    let token = ConsistencyToken {
        command_id,
        cart_id: line().cart_id,
    }
    .encode();
    let cart_uri = format!("/carts/{}?consistency_token={token}", line().cart_id);
    let (status, headers, _) = get_with_headers(&app.router, &cart_uri).await;
    assert_eq!(
        (status, headers.get("consistency").map(|v| v.as_bytes())),
        (StatusCode::NOT_FOUND, Some(&b"stale"[..])),
        "nothing projected yet, and the answer says it may be behind"
    );
    // The cart exists at version 2, the token's command is not decided yet.
    project(
        &app.store as &dyn ReadStore,
        &sample_events(CommandId(uuid::Uuid::new_v4())),
    )
    .await;
    for uri in [
        cart_uri.clone(),
        format!(
            "/carts/{}/summary?consistency_token={token}",
            line().cart_id
        ),
        format!("/carts?consistency_token={token}"),
        format!("/reports/sales?consistency_token={token}"),
    ] {
        let (status, headers, _) = get_with_headers(&app.router, &uri).await;
        assert_eq!(
            (status, headers.get("consistency").map(|v| v.as_bytes())),
            (StatusCode::OK, Some(&b"stale"[..])),
            "{uri}"
        );
    }
    let (status, headers, _) =
        get_with_headers(&app.router, &format!("/carts/{}", line().cart_id)).await;
    assert_eq!(
        (status, headers.get("consistency").map(|v| v.as_bytes())),
        (StatusCode::OK, Some(&b"fresh"[..])),
        "without a token there is nothing to wait for"
    );
    let (status, body) = get(
        &app.router,
        &format!("/commands/{command_id}?consistency_token={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["status"], "accepted",
        "the token proves the command was accepted"
    );
}

#[tokio::test]
async fn a_token_of_another_cart_is_a_barrier_and_a_garbled_token_is_rejected() {
    let app = spawn_app(Duration::from_millis(30));
    let token = ConsistencyToken {
        command_id: CommandId(uuid::Uuid::new_v4()),
        cart_id: CartId(uuid::Uuid::new_v4()),
    }
    .encode();
    let (status, body) = get(
        &app.router,
        &format!("/carts/{}?consistency_token={token}", line().cart_id),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the read waited for the other cart's command, then answered: {body}"
    );
    let (status, body) = get(
        &app.router,
        &format!("/carts/{}?consistency_token=garbage", line().cart_id),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_consistency_token"))
    );
}

#[tokio::test]
async fn the_sales_report_groups_active_lines() {
    let app = spawn_app(Duration::from_millis(30));
    let l = line();
    let events = RecordedEvent::number(
        l.cart_id,
        0,
        CommandId(uuid::Uuid::new_v4()),
        Utc::now(),
        vec![
            Event::OrderPlaced(l.clone()),
            Event::OrderPlaced(other_line()),
            Event::OrderCancelled {
                order_id: OrderId(other_line().order_id.0),
                reason: None,
            },
        ],
    );
    project(&app.store as &dyn ReadStore, &events).await;
    let (status, report) = get(
        &app.router,
        "/reports/sales?group_by=currency&from=2026-11-20&to=2026-11-20",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["buckets"][0]["key"], "EUR");
    assert_eq!(report["buckets"][0]["revenue"], "389.98");
    assert_eq!(report["buckets"][0]["units"], 2);
    let (status, body) = get(&app.router, "/reports/sales?group_by=colour").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"]
        .as_str()
        .expect("message")
        .contains("group_by"));
}

#[tokio::test]
async fn a_report_by_day_and_product_names_its_buckets_and_range() {
    let app = spawn_app(Duration::from_millis(30));
    project(
        &app.store as &dyn ReadStore,
        &sample_events(CommandId(uuid::Uuid::new_v4())),
    )
    .await;
    let (status, report) = get(
        &app.router,
        "/reports/sales?interval=day&group_by=product&from=2026-11-20&to=2026-11-20",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["interval"], "day");
    assert_eq!(report["from"], "2026-11-20T00:00:00Z");
    assert_eq!(
        report["to"], "2026-11-21T00:00:00Z",
        "a date `to` is inclusive"
    );
    let buckets = report["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 2, "{report}");
    assert!(buckets
        .iter()
        .all(|b| b["period"] == "2026-11-20T00:00:00Z" && b["orders"] == 1));
    for (uri, word) in [
        ("/reports/sales?interval=week", "interval"),
        ("/reports/sales?from=yesterday", "from"),
        ("/reports/sales?from=2026-11-21&to=2026-11-20", "before"),
    ] {
        let (status, body) = get(&app.router, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            body["message"].as_str().expect("message").contains(word),
            "{uri}: {body}"
        );
    }
}

#[tokio::test]
async fn a_search_by_an_unknown_currency_is_refused() {
    let app = spawn_app(Duration::from_millis(30));
    let (status, body) = get(&app.router, "/carts?currency=EURO").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = get(&app.router, "/carts?currency=eur").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "codes are uppercase, as the document's enum lists them: {body}"
    );
    let (status, _) = get(&app.router, "/carts?currency=EUR").await;
    assert_eq!(status, StatusCode::OK);
}
