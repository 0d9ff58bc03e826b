//! Chooses and opens the backends behind the ports from the settings. Today
//! only the embedded SQLite backends exist; distributed engines plug in here
//! without touching any handler.

use crate::config::Settings;
use salestrack_core::ports::{BackendError, Consumer, EventStore, Producer, ReadStore};
use salestrack_embedded::{Embedded, EmbeddedBus};
use std::sync::Arc;
use std::time::Duration;

/// The opened backends, as ports.
#[derive(Clone)]
pub struct Backends {
    pub producer: Arc<dyn Producer>,
    pub event_store: Arc<dyn EventStore>,
    pub read_store: Arc<dyn ReadStore>,
    bus: EmbeddedBus,
    description: String,
}

impl Backends {
    pub fn connect(settings: &Settings) -> Result<Backends, BackendError> {
        let embedded = Embedded::open(&settings.data_dir, settings.partitions)?;
        let retention = Duration::from_secs(settings.bus_retention_hours.saturating_mul(3600));
        let bus = embedded.bus.with_retention(retention);
        Ok(Backends {
            producer: Arc::new(bus.clone()),
            event_store: Arc::new(embedded.event_store),
            read_store: Arc::new(embedded.read_store),
            bus,
            description: format!("embedded (SQLite in {})", settings.data_dir.display()),
        })
    }

    /// A consumer-group member over `topics`.
    pub fn consumer(&self, group: &str, topics: &[&str]) -> Box<dyn Consumer> {
        Box::new(self.bus.consumer(group, topics))
    }

    /// What the runner is connected to, for the start-up log and readiness.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The ARN-like source name put on runner-built MSK batches.
    pub fn event_source_arn(&self) -> &'static str {
        "arn:aws:kafka:local:000000000000:cluster/salestrack-embedded"
    }

    pub fn bootstrap_servers(&self) -> &'static str {
        "embedded"
    }
}
