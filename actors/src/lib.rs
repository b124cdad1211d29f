//! intercloud-actors: the actor system of one cloud — sessions, router, presence — and the stanza values they exchange.
//!
//! Actors here never see sockets: a session receives parsed stanzas from
//! the wire layer and hands stanzas back through a bounded queue of
//! [`session::Outbound`] values.

pub mod adhoc;
pub mod catalog;
pub mod clock;
pub mod copies;
pub mod credentials;
pub mod dataform;
pub mod dedup;
pub mod directory;
pub mod disco;
pub mod element;
pub mod gateway;
pub mod iodata;
pub mod jid;
pub mod link;
pub mod lograte;
pub mod messages;
pub mod metrics;
pub mod muc;
pub mod negotiation;
pub mod offline;
pub mod outbox;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod pubsub;
pub mod roster;
pub mod router;
pub mod server_iq;
pub mod service;
pub mod session;
pub mod sm;
pub mod stanza;
pub mod store;
pub mod version;

use std::sync::Arc;

/// Settings the actors need from the node's configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The domain this node serves.
    pub domain: String,
    /// Offline messages kept per account (XEP-0160); more are bounced.
    pub max_offline_per_user: usize,
    /// Roster items per account.
    pub max_roster_items: usize,
    /// Bytes of one roster item's name and groups (more: `not-acceptable`).
    pub max_roster_item_bytes: usize,
    /// Remote presences (remote resource, local account) tracked to mark
    /// them unavailable when their domain's link dies.
    pub max_remote_presences: usize,
    /// Entities one session may have sent directed presence to at once.
    pub max_directed_presences: usize,
    /// Stanzas queued towards one client before it is disconnected as too slow
    /// (also the most it may leave unacknowledged under XEP-0198).
    pub session_queue: usize,
    /// Bytes queued towards one client, or held for it unacknowledged,
    /// before it is disconnected as too slow (`policy-violation`).
    pub session_queue_bytes: usize,
    /// Sessions of one account at once, detached (resumable) ones included.
    /// A new one first ends the account's longest-detached session; when
    /// all are connected, binding fails with `resource-constraint`.
    pub max_sessions_per_account: usize,
    /// How long a resumable session waits for its client (XEP-0198).
    pub sm_resume_timeout: std::time::Duration,
    /// Ask for an acknowledgement after this many stanzas.
    pub sm_ack_every: u32,
    /// The services this node hosts at subdomains (`pubsub.<domain>`, …),
    /// listed in the server's disco#items.
    pub services: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            domain: "localhost".into(),
            max_offline_per_user: 1000,
            max_roster_items: 1000,
            max_roster_item_bytes: 4096,
            max_remote_presences: 100_000,
            max_directed_presences: 1000,
            session_queue: 10_000,
            session_queue_bytes: 4 << 20,
            max_sessions_per_account: 10,
            sm_resume_timeout: std::time::Duration::from_secs(300),
            sm_ack_every: 5,
            services: Vec::new(),
        }
    }
}

/// What every actor of a cloud shares.
pub struct Cloud {
    pub settings: Settings,
    pub store: Arc<store::Store>,
    pub router: actix::Addr<router::Router>,
    pub presence: actix::Addr<presence::Presence>,
    /// What the node measures (served at `/metrics`).
    pub metrics: Arc<metrics::Metrics>,
    /// Sessions waiting for their client to resume them (XEP-0198); they
    /// count against the connection limit.
    pub detached: Arc<std::sync::atomic::AtomicUsize>,
    /// Sessions that can be resumed (XEP-0198), by stream id.
    resumable: std::sync::Mutex<ResumableMap>,
}

type ResumableMap = std::collections::HashMap<String, actix::Addr<session::Session>>;

impl Cloud {
    /// Starts the router and presence actors on the current arbiter.
    pub fn start(settings: Settings, store: Arc<store::Store>) -> Arc<Cloud> {
        use actix::{Actor, AsyncContext};
        let s2 = settings.clone();
        let st2 = store.clone();
        let mut presence_addr = None;
        let mut detached = None;
        let metrics = Arc::new(metrics::Metrics::new());
        let m2 = metrics.clone();
        let router = router::Router::create(|ctx| {
            let presence = presence::Presence::new(
                s2.clone(),
                st2.clone(),
                presence::PresenceEvents::of(&ctx.address()),
            )
            .start();
            presence_addr = Some(presence.clone());
            let r = router::Router::new(s2, st2, presence, m2);
            detached = Some(r.detached.clone());
            r
        });
        Arc::new(Cloud {
            settings,
            store,
            router,
            presence: presence_addr.expect("presence started"),
            metrics,
            detached: detached.expect("router started"),
            resumable: Default::default(),
        })
    }

    fn resumable(&self) -> std::sync::MutexGuard<'_, ResumableMap> {
        self.resumable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session that a later connection may resume.
    pub fn remember_resumable(&self, id: &str, s: actix::Addr<session::Session>) {
        self.resumable().insert(id.to_string(), s);
    }

    pub fn forget_resumable(&self, id: &str) {
        self.resumable().remove(id);
    }

    /// The session a `<resume previd='…'/>` names.
    pub fn find_resumable(&self, id: &str) -> Option<actix::Addr<session::Session>> {
        self.resumable().get(id).cloned()
    }

    /// The server's own JID.
    pub fn server_jid(&self) -> jid::Jid {
        jid::Jid::domain_jid(&self.settings.domain).expect("configured domain is valid")
    }
}
