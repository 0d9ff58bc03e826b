//! One order's trace, followed from the POST to the projector: the caller's
//! W3C trace id is on the command function's span, on the domain's (through
//! the command record's `traceparent` header) and on the projector's
//! (through the event's). A test binary of its own: it installs the
//! process-wide subscriber that records every span.

#[path = "../common/mod.rs"]
mod common;

use common::{place_traced_order, spawn_embedded};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// (span name, fields) of every span opened in the process.
type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

struct Recorder(Spans);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        if let Ok(mut spans) = self.0.lock() {
            spans.push((attrs.metadata().name().to_owned(), fields));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_orders_trace_id_runs_from_the_post_to_the_projector_span() {
    let spans: Spans = Arc::default();
    tracing_subscriber::registry()
        .with(Recorder(spans.clone()))
        .init();
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_embedded(dir.path()).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (cart, accepted) = place_traced_order(&app, trace_id).await;
    app.stop().await;

    let spans = spans.lock().expect("spans").clone();
    let of_cart = |name: &str| {
        spans
            .iter()
            .filter(|(n, f)| n == name && f.get("cart_id") == Some(&cart.to_string()))
            .map(|(_, f)| f.clone())
            .collect::<Vec<_>>()
    };
    for (stage, name) in [
        ("command function", "accept"),
        ("domain", "command"),
        ("projector", "project"),
    ] {
        let found = of_cart(name);
        assert!(!found.is_empty(), "no {name:?} span for the cart ({stage})");
        assert!(
            found
                .iter()
                .all(|f| f.get("trace_id").map(String::as_str) == Some(trace_id)),
            "{stage}: {found:?}"
        );
        assert!(
            found.iter().all(|f| f.get("command_id")
                == Some(
                    &accepted["command_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                )),
            "{stage} names the command: {found:?}"
        );
    }
}
