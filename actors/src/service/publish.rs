//! The publish_resources command of the service: a cloud's own description, checked (its domain, its size, valid Turtle) and stored in the catalog.

use super::*;

impl Service {
    pub(super) fn publish(
        &mut self,
        iq: &Element,
        node: &str,
        sid: &str,
        input: &Element,
    ) -> Element {
        let Some(domain) = stanza::from(iq)
            .ok()
            .flatten()
            .map(|j| j.domain().to_string())
        else {
            return error_reply(iq, "bad-request", Some("no sender"));
        };
        let turtle = input
            .elements()
            .find(|e| e.name == "description")
            .map(|e| e.text_content())
            .unwrap_or_else(|| input.text_content());
        match self.catalog.publish(&domain, &turtle) {
            Ok(n) => {
                if let Err(e) = self.store.put_description(&domain, &turtle) {
                    tracing::error!(%domain, error = %e, "description not persisted");
                }
                tracing::info!(%domain, triples = n, "resource description published");
                adhoc::response(
                    iq,
                    node,
                    sid,
                    "completed",
                    vec![
                        iodata::output(vec![Element::new("published", NS_RES)
                            .attr("cloud", domain.clone())
                            .attr("triples", n.to_string())]),
                        adhoc::note("info", &format!("{n} triples published for {domain}")),
                    ],
                )
            }
            Err(e @ CatalogError::ForeignSubject { .. }) => {
                error_reply(iq, "forbidden", Some(&e.to_string()))
            }
            Err(e) => bad_payload(iq, &e.to_string()),
        }
    }
}
