//! Stanzas from strangers: a peer controls the shape of every element it sends us, and minidom
//! recurses once per level when it clones, compares, prints or drops one. A `session-initiate`
//! with an unknown child nested 10,000 levels deep (about 70 KB, under every server's stanza
//! size limit) used to overflow a 2 MiB task stack in the Jingle parser's copy of the
//! description. Each reader must refuse such an element before walking or copying it, answer
//! with `<policy-violation/>` (or `<bad-request/>` from a parser), and go on serving.

use std::time::Instant;

use jid::FullJid;
use jingle_ice::apps::file_description::FileDescription;
use jingle_ice::apps::tube::TubeDescription;
use jingle_ice::ibb::IbbPacket;
use jingle_ice::jingle::{
    dismantle, Condition, Jingle, LimitExceeded, SessionConfig, SessionEvent, SessionManager,
    StanzaLimits, TransportLimits,
};
use jingle_ice::xmpp::disco::parse_info_result;
use jingle_ice::xmpp::extdisco::parse_services;
use jingle_ice::xmpp::runtime::{JingleRuntime, JingleRuntimeConfig};
use jingle_ice::xmpp::stanza::{iq_type, IqType, StanzaError, NS_CLIENT};
use minidom::Element;

/// How deep the hostile child is nested: the depth that crashed recv_file.
const HOSTILE_DEPTH: usize = 10_000;
/// The stack of a tokio worker thread (and of a spawned std thread).
const WORKER_STACK: usize = 2 << 20;

fn bob() -> FullJid {
    FullJid::new("bob@example.test/b").unwrap()
}

fn mallory() -> &'static str {
    "mallory@example.test/m"
}

/// `depth` nested `<x/>` elements as XML.
fn nested(depth: usize) -> String {
    let mut s = String::with_capacity(depth * 7);
    for _ in 0..depth {
        s.push_str("<x>");
    }
    for _ in 0..depth {
        s.push_str("</x>");
    }
    s
}

/// A `session-initiate` of a file offer over ICE-UDP whose description carries `extra`.
fn initiate(id: &str, sid: &str, extra: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' from='{from}' to='bob@example.test/b'>\
         <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='{sid}' initiator='{from}'>\
         <content creator='initiator' name='0'>\
         <description xmlns='urn:xmpp:jingle:apps:file-transfer:5'>\
         <file><name>a.txt</name><size>3</size></file>{extra}</description>\
         <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='abcd' pwd='0123456789abcdefghijkl'/>\
         </content></jingle></iq>",
        from = mallory(),
    )
}

/// Runs `f` on a thread with a tokio worker's stack: a recursion on the hostile depth aborts
/// the whole test process there, as it aborted the bots.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn parse(xml: &str) -> Element {
    xml.parse().expect("well-formed XML")
}

fn error_condition(reply: &Element) -> Condition {
    assert_eq!(
        iq_type(reply),
        Some(IqType::Error),
        "{}",
        String::from(reply)
    );
    StanzaError::from_stanza(reply).unwrap().condition
}

#[test]
fn limits_are_checked_without_recursion_and_stop_at_the_first_bound() {
    let limits = StanzaLimits {
        max_depth: 4,
        max_elements: 10,
        max_bytes: 100,
    };
    assert_eq!(
        limits.check(&parse("<a xmlns='n'><b><c><d/></c></b></a>")),
        Ok(())
    );
    assert_eq!(
        limits.check(&parse("<a xmlns='n'><b><c><d><e/></d></c></b></a>")),
        Err(LimitExceeded::Depth(4))
    );
    let wide = format!("<a xmlns='n'>{}</a>", "<b/>".repeat(10));
    assert_eq!(
        limits.check(&parse(&wide)),
        Err(LimitExceeded::Elements(10))
    );
    let text = format!("<a xmlns='n'>{}</a>", "t".repeat(100));
    assert_eq!(limits.check(&parse(&text)), Err(LimitExceeded::Bytes(100)));
    let attrs = format!("<a xmlns='n' v='{}'/>", "t".repeat(100));
    assert_eq!(limits.check(&parse(&attrs)), Err(LimitExceeded::Bytes(100)));

    // 30,000 levels (three times the hostile depth): checked and taken apart on a small stack.
    // (Built, not parsed: minidom's parser takes time quadratic in the depth.)
    let mut deep = Element::bare("x", "n");
    for _ in 1..30_000 {
        deep = Element::builder("x", "n").append(deep).build();
    }
    std::thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(move || {
            assert_eq!(
                StanzaLimits::DEFAULT.check(&deep),
                Err(LimitExceeded::Depth(StanzaLimits::DEFAULT.max_depth))
            );
            dismantle(deep);
        })
        .unwrap()
        .join()
        .expect("check and dismantle do not recurse");
}

#[test]
fn an_over_deep_session_initiate_gets_policy_violation_and_the_next_offer_is_served() {
    on_worker_stack(|| {
        let mut m = SessionManager::new(bob(), SessionConfig::default());
        let now = Instant::now();
        let hostile = parse(&initiate("evil", "s1", &nested(HOSTILE_DEPTH)));
        assert!(m.handle_stanza(&hostile, now), "a Jingle request is taken");
        dismantle(hostile);
        let reply = m.poll_transmit().expect("an error reply");
        assert_eq!(reply.attr("id"), Some("evil"));
        assert_eq!(reply.attr("to"), Some(mallory()));
        assert_eq!(error_condition(&reply), Condition::PolicyViolation);
        assert!(m.poll_transmit().is_none());
        assert!(m.poll_event().is_none(), "nothing reaches the application");
        assert_eq!(m.sessions().count(), 0);

        // The same peer's next, honest offer is served as usual.
        m.handle_stanza(&parse(&initiate("good", "s2", "")), now);
        let reply = m.poll_transmit().expect("an answer");
        assert_eq!(iq_type(&reply), Some(IqType::Result));
        assert!(matches!(
            m.poll_event(),
            Some(SessionEvent::Incoming { key, .. }) if key.sid == "s2"
        ));
    });
}

#[test]
fn an_oversized_or_over_wide_session_initiate_is_refused_too() {
    on_worker_stack(|| {
        let mut m = SessionManager::new(bob(), SessionConfig::default());
        let now = Instant::now();
        let big_text = format!("<x>{}</x>", "A".repeat(StanzaLimits::DEFAULT.max_bytes));
        let wide = "<x/>".repeat(StanzaLimits::DEFAULT.max_elements);
        for (id, extra) in [("big", big_text), ("wide", wide)] {
            m.handle_stanza(&parse(&initiate(id, id, &extra)), now);
            let reply = m.poll_transmit().expect("an error reply");
            assert_eq!(reply.attr("id"), Some(id));
            assert_eq!(error_condition(&reply), Condition::PolicyViolation);
            assert_eq!(m.sessions().count(), 0);
        }
    });
}

#[test]
fn the_parsers_refuse_over_deep_elements_on_their_own() {
    on_worker_stack(|| {
        let deep = nested(HOSTILE_DEPTH);
        let jingle = parse(&format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='s'>{deep}</jingle>"
        ));
        assert!(Jingle::from_element(&jingle, TransportLimits::default()).is_err());
        dismantle(jingle);

        let file = parse(&format!(
            "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>{deep}</file></description>"
        ));
        assert!(FileDescription::from_element(&file).is_err());
        dismantle(file);

        let tube = parse(&format!(
            "<description xmlns='urn:jingle-ice:tube:0' service='http'>{deep}</description>"
        ));
        assert!(TubeDescription::from_element(&tube).is_err());
        dismantle(tube);

        let ibb = parse(&format!(
            "<iq xmlns='jabber:client' type='set' id='i' from='{}'>\
             <data xmlns='http://jabber.org/protocol/ibb' sid='s' seq='0'>{deep}</data></iq>",
            mallory()
        ));
        assert!(IbbPacket::from_iq(&ibb, 4096).is_err());
        dismantle(ibb);

        let disco = parse(&format!(
            "<iq xmlns='jabber:client' type='result' id='d'>\
             <query xmlns='http://jabber.org/protocol/disco#info'>{deep}</query></iq>"
        ));
        assert!(parse_info_result(&disco).is_err());
        dismantle(disco);

        let services = parse(&format!(
            "<iq xmlns='jabber:client' type='result' id='e'>\
             <services xmlns='urn:xmpp:extdisco:2'><service type='stun' host='192.0.2.1'>{deep}</service></services></iq>"
        ));
        assert!(parse_services(&services).is_err());
        dismantle(services);
    });
}

#[test]
fn the_extension_answers_policy_violation_and_counts_the_stanza() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(WORKER_STACK)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::spawn(async {
            let ext = JingleRuntime::new(bob(), JingleRuntimeConfig::default());
            let hostile = parse(&initiate("evil", "s1", &nested(HOSTILE_DEPTH)));
            assert!(ext.handle_stanza(&hostile), "taken, not left to the caller");
            dismantle(hostile);
            assert_eq!(ext.rejected_stanzas(), 1);
            let reply = ext.next_outgoing().await.unwrap();
            assert_eq!(reply.attr("id"), Some("evil"));
            assert_eq!(error_condition(&reply), Condition::PolicyViolation);

            // A deep message or presence is taken and dropped without an answer.
            let message = parse(&format!(
                "<message xmlns='jabber:client' from='{}'>{}</message>",
                mallory(),
                nested(HOSTILE_DEPTH)
            ));
            assert!(ext.handle_stanza(&message));
            dismantle(message);
            assert_eq!(ext.rejected_stanzas(), 2);

            // And the next honest offer reaches the application.
            assert!(ext.handle_stanza(&parse(&initiate("good", "s2", ""))));
            let reply = ext.next_outgoing().await.unwrap();
            assert_eq!(reply.attr("id"), Some("good"));
            assert_eq!(iq_type(&reply), Some(IqType::Result));
            let offer = ext.next_incoming().await.unwrap();
            assert_eq!(offer.key().sid, "s2");
            assert!(reply.is("iq", NS_CLIENT));
        })
        .await
        .expect("the worker did not overflow its stack");
    });
}
