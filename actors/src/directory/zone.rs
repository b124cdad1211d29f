//! The root zone and its rules: owners keep their names, higher serials replace lower, roots alone revoke and delegate; digests for anti-entropy.

use super::record::{Body, RecordError, SignedRecord};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZoneError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0} is held by another key")]
    Takeover(String),
    #[error("{domain}: serial {got} is not newer than {have}")]
    Stale { domain: String, have: u64, got: u64 },
    #[error("{0}: only a root key may sign revocations and delegations")]
    NotRoot(String),
    #[error("{0}: that key was revoked")]
    Revoked(String),
}

/// What `accept` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    New,
    Replaced,
    Unchanged,
}

/// The whole zone as a root holds it.
#[derive(Default, Debug, Clone)]
pub struct Zone {
    /// Cloud and delegation records, by domain.
    records: BTreeMap<String, SignedRecord>,
    /// The latest revocation per domain.
    revocations: BTreeMap<String, SignedRecord>,
    /// Keys of the roots (trust authorities).
    root_keys: BTreeSet<String>,
}

/// Where a record sits in the zone and its digest: records and revocations
/// of one domain are distinct entries.
pub fn slot(r: &SignedRecord) -> String {
    match r.record.body {
        Body::Revocation { .. } => format!("revocation:{}", r.record.domain),
        _ => format!("record:{}", r.record.domain),
    }
}

impl Zone {
    pub fn new(root_keys: impl IntoIterator<Item = String>) -> Zone {
        Zone {
            root_keys: root_keys.into_iter().collect(),
            ..Default::default()
        }
    }

    pub fn is_root_key(&self, k: &str) -> bool {
        self.root_keys.contains(k)
    }

    /// Applies the zone's rules to a record from anyone (a cloud, a peer root).
    pub fn accept(&mut self, r: SignedRecord) -> Result<Accepted, ZoneError> {
        r.verify()?;
        let domain = r.record.domain.clone();
        if let Body::Revocation { revoked_key, .. } = &r.record.body {
            if !self.root_keys.contains(&r.record.key) {
                return Err(ZoneError::NotRoot(domain));
            }
            let outcome = match self.revocations.get(&domain) {
                Some(old) if old.hash() == r.hash() => return Ok(Accepted::Unchanged),
                Some(old) if old.record.serial >= r.record.serial => {
                    return Err(ZoneError::Stale {
                        domain,
                        have: old.record.serial,
                        got: r.record.serial,
                    })
                }
                Some(_) => Accepted::Replaced,
                None => Accepted::New,
            };
            // The revoked key loses the name.
            if self
                .records
                .get(&domain)
                .map(|c| &c.record.key == revoked_key)
                .unwrap_or(false)
            {
                self.records.remove(&domain);
            }
            self.revocations.insert(domain, r);
            return Ok(outcome);
        }
        if matches!(r.record.body, Body::Delegation { .. })
            && !self.root_keys.contains(&r.record.key)
        {
            return Err(ZoneError::NotRoot(domain));
        }
        if let Some(rev) = self.revocations.get(&domain) {
            if let Body::Revocation { revoked_key, .. } = &rev.record.body {
                if *revoked_key == r.record.key {
                    return Err(ZoneError::Revoked(domain));
                }
            }
        }
        match self.records.get(&domain) {
            None => {
                self.records.insert(domain, r);
                Ok(Accepted::New)
            }
            Some(old) if old.record.key != r.record.key => Err(ZoneError::Takeover(domain)),
            Some(old) if old.hash() == r.hash() => Ok(Accepted::Unchanged),
            Some(old) if old.record.serial >= r.record.serial => Err(ZoneError::Stale {
                domain,
                have: old.record.serial,
                got: r.record.serial,
            }),
            Some(_) => {
                self.records.insert(domain, r);
                Ok(Accepted::Replaced)
            }
        }
    }

    /// The record for exactly `domain`.
    pub fn get(&self, domain: &str) -> Option<&SignedRecord> {
        self.records.get(domain)
    }

    /// The delegation covering `domain` (its nearest ancestor with one), if any.
    pub fn delegation_for(&self, domain: &str) -> Option<&SignedRecord> {
        let mut d = domain;
        while let Some((_, parent)) = d.split_once('.') {
            if let Some(r) = self.records.get(parent) {
                if matches!(r.record.body, Body::Delegation { .. }) {
                    return Some(r);
                }
            }
            d = parent;
        }
        None
    }

    /// The revocation naming `domain`, if any.
    pub fn revocation(&self, domain: &str) -> Option<&SignedRecord> {
        self.revocations.get(domain)
    }

    /// Every record and revocation.
    pub fn all(&self) -> impl Iterator<Item = &SignedRecord> {
        self.records.values().chain(self.revocations.values())
    }

    pub fn len(&self) -> usize {
        self.records.len() + self.revocations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slot -> record hash, for anti-entropy.
    pub fn digest(&self) -> BTreeMap<String, [u8; 32]> {
        self.all().map(|r| (slot(r), r.hash())).collect()
    }

    /// The records we hold that a peer with digest `theirs` lacks or holds differently.
    pub fn missing_from(&self, theirs: &BTreeMap<String, [u8; 32]>) -> Vec<SignedRecord> {
        self.all()
            .filter(|r| theirs.get(&slot(r)) != Some(&r.hash()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::{cloud, key};
    use super::super::record::{public_key, Body, Record, VERSION};
    use super::*;

    fn revocation(domain: &str, revoked: &str, serial: u64) -> Record {
        Record {
            v: VERSION,
            domain: domain.into(),
            serial,
            ttl: 60,
            key: String::new(),
            body: Body::Revocation {
                revoked_key: revoked.into(),
                cert_sha256: None,
                reason: "test".into(),
            },
        }
    }

    #[test]
    fn owners_keep_their_names() {
        let root = key(9);
        let mut z = Zone::new([public_key(&root)]);
        assert_eq!(
            z.accept(cloud("c1.test", 1).sign(&key(1))),
            Ok(Accepted::New)
        );
        assert_eq!(
            z.accept(cloud("c1.test", 1).sign(&key(1))),
            Ok(Accepted::Unchanged)
        );
        assert_eq!(
            z.accept(cloud("c1.test", 5).sign(&key(2))),
            Err(ZoneError::Takeover("c1.test".into()))
        );
        assert!(matches!(
            z.accept(cloud("c1.test", 1).sign(&key(1)).clone()),
            Ok(Accepted::Unchanged)
        ));
        assert_eq!(
            z.accept(cloud("c1.test", 2).sign(&key(1))),
            Ok(Accepted::Replaced)
        );
        assert!(matches!(
            z.accept(cloud("c1.test", 1).sign(&key(1))),
            Err(ZoneError::Stale { .. })
        ));
        // A revocation by a root frees the name for a new key; the old key stays out.
        let rev = revocation("c1.test", &public_key(&key(1)), 1);
        assert!(matches!(
            z.accept(rev.clone().sign(&key(3))),
            Err(ZoneError::NotRoot(_))
        ));
        assert_eq!(z.accept(rev.sign(&root)), Ok(Accepted::New));
        assert!(z.get("c1.test").is_none());
        assert_eq!(
            z.accept(cloud("c1.test", 9).sign(&key(1))),
            Err(ZoneError::Revoked("c1.test".into()))
        );
        assert_eq!(
            z.accept(cloud("c1.test", 1).sign(&key(2))),
            Ok(Accepted::New)
        );
    }

    #[test]
    fn delegations_and_digests() {
        let root = key(9);
        let mut z = Zone::new([public_key(&root)]);
        let mut d = cloud("asia.test", 1);
        d.body = Body::Delegation {
            exchanges: vec!["exchange.asia.test".into()],
        };
        assert!(matches!(
            z.accept(d.clone().sign(&key(1))),
            Err(ZoneError::NotRoot(_))
        ));
        z.accept(d.sign(&root)).unwrap();
        assert!(z.delegation_for("tokyo.asia.test").is_some());
        assert!(z.delegation_for("asia.test").is_none());
        assert!(z.delegation_for("eu.test").is_none());
        // Anti-entropy: two zones exchange what the other lacks and converge.
        let mut other = Zone::new([public_key(&root)]);
        other.accept(cloud("c2.test", 1).sign(&key(2))).unwrap();
        z.accept(cloud("c3.test", 4).sign(&key(3))).unwrap();
        other.accept(cloud("c3.test", 2).sign(&key(3))).unwrap();
        let to_other = z.missing_from(&other.digest());
        let to_z = other.missing_from(&z.digest());
        for r in to_other {
            let _ = other.accept(r);
        }
        for r in to_z {
            let _ = z.accept(r);
        }
        assert_eq!(z.digest(), other.digest());
        assert_eq!(z.get("c3.test").unwrap().record.serial, 4);
    }
}
