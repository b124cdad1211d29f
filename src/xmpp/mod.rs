//! The XMPP wire: stream codec, STARTTLS, SASL and login throttling, the c2s and s2s listeners and dialer, dialback, address resolution, in-band registration, a small client. Knows sockets; routing is the actors' business.

pub mod auth_throttle;
pub mod c2s;
pub mod client;
pub mod codec;
pub mod dialback;
pub mod register;
pub mod resolve;
pub mod s2s;
pub mod sasl;
pub mod stream;
#[cfg(test)]
mod testing;
