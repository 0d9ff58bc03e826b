//! The fields of request bodies: which fields each body has and the rule
//! each follows ([`ORDER_FIELDS`] and its siblings), the limits, the errors
//! a body's validation reports, and [`Fields`], which pulls typed values out
//! of a JSON object by those rules and collects every problem.

use crate::contract::{self, Problem, Text};
use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::str::FromStr;

/// One problem with one input field, machine-readable by `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// One field of a request body: the single source of its validation and,
/// through the API layer's `body_schema`, of its OpenAPI schema.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub rule: FieldRule,
    /// Absent and `null` are refused (`missing`); else they mean "not given".
    pub required: bool,
}

const fn field(name: &'static str, rule: FieldRule, required: bool) -> FieldSpec {
    FieldSpec {
        name,
        rule,
        required,
    }
}

const fn text(max: usize) -> FieldRule {
    FieldRule::Text(Text { max })
}

/// The cart a line belongs to: in an order line and in its cancel.
const CART_ID: FieldSpec = field("cart_id", FieldRule::Uuid, true);

/// `POST /orders`: one order line, the fields of the SPEC.
pub const ORDER_FIELDS: &[FieldSpec] = &[
    field("order_id", FieldRule::Uuid, true),
    CART_ID,
    field("user_id", text(MAX_USER_ID), true),
    field("product_name", text(MAX_PRODUCT_NAME), true),
    field("product_info", text(MAX_PRODUCT_INFO), false),
    field("quantity", FieldRule::Quantity, true),
    field("amount", FieldRule::Money, true),
    field("discounts", FieldRule::Money, false),
    field("tax_amount", FieldRule::Money, false),
    field("subtotal", FieldRule::Money, true),
    field("payment_method", text(MAX_SHORT_TEXT), true),
    field("shipping_address", text(MAX_ADDRESS), true),
    field("billing_address", text(MAX_ADDRESS), true),
    field("shipping_method", text(MAX_SHORT_TEXT), true),
    field("currency", FieldRule::Currency, true),
    field("seller_info", text(MAX_SHORT_TEXT), true),
    field("created_at", FieldRule::DateTime, true),
];

/// The rules of `POST /orders` between fields, which JSON Schema cannot
/// say: `check_subtotal` enforces them (`inconsistent`, `out_of_range`).
pub const ORDER_RULES: &[&str] = &[
    "discounts <= amount * quantity",
    "subtotal = amount * quantity - discounts",
];

/// `POST /orders/{order_id}/cancel`.
pub const CANCEL_FIELDS: &[FieldSpec] = &[CART_ID, field("reason", text(MAX_REASON), false)];

/// `POST /carts/{cart_id}/checkout`; the body as a whole is optional.
pub const CHECKOUT_FIELDS: &[FieldSpec] = &[field("payment_method", text(MAX_SHORT_TEXT), false)];

/// Collects field errors while pulling typed values out of a JSON object,
/// each by the rule its [`FieldSpec`] gives.
pub(crate) struct Fields<'a> {
    object: &'a Map<String, Value>,
    specs: &'static [FieldSpec],
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(
        body: &'a Value,
        specs: &'static [FieldSpec],
    ) -> Result<Self, ValidationErrors> {
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

    pub(crate) fn push(&mut self, field: &str, code: &str, message: String) {
        self.errors.push(FieldError {
            field: field.into(),
            code: code.into(),
            message,
        });
    }

    pub(crate) fn problem(&mut self, field: &str, problem: Problem) {
        self.push(field, problem.code, problem.message);
    }

    pub(crate) fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.errors))
        }
    }

    /// The field's value by its spec: `None` when absent or `null` and
    /// optional (`missing` recorded when required), `Some` otherwise.
    pub(crate) fn value(&mut self, name: &str) -> Option<(FieldRule, &'a Value)> {
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

    pub(crate) fn string(&mut self, name: &str, value: &'a Value) -> Option<&'a str> {
        match value.as_str() {
            Some(s) => Some(s),
            None => {
                self.push(name, "wrong_type", format!("`{name}` must be a string"));
                None
            }
        }
    }

    pub(crate) fn uuid(&mut self, name: &str) -> Option<uuid::Uuid> {
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

    pub(crate) fn text(&mut self, name: &str) -> Option<String> {
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
    pub(crate) fn optional_text(&mut self, name: &str) -> Option<Option<String>> {
        let errors = self.errors.len();
        let text = self.text(name);
        (self.errors.len() == errors).then_some(text)
    }

    pub(crate) fn quantity(&mut self, name: &str) -> Option<u32> {
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
    pub(crate) fn money(&mut self, name: &str) -> Option<Money> {
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

    pub(crate) fn currency(&mut self, name: &str) -> Option<Currency> {
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

    pub(crate) fn datetime(&mut self, name: &str) -> Option<DateTime<Utc>> {
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
