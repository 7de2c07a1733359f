//! The tokio Jingle extension end to end in one process: two [`JingleRuntime`] instances whose
//! stanzas are carried by a tiny in-memory "server" (it stamps `from`, like a real one), real
//! ICE over 127.0.0.1, data checked both ways. The same extension against the real Prosody
//! and NATs is `tests/lab_jingle.rs`.

use std::time::Duration;

use jingle_ice::jingle::{Reason, ReasonCondition};
use minidom::Element;

mod jingle_wire;

use jingle_wire::{dc_config, pair, unwired, wire, wire_with};

const APP_NS: &str = "urn:example:test-app:0";

/// Flips the first hex digit pair of every DTLS fingerprint in a stanza (a peer lying about
/// its certificate, or a server tampering with the signalling).
fn flip_fingerprints(mut el: Element) -> Element {
    fn walk(el: &mut Element) {
        if el.name() == "fingerprint" && el.ns() == "urn:xmpp:jingle:apps:dtls:0" {
            let text = el.text();
            let rest = text.get(2..).unwrap_or_default();
            let flipped = if text.starts_with("00") {
                format!("FF{rest}")
            } else {
                format!("00{rest}")
            };
            el.take_nodes();
            el.append_text(flipped);
        }
        for child in el.children_mut() {
            walk(child);
        }
    }
    if el.attr("type") == Some("set") {
        walk(&mut el);
    }
    el
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_channel_session_carries_a_byte_stream_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b) = unwired(dc_config());
    wire(a.clone(), b.clone());
    let bob = b.clone();
    let responder = tokio::spawn(async move {
        let offer = bob.next_incoming().await.unwrap();
        let t = offer.contents()[0].transport.as_ref().unwrap();
        assert_eq!(t.ns(), "urn:xmpp:jingle:transports:webrtc-datachannel:1");
        offer
            .accept(Element::bare("description", APP_NS))
            .await
            .unwrap()
    });
    let sa = tokio::time::timeout(
        Duration::from_secs(20),
        a.connect(b.local_jid(), Element::bare("description", APP_NS)),
    )
    .await
    .unwrap()
    .unwrap();
    let sb = responder.await.unwrap();
    let ca = sa.data_channels().expect("data channels on the initiator");
    let cb = sb.data_channels().expect("data channels on the responder");
    let mut mine = ca
        .open(jingle_ice::channel::ChannelOptions::reliable(
            "test",
            "xmpp-jingle",
        ))
        .unwrap();
    let mut theirs = tokio::time::timeout(Duration::from_secs(5), cb.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(theirs.label(), "test");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        mine.write_all(&sent).await.unwrap();
        mine.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), theirs.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(got == data);
    sa.end(Reason::new(ReasonCondition::Success));
    let reason = tokio::time::timeout(Duration::from_secs(5), sb.closed())
        .await
        .unwrap();
    assert_eq!(reason.condition, ReasonCondition::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_fingerprint_ends_the_session_with_security_error() {
    let (a, b) = unwired(dc_config());
    wire_with(a.clone(), b.clone(), flip_fingerprints);
    let bob = b.clone();
    let responder = tokio::spawn(async move {
        let offer = bob.next_incoming().await.unwrap();
        offer.accept(Element::bare("description", APP_NS)).await
    });
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        a.connect(b.local_jid(), Element::bare("description", APP_NS)),
    )
    .await
    .unwrap();
    let rb = tokio::time::timeout(Duration::from_secs(30), responder)
        .await
        .unwrap()
        .unwrap();
    // Whichever side checks first refuses the certificate and ends the session with
    // <security-error/>; the other learns it from the session-terminate.
    let reasons: Vec<String> = [&result.as_ref().err(), &rb.as_ref().err()]
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(result.is_err() && rb.is_err(), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("FingerprintMismatch")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("FingerprintMismatch") || r.contains("SecurityError")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_accept_exchange_and_terminate() {
    let (a, b) = pair();
    let desc = Element::bare("description", APP_NS);
    let bob = b.clone();
    let responder = tokio::spawn(async move {
        let offer = bob.next_incoming().await.unwrap();
        assert_eq!(offer.key().peer.as_str(), "alice@example.test/a");
        assert_eq!(offer.description().unwrap().ns(), APP_NS);
        offer
            .accept(Element::bare("description", APP_NS))
            .await
            .unwrap()
    });
    let sa = tokio::time::timeout(
        Duration::from_secs(20),
        a.connect(b.local_jid(), desc.clone()),
    )
    .await
    .unwrap()
    .unwrap();
    let sb = responder.await.unwrap();
    assert_eq!(sa.key().sid, sb.key().sid);
    assert!(sa.stanzas_sent() >= 1);

    for i in 0..50u32 {
        let msg = format!("ping {i}");
        sa.connection()
            .unwrap()
            .send(1, msg.as_bytes())
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), sb.connection().unwrap().recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.data, msg.as_bytes());
        sb.connection().unwrap().send(1, &got.data).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), sa.connection().unwrap().recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.data, msg.as_bytes());
    }
    assert!(sa.selected_pair().is_some());

    sa.end(Reason::new(ReasonCondition::Success));
    let reason = tokio::time::timeout(Duration::from_secs(5), sb.closed())
        .await
        .unwrap();
    assert_eq!(reason.condition, ReasonCondition::Success);
    assert_eq!(a.session_count(), 0);
    assert_eq!(b.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_offer_fails_connect_with_the_reason() {
    let (a, b) = pair();
    let bob = b.clone();
    tokio::spawn(async move {
        let offer = bob.next_incoming().await.unwrap();
        offer.decline(Reason::new(ReasonCondition::Decline));
    });
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        a.connect(b.local_jid(), Element::bare("description", APP_NS)),
    )
    .await
    .unwrap()
    .unwrap_err();
    match err {
        jingle_ice::xmpp::JingleRuntimeError::Terminated(r) => {
            assert_eq!(r.condition, ReasonCondition::Decline)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connects_end_in_one_session() {
    let (a, b) = pair();
    let desc = Element::bare("description", APP_NS);
    let (ra, rb) = tokio::join!(
        a.connect(b.local_jid(), desc.clone()),
        b.connect(a.local_jid(), desc.clone())
    );
    let (sa, sb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(sa.key().sid, sb.key().sid);
    assert_eq!(a.session_count(), 1);
    assert_eq!(b.session_count(), 1);
    sa.connection().unwrap().send(1, b"hello").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sb.connection().unwrap().recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data, b"hello");
}
