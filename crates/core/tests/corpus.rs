//! The old-event corpus: events exactly as each release stored them, decoded
//! and folded by this build, forever.
//!
//! `tests/corpus/<release>/<stream>/` holds one file per event, the envelope
//! bytes the embedded store's `envelope` column, Cassandra's `envelope` blob
//! and a Kafka record's value all held (they are the same bytes), and
//! `manifest.json`: per event, its file, its type and the schema version the
//! store's `schema_version` column and the Kafka header said. `expected.json`
//! is the cart detail and decision-state facts the release folded from it.
//!
//! Since `r3-sealed-personal-fields`, personal fields are stored sealed
//! (`salestrack_core::personal`) under [`corpus_key`], a key committed for
//! the corpus alone; the folds open them with it, so every release folds to
//! the same facts.
//!
//! A release that changes how events are written adds its own directory
//! with `SALESTRACK_WRITE_CORPUS=<release> cargo test -p salestrack-core
//! --test corpus -- --ignored`; directories already committed are never
//! rewritten.

use chrono::{DateTime, TimeZone, Utc};
use salestrack_core::aggregate::{Cart, Context};
use salestrack_core::command::{CancelOrder, CheckoutCart, Command};
use salestrack_core::event::{CancelReason, Checkout, Event, RecordedEvent};
use salestrack_core::ids::{CartId, CommandId, KeyId, OrderId, PaymentId};
use salestrack_core::personal::{self, DataKey, PersonalField};
use salestrack_core::read_model::CartDetail;
use salestrack_core::testing::line;
use salestrack_core::wire;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, second)
        .single()
        .unwrap_or_default()
}

/// Two carts that use every event type: one paid; one whose checkout
/// timed out, then paid late and was refunded.
fn streams() -> Vec<(&'static str, Vec<RecordedEvent>)> {
    let record = |cart: CartId, events: Vec<Event>| {
        events
            .into_iter()
            .enumerate()
            .flat_map(|(i, event)| {
                RecordedEvent::number(
                    cart,
                    i as u64,
                    CommandId(uuid::Uuid::from_u128(0xc0 + i as u128)),
                    at(i as u32),
                    vec![event],
                )
            })
            .collect::<Vec<_>>()
    };
    let lines = |cart: u128| {
        (1..=3u128)
            .map(|n| {
                let mut l = line();
                l.cart_id = CartId(uuid::Uuid::from_u128(cart));
                l.order_id = OrderId(uuid::Uuid::from_u128(cart * 16 + n));
                l.product_name = format!("Product {n}");
                l
            })
            .collect::<Vec<_>>()
    };
    let checkout = |amount: &str| {
        Event::CheckoutStarted(Checkout {
            payment_method: "card".into(),
            amount: amount.parse().expect("amount"),
            currency: line().currency,
            expires_at: at(40),
        })
    };
    let paid = CartId(uuid::Uuid::from_u128(0xa1));
    let [a, b, c] = <[_; 3]>::try_from(lines(0xa1)).expect("three lines");
    let paid_stream = record(
        paid,
        vec![
            Event::OrderPlaced(a.clone()),
            Event::OrderPlaced(b),
            Event::OrderPlaced(c),
            Event::OrderCancelled {
                order_id: a.order_id,
                reason: Some("changed my mind".into()),
            },
            checkout("855.96"),
            Event::PaymentSucceeded {
                payment_id: PaymentId::for_checkout(paid, 5),
                amount: "855.96".parse().expect("amount"),
            },
        ],
    );
    let late = CartId(uuid::Uuid::from_u128(0xb2));
    let [a, b, _] = <[_; 3]>::try_from(lines(0xb2)).expect("three lines");
    let late_stream = record(
        late,
        vec![
            Event::OrderPlaced(a),
            Event::OrderPlaced(b.clone()),
            Event::OrderCancelled {
                order_id: b.order_id,
                reason: None,
            },
            checkout("427.98"),
            Event::CartCancelled {
                reason: CancelReason::PaymentTimeout,
                payment_id: None,
            },
            Event::RefundRequested {
                checkout: 4,
                payment_id: PaymentId::for_checkout(late, 4),
                amount: "427.98".parse().expect("amount"),
            },
        ],
    );
    vec![("paid", paid_stream), ("refunded", late_stream)]
}

/// The data key the corpus's sealed personal fields are sealed under: a
/// fixed one, public, for these files only.
fn corpus_key() -> DataKey {
    DataKey::new(KeyId(uuid::Uuid::from_u128(0x5ea1_ed00)), [0x5a; 32])
}

/// The streams as this build stores them: their personal fields sealed
/// where they entered.
fn sealed_streams() -> Vec<(&'static str, Vec<RecordedEvent>)> {
    let key = corpus_key();
    streams()
        .into_iter()
        .map(|(name, mut events)| {
            for e in &mut events {
                match &mut e.event {
                    Event::OrderPlaced(line) => personal::seal_line(line, &key),
                    Event::CheckoutStarted(checkout) => {
                        checkout.payment_method = key
                            .seal(PersonalField::PaymentMethod, &checkout.payment_method)
                            .to_token();
                    }
                    _ => {}
                }
            }
            (name, events)
        })
        .collect()
}

/// What a stream folds to: the cart detail (its sealed fields opened with
/// [`corpus_key`]), and the decision state's answers to the commands that
/// tell its facts apart.
fn folded(events: &[RecordedEvent]) -> Value {
    let detail = CartDetail::fold(events).expect("a cart");
    let mut opened = serde_json::to_value(&detail).expect("JSON");
    let key = corpus_key();
    personal::open_document(&mut opened, &HashMap::from([(key.id, key)]));
    let cart = Cart::from_history(events);
    let cart_id = events[0].cart_id;
    let context = Context {
        now: at(59),
        payment_timeout: chrono::Duration::seconds(30),
    };
    let probes = [
        Command::CheckoutCart(CheckoutCart {
            cart_id,
            payment_method: None,
            requested_by: None,
        }),
        Command::CancelOrder(CancelOrder {
            cart_id,
            order_id: detail.items[0].order_id,
            reason: None,
            requested_by: None,
        }),
    ];
    let decisions: Vec<Value> = probes
        .iter()
        .map(|c| match cart.decide(c, &context) {
            Ok(events) => json!({ "events": events.len(), "satisfied_at": cart.satisfied_at(c) }),
            Err(e) => json!({ "rejected": e.code() }),
        })
        .collect();
    json!({
        "detail": opened,
        "version": cart.version(),
        "decisions": decisions,
    })
}

#[test]
fn every_stored_event_of_every_release_still_decodes_and_folds_the_same() {
    let mut releases: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    releases.sort();
    assert!(!releases.is_empty(), "no corpus");
    let mut decoded = 0;
    for release in &releases {
        for (stream, _) in streams() {
            let dir = release.join(stream);
            let manifest: Vec<Value> = serde_json::from_slice(
                &std::fs::read(dir.join("manifest.json")).expect("manifest"),
            )
            .expect("manifest JSON");
            let events: Vec<RecordedEvent> = manifest
                .iter()
                .map(|entry| {
                    let file = entry["file"].as_str().expect("file");
                    let bytes = std::fs::read(dir.join(file)).expect("event bytes");
                    let event = wire::decode_event(&bytes).unwrap_or_else(|e| {
                        panic!("{}/{file} no longer decodes: {e}", dir.display())
                    });
                    assert_eq!(event.event.kind().as_str(), entry["type"], "{file}");
                    assert_eq!(
                        u64::from(event.schema_version),
                        entry["schema_version"].as_u64().expect("version"),
                        "{file}: the version it was stored in"
                    );
                    decoded += 1;
                    event
                })
                .collect();
            let expected: Value = serde_json::from_slice(
                &std::fs::read(dir.join("expected.json")).expect("expected.json"),
            )
            .expect("expected JSON");
            assert_eq!(
                folded(&events),
                expected,
                "{}: folds differently from the release that stored it",
                dir.display()
            );
        }
    }
    assert!(decoded >= 12, "{decoded} events decoded");
}

#[test]
fn this_build_folds_its_own_events_as_the_corpus_says() {
    // The events this build writes, decoded again: the same facts as the
    // oldest release's bytes.
    for (stream, events) in sealed_streams() {
        let again: Vec<RecordedEvent> = events
            .iter()
            .map(|e| wire::decode_event(&wire::encode_event(e)).expect("decodes"))
            .collect();
        for release in std::fs::read_dir(corpus_dir()).expect("corpus") {
            let release = release.expect("entry").path();
            if !release.is_dir() {
                continue;
            }
            let dir = release.join(stream);
            let expected: Value = serde_json::from_slice(
                &std::fs::read(dir.join("expected.json")).expect("expected"),
            )
            .expect("JSON");
            assert_eq!(folded(&again), expected, "{}", dir.display());
        }
    }
}

/// Writes this build's corpus under `SALESTRACK_WRITE_CORPUS`'s name.
#[test]
#[ignore = "writes tests/corpus/<release>: run once per release that changes how events are stored"]
fn write_the_corpus_of_this_release() {
    let Ok(release) = std::env::var("SALESTRACK_WRITE_CORPUS") else {
        panic!("set SALESTRACK_WRITE_CORPUS to the release's directory name");
    };
    let root = corpus_dir().join(&release);
    assert!(
        !root.exists(),
        "{} is committed: never rewritten",
        root.display()
    );
    for (stream, events) in sealed_streams() {
        let dir = root.join(stream);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut manifest = Vec::new();
        for e in &events {
            let file = format!("{:04}-{}.json", e.version, e.event.kind().as_str());
            std::fs::write(dir.join(&file), wire::encode_event(e)).expect("write");
            manifest.push(json!({
                "file": file,
                "type": e.event.kind().as_str(),
                "schema_version": e.event.kind().schema_version(),
            }));
        }
        let pretty = |v: &Value| serde_json::to_vec_pretty(v).expect("JSON");
        std::fs::write(dir.join("manifest.json"), pretty(&json!(manifest))).expect("write");
        std::fs::write(dir.join("expected.json"), pretty(&folded(&events))).expect("write");
    }
}

/// The sealed release holds no personal field readable: every event file
/// is searched for the sample's addresses and payment method.
#[test]
fn the_sealed_release_holds_no_personal_field_in_the_clear() {
    let sample = line();
    let dir = corpus_dir().join("r3-sealed-personal-fields");
    let mut files = 0;
    for (stream, _) in streams() {
        for entry in std::fs::read_dir(dir.join(stream)).expect("the sealed release") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with("manifest.json") || name.ends_with("expected.json") {
                continue;
            }
            let bytes = String::from_utf8(std::fs::read(&path).expect("read")).expect("UTF-8");
            for clear in [&sample.shipping_address, &sample.billing_address] {
                assert!(!bytes.contains(clear.as_str()), "{name} holds {clear}");
            }
            assert!(
                !bytes.contains("\"card\""),
                "{name} holds its payment method"
            );
            files += 1;
        }
    }
    assert!(files >= 12, "{files} event files");
}

/// The snapshot of the corpus's richest cart, as this build takes it.
fn golden_cart() -> (CartId, Cart) {
    let (_, events) = streams().remove(1);
    (events[0].cart_id, Cart::from_history(&events))
}

fn golden_path() -> PathBuf {
    corpus_dir().join(format!(
        "snapshot-format-{}.bin",
        salestrack_core::snapshot::FORMAT
    ))
}

#[test]
fn the_snapshot_format_is_tied_to_the_decision_state() {
    use salestrack_core::snapshot::{restore, take};
    let (cart_id, cart) = golden_cart();
    let golden = std::fs::read(golden_path()).unwrap_or_else(|_| {
        panic!(
            "no {}: a new snapshot FORMAT commits its golden bytes \
             (SALESTRACK_WRITE_SNAPSHOT=1 cargo test -p salestrack-core --test corpus -- --ignored)",
            golden_path().display()
        )
    });
    assert_eq!(
        take(cart_id, &cart).state,
        golden,
        "the snapshot layout changed without a new snapshot::FORMAT: bump it (older snapshots are then ignored) and commit its golden bytes"
    );
    let stored = salestrack_core::ports::Snapshot {
        cart_id,
        version: cart.version(),
        format: salestrack_core::snapshot::FORMAT,
        state: golden,
    };
    assert_eq!(restore(&stored).expect("restores"), cart);
}

#[test]
#[ignore = "writes the golden snapshot of a new snapshot::FORMAT"]
fn write_the_golden_snapshot_of_this_format() {
    if std::env::var_os("SALESTRACK_WRITE_SNAPSHOT").is_none() {
        panic!("set SALESTRACK_WRITE_SNAPSHOT=1");
    }
    assert!(!golden_path().exists(), "committed: never rewritten");
    let (cart_id, cart) = golden_cart();
    std::fs::write(
        golden_path(),
        salestrack_core::snapshot::take(cart_id, &cart).state,
    )
    .expect("write");
}
