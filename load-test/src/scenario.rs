//! The goose scenarios, chosen with `--scenarios` (`--scenarios-list`
//! prints them; all run, weighted, by default):
//!
//! - `writeheavy`: only order placement: unique ids, realistic varied
//!   payloads, carts of 1 to 10 lines, a currency per cart;
//! - `mixedreadwrite`: one placement to four reads (cart, summary, search,
//!   report), reads without a token;
//! - `readyourwrites`: place a line, then read the cart with the write's
//!   consistency token: the `GET` latency is the command-to-visible latency
//!   through bus, domain and projector;
//! - `checkout`: fill a cart (1 to 10 lines), check it out, start the next:
//!   the checkout saga through domain, payment gateway and back.

use goose::prelude::*;
use rand::seq::IndexedRandom;
use rand::Rng;
use rust_decimal::Decimal;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::ReadStore;
use salestrack_core::search::SalesReportQuery;
use serde_json::{json, Value};
use std::time::Duration;

/// The name every placement request is counted under.
pub const PLACE: &str = "POST /orders";

/// The name every checkout request is counted under.
pub const CHECKOUT: &str = "POST /carts/{id}/checkout";

const PRODUCTS: [&str; 8] = [
    "Espresso machine",
    "Coffee grinder",
    "Milk jug",
    "Tamper",
    "Descaler",
    "Burr set",
    "Knock box",
    "Scale",
];
const SELLERS: [&str; 4] = ["Acme", "Globex", "Initech", "Umbrella"];
const PAYMENTS: [&str; 3] = ["card", "paypal", "bank_transfer"];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];

/// The cart a user is filling.
#[derive(Clone)]
struct Session {
    cart: CartId,
    user_id: String,
    currency: &'static str,
    /// Lines this cart gets (1..=10) and has so far.
    size: u32,
    lines: u32,
    token: Option<String>,
}

impl Session {
    fn new(rng: &mut impl Rng) -> Session {
        Session {
            cart: CartId(uuid::Uuid::new_v4()),
            user_id: format!("user-{}", rng.random_range(1..=500)),
            currency: CURRENCIES.choose(rng).copied().unwrap_or("EUR"),
            size: rng.random_range(1..=10),
            lines: 0,
            token: None,
        }
    }
}

/// A valid order line of `s`'s cart with varied product, seller, quantity and prices.
fn order_line(s: &Session, rng: &mut impl Rng) -> Value {
    let quantity: u32 = rng.random_range(1..=5);
    let amount = Decimal::new(rng.random_range(99..=99_999), 2);
    let discounts = Decimal::new(rng.random_range(0..=quantity as i64 * 50), 2);
    let subtotal = amount * Decimal::from(quantity) - discounts;
    let tax = (subtotal * Decimal::new(20, 2)).round_dp(2);
    json!({
        "order_id": OrderId(uuid::Uuid::new_v4()).to_string(),
        "cart_id": s.cart.to_string(),
        "user_id": s.user_id,
        "product_name": PRODUCTS.choose(rng).copied().unwrap_or("Tamper"),
        "product_info": "load test",
        "quantity": quantity,
        "amount": amount.to_string(),
        "discounts": discounts.to_string(),
        "tax_amount": tax.to_string(),
        "subtotal": subtotal.to_string(),
        "payment_method": PAYMENTS.choose(rng).copied().unwrap_or("card"),
        "shipping_address": format!("{} Main St", rng.random_range(1..=999)),
        "billing_address": "1 Main St",
        "shipping_method": "standard",
        "currency": s.currency,
        "seller_info": SELLERS.choose(rng).copied().unwrap_or("Acme"),
        "created_at": chrono::Utc::now().to_rfc3339(),
    })
}

pub fn write_heavy() -> Scenario {
    scenario!("WriteHeavy")
        .set_weight(6)
        .unwrap_or_else(|e| panic!("{e}"))
        .register_transaction(transaction!(place_order).set_name("place order"))
}

pub fn mixed_read_write() -> Scenario {
    scenario!("MixedReadWrite")
        .set_weight(3)
        .unwrap_or_else(|e| panic!("{e}"))
        .register_transaction(transaction!(place_order).set_name("place order"))
        .register_transaction(
            transaction!(read_cart)
                .set_name("read cart")
                .set_weight(1)
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .register_transaction(transaction!(read_summary).set_name("read summary"))
        .register_transaction(transaction!(search).set_name("search"))
        .register_transaction(transaction!(report).set_name("report"))
}

pub fn read_your_writes() -> Scenario {
    scenario!("ReadYourWrites")
        .set_weight(1)
        .unwrap_or_else(|e| panic!("{e}"))
        .register_transaction(transaction!(place_order).set_name("place order"))
        .register_transaction(transaction!(read_own_write).set_name("read own write"))
}

pub fn checkout() -> Scenario {
    scenario!("Checkout")
        .set_weight(1)
        .unwrap_or_else(|e| panic!("{e}"))
        .register_transaction(transaction!(place_order).set_name("place order"))
        .register_transaction(transaction!(check_out).set_name("check out"))
}

/// Checks the session's cart out once it has all its lines; the next
/// placement starts a new cart.
async fn check_out(user: &mut GooseUser) -> TransactionResult {
    let Some(session) = user
        .get_session_data::<Session>()
        .filter(|s| s.lines >= s.size)
        .cloned()
    else {
        return Ok(());
    };
    let path = format!("/carts/{}/checkout", session.cart);
    let builder = user
        .get_request_builder(&GooseMethod::Post, &path)?
        .json(&json!({}));
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(path.as_str())
        .name(CHECKOUT)
        .expect_status_code(202)
        .set_request_builder(builder)
        .build();
    user.request(request).await?;
    // Full, so the next placement opens a new cart.
    user.set_session_data(Session { size: 0, ..session });
    Ok(())
}

async fn place_order(user: &mut GooseUser) -> TransactionResult {
    let mut session = match user.get_session_data::<Session>() {
        Some(s) if s.lines < s.size => s.clone(),
        _ => Session::new(&mut rand::rng()),
    };
    let body = order_line(&session, &mut rand::rng());
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/orders")?
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/orders")
        .name(PLACE)
        .expect_status_code(202)
        .set_request_builder(builder)
        .build();
    let mut goose = user.request(request).await?;
    let token = match goose.response {
        Ok(response) => response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["consistency_token"].as_str().map(str::to_owned)),
        Err(_) => None,
    };
    if token.is_none() {
        return user.set_failure(
            "no consistency token in the 202",
            &mut goose.request,
            None,
            None,
        );
    }
    session.lines += 1;
    session.token = token;
    user.set_session_data(session);
    Ok(())
}

async fn get(user: &mut GooseUser, path: &str, name: &str) -> TransactionResult {
    let request = GooseRequest::builder()
        .method(GooseMethod::Get)
        .path(path)
        .name(name)
        .build();
    user.request(request).await?;
    Ok(())
}

async fn read_own_write(user: &mut GooseUser) -> TransactionResult {
    let Some(Session {
        cart,
        token: Some(token),
        ..
    }) = user.get_session_data::<Session>().cloned()
    else {
        return Ok(());
    };
    let path = format!("/carts/{cart}?consistency_token={token}");
    get(user, &path, "GET /carts/{id} (read own write)").await
}

async fn read_cart(user: &mut GooseUser) -> TransactionResult {
    let Some(cart) = user.get_session_data::<Session>().map(|s| s.cart) else {
        return Ok(());
    };
    get(user, &format!("/carts/{cart}"), "GET /carts/{id}").await
}

async fn read_summary(user: &mut GooseUser) -> TransactionResult {
    let Some(cart) = user.get_session_data::<Session>().map(|s| s.cart) else {
        return Ok(());
    };
    get(
        user,
        &format!("/carts/{cart}/summary"),
        "GET /carts/{id}/summary",
    )
    .await
}

async fn search(user: &mut GooseUser) -> TransactionResult {
    let user_id = user
        .get_session_data::<Session>()
        .map_or_else(|| "user-1".to_owned(), |s| s.user_id.clone());
    get(
        user,
        &format!("/carts?user_id={user_id}&limit=20"),
        "GET /carts?user_id",
    )
    .await
}

async fn report(user: &mut GooseUser) -> TransactionResult {
    get(
        user,
        "/reports/sales?interval=day&group_by=product",
        "GET /reports/sales",
    )
    .await
}

/// Waits (bounded) until the sales report counts `expected` lines; returns what it counts.
pub async fn projected_lines(read_store: &dyn ReadStore, expected: usize) -> anyhow::Result<usize> {
    let query = SalesReportQuery {
        interval: None,
        group_by: None,
        from: None,
        to: None,
        ..Default::default()
    };
    let mut lines = 0;
    for _ in 0..600 {
        let report = read_store.sales_report(&query).await?;
        lines = report.iter().map(|b| b.orders as usize).sum();
        if lines >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_line_passes_the_command_validation() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let session = Session::new(&mut rng);
            let body = order_line(&session, &mut rng);
            if let Err(e) = salestrack_core::command::PlaceOrder::parse(&body) {
                panic!("{body}: {e}");
            }
        }
    }
}
