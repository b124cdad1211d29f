//! SASL server mechanisms (RFC 4422) for XMPP: SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802/7677), PLAIN (RFC 4616), ANONYMOUS (RFC 4505). Sans-IO.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::credentials::{constant_time_eq, ScramHash, ScramKeys};
use intercloud_actors::jid::Jid;
use intercloud_actors::store::{Store, StoreError};
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
    /// The name failures are counted under.
    claimed: String,
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
    /// Failed logins per account across connections (None: not counted).
    pub throttle: Option<Arc<super::auth_throttle::AuthThrottle>>,
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

    /// The name failures of `authcid` are counted under: the account when
    /// it is one of ours, else what was claimed (unknown names are counted
    /// too, so a lockout does not tell which accounts exist).
    fn claimed(&self, authcid: &str) -> String {
        match self.account(authcid) {
            Some(j) => j.to_string(),
            None => authcid.chars().take(64).collect::<String>().to_lowercase(),
        }
    }

    /// True when logins for `name` are refused for now (too many failures).
    fn locked(&self, name: &str) -> bool {
        let Some(t) = &self.throttle else {
            return false;
        };
        match t.check(None, Some(name), std::time::Instant::now()) {
            Some(r) => {
                tracing::debug!(account = name, refusal = ?r, "login refused: too many failures");
                true
            }
            None => false,
        }
    }

    fn failed(&self, name: &str) {
        if let Some(t) = &self.throttle {
            t.failed(None, Some(name), std::time::Instant::now());
        }
    }

    fn succeeded(&self, name: &str) {
        if let Some(t) = &self.throttle {
            t.succeeded(name);
        }
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
        let name = self.claimed(parts[1]);
        if self.locked(&name) {
            return Step::Failure("temporary-auth-failure");
        }
        let Some(jid) = self.account(parts[1]) else {
            self.failed(&name);
            return Step::Failure("not-authorized");
        };
        if !parts[0].is_empty() && parts[0] != jid.to_string() {
            return Step::Failure("invalid-authzid");
        }
        match self.store.scram_keys(&jid.to_string(), ScramHash::Sha256) {
            Ok(Some(k)) if k.verify_password(ScramHash::Sha256, parts[2]) => {
                self.succeeded(&name);
                Step::Success {
                    jid,
                    additional: None,
                    anonymous: false,
                }
            }
            Ok(_) => {
                self.failed(&name);
                Step::Failure("not-authorized")
            }
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
                // RFC 5802 §7: n=user,r=nonce[,ext…], each attribute once,
                // the nonce printable ASCII but ','.
                let Some(fields) = parse_fields(bare) else {
                    return Step::Failure("malformed-request");
                };
                let (Some(('n', user)), Some(('r', cnonce))) =
                    (fields.first().copied(), fields.get(1).copied())
                else {
                    return Step::Failure("malformed-request");
                };
                if !printable_nonce(cnonce) {
                    return Step::Failure("malformed-request");
                }
                let Some(user) = decode_saslname(user) else {
                    return Step::Failure("malformed-request");
                };
                let claimed = self.claimed(&user);
                if self.locked(&claimed) {
                    return Step::Failure("temporary-auth-failure");
                }
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
                // Unknown users get a made-up salt so they look like known
                // ones: the same one at every attempt (a fresh one each time
                // would tell them apart), from a secret of the node's.
                let (user, keys) = match stored {
                    Some(k) => (jid, k),
                    None => match self.unknown_user_keys(s.hash, &user) {
                        Ok(k) => (None, k),
                        Err(e) => {
                            tracing::error!(error = %e, "node secret unavailable");
                            return Step::Failure("temporary-auth-failure");
                        }
                    },
                };
                let snonce = B64.encode(rand::random::<[u8; 18]>());
                let nonce = format!("{cnonce}{snonce}");
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&keys.salt),
                    keys.iterations
                );
                s.state = ScramState::SentFirst(Box::new(SentFirst {
                    claimed,
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
                    claimed,
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
                let Some(fields) = parse_fields(without_proof) else {
                    return Step::Failure("malformed-request");
                };
                let (Some(('c', c)), Some(('r', r))) =
                    (fields.first().copied(), fields.get(1).copied())
                else {
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
                    self.failed(&claimed);
                    return Step::Failure("not-authorized");
                };
                if !constant_time_eq(&s.hash.hash(&client_key), &keys.stored_key) {
                    self.failed(&claimed);
                    return Step::Failure("not-authorized");
                }
                self.succeeded(&claimed);
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

/// The `k=value` attributes of a SCRAM message, in order; None when one is
/// not of that form (a letter, '=') or an attribute comes twice.
fn parse_fields(s: &str) -> Option<Vec<(char, &str)>> {
    let mut out: Vec<(char, &str)> = Vec::new();
    for kv in s.split(',') {
        let k = kv.chars().next().filter(char::is_ascii_alphabetic)?;
        let v = kv.get(1..)?.strip_prefix('=')?;
        if out.iter().any(|(c, _)| *c == k) {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

/// RFC 5802 §7: `printable = %x21-2B / %x2D-7E`, at least one.
fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl Authenticator {
    /// What an unknown user is shown: a salt that is the same at every
    /// attempt, and the iterations new accounts get. No key could match.
    fn unknown_user_keys(&self, hash: ScramHash, user: &str) -> Result<ScramKeys, StoreError> {
        let secret = self.store.secret("scram-unknown-user-salt")?;
        let mut tag = hash.mechanism().as_bytes().to_vec();
        tag.push(0);
        tag.extend_from_slice(user.as_bytes());
        let salt = ScramHash::Sha256.hmac(&secret, &tag)[..16].to_vec();
        Ok(ScramKeys {
            salt,
            iterations: self.iterations,
            stored_key: vec![0; hash.hash(b"").len()],
            server_key: vec![0; hash.hash(b"").len()],
        })
    }
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

    fn field<'a>(f: &[(char, &'a str)], k: char) -> Option<&'a str> {
        f.iter().find(|(c, _)| *c == k).map(|(_, v)| *v)
    }

    /// The server-first message for `user`, as fields.
    fn server_first(a: &Authenticator, mech: &str, first: &str) -> Step {
        let mut m = a.start(mech).unwrap();
        a.step(&mut m, first.as_bytes())
    }

    #[test]
    fn unknown_users_look_like_known_ones() {
        let a = auth();
        let salt =
            |user: &str| match server_first(&a, "SCRAM-SHA-256", &format!("n,,n={user},r=abc")) {
                Step::Challenge(c) => {
                    let c = String::from_utf8(c).unwrap();
                    let f = parse_fields(&c).unwrap();
                    (
                        field(&f, 's').unwrap().to_string(),
                        field(&f, 'i').unwrap().to_string(),
                    )
                }
                other => panic!("{other:?}"),
            };
        let (s1, i1) = salt("nobody");
        let (s2, i2) = salt("nobody");
        let (real, ireal) = salt("user");
        // The same salt at every attempt, as a real account's is.
        assert_eq!(s1, s2);
        assert_ne!(s1, salt("somebody").0);
        assert_ne!(s1, real);
        assert_eq!(
            B64.decode(&s1).unwrap().len(),
            B64.decode(&real).unwrap().len()
        );
        assert_eq!((i1.as_str(), i2.as_str()), (ireal.as_str(), ireal.as_str()));
    }

    #[test]
    fn scram_messages_are_checked_strictly() {
        let a = auth();
        for bad in [
            "n,,n=user,r=ab\u{1}cd",
            "n,,n=user,r=",
            "n,,n=user,r=abc,r=def",
            "n,,n=user,n=other,r=abc",
            "n,,r=abc,n=user",
            "n,,n=user,r=abc,=x",
            "n,,m=ext,n=user,r=abc",
        ] {
            assert_eq!(
                server_first(&a, "SCRAM-SHA-256", bad),
                Step::Failure("malformed-request"),
                "{bad:?}"
            );
        }
        // A final message with its attributes twice is refused too.
        let mut m = a.start("SCRAM-SHA-256").unwrap();
        let Step::Challenge(sf) = a.step(&mut m, b"n,,n=user,r=abc") else {
            panic!()
        };
        let sf = String::from_utf8(sf).unwrap();
        let nonce = field(&parse_fields(&sf).unwrap(), 'r').unwrap().to_string();
        let fin = format!("c=biws,r={nonce},r={nonce},p=AAAA");
        assert_eq!(
            a.step(&mut m, fin.as_bytes()),
            Step::Failure("malformed-request")
        );
    }

    fn auth() -> Authenticator {
        let store = Arc::new(Store::in_memory().unwrap());
        store.add_user("user@x.test", "pencil", 4096).unwrap();
        Authenticator {
            store,
            domain: "x.test".into(),
            iterations: 4096,
            throttle: None,
        }
    }

    /// A client side of SCRAM, to drive the server through a full exchange.
    fn client_final(
        hash: ScramHash,
        password: &str,
        first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let f = parse_fields(server_first).unwrap();
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
