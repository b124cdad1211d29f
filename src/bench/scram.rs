//! The client side of SCRAM (RFC 5802 / RFC 7677) as pure functions: the first message, the final one with its proof, and the server signature to expect.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::credentials::ScramHash;

/// One client's exchange.
pub struct ScramClient {
    pub hash: ScramHash,
    cnonce: String,
    client_first_bare: String,
}

impl ScramClient {
    pub fn new(hash: ScramHash, user: &str) -> ScramClient {
        let cnonce = format!("{:032x}", rand::random::<u128>());
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            client_first_bare: format!("n={name},r={cnonce}"),
            cnonce,
        }
    }

    /// The initial response (no channel binding).
    pub fn first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// From the server-first message: the client-final message and the server
    /// signature the server's `v=` must carry.
    pub fn finish(&self, server_first: &str, password: &str) -> Result<(String, Vec<u8>), String> {
        let field = |k: &str| {
            server_first
                .split(',')
                .find_map(|p| p.strip_prefix(k))
                .map(str::to_string)
        };
        let (Some(nonce), Some(salt), Some(iters)) = (field("r="), field("s="), field("i=")) else {
            return Err(format!("bad server-first {server_first:?}"));
        };
        if !nonce.starts_with(&self.cnonce) {
            return Err("server nonce does not extend ours".into());
        }
        let salt = B64.decode(salt).map_err(|e| e.to_string())?;
        let iters: u32 = iters
            .parse()
            .map_err(|_| "bad iteration count".to_string())?;
        let h = self.hash;
        let salted = h.salted_password(password.as_bytes(), &salt, iters);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let sig = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = h.hmac(&salted, b"Server Key");
        let expected = h.hmac(&server_key, auth_message.as_bytes());
        Ok((
            format!("{without_proof},p={}", B64.encode(&proof)),
            expected,
        ))
    }
}
