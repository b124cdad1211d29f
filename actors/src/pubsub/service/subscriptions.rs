//! XEP-0060 subscriptions: subscribe (with the authorize model's approval by an owner), unsubscribe, subscription options, and the lists of subscriptions for subscribers and owners.

use super::*;

impl PubSub {
    pub(super) fn subscribe(
        &mut self,
        iq: &Element,
        from: &Jid,
        sub: &Element,
        p: &Element,
        env: &dyn Env,
    ) -> Answer {
        let bare = from.to_bare().to_string();
        let name = node_attr(sub)?;
        let jid = sub.get_attr("jid").unwrap_or("").to_string();
        let Ok(jid_parsed) = jid.parse::<Jid>() else {
            return Err(refuse("bad-request", Some("invalid-jid")));
        };
        if jid_parsed.to_bare().to_string() != bare {
            return Err(refuse("bad-request", Some("invalid-jid")));
        }
        let n = self
            .nodes
            .get(&name)
            .ok_or(refuse("item-not-found", None))?;
        let authorize =
            n.config.access == Access::Authorize && n.affiliation(&bare) < Affiliation::Member;
        if !authorize {
            self.may_retrieve(n, &bare, env)?;
        } else if n.affiliation(&bare) == Affiliation::Outcast {
            return Err(refuse("forbidden", None));
        }
        let deliver = p
            .get_child("options", NS_PUBSUB)
            .and_then(Form::find)
            .and_then(|f| f.value("pubsub#deliver").and_then(crate::dataform::boolean))
            .unwrap_or(true);
        // The same JID subscribing again gets its subscription back.
        if let Some(s) = n.subscriptions.iter().find(|s| s.jid == jid) {
            return Ok(vec![subscription_reply(iq, &name, s)]);
        }
        if n.subscriptions.len() >= self.limits.max_subscriptions_per_node {
            return Err(Refusal(
                "resource-constraint",
                None,
                Some("the node has as many subscriptions as it may".into()),
            ));
        }
        let s = Subscription {
            jid: jid.clone(),
            subid: format!("{:016x}", rand::random::<u64>()),
            state: if authorize {
                SubState::Pending
            } else {
                SubState::Subscribed
            },
            deliver,
        };
        self.put_subscription(&name, &s, s.state.as_str(), s.deliver)?;
        let mut out = vec![subscription_reply(iq, &name, &s)];
        let n = self.nodes.get_mut(&name).expect("checked above");
        n.subscriptions.push(s.clone());
        let n = &self.nodes[&name];
        match s.state {
            SubState::Pending => {
                // XEP-0060 §8.6: the owners are asked.
                for owner in n.owners() {
                    out.push(self.authorization_request(owner, &name, &jid));
                }
            }
            SubState::Subscribed => {
                if n.config.send_last_published_item != "never" {
                    if let Some(last) = n.last() {
                        out.push(self.notification(n, &jid, items_event(n, &[last])));
                    }
                }
            }
        }
        Ok(out)
    }
}

impl PubSub {
    pub(super) fn authorization_request(
        &self,
        owner: &str,
        node: &str,
        subscriber: &str,
    ) -> Element {
        let form = Form::new("form")
            .with_type(SUBSCRIBE_AUTHORIZATION)
            .field(Field::new("pubsub#node", "text-single").value(node))
            .field(Field::new("pubsub#subscriber_jid", "jid-single").value(subscriber))
            .field(
                Field::new("pubsub#allow", "boolean")
                    .label("Allow this JID to subscribe to this pubsub node?")
                    .value("false"),
            );
        Element::new("message", NS_CLIENT)
            .attr("from", self.jid.clone())
            .attr("to", owner)
            .attr("id", format!("auth-{:x}", rand::random::<u64>()))
            .child(form.to_element())
    }
}

impl PubSub {
    /// An owner's answer to a subscription authorization request (XEP-0060 §8.6).
    pub(super) fn authorization(&mut self, m: &Element, from: &Jid) -> Vec<Element> {
        let Some(form) = Form::find(m) else {
            return vec![];
        };
        if form.kind != "submit" || form.form_type() != Some(SUBSCRIBE_AUTHORIZATION) {
            return vec![];
        }
        let (Some(name), Some(subscriber)) = (
            form.value("pubsub#node"),
            form.value("pubsub#subscriber_jid"),
        ) else {
            return vec![];
        };
        let allow = form
            .value("pubsub#allow")
            .and_then(crate::dataform::boolean)
            .unwrap_or(false);
        let (name, subscriber) = (name.to_string(), subscriber.to_string());
        let Some(n) = self.nodes.get(&name) else {
            return vec![];
        };
        if !n.is_owner(&from.to_bare().to_string()) {
            tracing::info!(from = %from, node = %name, "authorization answer from someone not an owner ignored");
            return vec![];
        }
        let Some(s) = n
            .subscriptions
            .iter()
            .find(|s| s.jid == subscriber && s.state == SubState::Pending)
            .cloned()
        else {
            return vec![];
        };
        let stored = if allow {
            self.put_subscription(&name, &s, "subscribed", s.deliver)
        } else {
            self.store
                .pubsub_delete_subscription(&self.jid, &name, &s.subid)
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, "pubsub state could not be written");
            return vec![];
        }
        let n = self.nodes.get_mut(&name).expect("checked above");
        if allow {
            if let Some(x) = n.subscriptions.iter_mut().find(|x| x.subid == s.subid) {
                x.state = SubState::Subscribed;
            }
        } else {
            n.subscriptions.retain(|x| x.subid != s.subid);
        }
        let n = &self.nodes[&name];
        let event = Element::new("event", NS_EVENT).child(
            Element::new("subscription", NS_EVENT)
                .attr("node", name.clone())
                .attr("jid", subscriber.clone())
                .attr("subscription", if allow { "subscribed" } else { "none" }),
        );
        vec![self.notification(n, &subscriber, event)]
    }
}

impl PubSub {
    pub(super) fn unsubscribe(&mut self, iq: &Element, bare: &str, u: &Element) -> Answer {
        let name = node_attr(u)?;
        let jid = u.get_attr("jid").unwrap_or("");
        let n = self
            .nodes
            .get(&name)
            .ok_or(refuse("item-not-found", None))?;
        if bare_of(jid) != bare && !n.is_owner(bare) {
            return Err(refuse("forbidden", None));
        }
        let mine: Vec<&Subscription> = n.subscriptions.iter().filter(|s| s.jid == jid).collect();
        let s = match (mine.as_slice(), u.get_attr("subid")) {
            ([], _) => return Err(refuse("unexpected-request", Some("not-subscribed"))),
            (_, Some(id)) => *mine
                .iter()
                .find(|s| s.subid == id)
                .ok_or(refuse("not-acceptable", Some("invalid-subid")))?,
            ([one], None) => *one,
            (_, None) => return Err(refuse("bad-request", Some("subid-required"))),
        };
        let subid = s.subid.clone();
        self.store
            .pubsub_delete_subscription(&self.jid, &name, &subid)?;
        if let Some(n) = self.nodes.get_mut(&name) {
            n.subscriptions.retain(|s| s.subid != subid);
        }
        Ok(vec![iq_result(iq)])
    }
}

impl PubSub {
    pub(super) fn options(&mut self, iq: &Element, bare: &str, o: &Element, get: bool) -> Answer {
        let name = node_attr(o)?;
        let jid = o.get_attr("jid").unwrap_or("");
        let n = self
            .nodes
            .get(&name)
            .ok_or(refuse("item-not-found", None))?;
        if bare_of(jid) != bare && !n.is_owner(bare) {
            return Err(refuse("forbidden", None));
        }
        let s = n
            .subscriptions
            .iter()
            .find(|s| s.jid == jid && o.get_attr("subid").is_none_or(|id| id == s.subid))
            .cloned()
            .ok_or(refuse("unexpected-request", Some("not-subscribed")))?;
        if get {
            let form = Form::new("form").with_type(SUBSCRIBE_OPTIONS).field(
                Field::new("pubsub#deliver", "boolean")
                    .label("Enable delivery?")
                    .value(if s.deliver { "1" } else { "0" }),
            );
            return Ok(vec![iq_result(iq).child(
                Element::new("pubsub", NS_PUBSUB).child(
                    Element::new("options", NS_PUBSUB)
                        .attr("node", name)
                        .attr("jid", jid)
                        .attr("subid", s.subid)
                        .child(form.to_element()),
                ),
            )]);
        }
        let Some(form) = Form::find(o) else {
            return Err(refuse("bad-request", None));
        };
        let deliver = match form.value("pubsub#deliver") {
            None => s.deliver,
            Some(v) => {
                crate::dataform::boolean(v).ok_or(refuse("bad-request", Some("invalid-options")))?
            }
        };
        self.put_subscription(&name, &s, s.state.as_str(), deliver)?;
        if let Some(x) = self
            .nodes
            .get_mut(&name)
            .and_then(|n| n.subscriptions.iter_mut().find(|x| x.subid == s.subid))
        {
            x.deliver = deliver;
        }
        Ok(vec![iq_result(iq)])
    }
}

impl PubSub {
    pub(super) fn own_subscriptions(&self, iq: &Element, bare: &str, req: &Element) -> Answer {
        let only = req.get_attr("node");
        let mut subs = Element::new("subscriptions", NS_PUBSUB);
        if let Some(n) = only {
            subs = subs.attr("node", n);
        }
        for (name, n) in self
            .nodes
            .iter()
            .filter(|(k, _)| only.is_none_or(|o| o == *k))
        {
            for s in n.subscriptions.iter().filter(|s| bare_of(&s.jid) == bare) {
                subs = subs.child(
                    Element::new("subscription", NS_PUBSUB)
                        .attr("node", name.clone())
                        .attr("jid", s.jid.clone())
                        .attr("subid", s.subid.clone())
                        .attr("subscription", s.state.as_str()),
                );
            }
        }
        Ok(vec![
            iq_result(iq).child(Element::new("pubsub", NS_PUBSUB).child(subs))
        ])
    }
}

impl PubSub {
    pub(super) fn owner_subscriptions(&self, iq: &Element, name: &str) -> Element {
        let mut subs = Element::new("subscriptions", NS_OWNER).attr("node", name);
        for s in &self.nodes[name].subscriptions {
            subs = subs.child(
                Element::new("subscription", NS_OWNER)
                    .attr("jid", s.jid.clone())
                    .attr("subid", s.subid.clone())
                    .attr("subscription", s.state.as_str()),
            );
        }
        iq_result(iq).child(Element::new("pubsub", NS_OWNER).child(subs))
    }
}

impl PubSub {
    /// XEP-0060 §8.8.2: the owner approves, adds or removes subscriptions.
    pub(super) fn set_subscriptions(&mut self, iq: &Element, name: &str, req: &Element) -> Answer {
        let mut changes = Vec::new();
        for s in req.elements().filter(|e| e.name == "subscription") {
            let (Some(jid), Some(state)) = (s.get_attr("jid"), s.get_attr("subscription")) else {
                return Err(refuse("bad-request", None));
            };
            if jid.parse::<Jid>().is_err() || !matches!(state, "none" | "subscribed" | "pending") {
                return Err(refuse("bad-request", None));
            }
            changes.push((
                jid.to_string(),
                state.to_string(),
                s.get_attr("subid").map(str::to_string),
            ));
        }
        let mut out = vec![iq_result(iq)];
        for (jid, state, subid) in changes {
            let n = &self.nodes[name];
            let existing: Vec<Subscription> = n
                .subscriptions
                .iter()
                .filter(|s| s.jid == jid && subid.as_ref().is_none_or(|id| *id == s.subid))
                .cloned()
                .collect();
            if state == "none" {
                for s in &existing {
                    self.store
                        .pubsub_delete_subscription(&self.jid, name, &s.subid)?;
                }
                let n = self.nodes.get_mut(name).expect("checked by the caller");
                n.subscriptions.retain(|s| !existing.contains(s));
            } else {
                let st = SubState::parse(&state).expect("checked above");
                let s = match existing.first() {
                    Some(s) => Subscription {
                        state: st,
                        ..s.clone()
                    },
                    None => {
                        if n.subscriptions.len() >= self.limits.max_subscriptions_per_node {
                            return Err(refuse("resource-constraint", None));
                        }
                        Subscription {
                            jid: jid.clone(),
                            subid: format!("{:016x}", rand::random::<u64>()),
                            state: st,
                            deliver: true,
                        }
                    }
                };
                self.put_subscription(name, &s, s.state.as_str(), s.deliver)?;
                let n = self.nodes.get_mut(name).expect("checked by the caller");
                match n.subscriptions.iter_mut().find(|x| x.subid == s.subid) {
                    Some(x) => *x = s,
                    None => n.subscriptions.push(s),
                }
            }
            // The subscriber hears of it (XEP-0060 §8.8.4).
            let n = &self.nodes[name];
            out.push(
                self.notification(
                    n,
                    &jid,
                    Element::new("event", NS_EVENT).child(
                        Element::new("subscription", NS_EVENT)
                            .attr("node", name)
                            .attr("jid", jid.clone())
                            .attr("subscription", state),
                    ),
                ),
            );
        }
        Ok(out)
    }
}

impl PubSub {
    /// Writes subscription `s` of node `name` with `state` and `deliver`.
    fn put_subscription(
        &self,
        name: &str,
        s: &Subscription,
        state: &str,
        deliver: bool,
    ) -> Result<(), StoreError> {
        self.store
            .pubsub_put_subscription(&self.jid, name, &s.subid, &s.jid, state, deliver)
    }
}
