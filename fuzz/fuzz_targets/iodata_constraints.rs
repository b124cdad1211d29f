//! Fuzz target: XEP-0050 commands with XEP-0244 io-data and the paper's constraints, as a client sends them; what parses must compile to a query the catalog accepts.
#![no_main]

use intercloud::xmpp::codec::parse_stanza;
use intercloud_actors::catalog::{constraints, Catalog, CatalogLimits};
use intercloud_actors::element::NS_CLIENT;
use intercloud_actors::iodata;
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
    let Some(cmd) = parse_stanza(text, NS_CLIENT) else {
        return;
    };
    if let Ok(Some((_, io))) = iodata::request(&cmd) {
        let input = iodata::input(io).cloned().unwrap_or_else(|| io.clone());
        if let Ok(cs) = constraints::parse(&input) {
            let q = constraints::to_sparql(&cs, 10);
            catalog().check(&q).unwrap_or_else(|e| {
                panic!("constraints compiled to a query the catalog refuses: {e}\n{q}")
            });
        }
    }
});
