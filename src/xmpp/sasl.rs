//! SASL server mechanisms (RFC 4422) for XMPP: SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802/7677), PLAIN (RFC 4616), ANONYMOUS (RFC 4505). Sans-IO.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::credentials::{constant_time_eq, ScramHash, ScramKeys};
use intercloud_actors::jid::Jid;
use intercloud_actors::store::Store;
use std::sync::Arc;

pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// What a mechanism says after each client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Challenge(Vec<u8>),
    Success {
        jid: Jid,
        additional: Option<Vec<u8>>,
        anonymous: bool,
    },
    /// A SASL failure condition of RFC 6120 §6.5.
    Failure(&'static str),
}

/// The mechanism names offered, in preference order, for a stream.
pub fn offered(tls: bool, anonymous: bool) -> Vec<&'static str> {
    let mut m = vec!["SCRAM-SHA-256", "SCRAM-SHA-1"];
    if tls {
        m.push("PLAIN");
    }
    if anonymous {
        m.push("ANONYMOUS");
    }
    m
}

/// A running exchange.
pub enum Mechanism {
    Plain,
    Anonymous,
    Scram(Box<Scram>),
}

/// Server side of SCRAM without channel binding.
pub struct Scram {
    hash: ScramHash,
    state: ScramState,
}

enum ScramState {
    Start,
    SentFirst(Box<SentFirst>),
    Done,
}

/// What the server remembers between its first message and the client's final one.
struct SentFirst {
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    user: Option<Jid>,
    keys: ScramKeys,
}

/// Shared context of the mechanisms.
pub struct Authenticator {
    pub store: Arc<Store>,
    pub domain: String,
    pub iterations: u32,
}

impl Authenticator {
    /// Starts mechanism `name`; None when it is not supported.
    pub fn start(&self, name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "ANONYMOUS" => Some(Mechanism::Anonymous),
            "SCRAM-SHA-1" => Some(Mechanism::Scram(Box::new(Scram {
                hash: ScramHash::Sha1,
                state: ScramState::Start,
            }))),
            "SCRAM-SHA-256" => Some(Mechanism::Scram(Box::new(Scram {
                hash: ScramHash::Sha256,
                state: ScramState::Start,
            }))),
            _ => None,
        }
    }

    /// The account JID for an authentication identity (`user` or `user@domain`).
    fn account(&self, authcid: &str) -> Option<Jid> {
        let local = match authcid.split_once('@') {
            Some((l, d)) if d.eq_ignore_ascii_case(&self.domain) => l,
            Some(_) => return None,
            None => authcid,
        };
        Jid::new(Some(local), &self.domain, None).ok()
    }

    /// Feeds the client's data (initial response or a response) to `mech`.
    pub fn step(&self, mech: &mut Mechanism, data: &[u8]) -> Step {
        match mech {
            Mechanism::Plain => self.plain(data),
            Mechanism::Anonymous => {
                let local = format!("anon-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
                match Jid::new(Some(&local), &self.domain, None) {
                    Ok(jid) => Step::Success {
                        jid,
                        additional: None,
                        anonymous: true,
                    },
                    Err(_) => Step::Failure("temporary-auth-failure"),
                }
            }
            Mechanism::Scram(s) => self.scram(s, data),
        }
    }

    fn plain(&self, data: &[u8]) -> Step {
        let Ok(s) = std::str::from_utf8(data) else {
            return Step::Failure("malformed-request");
        };
        let parts: Vec<&str> = s.split('\0').collect();
        if parts.len() != 3 || parts[1].is_empty() {
            return Step::Failure("malformed-request");
        }
        let Some(jid) = self.account(parts[1]) else {
            return Step::Failure("not-authorized");
        };
        if !parts[0].is_empty() && parts[0] != jid.to_string() {
            return Step::Failure("invalid-authzid");
        }
        match self.store.scram_keys(&jid.to_string(), ScramHash::Sha256) {
            Ok(Some(k)) if k.verify_password(ScramHash::Sha256, parts[2]) => Step::Success {
                jid,
                additional: None,
                anonymous: false,
            },
            Ok(_) => Step::Failure("not-authorized"),
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                Step::Failure("temporary-auth-failure")
            }
        }
    }

    fn scram(&self, s: &mut Scram, data: &[u8]) -> Step {
        let Ok(msg) = std::str::from_utf8(data) else {
            return Step::Failure("malformed-request");
        };
        match std::mem::replace(&mut s.state, ScramState::Done) {
            ScramState::Start => {
                // gs2-header: we do not offer -PLUS, so "p=" is refused.
                let mut it = msg.splitn(3, ',');
                let (Some(cb), Some(authzid), Some(bare)) = (it.next(), it.next(), it.next())
                else {
                    return Step::Failure("malformed-request");
                };
                if cb != "n" && cb != "y" {
                    return Step::Failure("malformed-request");
                }
                let fields = parse_fields(bare);
                let (Some(user), Some(cnonce)) = (field(&fields, 'n'), field(&fields, 'r')) else {
                    return Step::Failure("malformed-request");
                };
                if cnonce.is_empty() || bare.starts_with("m=") {
                    return Step::Failure("malformed-request");
                }
                let Some(user) = decode_saslname(user) else {
                    return Step::Failure("malformed-request");
                };
                let jid = self.account(&user);
                if let (Some(j), Some(a)) = (&jid, authzid.strip_prefix("a=")) {
                    if decode_saslname(a).as_deref() != Some(&j.to_string()) {
                        return Step::Failure("invalid-authzid");
                    }
                }
                let stored = match &jid {
                    Some(j) => match self.store.scram_keys(&j.to_string(), s.hash) {
                        Ok(k) => k,
                        Err(e) => {
                            tracing::error!(error = %e, "account lookup failed");
                            return Step::Failure("temporary-auth-failure");
                        }
                    },
                    None => None,
                };
                // Unknown users get a made-up salt so they look like known ones.
                let (user, keys) = match stored {
                    Some(k) => (jid, k),
                    None => (
                        None,
                        ScramKeys::derive(s.hash, "", self.iterations.min(4096)),
                    ),
                };
                let snonce = B64.encode(rand::random::<[u8; 18]>());
                let nonce = format!("{cnonce}{snonce}");
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&keys.salt),
                    keys.iterations
                );
                s.state = ScramState::SentFirst(Box::new(SentFirst {
                    gs2_header: format!("{cb},{authzid},"),
                    client_first_bare: bare.to_string(),
                    server_first: server_first.clone(),
                    nonce,
                    user,
                    keys,
                }));
                Step::Challenge(server_first.into_bytes())
            }
            ScramState::SentFirst(first) => {
                let SentFirst {
                    gs2_header,
                    client_first_bare,
                    server_first,
                    nonce,
                    user,
                    keys,
                } = *first;
                let Some(i) = msg.rfind(",p=") else {
                    return Step::Failure("malformed-request");
                };
                let without_proof = &msg[..i];
                let fields = parse_fields(without_proof);
                let (Some(c), Some(r)) = (field(&fields, 'c'), field(&fields, 'r')) else {
                    return Step::Failure("malformed-request");
                };
                let Ok(proof) = B64.decode(&msg[i + 3..]) else {
                    return Step::Failure("incorrect-encoding");
                };
                if B64.decode(c).ok().as_deref() != Some(gs2_header.as_bytes()) || r != nonce {
                    return Step::Failure("not-authorized");
                }
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let sig = s.hash.hmac(&keys.stored_key, auth_message.as_bytes());
                if proof.len() != sig.len() {
                    return Step::Failure("not-authorized");
                }
                let client_key: Vec<u8> = proof.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
                let Some(jid) = user else {
                    return Step::Failure("not-authorized");
                };
                if !constant_time_eq(&s.hash.hash(&client_key), &keys.stored_key) {
                    return Step::Failure("not-authorized");
                }
                let server_sig = s.hash.hmac(&keys.server_key, auth_message.as_bytes());
                Step::Success {
                    jid,
                    additional: Some(format!("v={}", B64.encode(server_sig)).into_bytes()),
                    anonymous: false,
                }
            }
            ScramState::Done => Step::Failure("malformed-request"),
        }
    }
}

fn parse_fields(s: &str) -> Vec<(char, &str)> {
    s.split(',')
        .filter_map(|kv| {
            let mut c = kv.chars();
            let k = c.next()?;
            let rest = kv.get(1..)?;
            rest.strip_prefix('=').map(|v| (k, v))
        })
        .collect()
}

fn field<'a>(f: &[(char, &'a str)], k: char) -> Option<&'a str> {
    f.iter().find(|(c, _)| *c == k).map(|(_, v)| *v)
}

fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let store = Arc::new(Store::in_memory().unwrap());
        store.add_user("user@x.test", "pencil", 4096).unwrap();
        Authenticator {
            store,
            domain: "x.test".into(),
            iterations: 4096,
        }
    }

    /// A client side of SCRAM, to drive the server through a full exchange.
    fn client_final(
        hash: ScramHash,
        password: &str,
        first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let f = parse_fields(server_first);
        let salt = B64.decode(field(&f, 's').unwrap()).unwrap();
        let iters: u32 = field(&f, 'i').unwrap().parse().unwrap();
        let nonce = field(&f, 'r').unwrap();
        let salted = hash.salted_password(password.as_bytes(), &salt, iters);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored = hash.hash(&client_key);
        let without = format!("c=biws,r={nonce}");
        let am = format!("{first_bare},{server_first},{without}");
        let sig = hash.hmac(&stored, am.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_sig = hash.hmac(&hash.hmac(&salted, b"Server Key"), am.as_bytes());
        (format!("{without},p={}", B64.encode(proof)), server_sig)
    }

    fn run_scram(a: &Authenticator, mech: &str, hash: ScramHash, user: &str, pw: &str) -> Step {
        let mut m = a.start(mech).unwrap();
        let bare = format!("n={user},r=abcdefghijkl");
        let Step::Challenge(sf) = a.step(&mut m, format!("n,,{bare}").as_bytes()) else {
            panic!()
        };
        let sf = String::from_utf8(sf).unwrap();
        let (fin, server_sig) = client_final(hash, pw, &bare, &sf);
        let st = a.step(&mut m, fin.as_bytes());
        if let Step::Success { additional, .. } = &st {
            assert_eq!(
                additional.as_deref().unwrap(),
                format!("v={}", B64.encode(server_sig)).as_bytes()
            );
        }
        st
    }

    #[test]
    fn scram_both_hashes() {
        let a = auth();
        for (m, h) in [
            ("SCRAM-SHA-1", ScramHash::Sha1),
            ("SCRAM-SHA-256", ScramHash::Sha256),
        ] {
            assert!(matches!(
                run_scram(&a, m, h, "user", "pencil"),
                Step::Success { .. }
            ));
            assert_eq!(
                run_scram(&a, m, h, "user", "wrong"),
                Step::Failure("not-authorized")
            );
            assert_eq!(
                run_scram(&a, m, h, "nobody", "pencil"),
                Step::Failure("not-authorized")
            );
        }
    }

    #[test]
    fn plain_and_garbage() {
        let a = auth();
        let mut m = a.start("PLAIN").unwrap();
        assert!(matches!(
            a.step(&mut m, b"\0user\0pencil"),
            Step::Success { .. }
        ));
        assert_eq!(
            a.step(&mut m, b"\0user\0nope"),
            Step::Failure("not-authorized")
        );
        assert_eq!(
            a.step(&mut m, b"garbage"),
            Step::Failure("malformed-request")
        );
        let mut s = a.start("SCRAM-SHA-256").unwrap();
        assert_eq!(
            a.step(&mut s, b"p=tls-unique,,n=user,r=x"),
            Step::Failure("malformed-request")
        );
        let mut s = a.start("SCRAM-SHA-256").unwrap();
        assert_eq!(
            a.step(&mut s, b"\xff\xfe"),
            Step::Failure("malformed-request")
        );
    }
}
