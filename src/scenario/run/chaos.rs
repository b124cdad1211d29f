//! Random kills and restarts drawn from a seed, and the verdicts on what the fleet did under them: refusals, free capacity, overbooking.

use super::*;

/// Plays random kills and restarts drawn from `seed`; every fault is a step of the report.
#[allow(clippy::too_many_arguments)]
pub(super) fn chaos(
    r: &mut Fleet,
    o: &RunOptions,
    book: &mut Book,
    secs: f64,
    every: f64,
    among: &str,
    kinds: &[String],
    seed: u64,
    t0: Instant,
) -> Vec<StepReport> {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pool: Vec<String> = r
        .members
        .iter()
        .filter(|m| match among {
            "all" => true,
            "roots" => m.roles.iter().any(|x| x == "root"),
            "exchanges" => m.roles.iter().any(|x| x == "exchange"),
            _ => m.roles.iter().all(|x| x == "cloud"),
        })
        .map(|m| m.domain.clone())
        .collect();
    let mut out = Vec::new();
    if pool.is_empty() {
        return out;
    }
    let mut downed: BTreeSet<String> = BTreeSet::new();
    // A fixed number of faults, so the same seed gives the same schedule.
    let rounds = (secs.max(0.0) / every).floor() as usize;
    let mut fault = |r: &mut Fleet, step: Step, node: &str, out: &mut Vec<StepReport>| {
        let at = t0.elapsed().as_secs_f64();
        let (action, _, ok, detail) = run_step(r, &Scenario::empty(), book, &step);
        (o.progress)(&format!(
            "   chaos {action} {node}: {}",
            if ok { "ok" } else { "FAILED" }
        ));
        out.push(StepReport {
            index: 0,
            at_secs: at,
            action,
            target: node.to_string(),
            ok,
            detail: format!("chaos; {detail}"),
        });
    };
    let mut placed = false;
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_secs_f64(every));
        let kind = kinds[rng.gen_range(0..kinds.len())].as_str();
        match kind {
            "partition" if pool.len() >= 2 => {
                // Some nodes of the pool, cut off from everything else.
                let n = rng.gen_range(1..=pool.len() / 2);
                let mut cut: Vec<String> = pool.choose_multiple(&mut rng, n).cloned().collect();
                cut.sort();
                let label = cut.join(" ");
                placed = true;
                fault(r, Step::Partition { groups: vec![cut] }, &label, &mut out);
            }
            "link" if pool.len() >= 2 => {
                let two: Vec<String> = pool.choose_multiple(&mut rng, 2).cloned().collect();
                let label = format!("{} <-> {}", two[0], two[1]);
                placed = true;
                let step = Step::LinkFault {
                    a: two[0].clone(),
                    b: two[1].clone(),
                    delay_ms: 50,
                    loss: 0.05,
                    duplicate: 0.0,
                    bytes_per_sec: 0,
                };
                fault(r, step, &label, &mut out);
            }
            _ => {
                let node = pool[rng.gen_range(0..pool.len())].clone();
                if r.is_running(&node) {
                    downed.insert(node.clone());
                    fault(r, Step::Kill { node: node.clone() }, &node, &mut out);
                } else {
                    downed.remove(&node);
                    fault(r, Step::Start { node: node.clone() }, &node, &mut out);
                }
            }
        }
    }
    if placed {
        fault(r, Step::Heal {}, "", &mut out);
    }
    for node in downed {
        fault(r, Step::Start { node: node.clone() }, &node, &mut out);
    }
    out
}

/// Whether every match refusing `amount` was right: no match may have the
/// amount free (`free` tells what a match has free now, after the step;
/// capacity only shrinks during a step, so room now means room then). A
/// match whose capacity cannot be read makes the refusal unproven.
pub(super) fn refusal_verdict(
    names: &[String],
    amount: u64,
    free: impl Fn(&str) -> Result<u64, String>,
) -> Result<(), String> {
    let roomy: Vec<String> = names
        .iter()
        .filter_map(|n| match free(n) {
            Ok(f) if f >= amount => Some(format!("{n} has {f} free")),
            Ok(_) => None,
            Err(e) => Some(format!("{n}: {e}")),
        })
        .collect();
    if roomy.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "refused by every match although {}",
            roomy.join(", ")
        ))
    }
}

/// What `m` offers of `service` and has not promised now.
pub(super) fn free_capacity(m: &Member, service: &str) -> Result<u64, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let c = Config::load(&m.config_path()).map_err(|e| format!("config: {e}"))?;
    let store = crate::node::open_store(&c).map_err(|e| format!("store: {e}"))?;
    let agreements = store.agreements().map_err(|e| format!("agreements: {e}"))?;
    let offered: u64 = c
        .negotiation
        .offers
        .iter()
        .filter(|o| o.service.eq_ignore_ascii_case(service))
        .map(|o| o.capacity)
        .sum();
    let used: u64 = agreements
        .iter()
        .filter(|a| {
            a.role == "provider" && a.service.eq_ignore_ascii_case(service) && a.active(now)
        })
        .map(|a| a.amount)
        .sum();
    Ok(offered.saturating_sub(used))
}

pub(super) fn capacity_check(r: &Fleet) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let held = r
        .members
        .iter()
        .map(|m| {
            let read = Config::load(&m.config_path())
                .map_err(|e| format!("config: {e}"))
                .and_then(|c| {
                    if c.negotiation.offers.is_empty() {
                        return Ok((Vec::new(), Vec::new()));
                    }
                    let store = crate::node::open_store(&c).map_err(|e| format!("store: {e}"))?;
                    let agreements = store.agreements().map_err(|e| format!("agreements: {e}"))?;
                    Ok((c.negotiation.offers.clone(), agreements))
                });
            (m.domain.clone(), read)
        })
        .collect();
    capacity_verdict(held, now)
}

/// Each provider's active agreements against its offers. Data that cannot
/// be read fails the check (it would otherwise pass unseen), and so does a
/// run with no offer to check.
#[allow(clippy::type_complexity)]
pub(super) fn capacity_verdict(
    held: Vec<(
        String,
        Result<(Vec<Offer>, Vec<intercloud_actors::store::Agreement>), String>,
    )>,
    now: u64,
) -> Result<String, String> {
    let mut checked = 0;
    for (domain, read) in held {
        let (offers, agreements) = read.map_err(|e| format!("{domain}: cannot read {e}"))?;
        for o in &offers {
            let used: u64 = agreements
                .iter()
                .filter(|a| {
                    a.role == "provider"
                        && a.service.eq_ignore_ascii_case(&o.service)
                        && a.active(now)
                })
                .map(|a| a.amount)
                .sum();
            checked += 1;
            if used > o.capacity {
                return Err(format!(
                    "{domain} promised {used} {} of {} but offers {}",
                    o.unit, o.service, o.capacity
                ));
            }
        }
    }
    if checked == 0 {
        return Err("no offer to check".into());
    }
    Ok(format!("{checked} offers checked"))
}
