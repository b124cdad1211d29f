//! Failed logins across connections: after too many in a window, an address or an account is refused for the rest of it. Sans-IO: the caller passes the time.
//!
//! Each address (IPv6 by its /64, as one host usually holds one) and each
//! claimed account name — existing or not, so that a lockout does not tell
//! which accounts exist — has a window that opens at its first failure.
//! Once it holds `max_failures` failures, attempts are refused until the
//! window ends. The maps are bounded: when one is full, ended windows go
//! first, then the oldest.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits (from the node's configuration).
#[derive(Clone, Copy, Debug)]
pub struct ThrottleSettings {
    /// Failures from one address in a window before it is refused.
    pub per_address: u32,
    /// Failures for one account name in a window before it is refused.
    pub per_account: u32,
    /// How long a window lasts.
    pub window: Duration,
    /// Addresses and account names tracked at once (each map).
    pub max_entries: usize,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    opened: Instant,
    failures: u32,
}

/// What is refused, and for how much longer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Address(Duration),
    Account(Duration),
}

struct Counts<K> {
    map: HashMap<K, Window>,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn new() -> Self {
        Counts {
            map: HashMap::new(),
        }
    }

    /// How long `k` stays refused, if it is.
    fn refused(&self, k: &K, limit: u32, window: Duration, now: Instant) -> Option<Duration> {
        let w = self.map.get(k)?;
        let end = w.opened + window;
        (w.failures >= limit && now < end).then(|| end - now)
    }

    /// Counts a failure; true when it is the one that reaches the limit.
    fn fail(&mut self, k: K, limit: u32, window: Duration, max: usize, now: Instant) -> bool {
        if !self.map.contains_key(&k) && self.map.len() >= max {
            self.map.retain(|_, w| now < w.opened + window);
            if self.map.len() >= max {
                if let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, w)| w.opened)
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&oldest);
                }
            }
        }
        let w = self.map.entry(k).or_insert(Window {
            opened: now,
            failures: 0,
        });
        if now >= w.opened + window {
            *w = Window {
                opened: now,
                failures: 0,
            };
        }
        w.failures += 1;
        w.failures == limit
    }

    fn forget(&mut self, k: &K) {
        self.map.remove(k);
    }
}

/// The key an address is counted under.
fn host_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
    }
}

/// Failed-login counts shared by every connection of a node.
pub struct AuthThrottle {
    settings: ThrottleSettings,
    inner: Mutex<(Counts<IpAddr>, Counts<String>)>,
}

impl AuthThrottle {
    pub fn new(settings: ThrottleSettings) -> AuthThrottle {
        AuthThrottle {
            settings,
            inner: Mutex::new((Counts::new(), Counts::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Counts<IpAddr>, Counts<String>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a login from `ip` (for `account`, once it is known) is refused.
    pub fn check(
        &self,
        ip: Option<IpAddr>,
        account: Option<&str>,
        now: Instant,
    ) -> Option<Refusal> {
        let s = &self.settings;
        let g = self.lock();
        if let Some(d) = ip.and_then(|ip| g.0.refused(&host_of(ip), s.per_address, s.window, now)) {
            return Some(Refusal::Address(d));
        }
        account
            .and_then(|a| g.1.refused(&a.to_string(), s.per_account, s.window, now))
            .map(Refusal::Account)
    }

    /// Counts a failed login (wrong credentials) from `ip` for `account`.
    pub fn failed(&self, ip: Option<IpAddr>, account: Option<&str>, now: Instant) {
        let s = self.settings;
        let mut g = self.lock();
        if let Some(ip) = ip {
            if g.0
                .fail(host_of(ip), s.per_address, s.window, s.max_entries, now)
            {
                tracing::warn!(address = %ip, failures = s.per_address, secs = s.window.as_secs(), "too many failed logins from an address: refused for the rest of the window");
            }
        }
        if let Some(a) = account {
            if g.1
                .fail(a.to_string(), s.per_account, s.window, s.max_entries, now)
            {
                tracing::warn!(
                    account = a,
                    failures = s.per_account,
                    secs = s.window.as_secs(),
                    "too many failed logins for an account: refused for the rest of the window"
                );
            }
        }
    }

    /// A login succeeded: the account's count starts again.
    pub fn succeeded(&self, account: &str) {
        self.lock().1.forget(&account.to_string());
    }

    /// Addresses and accounts tracked now (tests).
    pub fn tracked(&self) -> (usize, usize) {
        let g = self.lock();
        (g.0.map.len(), g.1.map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(max_entries: usize) -> AuthThrottle {
        AuthThrottle::new(ThrottleSettings {
            per_address: 5,
            per_account: 3,
            window: Duration::from_secs(60),
            max_entries,
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9));

    #[test]
    fn an_account_is_refused_for_the_rest_of_its_window() {
        let t = throttle(100);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(t.check(None, Some("bob@x"), t0), None, "attempt {i}");
            t.failed(None, Some("bob@x"), t0);
        }
        assert_eq!(
            t.check(None, Some("bob@x"), t0 + Duration::from_secs(10)),
            Some(Refusal::Account(Duration::from_secs(50)))
        );
        // Others are not affected; the window ends.
        assert_eq!(t.check(None, Some("carol@x"), t0), None);
        assert_eq!(
            t.check(None, Some("bob@x"), t0 + Duration::from_secs(60)),
            None
        );
        // A success starts the count again.
        t.failed(None, Some("carol@x"), t0);
        t.failed(None, Some("carol@x"), t0);
        t.succeeded("carol@x");
        t.failed(None, Some("carol@x"), t0);
        assert_eq!(t.check(None, Some("carol@x"), t0), None);
    }

    #[test]
    fn an_address_is_refused_whatever_account_it_tries() {
        let t = throttle(100);
        let t0 = Instant::now();
        for i in 0..5 {
            t.failed(Some(A), Some(&format!("user{i}@x")), t0);
        }
        assert_eq!(
            t.check(Some(A), Some("new@x"), t0),
            Some(Refusal::Address(Duration::from_secs(60)))
        );
        assert_eq!(t.check(Some("127.0.0.10".parse().unwrap()), None, t0), None);
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64() {
        let t = throttle(100);
        let t0 = Instant::now();
        for i in 0..5 {
            let ip: IpAddr = format!("fd00:1:2:3::{i:x}").parse().unwrap();
            t.failed(Some(ip), None, t0);
        }
        let same: IpAddr = "fd00:1:2:3:ffff::1".parse().unwrap();
        assert!(matches!(
            t.check(Some(same), None, t0),
            Some(Refusal::Address(_))
        ));
        let other: IpAddr = "fd00:1:2:4::1".parse().unwrap();
        assert_eq!(t.check(Some(other), None, t0), None);
    }

    #[test]
    fn the_maps_stay_within_their_bound() {
        let t = throttle(50);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(
                Some(ip),
                Some(&format!("u{i}@x")),
                t0 + Duration::from_millis(i as u64),
            );
        }
        let (a, b) = t.tracked();
        assert!(a <= 50 && b <= 50, "{a} addresses, {b} accounts tracked");
    }
}
