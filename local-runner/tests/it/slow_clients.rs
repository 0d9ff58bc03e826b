//! Clients that hold what they can: slow bodies, slow headers, reads that
//! wait for consistency tokens naming commands that never come, and a body
//! over the limit sent whole. Each is cut or answered within the runner's
//! bounds, and other clients keep being served (issue 29).

use crate::common;
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Waits until the cart is visible.
async fn visible(app: &common::Http, cart: CartId) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = app.get(&format!("/carts/{cart}")).await;
        if status == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cart {cart} never became visible"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A runner on embedded backends whose request budget is small enough for
/// a handful of hostile clients to fill.
async fn small_runner(dir: &std::path::Path) -> common::TestApp {
    use salestrack_platform::{Backends, Settings};
    let settings = {
        let base = common::embedded_settings(dir);
        Settings {
            http: salestrack_platform::HttpSettings {
                max_in_flight: 8,
                header_timeout_ms: 1_000,
                body_timeout_ms: 1_000,
                ..base.http
            },
            consistency: salestrack_platform::ConsistencySettings {
                wait_ms: 5_000,
                max_waiting: 4,
            },
            ..base
        }
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    common::spawn_with(settings, backends).await
}

/// What a raw connection saw: an answer's status line, or the server
/// closing it without one.
#[derive(Debug, PartialEq, Eq)]
enum Cut {
    Answered(String),
    Closed,
}

/// Opens a connection, sends `head`, then one byte of `trickle` every
/// 200 ms until the server answers or closes it (at most 20 s).
async fn trickle(addr: String, head: String, trickle: u8) -> (Cut, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(20) {
        tokio::select! {
            read = socket.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(2).any(|w| w == b"\r\n") {
                        break;
                    }
                }
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if socket.write_all(&[trickle]).await.is_err() {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let cut = match text.lines().next() {
        Some(line) if !line.is_empty() => Cut::Answered(line.to_owned()),
        _ => Cut::Closed,
    };
    (cut, started.elapsed())
}

/// Issue 29: 1,024 connections trickling a body made every API call `503`
/// (the in-flight slot was taken before the body was read, and nothing
/// timed a body or a request's headers out). Here 3 times the budget of
/// slow bodies and as many slow headers: each is cut after its timeout (a
/// body with `408`, headers by closing), and a normal client is served all
/// along.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_bodies_and_headers_are_cut_and_other_clients_keep_being_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = small_runner(dir.path()).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let body_head = "POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{";
    let header_head = "GET /carts HTTP/1.1\r\nHost: test\r\nX-Slow: ";
    let mut slow = Vec::new();
    for _ in 0..24 {
        slow.push(tokio::spawn(trickle(addr.clone(), body_head.into(), b' ')));
        slow.push(tokio::spawn(trickle(
            addr.clone(),
            header_head.into(),
            b'a',
        )));
    }
    // Served while they trickle: reads and writes, none shed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut answers = Vec::new();
    for i in 0..10 {
        let (status, _) = app.get("/carts").await;
        answers.push(status);
        let cart = CartId(Uuid::new_v4());
        let (status, body) = app
            .post(
                "/orders",
                &order_body_for(cart, OrderId(Uuid::new_v4()), &format!("Line {i}")),
            )
            .await;
        answers.push(status);
        assert_ne!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    assert!(
        answers
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::ACCEPTED),
        "{answers:?}"
    );
    let mut cuts = Vec::new();
    for task in slow {
        cuts.push(task.await.expect("trickle"));
    }
    let (bodies, headers): (Vec<_>, Vec<_>) =
        cuts.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, (cut, after)) in &bodies {
        assert_eq!(
            cut,
            &Cut::Answered("HTTP/1.1 408 Request Timeout".into()),
            "a slow body, after {after:?}"
        );
    }
    for (_, (cut, after)) in &headers {
        assert!(
            matches!(cut, Cut::Closed)
                || matches!(cut, Cut::Answered(line) if line.contains(" 408 ")),
            "slow headers, after {after:?}: {cut:?}"
        );
    }
    // Cut, not left to the client: well before the 20 s it would go on.
    let longest = cuts.iter().map(|(_, after)| *after).max().expect("cuts");
    assert!(
        longest < Duration::from_secs(15),
        "a slow client held on {longest:?}"
    );
    app.stop().await;
}

/// Issue 29: reads with consistency tokens naming commands that never come
/// each waited the whole wait holding a request slot; some 200 a second
/// made every API call `503`. Now at most `SALESTRACK_CONSISTENCY_MAX_WAITING`
/// reads wait; the others are answered at once, `Consistency: stale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_consistency_tokens_cannot_hold_every_request_slot() {
    use salestrack_core::ids::CommandId;
    use salestrack_core::token::ConsistencyToken;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = small_runner(dir.path()).await;
    let cart = CartId(Uuid::new_v4());
    let (status, body) = app
        .post(
            "/orders",
            &order_body_for(cart, OrderId(Uuid::new_v4()), "Real"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    visible(&app, cart).await;

    let forged: Vec<_> = (0..24)
        .map(|_| {
            let token = ConsistencyToken {
                command_id: CommandId(Uuid::new_v4()),
                cart_id: cart,
            }
            .encode();
            let (client, url) = (
                app.client.clone(),
                app.url(&format!("/carts/{cart}?consistency_token={token}")),
            );
            tokio::spawn(async move {
                let response = client.get(url).send().await.expect("get");
                let consistency = response
                    .headers()
                    .get("consistency")
                    .and_then(|c| c.to_str().ok())
                    .map(str::to_owned);
                (response.status(), consistency)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut answers = Vec::new();
    for _ in 0..10 {
        let (status, _) = app.get(&format!("/carts/{cart}")).await;
        answers.push(status);
    }
    assert!(answers.iter().all(|s| *s == StatusCode::OK), "{answers:?}");
    // Those that arrived together with more than the budget were shed (they
    // were 24 at once against 8 slots); the rest are stale, none fresh.
    let mut stale = 0;
    for read in forged {
        match read.await.expect("read") {
            (StatusCode::OK, consistency) => {
                assert_eq!(consistency.as_deref(), Some("stale"));
                stale += 1;
            }
            (status, _) => assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE),
        }
    }
    assert!(stale >= 8, "{stale} forged reads answered");
    app.stop().await;
}

/// Issue 29: a body over the limit was answered `413` and the connection
/// closed while the client was still sending, so clients that write the
/// whole body before they read (Python's urllib, `requests`) saw a broken
/// pipe instead. Now the server reads on, discarding, up to 8 MiB past the
/// limit, then answers: the client that wrote it all reads the `413`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_read_and_answered_413_not_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let app = small_runner(dir.path()).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // 64 times the default limit of 64 KiB: more than loopback buffers hold.
    let body = vec![b' '; 4 * 1024 * 1024];
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    socket
        .write_all(&body)
        .await
        .expect("the whole body is taken");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    app.stop().await;
}
