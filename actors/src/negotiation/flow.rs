//! The paper's whole flow for one cloud: ask an exchange for matching clouds (constraint_catalog_resources), check each match's presence in rank order, propose to the first available, fall back on unavailability, rejection or timeout, leave the proposal offline when none is available — and the `negotiate` ad-hoc command that runs it.

use super::protocol::{Terms, NS_NEGOTIATION};
use super::{Negotiation, NegotiationSettings, Outcome, Propose, Verdict};
use crate::adhoc::{self, NS_COMMANDS};
use crate::catalog::constraints::NS_RES;
use crate::element::{Element, NS_CLIENT};
use crate::gateway::Gateway;
use crate::iodata::{self, NS_IODATA};
use crate::jid::Jid;
use crate::store::Agreement;
use actix::Addr;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The ad-hoc command node on the gateway.
pub const NODE: &str = "negotiate";

/// What the flow is asked to get.
#[derive(Clone, Debug)]
pub struct Request {
    pub terms: Terms,
    /// The least a counter-offer may give.
    pub min_amount: u64,
    /// The paper's `<constraints>` element.
    pub constraints: Element,
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Matching clouds, in rank order: (name, domain).
    pub matches: Vec<(String, String)>,
    pub lines: Vec<String>,
    /// The agreement reached, if any.
    pub agreement: Option<Agreement>,
    /// The peer a proposal was left for, offline.
    pub offline: Option<(String, String)>,
}

fn command_iq(to: &str, node: &str, input: Option<Element>) -> Element {
    let mut cmd = Element::new("command", NS_COMMANDS)
        .attr("node", node)
        .attr("action", "execute");
    if let Some(i) = input {
        cmd = cmd.child(
            Element::new("iodata", NS_IODATA)
                .attr("type", "input")
                .child(Element::new("in", NS_IODATA).child(i)),
        );
    }
    Element::new("iq", NS_CLIENT)
        .attr("type", "set")
        .attr("to", to)
        .child(cmd)
}

/// Why an exchange's command gave no answer to use.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The iq came back an error: its condition.
    #[error("{0}")]
    Condition(String),
    #[error("no command in the answer")]
    NoCommand,
    /// The command completed with an error note: its text.
    #[error("{0}")]
    Note(String),
    #[error("no output in the answer")]
    NoOutput,
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
}

/// What is wrong with a `negotiate` command's input.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no <{0}>")]
    Missing(&'static str),
    #[error("no <constraints> (the paper's §6 request)")]
    NoConstraints,
    #[error("<{0}> is not a whole number")]
    NotANumber(String),
}

/// The `<out>` of a completed command, or why there is none.
fn output(reply: &Element) -> Result<&Element, CommandError> {
    if reply.get_attr("type") == Some("error") {
        let cond = reply
            .get_child("error", NS_CLIENT)
            .and_then(|e| e.first_element())
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "error".into());
        return Err(CommandError::Condition(cond));
    }
    let cmd = reply
        .get_child("command", NS_COMMANDS)
        .ok_or(CommandError::NoCommand)?;
    if let Some(n) = cmd
        .get_child("note", NS_COMMANDS)
        .filter(|n| n.get_attr("type") == Some("error"))
    {
        return Err(CommandError::Note(n.text_content()));
    }
    cmd.get_child("iodata", NS_IODATA)
        .and_then(|io| io.elements().find(|e| e.name == "out"))
        .ok_or(CommandError::NoOutput)
}

/// `list_clouds` on an exchange: cloud name -> domain.
pub async fn list_clouds(
    gw: &Gateway,
    exchange: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, String>, CommandError> {
    let reply = gw
        .iq(
            command_iq(&format!("service.{exchange}"), "list_clouds", None),
            timeout,
        )
        .await?;
    let out = output(&reply)?;
    let mut m = BTreeMap::new();
    if let Some(l) = out.elements().find(|e| e.name == "clouds") {
        for c in l.elements() {
            if let (Some(n), Some(d)) = (c.get_attr("name"), c.get_attr("domain")) {
                m.insert(n.to_string(), d.to_string());
            }
        }
    }
    Ok(m)
}

/// `constraint_catalog_resources` on an exchange: matching cloud names, best first.
pub async fn query(
    gw: &Gateway,
    exchange: &str,
    constraints: &Element,
    timeout: Duration,
) -> Result<Vec<String>, CommandError> {
    let iq = command_iq(
        &format!("service.{exchange}"),
        "constraint_catalog_resources",
        Some(constraints.clone()),
    );
    let reply = gw.iq(iq, timeout).await?;
    let out = output(&reply)?;
    let names = out
        .elements()
        .find(|e| e.name == "matchingClouds")
        .map(|m| {
            m.elements()
                .map(|c| c.text_content().trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok(names)
}

/// Runs the flow.
pub async fn run(
    gw: &Gateway,
    neg: &Addr<Negotiation>,
    settings: &NegotiationSettings,
    req: Request,
) -> Report {
    let mut r = Report::default();
    let me = gw.jid().clone();
    let ask = Duration::from_secs(10).max(settings.timeout);
    // 1. Which clouds match (§6), from the first exchange that answers.
    let mut found = None;
    for ex in &settings.exchanges {
        r.lines.push(format!(
            "→ service.{ex} constraint_catalog_resources ({} constraints)",
            req.constraints.elements().count()
        ));
        match query(gw, ex, &req.constraints, ask).await {
            Ok(names) => {
                let domains = list_clouds(gw, ex, ask).await.unwrap_or_default();
                r.lines.push(format!(
                    "← service.{ex} matchingClouds: {}",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ));
                found = Some((names, domains));
                break;
            }
            Err(e) => r.lines.push(format!("← service.{ex} error: {e}")),
        }
    }
    let Some((names, domains)) = found else {
        r.lines.push("no exchange answered".into());
        return r;
    };
    for n in names {
        // Names are cloud names; the catalog lists their domains.
        let d = domains.get(&n).cloned().unwrap_or_else(|| n.clone());
        if d != me.domain() {
            r.matches.push((n, d));
        }
    }
    // 2. Presence of each match in rank order; propose to the first available.
    let mut unavailable = Vec::new();
    for (name, domain) in r.matches.clone() {
        let Ok(peer) = format!("{}@{domain}", settings.peer_gateway).parse::<Jid>() else {
            continue;
        };
        let mut p = gw.get_presence(&peer).await;
        if !p.is_available() {
            // Not seen yet: ask to see it, and give it a moment.
            gw.send_invite(&peer);
            let until = Instant::now() + settings.presence_wait;
            while !p.is_available() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
                p = gw.get_presence(&peer).await;
            }
        }
        if !p.is_available() {
            r.lines
                .push(format!("   presence {peer} ({name}): unavailable"));
            unavailable.push((name, peer));
            continue;
        }
        r.lines.push(format!(
            "   presence {peer} ({name}): available{}",
            p.get_status()
                .map(|s| format!(" — {s}"))
                .unwrap_or_default()
        ));
        let Some(o) = propose(neg, &peer, &req, false).await else {
            r.lines.push("negotiation actor gone".into());
            return r;
        };
        r.lines.extend(o.lines.iter().cloned());
        match o.result {
            Verdict::Agreed(a) => {
                r.lines.push(format!("agreement {} with {peer}", a.id));
                r.agreement = Some(a);
                return r;
            }
            Verdict::Rejected(why) => r.lines.push(format!("   {peer} rejected: {why}")),
            Verdict::TimedOut => r.lines.push(format!("   {peer}: no answer in time")),
            Verdict::Unreachable(c) => r.lines.push(format!("   {peer}: unreachable ({c})")),
            Verdict::Offline => {}
        }
    }
    // 3. Nobody available: the proposal waits for the best match.
    if let Some((name, peer)) = unavailable.into_iter().next() {
        if let Some(o) = propose(neg, &peer, &req, true).await {
            r.lines.extend(o.lines.iter().cloned());
            r.lines.push(format!(
                "no matching cloud is available: proposal {} left offline for {peer} ({name})",
                o.id
            ));
            r.offline = Some((peer.to_string(), o.id));
        }
    } else if r.agreement.is_none() {
        r.lines
            .push("no agreement: every available match declined".into());
    }
    r
}

async fn propose(
    neg: &Addr<Negotiation>,
    peer: &Jid,
    req: &Request,
    offline: bool,
) -> Option<Outcome> {
    let rx = neg
        .send(Propose {
            peer: peer.clone(),
            terms: req.terms.clone(),
            min_amount: req.min_amount,
            offline,
        })
        .await
        .ok()?;
    rx.await.ok()
}

/// Reads the command's input: `<negotiate>` (any namespace) with service,
/// protocol, transport, amount (unit attribute), duration, min_amount, terms
/// and the paper's `<constraints>`.
pub fn parse_request(input: &Element) -> Result<Request, RequestError> {
    fn find<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
        if e.name == name {
            return Some(e);
        }
        e.elements().find_map(|c| find(c, name))
    }
    let text = |n: &str| find(input, n).map(|e| e.text_content().trim().to_string());
    let service = text("service")
        .filter(|s| !s.is_empty())
        .ok_or(RequestError::Missing("service"))?;
    let amount_el = find(input, "amount");
    let amount = match amount_el {
        None => 1,
        Some(a) => a
            .text_content()
            .trim()
            .parse::<u64>()
            .map_err(|_| RequestError::NotANumber("amount".into()))?,
    };
    let unit = amount_el
        .and_then(|a| a.get_attr("unit"))
        .unwrap_or("GB")
        .to_string();
    let num = |n: &str, default: u64| -> Result<u64, RequestError> {
        match text(n) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| RequestError::NotANumber(n.to_string())),
        }
    };
    let constraints = find(input, "constraints")
        .cloned()
        .ok_or(RequestError::NoConstraints)?;
    Ok(Request {
        terms: Terms {
            service,
            protocol: text("protocol").unwrap_or_else(|| "AMQP".into()),
            transport: text("transport").unwrap_or_else(|| "UDT".into()),
            amount,
            unit,
            duration_secs: num("duration", 0)?,
            terms: text("terms").unwrap_or_default(),
        },
        min_amount: num("min_amount", amount)?,
        constraints,
    })
}

/// The report as the command's output.
pub fn report_element(r: &Report) -> Element {
    let result = if r.agreement.is_some() {
        "agreed"
    } else if r.offline.is_some() {
        "offline"
    } else {
        "failed"
    };
    let mut e = Element::new("report", NS_NEGOTIATION).attr("result", result);
    let mut m = Element::new("matchingClouds", NS_RES);
    for (n, _) in &r.matches {
        m = m.child(Element::new("cloudName", NS_RES).text(n.clone()));
    }
    e = e.child(m);
    for l in &r.lines {
        e = e.child(Element::new("line", NS_NEGOTIATION).text(l.clone()));
    }
    if let Some(a) = &r.agreement {
        e = e.child(
            Element::new("agreement", NS_NEGOTIATION)
                .attr("id", a.id.clone())
                .attr("peer", a.peer.clone())
                .attr("service", a.service.clone())
                .attr("protocol", a.protocol.clone())
                .attr("transport", a.transport.clone())
                .attr("amount", a.amount.to_string())
                .attr("unit", a.unit.clone()),
        );
    }
    if let Some((peer, id)) = &r.offline {
        e = e.child(
            Element::new("held", NS_NEGOTIATION)
                .attr("peer", peer.clone())
                .attr("id", id.clone()),
        );
    }
    e
}

/// Answers the `negotiate` command: runs the flow and returns its report.
pub async fn command(
    gw: &Gateway,
    neg: &Addr<Negotiation>,
    settings: &NegotiationSettings,
    iq: Element,
) -> Element {
    let Some(cmd) = iq.get_child("command", NS_COMMANDS) else {
        return adhoc::error(&iq, "bad-request", None, None);
    };
    match adhoc::action(cmd) {
        Ok(adhoc::Action::Execute | adhoc::Action::Complete) => {}
        Ok(_) => return adhoc::error(&iq, "bad-request", Some("bad-action"), None),
        Err(e) => {
            return adhoc::error(
                &iq,
                "bad-request",
                Some("malformed-action"),
                Some(&e.to_string()),
            )
        }
    }
    let input = match iodata::request(cmd) {
        Ok(Some((iodata::Request::Input, io))) => iodata::input(io).cloned(),
        _ => None,
    };
    let Some(input) = input else {
        return adhoc::error(
            &iq,
            "bad-request",
            Some("bad-payload"),
            Some("an IO Data input is needed"),
        );
    };
    let sessionid = format!("negotiate-{:016x}", rand::random::<u64>());
    let req = match parse_request(&input) {
        Ok(r) => r,
        Err(e) => {
            return adhoc::response(
                &iq,
                NODE,
                &sessionid,
                "completed",
                vec![adhoc::note("error", &e.to_string())],
            )
        }
    };
    let r = run(gw, neg, settings, req).await;
    let note = match (&r.agreement, &r.offline) {
        (Some(a), _) => adhoc::note(
            "info",
            &format!(
                "agreement {} with {}: {} {} of {}",
                a.id, a.peer, a.amount, a.unit, a.service
            ),
        ),
        (None, Some((peer, id))) => adhoc::note(
            "warn",
            &format!("no matching cloud is available; proposal {id} waits offline for {peer}"),
        ),
        _ => adhoc::note("error", "no agreement"),
    };
    adhoc::response(
        &iq,
        NODE,
        &sessionid,
        "completed",
        vec![note, iodata::output(vec![report_element(&r)])],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "urn:test";

    /// `<negotiate>` with the given children (name, text, unit) and, unless
    /// `bare`, the paper's `<constraints>`.
    fn request(children: &[(&str, &str)], constraints: bool) -> Result<Request, RequestError> {
        let mut e = Element::new("negotiate", NS);
        for (name, text) in children {
            e = e.child(Element::new(name, NS).text(*text));
        }
        if constraints {
            e = e.child(Element::new("constraints", "http://www.csp/resOntology"));
        }
        parse_request(&e)
    }

    #[test]
    fn a_request_is_refused_for_what_it_lacks() {
        assert_eq!(
            request(&[], true).err(),
            Some(RequestError::Missing("service"))
        );
        assert_eq!(
            request(&[("service", "s")], false).err(),
            Some(RequestError::NoConstraints)
        );
        assert_eq!(
            request(&[("service", "s"), ("amount", "x")], true).err(),
            Some(RequestError::NotANumber("amount".into()))
        );
        assert_eq!(
            request(&[("service", "s"), ("duration", "1h")], true).err(),
            Some(RequestError::NotANumber("duration".into()))
        );
        let ok = request(&[("service", "s"), ("amount", "3")], true).unwrap();
        assert_eq!((ok.terms.amount, ok.min_amount), (3, 3));
    }
}
