//! The command routes over HTTP (`oneshot`), producing to a real embedded bus.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use salestrack_command::{router, CommandState};
use salestrack_core::command::Command;
use salestrack_core::headers::{self as h, TraceParent};
use salestrack_core::ports::{
    BackendError, Consumer, Delivery, OutboundRecord, Producer, SystemClock,
};
use salestrack_core::testing::order_body;
use salestrack_core::wire::CommandRecord;
use salestrack_embedded::{EmbeddedBus, EmbeddedKeyStore, EmbeddedReadStore};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const TOPIC: &str = "sales.commands";

struct App {
    _dir: tempfile::TempDir,
    bus: EmbeddedBus,
    router: axum::Router,
}

fn spawn_app() -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open(&dir.path().join("bus.sqlite"), 4).expect("bus");
    let router = router(CommandState {
        producer: Arc::new(bus.clone()),
        clock: Arc::new(SystemClock),
        topic: TOPIC.into(),
        max_body_bytes: 4096,
        auth: None,
        keys: Arc::new(EmbeddedKeyStore::open(&dir.path().join("keys.sqlite")).expect("keys")),
        read_store: Arc::new(
            EmbeddedReadStore::open(&dir.path().join("read.sqlite")).expect("read store"),
        ),
    });
    App {
        _dir: dir,
        bus,
        router,
    }
}

fn post(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post(uri);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder.body(body.into()).expect("request")
}

fn post_json(uri: &str, body: &Value) -> Request<Body> {
    post(uri, Some("application/json"), body.to_string())
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = send_with_headers(router, request).await;
    (status, body)
}

/// [`send`], with the response's headers.
async fn send_with_headers(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.expect("response");
    let (status, headers) = (response.status(), response.headers().clone());
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

impl App {
    async fn produced(&self) -> u64 {
        self.bus.topic_len(TOPIC).await.expect("len")
    }
}

#[tokio::test]
async fn a_valid_order_is_accepted_and_lands_on_the_bus_keyed_by_cart() {
    let app = spawn_app();
    let (status, body) = send(&app.router, post_json("/orders", &order_body())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["cart_id"], order_body()["cart_id"]);
    assert_eq!(body["order_id"], order_body()["order_id"]);
    assert!(body["consistency_token"]
        .as_str()
        .expect("token")
        .starts_with("ct1."));
    assert_eq!(
        body["status_url"],
        format!("/commands/{}", body["command_id"].as_str().expect("id"))
    );

    let mut consumer = app.bus.consumer("test", &[TOPIC]);
    let records = consumer
        .poll(10, Duration::from_secs(5))
        .await
        .expect("poll");
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].key.as_deref(),
        Some(order_body()["cart_id"].as_str().expect("cart").as_bytes())
    );
    let command =
        CommandRecord::decode(records[0].value.as_deref().expect("value")).expect("decodes");
    assert_eq!(
        command.command_id.to_string(),
        body["command_id"].as_str().expect("id")
    );
}

/// Personal fields are sealed where they enter: the record on the bus holds
/// none of them readable, and the user's key opens them back.
#[tokio::test]
async fn personal_fields_travel_sealed_under_the_users_key() {
    use salestrack_core::personal::{PersonalField, Sealed};
    use salestrack_core::ports::KeyStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open(&dir.path().join("bus.sqlite"), 4).expect("bus");
    let keys = EmbeddedKeyStore::open(&dir.path().join("keys.sqlite")).expect("keys");
    let router = router(CommandState {
        producer: Arc::new(bus.clone()),
        clock: Arc::new(SystemClock),
        topic: TOPIC.into(),
        max_body_bytes: 4096,
        auth: None,
        keys: Arc::new(keys.clone()),
        read_store: Arc::new(
            EmbeddedReadStore::open(&dir.path().join("read.sqlite")).expect("read store"),
        ),
    });
    let mut body = order_body();
    body["shipping_address"] = json!("Qwertzuiop Lane 17");
    body["billing_address"] = json!("Asdfghjkl Court 3");
    body["payment_method"] = json!("Yxcvbnm Card");
    let (status, _) = send(&router, post_json("/orders", &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let records = bus
        .consumer("test", &[TOPIC])
        .poll(10, Duration::from_secs(5))
        .await
        .expect("poll");
    let value = records[0].value.as_deref().expect("value");
    for clear in ["Qwertzuiop", "Asdfghjkl", "Yxcvbnm"] {
        assert!(
            !value.windows(clear.len()).any(|w| w == clear.as_bytes()),
            "{clear} readable on the bus"
        );
    }
    let Command::PlaceOrder(order) = CommandRecord::decode(value).expect("decodes").command else {
        panic!("a place_order");
    };
    let key = keys
        .sealing_key(body["user_id"].as_str().expect("user"))
        .await
        .expect("the user's key");
    let open = |field, token: &str| {
        let sealed = Sealed::from_token(token)
            .expect("sealed")
            .expect("well-formed");
        key.open(field, &sealed).expect("opens")
    };
    assert_eq!(
        open(PersonalField::ShippingAddress, &order.line.shipping_address),
        "Qwertzuiop Lane 17"
    );
    assert_eq!(
        open(PersonalField::BillingAddress, &order.line.billing_address),
        "Asdfghjkl Court 3"
    );
    assert_eq!(
        open(PersonalField::PaymentMethod, &order.line.payment_method),
        "Yxcvbnm Card"
    );
}

#[tokio::test]
async fn the_record_carries_its_type_schema_ids_and_the_callers_trace() {
    let app = spawn_app();
    let mut request = post_json("/orders", &order_body());
    request.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("header"),
    );
    let (status, body) = send(&app.router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let record = app
        .bus
        .consumer("test", &[TOPIC])
        .poll(1, Duration::from_secs(5))
        .await
        .expect("poll")
        .remove(0);
    let header = |name: &str| {
        String::from_utf8(h::find(&record.headers, name).expect(name).to_vec()).expect("utf8")
    };
    assert_eq!(header(h::MESSAGE_TYPE), "place_order");
    assert_eq!(header(h::SCHEMA_VERSION), "1");
    assert_eq!(
        header(h::COMMAND_ID),
        body["command_id"].as_str().expect("id")
    );
    let trace = TraceParent::parse(&header(h::TRACEPARENT)).expect("traceparent");
    assert_eq!(
        trace.trace_id_hex(),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace continues"
    );
    assert_ne!(
        hex_span(&trace),
        "00f067aa0ba902b7",
        "with the command's own span"
    );
}

fn hex_span(t: &TraceParent) -> String {
    t.span_id.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn every_invalid_field_is_listed_and_nothing_is_produced() {
    let app = spawn_app();
    let mut bad = order_body();
    bad["quantity"] = json!(-1);
    bad["currency"] = json!("XXXX");
    bad["created_at"] = json!("yesterday");
    let (status, body) = send(&app.router, post_json("/orders", &bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "validation_failed");
    let mut fields: Vec<_> = body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().unwrap_or(""))
        .collect();
    fields.sort();
    assert_eq!(fields, vec!["created_at", "currency", "quantity"]);
    assert_eq!(app.produced().await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_malformed_json_error() {
    let app = spawn_app();
    let (status, body) = send(
        &app.router,
        post("/orders", Some("application/json"), "{\"order_id\": "),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed_json");
    assert_eq!(app.produced().await, 0);
}

#[tokio::test]
async fn a_wrong_or_missing_content_type_is_415() {
    let app = spawn_app();
    for ct in [Some("text/plain"), None] {
        let (status, body) = send(&app.router, post("/orders", ct, order_body().to_string())).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(body["error"], "unsupported_media_type");
    }
    let (status, _) = send(
        &app.router,
        post(
            "/orders",
            Some("application/json; charset=utf-8"),
            order_body().to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_nothing_is_produced() {
    let app = spawn_app();
    let mut big = order_body();
    big["product_info"] = json!("x".repeat(5000));
    let (status, body) = send(&app.router, post_json("/orders", &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "payload_too_large");
    // Without a Content-Length the limit is enforced while streaming.
    let stream = chunked(big.to_string());
    let (status, _) = send(
        &app.router,
        post("/orders", Some("application/json"), stream),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.produced().await, 0);
}

/// The body in 512-byte chunks, with no Content-Length.
fn chunked(text: String) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text
        .into_bytes()
        .chunks(512)
        .map(|c| Ok(c.to_vec()))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn a_retried_post_maps_onto_the_same_command() {
    let app = spawn_app();
    let with_key = |key: &str| {
        Request::post("/orders")
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(order_body().to_string()))
            .expect("request")
    };
    let (_, first) = send(&app.router, with_key("retry-1")).await;
    let (_, second) = send(&app.router, with_key("retry-1")).await;
    let (_, other) = send(&app.router, with_key("retry-2")).await;
    assert_eq!(first["command_id"], second["command_id"]);
    assert_eq!(first["consistency_token"], second["consistency_token"]);
    assert_ne!(first["command_id"], other["command_id"]);
    let (_, no_key_1) = send(&app.router, post_json("/orders", &order_body())).await;
    let (_, no_key_2) = send(&app.router, post_json("/orders", &order_body())).await;
    assert_eq!(
        no_key_1["command_id"], no_key_2["command_id"],
        "the order id is the default key"
    );
}

#[tokio::test]
async fn an_unusable_idempotency_key_is_rejected() {
    let app = spawn_app();
    let request = Request::post("/orders")
        .header("content-type", "application/json")
        .header("idempotency-key", "x".repeat(300))
        .body(Body::from(order_body().to_string()))
        .expect("request");
    let (status, body) = send(&app.router, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_idempotency_key");
}

#[tokio::test]
async fn a_cancel_is_accepted_for_a_uuid_path_and_a_cart_id() {
    let app = spawn_app();
    let order_id = order_body()["order_id"].as_str().expect("id").to_owned();
    let uri = format!("/orders/{order_id}/cancel");
    let (status, body) = send(
        &app.router,
        post_json(
            &uri,
            &json!({"cart_id": order_body()["cart_id"], "reason": "duplicate"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["order_id"], order_id.as_str());

    let (status, body) = send(
        &app.router,
        post_json(
            "/orders/not-a-uuid/cancel",
            &json!({"cart_id": order_body()["cart_id"]}),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path"))
    );

    let (status, body) = send(&app.router, post_json(&uri, &json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["fields"][0]["field"], "cart_id");
}

/// A bus that takes the first record and loses its acknowledgement (the
/// broker died before it answered), then answers normally.
struct LostAnswerBus {
    inner: EmbeddedBus,
    answered_once: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Producer for LostAnswerBus {
    async fn send(&self, record: OutboundRecord) -> Result<Delivery, BackendError> {
        let delivery = self.inner.send(record).await?;
        if self
            .answered_once
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            Ok(delivery)
        } else {
            Err(BackendError::new(
                "test bus",
                "no acknowledgement from 10.0.0.1:9092 within the delivery timeout",
            ))
        }
    }
}

#[tokio::test]
async fn a_lost_acknowledgement_is_503_unconfirmed_and_the_retry_is_the_same_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open(&dir.path().join("bus.sqlite"), 4).expect("bus");
    let router = router(CommandState {
        producer: Arc::new(LostAnswerBus {
            inner: bus.clone(),
            answered_once: Default::default(),
        }),
        clock: Arc::new(SystemClock),
        topic: TOPIC.into(),
        max_body_bytes: 4096,
        auth: None,
        keys: Arc::new(EmbeddedKeyStore::open(&dir.path().join("keys.sqlite")).expect("keys")),
        read_store: Arc::new(
            EmbeddedReadStore::open(&dir.path().join("read.sqlite")).expect("read store"),
        ),
    });
    let (status, headers, refused) =
        send_with_headers(&router, post_json("/orders", &order_body())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(refused["error"], "unconfirmed", "{refused}");
    let message = refused["message"].as_str().expect("message");
    assert!(
        !message.contains("10.0.0.1"),
        "no backend detail: {message}"
    );
    assert!(message.contains("send the same request again"), "{message}");

    // The client does as told: the same request is the same command, and
    // its id is the one the refusal named.
    let (status, accepted) = send(&router, post_json("/orders", &order_body())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let command_id = accepted["command_id"].as_str().expect("command_id");
    assert!(message.contains(command_id), "{message} vs {accepted}");
    // Both landed on the bus under that one id: the domain applies it once
    // (`a_repeated_command_reports_the_version_its_event_reached` in the
    // domain's tests).
    let records = bus
        .consumer("test", &[TOPIC])
        .poll(10, Duration::from_secs(5))
        .await
        .expect("poll");
    let ids: Vec<_> = records
        .iter()
        .map(|r| {
            let value = r.value.as_deref().expect("value");
            CommandRecord::decode(value)
                .expect("command")
                .command_id
                .to_string()
        })
        .collect();
    assert_eq!(ids, [command_id, command_id]);
}
