//! Fuzz target: a cloud's resource description (Turtle) as publish_resources takes it from a peer.
#![no_main]

use intercloud_actors::catalog::{Catalog, CatalogLimits};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| Catalog::new(CatalogLimits::default()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = catalog();
    if c.publish("fuzz.test", text).is_ok() {
        // What was taken can be listed and replaced.
        let _ = c.clouds();
        let _ = c.publish("fuzz.test", "");
    }
});
