//! A node's metrics: one registry of Prometheus counters, gauges and histograms that the actors, the wire layer and the directory update, and that `GET /metrics` encodes (prometheus-client's text format).
//!
//! Every node has its own [`Metrics`] (in-process federations run many
//! nodes in one process). Hot paths hold the counters they touch, resolved
//! once, instead of looking labels up per stanza.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of one value: `[(name, value)]`.
type Label = [(&'static str, String); 1];

/// Into the node, or out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    In,
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Stanza counters of one transport and direction, by kind.
#[derive(Clone, Debug, Default)]
pub struct StanzaCounters {
    pub message: Counter,
    pub presence: Counter,
    pub iq: Counter,
    /// Nonzas and anything else at the top level (XEP-0198 `<r/>`, `<a/>`, …).
    pub other: Counter,
}

impl StanzaCounters {
    /// Counts one top-level element by its name.
    pub fn count(&self, name: &str) {
        match name {
            "message" => self.message.inc(),
            "presence" => self.presence.inc(),
            "iq" => self.iq.inc(),
            _ => self.other.inc(),
        };
    }
}

impl StanzaCounters {
    /// Adds what a batch counted.
    pub fn add(&self, t: &Tally) {
        for (c, n) in [
            (&self.message, t.0[0]),
            (&self.presence, t.0[1]),
            (&self.iq, t.0[2]),
            (&self.other, t.0[3]),
        ] {
            if n > 0 {
                c.inc_by(n);
            }
        }
    }
}

/// Kinds counted over a batch before it is written (one atomic add per kind, not per stanza).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally([u64; 4]);

impl Tally {
    pub fn add(&mut self, name: &str) {
        let i = match name {
            "message" => 0,
            "presence" => 1,
            "iq" => 2,
            _ => 3,
        };
        self.0[i] += 1;
    }
}

/// Latency buckets of catalog queries: 0.5 ms to ~4 s.
fn query_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// Everything one node measures.
pub struct Metrics {
    registry: Registry,
    /// Client sessions bound to a resource (the gateway's and detached ones included).
    pub c2s_sessions: Gauge,
    /// Client sessions waiting to be resumed (XEP-0198).
    pub c2s_sessions_detached: Gauge,
    /// s2s streams authenticated and open now.
    pub s2s_links_in: Gauge,
    pub s2s_links_out: Gauge,
    pub c2s_in: StanzaCounters,
    pub c2s_out: StanzaCounters,
    pub s2s_in: StanzaCounters,
    pub s2s_out: StanzaCounters,
    /// The families the stanza counters and link gauges above belong to.
    stanzas: Family<[(&'static str, &'static str); 3], Counter>,
    s2s_links: Family<[(&'static str, &'static str); 1], Gauge>,
    /// Error replies sent for stanzas that could not be delivered, by condition.
    pub bounces: Family<Label, Counter>,
    /// The sum of `bounces` (for tests and logs; not exported twice).
    all_bounces: Counter,
    /// Streams ended with a stream error, by condition.
    pub stream_errors: Family<Label, Counter>,
    /// Stanzas sent again after a client resumed or an s2s link was redialed (XEP-0198).
    pub sm_resends: Counter,
    /// Stanzas waiting in link queues for their domain's s2s stream.
    pub s2s_queued: Gauge,
    /// s2s dials that failed.
    pub s2s_dial_failures: Counter,
    /// Incoming s2s streams that failed to authenticate.
    pub s2s_auth_failures: Counter,
    /// Stanzas from peers refused (spoofed `from`, unauthenticated domain).
    pub s2s_refused_stanzas: Counter,
    /// Stanzas from peers dropped as resends already delivered.
    pub s2s_duplicates: Counter,
    /// Records in the directory zone this node holds (roots, exchanges).
    pub directory_zone_records: Gauge,
    /// Anti-entropy rounds run with other roots.
    pub directory_anti_entropy_rounds: Counter,
    /// Enrollment requests answered by this node's trust authority, by outcome.
    pub directory_enrollments: Family<Label, Counter>,
    /// Catalog commands run (XEP-0050/0244), by command node: seconds from request to answer.
    pub catalog_queries: Family<Label, Histogram, fn() -> Histogram>,
    /// Negotiations ended, by outcome (agreed, rejected, timed_out, unreachable, offline).
    pub negotiations: Family<Label, Counter>,
    /// Agreements in force that this cloud holds, either role.
    pub agreements: Gauge,
    /// Publish-subscribe notifications sent (events to subscribers, XEP-0060).
    pub pubsub_notifications: Counter,
    /// Publish-subscribe nodes held (XEP-0060).
    pub pubsub_nodes: Gauge,
    /// Personal eventing nodes held (XEP-0163).
    pub pep_nodes: Gauge,
    /// Resources whose capabilities say which personal nodes they want.
    pub pep_interests: Gauge,
    /// Multi-user chat rooms that exist (XEP-0045).
    pub muc_rooms: Gauge,
    /// Occupants present in all rooms.
    pub muc_occupants: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let stanzas: Family<[(&'static str, &'static str); 3], Counter> = Family::default();
        let s2s_links: Family<[(&'static str, &'static str); 1], Gauge> = Family::default();
        let counters = |t: &'static str, d: Direction| {
            let c = |kind: &'static str| -> Counter {
                stanzas
                    .get_or_create(&[("transport", t), ("direction", d.as_str()), ("kind", kind)])
                    .clone()
            };
            StanzaCounters {
                message: c("message"),
                presence: c("presence"),
                iq: c("iq"),
                other: c("other"),
            }
        };
        let link = |d: Direction| -> Gauge {
            s2s_links
                .get_or_create(&[("direction", d.as_str())])
                .clone()
        };
        let mut m = Metrics {
            registry: Registry::with_prefix("intercloud"),
            c2s_sessions: Gauge::default(),
            c2s_sessions_detached: Gauge::default(),
            s2s_links_in: link(Direction::In),
            s2s_links_out: link(Direction::Out),
            c2s_in: counters("c2s", Direction::In),
            c2s_out: counters("c2s", Direction::Out),
            s2s_in: counters("s2s", Direction::In),
            s2s_out: counters("s2s", Direction::Out),
            stanzas,
            s2s_links,
            bounces: Family::default(),
            all_bounces: Counter::default(),
            stream_errors: Family::default(),
            sm_resends: Counter::default(),
            s2s_queued: Gauge::default(),
            s2s_dial_failures: Counter::default(),
            s2s_auth_failures: Counter::default(),
            s2s_refused_stanzas: Counter::default(),
            s2s_duplicates: Counter::default(),
            directory_zone_records: Gauge::default(),
            directory_anti_entropy_rounds: Counter::default(),
            directory_enrollments: Family::default(),
            catalog_queries: Family::new_with_constructor(query_histogram),
            negotiations: Family::default(),
            agreements: Gauge::default(),
            pubsub_notifications: Counter::default(),
            pubsub_nodes: Gauge::default(),
            pep_nodes: Gauge::default(),
            pep_interests: Gauge::default(),
            muc_rooms: Gauge::default(),
            muc_occupants: Gauge::default(),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "c2s_sessions",
            "Client sessions bound to a resource, the gateway's and detached ones included",
            self.c2s_sessions.clone(),
        );
        r.register(
            "c2s_sessions_detached",
            "Client sessions waiting to be resumed (XEP-0198)",
            self.c2s_sessions_detached.clone(),
        );
        r.register(
            "stanzas",
            "Top-level elements read from and written to streams, by transport, direction and kind",
            self.stanzas.clone(),
        );
        r.register(
            "s2s_links",
            "Authenticated s2s streams open now, by direction",
            self.s2s_links.clone(),
        );
        r.register(
            "bounces",
            "Error replies for stanzas that could not be delivered, by condition",
            self.bounces.clone(),
        );
        r.register(
            "stream_errors",
            "Streams this node ended with a stream error, by condition",
            self.stream_errors.clone(),
        );
        r.register(
            "sm_resends",
            "Stanzas sent again after a resumption or redial (XEP-0198)",
            self.sm_resends.clone(),
        );
        r.register(
            "s2s_queued",
            "Stanzas waiting in link queues for their domain's stream",
            self.s2s_queued.clone(),
        );
        r.register(
            "s2s_dial_failures",
            "Outgoing s2s dials that failed",
            self.s2s_dial_failures.clone(),
        );
        r.register(
            "s2s_auth_failures",
            "Incoming s2s streams that failed to authenticate",
            self.s2s_auth_failures.clone(),
        );
        r.register(
            "s2s_refused_stanzas",
            "Stanzas from peers refused (spoofed from, unauthenticated domain)",
            self.s2s_refused_stanzas.clone(),
        );
        r.register(
            "s2s_duplicates",
            "Stanzas from peers dropped as resends already delivered",
            self.s2s_duplicates.clone(),
        );
        r.register(
            "directory_zone_records",
            "Records in the directory zone this node holds",
            self.directory_zone_records.clone(),
        );
        r.register(
            "directory_anti_entropy_rounds",
            "Anti-entropy rounds run with other roots",
            self.directory_anti_entropy_rounds.clone(),
        );
        r.register(
            "directory_enrollments",
            "Enrollment requests answered by this node's trust authority, by outcome",
            self.directory_enrollments.clone(),
        );
        r.register(
            "catalog_query_seconds",
            "Catalog commands (XEP-0050/0244) from request to answer, by command node",
            self.catalog_queries.clone(),
        );
        r.register(
            "negotiations",
            "Negotiations ended, by outcome",
            self.negotiations.clone(),
        );
        r.register(
            "agreements",
            "Agreements in force that this cloud holds, either role",
            self.agreements.clone(),
        );
        r.register(
            "pubsub_notifications",
            "Publish-subscribe notifications sent to subscribers",
            self.pubsub_notifications.clone(),
        );
        r.register(
            "pubsub_nodes",
            "Publish-subscribe nodes held",
            self.pubsub_nodes.clone(),
        );
        r.register(
            "pep_nodes",
            "Personal eventing nodes held",
            self.pep_nodes.clone(),
        );
        r.register(
            "pep_interests",
            "Resources whose capabilities say which personal nodes they want",
            self.pep_interests.clone(),
        );
        r.register(
            "muc_rooms",
            "Multi-user chat rooms that exist",
            self.muc_rooms.clone(),
        );
        r.register(
            "muc_occupants",
            "Occupants present in multi-user chat rooms",
            self.muc_occupants.clone(),
        );
    }

    /// One value of a labelled family (`condition`, `outcome`, `node`, …).
    pub fn label(name: &'static str, value: &str) -> Label {
        [(name, value.to_string())]
    }

    /// Counts an error reply for an undeliverable stanza.
    pub fn bounced(&self, condition: &str) {
        self.bounces
            .get_or_create(&Self::label("condition", condition))
            .inc();
        self.all_bounces.inc();
    }

    /// Bounces so far, all conditions.
    pub fn bounce_total(&self) -> u64 {
        self.all_bounces.get()
    }

    /// Counts a stream ended with an error.
    pub fn stream_error(&self, condition: &str) {
        self.stream_errors
            .get_or_create(&Self::label("condition", condition))
            .inc();
    }

    /// The Prometheus text exposition of every metric, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name{labels}` in an exposition, whole.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counts_show_in_the_exposition_under_their_labels() {
        let m = Metrics::new();
        m.c2s_in.count("message");
        m.c2s_in.count("message");
        m.c2s_in.count("r");
        m.s2s_out.count("presence");
        m.c2s_sessions.set(3);
        m.s2s_links_out.inc();
        m.bounced("service-unavailable");
        m.catalog_queries
            .get_or_create(&Metrics::label("node", "sparql_query"))
            .observe(0.003);
        let t = m.encode();
        let stanzas = |t: &str, d: &str, k: &str| {
            format!(r#"intercloud_stanzas_total{{transport="{t}",direction="{d}",kind="{k}"}}"#)
        };
        for (series, want) in [
            (stanzas("c2s", "in", "message"), 2.0),
            (stanzas("c2s", "in", "other"), 1.0),
            (stanzas("s2s", "out", "presence"), 1.0),
            (stanzas("c2s", "out", "message"), 0.0),
            ("intercloud_c2s_sessions".into(), 3.0),
            (r#"intercloud_s2s_links{direction="out"}"#.into(), 1.0),
            (r#"intercloud_s2s_links{direction="in"}"#.into(), 0.0),
            (
                r#"intercloud_bounces_total{condition="service-unavailable"}"#.into(),
                1.0,
            ),
            (
                r#"intercloud_catalog_query_seconds_count{node="sparql_query"}"#.into(),
                1.0,
            ),
        ] {
            assert_eq!(sample(&t, &series), Some(want), "{series}\n{t}");
        }
        assert!(t.ends_with("# EOF\n"), "{t}");
    }
}
