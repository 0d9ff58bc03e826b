//! The `ReadStore` contract.

use crate::{at, line_of, new_cart, recorded};
use chrono::NaiveDate;
use salestrack_core::event::Event;
use salestrack_core::ids::CommandId;
use salestrack_core::ports::{
    CartSearch, ReadDocument, ReadStore, ReportDimension, SalesReportQuery, Upsert,
};
use salestrack_core::read_model::CartDetail;
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
        if let Some(line) = at_e.sales_line(e.event.order_id()) {
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
    assert_eq!(store.cart_detail(cart).await.expect("get"), Some(v2));
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
        store.cart_detail(cart).await.expect("detail"),
        Some(detail.clone())
    );
    assert_eq!(
        store.cart_summary(cart).await.expect("summary"),
        Some(detail.summary())
    );
    assert_eq!(store.cart_detail(new_cart()).await.expect("missing"), None);
}

pub async fn command_status_keeps_the_first_decision_at_a_version(store: Arc<dyn ReadStore>) {
    let outcome = Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: CommandId(Uuid::new_v4()),
        cart_id: new_cart(),
        order_id: salestrack_core::ids::OrderId(Uuid::new_v4()),
        command_type: "place_order".into(),
        status: OutcomeStatus::Applied,
        version: 3,
        duplicate: false,
        reason: None,
        decided_at: at(5),
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
        store.command_status(outcome.command_id).await.expect("get"),
        Some(outcome)
    );
}

pub async fn search_filters_by_user_time_and_product_words(store: Arc<dyn ReadStore>) {
    let user = format!("user-{}", Uuid::new_v4());
    let mut carts = Vec::new();
    for (minute, product) in [
        (1, "Blue Teapot"),
        (2, "Red kettle"),
        (3, "blue KETTLE 50%_off"),
    ] {
        let cart = new_cart();
        project(
            store.as_ref(),
            &recorded(
                cart,
                0,
                vec![Event::OrderPlaced(line_of(cart, &user, product, minute))],
            ),
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
    let ids = |page: salestrack_core::ports::CartPage| {
        page.carts.iter().map(|c| c.cart_id).collect::<Vec<_>>()
    };

    let all = ids(store.search_carts(&search(None)).await.expect("all"));
    assert_eq!(all, vec![carts[2], carts[1], carts[0]], "newest first");

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

    let literal = ids(store
        .search_carts(&search(Some("50%_")))
        .await
        .expect("literal"));
    assert_eq!(
        literal,
        vec![carts[2]],
        "wildcards in the query are literal"
    );

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

pub async fn the_sales_report_sums_exact_money_of_active_lines(store: Arc<dyn ReadStore>) {
    let seller = format!("seller-{}", Uuid::new_v4());
    let cart = new_cart();
    let mut a = line_of(cart, "u", "Teapot", 1);
    let mut b = line_of(cart, "u", "Teapot", 2);
    let mut c = line_of(cart, "u", "Teapot", 3);
    for l in [&mut a, &mut b, &mut c] {
        l.seller_info = seller.clone();
        l.quantity = 1;
        l.amount = salestrack_core::money::Money::non_negative("0.10".parse().expect("decimal"))
            .expect("money");
        l.discounts = salestrack_core::money::Money::ZERO;
        l.subtotal = l.amount;
        l.tax_amount =
            salestrack_core::money::Money::non_negative("0.02".parse().expect("decimal"))
                .expect("money");
    }
    let cancelled = c.order_id;
    let events = recorded(
        cart,
        0,
        vec![
            Event::OrderPlaced(a),
            Event::OrderPlaced(b),
            Event::OrderPlaced(c),
            Event::OrderCancelled {
                order_id: cancelled,
                reason: None,
            },
        ],
    );
    project(store.as_ref(), &events).await;
    let report = store
        .sales_report(&SalesReportQuery {
            group_by: ReportDimension::Seller,
            from: None,
            to: None,
        })
        .await
        .expect("report");
    let mine: Vec<_> = report.into_iter().filter(|b| b.key == seller).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        mine[0].revenue.to_string(),
        "0.20",
        "0.10 + 0.10 exactly, the cancelled line left out"
    );
    assert_eq!(mine[0].tax.to_string(), "0.04");
    assert_eq!((mine[0].units, mine[0].lines), (2, 2));

    let day = NaiveDate::from_ymd_opt(2026, 11, 20).expect("date");
    let by_day = store
        .sales_report(&SalesReportQuery {
            group_by: ReportDimension::Day,
            from: Some(day),
            to: Some(day),
        })
        .await
        .expect("by day");
    assert!(by_day.iter().any(|b| b.key == "2026-11-20"));
    let next_day = day.succ_opt().expect("date");
    let none = store
        .sales_report(&SalesReportQuery {
            group_by: ReportDimension::Day,
            from: Some(next_day),
            to: None,
        })
        .await
        .expect("empty");
    assert!(none.is_empty());
}
