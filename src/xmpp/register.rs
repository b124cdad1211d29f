//! XEP-0077 In-Band Registration on client streams: after STARTTLS and before authentication, a client may ask for the form and create an account (off unless `c2s.allow_registration`; rate-limited by `c2s.registrations_per_minute`).

use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::jid::Jid;
use intercloud_actors::stanza::{error_reply, iq_result};
use intercloud_actors::store::{Store, StoreError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const NS_REGISTER: &str = "jabber:iq:register";
pub const NS_REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";

/// Longest password accepted.
const MAX_PASSWORD: usize = 1024;

/// The stream feature advertising registration.
pub fn feature() -> Element {
    Element::new("register", NS_REGISTER_FEATURE)
}

/// Whether `e` is a registration iq.
pub fn is_request(e: &Element) -> bool {
    e.name == "iq" && e.get_child("query", NS_REGISTER).is_some()
}

/// Creates accounts for clients that ask.
pub struct Registration {
    store: Arc<Store>,
    domain: String,
    iterations: u32,
    per_minute: u32,
    window: Mutex<(Instant, u32)>,
}

impl Registration {
    pub fn new(
        store: Arc<Store>,
        domain: String,
        iterations: u32,
        per_minute: u32,
    ) -> Registration {
        Registration {
            store,
            domain,
            iterations,
            per_minute,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// One more account this minute, or false when the limit is reached.
    fn take(&self) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.0.elapsed() >= Duration::from_secs(60) {
            *w = (Instant::now(), 0);
        }
        if w.1 >= self.per_minute {
            return false;
        }
        w.1 += 1;
        true
    }

    /// The answer to a registration iq (XEP-0077 §3.1).
    pub fn answer(&self, iq: &Element) -> Element {
        let q = iq
            .get_child("query", NS_REGISTER)
            .expect("checked by is_request");
        match iq.get_attr("type") {
            Some("get") => iq_result(iq).child(
                Element::new("query", NS_REGISTER)
                    .child(
                        Element::new("instructions", NS_REGISTER)
                            .text("Choose a username and password for use with this service."),
                    )
                    .child(Element::new("username", NS_REGISTER))
                    .child(Element::new("password", NS_REGISTER)),
            ),
            Some("set") => self.register(iq, q),
            _ => error_reply(iq, "bad-request", None),
        }
    }

    fn register(&self, iq: &Element, q: &Element) -> Element {
        if q.get_child("remove", NS_REGISTER).is_some() {
            // Cancelling needs an authenticated account (§3.2).
            return error_reply(iq, "not-authorized", None);
        }
        let (Some(user), Some(password)) = (
            q.child_text("username", NS_REGISTER),
            q.child_text("password", NS_REGISTER),
        ) else {
            return error_reply(
                iq,
                "not-acceptable",
                Some("username and password are required"),
            );
        };
        let user = user.trim().to_lowercase();
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return error_reply(iq, "not-acceptable", Some("bad password"));
        }
        let Ok(jid) = Jid::new(Some(&user), &self.domain, None) else {
            return error_reply(iq, "jid-malformed", Some("bad username"));
        };
        if !self.take() {
            tracing::warn!("in-band registration: rate limit reached");
            return error_reply(
                iq,
                "resource-constraint",
                Some("too many registrations; try later"),
            );
        }
        match self
            .store
            .add_user(&jid.to_string(), &password, self.iterations)
        {
            Ok(()) => {
                tracing::info!(jid = %jid, "account registered in-band");
                let mut r = iq_result(iq);
                r.remove_attr("to");
                r
            }
            Err(StoreError::AlreadyExists(_)) => error_reply(iq, "conflict", None),
            Err(e) => {
                tracing::error!(error = %e, "in-band registration failed");
                error_reply(iq, "internal-server-error", None)
            }
        }
    }
}

/// An iq in the client namespace (for tests).
pub fn request(ty: &str, id: &str, user: Option<(&str, &str)>) -> Element {
    let mut q = Element::new("query", NS_REGISTER);
    if let Some((u, p)) = user {
        q = q
            .child(Element::new("username", NS_REGISTER).text(u))
            .child(Element::new("password", NS_REGISTER).text(p));
    }
    Element::new("iq", NS_CLIENT)
        .attr("type", ty)
        .attr("id", id)
        .child(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_accounts_refuses_conflicts_and_floods() {
        let store = Arc::new(Store::in_memory().unwrap());
        let r = Registration::new(store.clone(), "x.test".into(), 64, 2);
        let form = r.answer(&request("get", "1", None));
        assert!(form.to_xml().contains("<username"), "{}", form.to_xml());
        let ok = r.answer(&request("set", "2", Some(("Alice", "pw"))));
        assert_eq!(ok.get_attr("type"), Some("result"));
        assert!(store.user_exists("alice@x.test").unwrap());
        let again = r.answer(&request("set", "3", Some(("alice", "pw"))));
        assert!(again.to_xml().contains("<conflict"), "{}", again.to_xml());
        let bad = r.answer(&request("set", "4", Some(("a b@c", "pw"))));
        assert_eq!(bad.get_attr("type"), Some("error"));
        let none = r.answer(&request("set", "5", None));
        assert!(none.to_xml().contains("not-acceptable"));
        // The conflict consumed a slot of this minute's two; the next is refused.
        let flood = r.answer(&request("set", "6", Some(("bob", "pw"))));
        assert!(
            flood.to_xml().contains("resource-constraint"),
            "{}",
            flood.to_xml()
        );
        assert!(!store.user_exists("bob@x.test").unwrap());
    }
}
