//! What a session does when the application lets go of it: a future of
//! [`IncomingSession::accept`] or [`JingleRuntime::connect`] dropped before the session is up, an
//! offer dropped unanswered, and a file transfer's future dropped before its channel opened,
//! each end the session with `session-terminate` at once (never left open until a timeout);
//! and a stranger's offer gets no directed presence from us until it is accepted. Two
//! [`JingleRuntime`] joined in memory (`jingle_wire`), ICE kept from connecting by removing every
//! candidate, so that the sessions stay between accept and established.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jid::FullJid;
use jingle_ice::apps::file_sink::SinkConfig;
use jingle_ice::apps::file_transfer::{send_file, IncomingFile, SendOptions};
use jingle_ice::jingle::ReasonCondition;
use jingle_ice::xmpp::{JingleRuntime, JingleRuntimeConfig, JingleRuntimeError};
use minidom::Element;
use tokio::sync::mpsc::UnboundedReceiver;

mod jingle_wire;

use jingle_wire::{dc_config, strip_candidates, unwired, wire_tapped};

/// Longer than any wait below: a session still open when a test looks was left open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// How soon a dropped session must be seen ended on the wire.
const AT_ONCE: Duration = Duration::from_secs(3);

fn config() -> JingleRuntimeConfig {
    let mut c = dc_config();
    c.connect_timeout = CONNECT_TIMEOUT;
    c.ibb_fallback = false;
    c
}

fn description() -> Element {
    Element::bare("description", "urn:example:drop-test:0")
}

/// Waits for a `session-terminate` sent by `from`; returns its reason's condition name.
async fn terminate_from(tap: &mut UnboundedReceiver<(FullJid, Element)>, from: &FullJid) -> String {
    tokio::time::timeout(AT_ONCE, async {
        loop {
            let (sender, stanza) = tap.recv().await.expect("the wire runs");
            let Some(jingle) = stanza.get_child("jingle", "urn:xmpp:jingle:1") else {
                continue;
            };
            if sender == *from && jingle.attr("action") == Some("session-terminate") {
                let reason = jingle.get_child("reason", "urn:xmpp:jingle:1").unwrap();
                return reason.children().next().unwrap().name().to_owned();
            }
        }
    })
    .await
    .expect("a session-terminate at once")
}

/// Alice offers, Bob takes the offer from his queue.
async fn offered() -> (
    Arc<JingleRuntime>,
    Arc<JingleRuntime>,
    UnboundedReceiver<(FullJid, Element)>,
    tokio::task::JoinHandle<Result<jingle_ice::xmpp::JingleSession, JingleRuntimeError>>,
    jingle_ice::xmpp::IncomingSession,
) {
    let (a, b) = unwired(config());
    let tap = wire_tapped(a.clone(), b.clone(), strip_candidates);
    let (alice, to) = (a.clone(), b.local_jid());
    let connect = tokio::spawn(async move { alice.connect(to, description()).await });
    let offer = tokio::time::timeout(AT_ONCE, b.next_incoming())
        .await
        .unwrap()
        .unwrap();
    (a, b, tap, connect, offer)
}

/// The initiator's `connect` ends at once with the session ended for `condition`.
async fn initiator_ended(
    connect: tokio::task::JoinHandle<Result<jingle_ice::xmpp::JingleSession, JingleRuntimeError>>,
    condition: ReasonCondition,
) {
    match tokio::time::timeout(AT_ONCE, connect)
        .await
        .unwrap()
        .unwrap()
    {
        Err(JingleRuntimeError::Terminated(r)) => assert_eq!(r.condition, condition),
        other => panic!("the initiator's connect: {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_accept_future_before_ice_connects_cancels_the_session() {
    let (a, b, mut tap, connect, offer) = offered().await;
    let accept = tokio::spawn(offer.accept(description()));
    // Accepted and waiting for ICE, which cannot connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!accept.is_finished());
    accept.abort();
    assert_eq!(terminate_from(&mut tap, &b.local_jid()).await, "cancel");
    initiator_ended(connect, ReasonCondition::Cancel).await;
    assert_eq!((a.session_count(), b.session_count()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_connect_future_cancels_the_offer() {
    let (a, b, mut tap, connect, offer) = offered().await;
    connect.abort();
    assert_eq!(terminate_from(&mut tap, &a.local_jid()).await, "cancel");
    assert!(
        offer.accept(description()).await.is_err(),
        "the offer is gone"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((a.session_count(), b.session_count()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_dropped_unanswered_is_declined() {
    let (a, b, mut tap, connect, offer) = offered().await;
    drop(offer);
    assert_eq!(terminate_from(&mut tap, &b.local_jid()).await, "decline");
    initiator_ended(connect, ReasonCondition::Decline).await;
    assert_eq!((a.session_count(), b.session_count()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_directed_presence_to_a_stranger_before_its_offer_is_accepted() {
    let (_a, b, mut tap, _connect, offer) = offered().await;
    let bob = b.local_jid();
    let presence_from_bob = |tap: &mut UnboundedReceiver<(FullJid, Element)>| {
        let mut seen = Vec::new();
        while let Ok((from, s)) = tap.try_recv() {
            if from == bob && s.name() == "presence" {
                seen.push(s);
            }
        }
        seen
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(presence_from_bob(&mut tap), Vec::<Element>::new());
    let accept = tokio::spawn(offer.accept(description()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = presence_from_bob(&mut tap);
    assert_eq!(
        sent.len(),
        1,
        "one directed presence once accepted: {sent:?}"
    );
    assert_eq!(sent[0].attr("to"), Some("alice@example.test/a"));
    accept.abort();
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jingle-ice-drop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_file_transfer_before_its_channel_is_up_ends_the_session() {
    let src = temp_dir("src");
    let dst = temp_dir("dst");
    let path = src.join("f.bin");
    std::fs::write(&path, vec![7u8; 1000]).unwrap();
    let (a, b) = unwired(config());
    let mut tap = wire_tapped(a.clone(), b.clone(), strip_candidates);

    // The receiver's accept dropped: the sender's send_file fails with the cancel.
    let (alice, to, p) = (a.clone(), b.local_jid(), path.clone());
    let sender =
        tokio::spawn(async move { send_file(&alice, to, &p, SendOptions::default()).await });
    let offer = tokio::time::timeout(AT_ONCE, b.next_incoming())
        .await
        .unwrap()
        .unwrap();
    let file = IncomingFile::from_session(offer).unwrap();
    let sink = SinkConfig {
        dir: dst.clone(),
        overwrite: false,
        max_size: 1 << 20,
    };
    let receiver = tokio::spawn(file.accept(sink, None));
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiver.abort();
    assert_eq!(terminate_from(&mut tap, &b.local_jid()).await, "cancel");
    let sent = tokio::time::timeout(AT_ONCE, sender)
        .await
        .unwrap()
        .unwrap();
    assert!(sent.is_err(), "{sent:?}");
    assert_eq!(
        std::fs::read_dir(&dst).unwrap().count(),
        0,
        "nothing stored"
    );

    // The sender's send_file dropped while waiting for the answer.
    let (alice, to, p) = (a.clone(), b.local_jid(), path.clone());
    let sender =
        tokio::spawn(async move { send_file(&alice, to, &p, SendOptions::default()).await });
    let offer = tokio::time::timeout(AT_ONCE, b.next_incoming())
        .await
        .unwrap()
        .unwrap();
    sender.abort();
    assert_eq!(terminate_from(&mut tap, &a.local_jid()).await, "cancel");
    drop(offer);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((a.session_count(), b.session_count()), (0, 0));
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
}
