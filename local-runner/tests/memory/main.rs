//! What one request may cost in memory, measured by this test binary's
//! allocator: the runner serves in-process, so every byte it holds is
//! counted. The tests take turns (one binary, one counter).

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/sse.rs"]
mod sse;

use common::{embedded_settings, spawn_with};
use peak_alloc::PeakAlloc;
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use serde_json::{json, Value};
use sse::Stream;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The system allocator, counting the bytes held now and at most.
#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Events' worth of memory a stream may hold beyond its buffer, server and
/// client together.
const PER_STREAM: usize = 28;

/// Lines of the long-history cart, all but one cancelled afterwards.
const LINES: usize = 200;

/// Streams that resume the whole history at once.
const RESUMES: usize = 4;

/// The live streams' `SALESTRACK_LIVE_BUFFER` in this test.
const BUFFER: usize = 4;

/// The issue-29 cart: long lines, nearly all cancelled, so that its history
/// (399 versions) is long and each version's detail is large (some 160 KB
/// of JSON at the end). Four clients resume it from version 1 at once.
/// Before, a resume folded every missed version into a vector of whole
/// details before it sent the first: its memory grew with the history
/// (tried on a release runner: 61 MiB to 5,791 MiB for 1,999 versions).
/// Now it holds one detail and the stream's buffer, whatever the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_resume_holds_a_few_details_whatever_the_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = {
        let base = embedded_settings(dir.path());
        Settings {
            live: salestrack_platform::LiveSettings {
                buffer: BUFFER,
                ..base.live
            },
            ..base
        }
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends).await;
    let cart = CartId(Uuid::new_v4());
    let mut orders = Vec::new();
    for i in 0..LINES {
        let order = OrderId(Uuid::new_v4());
        // The longest texts a line of the detail carries.
        let name = format!("Line {i} {}", "n".repeat(240));
        let mut body = order_body_for(cart, order, &name);
        body["seller_info"] = Value::from("s".repeat(256));
        let (status, answer) = app.post("/orders", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        orders.push(order);
    }
    let mut last = Value::Null;
    for order in &orders[1..] {
        let (status, answer) = app
            .post(
                &format!("/orders/{order}/cancel"),
                &json!({"cart_id": cart, "reason": "changed my mind"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        last = answer;
    }
    let token = last["consistency_token"].as_str().expect("token");
    let (status, detail) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let head = detail["version"].as_u64().expect("version");
    assert_eq!(head, u64::try_from(2 * LINES - 1).expect("small"));
    // The projector has caught up: what it holds now stays put.
    tokio::time::sleep(Duration::from_millis(500)).await;

    ALLOCATOR.reset_peak_usage();
    let before = ALLOCATOR.current_usage();
    let started = Instant::now();
    let resumes = (0..RESUMES).map(|_| {
        let app = &app;
        async move {
            let mut stream = Stream::open(app, cart, Some(1)).await.expect("a stream");
            let mut largest = 0;
            for version in 2..=head {
                let event = stream.next_cart(Duration::from_secs(60)).await;
                assert_eq!(event.version(), version, "in order, none skipped");
                largest = largest.max(event.data.len());
            }
            largest
        }
    });
    let largest = futures::future::join_all(resumes)
        .await
        .into_iter()
        .max()
        .expect("resumes");
    let grew = ALLOCATOR.peak_usage().saturating_sub(before);
    // Per stream, a number of events that does not depend on the history:
    // the channel's buffer, the one being serialized, hyper's write buffer
    // (up to some 400 KB), the details held (read, folded, kept) and their
    // page of events; and on the client's side its read buffer, chunk and
    // event. Measured: about 20 events' worth (old code: the whole history,
    // here 398 details).
    let bound = RESUMES * (BUFFER + PER_STREAM) * largest;
    eprintln!(
        "{RESUMES} resumes of {head} versions in {:.1} s: held at most {:.1} MiB more; \
         the largest event {:.0} KiB, the bound {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mebibytes(grew),
        kibibytes(largest),
        mebibytes(bound),
    );
    assert!(
        grew < bound,
        "a resume held {:.1} MiB, more than {RESUMES} x ({BUFFER} buffered + {PER_STREAM}) events of {:.0} KiB",
        mebibytes(grew),
        kibibytes(largest)
    );
    app.stop().await;
}

#[allow(clippy::cast_precision_loss)]
fn mebibytes(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[allow(clippy::cast_precision_loss)]
fn kibibytes(bytes: usize) -> f64 {
    bytes as f64 / 1024.0
}
