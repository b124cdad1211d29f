//! A bound on log lines a flood repeats: the first few in each interval are written, the rest counted and reported with the next one written.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of line, e.g. "connection refused".
pub struct LogRate {
    burst: u32,
    per: Duration,
    state: Mutex<Window>,
}

struct Window {
    start: Option<Instant>,
    shown: u32,
    held_back: u64,
}

impl LogRate {
    /// At most `burst` lines every `per`.
    pub const fn new(burst: u32, per: Duration) -> LogRate {
        LogRate {
            burst,
            per,
            state: Mutex::new(Window {
                start: None,
                shown: 0,
                held_back: 0,
            }),
        }
    }

    /// Some(lines held back since the last one written) when this one may
    /// be written at `now`; None when it is to be held back.
    pub fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if w.start.is_none_or(|s| now.duration_since(s) >= self.per) {
            w.start = Some(now);
            w.shown = 0;
        }
        if w.shown < self.burst {
            w.shown += 1;
            Some(std::mem::take(&mut w.held_back))
        } else {
            w.held_back += 1;
            None
        }
    }

    /// As [`LogRate::allow_at`], now.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_a_few_lines_and_counts_the_rest() {
        let r = LogRate::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let shown: Vec<Option<u64>> = (0..1000).map(|_| r.allow_at(t0)).collect();
        assert_eq!(shown.iter().filter(|s| s.is_some()).count(), 3);
        assert_eq!(shown[..3], [Some(0), Some(0), Some(0)]);
        // The next interval's first line tells how many were held back.
        assert_eq!(r.allow_at(t0 + Duration::from_secs(10)), Some(997));
        assert_eq!(r.allow_at(t0 + Duration::from_secs(10)), Some(0));
    }
}
