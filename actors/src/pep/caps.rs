//! XEP-0115 entity capabilities: the `<c/>` a presence carries, the verification string and hash of a disco#info result, and the bounded cache of what each hash stands for.

use crate::dataform::Form;
use crate::element::Element;
use crate::stanza::NS_DISCO_INFO;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";

/// What a presence says of its sender's capabilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps {
    /// The software's URI (`node`).
    pub node: String,
    /// The verification hash (or, in legacy caps without `hash`, a version name).
    pub ver: String,
    /// The hash function; None for legacy (pre-1.5) caps, which cannot be checked.
    pub hash: Option<String>,
}

impl Caps {
    /// The `<c/>` of a presence, if it has a usable one.
    pub fn of(presence: &Element) -> Option<Caps> {
        let c = presence.get_child("c", NS_CAPS)?;
        let node = c.get_attr("node")?.to_string();
        let ver = c.get_attr("ver").filter(|v| !v.is_empty())?.to_string();
        Some(Caps {
            node,
            ver,
            hash: c.get_attr("hash").map(str::to_string),
        })
    }

    /// The disco#info node to ask about (XEP-0115 §6.2).
    pub fn disco_node(&self) -> String {
        format!("{}#{}", self.node, self.ver)
    }

    /// Whether the answer `info` (a disco#info `<query/>`) is what `ver`
    /// promised; only then may it stand for every entity sending this `ver`.
    pub fn verifies(&self, info: &Element) -> bool {
        self.hash.as_deref() == Some("sha-1") && ver_of(info).as_deref() == Some(self.ver.as_str())
    }
}

/// The features of a disco#info `<query/>`.
pub fn features(info: &Element) -> HashSet<String> {
    info.elements()
        .filter(|e| e.is("feature", NS_DISCO_INFO))
        .filter_map(|e| e.get_attr("var").map(str::to_string))
        .collect()
}

/// XEP-0115 §5.1: the SHA-1 `ver` of a disco#info `<query/>`, base64; None
/// when the query is one the XEP says must not be trusted (§5.4: duplicate
/// identities, features or form types).
pub fn ver_of(info: &Element) -> Option<String> {
    let mut identities: Vec<[String; 4]> = info
        .elements()
        .filter(|e| e.is("identity", NS_DISCO_INFO))
        .map(|e| {
            let a = |n: &str| e.get_attr(n).unwrap_or("").to_string();
            let lang = e
                .attrs
                .iter()
                .find(|a| a.ns.as_deref() == Some(crate::element::NS_XML) && a.name == "lang")
                .map(|a| a.value.clone())
                .unwrap_or_default();
            [a("category"), a("type"), lang, a("name")]
        })
        .collect();
    identities.sort();
    if identities.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let mut feats: Vec<String> = info
        .elements()
        .filter(|e| e.is("feature", NS_DISCO_INFO))
        .filter_map(|e| e.get_attr("var").map(str::to_string))
        .collect();
    feats.sort();
    if feats.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let mut forms = Vec::new();
    for x in info
        .elements()
        .filter(|e| e.is("x", crate::dataform::NS_DATA))
    {
        // §5.4 3.6: a form without a hidden FORM_TYPE is left out.
        let f = Form::parse(x);
        let Some(ty) = f
            .fields
            .iter()
            .find(|f| f.var == "FORM_TYPE" && f.kind == "hidden")
        else {
            continue;
        };
        forms.push((ty.values.first().cloned().unwrap_or_default(), f));
    }
    forms.sort_by(|a, b| a.0.cmp(&b.0));
    if forms.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let mut s = String::new();
    for [category, kind, lang, name] in &identities {
        s.push_str(&format!("{category}/{kind}/{lang}/{name}<"));
    }
    for f in &feats {
        s.push_str(f);
        s.push('<');
    }
    for (ty, form) in &forms {
        s.push_str(ty);
        s.push('<');
        let mut fields: Vec<_> = form
            .fields
            .iter()
            .filter(|f| f.var != "FORM_TYPE")
            .collect();
        fields.sort_by(|a, b| a.var.cmp(&b.var));
        for f in fields {
            s.push_str(&f.var);
            s.push('<');
            let mut values = f.values.clone();
            values.sort();
            for v in values {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    Some(base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes())))
}

/// Verified `ver` -> features, the oldest forgotten past the bound (XEP-0115
/// §6.3: any entity can make us learn a new hash, so the cache cannot grow
/// without end).
pub struct Cache {
    known: HashMap<String, Arc<HashSet<String>>>,
    order: VecDeque<String>,
    max: usize,
}

impl Cache {
    pub fn new(max: usize) -> Cache {
        Cache {
            known: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    pub fn get(&self, ver: &str) -> Option<Arc<HashSet<String>>> {
        self.known.get(ver).cloned()
    }

    pub fn insert(&mut self, ver: &str, features: Arc<HashSet<String>>) {
        if self.known.insert(ver.to_string(), features).is_some() {
            return;
        }
        self.order.push_back(ver.to_string());
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}
