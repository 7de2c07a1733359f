//! The Jingle extension on its own, as a client author plugs it into a tokio-xmpp client
//! (`examples/tokio_xmpp_client.rs`), without `JingleClient`: the test is the stanza pump and
//! the server. It answers disco#info (and its XEP-0115 caps node) with the features it has
//! enabled, acknowledges XEP-0215 pushes, asks our server for XEP-0215 services when the stream
//! is online, refuses what nobody handled, retries a Jingle request that the server bounced
//! while the peer was briefly offline, and re-announces itself on a new stream.

use std::sync::Arc;
use std::time::Duration;

use jid::FullJid;
use jingle_ice::apps::file_transfer;
use jingle_ice::jingle::{Reason, ReasonCondition};
use jingle_ice::xmpp::disco::NS_DISCO_INFO;
use jingle_ice::xmpp::extdisco::NS_EXTDISCO;
use jingle_ice::xmpp::stanza::{iq_type, IqType};
use jingle_ice::xmpp::{JingleRuntime, JingleRuntimeConfig};
use minidom::Element;

const WAIT: Duration = Duration::from_secs(10);
const NS_JINGLE: &str = "urn:xmpp:jingle:1";
const NS_FT: &str = "urn:xmpp:jingle:apps:file-transfer:5";

fn alice_jid() -> FullJid {
    FullJid::new("alice@example.test/a").unwrap()
}

fn bob_jid() -> FullJid {
    FullJid::new("bob@example.test/b").unwrap()
}

fn parse(xml: &str) -> Element {
    xml.parse().unwrap()
}

/// An extension with file transfer enabled and no XEP-0215 queries (unless `services`).
fn ext(jid: FullJid, services: bool) -> Arc<JingleRuntime> {
    let mut config = JingleRuntimeConfig {
        discover_services: services,
        ..JingleRuntimeConfig::default()
    };
    file_transfer::enable(&mut config);
    Arc::new(JingleRuntime::new(jid, config))
}

async fn next(ext: &JingleRuntime, what: &str) -> Element {
    tokio::time::timeout(WAIT, ext.next_outgoing())
        .await
        .unwrap_or_else(|_| panic!("no {what}"))
        .expect("the extension runs")
}

/// Takes stanzas from `ext` until one matches `pick` (the others are returned too).
async fn until(ext: &JingleRuntime, what: &str, pick: impl Fn(&Element) -> bool) -> Element {
    loop {
        let el = next(ext, what).await;
        if pick(&el) {
            return el;
        }
    }
}

fn jingle_action(el: &Element) -> Option<&str> {
    el.get_child("jingle", NS_JINGLE)
        .and_then(|j| j.attr("action"))
}

#[tokio::test]
async fn the_extension_answers_disco_info_caps_and_pushes_and_refuses_the_rest() {
    let bob = ext(bob_jid(), false);
    assert!(bob.features().contains(NS_FT), "file transfer is enabled");
    let query = parse(&format!(
        "<iq xmlns='jabber:client' type='get' id='d1' from='{}' to='{}'>\
         <query xmlns='{NS_DISCO_INFO}'/></iq>",
        alice_jid(),
        bob_jid()
    ));
    assert!(bob.handle_stanza(&query), "disco#info is the extension's");
    let reply = next(&bob, "disco#info answer").await;
    assert_eq!(iq_type(&reply), Some(IqType::Result));
    assert_eq!(reply.attr("id"), Some("d1"));
    assert_eq!(reply.attr("to"), Some(alice_jid().as_str()));
    let features: Vec<&str> = reply
        .get_child("query", NS_DISCO_INFO)
        .expect("a query payload")
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var"))
        .collect();
    for f in [
        NS_FT,
        NS_JINGLE,
        "urn:xmpp:jingle:transports:ice-udp:1",
        "urn:xmpp:jingle:transports:webrtc-datachannel:1",
        "urn:xmpp:jingle:transports:ibb:1",
        "http://jabber.org/protocol/caps",
    ] {
        assert!(features.contains(&f), "{f} advertised in {features:?}");
    }

    // XEP-0115: the caps node#ver of our presence is answered too, an unknown node is not.
    let node = bob.features().caps_query_node();
    let c = bob.caps_element();
    assert_eq!(
        format!("{}#{}", c.attr("node").unwrap(), c.attr("ver").unwrap()),
        node
    );
    let caps_query = parse(&format!(
        "<iq xmlns='jabber:client' type='get' id='d2' from='{}'>\
         <query xmlns='{NS_DISCO_INFO}' node='{node}'/></iq>",
        alice_jid()
    ));
    assert!(bob.handle_stanza(&caps_query));
    let reply = next(&bob, "caps answer").await;
    assert_eq!(iq_type(&reply), Some(IqType::Result));
    let q = reply.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(q.attr("node"), Some(node.as_str()));
    let unknown = parse(&format!(
        "<iq xmlns='jabber:client' type='get' id='d3' from='{}'>\
         <query xmlns='{NS_DISCO_INFO}' node='other#x'/></iq>",
        alice_jid()
    ));
    assert!(bob.handle_stanza(&unknown));
    let reply = next(&bob, "item-not-found").await;
    assert_eq!(iq_type(&reply), Some(IqType::Error));
    assert!(reply.get_child("error", "jabber:client").is_some());

    // XEP-0215 §3.2: a push is acknowledged.
    let push = parse(&format!(
        "<iq xmlns='jabber:client' type='set' id='p1' from='example.test'>\
         <services xmlns='{NS_EXTDISCO}'/></iq>"
    ));
    assert!(bob.handle_stanza(&push));
    let ack = next(&bob, "push ack").await;
    assert_eq!(
        (iq_type(&ack), ack.attr("id")),
        (Some(IqType::Result), Some("p1"))
    );

    // Anything else is left to the caller, who gets the <service-unavailable/> reply for the
    // requests nobody took.
    let ping = parse(&format!(
        "<iq xmlns='jabber:client' type='get' id='x1' from='{}'>\
         <ping xmlns='urn:xmpp:ping'/></iq>",
        alice_jid()
    ));
    assert!(!bob.handle_stanza(&ping));
    assert!(bob.refuse_unhandled(&ping));
    let refusal = next(&bob, "refusal").await;
    assert_eq!(iq_type(&refusal), Some(IqType::Error));
    assert_eq!(refusal.attr("id"), Some("x1"));
    let error = refusal.get_child("error", "jabber:client").unwrap();
    assert!(error.has_child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas"));
    let message = parse("<message xmlns='jabber:client' from='x@example.test/y'/>");
    assert!(!bob.handle_stanza(&message));
    assert!(
        !bob.refuse_unhandled(&message),
        "only iq requests are refused"
    );
}

#[tokio::test]
async fn a_new_stream_announces_presence_and_asks_the_server_for_services() {
    let mut config = JingleRuntimeConfig {
        presence: true,
        ..JingleRuntimeConfig::default()
    };
    file_transfer::enable(&mut config);
    let bob = Arc::new(JingleRuntime::new(bob_jid(), config));
    bob.stream_online();
    let presence = next(&bob, "presence").await;
    assert_eq!(presence.name(), "presence");
    assert_eq!(presence.attr("to"), None, "broadcast");
    assert!(presence
        .get_child("c", "http://jabber.org/protocol/caps")
        .is_some());
    let query = until(&bob, "XEP-0215 query", |e| {
        e.get_child("services", NS_EXTDISCO).is_some()
    })
    .await;
    assert_eq!(query.attr("to"), Some("example.test"));
    assert_eq!(iq_type(&query), Some(IqType::Get));
    let id = query.attr("id").unwrap();
    let answer = parse(&format!(
        "<iq xmlns='jabber:client' type='result' id='{id}' from='example.test'>\
         <services xmlns='{NS_EXTDISCO}'>\
         <service type='stun' host='192.0.2.1' port='3478' transport='udp'/>\
         </services></iq>"
    ));
    assert!(
        bob.handle_stanza(&answer),
        "our own query's answer is taken"
    );
    tokio::time::timeout(WAIT, bob.services_settled())
        .await
        .expect("the services are applied");
    let found = bob.discovered_services();
    assert_eq!(
        found.servers.stun,
        vec!["192.0.2.1:3478".parse().unwrap()],
        "{found:?}"
    );
    // A second answer with the same id is not ours any more.
    assert!(!bob.handle_stanza(&answer));
}

#[tokio::test]
async fn a_bounced_jingle_request_is_sent_again_and_the_new_stream_reannounces() {
    let alice = ext(alice_jid(), false);
    let bob = ext(bob_jid(), false);
    // Alice offers a file to Bob (she is the test's only way to make Bob emit a request).
    let a = alice.clone();
    let offer = tokio::spawn(async move {
        let description = parse(&format!(
            "<description xmlns='{NS_FT}'><file><name>f</name><size>1</size></file>\
             </description>"
        ));
        a.connect(bob_jid(), description).await
    });
    let initiate = until(&alice, "session-initiate", |e| {
        jingle_action(e) == Some("session-initiate")
    })
    .await;
    assert!(bob.handle_stanza(&initiate));
    let ack = until(&bob, "ack", |e| e.attr("id") == initiate.attr("id")).await;
    assert!(alice.handle_stanza(&ack));
    let incoming = tokio::time::timeout(WAIT, bob.next_incoming())
        .await
        .unwrap()
        .unwrap();
    incoming.decline(Reason::new(ReasonCondition::Decline));
    let terminate = until(&bob, "session-terminate", |e| {
        jingle_action(e) == Some("session-terminate")
    })
    .await;
    assert_eq!(bob.undelivered_requests(), 1);
    // Alice is offline for a moment: her server bounces the terminate, from her full JID.
    let bounce = parse(&format!(
        "<iq xmlns='jabber:client' type='error' id='{}' from='{}' to='{}'>\
         <error type='cancel'><service-unavailable \
         xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        terminate.attr("id").unwrap(),
        alice_jid(),
        bob_jid()
    ));
    assert!(bob.handle_stanza(&bounce), "the bounce is the extension's");
    assert_eq!(bob.undelivered_requests(), 1, "waiting to be sent again");
    let started = tokio::time::Instant::now();
    let again = next(&bob, "the terminate again").await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "sent again after a pause"
    );
    assert_eq!(again, terminate, "the same request, same id");
    // Alice is back and answers: delivered.
    assert!(alice.handle_stanza(&again));
    let result = until(&alice, "result", |e| e.attr("id") == again.attr("id")).await;
    assert_eq!(iq_type(&result), Some(IqType::Result));
    assert!(bob.handle_stanza(&result));
    assert_eq!(bob.undelivered_requests(), 0);
    let outcome = tokio::time::timeout(WAIT, offer).await.unwrap().unwrap();
    assert!(outcome.is_err(), "declined");

    // Alice's stream is lost and a new one is up: her directed presence to Bob goes out again
    // first, then a disco#info probe to him.
    alice.stream_lost();
    alice.stream_online();
    let presence = next(&alice, "directed presence").await;
    assert_eq!(
        (presence.name(), presence.attr("to")),
        ("presence", Some(bob_jid().as_str()))
    );
    let probe = next(&alice, "probe").await;
    assert_eq!(probe.attr("to"), Some(bob_jid().as_str()));
    assert!(probe.get_child("query", NS_DISCO_INFO).is_some());
    // Bob answers the probe itself (disco#info); Alice takes the answer.
    assert!(bob.handle_stanza(&probe));
    let answer = next(&bob, "probe answer").await;
    assert!(alice.handle_stanza(&answer));
}

#[tokio::test]
async fn while_the_stream_is_lost_stanzas_wait_for_the_new_one() {
    let bob = ext(bob_jid(), false);
    bob.stream_lost();
    let query = parse(&format!(
        "<iq xmlns='jabber:client' type='get' id='w1' from='{}'>\
         <query xmlns='{NS_DISCO_INFO}'/></iq>",
        alice_jid()
    ));
    assert!(bob.handle_stanza(&query));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bob.next_outgoing())
            .await
            .is_err(),
        "nothing goes out while offline"
    );
    assert_eq!(bob.queued_stanzas(), 1, "kept");
    bob.stream_online();
    let reply = next(&bob, "the kept answer").await;
    assert_eq!(reply.attr("id"), Some("w1"));
    assert_eq!(bob.queued_stanzas(), 0);
}
