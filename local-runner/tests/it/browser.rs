//! The sales page at `/` in headless Chromium (Debian's `chromium`), driven
//! over WebDriver by chromedriver and the fantoccini client: a posted order
//! appears on the open cart without a reload, and the report's charts show
//! the posted totals, bar for bar the figures of `GET /reports/sales`.
//! Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots/`.
//!
//! Skipped (saying why) when Chromium or chromedriver is missing, unless
//! `REQUIRE_BROWSER` is set, as in CI.

use crate::common;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Option<Driver> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("REQUIRE_BROWSER").is_none(),
            "REQUIRE_BROWSER is set but {missing:?} is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: {missing:?} not installed (apt-get install chromium chromium-driver)");
        return None;
    }
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

/// A headless Chromium session; the flags keep it off the network (the
/// machines have none) and out of any profile.
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,1400",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

async fn save_screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.expect("screenshot");
    let path = screenshots().join(name);
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Evaluates `script` (a function body) in the page until it returns
/// something truthy; returns that. Fails the test after 20 s.
async fn wait_for_js(page: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = page.execute(script, vec![]).await.expect("script");
        if !(value.is_null() || value == json!(false)) {
            return value;
        }
        assert!(Instant::now() < deadline, "the page never showed {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element `css` names, as a person would.
async fn click(page: &Client, css: &str) {
    page.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn post(app: &common::Http, cart: CartId, product: &str) {
    let mut body = order_body_for(cart, OrderId(Uuid::new_v4()), product);
    body["user_id"] = json!("page-user");
    let (status, answer) = app.post("/orders", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn the_sales_page_follows_a_cart_live_and_charts_the_report() {
    let Some(driver) = driver() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = tempfile::tempdir().expect("profile");
    let app = common::spawn_embedded(dir.path()).await;
    let cart = CartId(Uuid::new_v4());
    post(&app, cart, "Page Espresso").await;
    let (status, _) = app.get(&format!("/carts/{cart}")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = status;
    while status != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the first order never became visible"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = app.get(&format!("/carts/{cart}")).await.0;
    }

    let page = browser(&driver, profile.path()).await;
    page.goto(&app.url("/")).await.expect("open the page");
    // Search by user, as a person would: type, press the button.
    page.find(Locator::Css("#search-form input[name=user_id]"))
        .await
        .expect("user field")
        .send_keys("page-user")
        .await
        .expect("type");
    click(&page, "#search-form button").await;
    // The rows of this search, not of the one the page made when it opened.
    let row = format!("#results[data-query='user_id=page-user'] tr[data-cart-id='{cart}']");
    page.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&row))
        .await
        .expect("the cart in the results")
        .click()
        .await
        .expect("open the cart");
    wait_for_js(
        &page,
        "the cart at version 1",
        "return document.querySelector('#cart').dataset.version === '1' \
         && document.querySelectorAll('#cart-lines tbody tr').length === 1",
    )
    .await;
    // A mark a reload would wipe out.
    page.execute("window.salestrackMark = 'no reload'; return true;", vec![])
        .await
        .expect("mark");

    post(&app, cart, "Page Grinder").await;
    let lines = wait_for_js(
        &page,
        "the second order on the open cart",
        "const rows = [...document.querySelectorAll('#cart-lines tbody tr')];\
         return document.querySelector('#cart').dataset.version === '2' && rows.length === 2 \
           && rows.map(r => r.cells[0].textContent);",
    )
    .await;
    assert_eq!(lines, json!(["Page Espresso", "Page Grinder"]));
    let mark = page
        .execute("return window.salestrackMark ?? null;", vec![])
        .await
        .expect("mark");
    assert_eq!(mark, json!("no reload"), "the page was not reloaded");
    let live = page
        .find(Locator::Css("#live-state"))
        .await
        .expect("badge")
        .text()
        .await
        .expect("text");
    assert_eq!(live, "live");
    save_screenshot(&page, "sales-page-cart.png").await;

    // The report over the orders' day (order_body_for's created_at). Dates
    // are set through script: date inputs take keys per locale.
    page.execute(
        "const f = document.querySelector('#report-form');\
         f.elements.from.value = '2026-11-20'; f.elements.to.value = '2026-11-20'; return true;",
        vec![],
    )
    .await
    .expect("dates");
    click(&page, "#report-form button").await;
    let bars = wait_for_js(
        &page,
        "the report's charts",
        "const charts = document.querySelector('#charts');\
         if (charts.dataset.loaded !== '2026-11-20/2026-11-20/all/product') return null;\
         return [...charts.querySelectorAll('figure')].map(f => [f.dataset.chart,\
           [...f.querySelectorAll('rect')].map(r => [r.dataset.label, r.dataset.value])]);",
    )
    .await;
    let charts: std::collections::BTreeMap<String, Vec<(String, String)>> = bars
        .as_array()
        .expect("charts")
        .iter()
        .map(|c| {
            (
                c[0].as_str().expect("chart id").to_owned(),
                serde_json::from_value(c[1].clone()).expect("bars"),
            )
        })
        .collect();
    // Bar for bar what the API reports...
    let (_, daily) = app
        .get("/reports/sales?interval=day&from=2026-11-20&to=2026-11-20")
        .await;
    let (_, products) = app
        .get("/reports/sales?group_by=product&from=2026-11-20&to=2026-11-20")
        .await;
    let figures = |report: &Value, label: &dyn Fn(&Value) -> String, field: &str| {
        report["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .filter(|b| b["currency"] == "EUR")
            .map(|b| {
                let value = match &b[field] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (label(b), value)
            })
            .collect::<Vec<_>>()
    };
    let day = |b: &Value| b["period"].as_str().expect("period")[..10].to_owned();
    let key = |b: &Value| b["key"].as_str().expect("key").to_owned();
    assert_eq!(charts["revenue-day-EUR"], figures(&daily, &day, "revenue"));
    assert_eq!(charts["units-day-EUR"], figures(&daily, &day, "units"));
    assert_eq!(
        charts["revenue-product-EUR"],
        figures(&products, &key, "revenue")
    );
    assert_eq!(
        charts["units-product-EUR"],
        figures(&products, &key, "units")
    );
    // ...which are the posted totals: two lines of 2 units at 389.98.
    assert_eq!(
        charts["revenue-day-EUR"],
        vec![("2026-11-20".to_owned(), "779.96".to_owned())]
    );
    assert_eq!(
        charts["units-day-EUR"],
        vec![("2026-11-20".to_owned(), "4".to_owned())]
    );
    assert_eq!(
        charts["revenue-product-EUR"],
        vec![
            ("Page Espresso".to_owned(), "389.98".to_owned()),
            ("Page Grinder".to_owned(), "389.98".to_owned())
        ]
    );
    save_screenshot(&page, "sales-page.png").await;

    // The other search fields: product words and the creation dates (the
    // orders' created_at, 2026-11-20), each narrowing to this cart or to
    // nothing.
    for (q, from, to, to_exclusive, found) in [
        ("grinder", "2026-11-20", "2026-11-20", "2026-11-21", true),
        ("page espresso", "", "", "", true),
        ("no such product", "", "", "", false),
        ("", "2026-11-21", "2026-11-30", "2026-12-01", false),
    ] {
        page.execute(
            "const f = document.querySelector('#search-form');             f.elements.user_id.value = ''; f.elements.q.value = arguments[0];             f.elements.from.value = arguments[1]; f.elements.to.value = arguments[2]; return true;",
            vec![json!(q), json!(from), json!(to)],
        )
        .await
        .expect("search fields");
        click(&page, "#search-form button").await;
        let mut expected = Vec::new();
        if !q.is_empty() {
            expected.push(format!("q={}", q.replace(' ', "+")));
        }
        if !from.is_empty() {
            expected.push(format!("from={from}T00%3A00%3A00.000Z"));
            expected.push(format!("to={to_exclusive}T00%3A00%3A00.000Z"));
        }
        let rows = wait_for_js(
            &page,
            &format!("the results of {expected:?}"),
            &format!(
                "const t = document.querySelector('#results');                 if (t.dataset.query !== '{}') return null;                 return [...t.querySelectorAll('tbody tr')].map(r => r.dataset.cartId ?? 'none');",
                expected.join("&")
            ),
        )
        .await;
        let rows: Vec<String> = serde_json::from_value(rows).expect("rows");
        assert_eq!(
            rows.contains(&cart.to_string()),
            found,
            "q={q:?} from={from:?} to={to:?}: {rows:?}"
        );
    }

    // The operations view: readiness and the consumers, then a poison
    // record's letter, redriven with its button.
    wait_for_js(
        &page,
        "the consumers in the operations view",
        "return document.querySelector('#ops-status').textContent === 'ready' \
         && document.querySelectorAll('#ops-consumers tbody tr').length === 3;",
    )
    .await;
    app.backends
        .producer()
        .expect("a bus")
        .send(salestrack_core::ports::OutboundRecord {
            topic: "sales.commands".into(),
            key: cart.to_string().into_bytes(),
            value: b"{not a command".to_vec(),
            headers: vec![],
        })
        .await
        .expect("poison");
    // Refreshed until the letter shows; each refresh finishes (`busy`
    // gone) before the next, so no later one redraws the rows under a click.
    let refreshed = |condition: &str| {
        format!(
            "const s = document.querySelector('#operations');\
             if (s.dataset.busy) return null;\
             const found = (() => {{ {condition} }})();\
             if (found) return found;\
             document.querySelector('#ops-refresh').click(); return null;"
        )
    };
    let letter = wait_for_js(
        &page,
        "the poison's letter",
        &refreshed("return document.querySelector('#ops-letters tbody tr')?.dataset.letter;"),
    )
    .await
    .as_str()
    .expect("a letter id")
    .to_owned();
    click(
        &page,
        &format!("#ops-letters tr[data-letter='{letter}'] button.redrive"),
    )
    .await;
    let redriven = wait_for_js(
        &page,
        "the letter redriven",
        &format!(
            "return document.querySelector(\"#ops-letters tr[data-letter='{letter}']\").dataset.redriven ?? null;"
        ),
    )
    .await;
    assert!(
        redriven
            .as_str()
            .is_some_and(|r| r.starts_with("sales.commands-")),
        "{redriven}"
    );
    // Still poison: dead-lettered again, saying where it was redriven from.
    wait_for_js(
        &page,
        "the redriven poison back on the dead-letter topic",
        &refreshed(&format!(
            "return [...document.querySelectorAll('#ops-letters tbody tr')]\
               .some(r => r.cells[0].textContent.includes('redriven from {letter}'));"
        )),
    )
    .await;
    save_screenshot(&page, "sales-page-operations.png").await;

    // Everything the page loaded came from the runner itself.
    let foreign = page
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)\
               .filter(n => !n.startsWith(location.origin));",
            vec![],
        )
        .await
        .expect("resources");
    assert_eq!(foreign, json!([]), "resources from elsewhere");
    page.close().await.expect("close the session");
    app.stop().await;
}
