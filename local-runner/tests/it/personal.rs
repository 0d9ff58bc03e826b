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

/// The keys of a report's buckets (its payment methods, grouped by them).
fn bucket_keys(report: &Value) -> Vec<&str> {
    report["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["key"].as_str())
        .collect()
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

/// What [`place`] left for [`erase`] to check.
struct Placed {
    erased_cart: String,
    kept_cart: String,
    /// Before any erasure: the cart of the user to erase, and the report.
    before: Value,
    report: Value,
    /// The secret of the key the erased user's fields are sealed under.
    secret: Vec<u8>,
}

/// The distinctive text in every personal field of the two users.
const MARKS: [&str; 2] = ["Quokkaerased", "Wombatkept"];

/// Orders of two users (two lines in one cart for the one to erase, and a
/// checkout naming another payment method), visible and opened in the
/// answers, and the report grouped by payment method in the clear.
async fn place(app: &super::TestApp) -> Placed {
    let (erased, _) = order_of("erased-user", MARKS[0], "Kettle", "30.10");
    let (mut erased_too, _) = order_of("erased-user", MARKS[0], "Toaster", "12.34");
    let (kept, kept_cart) = order_of("kept-user", MARKS[1], "Grinder", "55.55");
    let erased_cart = erased["cart_id"].as_str().expect("cart").to_owned();
    erased_too["cart_id"] = json!(erased_cart);
    for body in [&erased, &erased_too, &kept] {
        let (status, answer) = app.post("/orders", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let before = visible(app, &erased_cart, 2).await;
    visible(app, &kept_cart, 1).await;
    assert_eq!(
        before["shipping_address"], "Quokkaerased Shipping Street 1",
        "opened for its reader: {before}"
    );
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
    let (_, report) = app.get("/reports/sales?group_by=payment_method").await;
    let methods = bucket_keys(&report);
    assert!(
        methods.contains(&"QuokkaerasedPay") && methods.contains(&"WombatkeptPay"),
        "the report groups by the methods in the clear: {report}"
    );
    let key = app
        .backends
        .key_store()
        .expect("keys")
        .sealing_key("erased-user")
        .await
        .expect("the user's key");
    Placed {
        erased_cart,
        kept_cart,
        before,
        report,
        secret: key.secret().to_vec(),
    }
}

/// Erases the first user, twice: their fields read `[erased]` in every
/// answer, the other user's do not, the report's figures are unchanged to
/// the cent, and a new order of the erased user is readable again.
async fn erase(app: &super::TestApp, placed: &Placed) {
    let (erased_cart, kept_cart, before) = (&placed.erased_cart, &placed.kept_cart, &placed.before);
    let (status, erasure) = app.post("/users/erased-user/erase", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{erasure}");
    assert_eq!(erasure["carts"], 1, "{erasure}");
    assert_eq!(
        erasure["keys_destroyed"], 2,
        "the user's and the cart's: {erasure}"
    );
    let (_, again) = app.post("/users/erased-user/erase", &json!({})).await;
    assert_eq!(again["keys_destroyed"], 0, "idempotent: {again}");

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

    let (_, report) = app.get("/reports/sales?group_by=payment_method").await;
    assert_eq!(totals(&report), totals(&placed.report), "{report}");
    let keys = bucket_keys(&report);
    assert!(
        keys.contains(&ERASED) && !keys.iter().any(|k| k.contains("Quokka")),
        "{report}"
    );

    // After the erasure the user is a new relationship: a new key, readable.
    let (again_order, again_cart) = order_of("erased-user", "Quokkanew", "Mug", "3.00");
    let (status, _) = app.post("/orders", &again_order).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let detail = visible(app, &again_cart, 1).await;
    assert_eq!(
        detail["items"][0]["payment_method"], "QuokkanewPay",
        "{detail}"
    );
}

#[tokio::test]
async fn an_erased_users_personal_data_is_on_no_byte_and_the_report_stays_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(dir.path().into()).await;
    let placed = place(&app).await;
    // Sealed from the start: no file ever held a personal field readable.
    for mark in MARKS {
        assert_eq!(
            files_holding(dir.path(), mark.as_bytes()),
            Vec::<String>::new()
        );
    }
    assert!(
        !files_holding(dir.path(), &placed.secret).is_empty(),
        "the search finds the key while it lives"
    );
    erase(&app, &placed).await;
    assert_eq!(
        files_holding(dir.path(), &placed.secret),
        Vec::<String>::new()
    );
    for mark in MARKS {
        assert_eq!(
            files_holding(dir.path(), mark.as_bytes()),
            Vec::<String>::new()
        );
    }
    app.stop().await;
}

/// The same on Apache Kafka 4, Apache Cassandra 5 and OpenSearch 2.19: every
/// record of every topic read from offset 0, every row of every table read
/// with CQL, and every document of every index hold no personal field
/// readable; after the erasure no row holds the destroyed key.
#[tokio::test]
async fn on_the_engines_no_topic_table_or_index_holds_a_personal_field() {
    use salestrack_test_engines::{Engine, EngineServer};
    let (Some(kafka), Some(cassandra), Some(opensearch)) = (
        EngineServer::shared(Engine::Kafka),
        EngineServer::shared(Engine::Cassandra),
        EngineServer::shared(Engine::OpenSearch),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = crate::common::engine_settings(
        crate::common::OnEngines {
            kafka: &kafka.address(),
            cassandra: &cassandra.address(),
            keyspace: format!("personal{}", uuid::Uuid::new_v4().simple()),
            opensearch: &opensearch.address(),
            index_prefix: salestrack_elasticsearch::test_server::unique_prefix(),
        },
        dir.path(),
    );
    let app = crate::faults::spawn(&settings).await;
    let placed = place(&app).await;
    let raw = engine_bytes(&app, &settings).await;
    for mark in MARKS {
        for (store, bytes) in &raw {
            assert!(!holds(bytes, mark.as_bytes()), "{mark} readable in {store}");
        }
    }
    assert!(
        raw.iter().any(|(_, bytes)| holds(bytes, &placed.secret)),
        "the search finds the key while it lives"
    );
    erase(&app, &placed).await;
    let raw = engine_bytes(&app, &settings).await;
    for (store, bytes) in &raw {
        assert!(
            !holds(bytes, &placed.secret),
            "the destroyed key in {store}"
        );
        for mark in MARKS {
            assert!(!holds(bytes, mark.as_bytes()), "{mark} readable in {store}");
        }
    }
    app.stop().await;
}

fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// Every byte the engines hold for the runner, by where: each topic's
/// records from offset 0 (keys, values, headers), each table's rows read
/// with CQL, each index's documents.
async fn engine_bytes(
    app: &super::TestApp,
    settings: &salestrack_platform::Settings,
) -> Vec<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let t = &settings.topics;
    for topic in [
        &t.commands,
        &t.events,
        &t.outcomes,
        &t.payments,
        &t.projections,
        &t.dead_letter,
    ] {
        if topic.is_empty() {
            continue;
        }
        let mut consumer = app
            .backends
            .consumer(&format!("raw-{}", uuid::Uuid::new_v4()), &[topic])
            .expect("consumer");
        let (mut bytes, mut idle) = (Vec::new(), 0);
        while idle < 3 {
            let records = consumer
                .poll(1_000, Duration::from_secs(1))
                .await
                .unwrap_or_default();
            idle = if records.is_empty() { idle + 1 } else { 0 };
            for r in records {
                bytes.extend(r.key.unwrap_or_default());
                bytes.extend(r.value.unwrap_or_default());
                for (name, value) in r.headers {
                    bytes.extend(name.into_bytes());
                    bytes.extend(value);
                }
            }
        }
        assert!(
            !bytes.is_empty() || topic == &t.dead_letter,
            "topic {topic} read empty"
        );
        raw.push((format!("topic {topic}"), bytes));
    }
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(&settings.cassandra.contact_points)
        .build()
        .await
        .expect("CQL session");
    let keyspace = &settings.cassandra.keyspace;
    for table in [
        "events",
        "snapshots",
        "payments",
        "data_keys_by_id",
        "data_keys",
    ] {
        let rows = session
            .query_unpaged(format!("SELECT * FROM {keyspace}.{table}"), ())
            .await
            .expect("select")
            .into_rows_result()
            .expect("rows");
        let mut bytes = Vec::new();
        for row in rows.rows::<scylla::value::Row>().expect("typed rows") {
            for column in row.expect("row").columns.into_iter().flatten() {
                match column {
                    scylla::value::CqlValue::Blob(b) => bytes.extend(b),
                    scylla::value::CqlValue::Text(t) => bytes.extend(t.into_bytes()),
                    other => bytes.extend(format!("{other:?}").into_bytes()),
                }
            }
        }
        raw.push((format!("table {table}"), bytes));
    }
    let url = format!(
        "{}/{}-*/_search?size=10000",
        settings.elasticsearch.url.trim_end_matches('/'),
        settings.elasticsearch.index_prefix
    );
    let documents = reqwest::Client::new()
        .post(url)
        .json(&json!({"query": {"match_all": {}}}))
        .send()
        .await
        .expect("search every index")
        .bytes()
        .await
        .expect("documents");
    assert!(
        documents.len() > 100,
        "{}",
        String::from_utf8_lossy(&documents)
    );
    raw.push(("the indices".to_owned(), documents.to_vec()));
    raw
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
