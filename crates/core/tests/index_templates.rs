//! The OpenSearch index templates in `infra/` are `dynamic: strict`: a
//! document field they do not map would be refused at write time. Every field
//! the read models serialize must therefore be mapped, and vice versa.

use chrono::Utc;
use salestrack_core::event::{Event, RecordedEvent};
use salestrack_core::ids::CommandId;
use salestrack_core::read_model::CartDetail;
use salestrack_core::testing::{line, other_line};
use salestrack_core::wire::{Outcome, OutcomeStatus, Reason, SCHEMA_VERSION};
use serde_json::Value;
use std::collections::BTreeSet;

fn template(name: &str) -> Value {
    let path = format!(
        "{}/../../infra/opensearch/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("template file"))
        .expect("template JSON")
}

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
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => items
                .iter()
                .for_each(|i| fields(i, &format!("{path}."), out)),
            _ => {
                out.insert(path);
            }
        }
    }
}

fn assert_covers(template_name: &str, doc: Value) {
    let t = template(template_name);
    assert_eq!(t["template"]["mappings"]["dynamic"], "strict");
    let mut m = BTreeSet::new();
    mapped(&t["template"]["mappings"]["properties"], "", &mut m);
    let mut f = BTreeSet::new();
    fields(&doc, "", &mut f);
    assert_eq!(
        f, m,
        "{template_name}: document fields (left) vs mapped fields (right)"
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

#[test]
fn the_cart_detail_template_maps_every_field() {
    assert_covers(
        "cart-detail.json",
        serde_json::to_value(detail()).expect("json"),
    );
}

#[test]
fn the_cart_summary_template_maps_every_field() {
    assert_covers(
        "cart-summary.json",
        serde_json::to_value(detail().summary()).expect("json"),
    );
}

#[test]
fn the_sales_lines_template_maps_every_field() {
    let line = detail().sales_line(line().order_id).expect("line");
    assert_covers(
        "sales-lines.json",
        serde_json::to_value(line).expect("json"),
    );
}

#[test]
fn the_command_status_template_maps_every_field() {
    let outcome = Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: CommandId(uuid::Uuid::nil()),
        cart_id: line().cart_id,
        order_id: line().order_id,
        command_type: "place_order".into(),
        status: OutcomeStatus::Rejected,
        version: 1,
        duplicate: false,
        reason: Some(Reason {
            code: "cart_full".into(),
            message: "full".into(),
        }),
        decided_at: Utc::now(),
    };
    assert_covers(
        "command-status.json",
        serde_json::to_value(outcome).expect("json"),
    );
}
