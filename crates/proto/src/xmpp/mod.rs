//! XMPP pieces without I/O: the one module of stanza helpers ([`stanza`]: iq requests, results
//! and errors, error conditions, bounds on received elements), our features, peers' features and
//! entity capabilities ([`disco`], XEP-0030 and XEP-0115), and the STUN and TURN servers the
//! user's XMPP server offers ([`extdisco`], XEP-0215), and the [`outbox`] that tracks our requests,
//! sends again those the server bounced while the peer was briefly offline, and remembers our
//! directed presences across reconnects.

pub mod disco;
pub mod extdisco;
pub mod outbox;
pub mod stanza;

pub use stanza::{NS_CLIENT, NS_STANZAS};
