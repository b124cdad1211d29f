//! The paper's flow on many clouds at once (a scenario's `flow` step): each cloud runs `intercloud negotiate` — query its exchange, check presence, propose — and its answer is held against the oracle computed from the drawn descriptions.

use crate::config::Config;
use crate::negotiate::Ask;
use crate::net::Net;
use intercloud_actors::catalog::constraints::NS_RES;
use libp2p::futures::stream::{self, StreamExt};
use std::time::{Duration, Instant};

/// One cloud's part.
pub struct Job {
    pub config: Config,
    /// The matching clouds its exchange should name, in order (None: no oracle).
    pub oracle: Option<Vec<String>>,
}

/// What the step saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub clouds: usize,
    pub agreed: usize,
    pub offline: usize,
    /// Clouds whose exchange (rightly) named no other matching cloud.
    pub no_match: usize,
    /// Clouds whose flow failed although matches existed, with why.
    pub failed: Vec<String>,
    /// Clouds every match refused (domain, matches): right exactly when no
    /// match had the amount free — the caller holds that against the
    /// providers' capacity.
    pub refused: Vec<(String, Vec<String>)>,
    /// Answers that differ from the oracle.
    pub mismatched: Vec<String>,
    /// Per-cloud time of the whole flow, sorted.
    pub times: Vec<Duration>,
    pub total: Duration,
}

impl Outcome {
    pub fn percentile(&self, p: f64) -> Duration {
        if self.times.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.times.len() as f64 - 1.0) * p).round() as usize;
        self.times[i.min(self.times.len() - 1)]
    }
}

/// A cloud's domain, its oracle, how long it took, and its result with the names it got.
type Done = (
    String,
    Option<Vec<String>>,
    Duration,
    Result<(String, Vec<String>), String>,
);

/// Runs every job, `concurrency` at a time.
pub fn run(net: &Net, jobs: Vec<Job>, ask: &Ask, constraints: &str, concurrency: usize) -> Outcome {
    let t0 = Instant::now();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Outcome {
                failed: vec![e.to_string()],
                ..Default::default()
            }
        }
    };
    let n = jobs.len();
    let results: Vec<Done> = rt.block_on(
        stream::iter(jobs.into_iter().map(|j| async move {
            let t = Instant::now();
            let r = crate::negotiate::run_on(net, &j.config, ask, constraints)
                .await
                .map_err(|e| e.to_string())
                .map(|rep| {
                    let result = rep.get_attr("result").unwrap_or("failed").to_string();
                    let names = rep
                        .get_child("matchingClouds", NS_RES)
                        .map(|m| m.elements().map(|c| c.text_content()).collect())
                        .unwrap_or_default();
                    (result, names)
                });
            (j.config.node.domain.clone(), j.oracle, t.elapsed(), r)
        }))
        .buffer_unordered(concurrency.max(1))
        .collect(),
    );
    let mut o = Outcome {
        clouds: n,
        ..Default::default()
    };
    for (domain, oracle, took, r) in results {
        o.times.push(took);
        match r {
            Err(e) => o.failed.push(format!("{domain}: {e}")),
            Ok((result, names)) => {
                if let Some(want) = &oracle {
                    if &names != want {
                        o.mismatched
                            .push(format!("{domain}: got {names:?}, the oracle says {want:?}"));
                    }
                }
                match result.as_str() {
                    "agreed" => o.agreed += 1,
                    "offline" => o.offline += 1,
                    _ if names.is_empty() => o.no_match += 1,
                    "failed" => o.refused.push((domain, names)),
                    other => o
                        .failed
                        .push(format!("{domain}: ended {other} with matches {names:?}")),
                }
            }
        }
    }
    o.times.sort();
    o.total = t0.elapsed();
    o
}
