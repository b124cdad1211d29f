//! Enrollment requests to the trust authority: a certificate signing request for a domain, signed with the cloud's directory key.

use super::record::{check_header, public_key, sign_value, verify_value, RecordError};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

/// What a cloud asks a root's trust authority for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub v: u32,
    pub domain: String,
    /// The cloud's directory key (base64 ed25519): the one its record is signed with.
    pub key: String,
    /// PKCS#10 request (PEM) for the TLS key the certificate will carry; its
    /// own signature proves possession of that key.
    pub csr_pem: String,
    /// An enrollment token from the root's configuration, if the cloud has one.
    pub token: Option<String>,
    /// Seconds since the Unix epoch when it was made.
    pub time: u64,
}

/// An enrollment request signed with the directory key it names: proof of possession of that key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEnrollment {
    pub enrollment: Enrollment,
    pub sig: String,
}

impl Enrollment {
    pub fn sign(mut self, key: &SigningKey) -> SignedEnrollment {
        self.key = public_key(key);
        let sig = sign_value(&self, key);
        SignedEnrollment {
            enrollment: self,
            sig,
        }
    }
}

impl SignedEnrollment {
    /// Checks version, domain and the directory-key signature (not the CSR).
    pub fn verify(&self) -> Result<(), RecordError> {
        let e = &self.enrollment;
        check_header(e.v, &e.domain)?;
        verify_value(e, &e.key, &self.sig)
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::key;
    use super::super::record::VERSION;
    use super::*;

    #[test]
    fn signed_by_the_key_it_names() {
        let e = Enrollment {
            v: VERSION,
            domain: "cloud1.test".into(),
            key: String::new(),
            csr_pem: "csr".into(),
            token: Some("t".into()),
            time: 1,
        }
        .sign(&key(1));
        e.verify().unwrap();
        let mut t = e.clone();
        t.enrollment.domain = "cloud2.test".into();
        assert_eq!(t.verify(), Err(RecordError::Signature));
        let mut t = e;
        t.enrollment.key = public_key(&key(2));
        assert_eq!(t.verify(), Err(RecordError::Signature));
    }
}
