//! Counts the errors this process has logged since it started: `atoll
//! check` reports them per server, so "no errors in the logs since start"
//! needs no log shipping.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

static ERRORS: AtomicU64 = AtomicU64::new(0);

/// A layer to add to the process's subscriber.
pub struct CountErrors;

impl<S: Subscriber> Layer<S> for CountErrors {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == Level::ERROR {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn errors() -> u64 {
    ERRORS.load(Ordering::Relaxed)
}
