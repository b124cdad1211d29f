//! Directory records: what binds a cloud's domain to its peer id, endpoints and certificate, signed by the cloud's key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format version written by this code.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("unsupported record version {0}")]
    Version(u32),
    #[error("bad public key")]
    Key,
    #[error("bad signature encoding")]
    SignatureEncoding,
    #[error("signature does not verify")]
    Signature,
    #[error("bad record: {0}")]
    Invalid(String),
    #[error("encoding: {0}")]
    Json(String),
}

/// What a record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// A cloud: where it is and what it is.
    Cloud {
        peer_id: String,
        /// s2s endpoints, "host:port".
        s2s: Vec<String>,
        /// SHA-256 of its certificate (DER), hex.
        cert_sha256: Option<String>,
        roles: Vec<String>,
        exchanges: Vec<String>,
        /// libp2p addresses (multiaddrs with `/p2p/<id>`) where it answers directory requests.
        #[serde(default)]
        p2p: Vec<String>,
    },
    /// The zone below `domain` (`*.domain`) is answered by these exchanges.
    Delegation { exchanges: Vec<String> },
    /// A root's statement that the key holding `domain` is no longer valid
    /// (and, when given, that a certificate is revoked).
    Revocation {
        revoked_key: String,
        cert_sha256: Option<String>,
        reason: String,
    },
    /// A root's trust authority: its CA certificate (PEM), a trust anchor
    /// for SASL EXTERNAL. `domain` is the root's.
    Authority { ca_pem: String },
    /// A root issued a certificate for `domain` to the holder of `holder_key`.
    Certificate {
        holder_key: String,
        cert_sha256: String,
        /// Seconds since the Unix epoch.
        not_after: u64,
        /// Whether it renewed an earlier certificate of the same holder.
        renewal: bool,
    },
    /// A root's approval for the holder of `holder_key` to enroll as `domain` without a token.
    Approval { holder_key: String },
}

impl Body {
    /// The kind of statement, which with the domain names its slot in the zone.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Cloud { .. } | Body::Delegation { .. } => "record",
            Body::Revocation { .. } => "revocation",
            Body::Authority { .. } => "authority",
            Body::Certificate { .. } => "certificate",
            Body::Approval { .. } => "approval",
        }
    }

    /// Whether only a root key may sign it.
    pub fn needs_root(&self) -> bool {
        !matches!(self, Body::Cloud { .. })
    }
}

/// A record before signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    pub domain: String,
    /// Higher replaces lower.
    pub serial: u64,
    /// Seconds resolvers may cache it.
    pub ttl: u32,
    /// Who signs it: the owner's key (base64 ed25519), or a root's for revocations.
    pub key: String,
    pub body: Body,
}

/// A record with its signature: the unit roots store and exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    pub record: Record,
    /// base64 ed25519 signature over `canonical(record)`.
    pub sig: String,
}

/// The bytes a signature covers: the record's JSON, fields in declaration order.
pub fn canonical(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).expect("records always serialise")
}

/// The base64 public key of a signing key.
pub fn public_key(k: &SigningKey) -> String {
    B64.encode(k.verifying_key().to_bytes())
}

/// Signs the JSON of `value` (base64 ed25519): records and enrollment requests.
pub fn sign_value<T: Serialize>(value: &T, key: &SigningKey) -> String {
    let bytes = serde_json::to_vec(value).expect("signed values serialise");
    B64.encode(key.sign(&bytes).to_bytes())
}

/// Checks a base64 signature by base64 public key `key` over the JSON of `value`.
pub fn verify_value<T: Serialize>(value: &T, key: &str, sig: &str) -> Result<(), RecordError> {
    let vk = verifying_key(key)?;
    let bytes = B64
        .decode(sig)
        .map_err(|_| RecordError::SignatureEncoding)?;
    let arr: [u8; 64] = bytes
        .try_into()
        .map_err(|_| RecordError::SignatureEncoding)?;
    let msg = serde_json::to_vec(value).map_err(|e| RecordError::Json(e.to_string()))?;
    vk.verify(&msg, &Signature::from_bytes(&arr))
        .map_err(|_| RecordError::Signature)
}

/// What every signed statement must satisfy before its signature is checked:
/// a version this code reads and a lower-case domain name.
pub fn check_header(v: u32, domain: &str) -> Result<(), RecordError> {
    if v != VERSION {
        return Err(RecordError::Version(v));
    }
    crate::jid::Jid::domain_jid(domain)
        .map_err(|e| RecordError::Invalid(format!("domain: {e}")))?;
    if domain != domain.to_ascii_lowercase() {
        return Err(RecordError::Invalid("domain must be lower case".into()));
    }
    Ok(())
}

fn verifying_key(s: &str) -> Result<VerifyingKey, RecordError> {
    let bytes = B64.decode(s).map_err(|_| RecordError::Key)?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| RecordError::Key)?;
    VerifyingKey::from_bytes(&arr).map_err(|_| RecordError::Key)
}

impl Record {
    /// Signs with `key`, which must be the key the record names.
    pub fn sign(mut self, key: &SigningKey) -> SignedRecord {
        self.key = public_key(key);
        let sig = sign_value(&self, key);
        SignedRecord { record: self, sig }
    }
}

impl SignedRecord {
    /// Checks version, shape and signature.
    pub fn verify(&self) -> Result<(), RecordError> {
        let r = &self.record;
        check_header(r.v, &r.domain)?;
        verify_value(r, &r.key, &self.sig)
    }

    /// A digest identifying this exact record (for anti-entropy).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(canonical(&self.record));
        h.update(self.sig.as_bytes());
        h.finalize().into()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("records always serialise")
    }

    pub fn from_json(s: &str) -> Result<SignedRecord, RecordError> {
        serde_json::from_str(s).map_err(|e| RecordError::Json(e.to_string()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub fn cloud(domain: &str, serial: u64) -> Record {
        Record {
            v: VERSION,
            domain: domain.into(),
            serial,
            ttl: 300,
            key: String::new(),
            body: Body::Cloud {
                peer_id: "12D3KooW".into(),
                s2s: vec!["127.0.0.1:5269".into()],
                cert_sha256: None,
                roles: vec!["cloud".into()],
                exchanges: vec![],
                p2p: vec![],
            },
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let s = cloud("cloud1.test", 1).sign(&key(1));
        s.verify().unwrap();
        let back = SignedRecord::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        back.verify().unwrap();
        let mut t = s.clone();
        t.record.serial = 2;
        assert_eq!(t.verify(), Err(RecordError::Signature));
        let mut t = s.clone();
        t.record.key = public_key(&key(2));
        assert_eq!(t.verify(), Err(RecordError::Signature));
        let mut t = s;
        t.record.v = 9;
        assert_eq!(t.verify(), Err(RecordError::Version(9)));
    }
}
