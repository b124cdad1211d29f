//! The service at `service.<domain>` on exchanges and roots: XEP-0030 discovery and XEP-0050 commands with XEP-0244 IO Data over the catalog (constraint_catalog_resources, sparql_query, publish_resources, list_clouds).

use crate::adhoc::{self, Action, NS_COMMANDS};
use crate::catalog::constraints::{self, NS_RES};
use crate::catalog::{Answer, Catalog, CatalogError, CatalogLimits};
use crate::element::Element;
use crate::iodata::{self, Request, Xsd, NS_IODATA};
use crate::messages::{Route, ToService};
use crate::stanza::{self, error_reply, iq_result, NS_DISCO_INFO, NS_DISCO_ITEMS};
use crate::store::Store;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NS_SPARQL_RESULTS: &str = "http://www.w3.org/2005/sparql-results#";

const CONSTRAINTS: &str = "constraint_catalog_resources";
const SPARQL: &str = "sparql_query";
const PUBLISH: &str = "publish_resources";
const LIST: &str = "list_clouds";

/// The commands, with their human names.
pub const COMMANDS: &[(&str, &str)] = &[
    (CONSTRAINTS, "Find clouds whose resources meet constraints"),
    (SPARQL, "Read-only SPARQL query over the catalog"),
    (
        PUBLISH,
        "Publish this cloud's resource description (Turtle)",
    ),
    (LIST, "List the clouds in the catalog"),
];

/// What the service needs from the node's configuration.
#[derive(Clone)]
pub struct ServiceSettings {
    /// The node's domain; the service answers at `service.<domain>`.
    pub domain: String,
    pub limits: CatalogLimits,
    /// Jobs still running after this answer `executing` (XEP-0244) and finish later.
    pub async_after: Duration,
    /// Queries running at once; more are refused with `resource-constraint`.
    pub max_running: usize,
    /// Most clouds one constraint query answers.
    pub match_limit: usize,
    /// How long a command session (and a finished job's output) is kept.
    pub session_timeout: Duration,
    /// Command sessions kept at once, in all and for one requester; a new
    /// one beyond either is refused with `resource-constraint`.
    pub max_sessions: usize,
    pub max_sessions_per_jid: usize,
    /// Where sparql_query runs (the node's query workers; in process in tests).
    pub sparql: std::sync::Arc<dyn crate::catalog::runner::SparqlRunner>,
    /// Where query latencies are counted.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Counts the clouds in the catalog (status, tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountClouds;

enum State {
    /// The requester fetched the schemata and will send input.
    AwaitingInput,
    /// A job runs; `replied` once the requester got `executing`.
    Running { iq: Element, replied: bool },
    /// A job ended after answering `executing`; its output waits for getOutput.
    Done(Vec<Element>),
}

struct CmdSession {
    node: &'static str,
    owner: String,
    started: Instant,
    state: State,
}

/// A job's result: output payload, or an error to show in a note.
type JobResult = Result<Vec<Element>, JobError>;

/// Why a command's job gave no answer.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The blocking task died (a panic in the evaluator).
    #[error("the query failed: {0}")]
    Died(#[from] tokio::task::JoinError),
}

#[derive(Message)]
#[rtype(result = "()")]
struct JobDone {
    sid: String,
    result: JobResult,
}

pub struct Service {
    settings: ServiceSettings,
    jid: String,
    catalog: Catalog,
    store: Arc<Store>,
    router: Recipient<Route>,
    sessions: HashMap<String, CmdSession>,
    /// Ids of sessions that timed out, to answer `session-expired`.
    expired: HashMap<String, Instant>,
    running: Arc<AtomicUsize>,
    next: u64,
}

impl Actor for Service {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = (self.settings.session_timeout / 4).max(Duration::from_secs(1));
        ctx.run_interval(every, |s, _| s.expire());
    }
}

impl Service {
    /// Loads the stored descriptions into a fresh catalog.
    pub fn new(
        settings: ServiceSettings,
        store: Arc<Store>,
        router: Recipient<Route>,
    ) -> Result<Service, CatalogError> {
        let catalog = Catalog::new(settings.limits.clone())?;
        for (domain, turtle) in store.descriptions().unwrap_or_default() {
            if let Err(e) = catalog.publish(&domain, &turtle) {
                tracing::warn!(%domain, error = %e, "stored description no longer loads");
            }
        }
        Ok(Service {
            jid: format!("service.{}", settings.domain),
            settings,
            catalog,
            store,
            router,
            sessions: HashMap::new(),
            expired: HashMap::new(),
            running: Arc::new(AtomicUsize::new(0)),
            next: 0,
        })
    }

    fn send(&self, st: Element) {
        self.router.do_send(Route(st));
    }

    fn expire(&mut self) {
        let t = self.settings.session_timeout;
        let gone: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.started.elapsed() > t && !matches!(s.state, State::Running { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.sessions.remove(&k);
            if self.expired.len() < self.settings.max_sessions {
                self.expired.insert(k, Instant::now());
            }
        }
        self.expired.retain(|_, at| at.elapsed() < t * 4);
    }

    /// Why a new command session of `owner` cannot be kept, if it cannot.
    fn no_room_for(&self, owner: &str) -> Option<&'static str> {
        if self.sessions.len() >= self.settings.max_sessions {
            return Some("too many command sessions; try again later");
        }
        let own = self.sessions.values().filter(|s| s.owner == owner).count();
        (own >= self.settings.max_sessions_per_jid)
            .then_some("too many command sessions of yours; let some finish or expire")
    }

    fn new_sid(&mut self) -> String {
        self.next += 1;
        format!("RPC-SESSION-{:07}-{:08x}", self.next, rand::random::<u32>())
    }

    fn handle_iq(&mut self, iq: Element, ctx: &mut Context<Self>) {
        let t = stanza::stype(&iq);
        if t != "get" && t != "set" {
            return;
        }
        if let Some(r) = crate::ping::answer(&iq) {
            return self.send(r);
        }
        if t == "get" {
            if let Some(q) = iq.get_child("query", NS_DISCO_INFO) {
                return self.send(self.disco_info(&iq, q.get_attr("node")));
            }
            if let Some(q) = iq.get_child("query", NS_DISCO_ITEMS) {
                return self.send(match q.get_attr("node") {
                    Some(NS_COMMANDS) | None => {
                        iq_result(&iq).child(adhoc::items(&self.jid, COMMANDS))
                    }
                    Some(_) => error_reply(&iq, "item-not-found", None),
                });
            }
        }
        match iq.get_child("command", NS_COMMANDS).cloned() {
            Some(cmd) if t == "set" => self.command(iq, &cmd, ctx),
            Some(_) => self.send(error_reply(
                &iq,
                "bad-request",
                Some("commands are executed with type='set'"),
            )),
            None => self.send(error_reply(&iq, "service-unavailable", None)),
        }
    }

    fn disco_info(&self, iq: &Element, node: Option<&str>) -> Element {
        match node {
            None => {
                let mut q = Element::new("query", NS_DISCO_INFO).child(
                    Element::new("identity", NS_DISCO_INFO)
                        .attr("category", "automation")
                        .attr("type", "command-list")
                        .attr("name", "Intercloud exchange catalog"),
                );
                for f in [
                    NS_DISCO_INFO,
                    NS_DISCO_ITEMS,
                    NS_COMMANDS,
                    NS_IODATA,
                    crate::stanza::NS_PING,
                ] {
                    q = q.child(Element::new("feature", NS_DISCO_INFO).attr("var", f));
                }
                iq_result(iq).child(q)
            }
            Some(n) => match COMMANDS.iter().find(|(c, _)| *c == n) {
                Some((c, name)) => iq_result(iq).child(adhoc::node_info(c, name, &[NS_IODATA])),
                None => error_reply(iq, "item-not-found", None),
            },
        }
    }

    fn command(&mut self, iq: Element, cmd: &Element, ctx: &mut Context<Self>) {
        let Some(node) = cmd
            .get_attr("node")
            .and_then(|n| COMMANDS.iter().find(|(c, _)| *c == n))
            .map(|(c, _)| *c)
        else {
            return self.send(error_reply(&iq, "item-not-found", Some("no such command")));
        };
        let action = match adhoc::action(cmd) {
            Ok(a) => a,
            Err(e) => {
                return self.send(adhoc::error(
                    &iq,
                    "bad-request",
                    Some("malformed-action"),
                    Some(&e.to_string()),
                ))
            }
        };
        let owner = iq.get_attr("from").unwrap_or_default().to_string();
        let sid = cmd.get_attr("sessionid").map(str::to_string);
        if let Some(s) = &sid {
            match self.sessions.get(s) {
                Some(sess) if sess.owner == owner && sess.node == node => {}
                Some(_) | None if self.expired.contains_key(s) => {
                    return self.send(adhoc::error(
                        &iq,
                        "not-allowed",
                        Some("session-expired"),
                        None,
                    ))
                }
                _ => {
                    return self.send(adhoc::error(
                        &iq,
                        "bad-request",
                        Some("bad-sessionid"),
                        None,
                    ))
                }
            }
        }
        match action {
            Action::Cancel => {
                if let Some(s) = &sid {
                    self.sessions.remove(s);
                }
                let s = sid.unwrap_or_else(|| self.new_sid());
                return self.send(adhoc::response(&iq, node, &s, "canceled", vec![]));
            }
            Action::Next | Action::Prev => {
                return self.send(adhoc::error(
                    &iq,
                    "bad-request",
                    Some("bad-action"),
                    Some("single-stage command"),
                ))
            }
            Action::Execute | Action::Complete => {}
        }
        if sid.is_none() {
            if let Some(why) = self.no_room_for(&owner) {
                tracing::warn!(%owner, sessions = self.sessions.len(), "{why}");
                return self.send(error_reply(&iq, "resource-constraint", Some(why)));
            }
        }
        let io = match iodata::request(cmd) {
            Ok(io) => io,
            Err(e) => return self.send(bad_payload(&iq, &e.to_string())),
        };
        match io {
            Some((Request::SchemataGet, _)) => {
                let s = sid.unwrap_or_else(|| self.new_sid());
                self.sessions.insert(
                    s.clone(),
                    CmdSession {
                        node,
                        owner,
                        started: Instant::now(),
                        state: State::AwaitingInput,
                    },
                );
                self.send(adhoc::response(
                    &iq,
                    node,
                    &s,
                    "executing",
                    vec![schemata(node)],
                ));
            }
            Some((Request::GetStatus | Request::GetOutput, _)) => {
                let Some(s) = sid else {
                    return self.send(adhoc::error(
                        &iq,
                        "bad-request",
                        Some("bad-sessionid"),
                        Some("getStatus and getOutput need a sessionid"),
                    ));
                };
                self.status(&iq, node, &s);
            }
            Some((Request::Input, io)) => {
                let input = iodata::input(io).cloned().unwrap_or_else(|| io.clone());
                let s = sid.unwrap_or_else(|| self.new_sid());
                self.execute(iq, node, s, owner, &input, ctx);
            }
            None if node == LIST => {
                let s = sid.unwrap_or_else(|| self.new_sid());
                self.execute(iq, node, s, owner, &Element::new("in", NS_IODATA), ctx);
            }
            None => self.send(bad_payload(
                &iq,
                "this command takes <iodata type='input'> (urn:xmpp:tmp:io-data)",
            )),
        }
    }

    fn status(&mut self, iq: &Element, node: &str, sid: &str) {
        let Some(sess) = self.sessions.get(sid) else {
            return self.send(adhoc::error(iq, "bad-request", Some("bad-sessionid"), None));
        };
        let reply = match &sess.state {
            State::Running { .. } => adhoc::response(
                iq,
                node,
                sid,
                "executing",
                vec![iodata::status(sess.started.elapsed().as_secs(), "running")],
            ),
            State::Done(payload) => adhoc::response(iq, node, sid, "completed", payload.clone()),
            State::AwaitingInput => bad_payload(iq, "no input yet"),
        };
        self.send(reply);
    }

    /// Runs a command with its `<in>`: publish synchronously, queries as jobs.
    fn execute(
        &mut self,
        iq: Element,
        node: &'static str,
        sid: String,
        owner: String,
        input: &Element,
        ctx: &mut Context<Self>,
    ) {
        // A session from io-schemata-get ends here, or becomes the running job below.
        self.sessions.remove(&sid);
        let cancel = oxigraph::sparql::CancellationToken::new();
        let job: Box<dyn FnOnce(&Catalog) -> JobResult + Send> = match node {
            PUBLISH => {
                let reply = self.publish(&iq, node, &sid, input);
                return self.send(reply);
            }
            CONSTRAINTS => {
                let cs = match constraints::parse(input) {
                    Ok(cs) => cs,
                    Err(e) => {
                        return self.send(bad_payload(&iq, &e.to_string()));
                    }
                };
                let limit = self.settings.match_limit;
                Box::new(move |c: &Catalog| {
                    let names = c.matching(&cs, limit)?;
                    let mut m = Element::new("matchingClouds", NS_RES);
                    for n in names {
                        m = m.child(Element::new("cloudName", NS_RES).text(n));
                    }
                    Ok(vec![m])
                })
            }
            SPARQL => {
                let text = input
                    .elements()
                    .find(|e| e.name == "query")
                    .map(|e| e.text_content())
                    .unwrap_or_else(|| input.text_content());
                if text.trim().is_empty() {
                    return self.send(bad_payload(&iq, "no <query> in the input"));
                }
                // Refuse what is not a read-only query before running anything.
                match self.catalog.check(&text) {
                    Ok(()) => {}
                    Err(CatalogError::Update) => {
                        return self.send(error_reply(
                            &iq,
                            "not-allowed",
                            Some(&CatalogError::Update.to_string()),
                        ));
                    }
                    Err(e) => {
                        return self.send(bad_payload(&iq, &e.to_string()));
                    }
                }
                let token = cancel.clone();
                let runner = self.settings.sparql.clone();
                Box::new(move |c: &Catalog| {
                    runner
                        .run(c, &text, &token)
                        .map(|a| vec![sparql_results(&a)])
                        .map_err(JobError::from)
                })
            }
            _ => {
                // list_clouds
                Box::new(|c: &Catalog| {
                    let mut l = Element::new("clouds", NS_RES);
                    for e in c.clouds()? {
                        l = l.child(
                            Element::new("cloud", NS_RES)
                                .attr("name", e.name)
                                .attr("domain", e.domain),
                        );
                    }
                    Ok(vec![l])
                })
            }
        };
        if self.running.load(Ordering::SeqCst) >= self.settings.max_running {
            return self.send(error_reply(
                &iq,
                "resource-constraint",
                Some("too many queries running; try again"),
            ));
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        self.sessions.insert(
            sid.clone(),
            CmdSession {
                node,
                owner,
                started: Instant::now(),
                state: State::Running { iq, replied: false },
            },
        );
        let catalog = self.catalog.clone();
        let running = self.running.clone();
        let limit = self.settings.limits.query_time;
        let me = ctx.address();
        let s2 = sid.clone();
        actix::spawn(async move {
            let task = tokio::task::spawn_blocking(move || {
                let r = job(&catalog);
                running.fetch_sub(1, Ordering::SeqCst);
                r
            });
            let result = match tokio::time::timeout(limit, task).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(JobError::Died(e)),
                Err(_) => {
                    // Stops the evaluation itself, not just the wait for it.
                    cancel.cancel();
                    Err(CatalogError::Timeout(limit).into())
                }
            };
            me.do_send(JobDone { sid: s2, result });
        });
        ctx.run_later(self.settings.async_after, move |s, _| s.still_running(&sid));
    }

    /// A job past `async_after`: the requester hears `executing` and may poll.
    fn still_running(&mut self, sid: &str) {
        let Some(sess) = self.sessions.get_mut(sid) else {
            return;
        };
        if let State::Running { iq, replied } = &mut sess.state {
            if !*replied {
                *replied = true;
                let r = adhoc::response(
                    iq,
                    sess.node,
                    sid,
                    "executing",
                    vec![iodata::status(sess.started.elapsed().as_secs(), "running")],
                );
                self.send(r);
            }
        }
    }
}

/// `bad-request` with XEP-0050's `bad-payload` and a reason.
fn bad_payload(iq: &Element, why: &str) -> Element {
    adhoc::error(iq, "bad-request", Some("bad-payload"), Some(why))
}

impl Handler<ToService> for Service {
    type Result = ();
    fn handle(&mut self, msg: ToService, ctx: &mut Context<Self>) {
        match stanza::kind(&msg.0) {
            Some(stanza::Kind::Iq) => self.handle_iq(msg.0, ctx),
            Some(stanza::Kind::Message) if stanza::may_bounce(&msg.0) => {
                self.send(error_reply(&msg.0, "service-unavailable", None))
            }
            _ => {}
        }
    }
}

impl Handler<JobDone> for Service {
    type Result = ();
    fn handle(&mut self, msg: JobDone, _: &mut Context<Self>) {
        let Some(sess) = self.sessions.get_mut(&msg.sid) else {
            return;
        };
        let State::Running { iq, replied } = &sess.state else {
            return;
        };
        self.settings
            .metrics
            .catalog_queries
            .get_or_create(&crate::metrics::Metrics::label("node", sess.node))
            .observe(sess.started.elapsed().as_secs_f64());
        let payload = match msg.result {
            Ok(out) => vec![iodata::output(out)],
            Err(e) => {
                tracing::info!(node = sess.node, error = %e, "command failed");
                vec![adhoc::note("error", &e.to_string())]
            }
        };
        if !*replied {
            let r = adhoc::response(iq, sess.node, &msg.sid, "completed", payload);
            self.sessions.remove(&msg.sid);
            return self.send(r);
        }
        // XEP-0244: the requester was told `executing`; tell it the job completed.
        let mut cmd = Element::new("command", NS_COMMANDS)
            .attr("node", sess.node)
            .attr("sessionid", msg.sid.clone())
            .attr("status", "completed");
        for p in &payload {
            cmd = cmd.child(p.clone());
        }
        let note = Element::new("message", crate::element::NS_CLIENT)
            .attr("from", self.jid.clone())
            .attr("to", sess.owner.clone())
            .attr("type", "normal")
            .child(cmd);
        sess.state = State::Done(payload);
        self.send(note);
    }
}

impl Handler<CountClouds> for Service {
    type Result = usize;
    fn handle(&mut self, _: CountClouds, _: &mut Context<Self>) -> usize {
        self.catalog.clouds().map(|c| c.len()).unwrap_or(0)
    }
}

mod payloads;
use payloads::{schemata, sparql_results};

mod publish;
