//! The runner with its read side on real Elasticsearch-API servers
//! (OpenSearch 2.19 itself, noida-db as Elasticsearch 8, osmem-server as an
//! OpenSearch 3 emulator), each test on its own index prefix: report figures checked against totals computed
//! here from the orders posted, and a projection rebuild under write load.

use crate::common;

use common::{spawn_with, TestApp};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_elasticsearch::rebuild::rebuild;
use salestrack_elasticsearch::test_server::{unique_prefix, SearchTarget, ServerKind};
use salestrack_elasticsearch::{EsReadStore, Model};
use salestrack_platform::config::EsRefresh;
use salestrack_platform::{backends::es_config, Backends, Settings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use uuid::Uuid;

fn settings(server: &SearchTarget, data_dir: &Path) -> Settings {
    Settings {
        data_dir: data_dir.into(),
        poll_wait_ms: 20,
        consistency: salestrack_platform::ConsistencySettings {
            wait_ms: 20_000,
            ..Default::default()
        },
        elasticsearch: salestrack_platform::ElasticsearchSettings {
            url: server.url.clone(),
            index_prefix: unique_prefix(),
            refresh: EsRefresh::WaitFor,
            shards: Some(1),
            replicas: Some(0),
            refresh_interval: Some("50ms".into()),
            ..Default::default()
        },
        ..Settings::default()
    }
}

async fn spawn(server: &SearchTarget, data_dir: &Path) -> (TestApp, Settings) {
    let settings = settings(server, data_dir);
    let backends = Backends::connect(&settings).await.expect("backends");
    (spawn_with(settings.clone(), backends).await, settings)
}

/// One posted line as the test keeps it: what the report must count.
#[derive(Debug, Clone)]
struct Posted {
    cart: CartId,
    order: OrderId,
    product: &'static str,
    seller: &'static str,
    quantity: u32,
    subtotal: Decimal,
    tax: Decimal,
    cancelled: bool,
}

const PRODUCTS: [&str; 3] = ["Espresso machine", "Coffee grinder", "Milk jug"];
const SELLERS: [&str; 2] = ["Acme", "Globex"];

/// The `i`-th line: varied product, seller, quantity and prices with up to
/// four decimal places.
fn line(i: usize, cart: CartId) -> (Posted, Value) {
    let order = OrderId(Uuid::new_v4());
    let product = PRODUCTS[i % PRODUCTS.len()];
    let seller = SELLERS[i % SELLERS.len()];
    let quantity = (i % 4) as u32 + 1;
    let amount = Decimal::new(1999 + (i as i64 * 137) % 5000, 2) + Decimal::new(i as i64 % 7, 4);
    let discounts = Decimal::new((i as i64 % 3) * 50, 2);
    let subtotal = amount * Decimal::from(quantity) - discounts;
    let tax = Decimal::new(i as i64 * 31 % 900, 2);
    let mut body = order_body_for(cart, order, product);
    body["seller_info"] = json!(seller);
    body["quantity"] = json!(quantity);
    body["amount"] = json!(amount.to_string());
    body["discounts"] = json!(discounts.to_string());
    body["subtotal"] = json!(subtotal.to_string());
    body["tax_amount"] = json!(tax.to_string());
    let posted = Posted {
        cart,
        order,
        product,
        seller,
        quantity,
        subtotal,
        tax,
        cancelled: false,
    };
    (posted, body)
}

/// Posts `n` lines over `carts` carts (each posted twice: a client retry),
/// cancels every fifth; returns the lines and the last consistency token
/// of each cart.
async fn post_lines(app: &TestApp, n: usize, carts: usize) -> (Vec<Posted>, Vec<(CartId, String)>) {
    let cart_ids: Vec<CartId> = (0..carts).map(|_| CartId(Uuid::new_v4())).collect();
    let mut lines = Vec::new();
    let mut tokens = BTreeMap::new();
    for i in 0..n {
        let cart = cart_ids[i % carts];
        let (mut posted, body) = line(i, cart);
        for _ in 0..2 {
            let (status, accepted) = app.post("/orders", &body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
            tokens.insert(
                cart,
                accepted["consistency_token"]
                    .as_str()
                    .expect("token")
                    .to_owned(),
            );
        }
        if i % 5 == 4 {
            let (status, accepted) = app
                .post(
                    &format!("/orders/{}/cancel", posted.order),
                    &json!({ "cart_id": cart.to_string() }),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
            tokens.insert(
                cart,
                accepted["consistency_token"]
                    .as_str()
                    .expect("token")
                    .to_owned(),
            );
            posted.cancelled = true;
        }
        lines.push(posted);
    }
    (lines, tokens.into_iter().collect())
}

/// Reads every cart with its last token: the projection has everything.
async fn wait_for(app: &TestApp, tokens: &[(CartId, String)]) {
    for (cart, token) in tokens {
        let response = app
            .client
            .get(app.url(&format!("/carts/{cart}?consistency_token={token}")))
            .send()
            .await
            .expect("get");
        assert_eq!(
            response.headers().get("consistency").map(|v| v.as_bytes()),
            Some(&b"fresh"[..]),
            "cart {cart} projected within the wait"
        );
    }
}

/// (key, units, revenue, tax, orders) of the active lines, by `key`.
fn expected_by(
    lines: &[Posted],
    key: impl Fn(&Posted) -> String,
) -> Vec<(String, u64, Decimal, Decimal, u64)> {
    let mut totals: BTreeMap<String, (u64, Decimal, Decimal, u64)> = BTreeMap::new();
    for l in lines.iter().filter(|l| !l.cancelled) {
        let t = totals.entry(key(l)).or_default();
        t.0 += u64::from(l.quantity);
        t.1 += l.subtotal;
        t.2 += l.tax;
        t.3 += 1;
    }
    totals
        .into_iter()
        .map(|(k, (u, r, t, o))| (k, u, r, t, o))
        .collect()
}

fn reported(report: &Value, key: &str) -> Vec<(String, u64, Decimal, Decimal, u64)> {
    report["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            let money = |f: &str| {
                b[f].as_str()
                    .expect("money")
                    .parse::<Decimal>()
                    .expect("decimal")
            };
            (
                b[key].as_str().expect("key").to_owned(),
                b["units"].as_u64().expect("units"),
                money("revenue"),
                money("tax"),
                b["orders"].as_u64().expect("orders"),
            )
        })
        .collect()
}

async fn report_figures_equal_the_totals_of_the_posted_orders(server: SearchTarget) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _) = spawn(&server, dir.path()).await;
    let (lines, tokens) = post_lines(&app, 40, 8).await;
    wait_for(&app, &tokens).await;

    let (status, by_product) = app.get("/reports/sales?group_by=product").await;
    assert_eq!(status, StatusCode::OK, "{by_product}");
    assert_eq!(
        reported(&by_product, "key"),
        expected_by(&lines, |l| l.product.to_owned()),
        "{}: by product",
        server.name
    );
    let (_, by_seller) = app
        .get("/reports/sales?group_by=seller&interval=month")
        .await;
    assert_eq!(
        reported(&by_seller, "key"),
        expected_by(&lines, |l| l.seller.to_owned()),
        "{}: by seller and month (all lines are in one month)",
        server.name
    );
    let (_, by_day) = app
        .get("/reports/sales?interval=day&from=2026-11-20&to=2026-11-20")
        .await;
    assert_eq!(
        reported(&by_day, "currency"),
        expected_by(&lines, |_| "EUR".to_owned()),
        "{}: one day, one currency",
        server.name
    );
    let (_, carts) = app
        .get("/carts?user_id=user-42&currency=EUR&q=espresso&limit=100")
        .await;
    let espresso_carts = lines
        .iter()
        .filter(|l| l.product == "Espresso machine" && !l.cancelled)
        .map(|l| l.cart)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        carts["carts"].as_array().expect("carts").len(),
        espresso_carts.len(),
        "{}: product search over active lines",
        server.name
    );
    app.stop().await;
}

/// The binary's shared OpenSearch 2.19, or `None` (having said why).
fn opensearch() -> Option<SearchTarget> {
    use salestrack_test_engines::{Engine, EngineServer};
    let server = EngineServer::shared(Engine::OpenSearch)?;
    Some(SearchTarget::at("OpenSearch 2.19", &server.address()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_figures_equal_the_totals_of_the_posted_orders_on_opensearch() {
    let Some(server) = opensearch() else { return };
    report_figures_equal_the_totals_of_the_posted_orders(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_figures_equal_the_totals_of_the_posted_orders_on_noida() {
    let Some(server) = SearchTarget::emulator(ServerKind::Noida) else {
        return;
    };
    report_figures_equal_the_totals_of_the_posted_orders(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_figures_equal_the_totals_of_the_posted_orders_on_osmem() {
    let Some(server) = SearchTarget::emulator(ServerKind::Osmem) else {
        return;
    };
    report_figures_equal_the_totals_of_the_posted_orders(server).await;
}

async fn a_rebuild_under_write_load_loses_nothing_and_doubles_nothing(server: SearchTarget) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, settings) = spawn(&server, dir.path()).await;
    // History before the rebuild starts.
    let (mut lines, mut tokens) = post_lines(&app, 60, 20).await;
    wait_for(&app, &tokens).await;

    let es = EsReadStore::new(es_config(&settings)).expect("client");
    let events = app.backends.event_store().expect("an event store");
    let writes = async {
        // Writes all along the rebuild: new carts and more lines for old ones.
        let (more, more_tokens) = post_lines(&app, 60, 10).await;
        (more, more_tokens)
    };
    let mut reports = Vec::new();
    let (rebuilt, (more, more_tokens)) = tokio::join!(
        rebuild(&es, events.as_ref(), |p| reports.push(p.clone())),
        writes
    );
    let rebuilt = rebuilt.expect("rebuild");
    lines.extend(more);
    tokens.extend(more_tokens);
    wait_for(&app, &tokens).await;

    assert_eq!(rebuilt.generation, 2);
    assert_eq!(
        es.alias_target(Model::CartDetail).await.expect("alias"),
        Some(format!(
            "{}-cart-detail-v2",
            settings.elasticsearch.index_prefix
        )),
        "{}: readers see the rebuilt index",
        server.name
    );
    let last = reports.last().expect("progress was reported");
    assert!(last.percent() > 0.0 && last.events > 0, "{last}");

    let (_, report) = app.get("/reports/sales?group_by=product").await;
    assert_eq!(
        reported(&report, "key"),
        expected_by(&lines, |l| l.product.to_owned()),
        "{}: after the rebuild every active line counts once",
        server.name
    );
    let mut per_cart: BTreeMap<CartId, usize> = BTreeMap::new();
    for l in &lines {
        *per_cart.entry(l.cart).or_default() += 1;
    }
    for (cart, n) in per_cart {
        let (_, detail) = app.get(&format!("/carts/{cart}")).await;
        assert_eq!(
            detail["items"].as_array().map(Vec::len),
            Some(n),
            "{}: cart {cart} has each line once",
            server.name
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_write_load_loses_nothing_and_doubles_nothing_on_opensearch() {
    let Some(server) = opensearch() else { return };
    a_rebuild_under_write_load_loses_nothing_and_doubles_nothing(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_write_load_loses_nothing_and_doubles_nothing_on_noida() {
    let Some(server) = SearchTarget::emulator(ServerKind::Noida) else {
        return;
    };
    a_rebuild_under_write_load_loses_nothing_and_doubles_nothing(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_write_load_loses_nothing_and_doubles_nothing_on_osmem() {
    let Some(server) = SearchTarget::emulator(ServerKind::Osmem) else {
        return;
    };
    a_rebuild_under_write_load_loses_nothing_and_doubles_nothing(server).await;
}

/// The largest amount the API accepts in every money field.
const LARGEST: &str = "99999999999999.9999";

/// Issue 29: line amounts may reach 10^14, and the report summed them as
/// doubles: a bucket past 2^53 minor units (a handful of such lines) turned
/// the whole report into a retryable `503`. Twelve lines of the largest
/// amounts, in one bucket: their sum is past 2^53 minor units and past
/// `i64`, and the report gives it exactly.
async fn a_report_of_the_largest_amounts_is_exact(settings: Settings, name: &str) {
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends).await;
    let mut tokens = Vec::new();
    let lines = 12_u32;
    for _ in 0..lines {
        let cart = CartId(Uuid::new_v4());
        let mut body = order_body_for(cart, OrderId(Uuid::new_v4()), "Yacht");
        body["currency"] = json!("CHF");
        body["quantity"] = json!(1);
        body["discounts"] = json!("0");
        for field in ["amount", "subtotal", "tax_amount"] {
            body[field] = json!(LARGEST);
        }
        let (status, accepted) = app.post("/orders", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {accepted}");
        let token = accepted["consistency_token"].as_str().expect("token");
        tokens.push((cart, token.to_owned()));
    }
    wait_for(&app, &tokens).await;
    let (status, report) = app.get("/reports/sales").await;
    assert_eq!(status, StatusCode::OK, "{name}: {report}");
    let sum = LARGEST.parse::<Decimal>().expect("decimal") * Decimal::from(lines);
    assert_eq!(
        reported(&report, "currency"),
        vec![(
            "CHF".to_owned(),
            u64::from(lines),
            sum,
            sum,
            u64::from(lines)
        )],
        "{name}: {report}"
    );
    app.stop().await;
}

/// [`a_report_of_the_largest_amounts_is_exact`] on `server`, if it runs here.
async fn largest_amounts_on(server: Option<SearchTarget>) {
    let Some(server) = server else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    a_report_of_the_largest_amounts_is_exact(settings(&server, dir.path()), &server.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_the_largest_amounts_is_exact_on_opensearch() {
    largest_amounts_on(opensearch()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_the_largest_amounts_is_exact_on_noida() {
    largest_amounts_on(SearchTarget::emulator(ServerKind::Noida)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_the_largest_amounts_is_exact_on_osmem() {
    largest_amounts_on(SearchTarget::emulator(ServerKind::Osmem)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_the_largest_amounts_is_exact_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = {
        let base = common::embedded_settings(dir.path());
        Settings {
            consistency: salestrack_platform::ConsistencySettings {
                wait_ms: 20_000,
                ..base.consistency
            },
            ..base
        }
    };
    a_report_of_the_largest_amounts_is_exact(settings, "embedded").await;
}
