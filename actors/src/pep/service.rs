//! XEP-0163 Personal Eventing as a sans-IO core: every account's bare JID is a publish-subscribe service of its own; presence with XEP-0115 capabilities says who wants which node (`+notify`), and the core answers requests, asks unknown capabilities over disco#info, and sends notifications and last items.

use super::caps::{self, Caps};
use crate::element::Element;
use crate::jid::Jid;
use crate::pubsub::service::Env;
use crate::pubsub::PubSub;
use crate::stanza::{self, error_reply, iq_result, NS_DISCO_INFO};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Ids of the disco#info queries the core sends start with this.
pub const QUERY_PREFIX: &str = "pep-caps-";

/// A flood of capabilities past the bounds logs a few lines, not one each.
static FULL: crate::lograte::LogRate =
    crate::lograte::LogRate::new(5, std::time::Duration::from_secs(10));

/// The bounds, from the node's configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Each account's service: nodes, items, payload size.
    pub pubsub: crate::pubsub::Limits,
    /// (account, resource seen) pairs whose interests are tracked, in all.
    pub max_recipients: usize,
    /// Verified capability hashes remembered.
    pub max_caps: usize,
    /// disco#info queries waiting for an answer; past it the oldest is forgotten.
    pub max_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pubsub: crate::pubsub::Limits {
                max_nodes: 100,
                max_nodes_per_owner: 100,
                max_items_per_node: 100,
                max_subscriptions_per_node: 1_000,
                max_payload_bytes: 64 * 1024,
            },
            max_recipients: 50_000,
            max_caps: 10_000,
            max_pending: 1_000,
        }
    }
}

/// What one available resource wants, as far as we know.
#[derive(Clone, Debug)]
enum Interest {
    /// Its features (from a verified hash or its own answer).
    Known(Arc<HashSet<String>>),
    /// We asked what `ver` stands for and wait for the answer.
    Waiting(String),
}

/// A disco#info query sent for a hash we did not know.
struct Query {
    caps: Caps,
    /// Whom we asked (the answer must come from there).
    full: String,
}

/// The personal services of one node's accounts.
pub struct Pep {
    limits: Limits,
    store: Arc<Store>,
    services: HashMap<String, PubSub>,
    /// By account (bare JID): its own resources and the contacts' resources
    /// whose presence it received, with their interests.
    recipients: HashMap<String, HashMap<String, Interest>>,
    /// Pairs in `recipients`.
    tracked: usize,
    cache: caps::Cache,
    pending: BTreeMap<u64, Query>,
    next_query: u64,
}

/// The service's view of one account: rosters from the node, interest from the core.
struct PepEnv<'a> {
    rosters: &'a dyn Env,
    interest: Option<&'a HashMap<String, Interest>>,
}

impl Env for PepEnv<'_> {
    fn roster(&self, owner: &str, contact: &str) -> Option<(bool, Vec<String>)> {
        self.rosters.roster(owner, contact)
    }

    fn interested(&self, node: &str) -> Vec<String> {
        let want = format!("{node}+notify");
        self.interest
            .into_iter()
            .flatten()
            .filter(|(_, i)| matches!(i, Interest::Known(f) if f.contains(&want)))
            .map(|(full, _)| full.clone())
            .collect()
    }
}

impl Pep {
    pub fn new(limits: Limits, store: Arc<Store>) -> Pep {
        Pep {
            cache: caps::Cache::new(limits.max_caps),
            limits,
            store,
            services: HashMap::new(),
            recipients: HashMap::new(),
            tracked: 0,
            pending: BTreeMap::new(),
            next_query: 0,
        }
    }

    /// Resources whose interests are tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked
    }

    /// Capability hashes known now.
    pub fn known_caps(&self) -> usize {
        self.cache.len()
    }

    /// Queries waiting for their answer now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// `owner`'s service if it has nodes. Presence may name any local
    /// JID, existing or not: a service without nodes is not kept, so that
    /// peers cannot make the map grow.
    fn service_with_nodes(&mut self, owner: &Jid) -> Result<Option<&mut PubSub>, StoreError> {
        let key = owner.to_string();
        if !self.services.contains_key(&key) {
            let s = PubSub::load_pep(owner, self.limits.pubsub.clone(), self.store.clone())?;
            if s.node_count() == 0 {
                return Ok(None);
            }
            self.services.insert(key.clone(), s);
        }
        Ok(self.services.get_mut(&key))
    }

    /// Personal services held in memory now.
    pub fn loaded(&self) -> usize {
        self.services.len()
    }

    /// An iq addressed to an account's bare JID (a request to its service,
    /// or the answer to a capabilities query); returns what to send.
    pub fn iq(&mut self, st: &Element, rosters: &dyn Env) -> Vec<Element> {
        let Ok(Some(to)) = stanza::to(st) else {
            return vec![];
        };
        let owner = to.to_bare();
        match stanza::stype(st) {
            "get" | "set" => self.request(&owner, st, rosters),
            "result" | "error" => self.answer(st, rosters),
            _ => vec![],
        }
    }

    fn request(&mut self, owner: &Jid, st: &Element, rosters: &dyn Env) -> Vec<Element> {
        let account_info = stanza::stype(st) == "get"
            && st
                .get_child("query", NS_DISCO_INFO)
                .is_some_and(|q| q.get_attr("node").is_none());
        if account_info {
            // XEP-0163 §1: the account is also a PEP service.
            let mut q = Element::new("query", NS_DISCO_INFO)
                .child(
                    Element::new("identity", NS_DISCO_INFO)
                        .attr("category", "account")
                        .attr("type", "registered"),
                )
                .child(
                    Element::new("identity", NS_DISCO_INFO)
                        .attr("category", "pubsub")
                        .attr("type", "pep"),
                );
            for f in PubSub::features() {
                q = q.child(Element::new("feature", NS_DISCO_INFO).attr("var", *f));
            }
            return vec![iq_result(st).child(q)];
        }
        let interest = self.recipients.get(&owner.to_string());
        let env = PepEnv { rosters, interest };
        let key = owner.to_string();
        if !self.services.contains_key(&key) {
            match PubSub::load_pep(owner, self.limits.pubsub.clone(), self.store.clone()) {
                Ok(s) => {
                    self.services.insert(key.clone(), s);
                }
                Err(e) => {
                    tracing::error!(%owner, error = %e, "personal service could not be read");
                    return vec![error_reply(st, "internal-server-error", None)];
                }
            }
        }
        let service = self.services.get_mut(&key).expect("loaded above");
        service.handle(st, &env)
    }

    /// The answer to one of our disco#info queries.
    fn answer(&mut self, st: &Element, rosters: &dyn Env) -> Vec<Element> {
        let Some(n) = st
            .get_attr("id")
            .and_then(|id| id.strip_prefix(QUERY_PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return vec![];
        };
        let Some(q) = self.pending.get(&n) else {
            return vec![];
        };
        // Only whom we asked may answer.
        if st.get_attr("from") != Some(q.full.as_str()) {
            tracing::info!(from = ?st.get_attr("from"), asked = %q.full, "capabilities answer from someone not asked: ignored");
            return vec![];
        }
        let q = self.pending.remove(&n).expect("found above");
        let info = st
            .get_child("query", NS_DISCO_INFO)
            .filter(|_| stanza::stype(st) == "result");
        let (features, shared) = match info {
            Some(info) => {
                let f = Arc::new(caps::features(info));
                if q.caps.verifies(info) {
                    self.cache.insert(&q.caps.ver, f.clone());
                    (f, true)
                } else {
                    tracing::info!(from = %q.full, ver = %q.caps.ver, "capabilities do not match their hash: used for that resource only");
                    (f, false)
                }
            }
            None => (Arc::new(HashSet::new()), false),
        };
        // Everyone waiting on this hash (or, unverified, only whom we asked).
        let mut resolved = Vec::new();
        for (owner, rs) in self.recipients.iter_mut() {
            for (full, i) in rs.iter_mut() {
                let waits = matches!(i, Interest::Waiting(v) if *v == q.caps.ver);
                if waits && (shared || *full == q.full) {
                    *i = Interest::Known(features.clone());
                    resolved.push((owner.clone(), full.clone()));
                }
            }
        }
        let mut out = Vec::new();
        for (owner, full) in resolved {
            out.extend(self.last_items(&owner, &full, &features, rosters));
        }
        out
    }

    /// Presence `st` from `from` (a full JID) that the account `owner`
    /// received or, when `from` is one of its own resources, sent.
    pub fn presence(
        &mut self,
        owner: &Jid,
        from: &Jid,
        st: &Element,
        rosters: &dyn Env,
    ) -> Vec<Element> {
        if from.is_bare() {
            return vec![];
        }
        let owner_s = owner.to_bare().to_string();
        let full = from.to_string();
        let caps = match stanza::stype(st) {
            "" => Caps::of(st),
            "unavailable" => None,
            _ => return vec![],
        };
        let Some(caps) = caps else {
            self.forget(&owner_s, &full);
            return vec![];
        };
        let before = self.recipients.get(&owner_s).and_then(|r| r.get(&full));
        let same = match before {
            Some(Interest::Waiting(v)) => *v == caps.ver,
            Some(Interest::Known(_)) => {
                // Known from this very hash: nothing changed.
                self.cache.get(&caps.ver).is_some_and(
                    |f| matches!(before, Some(Interest::Known(k)) if Arc::ptr_eq(k, &f)),
                )
            }
            None => false,
        };
        if same {
            return vec![];
        }
        if before.is_none() && self.tracked >= self.limits.max_recipients {
            if let Some(held_back) = FULL.allow() {
                tracing::warn!(%full, tracked = self.tracked, held_back, "PEP interests at their bound: not tracked");
            }
            return vec![];
        }
        let known = self.cache.get(&caps.ver).filter(|_| caps.hash.is_some());
        let interest = match &known {
            Some(f) => Interest::Known(f.clone()),
            None => Interest::Waiting(caps.ver.clone()),
        };
        if self
            .recipients
            .entry(owner_s.clone())
            .or_default()
            .insert(full.clone(), interest)
            .is_none()
        {
            self.tracked += 1;
        }
        match known {
            Some(f) => self.last_items(&owner_s, &full, &f, rosters),
            None => self.ask(owner, &full, caps).into_iter().collect(),
        }
    }

    /// Asks `full` what its hash stands for, unless that is asked already.
    fn ask(&mut self, owner: &Jid, full: &str, caps: Caps) -> Option<Element> {
        let asked = self
            .pending
            .values()
            .any(|q| q.caps.ver == caps.ver && (caps.hash.is_some() || q.full == full));
        if asked {
            return None;
        }
        while self.pending.len() >= self.limits.max_pending.max(1) {
            if let Some(held_back) = FULL.allow() {
                tracing::warn!(
                    pending = self.pending.len(),
                    held_back,
                    "capabilities queries at their bound: the oldest forgotten"
                );
            }
            self.pending.pop_first();
        }
        self.next_query += 1;
        let iq = Element::new("iq", crate::element::NS_CLIENT)
            .attr("type", "get")
            .attr("from", owner.to_bare().to_string())
            .attr("to", full)
            .attr("id", format!("{QUERY_PREFIX}{}", self.next_query))
            .child(Element::new("query", NS_DISCO_INFO).attr("node", caps.disco_node()));
        self.pending.insert(
            self.next_query,
            Query {
                caps,
                full: full.to_string(),
            },
        );
        Some(iq)
    }

    fn forget(&mut self, owner: &str, full: &str) {
        if let Some(rs) = self.recipients.get_mut(owner) {
            if rs.remove(full).is_some() {
                self.tracked -= 1;
            }
            if rs.is_empty() {
                self.recipients.remove(owner);
            }
        }
    }

    /// The last item of each of `owner`'s nodes that `full` wants and may read.
    fn last_items(
        &mut self,
        owner: &str,
        full: &str,
        features: &HashSet<String>,
        rosters: &dyn Env,
    ) -> Vec<Element> {
        let Ok(owner_jid) = owner.parse::<Jid>() else {
            return vec![];
        };
        let service = match self.service_with_nodes(&owner_jid) {
            Ok(Some(s)) => s,
            Ok(None) => return vec![],
            Err(e) => {
                tracing::error!(%owner, error = %e, "personal service could not be read");
                return vec![];
            }
        };
        let nodes: Vec<String> = service
            .node_names()
            .filter(|n| features.contains(&format!("{n}+notify")))
            .cloned()
            .collect();
        if nodes.is_empty() {
            return vec![];
        }
        let env = PepEnv {
            rosters,
            interest: None,
        };
        service.last_items_for(full, &nodes, &env)
    }

    /// The link with `domain` broke: its resources are unavailable.
    pub fn domain_gone(&mut self, domain: &str) {
        let mut gone = 0;
        self.recipients.retain(|_, rs| {
            rs.retain(|full, _| {
                let keep = full
                    .parse::<Jid>()
                    .map(|j| j.domain() != domain)
                    .unwrap_or(false);
                if !keep {
                    gone += 1;
                }
                keep
            });
            !rs.is_empty()
        });
        self.tracked -= gone;
    }

    /// How many nodes the personal services hold now.
    pub fn node_count(&self) -> usize {
        self.services.values().map(PubSub::node_count).sum()
    }
}
