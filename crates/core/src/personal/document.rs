//! The one list applied: an order line sealed where it enters, and the
//! sealed values of any document (a read model, an event in a history, a
//! live update) opened where it is answered, or shown as erased.

use crate::command::OrderLine;
use crate::ids::{CartId, KeyId};
use crate::personal::seal::{DataKey, MalformedToken, PersonalField, Sealed, ERASED};
use crate::search::SalesBucket;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Seals every personal field of `line` under `key` (its user's), leaving a
/// field that is sealed already as it is.
pub fn seal_line(line: &mut OrderLine, key: &DataKey) {
    for (field, value) in [
        (PersonalField::ShippingAddress, &mut line.shipping_address),
        (PersonalField::BillingAddress, &mut line.billing_address),
        (PersonalField::PaymentMethod, &mut line.payment_method),
    ] {
        if Sealed::from_token(value).is_none() {
            *value = key.seal(field, value).to_token();
        }
    }
}

/// Whom the key of a value about a cart but not from its lines (a
/// checkout's payment method) is filed under: the cart, so that no caller
/// need be authenticated to seal it, and an erasure of the cart's user
/// destroys the keys of their carts with theirs. A control character
/// starts it, which no user id has.
pub fn cart_holder(cart: CartId) -> String {
    format!("\u{1}cart.{cart}")
}

/// The keys a report's bucket keys are sealed under (a report grouped by
/// payment method).
pub fn report_keys(buckets: &[SalesBucket]) -> BTreeSet<KeyId> {
    buckets
        .iter()
        .filter_map(|b| match Sealed::from_token(b.key.as_deref()?) {
            Some(Ok(sealed)) => Some(sealed.key),
            _ => None,
        })
        .collect()
}

/// A report grouped by payment method, its keys opened (or erased) and the
/// buckets that then share a period, key and currency merged: the store
/// groups by sealed value, which differs per user. Sums stay exact; an
/// erased user's lines count under [`ERASED`].
pub fn open_report(buckets: Vec<SalesBucket>, keys: &HashMap<KeyId, DataKey>) -> Vec<SalesBucket> {
    type Group = (
        Option<chrono::DateTime<chrono::Utc>>,
        Option<String>,
        String,
    );
    let mut merged: BTreeMap<Group, SalesBucket> = BTreeMap::new();
    for mut bucket in buckets {
        if let Some(Some(sealed)) = bucket.key.as_deref().map(Sealed::from_token) {
            bucket.key = Some(opened(Some(PersonalField::PaymentMethod), sealed, keys));
        }
        let group = (bucket.period, bucket.key.clone(), bucket.currency.clone());
        match merged.get_mut(&group) {
            Some(m) => {
                m.revenue += bucket.revenue;
                m.tax += bucket.tax;
                m.units += bucket.units;
                m.orders += bucket.orders;
            }
            None => {
                merged.insert(group, bucket);
            }
        }
    }
    // The order of `SalesBucket::order_key`: period, key, currency.
    merged.into_values().collect()
}

/// Every key the sealed values in `doc` name: what to fetch before
/// [`open_document`].
pub fn sealed_keys(doc: &Value) -> BTreeSet<KeyId> {
    let mut keys = BTreeSet::new();
    walk(doc, &mut |_, value| {
        if let Some(Ok(sealed)) = Sealed::from_token(value) {
            keys.insert(sealed.key);
        }
    });
    keys
}

/// Opens every sealed value in `doc` with `keys`. A value whose key is not
/// there (destroyed: its user was erased), that does not authenticate, or
/// that is not under a personal field's name, becomes [`ERASED`]: nothing
/// sealed is ever answered as it is.
pub fn open_document(doc: &mut Value, keys: &HashMap<KeyId, DataKey>) {
    walk_mut(doc, None, &mut |name, value| {
        let Some(sealed) = Sealed::from_token(value) else {
            return;
        };
        *value = opened(name.and_then(PersonalField::parse), sealed, keys);
    });
}

/// What a sealed value of `field` reads as: opened with its key among
/// `keys`, or [`ERASED`] when the key is not there (destroyed), the value
/// is malformed or does not authenticate, or it is under no personal
/// field's name.
pub fn opened(
    field: Option<PersonalField>,
    sealed: Result<Sealed, MalformedToken>,
    keys: &HashMap<KeyId, DataKey>,
) -> String {
    sealed
        .ok()
        .and_then(|sealed| keys.get(&sealed.key)?.open(field?, &sealed).ok())
        .unwrap_or_else(|| ERASED.to_owned())
}

/// Calls `f` with every string in `doc` and the name of the member it is
/// the value of (an array's items have their array's name).
fn walk<'a>(doc: &'a Value, f: &mut impl FnMut(Option<&str>, &'a str)) {
    match doc {
        Value::String(s) => f(None, s),
        Value::Array(items) => items.iter().for_each(|item| walk(item, f)),
        Value::Object(members) => {
            for (name, value) in members {
                match value {
                    Value::String(s) => f(Some(name), s),
                    other => walk(other, f),
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn walk_mut(doc: &mut Value, name: Option<&str>, f: &mut impl FnMut(Option<&str>, &mut String)) {
    match doc {
        Value::String(s) => f(name, s),
        Value::Array(items) => items.iter_mut().for_each(|item| walk_mut(item, name, f)),
        Value::Object(members) => {
            for (name, value) in members.iter_mut() {
                walk_mut(value, Some(name), f);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(n: u8) -> DataKey {
        DataKey::new(KeyId(uuid::Uuid::from_u128(u128::from(n))), [n; 32])
    }

    #[test]
    fn a_sealed_line_has_no_personal_field_in_the_clear_and_opens_back() {
        let mut line = crate::testing::line();
        let clear = line.clone();
        let k = key(1);
        seal_line(&mut line, &k);
        let sealed = line.clone();
        seal_line(&mut line, &k);
        assert_eq!(line, sealed, "sealing twice changes nothing");
        for (field, value) in [
            (PersonalField::ShippingAddress, &line.shipping_address),
            (PersonalField::BillingAddress, &line.billing_address),
            (PersonalField::PaymentMethod, &line.payment_method),
        ] {
            assert!(
                matches!(Sealed::from_token(value), Some(Ok(_))),
                "{field:?}"
            );
        }
        assert_eq!(
            (&line.user_id, &line.product_name, line.subtotal),
            (&clear.user_id, &clear.product_name, clear.subtotal),
            "sales facts and the user id stay in the clear"
        );
        let mut doc = json!({
            "lines": [{
                "shipping_address": line.shipping_address,
                "billing_address": line.billing_address,
                "payment_method": line.payment_method,
                "product_name": line.product_name,
            }],
        });
        assert_eq!(sealed_keys(&doc), BTreeSet::from([k.id]));
        open_document(&mut doc, &HashMap::from([(k.id, k)]));
        assert_eq!(
            doc,
            json!({
                "lines": [{
                    "shipping_address": clear.shipping_address,
                    "billing_address": clear.billing_address,
                    "payment_method": clear.payment_method,
                    "product_name": clear.product_name,
                }],
            })
        );
    }

    #[test]
    fn values_of_a_destroyed_key_or_out_of_place_read_as_erased() {
        let (erased, kept) = (key(1), key(2));
        let token = |k: &DataKey, field, value| k.seal(field, value).to_token();
        let mut doc = json!({
            "shipping_address": token(&erased, PersonalField::ShippingAddress, "1 Gone Rd"),
            "billing_address": token(&kept, PersonalField::BillingAddress, "2 Kept Rd"),
            // Moved to another field: does not authenticate there.
            "payment_method": token(&kept, PersonalField::BillingAddress, "2 Kept Rd"),
            "product_name": token(&kept, PersonalField::ShippingAddress, "3 Odd Rd"),
            "history": [token(&kept, PersonalField::ShippingAddress, "4 Item Rd")],
            "user_id": "u-1",
        });
        assert_eq!(sealed_keys(&doc), BTreeSet::from([erased.id, kept.id]));
        open_document(&mut doc, &HashMap::from([(kept.id, kept)]));
        assert_eq!(
            doc,
            json!({
                "shipping_address": ERASED,
                "billing_address": "2 Kept Rd",
                "payment_method": ERASED,
                "product_name": ERASED,
                "history": [ERASED],
                "user_id": "u-1",
            })
        );
    }

    #[test]
    fn a_report_by_payment_method_merges_users_and_keeps_erased_sums_exact() {
        let (a, b, erased) = (key(1), key(2), key(3));
        let bucket = |k: &DataKey, method, revenue: &str, units| SalesBucket {
            period: None,
            key: Some(k.seal(PersonalField::PaymentMethod, method).to_token()),
            currency: "EUR".into(),
            revenue: revenue.parse().expect("revenue"),
            tax: "1.00".parse().expect("tax"),
            units,
            orders: 1,
        };
        let buckets = vec![
            bucket(&a, "card", "10.05", 1),
            bucket(&b, "card", "20.10", 2),
            bucket(&b, "cash", "5.00", 1),
            bucket(&erased, "card", "7.25", 3),
        ];
        assert_eq!(
            report_keys(&buckets),
            BTreeSet::from([a.id, b.id, erased.id])
        );
        let opened = open_report(buckets, &HashMap::from([(a.id, a), (b.id, b)]));
        let rows: Vec<(String, String, u64, u64)> = opened
            .iter()
            .map(|b| {
                (
                    b.key.clone().unwrap_or_default(),
                    b.revenue.to_string(),
                    b.units,
                    b.orders,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (ERASED.to_owned(), "7.25".to_owned(), 3, 1),
                ("card".to_owned(), "30.15".to_owned(), 3, 2),
                ("cash".to_owned(), "5.00".to_owned(), 1, 1),
            ]
        );
    }
}
