//! XEP-0060 items: publish (with publish-options preconditions and auto-create), retract (with notify), and retrieval (all, the latest N, by id).

use super::*;

impl PubSub {
    pub(super) fn publish(
        &mut self,
        iq: &Element,
        from: &Jid,
        publish: &Element,
        p: &Element,
        env: &dyn Env,
    ) -> Answer {
        let bare = from.to_bare().to_string();
        let name = node_attr(publish)?;
        let preconditions = p
            .get_child("publish-options", NS_PUBSUB)
            .and_then(Form::find)
            .filter(|f| f.form_type() == Some(PUBLISH_OPTIONS));
        let items: Vec<&Element> = publish.elements().filter(|e| e.name == "item").collect();
        let item = match items.as_slice() {
            [one] => *one,
            [] => return Err(refuse("bad-request", Some("item-required"))),
            _ => return Err(refuse("bad-request", Some("invalid-payload"))),
        };
        let payloads: Vec<&Element> = item.elements().collect();
        let payload = match payloads.as_slice() {
            [] => None,
            [one] => Some((*one).clone()),
            _ => return Err(refuse("bad-request", Some("invalid-payload"))),
        };
        if payload
            .as_ref()
            .is_some_and(|p| p.weight() > self.limits.max_payload_bytes)
        {
            return Err(refuse("not-acceptable", Some("payload-too-big")));
        }
        if !self.nodes.contains_key(&name) {
            // Auto-create (XEP-0060 §7.1.4), for accounts of this server
            // (in a personal service, for the account itself).
            if self.may_create(from).is_err() {
                return Err(refuse(
                    if self.pep {
                        "forbidden"
                    } else {
                        "item-not-found"
                    },
                    None,
                ));
            }
            let config = self.config_from(preconditions.clone().map(|mut f| {
                f.kind = "submit".into();
                f
            }))?;
            self.make_node(&name, &bare, config)?;
        }
        let n = &self.nodes[&name];
        if !n.may_publish(&bare) {
            return Err(refuse("forbidden", None));
        }
        if let Some(pre) = &preconditions {
            if !n.config.meets(pre) {
                return Err(refuse("conflict", Some("precondition-not-met")));
            }
        }
        let id = item
            .get_attr("id")
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        self.seq += 1;
        let new = Item {
            id: id.clone(),
            publisher: bare,
            payload,
            seq: self.seq,
        };
        let mut after = n.clone();
        let dropped = after.push(new.clone());
        if after.items.iter().any(|i| i.id == id) {
            self.store.pubsub_put_item(
                &self.jid,
                &name,
                &id,
                &new.publisher,
                new.payload.as_ref(),
                new.seq,
                &dropped,
            )?;
        }
        self.nodes.insert(name.clone(), after);
        let n = &self.nodes[&name];
        let mut out = vec![iq_result(iq).child(
            Element::new("pubsub", NS_PUBSUB).child(
                Element::new("publish", NS_PUBSUB)
                    .attr("node", name.clone())
                    .child(Element::new("item", NS_PUBSUB).attr("id", id)),
            ),
        )];
        out.extend(self.notify(n, items_event(n, &[&new]), env));
        Ok(out)
    }
}

impl PubSub {
    pub(super) fn retract(
        &mut self,
        iq: &Element,
        bare: &str,
        r: &Element,
        env: &dyn Env,
    ) -> Answer {
        let name = node_attr(r)?;
        let ids: Vec<String> = r
            .elements()
            .filter(|e| e.name == "item")
            .filter_map(|e| e.get_attr("id").map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Err(refuse("bad-request", Some("item-required")));
        }
        let n = self
            .nodes
            .get(&name)
            .ok_or(refuse("item-not-found", None))?;
        for id in &ids {
            let item = n
                .items
                .iter()
                .find(|i| &i.id == id)
                .ok_or(refuse("item-not-found", None))?;
            let may = matches!(
                n.affiliation(bare),
                Affiliation::Owner | Affiliation::Publisher
            ) || item.publisher == bare;
            if !may {
                return Err(refuse("forbidden", None));
            }
        }
        self.store
            .pubsub_delete_items(&self.jid, &name, Some(&ids))?;
        let n = self.nodes.get_mut(&name).expect("checked above");
        n.items.retain(|i| !ids.contains(&i.id));
        let n = &self.nodes[&name];
        let mut out = vec![iq_result(iq)];
        let notify = matches!(r.get_attr("notify"), Some("1") | Some("true"));
        if notify && n.config.notify_retract {
            let mut items = Element::new("items", NS_EVENT).attr("node", name.clone());
            for id in ids {
                items = items.child(Element::new("retract", NS_EVENT).attr("id", id));
            }
            out.extend(self.notify(n, Element::new("event", NS_EVENT).child(items), env));
        }
        Ok(out)
    }
}

impl PubSub {
    pub(super) fn items(&self, iq: &Element, bare: &str, req: &Element, env: &dyn Env) -> Answer {
        let name = node_attr(req)?;
        let n = self
            .nodes
            .get(&name)
            .ok_or(refuse("item-not-found", None))?;
        self.may_retrieve(n, bare, env)?;
        let wanted: Vec<&str> = req
            .elements()
            .filter(|e| e.name == "item")
            .filter_map(|e| e.get_attr("id"))
            .collect();
        let chosen: Vec<&Item> = if !wanted.is_empty() {
            n.items
                .iter()
                .filter(|i| wanted.contains(&i.id.as_str()))
                .collect()
        } else if let Some(max) = req.get_attr("max_items") {
            let max: usize = max.parse().map_err(|_| refuse("bad-request", None))?;
            let skip = n.items.len().saturating_sub(max);
            n.items.iter().skip(skip).collect()
        } else {
            n.items.iter().collect()
        };
        let mut items = Element::new("items", NS_PUBSUB).attr("node", name);
        for i in chosen {
            items = items.child(item_element(NS_PUBSUB, i, true));
        }
        Ok(vec![
            iq_result(iq).child(Element::new("pubsub", NS_PUBSUB).child(items))
        ])
    }
}
