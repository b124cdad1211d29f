//! The governance trail: an append-only, hash-chained log of enrollments, renewals, revocations and delegations.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One entry; `prev` is the hash of the entry before (all zeros for the first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// Seconds since the Unix epoch, as the writing root saw them.
    pub time: u64,
    /// "enroll", "renew", "revoke", "delegate".
    pub action: String,
    pub domain: String,
    /// Which root wrote it (its public key).
    pub by: String,
    pub detail: String,
    pub prev: String,
}

impl Entry {
    /// The entry that follows `prev` (or the first one).
    pub fn after(
        prev: Option<&Entry>,
        time: u64,
        action: &str,
        domain: &str,
        by: &str,
        detail: &str,
    ) -> Entry {
        let (seq, prev) = match prev {
            Some(e) => (e.seq + 1, e.hash()),
            None => (0, GENESIS.to_string()),
        };
        Entry {
            seq,
            time,
            action: action.into(),
            domain: domain.into(),
            by: by.into(),
            detail: detail.into(),
            prev,
        }
    }

    /// This entry's hash (hex), which the next entry carries.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("entries always serialise");
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditError {
    #[error("entry {0} does not follow entry {1}")]
    Sequence(u64, u64),
    #[error("entry {0} does not carry the hash of the entry before it")]
    Chain(u64),
}

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit log in memory.
#[derive(Clone, Debug, Default)]
pub struct AuditLog {
    entries: Vec<Entry>,
}

impl AuditLog {
    /// Appends an entry, chaining it to the last one.
    pub fn append(
        &mut self,
        time: u64,
        action: &str,
        domain: &str,
        by: &str,
        detail: &str,
    ) -> &Entry {
        let e = Entry::after(self.entries.last(), time, action, domain, by, detail);
        self.entries.push(e);
        self.entries.last().expect("just pushed")
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Checks the whole chain.
    pub fn verify(entries: &[Entry]) -> Result<(), AuditError> {
        let mut prev = GENESIS.to_string();
        for (i, e) in entries.iter().enumerate() {
            if e.seq != i as u64 {
                return Err(AuditError::Sequence(e.seq, i as u64));
            }
            if e.prev != prev {
                return Err(AuditError::Chain(e.seq));
            }
            prev = e.hash();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_detects_tampering() {
        let mut log = AuditLog::default();
        log.append(1, "enroll", "c1.test", "root1", "cert abc");
        log.append(2, "revoke", "c1.test", "root1", "key compromised");
        log.append(3, "delegate", "asia.test", "root2", "exchange.asia.test");
        AuditLog::verify(log.entries()).unwrap();
        let mut t = log.entries().to_vec();
        t[1].detail = "nothing happened".into();
        assert_eq!(AuditLog::verify(&t), Err(AuditError::Chain(2)));
        let mut t = log.entries().to_vec();
        t.remove(1);
        assert!(AuditLog::verify(&t).is_err());
    }
}
