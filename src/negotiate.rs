//! `intercloud negotiate` and `intercloud agreements list`: the CLI asks its own node's gateway (logged in as the gateway account) to run the paper's flow, and reads the agreements the node keeps.

use crate::config::Config;
use intercloud_actors::adhoc::NS_COMMANDS;
use intercloud_actors::element::{escape, Element};
use intercloud_actors::iodata::NS_IODATA;
use intercloud_actors::negotiation::protocol::NS_NEGOTIATION;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the flow could not be asked for, or did not end in an agreement.
#[derive(Debug, thiserror::Error)]
pub enum NegotiateError {
    #[error("no <constraints> element in the file")]
    NoConstraints,
    #[error("<constraints> is not closed")]
    UnclosedConstraints,
    #[error("c2s address {0}: {1}")]
    Address(String, std::net::AddrParseError),
    #[error("{0}: {1} (is the node started? it creates the gateway account)")]
    GatewaySecret(PathBuf, std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("no certificate in tls.cert")]
    NoCertificate,
    #[error(transparent)]
    Client(#[from] crate::xmpp::client::ClientError),
    #[error("no answer")]
    NoAnswer,
    #[error("the gateway refused: {0}")]
    GatewayRefused(String),
    #[error("no command in the answer")]
    NoCommand,
    /// The command's note: what the flow itself reported.
    #[error("{0}")]
    Flow(String),
    #[error("no agreement")]
    NoAgreement,
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error(transparent)]
    Store(#[from] intercloud_actors::store::StoreError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// What to ask for.
#[derive(Clone, Debug)]
pub struct Ask {
    pub service: String,
    pub protocol: String,
    pub transport: String,
    pub amount: u64,
    pub unit: String,
    pub duration_secs: u64,
    pub min_amount: Option<u64>,
    pub terms: String,
}

/// The `<constraints>…</constraints>` element of a file (the paper's whole
/// request, or just the element).
pub fn constraints_xml(text: &str) -> Result<&str, NegotiateError> {
    let start = text
        .find("<constraints")
        .ok_or(NegotiateError::NoConstraints)?;
    let end = text[start..]
        .find("</constraints>")
        .map(|i| start + i + "</constraints>".len())
        .ok_or(NegotiateError::UnclosedConstraints)?;
    Ok(&text[start..end])
}

/// The command's input.
pub fn input(ask: &Ask, constraints: &str) -> String {
    let min = ask
        .min_amount
        .map(|m| format!("<min_amount>{m}</min_amount>"))
        .unwrap_or_default();
    format!(
        "<negotiate xmlns='{NS_NEGOTIATION}'><service>{}</service><protocol>{}</protocol><transport>{}</transport>\
         <amount unit='{}'>{}</amount><duration>{}</duration>{min}<terms>{}</terms>{constraints}</negotiate>",
        escape(&ask.service),
        escape(&ask.protocol),
        escape(&ask.transport),
        escape(&ask.unit),
        ask.amount,
        ask.duration_secs,
        escape(&ask.terms),
    )
}

/// Where the node listens for clients, as the CLI reaches it.
fn c2s_addr(c: &Config) -> Result<SocketAddr, NegotiateError> {
    let host = if c.c2s.bind == "0.0.0.0" || c.c2s.bind == "::" {
        "127.0.0.1"
    } else {
        c.c2s.bind.as_str()
    };
    let a = format!("{host}:{}", c.c2s.port);
    a.parse().map_err(|e| NegotiateError::Address(a, e))
}

/// Runs the flow on the node of `config`; the report element and whether it reached an agreement or left the proposal offline.
pub async fn run(
    config: &Config,
    ask: &Ask,
    constraints_file: &str,
) -> Result<Element, NegotiateError> {
    run_on(&crate::net::Net::tcp(), config, ask, constraints_file).await
}

/// As `run`, reaching the node over `net` (TCP or an in-process network).
pub async fn run_on(
    net: &crate::net::Net,
    config: &Config,
    ask: &Ask,
    constraints_file: &str,
) -> Result<Element, NegotiateError> {
    let secret = std::fs::read_to_string(config.gateway_secret_path())
        .map_err(|e| NegotiateError::GatewaySecret(config.gateway_secret_path(), e))?
        .trim()
        .to_string();
    let constraints = constraints_xml(constraints_file)?;
    let jid = config.gateway_jid();
    let to = format!("{jid}/{}", config.gateway.resource);
    let xml = crate::adhoc_client::request(
        &to,
        intercloud_actors::negotiation::flow::NODE,
        &input(ask, constraints),
    );
    let pinned = crate::tls::load_certs(&config.path(&config.tls.cert))?
        .into_iter()
        .next()
        .ok_or(NegotiateError::NoCertificate)?;
    let out = crate::adhoc_client::run(net, c2s_addr(config)?, &jid, &secret, pinned, &xml).await?;
    let reply = out.into_iter().next().ok_or(NegotiateError::NoAnswer)?;
    if reply.get_attr("type") == Some("error") {
        return Err(NegotiateError::GatewayRefused(reply.to_xml()));
    }
    let cmd = reply
        .get_child("command", NS_COMMANDS)
        .ok_or(NegotiateError::NoCommand)?;
    if let Some(report) = cmd
        .get_child("iodata", NS_IODATA)
        .and_then(|io| io.elements().find(|e| e.name == "out"))
        .and_then(|o| o.get_child("report", NS_NEGOTIATION))
    {
        return Ok(report.clone());
    }
    let note = cmd
        .get_child("note", NS_COMMANDS)
        .map(|n| n.text_content())
        .unwrap_or_else(|| reply.to_xml());
    Err(NegotiateError::Flow(note))
}

/// Prints a report; Ok when it ended in an agreement or an offline proposal.
pub fn print_report(report: &Element) -> Result<(), NegotiateError> {
    for l in report.elements().filter(|e| e.name == "line") {
        println!("{}", l.text_content());
    }
    match report.get_attr("result") {
        Some("agreed") => {
            if let Some(a) = report.get_child("agreement", NS_NEGOTIATION) {
                println!(
                    "AGREED {} with {}: {} {} of {} using {}/{}",
                    a.get_attr("id").unwrap_or(""),
                    a.get_attr("peer").unwrap_or(""),
                    a.get_attr("amount").unwrap_or(""),
                    a.get_attr("unit").unwrap_or(""),
                    a.get_attr("service").unwrap_or(""),
                    a.get_attr("protocol").unwrap_or(""),
                    a.get_attr("transport").unwrap_or(""),
                );
            }
            Ok(())
        }
        Some("offline") => {
            let h = report.get_child("held", NS_NEGOTIATION);
            println!(
                "OFFLINE proposal {} waits for {}",
                h.and_then(|h| h.get_attr("id")).unwrap_or(""),
                h.and_then(|h| h.get_attr("peer")).unwrap_or("")
            );
            Ok(())
        }
        _ => Err(NegotiateError::NoAgreement),
    }
}

/// `agreements list`: one line per agreement, or JSON.
pub fn list(config: &Config, json: bool) -> Result<(), NegotiateError> {
    let store = crate::node::open_store(config)?;
    let all = store.agreements()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no agreements");
    }
    for a in all {
        println!(
            "{}  {:<8}  {}  {}  {}/{}  {} {}  duration={}s  created={}",
            a.id,
            a.role,
            a.peer,
            a.service,
            a.protocol,
            a.transport,
            a.amount,
            a.unit,
            a.duration_secs,
            a.created
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_constraints_of_the_papers_request() {
        let paper = include_str!("../scenarios/data/paper_request.xml");
        let c = constraints_xml(paper).unwrap();
        assert!(c.starts_with("<constraints xmlns='http://www.csp/resOntology'>"));
        assert!(c.ends_with("</constraints>"));
        let ask = Ask {
            service: "storage-replication".into(),
            protocol: "AMQP".into(),
            transport: "UDT".into(),
            amount: 5,
            unit: "GB".into(),
            duration_secs: 0,
            min_amount: None,
            terms: "a<b".into(),
        };
        let i = input(&ask, c);
        assert!(i.contains("<terms>a&lt;b</terms>"), "{i}");
    }

    #[test]
    fn a_file_without_whole_constraints_is_refused_for_what_it_lacks() {
        assert!(matches!(
            constraints_xml("<request/>"),
            Err(NegotiateError::NoConstraints)
        ));
        assert!(matches!(
            constraints_xml("<constraints><c/>"),
            Err(NegotiateError::UnclosedConstraints)
        ));
    }
}
