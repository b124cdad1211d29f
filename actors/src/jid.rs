//! XMPP addresses (RFC 7622): parsing, normalisation and the bare/full forms.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a JID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JidError {
    #[error("empty domainpart")]
    EmptyDomain,
    #[error("empty localpart before '@'")]
    EmptyLocal,
    #[error("empty resourcepart after '/'")]
    EmptyResource,
    #[error("a part is longer than 1023 bytes")]
    TooLong,
    #[error("forbidden character {0:?} in localpart")]
    BadLocalChar(char),
    #[error("forbidden character {0:?} in domainpart")]
    BadDomainChar(char),
}

/// A JID: `[local@]domain[/resource]`. Local and domain parts are stored
/// case-folded (a simplified PRECIS mapping), the resource as given.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    local: Option<String>,
    domain: String,
    resource: Option<String>,
}

const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

impl Jid {
    /// Builds a JID from its parts, validating each.
    pub fn new(local: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        let domain = domain.trim_end_matches('.').to_lowercase();
        if domain.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if domain.len() > 1023 {
            return Err(JidError::TooLong);
        }
        if let Some(c) = domain
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "@/\"'<>&\\".contains(*c))
        {
            return Err(JidError::BadDomainChar(c));
        }
        let local = match local {
            None => None,
            Some("") => return Err(JidError::EmptyLocal),
            Some(l) => {
                if l.len() > 1023 {
                    return Err(JidError::TooLong);
                }
                if let Some(c) = l
                    .chars()
                    .find(|c| LOCAL_FORBIDDEN.contains(c) || c.is_whitespace() || c.is_control())
                {
                    return Err(JidError::BadLocalChar(c));
                }
                Some(l.to_lowercase())
            }
        };
        let resource = match resource {
            None => None,
            Some("") => return Err(JidError::EmptyResource),
            Some(r) if r.len() > 1023 => return Err(JidError::TooLong),
            Some(r) => Some(r.to_string()),
        };
        Ok(Jid {
            local,
            domain,
            resource,
        })
    }

    /// A domain-only JID (a server or service address).
    pub fn domain_jid(domain: &str) -> Result<Jid, JidError> {
        Jid::new(None, domain, None)
    }

    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }
    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }
    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }
    /// The JID without its resource.
    pub fn to_bare(&self) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }
    /// This bare JID with `resource` appended.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        Jid::new(self.local.as_deref(), &self.domain, Some(resource))
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        let (rest, resource) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (local, domain) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        Jid::new(local, domain, resource)
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({self})")
    }
}

/// The server domain that hosts `domain`: a service (`service.<domain>`)
/// is hosted, reached and authenticated through its parent; any other
/// domain is its own server.
pub fn server_of(domain: &str) -> &str {
    domain
        .strip_prefix("service.")
        .filter(|d| d.contains('.'))
        .unwrap_or(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let j: Jid = "Alice@Cloud1.Test/Phone".parse().unwrap();
        assert_eq!(j.local(), Some("alice"));
        assert_eq!(j.domain(), "cloud1.test");
        assert_eq!(j.resource(), Some("Phone"));
        assert_eq!(j.to_bare().to_string(), "alice@cloud1.test");
        let r: Jid = "cloud1.test/a@b".parse().unwrap();
        assert_eq!(r.local(), None);
        assert_eq!(r.resource(), Some("a@b"));
    }

    #[test]
    fn rejects_bad() {
        assert_eq!("@x".parse::<Jid>(), Err(JidError::EmptyLocal));
        assert_eq!("a@".parse::<Jid>(), Err(JidError::EmptyDomain));
        assert_eq!("a@x/".parse::<Jid>(), Err(JidError::EmptyResource));
        assert!("a b@x".parse::<Jid>().is_err());
        assert!("a@x y".parse::<Jid>().is_err());
    }
}
