//! `bench idle`: holds N logged-in, idle sessions and reports how much the server's resident memory (VmRSS of a given pid) grew per session.

use super::conn::Target;
use super::load::login_all;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub sessions: usize,
    pub login_errors: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_session: f64,
    pub first_error: Option<String>,
}

/// VmRSS of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no VmRSS for pid {pid}"))
}

/// What to hold, and whose memory to read.
pub struct IdleArgs {
    pub target: Target,
    pub sessions: usize,
    pub password: String,
    pub register: bool,
    pub concurrency: usize,
    pub pid: u32,
    /// Wait before each reading.
    pub settle: Duration,
    /// Keep the sessions this long after measuring.
    pub hold: Duration,
}

/// Logs in `sessions` users, waits `settle`, measures, holds `hold`, then logs out.
pub async fn run(a: IdleArgs) -> Result<IdleReport, String> {
    let IdleArgs {
        target: t,
        sessions,
        password,
        register,
        concurrency,
        pid,
        settle,
        hold,
    } = a;
    let (t, password) = (&t, password.as_str());
    // Accounts first, on short connections (a few at a time), so that
    // storing them is not counted; then a few sessions warm the server up
    // (thread pools, TLS tables, caches) before the measurement.
    if register {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let (t, pw, sem) = (t.clone(), password.to_string(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire_owned().await;
                super::conn::register_only(&t, &format!("bench{i}"), &pw).await
            }));
        }
        for task in tasks {
            if let Ok(Err(e)) = task.await {
                return Err(format!("registration: {e}"));
            }
        }
    }
    let (warm, _, _) = login_all(t, 4.min(sessions), password, false, 4).await;
    drop(warm);
    tokio::time::sleep(settle).await;
    let before = rss_kib(pid)?;
    let (conns, errors, _) = login_all(t, sessions, password, false, concurrency).await;
    tokio::time::sleep(settle).await;
    let after = rss_kib(pid)?;
    let n = conns.iter().filter(|c| c.is_some()).count();
    tokio::time::sleep(hold).await;
    drop(conns);
    Ok(IdleReport {
        sessions: n,
        login_errors: errors.len(),
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_session: (after.saturating_sub(before) as f64 * 1024.0) / n.max(1) as f64,
        first_error: errors.into_iter().next(),
    })
}
