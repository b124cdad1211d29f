//! Where actors read the time: an injectable clock, so that timers (retransmission, timeouts) are decided by state machines that tests drive without sleeping.

use std::time::Instant;

/// A source of `Instant`s.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}
