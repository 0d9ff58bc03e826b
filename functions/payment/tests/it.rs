//! The payment function's handler and timer over the embedded bus, ledger
//! and read store: charges at most once however often a request comes,
//! the mock rules, refunds, poison, and the deadlines it finds.

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{Duration as Span, Utc};
use lambda_runtime::{Context, LambdaEvent};
use rust_decimal::Decimal;
use salestrack_core::command::{Command, PaymentResult};
use salestrack_core::event::{Checkout, Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId, PaymentId};
use salestrack_core::ports::{
    BusRecord, ChargeStatus, Consumer, PaymentLedger, ReadDocument, ReadStore, SystemClock,
};
use salestrack_core::read_model::CartDetail;
use salestrack_core::testing::line;
use salestrack_core::wire::{CommandRecord, PaymentRequest};
use salestrack_embedded::{
    EmbeddedBus, EmbeddedKeyStore, EmbeddedPaymentLedger, EmbeddedReadStore,
};
use salestrack_payment::{expire_due, handler, BatchReport, Deps, Gateway};
use salestrack_platform::Topics;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

struct World {
    _dir: tempfile::TempDir,
    bus: EmbeddedBus,
    ledger: EmbeddedPaymentLedger,
    keys: EmbeddedKeyStore,
    topics: Topics,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    World {
        bus: EmbeddedBus::open(&dir.path().join("bus.sqlite"), 4).expect("bus"),
        ledger: EmbeddedPaymentLedger::open(&dir.path().join("payments.sqlite")).expect("ledger"),
        keys: EmbeddedKeyStore::open(&dir.path().join("keys.sqlite")).expect("keys"),
        topics: Topics::default(),
        _dir: dir,
    }
}

impl World {
    fn deps(&self, decline_rate: f64) -> Deps {
        Deps {
            ledger: Arc::new(self.ledger.clone()),
            producer: Arc::new(self.bus.clone()),
            clock: Arc::new(SystemClock),
            topics: self.topics.clone(),
            gateway: Gateway {
                decline_rate,
                delay: Duration::ZERO,
            },
            keys: Arc::new(self.keys.clone()),
        }
    }

    /// Every answer the function put on the commands topic so far.
    async fn answers(&self) -> Vec<CommandRecord> {
        let mut consumer = self.bus.consumer("test", &[&self.topics.commands]);
        let records = consumer
            .poll(10_000, Duration::from_millis(50))
            .await
            .expect("poll");
        records
            .iter()
            .map(|r| CommandRecord::decode(r.value.as_deref().expect("value")).expect("a command"))
            .collect()
    }
}

/// The charge request of a cart's checkout at version 2, by `method`.
fn charge_request(cart_id: CartId, method: &str) -> PaymentRequest {
    let checkout = RecordedEvent::number(
        cart_id,
        1,
        CommandId(Uuid::new_v4()),
        Utc::now(),
        vec![Event::CheckoutStarted(Checkout {
            payment_method: method.into(),
            amount: "427.98".parse().expect("amount"),
            currency: line().currency,
            expires_at: Utc::now() + Span::seconds(30),
        })],
    );
    PaymentRequest::for_event(&checkout[0]).expect("a charge")
}

fn batch(requests: &[PaymentRequest]) -> LambdaEvent<KafkaEvent> {
    let records: Vec<BusRecord> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| BusRecord {
            topic: "sales.payments".into(),
            partition: 0,
            offset: i as i64,
            timestamp: Utc::now(),
            key: Some(r.cart_id.to_string().into_bytes()),
            value: Some(r.encode()),
            headers: vec![],
        })
        .collect();
    LambdaEvent::new(
        salestrack_msk::batch(&records, "arn:test", "test"),
        Context::default(),
    )
}

#[tokio::test]
async fn a_charge_delivered_again_and_again_is_charged_once_and_answered_the_same() {
    let w = world();
    let cart = CartId(Uuid::new_v4());
    let request = charge_request(cart, "card");
    // Half the attempts would decline: only the first recorded counts.
    let deps = w.deps(0.5);
    for _ in 0..3 {
        let result = handler(batch(&[request.clone(), request.clone()]), &deps).await;
        assert!(result.failures.is_empty());
    }
    let charges = w.ledger.charges(cart).await.expect("ledger");
    assert_eq!(charges.len(), 1, "{charges:?}");
    let answers = w.answers().await;
    assert_eq!(answers.len(), 6, "every delivery is answered");
    let first = &answers[0];
    for answer in &answers {
        assert_eq!(answer.command_id, first.command_id, "one command id");
        assert_eq!(answer.command, first.command, "the same answer");
    }
    let Command::RecordPayment(payment) = &first.command else {
        panic!("not a payment answer: {first:?}")
    };
    assert_eq!(payment.payment_id, PaymentId::for_checkout(cart, 2));
    assert_eq!((payment.checkout, payment.amount), (2, charges[0].amount));
    let expected = match charges[0].status {
        ChargeStatus::Succeeded => PaymentResult::Succeeded,
        ChargeStatus::Declined => PaymentResult::Declined,
    };
    assert_eq!(payment.result, expected);
}

#[tokio::test]
async fn test_decline_is_declined_and_test_timeout_never_answered() {
    let w = world();
    let (declined, silent, paid) = (
        CartId(Uuid::new_v4()),
        CartId(Uuid::new_v4()),
        CartId(Uuid::new_v4()),
    );
    let result = handler(
        batch(&[
            charge_request(declined, "test-decline"),
            charge_request(silent, "test-timeout"),
            charge_request(paid, "card"),
        ]),
        &w.deps(0.0),
    )
    .await;
    assert_eq!(
        result.report,
        BatchReport {
            succeeded: 1,
            declined: 1,
            unanswered: 1,
            refunded: 0,
            reconciled: 0,
        }
    );
    assert!(w.ledger.charges(silent).await.expect("ledger").is_empty());
    let declined_charge = &w.ledger.charges(declined).await.expect("ledger")[0];
    assert_eq!(declined_charge.status, ChargeStatus::Declined);
    assert!(declined_charge.decline_reason.is_some());
    let answered: Vec<CartId> = w
        .answers()
        .await
        .iter()
        .map(|a| a.command.cart_id())
        .collect();
    assert_eq!(answered.len(), 2);
    assert!(!answered.contains(&silent));
}

/// Payment methods arrive sealed under their user's key: the gateway
/// opens them to charge, the ledger keeps them sealed, and one whose key
/// was destroyed (its user erased) is declined, never charged as a guess.
#[tokio::test]
async fn sealed_payment_methods_are_opened_to_charge_and_kept_sealed() {
    use salestrack_core::personal::PersonalField;
    use salestrack_core::ports::KeyStore;
    let w = world();
    let (declined, silent, paid, erased) = (
        CartId(Uuid::new_v4()),
        CartId(Uuid::new_v4()),
        CartId(Uuid::new_v4()),
        CartId(Uuid::new_v4()),
    );
    let kept = w.keys.sealing_key("kept").await.expect("key");
    let gone = w.keys.sealing_key("gone").await.expect("key");
    let sealed = |key: &salestrack_core::personal::DataKey, method| {
        key.seal(PersonalField::PaymentMethod, method).to_token()
    };
    let paid_method = sealed(&kept, "card");
    w.keys.destroy("gone").await.expect("destroy");
    let result = handler(
        batch(&[
            charge_request(declined, &sealed(&kept, "test-decline")),
            charge_request(silent, &sealed(&kept, "test-timeout")),
            charge_request(paid, &paid_method),
            charge_request(erased, &sealed(&gone, "card")),
        ]),
        &w.deps(0.0),
    )
    .await;
    assert_eq!(
        result.report,
        BatchReport {
            succeeded: 1,
            declined: 2,
            unanswered: 1,
            refunded: 0,
            reconciled: 0,
        }
    );
    let charged = &w.ledger.charges(paid).await.expect("ledger")[0];
    assert_eq!(
        (charged.status, charged.payment_method.as_str()),
        (ChargeStatus::Succeeded, paid_method.as_str())
    );
    let refused = &w.ledger.charges(erased).await.expect("ledger")[0];
    assert_eq!(refused.status, ChargeStatus::Declined);
    assert!(
        refused
            .decline_reason
            .as_deref()
            .is_some_and(|r| r.contains("erased")),
        "{refused:?}"
    );
    assert!(w.ledger.charges(silent).await.expect("ledger").is_empty());
}

#[tokio::test]
async fn a_refund_request_refunds_the_charge_once() {
    let w = world();
    let cart = CartId(Uuid::new_v4());
    let deps = w.deps(0.0);
    handler(batch(&[charge_request(cart, "card")]), &deps).await;
    let refund = RecordedEvent::number(
        cart,
        3,
        CommandId(Uuid::new_v4()),
        Utc::now(),
        vec![Event::RefundRequested {
            checkout: 2,
            payment_id: PaymentId::for_checkout(cart, 2),
            amount: "427.98".parse().expect("amount"),
        }],
    );
    let request = PaymentRequest::for_event(&refund[0]).expect("a refund");
    let result = handler(batch(&[request.clone(), request]), &deps).await;
    assert_eq!(result.report.refunded, 2);
    let charges = w.ledger.charges(cart).await.expect("ledger");
    assert!(charges[0].refunded_at.is_some(), "{charges:?}");
    assert_eq!(w.answers().await.len(), 1, "a refund answers nothing");
}

#[tokio::test]
async fn poison_fails_its_record_for_good_and_the_rest_is_handled() {
    let w = world();
    let good = charge_request(CartId(Uuid::new_v4()), "card");
    let mut event = batch(&[good.clone(), good]);
    let records = event
        .payload
        .records
        .get_mut("sales.payments-0")
        .expect("partition");
    records[0].value = Some("bm90IGpzb24=".into()); // "not json"
    let result = handler(event, &w.deps(0.0)).await;
    let response = serde_json::to_value(result.response()).expect("json");
    assert_eq!(
        response["batchItemFailures"][0]["itemIdentifier"]["offset"], 0,
        "{response}"
    );
    assert_eq!(result.failures.len(), 1);
    assert!(!result.failures[0].retryable, "poison is permanent");
}

#[tokio::test]
async fn the_fixture_batch_is_a_charge_of_the_derived_payment_id() {
    let w = world();
    let event: KafkaEvent =
        serde_json::from_str(include_str!("../fixtures/charge.json")).expect("fixture");
    let result = handler(LambdaEvent::new(event, Context::default()), &w.deps(0.0)).await;
    assert_eq!(result.report.succeeded, 1, "{:?}", result.failures);
    let cart: CartId = "6f1c1f2e-3c7d-4a8e-9b3a-2d5e6f7a8b9c"
        .parse()
        .expect("cart");
    let charges = w.ledger.charges(cart).await.expect("ledger");
    assert_eq!(charges[0].payment_id, PaymentId::for_checkout(cart, 2));
    assert_eq!(charges[0].amount, Decimal::new(42798, 2));
    let schedule: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/schedule.json")).expect("fixture");
    assert_eq!(
        schedule["source"], "aws.events",
        "what main.rs dispatches on"
    );
}

/// A new cart checked out, its deadline `expires_in` from now.
fn checked_out(expires_in: Span) -> (CartId, CartDetail) {
    let cart = CartId(Uuid::new_v4());
    let mut first = line();
    first.cart_id = cart;
    let events = RecordedEvent::number(
        cart,
        0,
        CommandId(Uuid::new_v4()),
        Utc::now(),
        vec![
            Event::OrderPlaced(first),
            Event::CheckoutStarted(Checkout {
                payment_method: "card".into(),
                amount: Decimal::ONE,
                currency: line().currency,
                expires_at: Utc::now() + expires_in,
            }),
        ],
    );
    (cart, CartDetail::fold(&events).expect("cart"))
}

#[tokio::test]
async fn the_timer_expires_the_checkouts_past_their_deadline_only() {
    let w = world();
    let dir = tempfile::tempdir().expect("tempdir");
    let read = EmbeddedReadStore::open(&dir.path().join("read.sqlite")).expect("read store");
    let (late, late_cart) = checked_out(Span::seconds(-5));
    let (_, early_cart) = checked_out(Span::seconds(60));
    for cart in [late_cart, early_cart] {
        read.upsert(ReadDocument::CartSummary(cart.summary()))
            .await
            .expect("summary");
    }
    let (sent, next) = expire_due(&read, &w.bus, &SystemClock, &w.topics, None)
        .await
        .expect("timer");
    assert_eq!(sent, 1);
    assert!(next.is_none(), "a short page: the next sweep starts over");
    let answers = w.answers().await;
    assert!(
        matches!(&answers[0].command, Command::ExpireCheckout(e) if e.cart_id == late && e.checkout == 2),
        "{answers:?}"
    );
}

/// More due checkouts than one page holds, all older than a newer one, and
/// none of them ever leaving the read model's `checking_out` (as when their
/// settling event has not been projected): the first sweep sends a full
/// page, the next one goes on after it and reaches the newer deadline
/// instead of sending the same page again; then the sweep starts over.
#[tokio::test]
async fn the_timer_pages_past_checkouts_the_read_model_still_shows_open() {
    let w = world();
    let dir = tempfile::tempdir().expect("tempdir");
    let read = EmbeddedReadStore::open(&dir.path().join("read.sqlite")).expect("read store");
    let stale = salestrack_payment::EXPIRE_BATCH as i64 + 20;
    for i in 0..stale {
        let (_, cart) = checked_out(Span::seconds(-3_600 + i));
        read.upsert(ReadDocument::CartSummary(cart.summary()))
            .await
            .expect("summary");
    }
    let (newest, cart) = checked_out(Span::seconds(-5));
    read.upsert(ReadDocument::CartSummary(cart.summary()))
        .await
        .expect("summary");

    let (sent, next) = expire_due(&read, &w.bus, &SystemClock, &w.topics, None)
        .await
        .expect("first page");
    assert_eq!(sent, salestrack_payment::EXPIRE_BATCH as usize);
    assert!(
        next.is_some(),
        "a full page: the next sweep goes on after it"
    );
    let expired = |answers: &[CommandRecord]| {
        answers
            .iter()
            .filter(|a| matches!(&a.command, Command::ExpireCheckout(e) if e.cart_id == newest))
            .count()
    };
    assert_eq!(expired(&w.answers().await), 0, "not on the first page");
    let (sent, next) = expire_due(&read, &w.bus, &SystemClock, &w.topics, next)
        .await
        .expect("second page");
    assert_eq!(sent, 21, "the 20 stale ones left, and the newest");
    assert!(next.is_none());
    assert_eq!(
        expired(&w.answers().await),
        1,
        "the newest deadline was reached"
    );
}
