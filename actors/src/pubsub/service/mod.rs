//! The XEP-0060 service as a sans-IO core: a stanza in, the replies and notifications out; nodes kept in memory and written through to the store before any reply says they changed.

use super::node::*;
use crate::dataform::{Field, Form};
use crate::element::{Element, NS_CLIENT};
use crate::jid::Jid;
use crate::stanza::{self, error_reply, iq_result, NS_DISCO_INFO, NS_DISCO_ITEMS};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The bounds of one service, from the node's configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_nodes: usize,
    pub max_nodes_per_owner: usize,
    pub max_items_per_node: usize,
    pub max_subscriptions_per_node: usize,
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_nodes: 10_000,
            max_nodes_per_owner: 100,
            max_items_per_node: 100,
            max_subscriptions_per_node: 10_000,
            max_payload_bytes: 64 * 1024,
        }
    }
}

/// What the service asks of the node: rosters, for the presence and roster access models.
pub trait Env {
    /// The item `owner` (a bare JID) keeps for `contact`: whether `contact`
    /// receives `owner`'s presence (subscription from or both), and its groups.
    fn roster(&self, owner: &str, contact: &str) -> Option<(bool, Vec<String>)>;

    /// XEP-0163: the full JIDs that asked, through their entity capabilities,
    /// for notifications of `node` (`<node>+notify`); the node's access model
    /// still decides who gets them. Empty outside a personal (PEP) service.
    fn interested(&self, _node: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The features disco#info announces.
const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-authorize",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#instant-nodes",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#manage-affiliations",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#meta-data",
    "http://jabber.org/protocol/pubsub#modify-affiliations",
    "http://jabber.org/protocol/pubsub#multi-subscribe",
    "http://jabber.org/protocol/pubsub#outcast-affiliation",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#publisher-affiliation",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#subscribe",
    "http://jabber.org/protocol/pubsub#subscription-options",
];

/// One publish-subscribe service.
pub struct PubSub {
    /// The service's JID (`pubsub.<domain>`).
    jid: String,
    /// The domain whose users may create nodes.
    domain: String,
    nodes: BTreeMap<String, Node>,
    limits: Limits,
    store: Arc<Store>,
    /// The last publish order handed out.
    seq: u64,
    /// A personal eventing service (XEP-0163): the service is an account's
    /// bare JID, only that account creates and publishes, nodes default to
    /// the presence access model, and contacts are notified by interest.
    pep: bool,
    /// Notification ids are `ps-<nonce>-<n>-<h|n>`: this instance's nonce
    /// (so that no two lifetimes share an id), and the last n handed out
    /// (so that notifications held for an unreachable server go out again
    /// in the order they were made; h: a headline).
    nonce: u32,
    notes: std::cell::Cell<u64>,
}

/// Why a request failed: the stanza condition and XEP-0060's own, if any.
struct Refusal(&'static str, Option<&'static str>, Option<String>);

type Answer = Result<Vec<Element>, Refusal>;

fn refuse(condition: &'static str, app: Option<&'static str>) -> Refusal {
    Refusal(condition, app, None)
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        tracing::error!(error = %e, "pubsub state could not be written");
        Refusal("internal-server-error", None, None)
    }
}

impl PubSub {
    /// The service `jid` serving users of `domain`, with what the store holds.
    pub fn load(
        jid: &str,
        domain: &str,
        limits: Limits,
        store: Arc<Store>,
    ) -> Result<PubSub, StoreError> {
        let mut nodes = BTreeMap::new();
        let mut seq = 0;
        for n in store.pubsub_nodes(jid)? {
            let mut config = Config::new(limits.max_items_per_node);
            if let Some(form) = n.config.as_ref().map(Form::parse) {
                if let Err(e) = config.apply(&form, limits.max_items_per_node) {
                    tracing::warn!(node = %n.name, error = %e, "stored configuration not taken whole");
                }
            }
            let mut node = Node {
                name: n.name.clone(),
                config,
                affiliations: Default::default(),
                subscriptions: Vec::new(),
                items: Default::default(),
            };
            for (j, a) in n.affiliations {
                if let Some(a) = Affiliation::parse(&a) {
                    node.affiliations.insert(j, a);
                }
            }
            for (subid, jid, state, deliver) in n.subscriptions {
                if let Some(state) = SubState::parse(&state) {
                    node.subscriptions.push(Subscription {
                        jid,
                        subid,
                        state,
                        deliver,
                    });
                }
            }
            for (id, publisher, payload, s) in n.items {
                seq = seq.max(s);
                node.items.push_back(Item {
                    id,
                    publisher,
                    payload,
                    seq: s,
                });
            }
            nodes.insert(n.name, node);
        }
        Ok(PubSub {
            jid: jid.to_string(),
            domain: domain.to_string(),
            nodes,
            limits,
            store,
            seq,
            pep: false,
            nonce: rand::random(),
            notes: std::cell::Cell::new(0),
        })
    }

    /// The personal eventing service (XEP-0163) of the account `owner` (a bare JID).
    pub fn load_pep(owner: &Jid, limits: Limits, store: Arc<Store>) -> Result<PubSub, StoreError> {
        let mut s = PubSub::load(&owner.to_string(), owner.domain(), limits, store)?;
        s.pep = true;
        Ok(s)
    }

    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The features a service announces in disco#info.
    pub fn features() -> &'static [&'static str] {
        FEATURES
    }

    /// How many nodes the service holds.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Takes one stanza addressed to the service; returns what to send.
    pub fn handle(&mut self, st: &Element, env: &dyn Env) -> Vec<Element> {
        let Ok(Some(from)) = stanza::from(st) else {
            return vec![];
        };
        match st.name.as_str() {
            "iq" if matches!(stanza::stype(st), "get" | "set") => match self.iq(st, &from, env) {
                Ok(out) => out,
                Err(Refusal(condition, app, text)) => {
                    vec![error(st, condition, app, text.as_deref())]
                }
            },
            "message" if stanza::stype(st) != "error" => self.authorization(st, &from),
            _ => vec![],
        }
    }

    fn iq(&mut self, iq: &Element, from: &Jid, env: &dyn Env) -> Answer {
        let get = stanza::stype(iq) == "get";
        if let Some(q) = iq.get_child("query", NS_DISCO_INFO).filter(|_| get) {
            return self.disco_info(iq, q.get_attr("node"));
        }
        if let Some(q) = iq.get_child("query", NS_DISCO_ITEMS).filter(|_| get) {
            return self.disco_items(iq, from, q.get_attr("node"), env);
        }
        let bare = from.to_bare().to_string();
        if let Some(p) = iq.get_child("pubsub", NS_PUBSUB) {
            let mut children = p.elements();
            let Some(first) = children.next() else {
                return Err(refuse("bad-request", None));
            };
            return match (get, first.name.as_str()) {
                (false, "create") => self.create(iq, from, first, p),
                (false, "subscribe") => self.subscribe(iq, from, first, p, env),
                (false, "unsubscribe") => self.unsubscribe(iq, &bare, first),
                (_, "options") => self.options(iq, &bare, first, get),
                (false, "publish") => self.publish(iq, from, first, p, env),
                (false, "retract") => self.retract(iq, &bare, first, env),
                (true, "items") => self.items(iq, &bare, first, env),
                (true, "subscriptions") => self.own_subscriptions(iq, &bare, first),
                (true, "affiliations") => self.own_affiliations(iq, &bare, first),
                (true, "default") => Ok(vec![self.default_config(iq, NS_PUBSUB)]),
                _ => Err(refuse("feature-not-implemented", Some("unsupported"))),
            };
        }
        if let Some(p) = iq.get_child("pubsub", NS_OWNER) {
            let Some(first) = p.elements().next() else {
                return Err(refuse("bad-request", None));
            };
            if (get, first.name.as_str()) == (true, "default") {
                return Ok(vec![self.default_config(iq, NS_OWNER)]);
            }
            let name = first.get_attr("node").unwrap_or("").to_string();
            let Some(node) = self.nodes.get(&name) else {
                return Err(if name.is_empty() {
                    refuse("bad-request", Some("nodeid-required"))
                } else {
                    refuse("item-not-found", None)
                });
            };
            if !node.is_owner(&bare) {
                return Err(refuse("forbidden", None));
            }
            return match (get, first.name.as_str()) {
                (true, "configure") => Ok(vec![iq_result(iq).child(
                    Element::new("pubsub", NS_OWNER).child(
                        Element::new("configure", NS_OWNER)
                            .attr("node", name.clone())
                            .child(node.config.form("form").to_element()),
                    ),
                )]),
                (false, "configure") => self.configure(iq, &name, first, env),
                (false, "delete") => self.delete(iq, &name, env),
                (false, "purge") => self.purge(iq, &name, env),
                (true, "subscriptions") => Ok(vec![self.owner_subscriptions(iq, &name)]),
                (false, "subscriptions") => self.set_subscriptions(iq, &name, first),
                (true, "affiliations") => Ok(vec![self.owner_affiliations(iq, &name)]),
                (false, "affiliations") => self.set_affiliations(iq, &name, first),
                _ => Err(refuse("feature-not-implemented", Some("unsupported"))),
            };
        }
        Err(refuse("service-unavailable", None))
    }

    fn disco_info(&self, iq: &Element, node: Option<&str>) -> Answer {
        let mut q = Element::new("query", NS_DISCO_INFO);
        match node {
            None => {
                q = q.child(
                    Element::new("identity", NS_DISCO_INFO)
                        .attr("category", "pubsub")
                        .attr("type", if self.pep { "pep" } else { "service" })
                        .attr("name", "Publish-Subscribe"),
                );
                for f in FEATURES {
                    q = q.child(Element::new("feature", NS_DISCO_INFO).attr("var", *f));
                }
            }
            Some(name) => {
                let n = self.nodes.get(name).ok_or(refuse("item-not-found", None))?;
                q = q
                    .attr("node", name)
                    .child(
                        Element::new("identity", NS_DISCO_INFO)
                            .attr("category", "pubsub")
                            .attr("type", "leaf"),
                    )
                    .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_PUBSUB));
                let mut meta = Form::new("result").with_type(META_DATA);
                meta.fields.extend(
                    n.config
                        .form("result")
                        .fields
                        .into_iter()
                        .filter(|f| f.var != "FORM_TYPE"),
                );
                let mut owners = Field::new("pubsub#owner", "jid-multi");
                owners.values = n.owners().cloned().collect();
                q = q.child(meta.field(owners).to_element());
            }
        }
        Ok(vec![iq_result(iq).child(q)])
    }

    fn disco_items(&self, iq: &Element, from: &Jid, node: Option<&str>, env: &dyn Env) -> Answer {
        let mut q = Element::new("query", NS_DISCO_ITEMS);
        match node {
            None => {
                let bare = from.to_bare().to_string();
                for (name, n) in &self.nodes {
                    // A person's nodes are listed only to whom may read them.
                    if self.pep && self.may_retrieve(n, &bare, env).is_err() {
                        continue;
                    }
                    let mut item = Element::new("item", NS_DISCO_ITEMS)
                        .attr("jid", self.jid.clone())
                        .attr("node", name.clone());
                    if !n.config.title.is_empty() {
                        item = item.attr("name", n.config.title.clone());
                    }
                    q = q.child(item);
                }
            }
            Some(name) => {
                let n = self.nodes.get(name).ok_or(refuse("item-not-found", None))?;
                self.may_retrieve(n, &from.to_bare().to_string(), env)?;
                q = q.attr("node", name);
                for i in &n.items {
                    q = q.child(
                        Element::new("item", NS_DISCO_ITEMS)
                            .attr("jid", self.jid.clone())
                            .attr("name", i.id.clone()),
                    );
                }
            }
        }
        Ok(vec![iq_result(iq).child(q)])
    }

    fn default_config(&self, iq: &Element, ns: &str) -> Element {
        iq_result(iq).child(Element::new("pubsub", ns).child(
            Element::new("default", ns).child(self.default_node_config().form("form").to_element()),
        ))
    }

    /// Makes a node owned by `owner` (creation, or publish to a missing node).
    fn make_node(&mut self, name: &str, owner: &str, config: Config) -> Result<(), Refusal> {
        if self.nodes.len() >= self.limits.max_nodes {
            return Err(Refusal(
                "resource-constraint",
                None,
                Some("the service holds as many nodes as it may".into()),
            ));
        }
        let owned = self.nodes.values().filter(|n| n.is_owner(owner)).count();
        if owned >= self.limits.max_nodes_per_owner {
            return Err(Refusal(
                "resource-constraint",
                None,
                Some("you own as many nodes as you may".into()),
            ));
        }
        self.store
            .pubsub_put_node(&self.jid, name, &config.form("submit").to_element())?;
        self.store
            .pubsub_set_affiliation(&self.jid, name, owner, "owner")?;
        self.nodes
            .insert(name.to_string(), Node::new(name, owner, config));
        tracing::debug!(service = %self.jid, node = %name, %owner, "node created");
        Ok(())
    }

    /// A new node's configuration before any form: for a person's nodes
    /// (XEP-0163 §4.3) readable by presence subscribers, keeping one item,
    /// and sent to contacts again when they come online.
    fn default_node_config(&self) -> Config {
        let mut c = Config::new(self.limits.max_items_per_node);
        if self.pep {
            c.access = Access::Presence;
            c.max_items = 1.min(self.limits.max_items_per_node);
            c.send_last_published_item = "on_sub_and_presence".into();
        }
        c
    }

    /// Only the account itself creates nodes in its personal service.
    fn may_create(&self, from: &Jid) -> Result<(), Refusal> {
        if from.domain() != self.domain || (self.pep && from.to_bare().to_string() != self.jid) {
            return Err(Refusal(
                "forbidden",
                None,
                Some(if self.pep {
                    "only the account itself creates its nodes".into()
                } else {
                    "only accounts of this server create nodes".into()
                }),
            ));
        }
        Ok(())
    }

    /// A configuration from a submitted node_config form (if any) over the defaults.
    fn config_from(&self, form: Option<Form>) -> Result<Config, Refusal> {
        let mut c = self.default_node_config();
        if let Some(f) = form {
            c.apply(&f, self.limits.max_items_per_node)
                .map_err(|e| Refusal("not-acceptable", None, Some(e.to_string())))?;
        }
        Ok(c)
    }

    fn create(&mut self, iq: &Element, from: &Jid, create: &Element, p: &Element) -> Answer {
        self.may_create(from)?;
        let instant = create.get_attr("node").is_none();
        let name = match create.get_attr("node") {
            Some(n) if !n.is_empty() => n.to_string(),
            Some(_) => return Err(refuse("bad-request", Some("nodeid-required"))),
            None => format!("{:016x}", rand::random::<u64>()),
        };
        if self.nodes.contains_key(&name) {
            return Err(refuse("conflict", None));
        }
        let form = p
            .get_child("configure", NS_PUBSUB)
            .and_then(Form::find)
            .filter(|f| f.kind == "submit");
        let config = self.config_from(form)?;
        self.make_node(&name, &from.to_bare().to_string(), config)?;
        let mut r = iq_result(iq);
        if instant {
            r = r.child(
                Element::new("pubsub", NS_PUBSUB)
                    .child(Element::new("create", NS_PUBSUB).attr("node", name)),
            );
        }
        Ok(vec![r])
    }

    /// XEP-0060 §6.1.3 and §7.2.3: whether `bare` may subscribe to or read `n`.
    fn may_retrieve(&self, n: &Node, bare: &str, env: &dyn Env) -> Result<(), Refusal> {
        let a = n.affiliation(bare);
        if a == Affiliation::Outcast {
            return Err(refuse("forbidden", None));
        }
        if a >= Affiliation::Member {
            return Ok(());
        }
        match n.config.access {
            Access::Open => Ok(()),
            Access::Presence => {
                if n.owners()
                    .any(|o| env.roster(o, bare).is_some_and(|(from, _)| from))
                {
                    Ok(())
                } else {
                    Err(refuse(
                        "not-authorized",
                        Some("presence-subscription-required"),
                    ))
                }
            }
            Access::Roster => {
                let allowed = n.owners().any(|o| {
                    env.roster(o, bare).is_some_and(|(_, groups)| {
                        groups.iter().any(|g| n.config.roster_groups.contains(g))
                    })
                });
                if allowed {
                    Ok(())
                } else {
                    Err(refuse("not-authorized", Some("not-in-roster-group")))
                }
            }
            Access::Whitelist => Err(refuse("not-allowed", Some("closed-node"))),
            Access::Authorize => {
                if n.subscribed(bare) {
                    Ok(())
                } else {
                    Err(refuse("not-authorized", Some("not-subscribed")))
                }
            }
        }
    }
}

fn subscription_reply(iq: &Element, node: &str, s: &Subscription) -> Element {
    iq_result(iq).child(
        Element::new("pubsub", NS_PUBSUB).child(
            Element::new("subscription", NS_PUBSUB)
                .attr("node", node)
                .attr("jid", s.jid.clone())
                .attr("subid", s.subid.clone())
                .attr("subscription", s.state.as_str()),
        ),
    )
}

/// The `node` attribute a request must carry.
fn node_attr(e: &Element) -> Result<String, Refusal> {
    match e.get_attr("node") {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => Err(refuse("bad-request", Some("nodeid-required"))),
    }
}

/// The error reply with XEP-0060's application condition beside the stanza's.
fn error(iq: &Element, condition: &str, app: Option<&str>, text: Option<&str>) -> Element {
    let mut r = error_reply(iq, condition, text);
    if let Some(app) = app {
        if let Some(err) = r.get_child_mut("error", &iq.ns.clone()) {
            let mut c = Element::new(app, NS_ERRORS);
            if app == "unsupported" {
                c = c.attr("feature", "unknown");
            }
            err.children.push(crate::element::Node::Element(c));
        }
    }
    r
}

mod notify;
use notify::{item_element, items_event};

mod subscriptions;

mod items;

mod owner;

#[cfg(test)]
mod tests;
