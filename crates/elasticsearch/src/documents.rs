//! What is stored in each index. Cart detail, cart summary and command status
//! are the read models as they are (explicit, versioned structs of the core).
//! Sales lines add their money as integer minor units (10^-4): `sum`
//! aggregations add doubles, which are exact for integers below 2^53, never
//! for decimal fractions. And since a bucket's sum of amounts the API
//! accepts (up to 10^18 minor units each) passes 2^53 after a handful of
//! lines, each summed integer is also stored as [`LIMBS`] limbs of
//! [`LIMB_BITS`] bits: the sums of each limb stay below 2^53 for up to
//! 2^32 lines of a bucket, and the report puts them together exactly.

use crate::indices::Model;
use crate::NAME;
use salestrack_core::money::to_minor_units;
use salestrack_core::ports::{BackendError, ReadDocument};
use salestrack_core::read_model::SalesLine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the stored sales-line shape: 2 added the limbs.
pub(crate) const SALES_LINE_SCHEMA: u32 = 2;

/// Bits of one limb of a summed integer.
pub(crate) const LIMB_BITS: u32 = 21;
/// Limbs of a summed integer: 63 bits, any `i64` >= 0.
pub(crate) const LIMBS: usize = 3;

/// `value` (>= 0) as its limbs, lowest first.
pub(crate) fn limbs(value: u64) -> [i64; LIMBS] {
    let mask = (1_u64 << LIMB_BITS) - 1;
    std::array::from_fn(|i| {
        let bits = u32::try_from(i).unwrap_or(0) * LIMB_BITS;
        i64::try_from((value >> bits) & mask).unwrap_or(0)
    })
}

/// The summed integers of a sales line stored as limbs, in the object
/// fields `{name}_limbs` ([`limb_field`]).
pub(crate) const LIMBED: [&str; 3] = ["subtotal", "tax", "quantity"];

/// The field holding limb `i` of `name` (one of [`LIMBED`]).
pub(crate) fn limb_field(name: &str, i: usize) -> String {
    format!("{name}_limbs.l{i}")
}

/// A summed integer as stored: its [`LIMBS`] limbs, lowest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Limbs {
    pub l0: i64,
    pub l1: i64,
    pub l2: i64,
}

impl Limbs {
    pub fn of(value: u64) -> Limbs {
        let [l0, l1, l2] = limbs(value);
        Limbs { l0, l1, l2 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SalesLineDoc {
    pub schema_version: u32,
    #[serde(flatten)]
    pub line: SalesLine,
    /// `subtotal` in 10^-4 units.
    pub subtotal_minor: i64,
    /// `tax_amount` in 10^-4 units.
    pub tax_minor: i64,
    /// The limbs of `subtotal_minor`, `tax_minor` and `quantity`; absent
    /// (0) in documents of schema 1.
    #[serde(default)]
    pub subtotal_limbs: Limbs,
    #[serde(default)]
    pub tax_limbs: Limbs,
    #[serde(default)]
    pub quantity_limbs: Limbs,
}

impl SalesLineDoc {
    pub fn new(line: SalesLine) -> Result<SalesLineDoc, BackendError> {
        let minor = |what: &str, value| {
            to_minor_units(value).ok_or_else(|| {
                BackendError::refused(
                    NAME,
                    format!(
                        "sales line {}: {what} {value} has more than 4 decimal places or is too large",
                        line.doc_id()
                    ),
                )
            })
        };
        let subtotal_minor = minor("subtotal", line.subtotal)?;
        let tax_minor = minor("tax_amount", line.tax_amount)?;
        let limbs_of = |name: &str, value: i64| {
            u64::try_from(value).map(Limbs::of).map_err(|_| {
                BackendError::refused(
                    NAME,
                    format!("sales line {}: {name} {value} is negative", line.doc_id()),
                )
            })
        };
        let subtotal_limbs = limbs_of("subtotal", subtotal_minor)?;
        let tax_limbs = limbs_of("tax_amount", tax_minor)?;
        let quantity_limbs = Limbs::of(u64::from(line.quantity));
        Ok(SalesLineDoc {
            schema_version: SALES_LINE_SCHEMA,
            subtotal_minor,
            tax_minor,
            subtotal_limbs,
            tax_limbs,
            quantity_limbs,
            line,
        })
    }
}

/// A document ready for `_bulk`: its index, id, external version and source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub model: Model,
    pub id: String,
    pub version: u64,
    pub source: Value,
}

fn json<T: Serialize>(value: &T) -> Result<Value, BackendError> {
    serde_json::to_value(value).map_err(|e| BackendError::refused(NAME, e))
}

impl Stored {
    pub fn from_document(doc: &ReadDocument) -> Result<Stored, BackendError> {
        let (model, id, source) = match doc {
            ReadDocument::CartDetail(d) => (Model::CartDetail, d.cart_id.to_string(), json(d)?),
            ReadDocument::CartSummary(d) => (Model::CartSummary, d.cart_id.to_string(), json(d)?),
            ReadDocument::SalesLine(d) => (
                Model::SalesLines,
                d.doc_id(),
                json(&SalesLineDoc::new(d.clone())?)?,
            ),
            ReadDocument::CommandStatus(d) => {
                (Model::CommandStatus, d.command_id.to_string(), json(d)?)
            }
        };
        Ok(Stored {
            model,
            id,
            version: doc.version(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The templates are `dynamic: strict`: a field they do not map is refused
    //! at write time. Every stored field must be mapped, and vice versa.

    use super::*;
    use chrono::Utc;
    use salestrack_core::event::{Event, RecordedEvent};
    use salestrack_core::ids::CommandId;
    use salestrack_core::read_model::CartDetail;
    use salestrack_core::testing::{line, other_line};
    use salestrack_core::wire::{Outcome, OutcomeStatus, Reason, SCHEMA_VERSION};
    use std::collections::BTreeSet;

    /// Dotted paths of every mapped field.
    fn mapped(properties: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        for (name, spec) in properties.as_object().expect("properties") {
            let path = format!("{prefix}{name}");
            match spec.get("properties") {
                Some(inner) => mapped(inner, &format!("{path}."), out),
                None => {
                    out.insert(path);
                }
            }
        }
    }

    /// Dotted paths of every field of a document (array elements merged).
    fn fields(doc: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        for (name, value) in doc.as_object().expect("object") {
            let path = format!("{prefix}{name}");
            match value {
                Value::Object(_) => fields(value, &format!("{path}."), out),
                Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                    items
                        .iter()
                        .for_each(|i| fields(i, &format!("{path}."), out))
                }
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    fn assert_covers(doc: ReadDocument) {
        let stored = Stored::from_document(&doc).expect("stored");
        let template: Value =
            serde_json::from_str(stored.model.template_file()).expect("template JSON");
        assert_eq!(template["template"]["mappings"]["dynamic"], "strict");
        let mut m = BTreeSet::new();
        mapped(&template["template"]["mappings"]["properties"], "", &mut m);
        let mut f = BTreeSet::new();
        fields(&stored.source, "", &mut f);
        assert_eq!(
            f,
            m,
            "{}: stored fields (left) vs mapped fields (right)",
            stored.model.name()
        );
    }

    fn detail() -> CartDetail {
        let events = RecordedEvent::number(
            line().cart_id,
            0,
            CommandId(uuid::Uuid::nil()),
            Utc::now(),
            vec![Event::OrderPlaced(line()), Event::OrderPlaced(other_line())],
        );
        CartDetail::fold(&events).expect("cart")
    }

    /// A cart through every step of the saga: every optional field is set.
    fn checked_out(steps: usize) -> CartDetail {
        use salestrack_core::event::{CancelReason, Checkout};
        use salestrack_core::ids::PaymentId;
        let payment_id = PaymentId::for_checkout(line().cart_id, 3);
        let amount: rust_decimal::Decimal = "427.98".parse().expect("amount");
        let saga = vec![
            Event::CheckoutStarted(Checkout {
                payment_method: "card".into(),
                amount,
                currency: line().currency,
                expires_at: Utc::now(),
            }),
            Event::CartCancelled {
                reason: CancelReason::PaymentDeclined,
                payment_id: Some(payment_id),
            },
            Event::RefundRequested {
                checkout: 3,
                payment_id,
                amount,
            },
        ];
        let mut events = vec![Event::OrderPlaced(line()), Event::OrderPlaced(other_line())];
        events.extend(saga.into_iter().take(steps));
        let events = RecordedEvent::number(
            line().cart_id,
            0,
            CommandId(uuid::Uuid::nil()),
            Utc::now(),
            events,
        );
        CartDetail::fold(&events).expect("cart")
    }

    #[test]
    fn the_cart_detail_template_maps_every_field() {
        assert_covers(ReadDocument::CartDetail(checked_out(3)));
    }

    #[test]
    fn the_cart_summary_template_maps_every_field() {
        // Never both at once: a reason only when cancelled, the deadline
        // only while checking out. The mapping must take either.
        let mut summary = checked_out(1).summary();
        summary.status_reason = checked_out(2).summary().status_reason;
        assert!(summary.status_reason.is_some() && summary.checkout_version.is_some());
        assert_covers(ReadDocument::CartSummary(summary));
    }

    #[test]
    fn the_sales_lines_template_maps_every_field() {
        let line = detail().sales_line(line().order_id).expect("line");
        assert_covers(ReadDocument::SalesLine(line));
    }

    #[test]
    fn the_command_status_template_maps_every_field() {
        assert_covers(ReadDocument::CommandStatus(Outcome {
            schema_version: SCHEMA_VERSION,
            command_id: CommandId(uuid::Uuid::nil()),
            cart_id: line().cart_id,
            order_id: Some(line().order_id),
            command_type: "place_order".into(),
            status: OutcomeStatus::Rejected,
            version: 1,
            duplicate: false,
            reason: Some(Reason {
                code: "cart_full".into(),
                message: "full".into(),
            }),
            decided_at: Utc::now(),
            user_id: Some("user-42".into()),
        }));
    }

    #[test]
    fn a_sales_line_stores_its_money_in_minor_units() {
        let line = detail().sales_line(line().order_id).expect("line");
        let doc = SalesLineDoc::new(line.clone()).expect("doc");
        assert_eq!(
            salestrack_core::money::from_minor_units(doc.subtotal_minor),
            line.subtotal
        );
    }
}
