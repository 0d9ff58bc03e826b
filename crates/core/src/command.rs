//! Commands and their validation. A command is only ever built through
//! [`PlaceOrder::parse`] / [`CancelOrder::parse`], which check every field and
//! report *all* problems at once, so a value of these types is always valid.

use crate::fields::Fields;
use crate::ids::{CartId, CommandId, OrderId, PaymentId};
use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::fields::{
    FieldError, FieldRule, FieldSpec, ValidationErrors, CANCEL_FIELDS, CHECKOUT_FIELDS,
    MAX_ADDRESS, MAX_PRODUCT_INFO, MAX_PRODUCT_NAME, MAX_QUANTITY, MAX_REASON, MAX_SHORT_TEXT,
    MAX_USER_ID, ORDER_FIELDS, ORDER_RULES,
};

/// One order line of a cart, exactly the fields of the SPEC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub order_id: OrderId,
    pub cart_id: CartId,
    pub user_id: String,
    pub product_name: String,
    pub product_info: Option<String>,
    pub quantity: u32,
    pub amount: Money,
    pub discounts: Money,
    pub tax_amount: Money,
    pub subtotal: Money,
    pub payment_method: String,
    pub shipping_address: String,
    pub billing_address: String,
    pub shipping_method: String,
    pub currency: Currency,
    pub seller_info: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrder {
    pub line: OrderLine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelOrder {
    pub cart_id: CartId,
    pub order_id: OrderId,
    pub reason: Option<String>,
    /// The authenticated user who asked (`sub`), when authentication is on:
    /// only the cart's owner may cancel its lines.
    pub requested_by: Option<String>,
}

/// Closes an open cart and starts its payment (`POST /carts/{id}/checkout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutCart {
    pub cart_id: CartId,
    /// Overrides the payment method of the cart's first line.
    pub payment_method: Option<String>,
    /// The authenticated user who asked, when authentication is on: only
    /// the cart's owner may check it out.
    pub requested_by: Option<String>,
}

/// What the payment gateway answered for a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentResult {
    Succeeded,
    Declined,
}

/// The payment function's answer to a checkout's payment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPayment {
    pub cart_id: CartId,
    /// The stream version of the `checkout_started` event it answers.
    pub checkout: u64,
    pub payment_id: PaymentId,
    pub result: PaymentResult,
    /// What was charged (the checkout's amount when it succeeded).
    pub amount: Decimal,
    /// Why the gateway declined, in its words.
    pub reason: Option<String>,
}

/// The saga's deadline: cancels the checkout if it is still unanswered once
/// its `expires_at` has passed on the domain's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireCheckout {
    pub cart_id: CartId,
    pub checkout: u64,
}

// The large variant is the common one: boxing it would add an allocation
// to nearly every value for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    PlaceOrder(PlaceOrder),
    CancelOrder(CancelOrder),
    CheckoutCart(CheckoutCart),
    RecordPayment(RecordPayment),
    ExpireCheckout(ExpireCheckout),
}

impl Command {
    pub fn cart_id(&self) -> CartId {
        match self {
            Command::PlaceOrder(c) => c.line.cart_id,
            Command::CancelOrder(c) => c.cart_id,
            Command::CheckoutCart(c) => c.cart_id,
            Command::RecordPayment(c) => c.cart_id,
            Command::ExpireCheckout(c) => c.cart_id,
        }
    }

    /// The order line a command is about; cart-level commands have none.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Command::PlaceOrder(c) => Some(c.line.order_id),
            Command::CancelOrder(c) => Some(c.order_id),
            Command::CheckoutCart(_) | Command::RecordPayment(_) | Command::ExpireCheckout(_) => {
                None
            }
        }
    }

    /// The user on whose behalf the command was sent, when known: a line's
    /// owner, or the authenticated sender of a cancel.
    pub fn sent_by(&self) -> Option<&str> {
        match self {
            Command::PlaceOrder(p) => Some(&p.line.user_id),
            Command::CancelOrder(c) => c.requested_by.as_deref(),
            Command::CheckoutCart(c) => c.requested_by.as_deref(),
            // The saga's own commands: sent by the system, not a user.
            Command::RecordPayment(_) | Command::ExpireCheckout(_) => None,
        }
    }

    /// Stable name of the command kind, used on the wire and in derived ids.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PlaceOrder(_) => PLACE_ORDER,
            Command::CancelOrder(_) => CANCEL_ORDER,
            Command::CheckoutCart(_) => CHECKOUT_CART,
            Command::RecordPayment(_) => RECORD_PAYMENT,
            Command::ExpireCheckout(_) => EXPIRE_CHECKOUT,
        }
    }

    /// The command id: from the client's idempotency key when given, else
    /// from the natural key (the order id; the cart for a checkout, the
    /// checkout for the saga's commands), so a repeat maps onto the same id.
    ///
    /// Scoped to [`Command::requester`]: another user's request never maps
    /// onto your command's id, so it can neither take over its status nor
    /// pass for a repeat of it.
    pub fn derive_id(&self, idempotency_key: Option<&str>) -> CommandId {
        let (cart_id, kind, by) = (self.cart_id(), self.kind(), self.requester());
        match (idempotency_key, self) {
            (Some(key), _) => CommandId::from_idempotency_key(cart_id, kind, key, by),
            (None, Command::PlaceOrder(c)) => {
                CommandId::for_order(cart_id, kind, c.line.order_id, by)
            }
            (None, Command::CancelOrder(c)) => CommandId::for_order(cart_id, kind, c.order_id, by),
            (None, Command::CheckoutCart(_)) => CommandId::for_cart(cart_id, kind, 0, by),
            (None, Command::RecordPayment(c)) => CommandId::for_cart(cart_id, kind, c.checkout, by),
            (None, Command::ExpireCheckout(c)) => {
                CommandId::for_cart(cart_id, kind, c.checkout, by)
            }
        }
    }

    /// Who asked: the line's user for an order, the authenticated caller
    /// for a cancel or a checkout (none when authentication is off), nobody
    /// for the saga's own commands.
    pub fn requester(&self) -> Option<&str> {
        match self {
            Command::PlaceOrder(c) => Some(&c.line.user_id),
            Command::CancelOrder(c) => c.requested_by.as_deref(),
            Command::CheckoutCart(c) => c.requested_by.as_deref(),
            Command::RecordPayment(_) | Command::ExpireCheckout(_) => None,
        }
    }
}

pub const PLACE_ORDER: &str = "place_order";
pub const CANCEL_ORDER: &str = "cancel_order";
pub const CHECKOUT_CART: &str = "checkout_cart";
pub const RECORD_PAYMENT: &str = "record_payment";
pub const EXPIRE_CHECKOUT: &str = "expire_checkout";

impl PlaceOrder {
    /// Validates a JSON order line. Money may be a JSON string or number; it is
    /// parsed as a decimal literal, never through a float.
    pub fn parse(body: &Value) -> Result<Self, ValidationErrors> {
        let mut f = Fields::new(body, ORDER_FIELDS)?;
        let order_id = f.uuid("order_id").map(OrderId);
        let cart_id = f.uuid("cart_id").map(CartId);
        let user_id = f.text("user_id");
        let product_name = f.text("product_name");
        let product_info = f.optional_text("product_info");
        let quantity = f.quantity("quantity");
        let amount = f.money("amount");
        let discounts = f.money("discounts");
        let tax_amount = f.money("tax_amount");
        let subtotal = f.money("subtotal");
        let payment_method = f.text("payment_method");
        let shipping_address = f.text("shipping_address");
        let billing_address = f.text("billing_address");
        let shipping_method = f.text("shipping_method");
        let currency = f.currency("currency");
        let seller_info = f.text("seller_info");
        let created_at = f.datetime("created_at");

        if let (Some(amount), Some(quantity), Some(discounts), Some(subtotal)) =
            (amount, quantity, discounts, subtotal)
        {
            check_subtotal(&mut f, amount, quantity, discounts, subtotal);
        }

        f.finish()?;
        // `finish` returned Ok, so every required field above is Some.
        match (
            order_id,
            cart_id,
            user_id,
            product_name,
            quantity,
            amount,
            discounts,
            tax_amount,
            subtotal,
            payment_method,
            shipping_address,
            billing_address,
            shipping_method,
            currency,
            seller_info,
            created_at,
        ) {
            (
                Some(order_id),
                Some(cart_id),
                Some(user_id),
                Some(product_name),
                Some(quantity),
                Some(amount),
                Some(discounts),
                Some(tax_amount),
                Some(subtotal),
                Some(payment_method),
                Some(shipping_address),
                Some(billing_address),
                Some(shipping_method),
                Some(currency),
                Some(seller_info),
                Some(created_at),
            ) => Ok(PlaceOrder {
                line: OrderLine {
                    order_id,
                    cart_id,
                    user_id,
                    product_name,
                    product_info: product_info.flatten(),
                    quantity,
                    amount,
                    discounts,
                    tax_amount,
                    subtotal,
                    payment_method,
                    shipping_address,
                    billing_address,
                    shipping_method,
                    currency,
                    seller_info,
                    created_at,
                },
            }),
            _ => Err(internal_inconsistency()),
        }
    }
}

/// `subtotal` must equal `amount * quantity - discounts`, and discounts cannot
/// exceed the gross amount.
fn check_subtotal(f: &mut Fields, amount: Money, quantity: u32, discounts: Money, subtotal: Money) {
    let Some(gross) = amount.value().checked_mul(Decimal::from(quantity)) else {
        f.push(
            "amount",
            "out_of_range",
            "amount * quantity is too large".into(),
        );
        return;
    };
    if discounts.value() > gross {
        f.push(
            "discounts",
            "inconsistent",
            format!("discounts ({discounts}) exceed amount * quantity ({gross})"),
        );
        return;
    }
    let expected = gross - discounts.value();
    if subtotal.value() != expected {
        f.push(
            "subtotal",
            "inconsistent",
            format!(
                "subtotal must equal amount * quantity - discounts = {expected}, got {subtotal}"
            ),
        );
    }
}

fn internal_inconsistency() -> ValidationErrors {
    ValidationErrors(vec![FieldError {
        field: "$".into(),
        code: "invalid".into(),
        message: "the order line could not be validated".into(),
    }])
}

impl CancelOrder {
    /// Validates a cancel request body (`cart_id`, optional `reason`) for `order_id`.
    pub fn parse(order_id: OrderId, body: &Value) -> Result<Self, ValidationErrors> {
        let mut f = Fields::new(body, CANCEL_FIELDS)?;
        let cart_id = f.uuid("cart_id").map(CartId);
        let reason = f.optional_text("reason");
        f.finish()?;
        match cart_id {
            Some(cart_id) => Ok(CancelOrder {
                cart_id,
                order_id,
                reason: reason.flatten(),
                requested_by: None,
            }),
            None => Err(internal_inconsistency()),
        }
    }
}

impl CheckoutCart {
    /// Validates a checkout body (optional `payment_method`) for `cart_id`.
    /// An absent body, or `null`, is `{}`.
    pub fn parse(cart_id: CartId, body: &Value) -> Result<Self, ValidationErrors> {
        let empty = Value::Object(Map::new());
        let body = if body.is_null() { &empty } else { body };
        let mut f = Fields::new(body, CHECKOUT_FIELDS)?;
        let payment_method = f.optional_text("payment_method");
        f.finish()?;
        Ok(CheckoutCart {
            cart_id,
            payment_method: payment_method.flatten(),
            requested_by: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn valid_body() -> Value {
        json!({
            "order_id": "0b8e6a4e-8f0a-4c53-9d3b-6a1f2f7f0a01",
            "cart_id": "6f1c1f2e-3c7d-4a8e-9b3a-2d5e6f7a8b9c",
            "user_id": "user-42",
            "product_name": "Espresso machine",
            "product_info": "15 bar, stainless",
            "quantity": 2,
            "amount": "199.99",
            "discounts": 10,
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

    #[test]
    fn a_complete_order_line_parses_with_exact_money() {
        let order = PlaceOrder::parse(&valid_body()).expect("valid");
        assert_eq!(order.line.quantity, 2);
        assert_eq!(order.line.amount.to_string(), "199.99");
        assert_eq!(order.line.discounts.to_string(), "10");
        assert_eq!(order.line.currency.as_str(), "EUR");
    }

    #[test]
    fn money_given_as_a_json_number_keeps_every_digit() {
        let mut body = valid_body();
        // Not representable as an f64: a float on the way would change it.
        body["amount"] = serde_json::from_str("12345678901234.5671").expect("json");
        body["quantity"] = json!(1);
        body["discounts"] = json!(0);
        body["subtotal"] = json!("12345678901234.5671");
        let order = PlaceOrder::parse(&body).expect("valid");
        assert_eq!(order.line.amount.to_string(), "12345678901234.5671");
    }

    #[test]
    fn money_finer_than_four_decimal_places_is_refused() {
        let mut body = valid_body();
        body["tax_amount"] = json!("0.00001");
        let errors = PlaceOrder::parse(&body).expect_err("too precise").0;
        assert!(errors
            .iter()
            .any(|f| f.field == "tax_amount" && f.code == "too_precise"));
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut body = valid_body();
        body["quantity"] = json!(0);
        body["currency"] = json!("EURO");
        body["user_id"] = json!("");
        body["cart_id"] = json!("not-a-uuid");
        body["amount"] = json!("-1");
        body.as_object_mut().expect("object").remove("seller_info");
        body["colour"] = json!("red");
        let errors = PlaceOrder::parse(&body).expect_err("invalid").0;
        let mut got: Vec<_> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("amount", "must_not_be_negative"),
                ("cart_id", "invalid_uuid"),
                ("colour", "unknown_field"),
                ("currency", "invalid_currency"),
                ("quantity", "must_be_positive"),
                ("seller_info", "missing"),
                ("user_id", "too_short"),
            ]
        );
    }

    #[test]
    fn a_subtotal_that_does_not_add_up_is_rejected_with_the_expected_value() {
        let mut body = valid_body();
        body["subtotal"] = json!("400.00");
        let errors = PlaceOrder::parse(&body).expect_err("invalid").0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "subtotal");
        assert_eq!(errors[0].code, "inconsistent");
        assert!(
            errors[0].message.contains("389.98"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn discounts_larger_than_the_gross_amount_are_rejected() {
        let mut body = valid_body();
        body["discounts"] = json!("500");
        body["subtotal"] = json!("0");
        let errors = PlaceOrder::parse(&body).expect_err("invalid").0;
        assert_eq!(errors[0].field, "discounts");
    }

    #[test]
    fn optional_money_defaults_to_zero() {
        let mut body = valid_body();
        let obj = body.as_object_mut().expect("object");
        obj.remove("discounts");
        obj.remove("tax_amount");
        obj.insert("subtotal".into(), json!("399.98"));
        let order = PlaceOrder::parse(&body).expect("valid");
        assert!(order.line.discounts.value().is_zero());
        assert!(order.line.tax_amount.value().is_zero());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_clear_error() {
        let errors = PlaceOrder::parse(&json!([1, 2])).expect_err("invalid").0;
        assert_eq!(errors[0].code, "not_an_object");
    }

    #[test]
    fn control_characters_are_refused_but_tabs_line_breaks_and_marks_are_text() {
        for bad in ["Esp\u{0}resso", "bell\u{7}", "del\u{7f}", "c1\u{85}"] {
            let mut body = valid_body();
            body["product_name"] = json!(bad);
            let errors = PlaceOrder::parse(&body).expect_err("invalid").0;
            assert_eq!(
                (errors[0].field.as_str(), errors[0].code.as_str()),
                ("product_name", "control_character"),
                "{bad:?}"
            );
        }
        let mut body = valid_body();
        body["shipping_address"] = json!("1 Main St\r\nSpringfield\t(back door)");
        body["product_name"] = json!("\u{202e}osserpsE e\u{301}\u{301} \u{1F600}");
        let order = PlaceOrder::parse(&body).expect("valid");
        assert_eq!(
            order.line.product_name,
            "\u{202e}osserpsE e\u{301}\u{301} \u{1F600}"
        );
    }

    #[test]
    fn a_quantity_fits_every_store() {
        let mut body = valid_body();
        body["quantity"] = json!(MAX_QUANTITY);
        body["amount"] = json!("1");
        body["discounts"] = json!("0");
        body["subtotal"] = json!(MAX_QUANTITY.to_string());
        assert_eq!(
            PlaceOrder::parse(&body).expect("valid").line.quantity,
            MAX_QUANTITY
        );
        for beyond in [json!(u64::from(MAX_QUANTITY) + 1), json!(u64::MAX)] {
            body["quantity"] = beyond.clone();
            let errors = PlaceOrder::parse(&body).expect_err("invalid").0;
            assert_eq!(errors[0].code, "out_of_range", "{beyond}");
        }
    }

    #[test]
    fn text_lengths_are_counted_in_characters() {
        let mut body = valid_body();
        body["user_id"] = json!("é".repeat(MAX_USER_ID));
        assert!(PlaceOrder::parse(&body).is_ok());
        body["user_id"] = json!("é".repeat(MAX_USER_ID + 1));
        let errors = PlaceOrder::parse(&body).expect_err("invalid").0;
        assert_eq!(errors[0].code, "too_long");
    }

    #[test]
    fn the_same_order_always_derives_the_same_command_id() {
        let a = Command::PlaceOrder(PlaceOrder::parse(&valid_body()).expect("valid"));
        let b = Command::PlaceOrder(PlaceOrder::parse(&valid_body()).expect("valid"));
        assert_eq!(a.derive_id(None), b.derive_id(None));
        assert_ne!(a.derive_id(Some("k1")), a.derive_id(None));
        assert_eq!(a.derive_id(Some("k1")), b.derive_id(Some("k1")));
    }

    #[test]
    fn another_users_request_never_derives_your_command_id() {
        let mut body = valid_body();
        let alice = Command::PlaceOrder(PlaceOrder::parse(&body).expect("valid"));
        body["user_id"] = json!("bob");
        let bob = Command::PlaceOrder(PlaceOrder::parse(&body).expect("valid"));
        assert_ne!(alice.derive_id(None), bob.derive_id(None));
        assert_ne!(alice.derive_id(Some("k1")), bob.derive_id(Some("k1")));

        let cart_id = alice.cart_id();
        let checkout = |by: Option<&str>| {
            Command::CheckoutCart(CheckoutCart {
                cart_id,
                payment_method: None,
                requested_by: by.map(str::to_owned),
            })
        };
        let (hers, his) = (checkout(Some("alice")), checkout(Some("bob")));
        assert_eq!(
            hers.derive_id(None),
            checkout(Some("alice")).derive_id(None)
        );
        assert_ne!(hers.derive_id(None), his.derive_id(None));
        assert_ne!(hers.derive_id(None), checkout(None).derive_id(None));
        // A user id and a key cannot be made to spell another pair's name.
        let by = |user: &str| {
            Command::CheckoutCart(CheckoutCart {
                cart_id,
                payment_method: None,
                requested_by: Some(user.to_owned()),
            })
        };
        assert_ne!(
            by("a/b").derive_id(Some("c")),
            by("a").derive_id(Some("b/c"))
        );
    }

    #[test]
    fn a_cancel_needs_the_cart_id() {
        let order_id = OrderId(uuid::Uuid::nil());
        let errors = CancelOrder::parse(order_id, &json!({"reason": "x"}))
            .expect_err("invalid")
            .0;
        assert_eq!(
            (errors[0].field.as_str(), errors[0].code.as_str()),
            ("cart_id", "missing")
        );
    }
}
