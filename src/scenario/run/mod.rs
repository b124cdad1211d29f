//! Runs a scenario, with node processes or in-process nodes (`fleet`): builds the federation (`federation` module), plays the timeline step by step — faults through the transport-layer fault table — checks the invariants, stops every node, and reports.

use super::fleet::{Fleet, Mode};
use super::generate::Drawn;
use super::model::{Scenario, Step};
use super::report::{InvariantReport, Report, StepReport};
use super::traffic::Tally;
use crate::config::Config;
use crate::federation::{self as fed, Member};
use crate::net::fault::{FaultTable, LinkFault};
use intercloud_actors::negotiation::policy::Offer;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Federation(#[from] fed::FederationError),
    #[error("{0}")]
    Setup(String),
}

/// Where to build the federation, and which binary runs the nodes.
pub struct RunOptions {
    pub work_dir: PathBuf,
    pub bin: PathBuf,
    pub seed: u64,
    pub mode: Mode,
    /// Called with a line per step as it runs.
    pub progress: Box<dyn Fn(&str)>,
}

fn offers_toml(offers: &[Offer]) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let items: Vec<String> = offers
        .iter()
        .map(|o| {
            format!(
                "{{ service = \"{}\", protocols = [{}], transports = [{}], capacity = {}, unit = \"{}\", max_duration_secs = {} }}",
                o.service,
                list(&o.protocols),
                list(&o.transports),
                o.capacity,
                o.unit,
                o.max_duration_secs
            )
        })
        .collect();
    format!("offers = [{}]", items.join(", "))
}

/// `<domain>.ttl` files of a path (a file or a directory).
fn turtle_files(p: &Path) -> Result<Vec<(String, PathBuf)>, RunError> {
    let files: Vec<PathBuf> = if p.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| RunError::Setup(format!("{}: {e}", p.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().map(|x| x == "ttl").unwrap_or(false))
            .collect();
        v.sort();
        v
    } else {
        vec![p.to_path_buf()]
    };
    Ok(files
        .into_iter()
        .filter_map(|f| {
            let d = f.file_name()?.to_str()?.strip_suffix(".ttl")?.to_string();
            Some((d, f))
        })
        .collect())
}

/// Builds the federation the scenario describes under `dir`.
/// A drawn cloud and the exchange it publishes to.
type DrawnMap = HashMap<String, (Drawn, String)>;

fn build(s: &Scenario, dir: &Path, seed: u64) -> Result<(Vec<Member>, DrawnMap), RunError> {
    let f = &s.federation;
    let members = fed::generate(dir, f.roots, f.exchanges, f.clouds)?;
    let resources: HashMap<String, PathBuf> = match &f.resources {
        Some(r) => turtle_files(&s.path(r))?.into_iter().collect(),
        None => HashMap::new(),
    };
    // Clouds without a file get a description drawn from the distributions.
    let mut drawn: HashMap<String, Drawn> = match &f.generate {
        Some(spec) => {
            let without: Vec<String> = members
                .iter()
                .filter(|m| m.roles.iter().all(|r| r == "cloud"))
                .filter(|m| !resources.contains_key(&m.domain))
                .map(|m| m.domain.clone())
                .collect();
            super::generate::draw(spec, &without, seed)
                .into_iter()
                .map(|d| (d.domain.clone(), d))
                .collect()
        }
        None => HashMap::new(),
    };
    let mut placed = DrawnMap::new();
    let faults_file = dir.join("faults.json");
    for m in &members {
        let cfg = m.config_path();
        // Node processes obey the fault table the runner writes.
        fed::edit(
            &cfg,
            "file = \"\"\npoll_ms = 200",
            &format!(
                "file = {:?}\npoll_ms = 100",
                faults_file.display().to_string()
            ),
        )?;
        let is_cloud_only = m.roles.iter().all(|r| r == "cloud");
        if is_cloud_only {
            let c = Config::load(&cfg).map_err(|e| RunError::Setup(e.to_string()))?;
            if let Some(ex) = c.negotiation.exchanges.first() {
                let target = m.dir.join("resources.ttl");
                let wrote = if let Some(src) = resources.get(&m.domain) {
                    std::fs::copy(src, &target)
                        .map_err(|e| RunError::Setup(format!("{}: {e}", src.display())))?;
                    true
                } else if let Some(d) = drawn.remove(&m.domain) {
                    std::fs::write(&target, super::generate::turtle(&d))
                        .map_err(|e| RunError::Setup(format!("{}: {e}", target.display())))?;
                    placed.insert(m.domain.clone(), (d, ex.clone()));
                    true
                } else {
                    false
                };
                if wrote {
                    fed::edit(&cfg, "resources = \"\"", "resources = \"resources.ttl\"")?;
                    fed::edit(&cfg, "publish_to = []", &format!("publish_to = [\"{ex}\"]"))?;
                }
            }
            let offers = f
                .clouds_spec
                .iter()
                .find(|c| c.domain == m.domain)
                .and_then(|c| c.offers.clone())
                .unwrap_or_else(|| f.offers.clone());
            if !offers.is_empty() {
                fed::edit(&cfg, "offers = []", &offers_toml(&offers))?;
            }
        }
        if let Some(n) = f.gateway_max_peers {
            fed::edit(&cfg, "max_peers = 256", &format!("max_peers = {n}"))?;
        }
        if m.roles.iter().any(|r| r == "exchange") {
            let c = Config::load(&cfg).map_err(|e| RunError::Setup(e.to_string()))?;
            let store = crate::node::open_store(&c).map_err(|e| RunError::Setup(e.to_string()))?;
            for p in &f.import {
                for (domain, file) in turtle_files(&s.path(p))? {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| RunError::Setup(format!("{}: {e}", file.display())))?;
                    // Checked as publish_resources would check it.
                    intercloud_actors::catalog::Catalog::new(Default::default())
                        .and_then(|cat| cat.publish(&domain, &text))
                        .map_err(|e| RunError::Setup(format!("{}: {e}", file.display())))?;
                    store
                        .put_description(&domain, &text)
                        .map_err(|e| RunError::Setup(e.to_string()))?;
                }
            }
        }
    }
    Ok((members, placed))
}

/// Every running root's zone, as a set of records.
/// Each running root's zone; a zone that cannot be read is an error, not an
/// empty zone that might agree with another.
fn zones(r: &Fleet) -> Result<Vec<(String, BTreeSet<String>)>, String> {
    r.running_members()
        .iter()
        .filter(|m| m.roles.iter().any(|x| x == "root"))
        .map(|m| {
            let recs = Config::load(&m.config_path())
                .map_err(|e| e.to_string())
                .and_then(|c| crate::node::open_store(&c).map_err(|e| e.to_string()))
                .and_then(|s| s.zone_records().map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: cannot read its zone: {e}", m.domain))?;
            Ok((m.domain.clone(), recs.into_iter().collect()))
        })
        .collect()
}

fn roots_agree(r: &Fleet) -> Result<(), String> {
    zones_agree(&zones(r)?)
}

/// Whether every root holds the same, non-empty zone.
fn zones_agree(z: &[(String, BTreeSet<String>)]) -> Result<(), String> {
    let Some((first, reference)) = z.first() else {
        return Err("no root is running".into());
    };
    if reference.is_empty() {
        return Err(format!("{first} holds no record"));
    }
    for (d, other) in &z[1..] {
        if other != reference {
            return Err(format!(
                "{first} holds {} records, {d} holds {} ({} differ)",
                reference.len(),
                other.len(),
                reference.symmetric_difference(other).count()
            ));
        }
    }
    Ok(())
}

fn poll(within: Duration, mut f: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(()) => return Ok(t0.elapsed()),
            Err(e) if t0.elapsed() >= within => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(e.to_string()))
}

/// Runs `f` to its end on a runtime of its own (a step's client work).
fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    runtime().map_err(|e| e.to_string())?.block_on(f)
}

/// Runs one ad-hoc command (`xml`, from adhoc_client::request) as the demo user of `from`; its answer.
fn demo_command(
    r: &Fleet,
    from: &str,
    xml: &str,
) -> Result<intercloud_actors::element::Element, String> {
    let m = r.member(from);
    let jid = format!("{}@{}", m.demo_user, m.domain);
    let pinned = super::traffic::pinned(m)?;
    let out = block_on(async {
        crate::adhoc_client::run(
            &r.client_net(),
            super::traffic::addr(m),
            &jid,
            &m.demo_password,
            pinned,
            xml,
        )
        .await
        .map_err(|e| e.to_string())
    })?;
    out.into_iter()
        .next()
        .ok_or_else(|| "no answer".to_string())
}

/// publish_resources of a Turtle file as the demo user of `from`: the
/// service's note on success, its error otherwise.
fn publish(
    r: &Fleet,
    s: &Scenario,
    from: &str,
    exchange: &str,
    file: &Path,
) -> Result<String, String> {
    let turtle =
        std::fs::read_to_string(s.path(file)).map_err(|e| format!("{}: {e}", file.display()))?;
    let xml = crate::adhoc_client::request(
        &format!("service.{exchange}"),
        "publish_resources",
        &format!(
            "<description>{}</description>",
            intercloud_actors::element::escape(&turtle)
        ),
    );
    let reply = demo_command(r, from, &xml)?;
    if reply.get_attr("type") == Some("error") {
        let err = reply.get_child("error", intercloud_actors::element::NS_CLIENT);
        let cond = err
            .and_then(|e| e.elements().find(|c| c.name != "text"))
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let text = err
            .and_then(|e| e.elements().find(|c| c.name == "text"))
            .map(|t| t.text_content())
            .unwrap_or_default();
        return Err(format!("refused ({cond}): {text}"));
    }
    let cmd = reply
        .get_child("command", intercloud_actors::adhoc::NS_COMMANDS)
        .ok_or("no command in the answer")?;
    let note = cmd.elements().find(|e| e.name == "note").map(|n| {
        (
            n.get_attr("type").unwrap_or("info").to_string(),
            n.text_content(),
        )
    });
    match (cmd.get_attr("status"), note) {
        (Some("completed"), Some((t, text))) if t != "error" => Ok(text),
        (Some("completed"), None) => Ok("published".into()),
        (_, Some((_, text))) => Err(text),
        (st, None) => Err(format!("status {st:?}")),
    }
}

/// The demo user of `from` asks `exchange` for matching clouds.
fn query(
    r: &Fleet,
    s: &Scenario,
    from: &str,
    exchange: &str,
    request: &Path,
) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(s.path(request))
        .map_err(|e| format!("{}: {e}", request.display()))?;
    let xml = crate::adhoc_client::request(
        &format!("service.{exchange}"),
        "constraint_catalog_resources",
        &text,
    );
    let reply = demo_command(r, from, &xml)?;
    let names: Option<Vec<String>> = reply
        .get_child("command", intercloud_actors::adhoc::NS_COMMANDS)
        .and_then(|c| c.get_child("iodata", intercloud_actors::iodata::NS_IODATA))
        .and_then(|io| io.elements().find(|e| e.name == "out"))
        .and_then(|o| o.elements().find(|e| e.name == "matchingClouds"))
        .map(|mc| {
            mc.elements()
                .map(|c| c.text_content().trim().to_string())
                .collect()
        });
    names.ok_or_else(|| format!("no matchingClouds in {}", reply.to_xml()))
}

/// What a scenario's negotiations ask for: the paper's AMQP over UDT, in GB.
fn scenario_ask(service: &str, amount: u64) -> crate::negotiate::Ask {
    crate::negotiate::Ask {
        service: service.to_string(),
        protocol: "AMQP".into(),
        transport: "UDT".into(),
        amount,
        unit: "GB".into(),
        duration_secs: 0,
        min_amount: None,
        terms: String::new(),
    }
}

/// What the run keeps besides the fleet: faults in force, message tallies.
#[derive(Default)]
struct Book {
    drawn: DrawnMap,
    /// Flow answers that differ from the oracle.
    oracle_misses: Vec<String>,
    faults: FaultTable,
    streams: Vec<(usize, String, Tally)>,
    churns: Vec<(usize, String, crate::scenario::churn::ChurnTally)>,
    /// Clouds subscribed to each (exchange, node), by `subscribe` steps.
    subscribed: std::collections::BTreeMap<(String, String), Vec<String>>,
    /// What `publish_item` and `room` steps acknowledged and delivered.
    many: Vec<(usize, String, crate::scenario::many::ManyTally)>,
    step: usize,
}

/// Runs `s` in `o.mode`; every node is stopped before this returns.
pub fn run(s: &Scenario, o: &RunOptions) -> Result<Report, RunError> {
    let t0 = Instant::now();
    let dir = o.work_dir.join("federation");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| RunError::Setup(format!("{}: {e}", dir.display())))?;
    }
    (o.progress)(&format!(
        "building {} nodes in {}",
        s.domains().len(),
        dir.display()
    ));
    let (members, drawn) = build(s, &dir, o.seed)?;
    let mut r = Fleet::new(o.mode, members, &dir, &o.bin, o.seed);
    r.later = s
        .federation
        .clouds_spec
        .iter()
        .filter(|c| c.join_later)
        .map(|c| c.domain.clone())
        .collect();
    let started = Instant::now();
    r.start_all(s.federation.join_wave)
        .map_err(RunError::Setup)?;
    fed::save(&dir, &r.members)?;
    let mut book = Book {
        drawn,
        ..Default::default()
    };
    let mut report = Report::new(&s.name, o.mode.name(), o.seed);
    for m in &r.members {
        let exchange = Config::load(&m.config_path())
            .ok()
            .filter(|_| m.roles.iter().all(|x| x == "cloud"))
            .and_then(|c| c.negotiation.exchanges.first().cloned());
        report.topology.push(super::report::TopoNode {
            domain: m.domain.clone(),
            roles: m.roles.clone(),
            exchange,
        });
    }
    let conv = poll(Duration::from_secs(s.federation.start_timeout_secs), || {
        let members = r.running_members();
        let h = r.health(&members);
        fed::converged(&members, &h)
    });
    // From the first node's start: joining in waves is part of converging.
    let conv = conv.map(|_| started.elapsed());
    report.converged_secs = conv.as_ref().ok().map(|d| d.as_secs_f64());
    (o.progress)(&match &conv {
        Ok(d) => format!(
            "federation converged in {:.1} s after the first node started",
            d.as_secs_f64()
        ),
        Err(e) => format!("federation did not converge: {e}"),
    });
    if let Err(e) = conv {
        report.invariants.push(InvariantReport::new(
            "federation converges at start",
            Err(format!(
                "not within {} s: {e}",
                s.federation.start_timeout_secs
            )),
        ));
    } else {
        for (i, step) in s.steps.iter().enumerate() {
            let at = t0.elapsed().as_secs_f64();
            if let Step::Chaos {
                secs,
                every_secs,
                among,
                kinds,
            } = step
            {
                let faults = chaos(
                    &mut r,
                    o,
                    &mut book,
                    *secs,
                    *every_secs,
                    among,
                    kinds,
                    o.seed.wrapping_add(i as u64),
                    t0,
                );
                let n = faults.len();
                let all_ok = faults.iter().all(|f| f.ok);
                report.steps.extend(faults);
                (o.progress)(&format!(
                    "[{:>2}/{}] chaos: {n} faults",
                    i + 1,
                    s.steps.len()
                ));
                report.steps.push(StepReport {
                    index: i + 1,
                    at_secs: at,
                    action: "chaos".into(),
                    target: among.clone(),
                    ok: all_ok,
                    detail: format!("{n} faults in {secs} s, seed {}", o.seed),
                });
                continue;
            }
            book.step = i + 1;
            let (action, target, ok, detail) = run_step(&mut r, s, &mut book, step);
            (o.progress)(&format!(
                "[{:>2}/{}] {action} {target}: {} {detail}",
                i + 1,
                s.steps.len(),
                if ok { "ok" } else { "FAILED" }
            ));
            report.steps.push(StepReport {
                index: i + 1,
                at_secs: at,
                action,
                target,
                ok,
                detail,
            });
        }
        // Invariants, after the last step.
        let agree = poll(
            Duration::from_secs(s.invariants.roots_agree_within_secs),
            || roots_agree(&r),
        );
        report.invariants.push(InvariantReport::new(
            &format!(
                "every running root holds the same zone within {} s of the last step",
                s.invariants.roots_agree_within_secs
            ),
            agree.map(|t| format!("after {:.1} s", t.as_secs_f64())),
        ));
        // Checked when the scenario offers anything (with offers, an empty
        // check fails: see capacity_verdict).
        let offers = !s.federation.offers.is_empty()
            || s.federation
                .clouds_spec
                .iter()
                .any(|c| c.offers.as_ref().is_some_and(|o| !o.is_empty()));
        if s.invariants.agreements_within_capacity && offers {
            report.invariants.push(InvariantReport::new(
                "no provider's agreements exceed its capacity",
                capacity_check(&r),
            ));
        }
        if !book.streams.is_empty() {
            let mut evidence = Vec::new();
            let (mut acked, mut delivered) = (0, 0);
            for (step, target, t) in &book.streams {
                acked += t.acked;
                delivered += t.delivered.len();
                for p in t.problems() {
                    evidence.push(format!("step {step} ({target}): {p}"));
                }
            }
            report.invariants.push(InvariantReport::new(
                "no acknowledged message lost; each delivered once, with its sender's from",
                if evidence.is_empty() {
                    Ok(format!("{acked} acknowledged, {delivered} delivered"))
                } else {
                    Err(evidence.join("; "))
                },
            ));
        }
        if !book.churns.is_empty() {
            let mut evidence = Vec::new();
            let mut users = 0;
            for (step, target, t) in &book.churns {
                users += t.users.len();
                for p in churn_problems(t) {
                    evidence.push(format!("step {step} ({target}): {p}"));
                }
            }
            report.invariants.push(InvariantReport::new(
                "after presence churn every watcher shows each user's last state, in order, from the user's own JID",
                if evidence.is_empty() {
                    Ok(format!("{users} users"))
                } else {
                    Err(evidence.join("; "))
                },
            ));
        }
        if !book.many.is_empty() {
            let mut evidence = Vec::new();
            for (step, target, t) in &book.many {
                for p in t.problems() {
                    evidence.push(format!("step {step} ({target}): {p}"));
                }
            }
            report.invariants.push(InvariantReport::new(
                "every subscriber got every acknowledged item, and every occupant present throughout every acknowledged groupchat message, once, in its sender's order",
                if evidence.is_empty() {
                    Ok(format!("{} many-to-many steps", book.many.len()))
                } else {
                    Err(evidence.join("; "))
                },
            ));
        }
        let queries: Vec<&StepReport> = report
            .steps
            .iter()
            .filter(|x| x.action == "query")
            .collect();
        let flows = report.steps.iter().filter(|x| x.action == "flow").count();
        if !queries.is_empty() || flows > 0 {
            let mut bad: Vec<String> = queries
                .iter()
                .filter(|q| !q.ok)
                .map(|q| format!("step {}: {}", q.index, q.detail))
                .collect();
            bad.extend(book.oracle_misses.iter().take(20).cloned());
            report.invariants.push(InvariantReport::new(
                "every query answers what its scenario expects; every flow answer equals the oracle computed from the drawn descriptions",
                if bad.is_empty() {
                    Ok(format!("{} queries, {flows} flow steps", queries.len()))
                } else {
                    Err(bad.join("; "))
                },
            ));
        }
    }
    // Every node stops; none may be left behind.
    let left = r.stop_all();
    report.invariants.push(InvariantReport::new(
        "no node is left behind",
        if left.is_empty() {
            Ok(String::new())
        } else {
            Err(format!("still running: {left:?}"))
        },
    ));
    // What the transport-layer wrappers did: the shared table's counters
    // in-process; node processes kept theirs in their data directories.
    let mut fc = r.faults.counts();
    if o.mode == Mode::Processes {
        for m in &r.members {
            if let Ok(c) = Config::load(&m.config_path()) {
                fc.add(&crate::net::fault::read_counts(
                    &c.data_dir().join(crate::net::fault::COUNTS_FILE),
                ));
            }
        }
    }
    if fc.total() > 0 {
        report.faults_injected = Some(fc);
    }
    report.duration_secs = t0.elapsed().as_secs_f64();
    if o.mode == Mode::InProcess {
        report.peak_rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|k| k.parse().ok())
            });
    }
    report.finish();
    Ok(report)
}

mod chaos;
use chaos::*;

/// What a step came to: its action, its target, whether it held, and a detail line.
type StepOutcome = (String, String, bool, String);

mod steps;
use steps::*;

mod many_steps;

#[cfg(test)]
mod tests;
