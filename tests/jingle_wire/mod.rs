//! Shared by the in-process Jingle tests (`mod jingle_wire;`): two [`JingleRuntime`] instances
//! joined by a tiny in-memory "server" that stamps `from` like a real one, with real ICE over
//! 127.0.0.1.
#![allow(dead_code)]

use std::sync::Arc;

use jid::FullJid;
use jingle_ice::ice::Role;
use jingle_ice::net::IceConnection;
use jingle_ice::xmpp::{JingleRuntime, JingleRuntimeConfig};
use minidom::Element;

/// Plain ICE-UDP sessions (the datagram tests below read the ICE connection directly).
pub fn config() -> JingleRuntimeConfig {
    JingleRuntimeConfig {
        data_channels: false,
        ..dc_config()
    }
}

/// Sessions with the `webrtc-datachannel:1` transport (the default).
pub fn dc_config() -> JingleRuntimeConfig {
    JingleRuntimeConfig {
        builder: Arc::new(|role: Role| {
            IceConnection::builder(role)
                .include_loopback(true)
                .allow_address("127.0.0.1".parse().unwrap())
        }),
        ..JingleRuntimeConfig::default()
    }
}

pub fn stamp(mut stanza: Element, from: &FullJid) -> Element {
    stanza.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::NcName::try_from("from").unwrap(),
        from.as_str(),
    );
    stanza
}

/// Carries every stanza one extension emits to the other.
pub fn wire(a: Arc<JingleRuntime>, b: Arc<JingleRuntime>) {
    wire_with(a, b, |s| s);
}

/// Carries stanzas, passing each through `tamper` first.
pub fn wire_with(a: Arc<JingleRuntime>, b: Arc<JingleRuntime>, tamper: fn(Element) -> Element) {
    // Nobody listens to the tap: its reports are dropped.
    drop(wire_tapped(a, b, tamper));
}

/// Carries stanzas like [`wire_with`] and reports each one (sender's JID, stanza as
/// delivered) on the returned channel.
pub fn wire_tapped(
    a: Arc<JingleRuntime>,
    b: Arc<JingleRuntime>,
    tamper: fn(Element) -> Element,
) -> tokio::sync::mpsc::UnboundedReceiver<(FullJid, Element)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (src, dst) in [(a.clone(), b.clone()), (b, a)] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let from = src.local_jid();
            while let Some(s) = src.next_outgoing().await {
                let s = tamper(stamp(s, &from));
                let taken = dst.handle_stanza(&s);
                assert!(taken || s.name() == "presence", "stanza not taken: {s:?}");
                let _ = tx.send((from.clone(), s));
            }
        });
    }
    rx
}

/// Removes every ICE candidate from the stanzas: no peer-to-peer path can be found.
pub fn strip_candidates(mut el: Element) -> Element {
    fn walk(el: &mut Element) {
        let ns = el.ns();
        while el.remove_child("candidate", ns.as_str()).is_some() {}
        for child in el.children_mut() {
            walk(child);
        }
    }
    walk(&mut el);
    el
}

pub fn pair() -> (Arc<JingleRuntime>, Arc<JingleRuntime>) {
    let (a, b) = unwired(config());
    wire(a.clone(), b.clone());
    (a, b)
}

pub fn unwired(config: JingleRuntimeConfig) -> (Arc<JingleRuntime>, Arc<JingleRuntime>) {
    let a = Arc::new(JingleRuntime::new(
        FullJid::new("alice@example.test/a").unwrap(),
        config.clone(),
    ));
    let b = Arc::new(JingleRuntime::new(
        FullJid::new("bob@example.test/b").unwrap(),
        config,
    ));
    (a, b)
}
