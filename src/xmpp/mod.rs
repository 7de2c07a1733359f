//! XMPP glue around the agent.
//!
//! Sans-IO, from the protocol crate (stanzas in, stanzas out, never a connection):
//! - [`stanza`]: iq requests, results and errors, error conditions, bounds on received elements.
//! - [`extdisco`]: STUN and TURN servers from the user's XMPP server (XEP-0215), with
//!   [`extdisco::resolve`], the one step that does I/O (DNS).
//! - [`disco`]: our features, peers' features and entity capabilities (XEP-0030, XEP-0115).
//! - [`outbox`]: request tracking, bounce retries and directed presences across reconnects.
//!
//! With tokio:
//! - [`runtime`]: the Jingle runtime, the extension to plug into the application's own XMPP client
//!   (any tokio-xmpp client: it only needs the stanza pump).
//! - [`connection`]: a tokio-xmpp 6 connection wrapper for bots.
//! - [`client`]: a bot client that owns a connection and runs the extension on it.
//! - [`stream`]: one byte-stream API over every transport of a session.

pub mod client;
pub mod connection;
pub mod extdisco;
pub mod ibb;
pub mod nesting;
pub mod runtime;
pub mod stream;

pub use client::{ClientError, JingleClient, JingleClientConfig};
pub use connection::{XmppConfig, XmppConnection, XmppError, XmppSender};
pub use ibb::IbbChannel;
pub use runtime::{
    IncomingSession, JingleRuntime, JingleRuntimeConfig, JingleRuntimeError, JingleSession,
};
pub use stream::SessionStream;

pub use jingle_ice_proto::xmpp::{disco, outbox, stanza};
pub use stanza::{NS_CLIENT, NS_STANZAS};
