//! The libp2p host of a node: noise + yamux over TCP (or libp2p's memory transport in-process), identify, gossipsub and request-response carrying the Intercloud Root directory.

pub mod authority;
pub mod directory;
pub mod host;
pub mod key;
pub mod membership;
pub mod protocol;
