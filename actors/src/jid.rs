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
    #[error("localpart is not a PRECIS username")]
    BadLocal,
    #[error("resourcepart is not a PRECIS opaque string")]
    BadResource,
    #[error("domainpart is not a domain name or IP literal")]
    BadDomain,
}

/// A JID: `[local@]domain[/resource]`, each part prepared and enforced as
/// RFC 7622 says: the localpart by the PRECIS UsernameCaseMapped profile
/// (case-folded, width-mapped, NFC), the resourcepart by OpaqueString, the
/// domainpart by IDNA (UTS #46: full stops such as U+3002 map to `.`,
/// letters case-fold) to its ASCII form, or an IP literal.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    local: Option<String>,
    domain: String,
    resource: Option<String>,
}

/// RFC 7622 §3.3.1: characters a localpart may not hold even though the
/// PRECIS IdentifierClass allows them.
const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

/// The most bytes of each part (RFC 7622 §3.1).
const MAX_PART: usize = 1023;

/// The domainpart in its comparable form: an IP literal, or a DNS name
/// through UTS #46 with the STD3 rules (letters, digits, hyphen), no hyphen
/// first or last in a label, labels of 1..=63 and names of at most 253
/// octets. One trailing dot is dropped (RFC 7622 §3.2).
pub fn domainpart(domain: &str) -> Result<String, JidError> {
    if domain.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    if domain.len() > MAX_PART {
        return Err(JidError::TooLong);
    }
    if let Some(v6) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(|a| format!("[{a}]"))
            .map_err(|_| JidError::BadDomain);
    }
    if let Ok(v4) = domain.parse::<std::net::Ipv4Addr>() {
        return Ok(v4.to_string());
    }
    let ascii = idna::uts46::Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            idna::uts46::AsciiDenyList::STD3,
            idna::uts46::Hyphens::CheckFirstLast,
            idna::uts46::DnsLength::VerifyAllowRootDot,
        )
        .map_err(|_| JidError::BadDomain)?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    if ascii.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    Ok(ascii.to_string())
}

/// The localpart enforced by the UsernameCaseMapped profile (RFC 8265 §3.3).
pub fn localpart(local: &str) -> Result<String, JidError> {
    if local.is_empty() {
        return Err(JidError::EmptyLocal);
    }
    if local.len() > MAX_PART {
        return Err(JidError::TooLong);
    }
    if let Some(c) = local.chars().find(|c| LOCAL_FORBIDDEN.contains(c)) {
        return Err(JidError::BadLocalChar(c));
    }
    // Printable ASCII but space is what IdentifierClass allows of ASCII,
    // and case mapping is all the profile does to it.
    if local.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Ok(local.to_ascii_lowercase());
    }
    use precis_core::profile::PrecisFastInvocation;
    let l = precis_profiles::UsernameCaseMapped::enforce(local).map_err(|_| JidError::BadLocal)?;
    if l.len() > MAX_PART {
        return Err(JidError::TooLong);
    }
    if let Some(c) = l.chars().find(|c| LOCAL_FORBIDDEN.contains(c)) {
        return Err(JidError::BadLocalChar(c));
    }
    Ok(l.into_owned())
}

/// The resourcepart enforced by the OpaqueString profile (RFC 8265 §4.2).
pub fn resourcepart(resource: &str) -> Result<String, JidError> {
    if resource.is_empty() {
        return Err(JidError::EmptyResource);
    }
    if resource.len() > MAX_PART {
        return Err(JidError::TooLong);
    }
    // Printable ASCII (space included) is kept as it is by the profile.
    if resource.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(resource.to_string());
    }
    use precis_core::profile::PrecisFastInvocation;
    let r = precis_profiles::OpaqueString::enforce(resource).map_err(|_| JidError::BadResource)?;
    if r.len() > MAX_PART {
        return Err(JidError::TooLong);
    }
    Ok(r.into_owned())
}

impl Jid {
    /// Builds a JID from its parts, preparing and enforcing each.
    pub fn new(local: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        Ok(Jid {
            local: local.map(localpart).transpose()?,
            domain: domainpart(domain)?,
            resource: resource.map(resourcepart).transpose()?,
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

/// The subdomains a node hosts its services at.
pub const SERVICE_PREFIXES: [&str; 3] = ["service.", "pubsub.", "conference."];

/// The server domain that hosts `domain`: a service (`service.<domain>`,
/// `pubsub.<domain>`, `conference.<domain>`) is hosted, reached and
/// authenticated through its parent; any other domain is its own server.
pub fn server_of(domain: &str) -> &str {
    SERVICE_PREFIXES
        .iter()
        .find_map(|p| domain.strip_prefix(p).filter(|d| d.contains('.')))
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

    /// What the hostile-input campaign had dialed: none is a domain.
    #[test]
    fn rejects_what_is_not_a_domain() {
        let long_label = format!("{}.test", "a".repeat(1019));
        for d in [
            "fuzz..test",
            "host:port",
            "-x",
            "x-.test",
            "x_y",
            "urn:xmpp:ping",
            "a.64chars-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test",
            long_label.as_str(),
            "[::1",
            "[nonsense]",
            ".",
        ] {
            assert!(Jid::domain_jid(d).is_err(), "{d:?} was taken as a domain");
        }
        // Each label of 63 octets and the name of 253 still are.
        let l63 = "b".repeat(63);
        let max = format!("{l63}.{l63}.{l63}.{}", "c".repeat(61));
        assert_eq!(max.len(), 253);
        assert_eq!(Jid::domain_jid(&max).unwrap().domain(), max);
        assert!(Jid::domain_jid(&format!("{max}d")).is_err());
    }

    #[test]
    fn domains_map_as_idna_says() {
        // The ideographic full stop is a label separator.
        assert_eq!(
            Jid::domain_jid("cloud1\u{3002}test").unwrap().domain(),
            "cloud1.test"
        );
        assert_eq!(
            Jid::domain_jid("B\u{fc}cher.Test.").unwrap().domain(),
            "xn--bcher-kva.test"
        );
        assert_eq!(Jid::domain_jid("127.0.0.1").unwrap().domain(), "127.0.0.1");
        assert_eq!(Jid::domain_jid("[0::1]").unwrap().domain(), "[::1]");
        assert_eq!(Jid::domain_jid("localhost").unwrap().domain(), "localhost");
    }

    #[test]
    fn localparts_and_resources_follow_precis() {
        // Fullwidth letters map to their narrow forms, then case-fold.
        let j: Jid = "\u{ff21}lice@x.test".parse().unwrap();
        assert_eq!(j.local(), Some("alice"));
        // Composed and decomposed forms are one account (NFC).
        let a: Jid = "re\u{301}sume\u{301}@x.test".parse().unwrap();
        let b: Jid = "r\u{e9}sum\u{e9}@x.test".parse().unwrap();
        assert_eq!(a, b);
        // Symbols and spaces are no usernames; controls no resources.
        assert_eq!("\u{2603}@x.test".parse::<Jid>(), Err(JidError::BadLocal));
        assert_eq!("a@x.test/r\u{7}".parse::<Jid>(), Err(JidError::BadResource));
        // A resource keeps its case and spaces.
        let r: Jid = "a@x.test/My Phone \u{2603}".parse().unwrap();
        assert_eq!(r.resource(), Some("My Phone \u{2603}"));
    }
}
