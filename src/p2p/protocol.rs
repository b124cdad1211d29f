//! The directory's request-response protocol between nodes and roots (JSON over libp2p streams).

use intercloud_actors::directory::enrollment::SignedEnrollment;
use intercloud_actors::directory::record::SignedRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PROTOCOL: &str = "/intercloud/directory/1";
pub const TOPIC: &str = "intercloud/zone/1";
/// What roots put in identify's agent version, so peers know them.
pub const ROOT_AGENT: &str = "intercloud-root/1";
pub const NODE_AGENT: &str = "intercloud-node/1";

/// A zone digest on the wire: slot -> hex hash.
pub type WireDigest = BTreeMap<String, String>;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Take this record into the zone.
    Register(SignedRecord),
    /// What is the record for this domain?
    Resolve(String),
    /// Is there a revocation for this domain?
    Revocation(String),
    /// Anti-entropy, step 0: the hash of my whole digest (hex). Equal:
    /// `Accepted`; different: `Sync` with no records and the peer's digest.
    Summary(String),
    /// Anti-entropy, step 1: here is my digest.
    Digest(WireDigest),
    /// Anti-entropy, step 3: records you lacked.
    Push(Vec<SignedRecord>),
    /// Trust authority: issue (or renew) a certificate.
    Enroll(SignedEnrollment),
    /// The roots' CA certificates (authority records).
    Authorities,
    /// Enrollment requests waiting for approval on this root: (domain, key).
    PendingEnrollments,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Accepted,
    Refused(String),
    Record(Option<SignedRecord>),
    /// Anti-entropy, step 2: the records you lack, and my digest.
    Sync {
        records: Vec<SignedRecord>,
        digest: WireDigest,
    },
    /// A certificate (and the CA's), PEM, with the current trust anchors.
    Enrolled {
        chain_pem: String,
        authorities: Vec<SignedRecord>,
    },
    /// The enrollment waits for an administrator's approval.
    Pending(String),
    Records(Vec<SignedRecord>),
    /// The name is in a delegated zone: ask its exchanges (their records carry their addresses).
    Referral {
        delegation: SignedRecord,
        exchanges: Vec<SignedRecord>,
    },
    Enrollments(Vec<(String, String)>),
}

pub fn to_wire(d: &BTreeMap<String, [u8; 32]>) -> WireDigest {
    d.iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|b| format!("{b:02x}")).collect()))
        .collect()
}

pub fn from_wire(d: &WireDigest) -> BTreeMap<String, [u8; 32]> {
    d.iter()
        .filter_map(|(k, v)| {
            let bytes: Vec<u8> = (0..v.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(v.get(i..i + 2)?, 16).ok())
                .collect();
            Some((k.clone(), bytes.try_into().ok()?))
        })
        .collect()
}
