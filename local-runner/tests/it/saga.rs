//! The checkout saga end to end through the runner: many carts checked out
//! at once with a mix of successful, declined and unanswered payments, every
//! checkout request posted twice and every payment request delivered again;
//! a late payment; and a SIGKILL of the runner while checkouts are in
//! flight. The ledger, the event store and the read models must agree on
//! every cart, and the `paid` report on the test's own totals.

use crate::common;

use common::{kafka_settings, spawn_with, Http, On};
use futures::StreamExt;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use salestrack_core::event::{CancelReason, Event};
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::{ChargeStatus, EventStore, OutboundRecord, PaymentLedger, Producer};
use salestrack_core::testing::order_body_for;
use salestrack_core::wire::PaymentRequest;
use salestrack_platform::{Backends, Settings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How a test cart pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pays {
    /// `card`: succeeds, or is declined at the runner's random rate.
    Card,
    /// `test-decline`: always declined.
    Declined,
    /// `test-timeout`: never answered; the saga's deadline cancels it.
    Unanswered,
}

impl Pays {
    fn method(self) -> &'static str {
        match self {
            Pays::Card => "card",
            Pays::Declined => "test-decline",
            Pays::Unanswered => "test-timeout",
        }
    }
}

/// A test cart: its lines' quantities, and how it pays.
#[derive(Debug, Clone)]
struct TestCart {
    cart_id: CartId,
    quantities: Vec<u32>,
    pays: Pays,
}

impl TestCart {
    fn new(i: usize) -> TestCart {
        TestCart {
            cart_id: CartId(Uuid::new_v4()),
            quantities: (0..1 + i % 3).map(|k| 1 + ((i + k) % 4) as u32).collect(),
            pays: match i % 4 {
                0 | 1 => Pays::Card,
                2 => Pays::Declined,
                _ => Pays::Unanswered,
            },
        }
    }

    /// A line of `quantity` espresso machines: 199.99 each, 10 off.
    fn line(&self, quantity: u32) -> Value {
        let mut body = order_body_for(self.cart_id, OrderId(Uuid::new_v4()), "Espresso machine");
        body["quantity"] = json!(quantity);
        body["subtotal"] = json!(self.subtotal_of(quantity).to_string());
        body
    }

    fn subtotal_of(&self, quantity: u32) -> Decimal {
        Decimal::new(19999, 2) * Decimal::from(quantity) - Decimal::from(10)
    }

    /// What the test expects the report to count for this cart.
    fn subtotal(&self) -> Decimal {
        self.quantities.iter().map(|q| self.subtotal_of(*q)).sum()
    }

    /// What a checkout charges: subtotals plus 38.00 tax per line.
    fn charge(&self) -> Decimal {
        self.subtotal() + Decimal::new(3800, 2) * Decimal::from(self.quantities.len())
    }
}

/// Where a scenario looks: the runner over HTTP and its stores.
struct View {
    http: Http,
    ledger: Arc<dyn PaymentLedger>,
    events: Arc<dyn EventStore>,
}

/// Posts every cart's lines, then its checkout twice at once. Answers the
/// carts whose checkout got a `202` and the checkout command ids.
async fn post_checkouts(http: &Http, carts: &[TestCart]) -> BTreeMap<CartId, String> {
    // Collected first: a stream that kept the mapping closure would make
    // the future `Send` only for one lifetime, and spawning it needs any.
    let posts: Vec<_> = carts.iter().map(|cart| post_checkout(http, cart)).collect();
    futures::stream::iter(posts)
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// `POST path`; `None` when the runner is gone (killed).
async fn try_post(http: &Http, path: &str, body: &Value) -> Option<(StatusCode, Value)> {
    let response = http
        .client
        .post(http.url(path))
        .json(body)
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.json().await.ok()?))
}

async fn post_checkout(http: &Http, cart: &TestCart) -> Option<(CartId, String)> {
    for q in &cart.quantities {
        let (status, body) = try_post(http, "/orders", &cart.line(*q)).await?;
        if status != StatusCode::ACCEPTED {
            return None;
        }
        assert!(body["command_id"].is_string());
    }
    // The same checkout twice, concurrently: one command id, one effect.
    let path = format!("/carts/{}/checkout", cart.cart_id);
    let body = json!({ "payment_method": cart.pays.method() });
    let (a, b) = tokio::join!(try_post(http, &path, &body), try_post(http, &path, &body));
    let (a, b) = (a?, b?);
    for (status, body) in [&a, &b] {
        if *status != StatusCode::ACCEPTED {
            return None;
        }
        assert_eq!(body["command_id"], a.1["command_id"], "one command id");
    }
    Some((cart.cart_id, a.1["command_id"].as_str()?.to_owned()))
}

/// Waits until every cart of `carts` is paid or cancelled in the read model.
async fn wait_until_settled(
    http: &Http,
    carts: &[CartId],
    within: Duration,
) -> BTreeMap<CartId, Value> {
    let deadline = Instant::now() + within;
    let mut settled = BTreeMap::new();
    loop {
        let pending: Vec<CartId> = carts
            .iter()
            .filter(|c| !settled.contains_key(*c))
            .copied()
            .collect();
        for cart in pending {
            let (status, detail) = http.get(&format!("/carts/{cart}")).await;
            if status == StatusCode::OK
                && matches!(detail["status"].as_str(), Some("paid" | "cancelled"))
            {
                settled.insert(cart, detail);
            }
        }
        if settled.len() == carts.len() {
            return settled;
        }
        let stuck: Vec<_> = carts
            .iter()
            .filter(|c| !settled.contains_key(*c))
            .take(5)
            .collect();
        assert!(
            Instant::now() < deadline,
            "{} of {} carts are not settled after {within:?}, e.g. {stuck:?}",
            carts.len() - settled.len(),
            carts.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Delivers every checkout's payment request once more, as a redelivering
/// event source would, and waits until the payment function and the domain
/// have handled them.
async fn redeliver_payment_requests(
    view: &View,
    producer: &dyn Producer,
    payments_topic: &str,
    carts: &[CartId],
) {
    let before = consumed(&view.http).await;
    let mut requests = Vec::new();
    for cart in carts {
        for e in view.events.read_stream(*cart).await.expect("stream") {
            if let Some(request) = PaymentRequest::for_event(&e) {
                requests.push(OutboundRecord {
                    topic: payments_topic.to_owned(),
                    key: cart.to_string().into_bytes(),
                    value: request.encode(),
                    headers: vec![],
                });
            }
        }
    }
    let resent = requests.len() as u64;
    producer.send_all(requests).await.expect("redeliver");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = consumed(&view.http).await;
        // Every request again, and every answer it gave decided again.
        if now.0 >= before.0 + resent && now.1 > before.1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redelivered requests not handled: {before:?} -> {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The answers of the last batch reach the domain's next one.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Records handled so far by the payment and the domain consumers.
async fn consumed(http: &Http) -> (u64, u64) {
    let (_, ready) = http.get("/health/ready").await;
    let n = |loop_: &str| ready[loop_]["records"].as_u64().unwrap_or(0);
    (n("payment_consumer"), n("domain_consumer"))
}

/// Every cart ended as its payment did, was charged at most once, and the
/// reports by status equal the test's own totals.
async fn check_outcomes(view: &View, carts: &[TestCart], settled: &BTreeMap<CartId, Value>) {
    let mut expected: BTreeMap<&str, (Decimal, u64)> = BTreeMap::new();
    for cart in carts {
        let detail = &settled[&cart.cart_id];
        let charges = view.ledger.charges(cart.cart_id).await.expect("ledger");
        let stream = view.events.read_stream(cart.cart_id).await.expect("stream");
        let count = |f: fn(&Event) -> bool| stream.iter().filter(|e| f(&e.event)).count();
        assert_eq!(
            count(|e| matches!(e, Event::CheckoutStarted(_))),
            1,
            "{cart:?}: one checkout"
        );
        assert_eq!(
            count(|e| matches!(
                e,
                Event::PaymentSucceeded { .. } | Event::CartCancelled { .. }
            )),
            1,
            "{cart:?}: settled once"
        );
        assert_eq!(
            count(|e| matches!(e, Event::RefundRequested { .. })),
            0,
            "{cart:?}: no late answer"
        );
        let (status, reason) = (detail["status"].as_str(), detail["status_reason"].as_str());
        match (cart.pays, charges.as_slice()) {
            (Pays::Unanswered, []) => {
                assert_eq!(
                    (status, reason),
                    (Some("cancelled"), Some("payment_timeout")),
                    "{cart:?}"
                );
            }
            (Pays::Declined, [charge]) => {
                assert_eq!(charge.status, ChargeStatus::Declined);
                assert_eq!(
                    (status, reason),
                    (Some("cancelled"), Some("payment_declined")),
                    "{cart:?}"
                );
            }
            (Pays::Card, [charge]) if charge.status == ChargeStatus::Succeeded => {
                assert_eq!((status, reason), (Some("paid"), None), "{cart:?}");
                assert_eq!(
                    detail["checkout"]["payment_id"],
                    charge.payment_id.to_string()
                );
            }
            (Pays::Card, [charge]) => {
                assert_eq!(charge.status, ChargeStatus::Declined);
                assert_eq!(
                    (status, reason),
                    (Some("cancelled"), Some("payment_declined")),
                    "{cart:?}"
                );
            }
            (pays, charges) => panic!(
                "cart {} paying {pays:?} has charges {charges:?}",
                cart.cart_id
            ),
        }
        for charge in &charges {
            assert_eq!(
                charge.amount,
                cart.charge(),
                "{cart:?}: charged subtotal plus tax"
            );
            assert_eq!(charge.refunded_at, None);
        }
        let bucket = expected.entry(status.unwrap_or_default()).or_default();
        bucket.0 += cart.subtotal();
        bucket.1 += cart.quantities.len() as u64;
    }
    let report = |status: &'static str| async move {
        let (code, report) = view
            .http
            .get(&format!("/reports/sales?status={status}"))
            .await;
        assert_eq!(code, StatusCode::OK, "{report}");
        let buckets = report["buckets"].as_array().cloned().unwrap_or_default();
        buckets
            .iter()
            .map(|b| {
                let revenue: Decimal = b["revenue"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .expect("revenue");
                (revenue, b["orders"].as_u64().expect("orders"))
            })
            .fold((Decimal::ZERO, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let paid = expected.get("paid").copied().unwrap_or_default();
    let cancelled = expected.get("cancelled").copied().unwrap_or_default();
    assert_eq!(
        report("paid").await,
        paid,
        "the paid report counts confirmed sales only"
    );
    assert_eq!(report("cancelled").await, cancelled);
    assert_eq!(
        report("all").await,
        (paid.0 + cancelled.0, paid.1 + cancelled.1)
    );
    assert_eq!(report("open").await, (Decimal::ZERO, 0));
    println!(
        "{} carts: {} paid ({} lines, {}), {} cancelled",
        carts.len(),
        settled.values().filter(|d| d["status"] == "paid").count(),
        paid.1,
        paid.0,
        settled
            .values()
            .filter(|d| d["status"] == "cancelled")
            .count(),
    );
}

/// Settings of a saga test: a short payment timeout, a brisk timer, a
/// gateway that declines a quarter of the cards and answers late-ish.
fn saga_settings(settings: Settings) -> Settings {
    Settings {
        poll_wait_ms: 20,
        payment: salestrack_platform::PaymentSettings {
            timeout_ms: 3_000,
            sweep_ms: 100,
            decline_rate: 0.25,
            delay_ms: 50,
        },
        ..settings
    }
}

async fn many_checkouts_end_in_the_right_state(settings: Settings) {
    let settings = saga_settings(settings);
    let payments_topic = settings.topics.payments.clone();
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends.clone()).await;
    let view = View {
        http: Http::new(&app.base),
        ledger: backends.payment_ledger().expect("a ledger"),
        events: backends.event_store().expect("an event store"),
    };
    let carts: Vec<TestCart> = (0..60).map(TestCart::new).collect();
    let accepted = post_checkouts(&view.http, &carts).await;
    assert_eq!(accepted.len(), carts.len(), "every checkout was accepted");
    let ids: Vec<CartId> = carts.iter().map(|c| c.cart_id).collect();
    wait_until_settled(&view.http, &ids, Duration::from_secs(60)).await;
    redeliver_payment_requests(
        &view,
        backends.producer().expect("a bus").as_ref(),
        &payments_topic,
        &ids,
    )
    .await;
    let settled = wait_until_settled(&view.http, &ids, Duration::from_secs(10)).await;
    check_outcomes(&view, &carts, &settled).await;
    // The checkout command's status names its cart's outcome.
    for cart in carts.iter().take(8) {
        let (_, status) = view
            .http
            .get(&format!("/commands/{}", accepted[&cart.cart_id]))
            .await;
        assert_eq!(status["status"], "applied", "{status}");
        assert_eq!(status["command_type"], "checkout_cart");
        assert_eq!(
            status["cart_status"], settled[&cart.cart_id]["status"],
            "{status}"
        );
    }
    // Once settled, the cart takes no more lines.
    let closed = &carts[0];
    let (_, refused) = view.http.post("/orders", &closed.line(1)).await;
    let (_, outcome) = view
        .http
        .get(&format!(
            "{}?consistency_token={}",
            refused["status_url"].as_str().expect("url"),
            refused["consistency_token"].as_str().expect("token")
        ))
        .await;
    assert_eq!(outcome["status"], "rejected", "{outcome}");
    assert_eq!(outcome["reason"]["code"], "cart_closed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_checkouts_end_in_the_right_state_on_the_embedded_backends() {
    let dir = tempfile::tempdir().expect("tempdir");
    many_checkouts_end_in_the_right_state(Settings {
        data_dir: dir.path().into(),
        ..Settings::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_checkouts_end_in_the_right_state_on_apache_kafka() {
    let Some(broker) = common::broker(On::ApacheKafka) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    many_checkouts_end_in_the_right_state(kafka_settings(&broker.brokers, dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_rules_answer_with_reason_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = saga_settings(Settings {
        data_dir: dir.path().into(),
        ..Settings::default()
    });
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends).await;
    let outcome = |accepted: Value| {
        let http = &app.http;
        async move {
            let url = format!(
                "{}?consistency_token={}",
                accepted["status_url"].as_str().expect("url"),
                accepted["consistency_token"].as_str().expect("token")
            );
            http.get(&url).await.1
        }
    };
    // No such cart: nothing to check out.
    let nobody = CartId(Uuid::new_v4());
    let (status, accepted) = app
        .post(&format!("/carts/{nobody}/checkout"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert!(accepted.get("order_id").is_none(), "{accepted}");
    let decided = outcome(accepted).await;
    assert_eq!(
        (
            decided["status"].as_str(),
            decided["reason"]["code"].as_str()
        ),
        (Some("rejected"), Some("cart_not_found"))
    );
    // Every line cancelled: an open cart with nothing to pay.
    let cart = TestCart::new(0);
    let line = cart.line(1);
    app.post("/orders", &line).await;
    let order = line["order_id"].as_str().expect("order id");
    app.post(
        &format!("/orders/{order}/cancel"),
        &json!({ "cart_id": cart.cart_id }),
    )
    .await;
    let client = reqwest::Client::new();
    // No body at all is a checkout with the first line's payment method.
    let response = client
        .post(app.url(&format!("/carts/{}/checkout", cart.cart_id)))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let decided = outcome(response.json().await.expect("json")).await;
    assert_eq!(decided["reason"]["code"], "cart_empty", "{decided}");
    // A body that is not a checkout: field-level 400.
    let (status, error) = app
        .post(
            &format!("/carts/{}/checkout", cart.cart_id),
            &json!({ "payment_method": "", "tip": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("payment_method") && text.contains("unknown_field"),
        "{text}"
    );
    let (status, _) = app.post("/carts/not-a-uuid/checkout", &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

/// A gateway slower than the saga's patience: the deadline cancels the
/// cart first, the late success changes nothing, and the money goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_after_the_deadline_changes_nothing_and_is_refunded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        data_dir: dir.path().into(),
        poll_wait_ms: 20,
        payment: salestrack_platform::PaymentSettings {
            timeout_ms: 300,
            sweep_ms: 50,
            delay_ms: 1_500,
            ..Default::default()
        },
        ..Settings::default()
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends.clone()).await;
    let cart = TestCart::new(0);
    post_checkouts(&app.http, std::slice::from_ref(&cart)).await;
    let settled = wait_until_settled(&app.http, &[cart.cart_id], Duration::from_secs(20)).await;
    assert_eq!(settled[&cart.cart_id]["status_reason"], "payment_timeout");
    // The gateway charged anyway, late; the answer asks for a refund.
    refunded_after_timeout(&backends, &cart).await;
    let (_, detail) = app.get(&format!("/carts/{}", cart.cart_id)).await;
    assert_eq!(detail["status"], "cancelled", "still cancelled: {detail}");
    let (_, paid) = app.get("/reports/sales?status=paid").await;
    assert_eq!(paid["buckets"], json!([]), "nothing counts as paid");
    app.stop().await;
}

/// Waits (bounded) until the cart's one charge is refunded; checks it
/// succeeded and that the stream ends with the checkout, its cancel for
/// `payment_timeout` and the refund request. Answers the charge.
async fn refunded_after_timeout(
    backends: &Backends,
    cart: &TestCart,
) -> salestrack_core::ports::Charge {
    let ledger = backends.payment_ledger().expect("a ledger");
    let deadline = Instant::now() + Duration::from_secs(30);
    let charge = loop {
        let charges = ledger.charges(cart.cart_id).await.expect("ledger");
        assert!(charges.len() <= 1, "charged once: {charges:?}");
        if let Some(refunded) = charges.into_iter().find(|c| c.refunded_at.is_some()) {
            break refunded;
        }
        assert!(Instant::now() < deadline, "the charge was never refunded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(charge.status, ChargeStatus::Succeeded);
    let stream = backends
        .event_store()
        .expect("an event store")
        .read_stream(cart.cart_id)
        .await
        .expect("stream");
    let kinds: Vec<&str> = stream.iter().map(|e| e.event.kind().as_str()).collect();
    assert_eq!(
        &kinds[kinds.len() - 3..],
        ["checkout_started", "cart_cancelled", "refund_requested"]
    );
    assert!(matches!(
        stream[stream.len() - 2].event,
        Event::CartCancelled {
            reason: CancelReason::PaymentTimeout,
            ..
        }
    ));
    charge
}

/// A gateway whose answers never reach the bus: the charge is in the
/// ledger, the `record_payment` that says so is lost.
struct LostAnswers;

#[async_trait::async_trait]
impl Producer for LostAnswers {
    async fn send(
        &self,
        _: OutboundRecord,
    ) -> Result<salestrack_core::ports::Delivery, salestrack_core::ports::BackendError> {
        Ok(salestrack_core::ports::Delivery {
            partition: 0,
            offset: 0,
        })
    }
}

/// The gateway charges, and its answer is lost (here the test plays the
/// gateway, with a producer that drops what it is given): the saga's timer
/// cancels the cart for `payment_timeout`, and the cancel's reconciliation
/// with the ledger finds the charge, answers it again, and the domain asks
/// for its refund. The ledger ends with the charge refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_whose_answer_is_lost_after_the_charge_is_refunded_once_the_checkout_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        data_dir: dir.path().into(),
        poll_wait_ms: 20,
        consumers: "domain,projector,saga_timer".into(),
        payment: salestrack_platform::PaymentSettings {
            timeout_ms: 1_000,
            sweep_ms: 50,
            ..Default::default()
        },
        ..Settings::default()
    };
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings.clone(), backends.clone()).await;
    let cart = TestCart::new(0);
    assert_eq!(cart.pays, Pays::Card);
    post_checkouts(&app.http, std::slice::from_ref(&cart)).await;

    // The gateway: the charge request, charged, answered into the void.
    let mut payments = backends
        .consumer(&settings.payment_group, &[&settings.topics.payments])
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut requests = Vec::new();
    while requests.is_empty() {
        assert!(Instant::now() < deadline, "no payment request");
        requests = payments
            .poll(10, Duration::from_millis(200))
            .await
            .expect("poll");
    }
    let gateway = salestrack_payment::Deps {
        ledger: backends.payment_ledger().expect("a ledger"),
        producer: Arc::new(LostAnswers),
        clock: Arc::new(salestrack_core::ports::SystemClock),
        topics: settings.topics.clone(),
        gateway: salestrack_payment::Gateway {
            decline_rate: 0.0,
            delay: Duration::ZERO,
        },
        keys: backends.key_store().expect("a key store"),
    };
    let batch = salestrack_msk::batch(&requests, "arn", "embedded");
    let handled = salestrack_payment::handler(
        lambda_runtime::LambdaEvent::new(batch, lambda_runtime::Context::default()),
        &gateway,
    )
    .await;
    // The checkout was posted twice: its repeat asks again, and gets the
    // ledger's one charge.
    assert!(handled.report.succeeded >= 1, "{handled:?}");
    assert!(handled.failures.is_empty(), "{handled:?}");
    payments.commit(&requests).await.expect("commit");
    drop(payments);

    let settled = wait_until_settled(&app.http, &[cart.cart_id], Duration::from_secs(20)).await;
    assert_eq!(settled[&cart.cart_id]["status_reason"], "payment_timeout");

    // The payment function comes (back): it handles the reconciliation.
    let gateway_runner = spawn_with(
        Settings {
            consumers: "payment".into(),
            ..settings.clone()
        },
        backends.clone(),
    )
    .await;
    let charge = refunded_after_timeout(&backends, &cart).await;
    assert_eq!(charge.amount, cart.charge());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, detail) = app.get(&format!("/carts/{}", cart.cart_id)).await;
        assert_eq!(detail["status"], "cancelled", "{detail}");
        if detail["checkout"]["refunded"] == json!(cart.charge().to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refund never showed: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway_runner.stop().await;
    app.stop().await;
}

/// The runner binary over embedded backends in `dir`, on `port`.
fn runner_process(dir: &Path, port: u16) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_salestrack-local-runner"))
        .env("SALESTRACK_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SALESTRACK_DATA_DIR", dir)
        .env("SALESTRACK_POLL_WAIT_MS", "20")
        .env("SALESTRACK_PAYMENT_TIMEOUT_MS", "3000")
        .env("SALESTRACK_PAYMENT_SWEEP_MS", "100")
        .env("SALESTRACK_PAYMENT_DECLINE_RATE", "0.25")
        .env("SALESTRACK_PAYMENT_DELAY_MS", "200")
        .env(
            "RUST_LOG",
            std::env::var("RUNNER_LOG").unwrap_or("warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the runner")
}

/// SIGKILL while checkouts and payments are in flight, restart on the same
/// data: every checkout that started settles within its timeout, none is
/// charged twice, and the stores agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_mid_checkout_leaves_no_cart_stuck_and_none_charged_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Restarted on this port: one the kernel never gives a client.
    let port = salestrack_port_tests::servers::free_port();
    let http = Http::new(&format!("http://127.0.0.1:{port}"));
    let mut runner = runner_process(dir.path(), port);
    http.wait_until_ready().await;
    let carts: Vec<TestCart> = (0..300).map(TestCart::new).collect();
    let load = {
        let (http, carts) = (Http::new(&http.base), carts.clone());
        tokio::spawn(async move { post_checkouts(&http, &carts).await })
    };
    // Mid-load: once the gateway has answered a few checkouts, while more
    // are being posted and others wait for their payment.
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumed(&http).await.0 < 10 {
        assert!(Instant::now() < deadline, "no payment was ever handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight = !load.is_finished();
    runner.kill().await.expect("SIGKILL");
    let killed_at = Instant::now();
    let accepted = load.await.expect("load");
    let _restarted = runner_process(dir.path(), port);
    http.wait_until_ready().await;

    let events: Arc<dyn EventStore> = Arc::new(
        salestrack_embedded::EmbeddedEventStore::open(&dir.path().join("events.sqlite"))
            .expect("events"),
    );
    let ledger: Arc<dyn PaymentLedger> = Arc::new(
        salestrack_embedded::EmbeddedPaymentLedger::open(&dir.path().join("payments.sqlite"))
            .expect("ledger"),
    );
    // Every cart whose checkout started, accepted or merely in flight at
    // the kill, settles within the timeout (3 s) plus the restart.
    let mut started = Vec::new();
    for cart in &carts {
        let stream = events.read_stream(cart.cart_id).await.expect("stream");
        if stream
            .iter()
            .any(|e| matches!(e.event, Event::CheckoutStarted(_)))
            || accepted.contains_key(&cart.cart_id)
        {
            started.push(cart.cart_id);
        }
    }
    assert!(
        !accepted.is_empty(),
        "some checkouts were accepted before the kill"
    );
    let settled = wait_until_settled(&http, &started, Duration::from_secs(30)).await;
    assert!(
        in_flight,
        "the kill came after the load: make the load longer"
    );
    println!(
        "{} checkouts accepted before the kill, {} started, all settled {:?} after it",
        accepted.len(),
        started.len(),
        killed_at.elapsed()
    );
    for cart in carts.iter().filter(|c| started.contains(&c.cart_id)) {
        let charges = ledger.charges(cart.cart_id).await.expect("ledger");
        let stream = events.read_stream(cart.cart_id).await.expect("stream");
        let checkouts = stream
            .iter()
            .filter(|e| matches!(e.event, Event::CheckoutStarted(_)))
            .count();
        let paid = stream
            .iter()
            .filter(|e| matches!(e.event, Event::PaymentSucceeded { .. }))
            .count();
        assert_eq!(checkouts, 1, "{cart:?}");
        assert!(charges.len() <= 1, "{cart:?}: charged twice: {charges:?}");
        let succeeded = charges
            .iter()
            .filter(|c| c.status == ChargeStatus::Succeeded)
            .count();
        assert_eq!(
            paid, succeeded,
            "{cart:?}: paid once for each successful charge"
        );
        let status = settled[&cart.cart_id]["status"].as_str();
        assert_eq!(
            status == Some("paid"),
            succeeded == 1,
            "{cart:?}: {status:?} vs {charges:?}"
        );
    }
}

/// The same on the engines users run: Apache Kafka, the ledger and event
/// store on Apache Cassandra (LWT), the read models and the timer's due
/// checkouts on OpenSearch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_checkouts_end_in_the_right_state_on_kafka_cassandra_and_opensearch() {
    use salestrack_test_engines::{Engine, EngineServer};
    let (Some(kafka), Some(cassandra), Some(opensearch)) = (
        EngineServer::shared(Engine::Kafka),
        EngineServer::shared(Engine::Cassandra),
        EngineServer::shared(Engine::OpenSearch),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let run = Uuid::new_v4().simple().to_string();
    let settings = common::engine_settings(
        common::OnEngines {
            kafka: &kafka.address(),
            cassandra: &cassandra.address(),
            keyspace: format!("saga{run}"),
            opensearch: &opensearch.address(),
            index_prefix: format!("saga-{run}"),
        },
        dir.path(),
    );
    many_checkouts_end_in_the_right_state(settings).await;
}
