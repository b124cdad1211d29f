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
    churns: Vec<(usize, String, super::churn::ChurnTally)>,
    step: usize,
}

/// What a churn step got wrong: a last state the watcher does not show, a
/// change that arrived after a later one, a presence from another JID.
fn churn_problems(t: &super::churn::ChurnTally) -> Vec<String> {
    let mut out = t.wrong();
    for (u, (_, seen)) in &t.users {
        if !seen.out_of_order.is_empty() {
            out.push(format!(
                "{u}: changes out of order (later, earlier): {:?}",
                &seen.out_of_order[..seen.out_of_order.len().min(10)]
            ));
        }
        if !seen.bad_from.is_empty() {
            out.push(format!("{u}: presence from {:?}", seen.bad_from));
        }
    }
    out
}

/// What a step came to: its action, its target, whether it held, and a detail line.
type StepOutcome = (String, String, bool, String);

/// Whether a step's result held, and its detail.
fn ok_or(res: Result<String, String>) -> (bool, String) {
    match res {
        Ok(d) => (true, d),
        Err(e) => (false, e),
    }
}

/// Plays one step (chaos is played by [`run`] itself).
fn run_step(r: &mut Fleet, s: &Scenario, book: &mut Book, step: &Step) -> StepOutcome {
    match step {
        Step::WaitPublished {
            exchange,
            count,
            within_secs,
        } => step_wait_published(r, exchange, count, within_secs),
        Step::Publish {
            from,
            exchange,
            description,
        } => step_publish(r, s, book, from, exchange, description),
        Step::Query {
            from,
            exchange,
            request,
            expect,
        } => step_query(r, s, from, exchange, request, expect),
        Step::Negotiate {
            from,
            service,
            amount,
            constraints,
            expect,
        } => step_negotiate(r, s, from, service, amount, constraints, expect),
        Step::Kill { node } | Step::Stop { node } => step_end(r, step, node),
        Step::Start { node } => step_start(r, node),
        Step::Flow {
            among,
            service,
            amount,
            constraints,
            concurrency,
        } => step_flow(r, s, book, among, service, amount, constraints, concurrency),
        Step::Partition { groups } => step_partition(r, book, groups),
        Step::Heal {} => step_heal(r, book),
        Step::LinkFault {
            a,
            b,
            delay_ms,
            loss,
            duplicate,
            bytes_per_sec,
        } => step_link_fault(r, book, a, b, delay_ms, loss, duplicate, bytes_per_sec),
        #[cfg(feature = "test-faults")]
        Step::LoseAcked { node } => step_lose_acked(r, book, node),
        #[cfg(feature = "test-faults")]
        Step::ForgeFrom { node } => step_forge_from(r, book, node),
        // The model refuses them in builds without test faults.
        #[cfg(not(feature = "test-faults"))]
        Step::LoseAcked { node } | Step::ForgeFrom { node } => (
            "test_fault".into(),
            node.clone(),
            false,
            "this build has no test-only faults".into(),
        ),
        Step::Messages {
            from,
            to,
            count,
            rate,
            within_secs,
        } => step_messages(r, book, from, to, count, rate, within_secs),
        Step::PresenceChurn {
            watcher,
            clouds,
            flips,
            rate,
            within_secs,
        } => step_presence_churn(r, book, watcher, clouds, flips, rate, within_secs),
        Step::Chaos { .. } => unreachable!("run() plays chaos itself"),
        Step::Sleep { secs } => step_sleep(secs),
        Step::Converge { within_secs } => step_converge(r, within_secs),
    }
}

/// The `wait_published` step.
fn step_wait_published(
    r: &mut Fleet,
    exchange: &str,
    count: &usize,
    within_secs: &u64,
) -> StepOutcome {
    let cfg = r.config(exchange);
    let (ok, d) = ok_or(cfg.map_err(|e| e.to_string()).and_then(|c| {
        poll(Duration::from_secs(*within_secs), || {
            let n = crate::node::open_store(&c)
                .ok()
                .and_then(|st| st.descriptions().ok())
                .map(|d| d.len())
                .unwrap_or(0);
            if n >= *count {
                Ok(())
            } else {
                Err(format!("{n} of {count} descriptions"))
            }
        })
        .map(|t| format!("{count} descriptions after {:.1} s", t.as_secs_f64()))
    }));
    ("wait_published".into(), exchange.to_string(), ok, d)
}

/// The `publish` step.
fn step_publish(
    r: &mut Fleet,
    s: &Scenario,
    book: &mut Book,
    from: &str,
    exchange: &str,
    description: &Path,
) -> StepOutcome {
    let (ok, d) = if book.drawn.contains_key(from) {
        (
                false,
                format!("{from}'s description is drawn from [federation.generate]; the flow's oracle could not follow a replacement"),
            )
    } else {
        ok_or(publish(r, s, from, exchange, description))
    };
    (
        "publish".into(),
        format!("{from} -> service.{exchange}"),
        ok,
        d,
    )
}

/// The `query` step.
fn step_query(
    r: &mut Fleet,
    s: &Scenario,
    from: &str,
    exchange: &str,
    request: &Path,
    expect: &[String],
) -> StepOutcome {
    let (ok, d) = match query(r, s, from, exchange, request) {
        Ok(names) if names == expect => (true, format!("matchingClouds {names:?}")),
        Ok(names) => (
            false,
            format!("matchingClouds {names:?}, the scenario expects {expect:?}"),
        ),
        Err(e) => (false, e),
    };
    (
        "query".into(),
        format!("{from} -> service.{exchange}"),
        ok,
        d,
    )
}

/// The `negotiate` step.
fn step_negotiate(
    r: &mut Fleet,
    s: &Scenario,
    from: &str,
    service: &str,
    amount: &u64,
    constraints: &Path,
    expect: &Option<String>,
) -> StepOutcome {
    let res = (|| -> Result<String, String> {
        let c = r.config(from).map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(s.path(constraints)).map_err(|e| e.to_string())?;
        let ask = scenario_ask(service, *amount);
        let rep = block_on(async {
            crate::negotiate::run_on(&r.client_net(), &c, &ask, &text)
                .await
                .map_err(|e| e.to_string())
        })?;
        let result = rep.get_attr("result").unwrap_or("failed").to_string();
        let peer = rep
            .get_child(
                "agreement",
                intercloud_actors::negotiation::protocol::NS_NEGOTIATION,
            )
            .and_then(|a| a.get_attr("peer"))
            .map(|p| p.split('@').nth(1).unwrap_or(p).to_string());
        let got = match (result.as_str(), &peer) {
            ("agreed", Some(p)) => p.clone(),
            (other, _) => other.to_string(),
        };
        // The dialog, as `intercloud negotiate` prints it.
        let dialog: String = rep
            .elements()
            .filter(|e| e.name == "line")
            .map(|l| format!("\n           | {}", l.text_content()))
            .collect();
        match expect {
            Some(e) if *e != got => Err(format!("ended {got}, expected {e}{dialog}")),
            _ => Ok(format!("ended {got}{dialog}")),
        }
    })();
    let (ok, d) = ok_or(res);
    ("negotiate".into(), from.to_string(), ok, d)
}

/// The `kill` step.
fn step_end(r: &mut Fleet, step: &Step, node: &str) -> StepOutcome {
    let kill = matches!(step, Step::Kill { .. });
    let (ok, d) = match r.end(node, kill) {
        Err(e) => (false, e),
        Ok(()) => (
            true,
            match (kill, r.mode) {
                (true, Mode::Processes) => "SIGKILL",
                (true, Mode::InProcess) => "killed (actor system dropped)",
                (false, Mode::Processes) => "SIGTERM, exited",
                (false, Mode::InProcess) => "stopped",
            }
            .to_string(),
        ),
    };
    (
        if kill { "kill" } else { "stop" }.into(),
        node.to_string(),
        ok,
        d,
    )
}

/// The `start` step.
fn step_start(r: &mut Fleet, node: &str) -> StepOutcome {
    let (ok, d) = match r.start(node) {
        Ok(()) => {
            let m = r.member(node).clone();
            match poll(Duration::from_secs(20), || {
                if r.listening(&m) {
                    Ok(())
                } else {
                    Err("not listening after 20 s".to_string())
                }
            }) {
                Ok(t) => (true, format!("listening after {:.1} s", t.as_secs_f64())),
                Err(e) => (false, e),
            }
        }
        Err(e) => (false, e),
    };
    ("start".into(), node.to_string(), ok, d)
}

/// The `flow` step.
#[allow(clippy::too_many_arguments)] // one parameter per field of the step
fn step_flow(
    r: &mut Fleet,
    s: &Scenario,
    book: &mut Book,
    among: &str,
    service: &str,
    amount: &u64,
    constraints: &Path,
    concurrency: &usize,
) -> StepOutcome {
    let res = (|| -> Result<(bool, String), String> {
        let text = std::fs::read_to_string(s.path(constraints)).map_err(|e| e.to_string())?;
        let cs = crate::xmpp::codec::parse_stanza(&text, "jabber:client")
            .ok_or("the constraints file is not one XML element")
            .and_then(|e| {
                intercloud_actors::catalog::constraints::parse(&e)
                    .map_err(|_| "no constraints in the file")
            })?;
        let mut jobs = Vec::new();
        for m in r.running_members() {
            let cloud_only = m.roles.iter().all(|x| x == "cloud");
            if among == "clouds" && !cloud_only {
                continue;
            }
            let oracle = book.drawn.get(&m.domain).and_then(|(_, ex)| {
                let peers: Vec<&Drawn> = book
                    .drawn
                    .iter()
                    .filter(|(d, (_, e))| e == ex && **d != m.domain)
                    .map(|(_, (x, _))| x)
                    .collect();
                super::generate::oracle(&peers, &cs)
            });
            jobs.push(super::flow::Job {
                config: r.config(&m.domain)?,
                oracle,
            });
        }
        let ask = scenario_ask(service, *amount);
        let mut o = super::flow::run(&r.client_net(), jobs, &ask, &text, *concurrency);
        // A refusal is right when no match had the amount free.
        // Capacity only shrinks during the step, so a match with
        // room now had room then: its refusal is a failure of the
        // fallback (or of the provider).
        let mut full = 0;
        for (domain, names) in std::mem::take(&mut o.refused) {
            let free = |n: &str| {
                let m = r
                    .members
                    .iter()
                    .find(|m| m.domain == n || m.domain.strip_suffix(".test") == Some(n))
                    .ok_or_else(|| "not a node of this run".to_string())?;
                free_capacity(m, service)
            };
            match refusal_verdict(&names, *amount, free) {
                Ok(()) => full += 1,
                Err(e) => o.failed.push(format!("{domain}: {e}")),
            }
        }
        let mut d = format!(
                "{} clouds in {:.1} s (per cloud p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms): {} agreed, {} offline, {} without a match, {full} refused with every match full, {} failed, {} answers differ from the oracle",
                o.clouds,
                o.total.as_secs_f64(),
                o.percentile(0.5).as_secs_f64() * 1e3,
                o.percentile(0.95).as_secs_f64() * 1e3,
                o.percentile(1.0).as_secs_f64() * 1e3,
                o.agreed,
                o.offline,
                o.no_match,
                o.failed.len(),
                o.mismatched.len()
            );
        for e in o.mismatched.iter().chain(o.failed.iter()).take(10) {
            d.push_str(&format!("\n           | {e}"));
        }
        book.oracle_misses
            .extend(o.mismatched.iter().map(|m| format!("flow: {m}")));
        Ok((o.failed.is_empty() && o.mismatched.is_empty(), d))
    })();
    let (ok, d) = match res {
        Ok(x) => x,
        Err(e) => (false, e),
    };
    ("flow".into(), among.to_string(), ok, d)
}

/// The `partition` step.
fn step_partition(r: &mut Fleet, book: &mut Book, groups: &[Vec<String>]) -> StepOutcome {
    book.faults.partition = groups.to_vec();
    let res = r.set_faults(book.faults.clone());
    let desc = groups
        .iter()
        .map(|g| g.join(" "))
        .collect::<Vec<_>>()
        .join(" | ");
    let (ok, d) = ok_or(res.map(|_| format!("groups: {desc}")));
    ("partition".into(), desc, ok, d)
}

/// The `heal` step.
fn step_heal(r: &mut Fleet, book: &mut Book) -> StepOutcome {
    // A test-only loss stays: it is no partition or link fault.
    #[cfg(feature = "test-faults")]
    let lose = std::mem::take(&mut book.faults.lose_acked);
    book.faults = FaultTable::default();
    #[cfg(feature = "test-faults")]
    {
        book.faults.lose_acked = lose;
    }
    let (ok, d) = ok_or(
        r.set_faults(book.faults.clone())
            .map(|_| "partitions and link faults lifted".to_string()),
    );
    ("heal".into(), String::new(), ok, d)
}

/// The `link_fault` step.
#[allow(clippy::too_many_arguments)] // one parameter per field of the step
fn step_link_fault(
    r: &mut Fleet,
    book: &mut Book,
    a: &str,
    b: &str,
    delay_ms: &u64,
    loss: &f64,
    duplicate: &f64,
    bytes_per_sec: &u64,
) -> StepOutcome {
    book.faults.links.push(LinkFault {
        a: a.to_string(),
        b: b.to_string(),
        delay_ms: *delay_ms,
        loss: *loss,
        duplicate: *duplicate,
        bytes_per_sec: *bytes_per_sec,
    });
    let (ok, d) = ok_or(r.set_faults(book.faults.clone()).map(|_| {
        format!(
            "delay {delay_ms} ms, loss {loss}, duplicate {duplicate}, {} B/s",
            if *bytes_per_sec == 0 {
                "unlimited".to_string()
            } else {
                bytes_per_sec.to_string()
            }
        )
    }));
    ("link_fault".into(), format!("{a} <-> {b}"), ok, d)
}

#[cfg(feature = "test-faults")]
/// The `lose_acked` step.
fn step_lose_acked(r: &mut Fleet, book: &mut Book, node: &str) -> StepOutcome {
    book.faults.lose_acked.push(node.to_string());
    let (ok, d) = ok_or(
        r.set_faults(book.faults.clone())
            .map(|_| "test-only: acknowledged s2s messages are discarded".to_string()),
    );
    ("lose_acked".into(), node.to_string(), ok, d)
}

#[cfg(feature = "test-faults")]
/// The `forge_from` step.
fn step_forge_from(r: &mut Fleet, book: &mut Book, node: &str) -> StepOutcome {
    book.faults.forge_from.push(node.to_string());
    let (ok, d) = ok_or(r.set_faults(book.faults.clone()).map(|_| {
        "test-only: messages received over s2s are delivered with a forged from".to_string()
    }));
    ("forge_from".into(), node.to_string(), ok, d)
}

/// The `messages` step.
fn step_messages(
    r: &mut Fleet,
    book: &mut Book,
    from: &str,
    to: &str,
    count: &u64,
    rate: &f64,
    within_secs: &u64,
) -> StepOutcome {
    let (f, t) = (r.member(from).clone(), r.member(to).clone());
    let net = r.client_net();
    let res = block_on(super::traffic::stream(
        &net,
        &f,
        &t,
        *count,
        *rate,
        Duration::from_secs(*within_secs),
    ));
    let target = format!("{from} -> {to}");
    match res {
        Err(e) => ("messages".into(), target, false, e),
        Ok(tally) => {
            let problems = tally.problems();
            let ok = problems.is_empty();
            let mut d = tally.summary();
            for p in &problems {
                d.push_str("; ");
                d.push_str(p);
            }
            book.streams.push((book.step, target.clone(), tally));
            ("messages".into(), target, ok, d)
        }
    }
}

/// The `presence_churn` step.
fn step_presence_churn(
    r: &mut Fleet,
    book: &mut Book,
    watcher: &str,
    clouds: &[String],
    flips: &u64,
    rate: &f64,
    within_secs: &u64,
) -> StepOutcome {
    let w = r.member(watcher).clone();
    let churners: Vec<Member> = clouds.iter().map(|c| r.member(c).clone()).collect();
    let net = r.client_net();
    let target = format!("{} watched by {watcher}", clouds.join(" "));
    let res = block_on(super::churn::run(
        &net,
        &w,
        &churners,
        *flips,
        *rate,
        Duration::from_secs(*within_secs),
    ));
    match res {
        Err(e) => ("presence_churn".into(), target, false, e),
        Ok(t) => {
            let problems = churn_problems(&t);
            let received: u64 = t.users.values().map(|(_, s)| s.received).sum();
            let mut d = format!(
                "{} changes, {received} presences seen by the watcher, {}",
                t.changes,
                match t.settled_after {
                    Some(a) => format!("its view matched after {:.2} s", a.as_secs_f64()),
                    None => format!("its view did not match within {within_secs} s"),
                }
            );
            if !problems.is_empty() {
                d.push_str(&format!("; {}", problems.join("; ")));
            }
            let ok = problems.is_empty();
            book.churns.push((book.step, target.clone(), t));
            ("presence_churn".into(), target, ok, d)
        }
    }
}

/// The `sleep` step.
fn step_sleep(secs: &f64) -> StepOutcome {
    std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
    ("sleep".into(), format!("{secs} s"), true, String::new())
}

/// The `converge` step.
fn step_converge(r: &mut Fleet, within_secs: &u64) -> StepOutcome {
    let members = r.running_members();
    let res = poll(Duration::from_secs(*within_secs), || {
        let h = r.health(&members);
        fed::converged(&members, &h)?;
        roots_agree(r)
    });
    let (ok, d) = ok_or(res.map(|t| format!("converged after {:.1} s", t.as_secs_f64())));
    ("converge".into(), String::new(), ok, d)
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

/// Plays random kills and restarts drawn from `seed`; every fault is a step of the report.
#[allow(clippy::too_many_arguments)]
fn chaos(
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
fn refusal_verdict(
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
fn free_capacity(m: &Member, service: &str) -> Result<u64, String> {
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

fn capacity_check(r: &Fleet) -> Result<String, String> {
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
fn capacity_verdict(
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

#[cfg(test)]
mod tests {
    use super::*;
    use intercloud_actors::store::Agreement;

    fn offer(capacity: u64) -> Offer {
        Offer {
            service: "storage-replication".into(),
            protocols: vec![],
            transports: vec![],
            capacity,
            unit: "GB".into(),
            max_duration_secs: 0,
        }
    }

    fn agreement(amount: u64) -> Agreement {
        Agreement {
            id: format!("a{amount}"),
            peer: "gateway@c.test".into(),
            role: "provider".into(),
            service: "storage-replication".into(),
            protocol: "AMQP".into(),
            transport: "UDT".into(),
            amount,
            unit: "GB".into(),
            duration_secs: 3600,
            terms: String::new(),
            created: 1000,
        }
    }

    #[test]
    fn capacity_passes_only_when_something_was_checked_and_readable() {
        let ok = vec![(
            "p.test".to_string(),
            Ok((vec![offer(10)], vec![agreement(4), agreement(6)])),
        )];
        assert_eq!(capacity_verdict(ok, 1001), Ok("1 offers checked".into()));
        let over = vec![(
            "p.test".to_string(),
            Ok((vec![offer(10)], vec![agreement(4), agreement(7)])),
        )];
        assert!(capacity_verdict(over, 1001)
            .unwrap_err()
            .contains("promised 11"));
        let unreadable = vec![
            ("p.test".to_string(), Ok((vec![offer(10)], vec![]))),
            ("q.test".to_string(), Err("store: locked".to_string())),
        ];
        assert_eq!(
            capacity_verdict(unreadable, 1001),
            Err("q.test: cannot read store: locked".into())
        );
        let nothing = vec![("p.test".to_string(), Ok((vec![], vec![])))];
        assert_eq!(
            capacity_verdict(nothing, 1001),
            Err("no offer to check".into())
        );
    }

    #[test]
    fn a_refusal_is_right_only_when_every_match_is_full() {
        let names = vec!["cloud2".to_string(), "cloud5".to_string()];
        let full = |_: &str| Ok(3);
        assert_eq!(refusal_verdict(&names, 5, full), Ok(()));
        let one_roomy = |n: &str| Ok(if n == "cloud5" { 8 } else { 0 });
        assert_eq!(
            refusal_verdict(&names, 5, one_roomy),
            Err("refused by every match although cloud5 has 8 free".into())
        );
        let unreadable = |_: &str| Err("store: locked".to_string());
        assert!(refusal_verdict(&names, 5, unreadable).is_err());
    }

    #[test]
    fn roots_agree_only_on_the_same_non_empty_zone() {
        let z =
            |d: &str, recs: &[&str]| (d.to_string(), recs.iter().map(|r| r.to_string()).collect());
        assert_eq!(
            zones_agree(&[z("r1", &["a", "b"]), z("r2", &["a", "b"])]),
            Ok(())
        );
        assert!(zones_agree(&[z("r1", &["a", "b"]), z("r2", &["a"])]).is_err());
        assert!(zones_agree(&[z("r1", &[]), z("r2", &[])]).is_err());
        assert!(zones_agree(&[]).is_err());
    }
}
