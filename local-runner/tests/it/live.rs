//! Live cart updates (`GET /carts/{id}/live`) through the runner, read by a
//! real HTTP client: every version in order while orders are posted, a
//! reconnect with `Last-Event-ID`, the stream limit, a client that stops
//! reading, shutdown and the stream lifetime; and two runners sharing one
//! Apache Kafka, where a stream on an HTTP-only runner follows what the
//! other runner projects.

use crate::common;
use crate::sse;

use common::{spawn_with, Http, TestApp};
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use serde_json::Value;
use sse::Stream;
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn spawn(settings: Settings) -> TestApp {
    let backends = Backends::connect(&settings).await.expect("backends");
    spawn_with(settings, backends).await
}

/// Posts one line to `cart` and answers its order id.
async fn post_line(app: &Http, cart: CartId, product: &str, info_len: usize) -> OrderId {
    let order = OrderId(Uuid::new_v4());
    let mut body = order_body_for(cart, order, product);
    if info_len > 0 {
        body["product_info"] = Value::from("i".repeat(info_len));
    }
    let (status, answer) = app.post("/orders", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    order
}

/// Posts a first line and waits until the cart is visible.
async fn new_cart(app: &Http) -> CartId {
    let cart = CartId(Uuid::new_v4());
    let order = OrderId(Uuid::new_v4());
    let (status, accepted) = app
        .post("/orders", &order_body_for(cart, order, "First"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let token = accepted["consistency_token"].as_str().expect("token");
    let (status, _) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    cart
}

/// Reads `stream` until `version`; asserts each event is the next version,
/// that its data is the cart at that version, and that a read made after
/// the event sees at least that version.
async fn read_until(app: &Http, stream: &mut Stream, mut after: u64, version: u64) {
    while after < version {
        let event = stream.next_cart(Duration::from_secs(30)).await;
        assert_eq!(
            event.version(),
            after + 1,
            "versions come in order, none skipped"
        );
        let detail = event.json();
        assert_eq!(detail["version"], event.version(), "{detail}");
        assert_eq!(
            detail["items"].as_array().map(Vec::len),
            Some(usize::try_from(event.version()).expect("small")),
            "one line per version: {detail}"
        );
        let cart = detail["cart_id"].as_str().expect("cart id");
        let (_, now) = app.get(&format!("/carts/{cart}")).await;
        assert!(
            now["version"].as_u64() >= Some(event.version()),
            "told of version {} but the read models hold {}",
            event.version(),
            now["version"]
        );
        after = event.version();
    }
}

async fn metric(app: &Http, line_start: &str) -> f64 {
    app.text("/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_subscriber_sees_every_version_in_order_and_a_reconnect_misses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn(common::embedded_settings(dir.path())).await;
    let cart = new_cart(&app).await;

    let mut stream = Stream::open(&app, cart, None).await.expect("a stream");
    let first = stream.next_cart(Duration::from_secs(10)).await;
    assert_eq!(
        first.version(),
        1,
        "a new subscriber gets the current state"
    );
    // Posted without waiting: the projector folds several versions per
    // batch, and the stream still sends each.
    for i in 2..=20 {
        post_line(&app, cart, &format!("Line {i}"), 0).await;
    }
    read_until(&app, &mut stream, 1, 20).await;

    // A second client goes away at version 20, lines are posted meanwhile,
    // and it comes back with the last id it got.
    drop(stream);
    for i in 21..=30 {
        post_line(&app, cart, &format!("Line {i}"), 0).await;
    }
    let mut resumed = Stream::open(&app, cart, Some(20)).await.expect("a stream");
    read_until(&app, &mut resumed, 20, 30).await;
    // Up to date: a resume at the head sends nothing until the next change.
    let mut at_head = Stream::open(&app, cart, Some(30)).await.expect("a stream");
    post_line(&app, cart, "Line 31", 0).await;
    read_until(&app, &mut at_head, 30, 31).await;
    read_until(&app, &mut resumed, 30, 31).await;

    let (status, body) = app.get(&format!("/carts/{}/live", Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let bad = app
        .client
        .get(app.url(&format!("/carts/{cart}/live")))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.expect("json");
    assert_eq!(body["error"], "invalid_last_event_id", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn({
        let base = common::embedded_settings(dir.path());
        Settings {
            live: salestrack_platform::LiveSettings {
                max_streams: 2,
                ..base.live
            },
            ..base
        }
    })
    .await;
    let cart = new_cart(&app).await;
    let one = Stream::open(&app, cart, None).await.expect("first stream");
    let _two = Stream::open(&app, cart, None).await.expect("second stream");
    let refused = Stream::open(&app, cart, None)
        .await
        .err()
        .expect("a third stream is refused");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"], "too_many_streams", "{body}");
    assert_eq!(
        metric(&app, "salestrack_live_refused_total ").await,
        1.0,
        "the refusal is counted"
    );
    // A slot frees when a client goes.
    drop(one);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = loop {
        match Stream::open(&app, cart, None).await {
            Ok(stream) => break stream,
            Err(r) => {
                assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert!(Instant::now() < deadline, "the slot never came back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(again.next_cart(Duration::from_secs(10)).await.version(), 1);
    // Other routes are not held back by the streams.
    let (status, _) = app.get(&format!("/carts/{cart}")).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// A client that stops reading fills its socket, then its stream's buffer:
/// the server drops it instead of holding more, and the client, reading at
/// last, finds the stream ended short of the cart's head.
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn({
        let base = common::embedded_settings(dir.path());
        Settings {
            live: salestrack_platform::LiveSettings {
                buffer: 2,
                slow_ms: 300,
                ..base.live
            },
            ..base
        }
    })
    .await;
    let cart = new_cart(&app).await;
    let addr: std::net::SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut slow = socket.connect(addr).await.expect("connect");
    slow.write_all(
        format!("GET /carts/{cart}/live HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("request");

    // Lines of 4 KiB: each version's event is bigger than the last. Bounded:
    // the socket buffers hold a few MiB at most.
    let slow_client = "salestrack_live_ended_total{reason=\"slow_client\"} ";
    let mut posted = 1;
    while metric(&app, slow_client).await < 1.0 {
        assert!(
            posted < 400,
            "{posted} versions and the client that reads nothing is still served"
        );
        post_line(&app, cart, &format!("Big {posted}"), 4000).await;
        posted += 1;
        if posted % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Reading at last: what was buffered, then the end of the stream.
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut received))
        .await
        .expect("the server ends the dropped stream")
        .expect("read");
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..200.min(text.len())]
    );
    let events = text.matches("\nid:").count();
    assert!(
        events > 0 && events < posted,
        "the dropped client got {events} of {posted} versions"
    );
    // The others are unaffected.
    let mut fresh = Stream::open(&app, cart, None).await.expect("a stream");
    assert!(fresh.next_cart(Duration::from_secs(10)).await.version() >= 1);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_and_the_lifetime_end_streams_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn({
        let base = common::embedded_settings(dir.path());
        Settings {
            live: salestrack_platform::LiveSettings {
                max_lifetime_s: 1,
                heartbeat_ms: 200,
                ..base.live
            },
            ..base
        }
    })
    .await;
    let cart = new_cart(&app).await;
    // The lifetime: an `end` event, then the stream closes; the client
    // resumes where it was.
    let mut stream = Stream::open(&app, cart, None).await.expect("a stream");
    assert_eq!(stream.next_cart(Duration::from_secs(10)).await.version(), 1);
    let end = stream
        .next(Duration::from_secs(10))
        .await
        .expect("an end event");
    assert_eq!(end.event, "end");
    assert_eq!(end.json()["reason"], "lifetime");
    assert!(stream.next(Duration::from_secs(10)).await.is_none());
    app.stop().await;

    // Shutdown: streams end at once and the runner stops.
    let app = spawn({
        let base = common::embedded_settings(dir.path());
        Settings {
            live: salestrack_platform::LiveSettings {
                heartbeat_ms: 200,
                ..base.live
            },
            ..base
        }
    })
    .await;
    let mut stream = Stream::open(&app, cart, Some(1)).await.expect("a stream");
    let mut raw = app
        .client
        .get(app.url(&format!("/carts/{cart}/live")))
        .header("last-event-id", "1")
        .send()
        .await
        .expect("get");
    // A heartbeat comment keeps an idle stream open.
    let chunk = tokio::time::timeout(Duration::from_secs(5), raw.chunk())
        .await
        .expect("a heartbeat within 5 s")
        .expect("read")
        .expect("bytes");
    assert!(
        chunk.starts_with(b":"),
        "{:?}",
        String::from_utf8_lossy(&chunk)
    );
    drop(raw);
    let stopped = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the runner stops while a stream is open");
    let end = stream
        .next(Duration::from_secs(5))
        .await
        .expect("an end event");
    assert_eq!(end.event, "end");
    assert_eq!(end.json()["reason"], "shutdown");
    assert!(stream.next(Duration::from_secs(5)).await.is_none());
    assert!(stopped.elapsed() < Duration::from_secs(20));
}

/// Two runners share one Apache Kafka and one set of stores: B hosts every
/// consumer loop, A none (HTTP only) and never looks at the read store by
/// itself. A subscriber on A sees each version B projects, through the
/// projection topic A follows.
#[tokio::test]
async fn a_subscriber_on_one_runner_sees_what_another_runner_projects() {
    let Some(broker) = common::broker(common::On::ApacheKafka) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = common::kafka_settings(&broker.brokers, dir.path());
    let backends = Backends::connect(&settings).await.expect("backends");
    let b = spawn_with(settings.clone(), backends.clone()).await;
    let a = spawn_with(
        Settings {
            consumers: "none".into(),
            live: salestrack_platform::LiveSettings {
                poll_ms: 600_000,
                ..settings.live
            },
            ..settings
        },
        backends,
    )
    .await;
    b.wait_until_ready().await;
    a.wait_until_ready().await;
    let (_, ready) = a.get("/health/ready").await;
    assert!(
        ready.get("projector_consumer").is_none(),
        "A hosts no loop: {ready}"
    );
    // Orders go in through A; B decides and projects them.
    let cart = new_cart(&a).await;
    let mut stream = Stream::open(&a, cart, None).await.expect("a stream on A");
    assert_eq!(stream.next_cart(Duration::from_secs(10)).await.version(), 1);
    // A's follower joins its own group and reads from the topic's end:
    // post until the first notice reaches it, then every version follows.
    let mut posted = 1;
    let first = loop {
        post_line(&a, cart, &format!("Line {}", posted + 1), 0).await;
        posted += 1;
        match tokio::time::timeout(Duration::from_secs(3), stream.next(Duration::from_secs(60)))
            .await
        {
            Ok(event) => break event.expect("the stream ended"),
            Err(_) => assert!(posted < 20, "A never heard of B's projections"),
        }
    };
    assert_eq!(first.version(), 2, "{first:?}");
    for i in posted + 1..=posted + 10 {
        post_line(&a, cart, &format!("Line {i}"), 0).await;
    }
    read_until(&a, &mut stream, 2, posted + 10).await;
    a.stop().await;
    b.stop().await;
}
