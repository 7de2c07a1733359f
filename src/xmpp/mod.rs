//! The XMPP side: the Jingle ICE-UDP extension that runs next to the application's own
//! tokio-xmpp client ([`jingle`]).

pub mod jingle;

pub use jingle::{IncomingSession, JingleIce, JingleIceConfig, JingleIceError, JingleSession};
