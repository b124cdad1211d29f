//! The node's persistent ed25519 key: one secret for its libp2p identity and for signing its directory records.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} does not hold a 32-byte hex key")]
    Bad(String),
}

/// The key at `path`, created (mode 0600) when missing.
pub fn load_or_create(path: &Path) -> Result<[u8; 32], KeyError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let s = s.trim();
            let bytes: Vec<u8> = (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<_, _>>()
                .map_err(|_| KeyError::Bad(name.clone()))?;
            bytes.try_into().map_err(|_| KeyError::Bad(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k: [u8; 32] = rand::random();
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).map_err(|e| KeyError::Io(name.clone(), e))?;
            }
            let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
            // Write to a temporary file and rename, so a crash never leaves half a key.
            let tmp = path.with_extension("key.tmp");
            std::fs::write(&tmp, hex).map_err(|e| KeyError::Io(name.clone(), e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
            }
            std::fs::rename(&tmp, path).map_err(|e| KeyError::Io(name, e))?;
            Ok(k)
        }
        Err(e) => Err(KeyError::Io(name, e)),
    }
}

/// The libp2p identity of a key.
pub fn keypair(secret: &[u8; 32]) -> libp2p::identity::Keypair {
    let mut s = *secret;
    let sk = libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut s)
        .expect("32 bytes is a valid ed25519 secret");
    libp2p::identity::Keypair::from(libp2p::identity::ed25519::Keypair::from(sk))
}

/// The signing key of the same secret.
pub fn signing_key(secret: &[u8; 32]) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_both_views_agree() {
        let dir = std::env::temp_dir().join(format!("ic-key-{}", rand::random::<u32>()));
        let p = dir.join("node.key");
        let a = load_or_create(&p).unwrap();
        let b = load_or_create(&p).unwrap();
        assert_eq!(a, b);
        // The libp2p public key and the record key are the same ed25519 key.
        let kp = keypair(&a);
        let pk = kp.public().try_into_ed25519().unwrap().to_bytes();
        assert_eq!(pk, signing_key(&a).verifying_key().to_bytes());
        std::fs::write(&p, "nonsense").unwrap();
        assert!(load_or_create(&p).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
