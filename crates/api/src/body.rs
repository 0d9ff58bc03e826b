//! The request bodies' documentation: each field's description and
//! example, and the JSON Schema of a body built from the very field specs
//! core's parsers validate with ([`salestrack_core::command::ORDER_FIELDS`]
//! and its siblings). A field the parser knows and this table does not (or
//! the reverse) fails this module's tests.

use crate::schema;
use salestrack_core::command::{FieldRule, FieldSpec, MAX_QUANTITY};
use serde_json::Value;
use utoipa::openapi::schema::{AllOfBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// How one body field is described in the document.
#[derive(Debug, Clone, Copy)]
pub struct FieldDoc {
    pub name: &'static str,
    pub description: &'static str,
    pub example: &'static str,
}

/// `POST /orders`.
pub const ORDER_DOCS: &[FieldDoc] = &[
    FieldDoc {
        name: "order_id",
        description: "The order line's id, chosen by the client",
        example: "0f8fad5b-d9cb-469f-a165-70867728950e",
    },
    FieldDoc {
        name: "cart_id",
        description: "The cart the line belongs to",
        example: "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    },
    FieldDoc {
        name: "user_id",
        description: "The cart's owner; the token's subject when authentication is on",
        example: "alice",
    },
    FieldDoc {
        name: "product_name",
        description: "",
        example: "Trail shoes",
    },
    FieldDoc {
        name: "product_info",
        description: "",
        example: "Size 42, blue",
    },
    FieldDoc {
        name: "quantity",
        description: "",
        example: "2",
    },
    FieldDoc {
        name: "amount",
        description: "Unit price",
        example: "199.99",
    },
    FieldDoc {
        name: "discounts",
        description: "Default 0; at most amount * quantity",
        example: "10",
    },
    FieldDoc {
        name: "tax_amount",
        description: "Default 0",
        example: "38.00",
    },
    FieldDoc {
        name: "subtotal",
        description: "Must equal amount * quantity - discounts (`inconsistent` otherwise)",
        example: "389.98",
    },
    FieldDoc {
        name: "payment_method",
        description: "`test-decline` and `test-timeout` drive the mock gateway",
        example: "card",
    },
    FieldDoc {
        name: "shipping_address",
        description: "",
        example: "1 Main St, Springfield",
    },
    FieldDoc {
        name: "billing_address",
        description: "",
        example: "1 Main St, Springfield",
    },
    FieldDoc {
        name: "shipping_method",
        description: "",
        example: "standard",
    },
    FieldDoc {
        name: "currency",
        description: "The same for every line of a cart (the domain rejects a line in another)",
        example: "EUR",
    },
    FieldDoc {
        name: "seller_info",
        description: "",
        example: "Acme Outdoor",
    },
    FieldDoc {
        name: "created_at",
        description: "Normalized to UTC",
        example: "2026-11-21T08:00:00Z",
    },
];

/// `POST /orders/{order_id}/cancel`.
pub const CANCEL_DOCS: &[FieldDoc] = &[
    FieldDoc {
        name: "cart_id",
        description: "The cart the line belongs to",
        example: "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    },
    FieldDoc {
        name: "reason",
        description: "Why, in the customer's words",
        example: "changed my mind",
    },
];

/// `POST /carts/{cart_id}/checkout`.
pub const CHECKOUT_DOCS: &[FieldDoc] = &[
    FieldDoc {
        name: "payment_method",
        description: "Charge this way instead of the first line's payment method (`test-decline` and `test-timeout` drive the mock gateway)",
        example: "card",
    },
];

/// The JSON Schema of a request body made of `fields`: exactly what
/// `PlaceOrder::parse` and its siblings accept, but for the rules between
/// fields (the operation's `x-salestrack-rules`), each described by its
/// entry in `docs`.
pub fn body_schema(fields: &[FieldSpec], docs: &[FieldDoc]) -> Object {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
    for spec in fields {
        let doc = docs.iter().find(|d| d.name == spec.name);
        let rule: RefOr<Schema> = match spec.rule {
            FieldRule::Uuid => schema::uuid().into(),
            FieldRule::Text(t) => schema::text(t).into(),
            FieldRule::Quantity => schema::integer(1, i64::from(MAX_QUANTITY)).into(),
            FieldRule::Money => schema::money(),
            FieldRule::Currency => schema::currency().into(),
            FieldRule::DateTime => schema::datetime().into(),
        };
        let mut described = AllOfBuilder::new().item(rule);
        let (description, example) = doc.map_or(("", ""), |d| (d.description, d.example));
        if !description.is_empty() {
            described = described.description(Some(description));
        }
        let example: Value = match spec.rule {
            FieldRule::Quantity => Value::from(example.parse::<i64>().unwrap_or(1)),
            _ => Value::from(example),
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

#[cfg(test)]
mod tests {
    use super::*;
    use salestrack_core::command::{CANCEL_FIELDS, CHECKOUT_FIELDS, ORDER_FIELDS};

    #[test]
    fn every_field_the_parsers_know_is_documented_and_nothing_else() {
        for (fields, docs) in [
            (ORDER_FIELDS, ORDER_DOCS),
            (CANCEL_FIELDS, CANCEL_DOCS),
            (CHECKOUT_FIELDS, CHECKOUT_DOCS),
        ] {
            let parsed: Vec<&str> = fields.iter().map(|f| f.name).collect();
            let documented: Vec<&str> = docs.iter().map(|d| d.name).collect();
            assert_eq!(parsed, documented);
            assert!(docs.iter().all(|d| !d.example.is_empty()), "{documented:?}");
        }
    }
}
