//! Consumer lanes: each hosted function runs several loops side by side,
//! each with its own partitions and its own batch in flight; a cart's
//! commands still go through one lane, in the order they were accepted.

use crate::common::{embedded_settings, spawn_with};
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lanes_side_by_side_keep_every_carts_commands_in_the_order_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        consumer_lanes: 4,
        partitions: 8,
        ..embedded_settings(dir.path())
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    let events = backends.event_store().expect("event store");
    let app = spawn_with(settings, backends).await;

    let (_, ready) = app.get("/health/ready").await;
    for (consumer, partitions) in [("domain_consumer", 8), ("projector_consumer", 16)] {
        assert_eq!(ready[consumer]["lanes"], 4, "{ready}");
        assert_eq!(ready[consumer]["partitions"], partitions, "{ready}");
    }

    // 32 carts, 12 lines each: each cart's lines posted one after the
    // other (each 202 before the next), the carts all at once.
    let carts: Vec<(CartId, Vec<OrderId>)> = (0..32)
        .map(|_| {
            let orders = (0..12).map(|_| OrderId(Uuid::new_v4())).collect();
            (CartId(Uuid::new_v4()), orders)
        })
        .collect();
    let posts = carts.iter().map(|(cart, orders)| {
        let http = &app.http;
        async move {
            for (n, order) in orders.iter().enumerate() {
                let body = order_body_for(*cart, *order, &format!("Item {n}"));
                let (status, answer) = http.post("/orders", &body).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            }
        }
    });
    futures::future::join_all(posts).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    for (cart, orders) in &carts {
        let stream = loop {
            let stream = events.read_stream(*cart).await.expect("stream");
            if stream.len() >= orders.len() || Instant::now() > deadline {
                break stream;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stored: Vec<(u64, Option<OrderId>)> = stream
            .iter()
            .map(|e| (e.version, e.event.order_id()))
            .collect();
        let accepted: Vec<(u64, Option<OrderId>)> =
            (1..).zip(orders.iter().map(|o| Some(*o))).collect();
        assert_eq!(stored, accepted, "cart {cart}: stored out of order");
        let (_, detail) = app.get(&format!("/carts/{cart}")).await;
        let wait = Instant::now() + Duration::from_secs(30);
        let mut detail = detail;
        while detail["items"].as_array().map_or(0, Vec::len) < orders.len() && Instant::now() < wait
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            detail = app.get(&format!("/carts/{cart}")).await.1;
        }
        assert_eq!(detail["version"], orders.len(), "cart {cart}: {detail}");
    }
    let (_, ready) = app.get("/health/ready").await;
    assert_eq!(ready["domain_consumer"]["records"], 32 * 12, "{ready}");
    app.stop().await;
}
