//! Commands and their validation. A command is only ever built through
//! [`PlaceOrder::parse`] / [`CancelOrder::parse`], which check every field and
//! report *all* problems at once, so a value of these types is always valid.

use crate::contract::{self, Problem, Text};
use crate::ids::{CartId, CommandId, OrderId, PaymentId};
use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};
use std::str::FromStr;
use utoipa::openapi::schema::{AllOfBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
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

/// One problem with one input field, machine-readable by `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The JSON field name (or `$` for the body as a whole).
    pub field: String,
    /// A stable code: `missing`, `wrong_type`, `invalid_uuid`, `too_short`, `too_long`,
    /// `must_be_positive`, `must_not_be_negative`, `invalid_decimal`, `too_precise`, `out_of_range`,
    /// `invalid_currency`, `invalid_datetime`, `inconsistent`, `unknown_field`, `not_an_object`.
    pub code: String,
    pub message: String,
}

/// Every problem found in one input; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), summary(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} ({})", e.field, e.code))
        .collect::<Vec<_>>()
        .join(", ")
}

pub const MAX_USER_ID: usize = 128;
pub const MAX_PRODUCT_NAME: usize = 256;
pub const MAX_PRODUCT_INFO: usize = 4096;
pub const MAX_SHORT_TEXT: usize = 256;
pub const MAX_ADDRESS: usize = 1024;
pub const MAX_REASON: usize = 512;
/// The largest quantity of a line: the narrowest store's integer (the
/// Elasticsearch `integer` of the cart detail's items, a Java `int`).
pub const MAX_QUANTITY: u32 = i32::MAX as u32;

/// How one field of a request body is checked, and documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRule {
    Uuid,
    Text(Text),
    Quantity,
    Money,
    Currency,
    DateTime,
}

/// One field of a request body: the single source of its validation and of
/// its OpenAPI schema ([`body_schema`]).
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub rule: FieldRule,
    /// Absent and `null` are refused (`missing`); else they mean "not given".
    pub required: bool,
    pub description: &'static str,
    pub example: &'static str,
}

const fn field(
    name: &'static str,
    rule: FieldRule,
    required: bool,
    description: &'static str,
    example: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        rule,
        required,
        description,
        example,
    }
}

const fn text(max: usize) -> FieldRule {
    FieldRule::Text(Text { max })
}

/// The cart a line belongs to: in an order line and in its cancel.
const CART_ID: FieldSpec = field(
    "cart_id",
    FieldRule::Uuid,
    true,
    "The cart the line belongs to",
    "7c9e6679-7425-40de-944b-e07fc1f90ae7",
);

/// `POST /orders`: one order line, the fields of the SPEC.
pub const ORDER_FIELDS: &[FieldSpec] = &[
    field(
        "order_id",
        FieldRule::Uuid,
        true,
        "The order line's id, chosen by the client",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
    ),
    CART_ID,
    field(
        "user_id",
        text(MAX_USER_ID),
        true,
        "The cart's owner; the token's subject when authentication is on",
        "alice",
    ),
    field(
        "product_name",
        text(MAX_PRODUCT_NAME),
        true,
        "",
        "Trail shoes",
    ),
    field(
        "product_info",
        text(MAX_PRODUCT_INFO),
        false,
        "",
        "Size 42, blue",
    ),
    field("quantity", FieldRule::Quantity, true, "", "2"),
    field("amount", FieldRule::Money, true, "Unit price", "199.99"),
    field(
        "discounts",
        FieldRule::Money,
        false,
        "Default 0; at most amount * quantity",
        "10",
    ),
    field("tax_amount", FieldRule::Money, false, "Default 0", "38.00"),
    field(
        "subtotal",
        FieldRule::Money,
        true,
        "Must equal amount * quantity - discounts (`inconsistent` otherwise)",
        "389.98",
    ),
    field(
        "payment_method",
        text(MAX_SHORT_TEXT),
        true,
        "`test-decline` and `test-timeout` drive the mock gateway",
        "card",
    ),
    field(
        "shipping_address",
        text(MAX_ADDRESS),
        true,
        "",
        "1 Main St, Springfield",
    ),
    field(
        "billing_address",
        text(MAX_ADDRESS),
        true,
        "",
        "1 Main St, Springfield",
    ),
    field(
        "shipping_method",
        text(MAX_SHORT_TEXT),
        true,
        "",
        "standard",
    ),
    field(
        "currency",
        FieldRule::Currency,
        true,
        "The same for every line of a cart (the domain rejects a line in another)",
        "EUR",
    ),
    field(
        "seller_info",
        text(MAX_SHORT_TEXT),
        true,
        "",
        "Acme Outdoor",
    ),
    field(
        "created_at",
        FieldRule::DateTime,
        true,
        "Normalized to UTC",
        "2026-11-21T08:00:00Z",
    ),
];

/// The rules of `POST /orders` between fields, which JSON Schema cannot
/// say: `check_subtotal` enforces them (`inconsistent`, `out_of_range`).
pub const ORDER_RULES: &[&str] = &[
    "discounts <= amount * quantity",
    "subtotal = amount * quantity - discounts",
];

/// `POST /orders/{order_id}/cancel`.
pub const CANCEL_FIELDS: &[FieldSpec] = &[
    CART_ID,
    field(
        "reason",
        text(MAX_REASON),
        false,
        "Why, in the customer's words",
        "changed my mind",
    ),
];

/// `POST /carts/{cart_id}/checkout`; the body as a whole is optional.
pub const CHECKOUT_FIELDS: &[FieldSpec] = &[field(
    "payment_method",
    text(MAX_SHORT_TEXT),
    false,
    "Charge this way instead of the first line's payment method (`test-decline` and `test-timeout` drive the mock gateway)",
    "card",
)];

/// The JSON Schema of a request body made of `fields`: exactly what
/// [`PlaceOrder::parse`] and its siblings accept, but for the rules between
/// fields (see [`crate::contract`]).
pub fn body_schema(fields: &[FieldSpec]) -> Object {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
    for spec in fields {
        let rule: RefOr<Schema> = match spec.rule {
            FieldRule::Uuid => contract::uuid_schema().into(),
            FieldRule::Text(t) => t.schema().into(),
            FieldRule::Quantity => contract::integer_schema(1, i64::from(MAX_QUANTITY)).into(),
            FieldRule::Money => contract::money_schema(),
            FieldRule::Currency => contract::currency_schema().into(),
            FieldRule::DateTime => contract::datetime_schema().into(),
        };
        let mut described = AllOfBuilder::new().item(rule);
        if !spec.description.is_empty() {
            described = described.description(Some(spec.description));
        }
        let example: Value = match spec.rule {
            FieldRule::Quantity => Value::from(spec.example.parse::<i64>().unwrap_or(1)),
            _ => Value::from(spec.example),
        };
        described = described.examples([example]);
        let property: RefOr<Schema> = if spec.required {
            object = object.required(spec.name);
            described.into()
        } else {
            // `null` means "not given", like an absent field.
            OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .item(described)
                .into()
        };
        object = object.property(spec.name, property);
    }
    object.build()
}

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

/// Collects field errors while pulling typed values out of a JSON object,
/// each by the rule its [`FieldSpec`] gives.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    specs: &'static [FieldSpec],
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn new(body: &'a Value, specs: &'static [FieldSpec]) -> Result<Self, ValidationErrors> {
        let Value::Object(object) = body else {
            return Err(ValidationErrors(vec![FieldError {
                field: "$".into(),
                code: "not_an_object".into(),
                message: "the request body must be a JSON object".into(),
            }]));
        };
        let mut fields = Fields {
            object,
            specs,
            errors: Vec::new(),
        };
        for name in object.keys() {
            if !specs.iter().any(|spec| spec.name == name) {
                fields.push(name, "unknown_field", format!("unknown field `{name}`"));
            }
        }
        Ok(fields)
    }

    fn push(&mut self, field: &str, code: &str, message: String) {
        self.errors.push(FieldError {
            field: field.into(),
            code: code.into(),
            message,
        });
    }

    fn problem(&mut self, field: &str, problem: Problem) {
        self.push(field, problem.code, problem.message);
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.errors))
        }
    }

    /// The field's value by its spec: `None` when absent or `null` and
    /// optional (`missing` recorded when required), `Some` otherwise.
    fn value(&mut self, name: &str) -> Option<(FieldRule, &'a Value)> {
        let Some(spec) = self.specs.iter().find(|spec| spec.name == name) else {
            self.push(name, "invalid", format!("`{name}` has no rule"));
            return None;
        };
        match self.object.get(name).filter(|v| !v.is_null()) {
            Some(value) => Some((spec.rule, value)),
            None => {
                if spec.required {
                    self.push(name, "missing", format!("`{name}` is required"));
                }
                None
            }
        }
    }

    fn string(&mut self, name: &str, value: &'a Value) -> Option<&'a str> {
        match value.as_str() {
            Some(s) => Some(s),
            None => {
                self.push(name, "wrong_type", format!("`{name}` must be a string"));
                None
            }
        }
    }

    fn uuid(&mut self, name: &str) -> Option<uuid::Uuid> {
        let (_, value) = self.value(name)?;
        let s = self.string(name, value)?;
        let id = contract::parse_uuid(s);
        if id.is_none() {
            self.push(
                name,
                "invalid_uuid",
                format!("`{name}` must be a hyphenated UUID"),
            );
        }
        id
    }

    fn text(&mut self, name: &str) -> Option<String> {
        let (rule, value) = self.value(name)?;
        let s = self.string(name, value)?;
        let FieldRule::Text(text) = rule else {
            self.push(name, "invalid", format!("`{name}` is not text"));
            return None;
        };
        match text.check(name, s) {
            Ok(()) => Some(s.to_owned()),
            Err(problem) => {
                self.problem(name, problem);
                None
            }
        }
    }

    /// `Some(None)` when absent, `Some(Some(text))` when valid, `None` on error.
    fn optional_text(&mut self, name: &str) -> Option<Option<String>> {
        let errors = self.errors.len();
        let text = self.text(name);
        (self.errors.len() == errors).then_some(text)
    }

    fn quantity(&mut self, name: &str) -> Option<u32> {
        let (_, value) = self.value(name)?;
        match contract::parse_json_integer(name, value, 1, i64::from(MAX_QUANTITY)) {
            Ok(n) => u32::try_from(n).ok(),
            Err(problem) => {
                self.problem(name, problem);
                None
            }
        }
    }

    /// An amount; an optional one defaults to zero.
    fn money(&mut self, name: &str) -> Option<Money> {
        let errors = self.errors.len();
        let Some((_, value)) = self.value(name) else {
            return (self.errors.len() == errors).then_some(Money::ZERO);
        };
        match contract::parse_money(name, value) {
            Ok(money) => Some(money),
            Err(problem) => {
                self.problem(name, problem);
                None
            }
        }
    }

    fn currency(&mut self, name: &str) -> Option<Currency> {
        let (_, value) = self.value(name)?;
        let s = self.string(name, value)?;
        match Currency::from_str(s) {
            Ok(c) => Some(c),
            Err(_) => {
                self.push(
                    name,
                    "invalid_currency",
                    format!("`{name}` must be an ISO 4217 code such as \"EUR\", got {s:?}"),
                );
                None
            }
        }
    }

    fn datetime(&mut self, name: &str) -> Option<DateTime<Utc>> {
        let (_, value) = self.value(name)?;
        let s = self.string(name, value)?;
        let at = contract::parse_datetime(s);
        if at.is_none() {
            self.push(
                name,
                "invalid_datetime",
                format!("`{name}` must be an RFC 3339 date-time, got {s:?}"),
            );
        }
        at
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
