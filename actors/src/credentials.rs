//! SCRAM credentials (RFC 5802 / RFC 7677): salted keys derived from a password, never the password itself.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The hash a SCRAM mechanism uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// Hi() of RFC 5802: PBKDF2 with this hash's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the server keeps for one hash: enough to verify, not to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramKeys {
    /// Derives the keys for `password` with a fresh random salt.
    pub fn derive(hash: ScramHash, password: &str, iterations: u32) -> ScramKeys {
        let salt: [u8; 16] = rand::random();
        ScramKeys::derive_with_salt(hash, password, &salt, iterations)
    }

    pub fn derive_with_salt(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> ScramKeys {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }

    /// Checks a plaintext password (SASL PLAIN) against these keys.
    pub fn verify_password(&self, hash: ScramHash, password: &str) -> bool {
        let k = ScramKeys::derive_with_salt(hash, password, &self.salt, self.iterations);
        constant_time_eq(&k.stored_key, &self.stored_key)
    }
}

/// Compares without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn rfc5802_example_keys() {
        // RFC 5802 §5: user "user", password "pencil", salt QSXCR+Q6sek8bf92, i=4096.
        let salt = base64::engine::general_purpose::STANDARD
            .decode("QSXCR+Q6sek8bf92")
            .unwrap();
        let k = ScramKeys::derive_with_salt(ScramHash::Sha1, "pencil", &salt, 4096);
        let salted = ScramHash::Sha1.salted_password(b"pencil", &salt, 4096);
        let server_sig_msg = b"n=user,r=fyko+d2lbbFgONRv9qkxdawL,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        let sig = ScramHash::Sha1.hmac(
            &ScramHash::Sha1.hmac(&salted, b"Server Key"),
            server_sig_msg,
        );
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(sig),
            "rmF9pqV8S7suAoZWja4dJRkFsKQ="
        );
        assert!(k.verify_password(ScramHash::Sha1, "pencil"));
        assert!(!k.verify_password(ScramHash::Sha1, "pencil2"));
    }
}
