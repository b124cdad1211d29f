//! Messages any actor of a cloud may send or receive, so that none has to know another's module for them: a stanza to route, a stanza for a session, a stanza for the catalog service, and the answer to an iq someone sent.

use crate::element::Element;
use actix::prelude::*;

/// A stanza with `from` and `to` already stamped, to deliver by the rules.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route(pub Element);

/// A stanza for one session to send its client.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Element);

/// A stanza for the catalog service at `service.<domain>`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToService(pub Element);

/// A remote domain's links broke (its stream ended uncleanly, or it cannot
/// be reached): what its users held here — room occupancy — goes.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct DomainGone(pub String);

/// Presence that a local account sent (from one of its resources) or
/// received (from a contact's resource): who is available with which
/// capabilities, for the personal eventing service (XEP-0163).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct PresenceSeen {
    /// The local account (bare JID).
    pub owner: crate::jid::Jid,
    /// The resource the presence is from (full JID).
    pub from: crate::jid::Jid,
    pub stanza: Element,
}

/// A remote domain's link is up again after it gave up: what waited for
/// it (held pubsub notifications) may go.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct DomainBack(pub String);

/// A result or error for an iq the receiver sent (see `router::HandleIqResults`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct IqResponse(pub Element);

/// Sends a message through a bundle of recipients (an actor's view of
/// another that it must not name): one `do_send` per message type.
pub trait Report<M> {
    fn do_send(&self, m: M);
}

/// Declares a bundle of recipients — one field per message type — that
/// stands for another actor without naming it: `of(&addr)` builds it from
/// any actor taking all of them, and `Report::do_send` sends each.
#[macro_export]
macro_rules! recipients {
    ($(#[$doc:meta])* pub struct $name:ident { $($field:ident: $msg:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            $($field: actix::Recipient<$msg>,)+
        }

        impl $name {
            /// An actor that takes every one of them.
            pub fn of<A>(a: &actix::Addr<A>) -> $name
            where
                A: $(actix::Handler<$msg> +)+ actix::Actor,
                A::Context: $(actix::dev::ToEnvelope<A, $msg> +)+ Sized,
            {
                $name {
                    $($field: a.clone().recipient(),)+
                }
            }
        }

        $(
            impl $crate::messages::Report<$msg> for $name {
                fn do_send(&self, m: $msg) {
                    self.$field.do_send(m)
                }
            }
        )+
    };
}
