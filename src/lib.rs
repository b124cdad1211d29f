//! intercloud: the node of an Intercloud cloud — XMPP wire, TLS, configuration and assembly of the actor system.

pub mod adhoc_client;
pub mod bench;
pub mod config;
pub mod demo;
pub mod demo_federation;
pub mod federation;
pub mod gateway;
pub mod init;
pub mod manifests;
pub mod metrics;
pub mod negotiate;
pub mod net;
pub mod node;
pub mod p2p;
pub mod scenario;
pub mod sparql_worker;
pub mod tls;
pub mod xmpp;
