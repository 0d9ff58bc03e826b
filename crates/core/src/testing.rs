//! Sample values for the tests of this and every other salestrack crate.
//! Not used by production code.

use crate::command::{OrderLine, PlaceOrder};
use crate::ids::{CartId, OrderId};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

/// A valid `POST /orders` body (two espresso machines, EUR).
pub fn order_body() -> Value {
    json!({
        "order_id": "0b8e6a4e-8f0a-4c53-9d3b-6a1f2f7f0a01",
        "cart_id": "6f1c1f2e-3c7d-4a8e-9b3a-2d5e6f7a8b9c",
        "user_id": "user-42",
        "product_name": "Espresso machine",
        "product_info": "15 bar, stainless",
        "quantity": 2,
        "amount": "199.99",
        "discounts": "10",
        "tax_amount": "38.00",
        "subtotal": "389.98",
        "payment_method": "card",
        "shipping_address": "1 Main St, Springfield",
        "billing_address": "1 Main St, Springfield",
        "shipping_method": "express",
        "currency": "EUR",
        "seller_info": "Acme Coffee GmbH",
        "created_at": "2026-11-20T10:15:00Z"
    })
}

/// A valid body for `cart_id` and `order_id`, with the given product.
pub fn order_body_for(cart_id: CartId, order_id: OrderId, product: &str) -> Value {
    let mut body = order_body();
    body["cart_id"] = json!(cart_id.to_string());
    body["order_id"] = json!(order_id.to_string());
    body["product_name"] = json!(product);
    body
}

/// The line of [`order_body`].
pub fn line() -> OrderLine {
    match PlaceOrder::parse(&order_body()) {
        Ok(order) => order.line,
        Err(e) => panic!("the sample order body is invalid: {e}"),
    }
}

/// A second line of the same cart: one grinder.
pub fn other_line() -> OrderLine {
    let mut l = line();
    l.order_id = OrderId(uuid::Uuid::from_u128(
        0x0b8e_6a4e_8f0a_4c53_9d3b_6a1f_2f7f_0a02,
    ));
    l.product_name = "Coffee grinder".into();
    l.quantity = 1;
    l.amount =
        crate::money::Money::non_negative(rust_decimal::Decimal::new(5000, 2)).unwrap_or_default();
    l.discounts = crate::money::Money::ZERO;
    l.tax_amount =
        crate::money::Money::non_negative(rust_decimal::Decimal::new(950, 2)).unwrap_or_default();
    l.subtotal = l.amount;
    l.created_at = Utc
        .with_ymd_and_hms(2026, 11, 20, 10, 20, 0)
        .single()
        .unwrap_or_default();
    l
}
