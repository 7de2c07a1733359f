//! XMPP glue around the agent.
//!
//! Sans-IO (stanzas in, stanzas out, never a connection):
//! - [`extdisco`]: STUN and TURN servers from the user's XMPP server (XEP-0215).
//! - [`disco`]: our features, peers' features and entity capabilities (XEP-0030, XEP-0115).
//! - [`outbox`]: request tracking, bounce retries and directed presences across reconnects.
//!
//! With tokio:
//! - [`jingle`]: the Jingle ICE-UDP extension to plug into the application's own XMPP client.
//! - [`connection`]: a tokio-xmpp 6 connection wrapper for bots.
//! - [`client`]: a bot client that owns a connection and runs the extension on it.

pub mod client;
pub mod connection;
pub mod disco;
pub mod extdisco;
pub mod ibb;
pub mod jingle;
pub mod nesting;
pub mod outbox;

pub use client::{ClientError, JingleClient, JingleClientConfig};
pub use connection::{XmppConfig, XmppConnection, XmppError, XmppSender};
pub use ibb::IbbChannel;
pub use jingle::{IncomingSession, JingleIce, JingleIceConfig, JingleIceError, JingleSession};

use minidom::Element;

pub(crate) use crate::jingle::stanza::set_attr;
pub use crate::jingle::stanza::{NS_CLIENT, NS_STANZAS};

/// An `<iq/>` (RFC 6120 §8.2.3) of the given type with `id` and, when known, `to`.
pub(crate) fn iq(kind: &'static str, id: &str, to: Option<&str>) -> Element {
    let mut el = Element::bare("iq", NS_CLIENT);
    set_attr(&mut el, "type", kind);
    set_attr(&mut el, "id", id);
    if let Some(to) = to {
        set_attr(&mut el, "to", to);
    }
    el
}

/// Whether `el` is an `<iq/>` of type `kind` (RFC 6120 §8.2.3). The namespace is not checked:
/// tokio-xmpp hands stanzas in `jabber:client`, a component would see `jabber:component:accept`.
pub(crate) fn is_iq(el: &Element, kind: &str) -> bool {
    el.name() == "iq" && el.attr("type") == Some(kind)
}

/// The defined condition of an error iq (RFC 6120 §8.3.3): the name of the first child of
/// `<error/>` in the stanzas namespace, or `None` when the iq carries no such element.
pub(crate) fn error_condition(iq: &Element) -> Option<String> {
    iq.children()
        .find(|c| c.name() == "error")
        .and_then(|e| e.children().find(|c| c.ns() == NS_STANZAS))
        .map(|c| c.name().to_owned())
}

/// An error iq answering `request` (RFC 6120 §8.3): `to` = the request's `from`, the same `id`,
/// `<error type=...><condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`.
pub(crate) fn error_reply(request: &Element, error_type: &'static str, condition: &str) -> Element {
    let mut reply = iq(
        "error",
        request.attr("id").unwrap_or_default(),
        request.attr("from"),
    );
    let mut error = Element::bare("error", NS_CLIENT);
    set_attr(&mut error, "type", error_type);
    error.append_child(Element::bare(condition, NS_STANZAS));
    reply.append_child(error);
    reply
}
