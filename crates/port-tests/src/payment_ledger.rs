//! The `PaymentLedger` contract: at most one charge per checkout, however
//! many attempts race or repeat, and a refund recorded once.

use crate::{at, new_cart};
use rust_decimal::Decimal;
use salestrack_core::ids::{CartId, PaymentId};
use salestrack_core::ports::{Charge, ChargeStatus, PaymentLedger};
use std::sync::Arc;

fn charge(cart_id: CartId, checkout: u64, status: ChargeStatus) -> Charge {
    Charge {
        payment_id: PaymentId::for_checkout(cart_id, checkout),
        cart_id,
        checkout,
        status,
        amount: "427.9800".parse::<Decimal>().expect("amount"),
        currency: "EUR".into(),
        payment_method: "card".into(),
        decline_reason: (status == ChargeStatus::Declined).then(|| "do not honour".into()),
        charged_at: at(1),
        refunded_at: None,
    }
}

pub async fn a_checkout_is_charged_once_however_often_it_is_asked(ledger: Arc<dyn PaymentLedger>) {
    let cart = new_cart();
    // Attempts that would decide differently (a random decline rate):
    // whichever is recorded first is every attempt's answer.
    let attempts = (0..8).map(|i| {
        let ledger = Arc::clone(&ledger);
        let status = if i % 2 == 0 {
            ChargeStatus::Succeeded
        } else {
            ChargeStatus::Declined
        };
        async move { ledger.charge_once(&charge(cart, 2, status)).await }
    });
    let answers: Vec<Charge> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("charges");
    let stored = ledger.charges(cart).await.expect("charges");
    assert_eq!(stored.len(), 1, "one charge per checkout: {stored:?}");
    assert!(
        answers.iter().all(|a| *a == stored[0]),
        "every attempt answers the stored charge"
    );
    assert_eq!(stored[0].amount.to_string(), "427.9800", "money exact");
    let again = ledger
        .charge_once(&charge(cart, 2, ChargeStatus::Succeeded))
        .await
        .expect("a repeat");
    assert_eq!(again, stored[0]);
}

pub async fn charges_are_kept_per_checkout(ledger: Arc<dyn PaymentLedger>) {
    let cart = new_cart();
    ledger
        .charge_once(&charge(cart, 5, ChargeStatus::Succeeded))
        .await
        .expect("charge");
    ledger
        .charge_once(&charge(cart, 2, ChargeStatus::Declined))
        .await
        .expect("charge");
    let stored = ledger.charges(cart).await.expect("charges");
    let got: Vec<_> = stored.iter().map(|c| (c.checkout, c.status)).collect();
    assert_eq!(
        got,
        vec![(2, ChargeStatus::Declined), (5, ChargeStatus::Succeeded)]
    );
    assert!(ledger.charges(new_cart()).await.expect("none").is_empty());
}

pub async fn a_refund_is_recorded_once(ledger: Arc<dyn PaymentLedger>) {
    let cart = new_cart();
    assert_eq!(
        ledger.refund(cart, 2, at(3)).await.expect("refund"),
        None,
        "nothing charged, nothing refunded"
    );
    ledger
        .charge_once(&charge(cart, 2, ChargeStatus::Succeeded))
        .await
        .expect("charge");
    let first = ledger.refund(cart, 2, at(3)).await.expect("refund");
    assert_eq!(first.and_then(|c| c.refunded_at), Some(at(3)));
    let second = ledger.refund(cart, 2, at(9)).await.expect("refund");
    assert_eq!(
        second.and_then(|c| c.refunded_at),
        Some(at(3)),
        "the first refund's time stays"
    );
    let stored = ledger.charges(cart).await.expect("charges");
    assert_eq!(stored[0].refunded_at, Some(at(3)));
}

/// One `#[tokio::test]` per check, for a module with an async `ledger()`
/// answering `Option<(guard, Arc<dyn PaymentLedger>)>` (`None`: skip; the
/// guard, a temporary directory say, lives as long as the check).
#[macro_export]
macro_rules! every_payment_ledger_check {
    () => {
        $crate::every_payment_ledger_check!(
            a_checkout_is_charged_once_however_often_it_is_asked,
            charges_are_kept_per_checkout,
            a_refund_is_recorded_once,
        );
    };
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some((_guard, ledger)) = ledger().await else { return };
            $crate::payment_ledger::$check(ledger).await;
        }
    )*};
}
