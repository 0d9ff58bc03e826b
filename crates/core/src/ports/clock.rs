//! The clock port: time is passed in, never read inside the core.

use chrono::{DateTime, Utc};

/// Time is passed in, never read inside the core.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
