//! Fuzz target: the SASL server mechanisms (PLAIN, SCRAM-SHA-1/-256, ANONYMOUS) fed arbitrary client messages; no input may authenticate without the password.
#![no_main]

use intercloud::xmpp::sasl::{Authenticator, Step};
use intercloud_actors::store::Store;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn auth() -> &'static Authenticator {
    static A: OnceLock<Authenticator> = OnceLock::new();
    A.get_or_init(|| {
        let store = Arc::new(Store::in_memory().unwrap());
        store.add_user("user@x.test", "pencil", 16).unwrap();
        Authenticator {
            store,
            domain: "x.test".into(),
            iterations: 16,
            throttle: None,
        }
    })
}

const MECHS: [&str; 4] = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "ANONYMOUS"];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let name = MECHS[m as usize % MECHS.len()];
    let a = auth();
    let mut mech = a.start(name).unwrap();
    // Messages are separated by 0xFF (never in UTF-8).
    for msg in rest.split(|b| *b == 0xff).take(4) {
        match a.step(&mut mech, msg) {
            Step::Challenge(_) => {}
            Step::Success { jid, .. } => {
                // Without the password only ANONYMOUS, or PLAIN with it, succeeds.
                if name != "ANONYMOUS" {
                    assert!(
                        name == "PLAIN" && msg.ends_with(b"\0pencil"),
                        "{name} authenticated {jid} from {msg:?}"
                    );
                }
                return;
            }
            Step::Failure(_) => return,
        }
    }
});
