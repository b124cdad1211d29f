//! The commented configuration `intercloud init` writes: every key at its default (the checks in config/tests.rs hold it to the structs).

use super::Limits;

/// The commented config `intercloud init` writes.
pub fn template(
    domain: &str,
    roles: &[String],
    c2s_port: u16,
    s2s_port: u16,
    p2p_port: u16,
    dialback_secret: &str,
) -> String {
    let l = Limits::default();
    let roles = roles
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"# intercloud node configuration. Relative paths are relative to this file.

[node]
# The XMPP domain this node serves: the cloud's name in the Intercloud.
domain = "{domain}"
# Roles: "cloud" (every node), "exchange" (a catalog of many clouds), "root" (the Intercloud Root).
roles = [{roles}]
# Where the database (accounts, rosters, offline messages) lives.
data_dir = "data"
# Log filter (tracing's EnvFilter syntax); RUST_LOG overrides it.
log = "info"

[c2s]
# Client-to-server listener. Bind "0.0.0.0" or "::" to accept clients from other hosts.
bind = "127.0.0.1"
port = {c2s_port}
# Offer SASL ANONYMOUS (throw-away accounts).
allow_anonymous = false
# XEP-0077 in-band registration: anyone may create an account (benchmarks, closed networks).
allow_registration = false
# Accounts it may create per minute, in all.
registrations_per_minute = 10

[s2s]
# Server-to-server listener (federation).
bind = "127.0.0.1"
port = {s2s_port}
# How peers prove their domain: "external" = SASL EXTERNAL with a certificate
# from a trusted CA (XEP-0178); "dialback" = Server Dialback (XEP-0220).
auth = ["external", "dialback"]
# Refuse peers that will not do STARTTLS.
tls_required = true
# PEM files of the CAs trusted for SASL EXTERNAL (e.g. the Intercloud roots).
trust_anchors = []
# If not empty, only these domains may federate with this node; deny always wins.
allow = []
deny = []
# Secret for dialback keys. Keep it private; changing it only invalidates keys in flight.
dialback_secret = "{dialback_secret}"
# DNS servers ("ip:port") for _xmpp-server._tcp SRV lookups; empty = the system's.
dns_servers = []

# Static routes, tried before the Intercloud directory and DNS:
# "cloud2.test" = "127.0.0.1:5270"
[s2s.routes]

[p2p]
# The libp2p host that carries the Intercloud Root directory (0 turns it off).
bind = "127.0.0.1"
port = {p2p_port}
# Roots to join, e.g. "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW..." (`intercloud directory id` prints a node's).
bootstrap = []
# Public keys (base64 ed25519) of the roots, whose revocations and delegations are trusted.
root_keys = []
# Seconds between anti-entropy rounds among roots (and re-dials of bootstrap peers).
anti_entropy_secs = 10
# Seconds other nodes may cache this node's directory record.
record_ttl_secs = 300
# Ask the roots' trust authority for the s2s certificate (kept in data/tls/enrolled-*.pem) and renew it.
enroll = true
# A token from a root's [authority] enrollment_tokens; empty = wait for `intercloud directory approve`.
enrollment_token = ""
# Renew when less than this percentage of the certificate's lifetime is left.
renew_percent = 33
# Exchanges: sub-zones the roots delegated to this node, e.g. ["asia.test"]; it holds their records.
zones = []
# At most this many seconds between checks of the roots' authority records (trust anchors); checks back off from every round while nothing changes.
anchors_refresh_secs = 60
# Outbound gossip messages one libp2p connection may queue (slots are allocated per connection).
gossip_queue = 64
# Roots: enrollments waiting for approval at once (any peer can ask for any name); more are refused.
max_waiting_enrollments = 1000
# Directory records cached from lookups at once.
max_cached_records = 10000
# Incoming libp2p connections established, and being set up (handshakes), at once.
max_peer_connections = 1000
max_pending_peer_connections = 128

[authority]
# Roots only: the trust authority's CA. Empty paths = data/ca/cert.pem and key.pem, created at first start.
ca_cert = ""
ca_key = ""
# Seconds a certificate it issues stays valid (90 days).
cert_validity_secs = 7776000
# Tokens that let a cloud enroll without an administrator's approval:
# "secret" for any domain, or "cloud1.test:secret" for one.
enrollment_tokens = []

[catalog]
# This cloud's resource description (Turtle, the ontology in actors/ontology/intercloud.ttl).
resources = ""
# Exchanges and roots (domains) it is published to with publish_resources, over s2s when remote.
publish_to = []
# Exchanges and roots answer XEP-0050 commands at service.<domain> over their catalog:
# milliseconds a SPARQL query may run, rows it may return, largest description accepted.
query_time_ms = 10000
max_results = 1000
max_description_bytes = 1048576
# A command still running after this many seconds answers "executing" (XEP-0244) and completes later.
async_after_secs = 5
# Queries running at once (more get resource-constraint), clouds per constraint answer.
max_running_queries = 4
match_limit = 100
# Seconds a command session, and a finished job's output, are kept.
session_timeout_secs = 600
# sparql_query runs in worker processes: each may use this many MiB (past it the query fails),
# and is killed at query_time_ms.
query_memory_mb = 256
# Command sessions kept at once, in all and for one requester; more get <resource-constraint/>.
max_command_sessions = 10000
max_command_sessions_per_jid = 32

[gateway]
# The cloud's gateway JID (empty = gateway@<domain>): available while the node runs, with its
# free capacity in its presence; it subscribes to the gateways of clouds sharing an exchange.
enabled = true
jid = ""
resource = "node"
status = "Intercloud gateway"
# Other clouds' gateways are <peer_gateway>@<their domain>.
peer_gateway = "gateway"
max_peers = 256
peers_refresh_secs = 30

[negotiation]
# Services this cloud offers to others, e.g.
# offers = [{{ service = "storage-replication", protocols = ["AMQP"], transports = ["UDT", "TCP"], capacity = 1000, unit = "GB", max_duration_secs = 0 }}]
offers = []
# Domains allowed to negotiate; empty = any.
partners = []
# Offer what is left when less than asked is free.
counter = true
# Seconds a step waits for its answer; seconds between retransmissions.
timeout_secs = 10
retransmit_secs = 2
# Milliseconds `intercloud negotiate` waits for a match's presence.
presence_wait_ms = 2000
# Negotiations open at once.
max_open = 1000
# Exchanges asked for matching clouds; empty = catalog.publish_to.
exchanges = []

[faults]
# Chaos tests only: a JSON fault table (partitions, delay, loss, duplication; see
# scenarios/README.md) that this node's dialed s2s and libp2p connections obey,
# re-read every poll_ms when it changes. Empty = no fault injection.
file = ""
poll_ms = 200

[metrics]
# Prometheus metrics at http://bind:port/metrics and a health check at /healthz
# (200 while the node serves). port = 0: no listener.
bind = "127.0.0.1"
port = 0

[pubsub]
# XEP-0060 publish-subscribe at pubsub.<domain>: accounts of this server create nodes,
# anyone the node's access model allows (here or on other servers) subscribes.
enabled = true
# Nodes the service holds in all, and per owning account.
max_nodes = 10000
max_nodes_per_owner = 100
# Items a node keeps (a node's pubsub#max_items may be lower, not higher).
max_items_per_node = 100
# Subscriptions one node may have.
max_subscriptions_per_node = 10000
# Bytes of one item's payload; larger ones get <not-acceptable/><payload-too-big/>.
max_payload_bytes = 65536
# Notifications for servers that cannot be reached wait (bounded) and go out again,
# in order, when their link is back; one is sent every probe_secs meanwhile, and one
# that has not bounced by the next round means the server is back (keep it above
# limits.s2s_redial_secs).
max_held_notifications = 10000
probe_secs = 20

[pep]
# XEP-0163 personal eventing: every account's bare JID is a pubsub service for its own
# nodes (user tune, avatar, …); contacts whose XEP-0115 capabilities say <node>+notify
# get what it publishes.
enabled = true
max_nodes_per_account = 100
# Items a node keeps (a node's pubsub#max_items may be lower, not higher; it defaults to 1).
max_items_per_node = 100
# Explicit subscriptions one node may have (contacts with +notify need none).
max_subscriptions_per_node = 1000
max_payload_bytes = 65536
# (account, resource) pairs whose capabilities are tracked, in all; past it, no notifications for newcomers.
max_recipients = 50000
# XEP-0115 hashes whose features are remembered (the oldest forgotten first).
max_caps = 10000
# disco#info queries about unknown hashes waiting for an answer (the oldest forgotten first).
max_pending_queries = 1000

[muc]
# XEP-0045 multi-user chat at conference.<domain>: accounts of this server create rooms,
# anyone a room lets in (here or on other servers) joins.
enabled = true
# Rooms the service holds in all.
max_rooms = 10000
# Occupants one room may have (a room's maxusers may be lower).
max_occupants_per_room = 200
# Groupchat messages a room keeps for newcomers (a room's history length may be lower).
max_history = 50
# Affiliations (members, admins, owners, outcasts) one room may record.
max_affiliations_per_room = 1000

[tls]
# Certificate and key for STARTTLS (PEM). `intercloud init` generated a self-signed pair.
cert = "tls/cert.pem"
key = "tls/key.pem"

[limits]
# Largest stanza accepted, in bytes; larger ones end the stream with <policy-violation/>.
max_stanza_bytes = {}
# Deepest element nesting inside a stanza.
max_depth = {}
# Offline messages kept per account (XEP-0160); further ones are bounced.
max_offline_per_user = {}
# Roster items per account.
max_roster_items = {}
# Bytes of one roster item's name and groups; longer ones get <not-acceptable/>.
max_roster_item_bytes = {}
# Entities one session may have sent directed presence to at once; more get <resource-constraint/>.
max_directed_presences = {}
# Remote resources (with the local accounts they sent presence to) tracked to mark them
# unavailable when their domain's link dies; past it presence passes untracked.
max_remote_presences = {}
# Stanzas queued towards one client before it is disconnected as too slow.
session_queue = {}
# Bytes queued towards one client, or held for it unacknowledged (XEP-0198), before it is
# disconnected with <policy-violation/>.
session_queue_bytes = {}
# Sessions of one account at once, waiting-to-resume ones included: a new one first ends the
# one detached longest; when all are connected, binding fails with <resource-constraint/>.
max_sessions_per_account = {}
# Seconds a client has to finish STARTTLS, SASL and binding.
negotiation_timeout_secs = {}
# Seconds of silence from a client before its stream is closed (<connection-timeout/>).
idle_timeout_secs = {}
# Seconds between whitespace keepalives sent to an idle client.
keepalive_secs = {}
# Failed SASL attempts allowed on one stream.
max_auth_attempts = {}
# Open client connections in all, and from one IP address.
max_connections = {}
max_connections_per_ip = {}
# Failed logins from one address (an IPv6 /64), and for one account name, within auth_window_secs;
# beyond them logins from there, or for it, get <temporary-auth-failure/> until the window ends.
auth_failures_per_address = {}
auth_failures_per_account = {}
auth_window_secs = {}
# Addresses and account names whose failures are counted at once (each).
auth_throttle_entries = {}
# PBKDF2 iterations for new SCRAM credentials.
scram_iterations = {}
# Seconds to reach and authenticate a remote server before senders get <remote-server-timeout/>.
s2s_connect_timeout_secs = {}
# Seconds without traffic before an outgoing s2s link is closed.
s2s_idle_timeout_secs = {}
# Stanzas held per remote domain while its link connects.
s2s_queue = {}
# Bytes held per remote domain while its link connects or is slow; more bounce with <resource-constraint/>.
s2s_queue_bytes = {}
# Remote domains with a link at once (idle and unreachable ones are let go); more bounce.
s2s_max_domains = {}
# Remote domains being dialed for the first time at once, in all and for one sender; more bounce.
s2s_max_pending = {}
s2s_max_pending_per_sender = {}
# Failed s2s dials to a domain reached before, and dials whose connection broke while negotiating,
# are retried (backing off from 200 ms to 2 s) for this many seconds before what is queued bounces.
s2s_redial_secs = {}
# Stanza ids remembered from s2s peers to drop the copies a link resends after a cut (XEP-0198).
s2s_dedup_ids = {}
# Incoming s2s connections in all.
max_s2s_connections = {}
# Seconds a client's session waits to be resumed after its connection drops (XEP-0198).
sm_resume_timeout_secs = {}
# Stream management asks the peer for an acknowledgement after this many stanzas.
sm_ack_every = {}
"#,
        l.max_stanza_bytes,
        l.max_depth,
        l.max_offline_per_user,
        l.max_roster_items,
        l.max_roster_item_bytes,
        l.max_directed_presences,
        l.max_remote_presences,
        l.session_queue,
        l.session_queue_bytes,
        l.max_sessions_per_account,
        l.negotiation_timeout_secs,
        l.idle_timeout_secs,
        l.keepalive_secs,
        l.max_auth_attempts,
        l.max_connections,
        l.max_connections_per_ip,
        l.auth_failures_per_address,
        l.auth_failures_per_account,
        l.auth_window_secs,
        l.auth_throttle_entries,
        l.scram_iterations,
        l.s2s_connect_timeout_secs,
        l.s2s_idle_timeout_secs,
        l.s2s_queue,
        l.s2s_queue_bytes,
        l.s2s_max_domains,
        l.s2s_max_pending,
        l.s2s_max_pending_per_sender,
        l.s2s_redial_secs,
        l.s2s_dedup_ids,
        l.max_s2s_connections,
        l.sm_resume_timeout_secs,
        l.sm_ack_every,
    )
}
