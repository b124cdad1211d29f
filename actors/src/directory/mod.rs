//! The Intercloud Root directory's data: signed records, the zone and its acceptance rules, enrollment requests, the audit trail. Sans-IO; libp2p carries it (src/p2p).

pub mod audit;
pub mod enrollment;
pub mod record;
pub mod zone;
