//! XMPP glue: a convenience client connection for bots and examples (RFC 6120, RFC 6121).

mod connection;
pub use connection::*;
