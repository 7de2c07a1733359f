//! The tokio Jingle extension end to end in one process: two [`JingleIce`] instances whose
//! stanzas are carried by a tiny in-memory "server" (it stamps `from`, like a real one), real
//! ICE over 127.0.0.1, data checked both ways. The same extension against the real Prosody
//! and NATs is `tests/lab_jingle.rs`.

use std::sync::Arc;
use std::time::Duration;

use jid::FullJid;
use jingle_ice::ice::Role;
use jingle_ice::jingle::{Reason, ReasonCondition};
use jingle_ice::net::IceConnection;
use jingle_ice::xmpp::{JingleIce, JingleIceConfig};
use minidom::Element;

const APP_NS: &str = "urn:example:test-app:0";

fn config() -> JingleIceConfig {
    JingleIceConfig {
        builder: Arc::new(|role: Role| {
            IceConnection::builder(role)
                .include_loopback(true)
                .allow_address("127.0.0.1".parse().unwrap())
        }),
        ..JingleIceConfig::default()
    }
}

fn stamp(mut stanza: Element, from: &FullJid) -> Element {
    stanza.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::NcName::try_from("from").unwrap(),
        from.as_str(),
    );
    stanza
}

/// Carries every stanza one extension emits to the other.
fn wire(a: Arc<JingleIce>, b: Arc<JingleIce>) {
    for (src, dst) in [(a.clone(), b.clone()), (b, a)] {
        tokio::spawn(async move {
            let from = src.local_jid();
            while let Some(s) = src.next_outgoing().await {
                let s = stamp(s, &from);
                let taken = dst.handle_stanza(&s);
                assert!(taken || s.name() == "presence", "stanza not taken: {s:?}");
            }
        });
    }
}

fn pair() -> (Arc<JingleIce>, Arc<JingleIce>) {
    let a = Arc::new(JingleIce::new(
        FullJid::new("alice@example.test/a").unwrap(),
        config(),
    ));
    let b = Arc::new(JingleIce::new(
        FullJid::new("bob@example.test/b").unwrap(),
        config(),
    ));
    wire(a.clone(), b.clone());
    (a, b)
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
        sa.connection().send(1, msg.as_bytes()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), sb.connection().recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.data, msg.as_bytes());
        sb.connection().send(1, &got.data).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), sa.connection().recv())
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
        jingle_ice::xmpp::JingleIceError::Terminated(r) => {
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
    sa.connection().send(1, b"hello").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sb.connection().recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data, b"hello");
}
