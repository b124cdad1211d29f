//! One XEP-0045 room: its configuration (the muc#roomconfig form), affiliations, occupants with their roles, subject and history, and the rules for who may enter, speak, and change what.

use crate::dataform::{Field, Form};
use crate::element::Element;
use std::collections::{BTreeMap, VecDeque};

pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";

/// A long-lived association with the room (XEP-0045 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Admin => "admin",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "owner" => Affiliation::Owner,
            "admin" => Affiliation::Admin,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }
}

/// A role in the room while present (XEP-0045 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Participant => "participant",
            Role::Visitor => "visitor",
            Role::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "moderator" => Role::Moderator,
            "participant" => Role::Participant,
            "visitor" => Role::Visitor,
            "none" => Role::None,
            _ => return None,
        })
    }
}

/// The configuration fields we honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    /// Empty: no password.
    pub password: String,
    pub max_users: usize,
    /// Real JIDs shown to everyone (`anyone`) or to moderators only.
    pub whois_anyone: bool,
    pub change_subject: bool,
    pub allow_invites: bool,
    pub history_length: usize,
}

/// A field of a submitted configuration the room cannot take.
pub type ConfigError = crate::dataform::FieldError;

impl Config {
    pub fn new(max_users: usize, history: usize) -> Config {
        Config {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: String::new(),
            max_users,
            whois_anyone: false,
            change_subject: false,
            allow_invites: false,
            history_length: history,
        }
    }

    pub fn form(&self, kind: &str) -> Form {
        let b = |v: bool| if v { "1" } else { "0" };
        Form::new(kind)
            .with_type(ROOMCONFIG)
            .field(
                Field::new("muc#roomconfig_roomname", "text-single")
                    .label("Room name")
                    .value(self.name.clone()),
            )
            .field(
                Field::new("muc#roomconfig_roomdesc", "text-single")
                    .label("Description")
                    .value(self.description.clone()),
            )
            .field(
                Field::new("muc#roomconfig_persistentroom", "boolean")
                    .label("Kept when empty and across restarts")
                    .value(b(self.persistent)),
            )
            .field(
                Field::new("muc#roomconfig_publicroom", "boolean")
                    .label("Listed")
                    .value(b(self.public)),
            )
            .field(
                Field::new("muc#roomconfig_membersonly", "boolean")
                    .label("Members only")
                    .value(b(self.members_only)),
            )
            .field(
                Field::new("muc#roomconfig_moderatedroom", "boolean")
                    .label("Moderated")
                    .value(b(self.moderated)),
            )
            .field(
                Field::new("muc#roomconfig_passwordprotectedroom", "boolean")
                    .value(b(!self.password.is_empty())),
            )
            .field(
                Field::new("muc#roomconfig_roomsecret", "text-private")
                    .label("Password")
                    .value(self.password.clone()),
            )
            .field(
                Field::new("muc#roomconfig_maxusers", "text-single")
                    .label("Most occupants")
                    .value(self.max_users.to_string()),
            )
            .field(
                Field::new("muc#roomconfig_whois", "list-single")
                    .label("Who may see real JIDs")
                    .options(&["moderators", "anyone"])
                    .value(if self.whois_anyone {
                        "anyone"
                    } else {
                        "moderators"
                    }),
            )
            .field(
                Field::new("muc#roomconfig_changesubject", "boolean")
                    .label("Participants may change the subject")
                    .value(b(self.change_subject)),
            )
            .field(
                Field::new("muc#roomconfig_allowinvites", "boolean")
                    .label("Participants may invite")
                    .value(b(self.allow_invites)),
            )
            .field(
                Field::new("muc#roomconfig_historylength", "text-single")
                    .label("Messages of history kept")
                    .value(self.history_length.to_string()),
            )
    }

    /// Applies a submitted form's fields (unknown ones ignored); counts are
    /// capped at the service's limits; a bad value leaves everything as it was.
    pub fn apply(
        &mut self,
        form: &Form,
        max_users: usize,
        max_history: usize,
    ) -> Result<(), ConfigError> {
        let mut next = self.clone();
        let mut protected = None;
        for f in &form.fields {
            let v = f.first();
            match f.var.as_str() {
                "muc#roomconfig_roomname" => next.name = v.to_string(),
                "muc#roomconfig_roomdesc" => next.description = v.to_string(),
                "muc#roomconfig_persistentroom" => next.persistent = f.flag()?,
                "muc#roomconfig_publicroom" => next.public = f.flag()?,
                "muc#roomconfig_membersonly" => next.members_only = f.flag()?,
                "muc#roomconfig_moderatedroom" => next.moderated = f.flag()?,
                "muc#roomconfig_passwordprotectedroom" => protected = Some(f.flag()?),
                "muc#roomconfig_roomsecret" => next.password = v.to_string(),
                "muc#roomconfig_maxusers" => next.max_users = f.count(max_users)?,
                "muc#roomconfig_whois" => {
                    next.whois_anyone = f.choice(&["moderators", "anyone"])? == "anyone"
                }
                "muc#roomconfig_changesubject" => next.change_subject = f.flag()?,
                "muc#roomconfig_allowinvites" => next.allow_invites = f.flag()?,
                "muc#roomconfig_historylength" => next.history_length = f.count(max_history)?,
                _ => {}
            }
        }
        if protected == Some(false) {
            next.password.clear();
        }
        if protected == Some(true) && next.password.is_empty() {
            return Err(crate::dataform::FieldError {
                field: "muc#roomconfig_roomsecret".into(),
                why: "a protected room needs a password",
            });
        }
        *self = next;
        Ok(())
    }

    /// The room's features for disco#info (XEP-0045 §6.4).
    pub fn features(&self) -> Vec<&'static str> {
        vec![
            NS_MUC,
            if self.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if self.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if self.password.is_empty() {
                "muc_unsecured"
            } else {
                "muc_passwordprotected"
            },
            if self.public {
                "muc_public"
            } else {
                "muc_hidden"
            },
            if self.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if self.whois_anyone {
                "muc_nonanonymous"
            } else {
                "muc_semianonymous"
            },
        ]
    }
}

/// Someone in the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupant {
    pub nick: String,
    /// The full JIDs joined under this nick (one person, several clients).
    pub jids: Vec<String>,
    pub role: Role,
    /// The last presence the occupant sent (its show, status, priority…).
    pub presence: Element,
}

/// A message kept for history on join.
#[derive(Clone, Debug)]
pub struct Said {
    pub message: Element,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Clone, Debug)]
pub struct Room {
    /// The room's bare JID.
    pub jid: String,
    pub config: Config,
    /// By bare JID; absent means `none`.
    pub affiliations: BTreeMap<String, Affiliation>,
    /// Nicks reserved by members (bare JID -> nick).
    pub occupants: BTreeMap<String, Occupant>,
    pub subject: Option<(String, String)>,
    pub history: VecDeque<Said>,
    /// Created and not yet configured: nobody else may enter (XEP-0045 §10.1.1).
    pub locked: bool,
}

impl Room {
    pub fn new(jid: &str, owner: &str, config: Config) -> Room {
        Room {
            jid: jid.to_string(),
            config,
            affiliations: BTreeMap::from([(owner.to_string(), Affiliation::Owner)]),
            occupants: BTreeMap::new(),
            subject: None,
            history: VecDeque::new(),
            locked: true,
        }
    }

    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    /// The role an entity with `affiliation` enters with (XEP-0045 §5.1.2).
    pub fn default_role(&self, affiliation: Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            _ if self.config.moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }

    /// The nick `full` is in the room as.
    pub fn nick_of(&self, full: &str) -> Option<&str> {
        self.occupants
            .values()
            .find(|o| o.jids.iter().any(|j| j == full))
            .map(|o| o.nick.as_str())
    }

    /// The occupant someone (a full JID) is.
    pub fn occupant_of(&self, full: &str) -> Option<&Occupant> {
        self.nick_of(full).and_then(|n| self.occupants.get(n))
    }

    /// Keeps a groupchat message for history, within the configured length.
    pub fn remember(&mut self, message: Element, at: u64) {
        if self.config.history_length == 0 {
            return;
        }
        self.history.push_back(Said { message, at });
        while self.history.len() > self.config.history_length {
            self.history.pop_front();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }
}

/// The bare part of a JID string.
pub fn bare_of(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}
