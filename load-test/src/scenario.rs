//! The goose scenario: place lines, read each cart back with the token.

use goose::prelude::*;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::ports::{ReadStore, SalesReportQuery};
use salestrack_core::testing::order_body_for;
use serde_json::Value;
use std::time::Duration;

/// Lines per cart before a user starts a new one.
const LINES_PER_CART: u32 = 5;

#[derive(Clone)]
struct Session {
    cart: CartId,
    lines: u32,
    token: Option<String>,
}

pub fn orders() -> Scenario {
    scenario!("PlaceAndRead")
        .register_transaction(transaction!(place_order).set_name("place order"))
        .register_transaction(transaction!(read_own_write).set_name("read own write"))
}

async fn place_order(user: &mut GooseUser) -> TransactionResult {
    let cart = match user.get_session_data::<Session>() {
        Some(s) if s.lines < LINES_PER_CART => s.cart,
        _ => CartId(uuid::Uuid::new_v4()),
    };
    let body = order_body_for(cart, OrderId(uuid::Uuid::new_v4()), "Espresso machine");
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/orders")?
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/orders")
        .name("POST /orders")
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
    let lines = user
        .get_session_data::<Session>()
        .filter(|s| s.cart == cart)
        .map_or(0, |s| s.lines)
        + 1;
    user.set_session_data(Session { cart, lines, token });
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
    let request = GooseRequest::builder()
        .method(GooseMethod::Get)
        .path(path.as_str())
        .name("GET /carts/{id} (read own write)")
        .build();
    user.request(request).await?;
    Ok(())
}

/// Waits (bounded) until the sales report counts `expected` lines; returns what it counts.
pub async fn projected_lines(read_store: &dyn ReadStore, expected: usize) -> anyhow::Result<usize> {
    let query = SalesReportQuery {
        interval: None,
        group_by: None,
        from: None,
        to: None,
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
