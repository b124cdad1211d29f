//! The `bench` command: a standard-XMPP load generator (c2s, s2s, idle sessions, pubsub fan-out, multi-user chat) that runs unchanged against our node, Prosody or ejabberd, reporting as text or JSON.

pub mod conn;
pub mod idle;
pub mod load;
pub mod muc;
pub mod pubsub;
pub mod scram;
pub mod wire;

use serde::Serialize;

/// Sequence numbers below a bound seen so far (one bit each): tells a
/// first delivery from a duplicate.
pub struct SeqSet(Vec<u64>);

impl SeqSet {
    pub fn new(below: u64) -> SeqSet {
        SeqSet(vec![0; (below as usize).div_ceil(64).max(1)])
    }

    /// Records `seq`; false when it was seen before.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        let first = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        first
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Percentiles of latencies in microseconds.
pub fn percentiles(us: &mut [u32]) -> Latency {
    if us.is_empty() {
        return Latency::default();
    }
    us.sort_unstable();
    let at = |q: f64| us[((us.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    Latency {
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// The human form of a load report.
pub fn text(r: &load::LoadReport) -> String {
    let mut s = format!(
        "bench {} against {}{}\n",
        r.mode,
        r.server,
        r.peer_server
            .as_ref()
            .map(|p| format!(" -> {p}"))
            .unwrap_or_default()
    );
    s += &format!(
        "  logins      {} of {} users in {:.2} s: {:.0} logins/s ({} failed)\n",
        r.logins,
        r.users * if r.peer_server.is_some() { 2 } else { 1 },
        r.login_secs,
        r.logins_per_sec,
        r.login_errors
    );
    s += &format!(
        "  messages    {} sent, {} delivered in {:.2} s: {:.0} msg/s\n",
        r.sent, r.delivered, r.send_secs, r.delivered_per_sec
    );
    s += &format!(
        "  latency     p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
        r.latency.p50_ms, r.latency.p95_ms, r.latency.p99_ms, r.latency.max_ms
    );
    s += &format!(
        "  problems    {} lost, {} duplicates, {} errors\n",
        r.lost, r.duplicates, r.errors
    );
    if let Some(e) = &r.first_error {
        s += &format!("  first error {e}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sequence_number_is_new_once() {
        let mut s = super::SeqSet::new(130);
        assert!(s.insert(0) && s.insert(64) && s.insert(129));
        assert!(!s.insert(64));
        assert!(s.insert(63));
        assert!(!s.insert(129));
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let l = super::percentiles(&mut v);
        assert!((l.p50_ms - 500.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99_ms - 990.0).abs() <= 1.0, "{l:?}");
        assert_eq!(l.max_ms, 1000.0);
    }
}
