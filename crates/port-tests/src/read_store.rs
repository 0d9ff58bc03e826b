//! The `ReadStore` contract.

use crate::{at, line_of, new_cart, recorded};
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use salestrack_core::command::OrderLine;
use salestrack_core::event::Event;
use salestrack_core::ids::{CartId, CommandId};
use salestrack_core::money::Money;
use salestrack_core::ports::{ReadDocument, ReadStore, Reader, Upsert};
use salestrack_core::read_model::CartDetail;
use salestrack_core::search::{
    CartSearch, ReportDimension, ReportInterval, ReportStatus, SalesReportQuery,
};
use salestrack_core::wire::{Outcome, OutcomeStatus, SCHEMA_VERSION};
use std::sync::Arc;
use uuid::Uuid;

/// Projects `events` of one cart fully into the store, the way the projector
/// does: every sales line at the version of its last event, then the summary,
/// then the detail.
pub async fn project(
    store: &dyn ReadStore,
    events: &[salestrack_core::event::RecordedEvent],
) -> CartDetail {
    let detail = CartDetail::fold(events).expect("a cart");
    for e in events {
        let at_e =
            CartDetail::fold(events.iter().take_while(|x| x.version <= e.version)).expect("a cart");
        for line in at_e
            .lines_changed_by(&e.event)
            .into_iter()
            .filter_map(|id| at_e.sales_line(id))
        {
            store
                .upsert(ReadDocument::SalesLine(line))
                .await
                .expect("sales line");
        }
    }
    store
        .upsert(ReadDocument::CartSummary(detail.summary()))
        .await
        .expect("summary");
    store
        .upsert(ReadDocument::CartDetail(detail.clone()))
        .await
        .expect("detail");
    detail
}

pub async fn an_upsert_keeps_only_the_newest_version(store: Arc<dyn ReadStore>) {
    let cart = new_cart();
    let events = recorded(
        cart,
        0,
        vec![
            Event::OrderPlaced(line_of(cart, "u", "a", 1)),
            Event::OrderPlaced(line_of(cart, "u", "b", 2)),
        ],
    );
    let v1 = CartDetail::fold(&events[..1]).expect("cart");
    let v2 = CartDetail::fold(&events).expect("cart");
    assert_eq!(
        store
            .upsert(ReadDocument::CartDetail(v2.clone()))
            .await
            .expect("v2"),
        Upsert::Written
    );
    assert_eq!(
        store
            .upsert(ReadDocument::CartDetail(v1))
            .await
            .expect("v1"),
        Upsert::Stale
    );
    assert_eq!(
        store
            .upsert(ReadDocument::CartDetail(v2.clone()))
            .await
            .expect("v2 again"),
        Upsert::Stale
    );
    assert_eq!(
        store.cart_detail(cart, Reader::Any).await.expect("get"),
        Some(v2)
    );
}

pub async fn documents_read_back_as_written(store: Arc<dyn ReadStore>) {
    let cart = new_cart();
    let events = recorded(
        cart,
        0,
        vec![Event::OrderPlaced(line_of(cart, "u", "Teapot", 1))],
    );
    let detail = project(store.as_ref(), &events).await;
    assert_eq!(
        store.cart_detail(cart, Reader::Any).await.expect("detail"),
        Some(detail.clone())
    );
    assert_eq!(
        store
            .cart_summary(cart, Reader::Any)
            .await
            .expect("summary"),
        Some(detail.summary())
    );
    assert_eq!(
        store
            .cart_detail(new_cart(), Reader::Any)
            .await
            .expect("missing"),
        None
    );
    assert_eq!(
        store
            .cart_details(&[new_cart(), cart, new_cart()])
            .await
            .expect("details"),
        vec![None, Some(detail), None],
        "several details at once, in the order asked"
    );
    assert_eq!(
        store.cart_details(&[]).await.expect("none asked"),
        Vec::new()
    );
}

pub async fn command_status_keeps_the_first_decision_at_a_version(store: Arc<dyn ReadStore>) {
    let outcome = Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: CommandId(Uuid::new_v4()),
        cart_id: new_cart(),
        order_id: Some(salestrack_core::ids::OrderId(Uuid::new_v4())),
        command_type: "place_order".into(),
        status: OutcomeStatus::Applied,
        version: 3,
        duplicate: false,
        reason: None,
        decided_at: at(5),
        user_id: Some("u".into()),
    };
    store
        .upsert(ReadDocument::CommandStatus(outcome.clone()))
        .await
        .expect("write");
    let repeat = Outcome {
        duplicate: true,
        ..outcome.clone()
    };
    assert_eq!(
        store
            .upsert(ReadDocument::CommandStatus(repeat))
            .await
            .expect("repeat"),
        Upsert::Stale
    );
    assert_eq!(
        store
            .command_status(outcome.command_id, Reader::Any)
            .await
            .expect("get"),
        Some(outcome)
    );
}

/// The owner-filtered reads answer a cart's detail and summary, and a
/// command's status, to their owner only; to anyone else they are absent.
pub async fn owned_reads_answer_the_owner_only(store: Arc<dyn ReadStore>) {
    let (alice, bob) = (
        format!("alice-{}", Uuid::new_v4()),
        format!("bob-{}", Uuid::new_v4()),
    );
    let cart = new_cart();
    let events = recorded(
        cart,
        0,
        vec![Event::OrderPlaced(line_of(cart, &alice, "Teapot", 1))],
    );
    let detail = project(store.as_ref(), &events).await;
    let outcome = Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: events[0].command_id,
        cart_id: cart,
        order_id: events[0].event.order_id(),
        command_type: "place_order".into(),
        status: OutcomeStatus::Applied,
        version: 1,
        duplicate: false,
        reason: None,
        decided_at: at(1),
        user_id: Some(alice.clone()),
    };
    store
        .upsert(ReadDocument::CommandStatus(outcome.clone()))
        .await
        .expect("status");

    let detail_for = |who: String| {
        let store = Arc::clone(&store);
        async move {
            store
                .cart_detail(cart, Reader::Owner(&who))
                .await
                .expect("detail")
        }
    };
    assert_eq!(detail_for(alice.clone()).await, Some(detail.clone()));
    assert_eq!(detail_for(bob.clone()).await, None, "not Bob's cart");
    assert_eq!(
        store
            .cart_summary(cart, Reader::Owner(&alice))
            .await
            .expect("summary"),
        Some(detail.summary())
    );
    assert_eq!(
        store
            .cart_summary(cart, Reader::Owner(&bob))
            .await
            .expect("summary"),
        None
    );
    assert_eq!(
        store
            .command_status(outcome.command_id, Reader::Owner(&alice))
            .await
            .expect("status"),
        Some(outcome.clone())
    );
    assert_eq!(
        store
            .command_status(outcome.command_id, Reader::Owner(&bob))
            .await
            .expect("status"),
        None
    );
    assert_eq!(
        store
            .cart_detail(new_cart(), Reader::Owner(&alice))
            .await
            .expect("none"),
        None,
        "an unknown cart"
    );
}

pub async fn search_filters_by_user_time_currency_and_product_words(store: Arc<dyn ReadStore>) {
    let user = format!("user-{}", Uuid::new_v4());
    let mut carts = Vec::new();
    for (minute, product, currency) in [
        (1, "Blue Teapot", "EUR"),
        (2, "Red kettle", "EUR"),
        (3, "blue KETTLE 50%_off", "EUR"),
        (4, "Green teapot", "USD"),
    ] {
        let cart = new_cart();
        let mut line = line_of(cart, &user, product, minute);
        line.currency = currency.parse().expect("currency");
        project(
            store.as_ref(),
            &recorded(cart, 0, vec![Event::OrderPlaced(line)]),
        )
        .await;
        carts.push(cart);
    }
    let search = |q: Option<&str>| CartSearch {
        user_id: Some(user.clone()),
        q: q.map(str::to_owned),
        limit: 10,
        ..CartSearch::default()
    };
    let ids = |page: salestrack_core::search::CartPage| {
        page.carts.iter().map(|c| c.cart_id).collect::<Vec<_>>()
    };

    let all = ids(store.search_carts(&search(None)).await.expect("all"));
    assert_eq!(
        all,
        vec![carts[3], carts[2], carts[1], carts[0]],
        "newest first"
    );

    let dollars = CartSearch {
        currency: Some("USD".into()),
        ..search(None)
    };
    assert_eq!(
        ids(store.search_carts(&dollars).await.expect("usd")),
        vec![carts[3]],
        "currency filter"
    );

    let kettles = ids(store
        .search_carts(&search(Some("kettle")))
        .await
        .expect("kettle"));
    assert_eq!(
        kettles,
        vec![carts[2], carts[1]],
        "case-insensitive word match"
    );

    let blue_kettles = ids(store
        .search_carts(&search(Some("BLUE kettle")))
        .await
        .expect("blue kettle"));
    assert_eq!(blue_kettles, vec![carts[2]], "every word must match");

    // Engines differ on punctuation (a substring match keeps it, an analyzer
    // drops it), but a wildcard character never widens a search.
    for q in ["%", "_", "50%_"] {
        let found = ids(store.search_carts(&search(Some(q))).await.expect("literal"));
        assert!(
            found.iter().all(|c| *c == carts[2]),
            "{q:?} is literal, not a wildcard: {found:?}"
        );
    }

    let window = CartSearch {
        from: Some(at(2)),
        to: Some(at(3)),
        ..search(None)
    };
    assert_eq!(
        ids(store.search_carts(&window).await.expect("window")),
        vec![carts[1]],
        "from inclusive, to exclusive"
    );

    let other_user = CartSearch {
        user_id: Some("nobody".into()),
        ..search(None)
    };
    assert!(store
        .search_carts(&other_user)
        .await
        .expect("nobody")
        .carts
        .is_empty());
}

pub async fn search_pages_with_a_cursor_without_gaps_or_repeats(store: Arc<dyn ReadStore>) {
    let user = format!("user-{}", Uuid::new_v4());
    let mut expected = Vec::new();
    for minute in 0..7 {
        // Two carts per minute: the cursor must break ties by cart id.
        for _ in 0..2 {
            let cart = new_cart();
            project(
                store.as_ref(),
                &recorded(
                    cart,
                    0,
                    vec![Event::OrderPlaced(line_of(cart, &user, "mug", minute))],
                ),
            )
            .await;
            expected.push(cart);
        }
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .search_carts(&CartSearch {
                user_id: Some(user.clone()),
                limit: 3,
                after: after.clone(),
                ..CartSearch::default()
            })
            .await
            .expect("page");
        assert!(page.carts.len() <= 3);
        seen.extend(page.carts.iter().map(|c| (c.created_at, c.cart_id)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected.len(), "no repeats across pages");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first, ties broken by cart id descending"
    );
    let mut ids: Vec<_> = seen.iter().map(|(_, id)| *id).collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "no gaps");
}

/// A line of `cart` sold by `seller` at `at`, `quantity` units of `amount`.
fn sale(cart: CartId, seller: &str, at: DateTime<Utc>, quantity: u32, amount: &str) -> OrderLine {
    let money = |s: &str| Money::non_negative(s.parse().expect("decimal")).expect("money");
    let mut l = line_of(cart, "u", "Teapot", 0);
    l.created_at = at;
    l.seller_info = seller.into();
    l.quantity = quantity;
    l.amount = money(amount);
    l.discounts = Money::ZERO;
    l.subtotal = money(&(l.amount.value() * Decimal::from(quantity)).to_string());
    l.tax_amount = money("0.02");
    l
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("time")
}

pub async fn the_sales_report_sums_exact_money_of_active_lines(store: Arc<dyn ReadStore>) {
    // A seller of our own, so other checks' lines never count here.
    let seller = format!("seller-{}", Uuid::new_v4());
    let cart = new_cart();
    let a = sale(cart, &seller, utc(2026, 10, 31, 23, 59), 1, "0.10");
    let b = sale(cart, &seller, utc(2026, 11, 1, 0, 0), 3, "0.10");
    let c = sale(cart, &seller, utc(2026, 11, 1, 0, 30), 1, "0.10");
    let d = sale(cart, &seller, utc(2026, 11, 1, 1, 0), 2, "1000000.0001");
    let cancelled = c.order_id;
    let events = recorded(
        cart,
        0,
        vec![
            Event::OrderPlaced(a),
            Event::OrderPlaced(b),
            Event::OrderPlaced(c),
            Event::OrderPlaced(d),
            Event::OrderCancelled {
                order_id: cancelled,
                reason: None,
            },
        ],
    );
    project(store.as_ref(), &events).await;
    let report = |interval, from, to| {
        let store = store.clone();
        let seller = seller.clone();
        async move {
            let buckets = store
                .sales_report(&SalesReportQuery {
                    interval,
                    group_by: Some(ReportDimension::Seller),
                    from,
                    to,
                    status: ReportStatus::All,
                })
                .await
                .expect("report");
            buckets
                .into_iter()
                .filter(|b| b.key.as_deref() == Some(seller.as_str()))
                .map(|b| {
                    (
                        b.period,
                        b.revenue.to_string(),
                        b.tax.to_string(),
                        b.units,
                        b.orders,
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        report(None, None, None).await,
        vec![(None, "2000000.4002".into(), "0.06".into(), 6, 3)],
        "exact sums of the active lines, the cancelled one left out"
    );
    assert_eq!(
        report(Some(ReportInterval::Hour), None, None).await,
        vec![
            (
                Some(utc(2026, 10, 31, 23, 0)),
                "0.10".into(),
                "0.02".into(),
                1,
                1
            ),
            (
                Some(utc(2026, 11, 1, 0, 0)),
                "0.30".into(),
                "0.02".into(),
                3,
                1
            ),
            (
                Some(utc(2026, 11, 1, 1, 0)),
                "2000000.0002".into(),
                "0.02".into(),
                2,
                1
            ),
        ],
        "hours in order"
    );
    assert_eq!(
        report(Some(ReportInterval::Month), None, None).await,
        vec![
            (
                Some(utc(2026, 10, 1, 0, 0)),
                "0.10".into(),
                "0.02".into(),
                1,
                1
            ),
            (
                Some(utc(2026, 11, 1, 0, 0)),
                "2000000.3002".into(),
                "0.04".into(),
                5,
                2
            ),
        ],
        "months"
    );
    assert_eq!(
        report(
            Some(ReportInterval::Day),
            Some(utc(2026, 11, 1, 0, 0)),
            Some(utc(2026, 11, 1, 1, 0))
        )
        .await,
        vec![(
            Some(utc(2026, 11, 1, 0, 0)),
            "0.30".into(),
            "0.02".into(),
            3,
            1
        )],
        "from inclusive, to exclusive"
    );
}

pub async fn a_report_without_interval_or_dimension_totals_each_currency(
    store: Arc<dyn ReadStore>,
) {
    let seller = format!("seller-{}", Uuid::new_v4());
    let cart = new_cart();
    let mut yen = sale(new_cart(), &seller, utc(2031, 1, 1, 0, 0), 2, "500");
    yen.currency = "JPY".parse().expect("currency");
    let events = recorded(
        cart,
        0,
        vec![Event::OrderPlaced(sale(
            cart,
            &seller,
            utc(2031, 1, 1, 0, 0),
            1,
            "9.99",
        ))],
    );
    project(store.as_ref(), &events).await;
    let yen_cart = yen.cart_id;
    project(
        store.as_ref(),
        &recorded(yen_cart, 0, vec![Event::OrderPlaced(yen)]),
    )
    .await;
    // A year no other check writes to.
    let buckets = store
        .sales_report(&SalesReportQuery {
            interval: None,
            group_by: None,
            from: Some(utc(2031, 1, 1, 0, 0)),
            to: Some(utc(2031, 1, 2, 0, 0)),
            status: ReportStatus::All,
        })
        .await
        .expect("report");
    let got: Vec<_> = buckets
        .iter()
        .map(|b| {
            (
                b.period,
                b.key.clone(),
                b.currency.as_str(),
                b.revenue.to_string(),
                b.orders,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (None, None, "EUR", "9.99".to_string(), 1),
            (None, None, "JPY", "1000.00".to_string(), 1),
        ],
        "never adds two currencies together"
    );
}

/// The saga's events after a cart's `lines` placements: checked out at
/// version `lines + 1` with deadline `expires_at`, then `settle`d.
fn saga(
    cart: CartId,
    lines: Vec<OrderLine>,
    expires_at: DateTime<Utc>,
    settle: Option<Event>,
) -> Vec<salestrack_core::event::RecordedEvent> {
    use salestrack_core::event::Checkout;
    let currency = lines[0].currency;
    let mut events: Vec<Event> = lines.into_iter().map(Event::OrderPlaced).collect();
    events.push(Event::CheckoutStarted(Checkout {
        payment_method: "card".into(),
        amount: Decimal::ONE,
        currency,
        expires_at,
    }));
    events.extend(settle);
    recorded(cart, 0, events)
}

fn paid(cart: CartId, checkout: u64) -> Event {
    Event::PaymentSucceeded {
        payment_id: salestrack_core::ids::PaymentId::for_checkout(cart, checkout),
        amount: Decimal::ONE,
    }
}

fn timed_out() -> Event {
    Event::CartCancelled {
        reason: salestrack_core::event::CancelReason::PaymentTimeout,
        payment_id: None,
    }
}

pub async fn a_report_counts_the_lines_of_carts_in_the_status_asked(store: Arc<dyn ReadStore>) {
    // A day no other check writes to; each cart's lines cost 100 + minute.
    let day = |minute: u32| utc(2032, 2, 3, 10, minute);
    let line = |cart: CartId, minute: u32| {
        let mut l = line_of(cart, "reporter", "gadget", minute);
        l.created_at = day(minute);
        l.quantity = 1;
        l.discounts = Money::ZERO;
        l.amount = Money::non_negative(Decimal::from(100 + minute)).expect("money");
        l.subtotal = l.amount;
        l
    };
    let (open, checking, paid_cart, cancelled) = (new_cart(), new_cart(), new_cart(), new_cart());
    let far = utc(2099, 1, 1, 0, 0);
    project(
        store.as_ref(),
        &recorded(open, 0, vec![Event::OrderPlaced(line(open, 1))]),
    )
    .await;
    project(
        store.as_ref(),
        &saga(checking, vec![line(checking, 2)], far, None),
    )
    .await;
    let (a, b) = (line(paid_cart, 3), line(paid_cart, 4));
    project(
        store.as_ref(),
        &saga(paid_cart, vec![a, b], far, Some(paid(paid_cart, 3))),
    )
    .await;
    project(
        store.as_ref(),
        &saga(cancelled, vec![line(cancelled, 5)], far, Some(timed_out())),
    )
    .await;
    let revenue = |status| {
        let store = store.clone();
        async move {
            let buckets = store
                .sales_report(&SalesReportQuery {
                    interval: None,
                    group_by: None,
                    from: Some(day(0)),
                    to: Some(day(59)),
                    status,
                })
                .await
                .expect("report");
            buckets
                .iter()
                .map(|b| (b.revenue.to_string(), b.orders))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(revenue(ReportStatus::All).await, vec![("515.00".into(), 5)]);
    assert_eq!(
        revenue(ReportStatus::Open).await,
        vec![("203.00".into(), 2)]
    );
    assert_eq!(
        revenue(ReportStatus::Paid).await,
        vec![("207.00".into(), 2)]
    );
    assert_eq!(
        revenue(ReportStatus::Cancelled).await,
        vec![("105.00".into(), 1)]
    );
}

pub async fn due_checkouts_are_the_carts_checking_out_past_their_deadline(
    store: Arc<dyn ReadStore>,
) {
    let now = Utc::now();
    let seconds = chrono::Duration::seconds;
    let (late, later, early, settled, open) =
        (new_cart(), new_cart(), new_cart(), new_cart(), new_cart());
    let one = |cart| vec![line_of(cart, "sweeper", "gadget", 1)];
    project(
        store.as_ref(),
        &saga(late, one(late), now - seconds(60), None),
    )
    .await;
    project(
        store.as_ref(),
        &saga(later, one(later), now - seconds(30), None),
    )
    .await;
    project(
        store.as_ref(),
        &saga(early, one(early), now + seconds(600), None),
    )
    .await;
    project(
        store.as_ref(),
        &saga(
            settled,
            one(settled),
            now - seconds(60),
            Some(paid(settled, 2)),
        ),
    )
    .await;
    project(
        store.as_ref(),
        &recorded(open, 0, vec![Event::OrderPlaced(one(open).remove(0))]),
    )
    .await;
    let ours = [late, later, early, settled, open];
    let due: Vec<_> = store
        .due_checkouts(now, None, 10_000)
        .await
        .expect("due checkouts")
        .into_iter()
        .filter(|d| ours.contains(&d.cart_id))
        .collect();
    // Page by page (a page of 1), each after the last: the same carts, in
    // the same order, each once (the store may hold other tests' carts).
    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..10_000 {
        let page = store
            .due_checkouts(now, after.as_ref(), 1)
            .await
            .expect("a page of due checkouts");
        let Some(last) = page.into_iter().next() else {
            break;
        };
        if ours.contains(&last.cart_id) {
            paged.push((last.cart_id, last.checkout));
        }
        after = Some(last);
    }
    assert_eq!(paged, vec![(late, 2), (later, 2)], "paged with a cursor");
    assert_eq!(
        due.iter()
            .map(|d| (d.cart_id, d.checkout))
            .collect::<Vec<_>>(),
        vec![(late, 2), (later, 2)],
        "earliest deadline first; neither the settled, the early nor the open cart"
    );
    let deadline = now - seconds(60);
    assert!((due[0].expires_at - deadline).num_milliseconds().abs() <= 1);
}
