//! Hostile strings and numbers through the HTTP API of a runner on
//! embedded backends. Each gets a specific 4xx or a correct result, and a
//! refused request leaves nothing behind: no command, no cart.
//!
//! Text limits count characters (Unicode scalar values), not bytes, and a
//! 4-byte character counts once; the stores hold the longest text allowed
//! (256 4-byte characters are 1 KiB, far below Lucene's 32 KiB term).

#[path = "../common/mod.rs"]
mod common;

use common::Http;
use reqwest::StatusCode;
use salestrack_core::command::{MAX_PRODUCT_NAME, MAX_QUANTITY};
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn body(cart: CartId) -> Value {
    order_body_for(cart, OrderId(Uuid::new_v4()), "Espresso machine")
}

async fn post_raw(app: &Http, raw: Vec<u8>) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/orders"))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .expect("post");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `(field, code)` of the first field error, or `("", error)`.
fn refusal(answer: &Value) -> (String, String) {
    match answer["fields"].get(0) {
        Some(field) => (
            field["field"].as_str().unwrap_or_default().to_owned(),
            field["code"].as_str().unwrap_or_default().to_owned(),
        ),
        None => (
            String::new(),
            answer["error"].as_str().unwrap_or_default().to_owned(),
        ),
    }
}

/// Waits until the cart is visible and answers its detail.
async fn visible(app: &Http, cart: CartId) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, detail) = app.get(&format!("/carts/{cart}")).await;
        if status == StatusCode::OK {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "cart {cart} never became visible"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn hostile_input_gets_a_specific_answer_and_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = common::spawn_embedded(dir.path()).await;
    let mut refused_carts = Vec::new();

    // Refused, each for its own reason: (what, body, status, field, code).
    let mut cases: Vec<(&str, Vec<u8>, StatusCode, &str, &str)> = Vec::new();
    let cart = CartId(Uuid::new_v4());
    let mut nul = body(cart);
    nul["product_name"] = json!("Esp\u{0}resso");
    cases.push((
        "NUL",
        nul.to_string().into_bytes(),
        StatusCode::BAD_REQUEST,
        "product_name",
        "control_character",
    ));
    let cart = CartId(Uuid::new_v4());
    let surrogate = body(cart)
        .to_string()
        .replace("Espresso machine", "Esp\\ud800resso");
    cases.push((
        "a lone surrogate escape",
        surrogate.into_bytes(),
        StatusCode::BAD_REQUEST,
        "",
        "malformed_json",
    ));
    let cart = CartId(Uuid::new_v4());
    let mut long = body(cart);
    long["product_name"] = json!("\u{1F600}".repeat(MAX_PRODUCT_NAME + 1));
    cases.push((
        "257 4-byte characters",
        long.to_string().into_bytes(),
        StatusCode::BAD_REQUEST,
        "product_name",
        "too_long",
    ));
    let cart = CartId(Uuid::new_v4());
    let duplicate =
        body(cart)
            .to_string()
            .replacen("\"quantity\":2", "\"quantity\":2,\"quantity\":3", 1);
    assert!(duplicate.contains("\"quantity\":3"), "{duplicate}");
    cases.push((
        "a duplicate key",
        duplicate.into_bytes(),
        StatusCode::BAD_REQUEST,
        "",
        "malformed_json",
    ));
    let cart = CartId(Uuid::new_v4());
    let huge = body(cart).to_string().replace("\"199.99\"", "1e400");
    cases.push((
        "money as 1e400",
        huge.into_bytes(),
        StatusCode::BAD_REQUEST,
        "amount",
        "invalid_decimal",
    ));
    let cart = CartId(Uuid::new_v4());
    let mut precise = body(cart);
    precise["amount"] = json!("0.00001");
    cases.push((
        "money as 0.00001",
        precise.to_string().into_bytes(),
        StatusCode::BAD_REQUEST,
        "amount",
        "too_precise",
    ));
    let cart = CartId(Uuid::new_v4());
    let mut beyond = body(cart);
    beyond["quantity"] = json!(u64::from(MAX_QUANTITY) + 1);
    cases.push((
        "a quantity beyond i32",
        beyond.to_string().into_bytes(),
        StatusCode::BAD_REQUEST,
        "quantity",
        "out_of_range",
    ));
    let cart = CartId(Uuid::new_v4());
    let float = body(cart)
        .to_string()
        .replace("\"quantity\":2", "\"quantity\":1e30");
    cases.push((
        "a quantity of 1e30 (an integer to JSON Schema, out of range)",
        float.into_bytes(),
        StatusCode::BAD_REQUEST,
        "quantity",
        "out_of_range",
    ));
    let cart = CartId(Uuid::new_v4());
    let fraction = body(cart)
        .to_string()
        .replace("\"quantity\":2", "\"quantity\":2.5");
    cases.push((
        "a quantity of 2.5",
        fraction.into_bytes(),
        StatusCode::BAD_REQUEST,
        "quantity",
        "wrong_type",
    ));
    let cart = CartId(Uuid::new_v4());
    let mut signed = body(cart);
    signed["amount"] = json!("-0");
    cases.push((
        "money as the string \"-0\" (strings are unsigned decimals)",
        signed.to_string().into_bytes(),
        StatusCode::BAD_REQUEST,
        "amount",
        "must_not_be_negative",
    ));
    let cart = CartId(Uuid::new_v4());
    let mut negative = body(cart);
    negative["amount"] = json!("-0.01");
    cases.push((
        "a negative amount",
        negative.to_string().into_bytes(),
        StatusCode::BAD_REQUEST,
        "amount",
        "must_not_be_negative",
    ));
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    cases.push((
        "JSON nested 30,000 deep",
        nested.into_bytes(),
        StatusCode::BAD_REQUEST,
        "",
        "malformed_json",
    ));
    let cart = CartId(Uuid::new_v4());
    let mut whitespace = vec![b' '; 10 * 1024 * 1024];
    whitespace.extend(body(cart).to_string().into_bytes());
    cases.push((
        "10 MiB of whitespace",
        whitespace,
        StatusCode::PAYLOAD_TOO_LARGE,
        "",
        "payload_too_large",
    ));
    for (what, raw, status, field, code) in cases {
        let cart = std::str::from_utf8(&raw).ok().and_then(|t| {
            t.find("\"cart_id\":\"")
                .map(|i| t[i + 11..i + 47].to_owned())
        });
        let (got, answer) = post_raw(&app, raw).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(
            refusal(&answer),
            (field.to_owned(), code.to_owned()),
            "{what}: {answer}"
        );
        refused_carts.extend(cart);
    }

    // Accepted, and stored as sent: (what, changes, what the detail shows).
    let mut accepted = Vec::new();
    let text_cases = [
        ("a right-to-left override", "\u{202e}enihcam osserpsE"),
        ("combining characters", "Espresso e\u{301}\u{301}\u{301}"),
        (
            "256 4-byte characters",
            &*"\u{1F600}".repeat(MAX_PRODUCT_NAME),
        ),
    ];
    for (what, name) in text_cases {
        let cart = CartId(Uuid::new_v4());
        let mut order = body(cart);
        order["product_name"] = json!(name);
        let (status, answer) = app.post("/orders", &order).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{what}: {answer}");
        accepted.push((what, cart, "product_name", json!(name)));
    }
    let cart = CartId(Uuid::new_v4());
    let mut most = body(cart);
    most["quantity"] = json!(MAX_QUANTITY);
    most["amount"] = json!("1");
    most["discounts"] = json!("0");
    most["subtotal"] = json!(MAX_QUANTITY.to_string());
    let (status, answer) = app.post("/orders", &most).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the largest quantity: {answer}"
    );
    accepted.push((
        "the largest quantity",
        cart,
        "quantity",
        json!(MAX_QUANTITY),
    ));
    let cart = CartId(Uuid::new_v4());
    let mut zero = body(cart);
    // The JSON number -0 is >= 0 (JSON Schema's `minimum: 0` agrees).
    zero["amount"] = serde_json::from_str("-0").expect("a JSON number");
    zero["discounts"] = json!("0");
    zero["subtotal"] = json!("0");
    let (status, answer) = app.post("/orders", &zero).await;
    assert_eq!(status, StatusCode::ACCEPTED, "-0: {answer}");
    accepted.push(("money as the number -0", cart, "amount", json!("0")));
    for (what, at, shown) in [
        ("year 9999", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        (
            "an offset of +05:45",
            "2026-11-20T10:15:00+05:45",
            "2026-11-20T04:30:00Z",
        ),
        (
            "an offset of -23:59",
            "2026-11-20T00:00:00-23:59",
            "2026-11-20T23:59:00Z",
        ),
    ] {
        let cart = CartId(Uuid::new_v4());
        let mut order = body(cart);
        order["created_at"] = json!(at);
        let (status, answer) = app.post("/orders", &order).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{what}: {answer}");
        accepted.push((what, cart, "created_at", json!(shown)));
    }
    for (what, cart, field, expected) in &accepted {
        let detail = visible(&app, *cart).await;
        assert_eq!(&detail["items"][0][field], expected, "{what}: {detail}");
    }
    // By now every accepted command is projected; a refused one would have
    // been too.
    for cart in &refused_carts {
        let (status, body) = app.get(&format!("/carts/{cart}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "refused cart {cart}: {body}");
    }
    assert!(refused_carts.len() >= 9, "{refused_carts:?}");
    let metrics = app.text("/metrics").await;
    let accepted_commands: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("salestrack_commands_accepted_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        accepted_commands,
        accepted.len() as f64,
        "only the accepted requests became commands"
    );
    app.stop().await;
}
