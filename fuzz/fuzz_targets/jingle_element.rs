//! Fuzz target: read any byte string the way a stanza from a stranger is read — through the
//! stream's nesting bound, as XML, then as a `<jingle/>` element on its own and as the payload
//! of a Jingle request to the session machine. Every step must return an error or a value,
//! never panic or recurse on the input's depth; what the parser reads, it renders and reads
//! back.
#![no_main]

use std::time::Instant;

use jid::FullJid;
use jingle_ice::apps::file_description::FileDescription;
use jingle_ice::apps::tube::TubeDescription;
use jingle_ice::xmpp::stanza::{set_attr, NS_CLIENT};
use jingle_ice::jingle::{dismantle, Jingle, SessionConfig, SessionManager, TransportLimits};
use jingle_ice::xmpp::nesting::{NestingFilter, MAX_STREAM_DEPTH};
use libfuzzer_sys::fuzz_target;
use minidom::Element;

fuzz_target!(|data: &[u8]| {
    let mut filter = NestingFilter::new(MAX_STREAM_DEPTH);
    let mut xml = Vec::with_capacity(data.len() + 1);
    filter.feed(data, &mut xml);
    let Ok(text) = std::str::from_utf8(&xml) else {
        return;
    };
    let Ok(el) = text.parse::<Element>() else {
        return;
    };
    let limits = TransportLimits::default();
    if let Ok(jingle) = Jingle::from_element(&el, limits) {
        let rendered = jingle.to_element();
        assert!(
            Jingle::from_element(&rendered, limits).is_ok(),
            "what was read renders into something readable"
        );
        for content in &jingle.contents {
            if let Some(d) = &content.description {
                let _ = FileDescription::from_element(d);
                let _ = TubeDescription::from_element(d);
            }
        }
    }
    let (Ok(local), Ok(peer)) = (
        FullJid::new("bob@example.test/b"),
        FullJid::new("mallory@example.test/m"),
    ) else {
        return;
    };
    let mut iq = Element::builder("iq", NS_CLIENT).append(el).build();
    set_attr(&mut iq, "type", "set");
    set_attr(&mut iq, "id", "fuzz");
    set_attr(&mut iq, "from", peer.as_str());
    let mut manager = SessionManager::new(
        local,
        SessionConfig {
            seed: Some(1),
            ..SessionConfig::default()
        },
    );
    manager.handle_stanza(&iq, Instant::now());
    while manager.poll_transmit().is_some() {}
    while manager.poll_event().is_some() {}
    dismantle(iq);
});
