//! The dead-letter topic listed and redriven through the runner's admin
//! API, end to end on the embedded stores.

use super::{new_ids, settings};
use common::spawn_with;
use reqwest::StatusCode;
use salestrack_core::ports::OutboundRecord;
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

use super::common;

/// Waits (bounded) until the dead-letter topic lists `n` letters.
async fn letters(app: &common::Http, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, listing) = app.get("/admin/dead-letters").await;
        assert_eq!(status, StatusCode::OK, "{listing}");
        let letters = listing["dead_letters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if letters.len() >= n {
            assert_eq!(letters.len(), n, "{listing}");
            return letters;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {n} letters: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A valid command the domain never applied, because it was dead-lettered
/// (here by the test, as a consumer of an earlier build would have done
/// with a record it could not read), and a real poison record. The letter
/// is listed with its consumer, source and cart; redriven, its command is
/// applied once and visible once; redriven again, nothing changes; the
/// poison, redriven, is dead-lettered again and says where it came from.
#[tokio::test]
async fn a_dead_lettered_command_redriven_is_applied_once_and_visible_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cart, order) = new_ids();

    // 1. An HTTP-only runner accepts the order: it waits on the bus.
    let http_only = Settings {
        consumers: "none".into(),
        ..settings(dir.path().into())
    };
    let backends = Backends::connect(&http_only).await.expect("backends");
    let app = spawn_with(http_only.clone(), backends.clone()).await;
    let (status, accepted) = app
        .post("/orders", &order_body_for(cart, order, "Redriven kettle"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let status_url = accepted["status_url"].as_str().expect("url").to_owned();
    app.stop().await;

    // 2. The domain's group moves past it, and its letter is written, as
    //    the consumer does with poison.
    let mut domain = backends
        .consumer(&http_only.domain_group, &[&http_only.topics.commands])
        .expect("consumer");
    let records = domain.poll(10, Duration::from_secs(5)).await.expect("poll");
    assert_eq!(records.len(), 1);
    let batch = salestrack_msk::batch(&records, "arn", "embedded");
    let record = batch.records.values().flatten().next().expect("a record");
    let producer = backends.producer().expect("bus");
    producer
        .send(salestrack_msk::dead_letter(
            record,
            &http_only.topics.dead_letter,
            "domain",
            &"dead-lettered by the test",
        ))
        .await
        .expect("letter");
    domain.commit(&records).await.expect("commit");
    // And a real poison record on the same cart's partition.
    producer
        .send(OutboundRecord {
            topic: http_only.topics.commands.clone(),
            key: cart.to_string().into_bytes(),
            value: b"\x00garbage{".to_vec(),
            headers: vec![],
        })
        .await
        .expect("send garbage");
    drop(domain);

    // 3. The full runner: the poison is dead-lettered, the order is not applied.
    let full = settings(dir.path().into());
    let app = spawn_with(full.clone(), backends.clone()).await;
    let listed = letters(&app, 2).await;
    let (status, _) = app.get(&status_url).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the order was never decided");
    let test_letter = listed
        .iter()
        .find(|l| l["error"] == "dead-lettered by the test")
        .expect("the test's letter");
    assert_eq!(test_letter["consumer"], "domain");
    assert_eq!(test_letter["source_topic"], "sales.commands");
    assert_eq!(test_letter["cart"], cart.to_string());
    assert!(test_letter["age_s"].as_i64().is_some());
    let poison = listed
        .iter()
        .find(|l| l["error"] != "dead-lettered by the test")
        .expect("the poison");
    assert!(
        poison["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{poison}"
    );

    // 4. Redriven: applied once, visible once.
    let (status, answer) = app
        .post(
            "/admin/dead-letters/redrive",
            &json!({"ids": [test_letter["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["redriven"][0]["topic"], "sales.commands");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let command = loop {
        let (status, command) = app.get(&status_url).await;
        if status == StatusCode::OK {
            break command;
        }
        assert!(std::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(command["status"], "applied", "{command}");
    let (_, detail) = app.get(&format!("/carts/{cart}")).await;
    assert_eq!(
        detail["items"].as_array().map(Vec::len),
        Some(1),
        "{detail}"
    );
    assert_eq!(detail["items"][0]["order_id"], order.to_string());

    // 5. Redriven again, with the poison: the order is a repeat; the poison
    //    comes back as a third letter saying where it was redriven from.
    let (status, answer) = app
        .post(
            "/admin/dead-letters/redrive",
            &json!({"consumer": "domain"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["redriven"].as_array().map(Vec::len), Some(2));
    let listed = letters(&app, 3).await;
    let again = listed
        .iter()
        .find(|l| l["redriven_from"].is_string())
        .expect("the poison, dead-lettered again");
    assert_eq!(again["redriven_from"], poison["id"]);
    // A marker order after the redriven ones on the same cart: once it is
    // visible, the redriven repeat has been handled too (same partition).
    let (_, marker) = app
        .post(
            "/orders",
            &order_body_for(
                cart,
                salestrack_core::ids::OrderId(Uuid::new_v4()),
                "Marker",
            ),
        )
        .await;
    let token = marker["consistency_token"].as_str().expect("token");
    let (_, detail) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(
        detail["items"].as_array().map(Vec::len),
        Some(2),
        "{detail}"
    );
    assert_eq!(detail["version"], 2, "the repeat wrote nothing: {detail}");

    // 6. Bad choices are refused, saying why.
    let (status, body) = app
        .post(
            "/admin/dead-letters/redrive",
            &json!({"ids": ["sales.dead-letter/0/999"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.post("/admin/dead-letters/redrive", &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .post("/admin/dead-letters/redrive", &json!({"every": true}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    app.stop().await;
}
