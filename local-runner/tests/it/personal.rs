//! Personal data through the runner on its embedded stores: sealed where it
//! enters, so no file of the data directory ever holds it readable; opened
//! in every answer; erased on request for one user (their key gone from
//! every byte of its file), the others intact and the sales report exact
//! to the cent.

use super::{new_ids, spawn_app};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use salestrack_core::personal::ERASED;
use salestrack_core::testing::order_body_for;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every file of `dir` (databases, write-ahead logs) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// An order of `user` with addresses and a payment method no other test
/// writes, each containing `mark`.
fn order_of(user: &str, mark: &str, product: &str, subtotal: &str) -> (Value, String) {
    let (cart, order) = new_ids();
    let mut body = order_body_for(cart, order, product);
    body["user_id"] = json!(user);
    body["shipping_address"] = json!(format!("{mark} Shipping Street 1"));
    body["billing_address"] = json!(format!("{mark} Billing Road 2"));
    body["payment_method"] = json!(format!("{mark}Pay"));
    body["quantity"] = json!(1);
    body["amount"] = json!(subtotal);
    body["discounts"] = json!("0");
    body["subtotal"] = json!(subtotal);
    (body, cart.to_string())
}

/// Revenue and tax per currency, to the cent, of a report's buckets.
fn totals(report: &Value) -> BTreeMap<String, (Decimal, Decimal, u64)> {
    let mut sums: BTreeMap<String, (Decimal, Decimal, u64)> = BTreeMap::new();
    for bucket in report["buckets"].as_array().expect("buckets") {
        let sum = sums
            .entry(bucket["currency"].as_str().expect("currency").to_owned())
            .or_default();
        sum.0 += bucket["revenue"]
            .as_str()
            .expect("revenue")
            .parse::<Decimal>()
            .expect("d");
        sum.1 += bucket["tax"]
            .as_str()
            .expect("tax")
            .parse::<Decimal>()
            .expect("d");
        sum.2 += bucket["units"].as_u64().expect("units");
    }
    sums
}

async fn visible(app: &super::TestApp, cart: &str, lines: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, detail) = app.get(&format!("/carts/{cart}")).await;
        if status == StatusCode::OK && detail["items"].as_array().map(Vec::len) == Some(lines) {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "cart {cart} never showed {lines} lines: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_erased_users_personal_data_is_on_no_byte_and_the_report_stays_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let (erased, _) = order_of("erased-user", "Quokkaerased", "Kettle", "30.10");
    let (erased_too, _) = order_of("erased-user", "Quokkaerased", "Toaster", "12.34");
    let (kept, kept_cart) = order_of("kept-user", "Wombatkept", "Grinder", "55.55");
    let erased_cart = erased["cart_id"].as_str().expect("cart").to_owned();
    // The second order goes into the first's cart.
    let mut erased_too = erased_too;
    erased_too["cart_id"] = json!(erased_cart);
    for body in [&erased, &erased_too, &kept] {
        let (status, answer) = app.post("/orders", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let before = visible(&app, &erased_cart, 2).await;
    visible(&app, &kept_cart, 1).await;
    assert_eq!(
        before["shipping_address"], "Quokkaerased Shipping Street 1",
        "opened for its reader: {before}"
    );
    // A checkout naming another payment method: sealed under the cart's key.
    let (status, answer) = app
        .post(
            &format!("/carts/{erased_cart}/checkout"),
            &json!({"payment_method": "QuokkaerasedOverride"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.get(&format!("/carts/{erased_cart}")).await.1["status"] == "open" {
        assert!(Instant::now() < deadline, "the checkout never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, report_before) = app.get("/reports/sales?group_by=payment_method").await;
    let methods: Vec<&str> = report_before["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["key"].as_str())
        .collect();
    assert!(
        methods.contains(&"QuokkaerasedPay") && methods.contains(&"WombatkeptPay"),
        "the report groups by the methods in the clear: {report_before}"
    );

    // Sealed from the start: no file ever held a personal field readable.
    let key = app
        .backends
        .key_store()
        .expect("keys")
        .sealing_key("erased-user")
        .await
        .expect("the user's key");
    for mark in ["Quokkaerased", "Wombatkept"] {
        assert_eq!(
            files_holding(dir.path(), mark.as_bytes()),
            Vec::<String>::new()
        );
    }
    assert!(!files_holding(dir.path(), key.secret()).is_empty());

    let (status, erasure) = app.post("/users/erased-user/erase", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{erasure}");
    assert_eq!(erasure["carts"], 1, "{erasure}");
    assert_eq!(
        erasure["keys_destroyed"], 2,
        "the user's and the cart's: {erasure}"
    );
    let (_, again) = app.post("/users/erased-user/erase", &json!({})).await;
    assert_eq!(again["keys_destroyed"], 0, "idempotent: {again}");

    assert_eq!(
        files_holding(dir.path(), key.secret()),
        Vec::<String>::new()
    );
    let (_, after) = app.get(&format!("/carts/{erased_cart}")).await;
    for field in ["shipping_address", "billing_address", "payment_method"] {
        assert_eq!(after[field], ERASED, "{after}");
    }
    for item in after["items"].as_array().expect("items") {
        assert_eq!(item["payment_method"], ERASED, "{after}");
        assert_ne!(item["subtotal"], Value::Null, "sales facts stay: {after}");
    }
    for fact in ["subtotal", "tax_amount", "currency", "user_id"] {
        assert_eq!(after[fact], before[fact], "{fact}: {after}");
    }
    let (_, past) = app
        .get(&format!("/carts/{erased_cart}?as_of_version=1"))
        .await;
    assert_eq!(past["shipping_address"], ERASED, "{past}");
    assert_eq!(past["items"][0]["payment_method"], ERASED, "{past}");
    let (_, summary) = app.get(&format!("/carts/{erased_cart}/summary")).await;
    assert_eq!(summary["shipping_address"], ERASED, "{summary}");
    let (_, other) = app.get(&format!("/carts/{kept_cart}")).await;
    assert_eq!(
        other["billing_address"], "Wombatkept Billing Road 2",
        "another user's data intact: {other}"
    );

    let (_, report_after) = app.get("/reports/sales?group_by=payment_method").await;
    assert_eq!(
        totals(&report_after),
        totals(&report_before),
        "{report_after}"
    );
    let keys: Vec<&str> = report_after["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["key"].as_str())
        .collect();
    assert!(
        keys.contains(&ERASED) && !keys.iter().any(|k| k.contains("Quokka")),
        "{report_after}"
    );

    // After the erasure the user is a new relationship: a new key, readable.
    let (again_order, again_cart) = order_of("erased-user", "Quokkanew", "Mug", "3.00");
    let (status, _) = app.post("/orders", &again_order).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let detail = visible(&app, &again_cart, 1).await;
    assert_eq!(
        detail["items"][0]["payment_method"], "QuokkanewPay",
        "{detail}"
    );
    app.stop().await;
}

#[tokio::test]
async fn erasing_needs_a_user_id_orders_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let (status, answer) = app.post("/users/%01bad/erase", &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "control_character", "{answer}");
    let long = "u".repeat(salestrack_core::command::MAX_USER_ID + 1);
    let (status, answer) = app.post(&format!("/users/{long}/erase"), &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    app.stop().await;
}
