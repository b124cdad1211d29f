//! XEP-0060 owner use cases: configuring, deleting and purging a node, and its affiliations (a node keeps an owner; an outcast loses its subscriptions).

use super::*;

impl PubSub {
    pub(super) fn own_affiliations(&self, iq: &Element, bare: &str, req: &Element) -> Answer {
        let only = req.get_attr("node");
        let mut affs = Element::new("affiliations", NS_PUBSUB);
        for (name, n) in self
            .nodes
            .iter()
            .filter(|(k, _)| only.is_none_or(|o| o == *k))
        {
            let a = n.affiliation(bare);
            if a != Affiliation::None {
                affs = affs.child(
                    Element::new("affiliation", NS_PUBSUB)
                        .attr("node", name.clone())
                        .attr("affiliation", a.as_str()),
                );
            }
        }
        Ok(vec![
            iq_result(iq).child(Element::new("pubsub", NS_PUBSUB).child(affs))
        ])
    }
}

impl PubSub {
    pub(super) fn configure(
        &mut self,
        iq: &Element,
        name: &str,
        c: &Element,
        env: &dyn Env,
    ) -> Answer {
        let Some(form) = Form::find(c) else {
            return Err(refuse("bad-request", None));
        };
        if form.kind == "cancel" {
            return Ok(vec![iq_result(iq)]);
        }
        let mut config = self.nodes[name].config.clone();
        config
            .apply(&form, self.limits.max_items_per_node)
            .map_err(|e| Refusal("not-acceptable", None, Some(e.to_string())))?;
        self.store
            .pubsub_put_node(&self.jid, name, &config.form("submit").to_element())?;
        let n = self.nodes.get_mut(name).expect("checked by the caller");
        n.config = config;
        // Fewer items allowed now: the oldest go.
        let dropped = n.trim();
        if !dropped.is_empty() {
            self.store
                .pubsub_delete_items(&self.jid, name, Some(&dropped))?;
        }
        let n = &self.nodes[name];
        let mut out = vec![iq_result(iq)];
        if n.config.notify_config {
            out.extend(
                self.notify(
                    n,
                    Element::new("event", NS_EVENT)
                        .child(Element::new("configuration", NS_EVENT).attr("node", name)),
                    env,
                ),
            );
        }
        Ok(out)
    }
}

impl PubSub {
    pub(super) fn delete(&mut self, iq: &Element, name: &str, env: &dyn Env) -> Answer {
        self.store.pubsub_delete_node(&self.jid, name)?;
        let n = self.nodes.remove(name).expect("checked by the caller");
        let mut out = vec![iq_result(iq)];
        if n.config.notify_delete {
            out.extend(
                self.notify(
                    &n,
                    Element::new("event", NS_EVENT)
                        .child(Element::new("delete", NS_EVENT).attr("node", name)),
                    env,
                ),
            );
        }
        tracing::debug!(service = %self.jid, node = %name, "node deleted");
        Ok(out)
    }
}

impl PubSub {
    pub(super) fn purge(&mut self, iq: &Element, name: &str, env: &dyn Env) -> Answer {
        self.store.pubsub_delete_items(&self.jid, name, None)?;
        let n = self.nodes.get_mut(name).expect("checked by the caller");
        n.items.clear();
        let n = &self.nodes[name];
        let mut out = vec![iq_result(iq)];
        out.extend(
            self.notify(
                n,
                Element::new("event", NS_EVENT)
                    .child(Element::new("purge", NS_EVENT).attr("node", name)),
                env,
            ),
        );
        Ok(out)
    }
}

impl PubSub {
    pub(super) fn owner_affiliations(&self, iq: &Element, name: &str) -> Element {
        let mut affs = Element::new("affiliations", NS_OWNER).attr("node", name);
        for (j, a) in &self.nodes[name].affiliations {
            affs = affs.child(
                Element::new("affiliation", NS_OWNER)
                    .attr("jid", j.clone())
                    .attr("affiliation", a.as_str()),
            );
        }
        iq_result(iq).child(Element::new("pubsub", NS_OWNER).child(affs))
    }
}

impl PubSub {
    /// XEP-0060 §8.9.2: the owner changes affiliations; a node keeps an owner.
    pub(super) fn set_affiliations(&mut self, iq: &Element, name: &str, req: &Element) -> Answer {
        let mut next = self.nodes[name].affiliations.clone();
        let mut changes = Vec::new();
        for a in req.elements().filter(|e| e.name == "affiliation") {
            let (Some(jid), Some(aff)) = (a.get_attr("jid"), a.get_attr("affiliation")) else {
                return Err(refuse("bad-request", None));
            };
            let Ok(j) = jid.parse::<Jid>() else {
                return Err(refuse("bad-request", None));
            };
            let aff = Affiliation::parse(aff).ok_or(refuse("bad-request", None))?;
            let bare = j.to_bare().to_string();
            if aff == Affiliation::None {
                next.remove(&bare);
            } else {
                next.insert(bare.clone(), aff);
            }
            changes.push((bare, aff));
        }
        if !next.values().any(|a| *a == Affiliation::Owner) {
            return Err(Refusal(
                "not-acceptable",
                None,
                Some("a node keeps at least one owner".into()),
            ));
        }
        for (bare, aff) in &changes {
            self.store
                .pubsub_set_affiliation(&self.jid, name, bare, aff.as_str())?;
            if *aff == Affiliation::Outcast {
                // An outcast holds no subscription.
                let gone: Vec<String> = self.nodes[name]
                    .subscriptions
                    .iter()
                    .filter(|s| bare_of(&s.jid) == bare)
                    .map(|s| s.subid.clone())
                    .collect();
                for id in &gone {
                    self.store.pubsub_delete_subscription(&self.jid, name, id)?;
                }
                let n = self.nodes.get_mut(name).expect("checked by the caller");
                n.subscriptions.retain(|s| !gone.contains(&s.subid));
            }
        }
        self.nodes
            .get_mut(name)
            .expect("checked by the caller")
            .affiliations = next;
        Ok(vec![iq_result(iq)])
    }
}
