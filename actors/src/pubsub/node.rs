//! One XEP-0060 node: its configuration (as the node_config form), affiliations, subscriptions and items, and the rules for who may subscribe, publish, retrieve and configure.

use crate::dataform::{boolean, Field, Form};
use crate::element::Element;
use std::collections::{BTreeMap, VecDeque};

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
pub const SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";
pub const SUBSCRIBE_AUTHORIZATION: &str =
    "http://jabber.org/protocol/pubsub#subscribe_authorization";
pub const META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";

/// Who may subscribe and retrieve items (XEP-0060 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Open,
    Presence,
    Roster,
    Whitelist,
    Authorize,
}

impl Access {
    pub const ALL: [&'static str; 5] = ["open", "presence", "roster", "whitelist", "authorize"];

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Presence => "presence",
            Access::Roster => "roster",
            Access::Whitelist => "whitelist",
            Access::Authorize => "authorize",
        }
    }

    pub fn parse(s: &str) -> Option<Access> {
        Some(match s {
            "open" => Access::Open,
            "presence" => Access::Presence,
            "roster" => Access::Roster,
            "whitelist" => Access::Whitelist,
            "authorize" => Access::Authorize,
            _ => return None,
        })
    }
}

/// Who may publish (XEP-0060 §16.4.3, pubsub#publish_model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishModel {
    Publishers,
    Subscribers,
    Open,
}

impl PublishModel {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishModel::Publishers => "publishers",
            PublishModel::Subscribers => "subscribers",
            PublishModel::Open => "open",
        }
    }

    pub fn parse(s: &str) -> Option<PublishModel> {
        Some(match s {
            "publishers" => PublishModel::Publishers,
            "subscribers" => PublishModel::Subscribers,
            "open" => PublishModel::Open,
            _ => return None,
        })
    }
}

/// A node's configuration: the fields of the node_config form we honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub title: String,
    pub max_items: usize,
    pub access: Access,
    /// Roster groups whose members may subscribe under the roster model.
    pub roster_groups: Vec<String>,
    pub publish_model: PublishModel,
    pub deliver_payloads: bool,
    pub notify_retract: bool,
    pub notify_delete: bool,
    pub notify_config: bool,
    pub persist_items: bool,
    /// `never` or `on_sub` (`on_sub_and_presence` is taken as `on_sub`).
    pub send_last_published_item: String,
    /// `headline` or `normal`.
    pub notification_type: String,
}

/// A field of a submitted configuration the node cannot take.
pub type ConfigError = crate::dataform::FieldError;

impl Config {
    /// The defaults, with at most `max_items` kept.
    pub fn new(max_items: usize) -> Config {
        Config {
            title: String::new(),
            max_items,
            access: Access::Open,
            roster_groups: Vec::new(),
            publish_model: PublishModel::Publishers,
            deliver_payloads: true,
            notify_retract: true,
            notify_delete: true,
            notify_config: false,
            persist_items: true,
            send_last_published_item: "on_sub".into(),
            notification_type: "headline".into(),
        }
    }

    /// The node_config form (`kind`: `form` to fill in, `submit` to store).
    pub fn form(&self, kind: &str) -> Form {
        let b = |v: bool| if v { "1" } else { "0" };
        let mut groups = Field::new("pubsub#roster_groups_allowed", "list-multi")
            .label("Roster groups allowed to subscribe");
        groups.values = self.roster_groups.clone();
        Form::new(kind)
            .with_type(NODE_CONFIG)
            .field(
                Field::new("pubsub#title", "text-single")
                    .label("A friendly name")
                    .value(self.title.clone()),
            )
            .field(
                Field::new("pubsub#max_items", "text-single")
                    .label("Maximum number of items to persist")
                    .value(self.max_items.to_string()),
            )
            .field(
                Field::new("pubsub#access_model", "list-single")
                    .label("Who may subscribe and retrieve items")
                    .options(&Access::ALL)
                    .value(self.access.as_str()),
            )
            .field(groups)
            .field(
                Field::new("pubsub#publish_model", "list-single")
                    .label("Who may publish")
                    .options(&["publishers", "subscribers", "open"])
                    .value(self.publish_model.as_str()),
            )
            .field(Field::new("pubsub#deliver_payloads", "boolean").value(b(self.deliver_payloads)))
            .field(Field::new("pubsub#notify_retract", "boolean").value(b(self.notify_retract)))
            .field(Field::new("pubsub#notify_delete", "boolean").value(b(self.notify_delete)))
            .field(Field::new("pubsub#notify_config", "boolean").value(b(self.notify_config)))
            .field(Field::new("pubsub#persist_items", "boolean").value(b(self.persist_items)))
            .field(
                Field::new("pubsub#send_last_published_item", "list-single")
                    .options(&["never", "on_sub", "on_sub_and_presence"])
                    .value(self.send_last_published_item.clone()),
            )
            .field(
                Field::new("pubsub#notification_type", "list-single")
                    .options(&["headline", "normal"])
                    .value(self.notification_type.clone()),
            )
    }

    /// Applies the fields of a submitted form; unknown fields are ignored,
    /// bad values refused (nothing applied then). `max_items` is capped at `limit`.
    pub fn apply(&mut self, form: &Form, limit: usize) -> Result<(), ConfigError> {
        let mut next = self.clone();
        for f in &form.fields {
            let v = f.first();
            match f.var.as_str() {
                "pubsub#title" => next.title = v.to_string(),
                "pubsub#max_items" => next.max_items = f.count(limit)?,
                "pubsub#access_model" => {
                    next.access = Access::parse(v).ok_or_else(|| f.refused("unknown model"))?
                }
                "pubsub#roster_groups_allowed" => next.roster_groups = f.values.clone(),
                "pubsub#publish_model" => {
                    next.publish_model =
                        PublishModel::parse(v).ok_or_else(|| f.refused("unknown model"))?
                }
                "pubsub#deliver_payloads" => next.deliver_payloads = f.flag()?,
                "pubsub#notify_retract" => next.notify_retract = f.flag()?,
                "pubsub#notify_delete" => next.notify_delete = f.flag()?,
                "pubsub#notify_config" => next.notify_config = f.flag()?,
                "pubsub#persist_items" => next.persist_items = f.flag()?,
                "pubsub#send_last_published_item" => {
                    next.send_last_published_item =
                        f.choice(&["never", "on_sub", "on_sub_and_presence"])?
                }
                "pubsub#notification_type" => {
                    next.notification_type = f.choice(&["headline", "normal"])?
                }
                _ => {}
            }
        }
        *self = next;
        Ok(())
    }

    /// XEP-0060 §7.1.5: whether the node's configuration has every value the
    /// publish-options preconditions ask for.
    pub fn meets(&self, preconditions: &Form) -> bool {
        let mine = self.form("result");
        preconditions
            .fields
            .iter()
            .filter(|f| f.var != "FORM_TYPE")
            .all(|f| {
                let want = f.values.first().map(String::as_str).unwrap_or("");
                match mine.value(&f.var) {
                    Some(have) => match (boolean(have), boolean(want)) {
                        (Some(a), Some(b)) => a == b,
                        _ => have == want,
                    },
                    None => false,
                }
            })
    }
}

/// An entity's affiliation with a node (XEP-0060 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    PublishOnly,
    Publisher,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Publisher => "publisher",
            Affiliation::PublishOnly => "publish-only",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "owner" => Affiliation::Owner,
            "publisher" => Affiliation::Publisher,
            "publish-only" => Affiliation::PublishOnly,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }
}

/// A subscription's state (XEP-0060 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubState {
    Subscribed,
    Pending,
}

impl SubState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubState::Subscribed => "subscribed",
            SubState::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Option<SubState> {
        match s {
            "subscribed" => Some(SubState::Subscribed),
            "pending" => Some(SubState::Pending),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The JID as the subscriber gave it (bare or full).
    pub jid: String,
    pub subid: String,
    pub state: SubState,
    /// Subscription option pubsub#deliver.
    pub deliver: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    /// Bare JID of who published it.
    pub publisher: String,
    pub payload: Option<Element>,
    /// Publish order across the service (newest highest).
    pub seq: u64,
}

/// One node.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub config: Config,
    /// By bare JID; absent means `none`.
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subscriptions: Vec<Subscription>,
    /// Oldest first.
    pub items: VecDeque<Item>,
}

impl Node {
    pub fn new(name: &str, owner: &str, config: Config) -> Node {
        Node {
            name: name.to_string(),
            config,
            affiliations: BTreeMap::from([(owner.to_string(), Affiliation::Owner)]),
            subscriptions: Vec::new(),
            items: VecDeque::new(),
        }
    }

    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn is_owner(&self, bare: &str) -> bool {
        self.affiliation(bare) == Affiliation::Owner
    }

    pub fn owners(&self) -> impl Iterator<Item = &String> {
        self.affiliations
            .iter()
            .filter(|(_, a)| **a == Affiliation::Owner)
            .map(|(j, _)| j)
    }

    /// Whether `bare` holds a subscription in state subscribed.
    pub fn subscribed(&self, bare: &str) -> bool {
        self.subscriptions
            .iter()
            .any(|s| s.state == SubState::Subscribed && bare_of(&s.jid) == bare)
    }

    /// XEP-0060 §7.1.1: whether `bare` may publish.
    pub fn may_publish(&self, bare: &str) -> bool {
        match self.affiliation(bare) {
            Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly => true,
            Affiliation::Outcast => false,
            _ => match self.config.publish_model {
                PublishModel::Publishers => false,
                PublishModel::Subscribers => self.subscribed(bare),
                PublishModel::Open => true,
            },
        }
    }

    /// Adds an item (replacing one with the same id) and drops the oldest
    /// beyond max_items; returns the ids dropped.
    pub fn push(&mut self, item: Item) -> Vec<String> {
        self.items.retain(|i| i.id != item.id);
        self.items.push_back(item);
        self.trim()
    }

    /// Drops the oldest items beyond what the configuration keeps; returns their ids.
    pub fn trim(&mut self) -> Vec<String> {
        let keep = if self.config.persist_items {
            self.config.max_items
        } else {
            0
        };
        let mut dropped = Vec::new();
        while self.items.len() > keep {
            if let Some(i) = self.items.pop_front() {
                dropped.push(i.id);
            }
        }
        dropped
    }

    /// The newest item.
    pub fn last(&self) -> Option<&Item> {
        self.items.back()
    }
}

/// The bare part of a JID string.
pub fn bare_of(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}
