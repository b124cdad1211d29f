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
    /// Every statement, by slot (`kind:domain`).
    slots: BTreeMap<String, SignedRecord>,
    /// Each slot's record hash, kept with it: digests are asked for often
    /// and a hash means serialising and hashing the record.
    hashes: BTreeMap<String, [u8; 32]>,
    /// Keys of the roots (trust authorities).
    root_keys: BTreeSet<String>,
}

/// Where a record sits in the zone and its digest: `kind:domain`, so a
/// domain's record, revocation, certificate and approval are distinct entries.
pub fn slot(r: &SignedRecord) -> String {
    slot_of(r.record.body.kind(), &r.record.domain)
}

fn slot_of(kind: &str, domain: &str) -> String {
    format!("{kind}:{domain}")
}

/// The key a statement is about: the owner of a cloud record, the holder of
/// a certificate or approval.
fn subject_key(r: &SignedRecord) -> Option<&str> {
    match &r.record.body {
        Body::Cloud { .. } => Some(&r.record.key),
        Body::Certificate { holder_key, .. } | Body::Approval { holder_key } => Some(holder_key),
        _ => None,
    }
}

/// Orders two claims of one slot by different holders: the earlier serial
/// wins, then the lower hash, so every root picks the same one.
fn earlier(a: &SignedRecord, b: &SignedRecord) -> bool {
    (a.record.serial, a.hash()) < (b.record.serial, b.hash())
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

    /// Applies the zone's rules to a record from a cloud (or the root's own tools).
    pub fn accept(&mut self, r: SignedRecord) -> Result<Accepted, ZoneError> {
        self.take(r, false)
    }

    /// Applies the zone's rules to a record replicated from another root.
    /// The same rules, except that two roots which each gave one name to a
    /// different key (during a partition) settle it the same way everywhere:
    /// an enrolled holder wins over one without a certificate, then the
    /// earlier claim.
    pub fn accept_from_peer(&mut self, r: SignedRecord) -> Result<Accepted, ZoneError> {
        self.take(r, true)
    }

    fn take(&mut self, r: SignedRecord, from_peer: bool) -> Result<Accepted, ZoneError> {
        r.verify()?;
        let domain = r.record.domain.clone();
        if r.record.body.needs_root() && !self.root_keys.contains(&r.record.key) {
            return Err(ZoneError::NotRoot(domain));
        }
        if let Some(k) = subject_key(&r) {
            if self.revoked_key(&domain) == Some(k) {
                return Err(ZoneError::Revoked(domain));
            }
        }
        if let (Body::Cloud { .. }, Some(Body::Certificate { holder_key, .. })) = (
            &r.record.body,
            self.certificate(&domain).map(|c| &c.record.body),
        ) {
            // An enrolled name belongs to the holder of its certificate.
            if *holder_key != r.record.key && (!from_peer || self.get(&domain).is_none()) {
                return Err(ZoneError::Takeover(domain));
            }
        }
        let key = slot(&r);
        let new_hash = r.hash();
        let outcome = match self.slots.get(&key) {
            None => Accepted::New,
            Some(_) if self.hashes.get(&key) == Some(&new_hash) => return Ok(Accepted::Unchanged),
            Some(old) if subject_key(old) != subject_key(&r) => {
                let wins = match &r.record.body {
                    Body::Cloud { .. } if from_peer => {
                        let enrolled = |x: &SignedRecord| self.certified(&domain, &x.record.key);
                        match (enrolled(&r), enrolled(old)) {
                            (true, false) => true,
                            (false, true) => false,
                            _ => earlier(&r, old),
                        }
                    }
                    Body::Certificate { .. } | Body::Approval { .. } => earlier(&r, old),
                    _ => false,
                };
                if !wins {
                    return Err(ZoneError::Takeover(domain));
                }
                Accepted::Replaced
            }
            Some(old)
                if (
                    old.record.serial,
                    self.hashes.get(&key).copied().unwrap_or_default(),
                ) >= (r.record.serial, new_hash) =>
            {
                return Err(ZoneError::Stale {
                    domain,
                    have: old.record.serial,
                    got: r.record.serial,
                })
            }
            Some(_) => Accepted::Replaced,
        };
        if let Body::Revocation { revoked_key, .. } = &r.record.body {
            // The revoked key loses the name, its certificate and its approval.
            for kind in ["record", "certificate", "approval"] {
                let s = slot_of(kind, &domain);
                if self.slots.get(&s).and_then(subject_key) == Some(revoked_key.as_str()) {
                    self.slots.remove(&s);
                    self.hashes.remove(&s);
                }
            }
        }
        self.hashes.insert(key.clone(), new_hash);
        self.slots.insert(key, r);
        Ok(outcome)
    }

    fn revoked_key(&self, domain: &str) -> Option<&str> {
        match &self.revocation(domain)?.record.body {
            Body::Revocation { revoked_key, .. } => Some(revoked_key),
            _ => None,
        }
    }

    /// Whether a root issued `domain` a certificate for the holder of `key`.
    pub fn certified(&self, domain: &str, key: &str) -> bool {
        self.certificate(domain)
            .and_then(subject_key)
            .map(|k| k == key)
            .unwrap_or(false)
    }

    /// The record (cloud or delegation) for exactly `domain`.
    pub fn get(&self, domain: &str) -> Option<&SignedRecord> {
        self.slots.get(&slot_of("record", domain))
    }

    /// The delegation covering `domain` (its nearest ancestor with one), if any.
    pub fn delegation_for(&self, domain: &str) -> Option<&SignedRecord> {
        let mut d = domain;
        while let Some((_, parent)) = d.split_once('.') {
            if let Some(r) = self.get(parent) {
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
        self.slots.get(&slot_of("revocation", domain))
    }

    /// The latest certificate a root issued for `domain`.
    pub fn certificate(&self, domain: &str) -> Option<&SignedRecord> {
        self.slots.get(&slot_of("certificate", domain))
    }

    /// A root's approval for `domain` to enroll without a token.
    pub fn approval(&self, domain: &str) -> Option<&SignedRecord> {
        self.slots.get(&slot_of("approval", domain))
    }

    /// The roots' trust authorities (CA certificates).
    pub fn authorities(&self) -> impl Iterator<Item = &SignedRecord> {
        self.slots
            .values()
            .filter(|r| matches!(r.record.body, Body::Authority { .. }))
    }

    /// Every statement.
    pub fn all(&self) -> impl Iterator<Item = &SignedRecord> {
        self.slots.values()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slot -> record hash, for anti-entropy.
    pub fn digest(&self) -> BTreeMap<String, [u8; 32]> {
        self.hashes.clone()
    }

    /// One hash of the whole digest: two zones with the same summary hold the same records.
    pub fn summary(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for (k, v) in &self.hashes {
            h.update(k.as_bytes());
            h.update([0u8]);
            h.update(v);
        }
        h.finalize().into()
    }

    /// The records we hold that a peer with digest `theirs` lacks or holds differently.
    pub fn missing_from(&self, theirs: &BTreeMap<String, [u8; 32]>) -> Vec<SignedRecord> {
        self.slots
            .iter()
            .filter(|(k, _)| theirs.get(*k) != self.hashes.get(*k))
            .map(|(_, r)| r.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::{cloud, key};
    use super::super::record::{public_key, Body, Record, VERSION};
    use super::*;
    use ed25519_dalek::SigningKey;

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

    fn certificate(domain: &str, holder: &SigningKey, serial: u64) -> Record {
        Record {
            v: VERSION,
            domain: domain.into(),
            serial,
            ttl: 60,
            key: String::new(),
            body: Body::Certificate {
                holder_key: public_key(holder),
                cert_sha256: format!("{serial:064x}"),
                not_after: serial + 100,
                renewal: false,
            },
        }
    }

    #[test]
    fn partitioned_claims_settle_the_same_way_on_every_root() {
        let root = key(9);
        let roots = [public_key(&root)];
        // Unenrolled: the earlier claim wins, whichever arrives first.
        let a = cloud("c1.test", 10).sign(&key(1));
        let b = cloud("c1.test", 20).sign(&key(2));
        let mut z1 = Zone::new(roots.clone());
        let mut z2 = Zone::new(roots.clone());
        z1.accept(a.clone()).unwrap();
        z2.accept(b.clone()).unwrap();
        // A cloud cannot take the name over directly...
        assert_eq!(
            z1.accept(b.clone()),
            Err(ZoneError::Takeover("c1.test".into()))
        );
        // ...but replication settles the conflict deterministically.
        assert!(z1.accept_from_peer(b.clone()).is_err());
        assert_eq!(z2.accept_from_peer(a.clone()), Ok(Accepted::Replaced));
        assert_eq!(z1.digest(), z2.digest());
        // Enrolled beats earlier: key 2 got a certificate on its side.
        let mut z1 = Zone::new(roots.clone());
        let mut z2 = Zone::new(roots.clone());
        z1.accept(a.clone()).unwrap();
        z2.accept(b.clone()).unwrap();
        let cert2 = certificate("c1.test", &key(2), 30).sign(&root);
        z2.accept(cert2.clone()).unwrap();
        for r in z2.missing_from(&z1.digest()) {
            let _ = z1.accept_from_peer(r);
        }
        // The record may arrive before the certificate: a second round settles it.
        for r in z2.missing_from(&z1.digest()) {
            let _ = z1.accept_from_peer(r);
        }
        for r in z1.missing_from(&z2.digest()) {
            let _ = z2.accept_from_peer(r);
        }
        assert_eq!(z1.digest(), z2.digest());
        assert_eq!(z1.get("c1.test").unwrap().record.key, public_key(&key(2)));
        // Certificates are root statements; a revocation takes the holder's certificate with it.
        assert!(matches!(
            z1.accept(certificate("c1.test", &key(2), 31).sign(&key(5))),
            Err(ZoneError::NotRoot(_))
        ));
        let rev = revocation("c1.test", &public_key(&key(2)), 40).sign(&root);
        z1.accept(rev).unwrap();
        assert!(z1.certificate("c1.test").is_none());
        assert!(z1.get("c1.test").is_none());
        assert_eq!(z1.accept(cert2), Err(ZoneError::Revoked("c1.test".into())));
    }
}
