//! One function per scenario step kind (publish, query, negotiate, flow, partition, heal, link faults, messages, presence churn, kill and start, converge) and the dispatcher that picks it.

use super::*;

/// What a churn step got wrong: a last state the watcher does not show, a
/// change that arrived after a later one, a presence from another JID.
pub(super) fn churn_problems(t: &crate::scenario::churn::ChurnTally) -> Vec<String> {
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

/// Whether a step's result held, and its detail.
pub(super) fn ok_or(res: Result<String, String>) -> (bool, String) {
    match res {
        Ok(d) => (true, d),
        Err(e) => (false, e),
    }
}

/// Plays one step (chaos is played by [`run`] itself).
pub(super) fn run_step(r: &mut Fleet, s: &Scenario, book: &mut Book, step: &Step) -> StepOutcome {
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
        Step::Subscribe {
            exchange,
            node,
            clouds,
        } => super::many_steps::subscribe(r, book, exchange, node, clouds),
        Step::PublishItem {
            from,
            exchange,
            node,
            count,
            rate,
            within_secs,
        } => super::many_steps::publish_item(
            r,
            book,
            from,
            exchange,
            node,
            (*count, *rate, *within_secs),
        ),
        Step::Room {
            exchange,
            room,
            clouds,
            count,
            rate,
            within_secs,
        } => super::many_steps::room(
            r,
            book,
            exchange,
            room,
            clouds,
            (*count, *rate, *within_secs),
        ),
        Step::Chaos { .. } => unreachable!("run() plays chaos itself"),
        Step::Sleep { secs } => step_sleep(secs),
        Step::Converge { within_secs } => step_converge(r, within_secs),
    }
}

/// The `wait_published` step.
pub(super) fn step_wait_published(
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
pub(super) fn step_publish(
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
pub(super) fn step_query(
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
pub(super) fn step_negotiate(
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
pub(super) fn step_end(r: &mut Fleet, step: &Step, node: &str) -> StepOutcome {
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
pub(super) fn step_start(r: &mut Fleet, node: &str) -> StepOutcome {
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
pub(super) fn step_flow(
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
                crate::scenario::generate::oracle(&peers, &cs)
            });
            jobs.push(crate::scenario::flow::Job {
                config: r.config(&m.domain)?,
                oracle,
            });
        }
        let ask = scenario_ask(service, *amount);
        let mut o = crate::scenario::flow::run(&r.client_net(), jobs, &ask, &text, *concurrency);
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
pub(super) fn step_partition(
    r: &mut Fleet,
    book: &mut Book,
    groups: &[Vec<String>],
) -> StepOutcome {
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
pub(super) fn step_heal(r: &mut Fleet, book: &mut Book) -> StepOutcome {
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
pub(super) fn step_link_fault(
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
pub(super) fn step_lose_acked(r: &mut Fleet, book: &mut Book, node: &str) -> StepOutcome {
    book.faults.lose_acked.push(node.to_string());
    let (ok, d) = ok_or(
        r.set_faults(book.faults.clone())
            .map(|_| "test-only: acknowledged s2s messages are discarded".to_string()),
    );
    ("lose_acked".into(), node.to_string(), ok, d)
}

#[cfg(feature = "test-faults")]
/// The `forge_from` step.
pub(super) fn step_forge_from(r: &mut Fleet, book: &mut Book, node: &str) -> StepOutcome {
    book.faults.forge_from.push(node.to_string());
    let (ok, d) = ok_or(r.set_faults(book.faults.clone()).map(|_| {
        "test-only: messages received over s2s are delivered with a forged from".to_string()
    }));
    ("forge_from".into(), node.to_string(), ok, d)
}

/// The `messages` step.
pub(super) fn step_messages(
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
    let res = block_on(crate::scenario::traffic::stream(
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
pub(super) fn step_presence_churn(
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
    let res = block_on(crate::scenario::churn::run(
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
pub(super) fn step_sleep(secs: &f64) -> StepOutcome {
    std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
    ("sleep".into(), format!("{secs} s"), true, String::new())
}

/// The `converge` step.
pub(super) fn step_converge(r: &mut Fleet, within_secs: &u64) -> StepOutcome {
    let members = r.running_members();
    let res = poll(Duration::from_secs(*within_secs), || {
        let h = r.health(&members);
        fed::converged(&members, &h)?;
        roots_agree(r)
    });
    let (ok, d) = ok_or(res.map(|t| format!("converged after {:.1} s", t.as_secs_f64())));
    ("converge".into(), String::new(), ok, d)
}
