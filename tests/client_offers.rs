//! Offers as other clients write them, answered by a [`JingleRuntime`] receiving with the file
//! application and its default configuration: the test plays the other client stanza by stanza
//! from the fixtures in `xep/fixtures/` and the flows read from each client's source
//! (`xep/0234.md`, `xep/0261.md`).
//!
//! - Dino 0.5 offers files over SOCKS5 or In-Band Bytestreams only (content `a-file-offer`,
//!   name and size, IBB block size 4096), waits for each block's answer, closes the stream and
//!   ends the session with `<success/>` itself; it sends no hash at all.
//! - Conversations over Tor offers In-Band Bytestreams only (content `0`, block size 8192),
//!   keeps up to three blocks in flight, numbers them without wrapping, and sends the
//!   `<checksum/>` after the data; it waits for `<received/>` and our `<success/>`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jid::FullJid;
use jingle_ice::apps::file_sink::SinkConfig;
use jingle_ice::apps::file_transfer::{IncomingFile, TransferReport, TransportUsed};
use jingle_ice::xmpp::stanza::{iq_type, IqType};
use jingle_ice::xmpp::{JingleRuntime, JingleRuntimeConfig};
use minidom::Element;
use sha2::{Digest, Sha256};

const NS_JINGLE: &str = "urn:xmpp:jingle:1";
const NS_IBB_TRANSPORT: &str = "urn:xmpp:jingle:transports:ibb:1";
const WAIT: Duration = Duration::from_secs(10);
const FILE_LEN: usize = 300_000;

fn bob() -> FullJid {
    FullJid::new("bob@example.test/jingle-ice").unwrap()
}

fn data() -> Vec<u8> {
    (0..FILE_LEN).map(|i| (i * 7 % 253) as u8).collect()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jingle-ice-clients-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bob, receiving one file into `dir`.
fn receiver(
    dir: &std::path::Path,
) -> (
    Arc<JingleRuntime>,
    tokio::task::JoinHandle<
        Result<TransferReport, jingle_ice::apps::file_transfer::FileTransferError>,
    >,
) {
    let bob = Arc::new(JingleRuntime::new(bob(), JingleRuntimeConfig::default()));
    let b = bob.clone();
    let sink = SinkConfig {
        dir: dir.to_path_buf(),
        overwrite: false,
        max_size: 1 << 30,
    };
    let task = tokio::spawn(async move {
        let offer = b.next_incoming().await.expect("an offer");
        IncomingFile::from_session(offer)?.accept(sink, None).await
    });
    (bob, task)
}

/// The other client: delivers its stanzas to Bob, answers his requests, reads his answers.
struct Client {
    bob: Arc<JingleRuntime>,
    jid: String,
    /// Bob's stanzas not looked at yet.
    seen: Vec<Element>,
}

impl Client {
    fn send(&self, xml: &str) {
        let el: Element = xml.parse().unwrap();
        assert!(self.bob.handle_stanza(&el), "Bob takes {xml}");
    }

    fn iq(&self, id: &str, payload: &str) {
        self.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='{id}' from='{}' to='{}'>{payload}</iq>",
            self.jid,
            bob()
        ));
    }

    /// Waits for Bob's next stanza matching `pick`; every iq request of his met on the way is
    /// answered with a result (as the other client would).
    async fn expect(&mut self, what: &str, pick: impl Fn(&Element) -> bool) -> Element {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.seen.iter().position(&pick) {
                return self.seen.remove(i);
            }
            let el = tokio::time::timeout_at(deadline, self.bob.next_outgoing())
                .await
                .unwrap_or_else(|_| panic!("no {what} from Bob; saw {:?}", self.seen))
                .expect("Bob's extension runs");
            if iq_type(&el) == Some(IqType::Set) && !pick(&el) {
                let id = el.attr("id").unwrap_or_default();
                self.send(&format!(
                    "<iq xmlns='jabber:client' type='result' id='{id}' from='{}' to='{}'/>",
                    self.jid,
                    bob()
                ));
            }
            self.seen.push(el);
        }
    }

    /// Waits for the answer to our request `id`, which must be a result.
    async fn result(&mut self, id: &str) {
        let id = id.to_owned();
        let reply = self
            .expect(&format!("answer to {id}"), |e| {
                e.attr("id") == Some(id.as_str())
            })
            .await;
        assert_eq!(iq_type(&reply), Some(IqType::Result), "{reply:?}");
    }

    async fn jingle_request(&mut self, action: &str) -> Element {
        let action = action.to_owned();
        let el = self
            .expect(&action, |e| {
                e.get_child("jingle", NS_JINGLE)
                    .is_some_and(|j| j.attr("action") == Some(action.as_str()))
            })
            .await;
        let id = el.attr("id").unwrap_or_default();
        self.send(&format!(
            "<iq xmlns='jabber:client' type='result' id='{id}' from='{}' to='{}'/>",
            self.jid,
            bob()
        ));
        el
    }
}

/// The IBB transport of Bob's `session-accept`: its sid and block size.
fn accepted_ibb(accept: &Element) -> (String, u16) {
    let t = accept
        .get_child("jingle", NS_JINGLE)
        .and_then(|j| j.get_child("content", NS_JINGLE))
        .and_then(|c| c.get_child("transport", NS_IBB_TRANSPORT))
        .unwrap_or_else(|| panic!("an IBB transport in {accept:?}"));
    (
        t.attr("sid").unwrap().to_owned(),
        t.attr("block-size").unwrap().parse().unwrap(),
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dinos_in_band_bytestreams_offer_is_accepted_and_the_file_stored() {
    let dir = temp_dir("dino");
    let (bob, task) = receiver(&dir);
    let mut dino = Client {
        bob,
        jid: "alice@example.test/dino.f3a1".into(),
        seen: Vec::new(),
    };
    dino.send(include_str!("../xep/fixtures/ft-offer-dino-ibb.xml"));
    dino.result("dino-i1").await;
    let accept = dino.jingle_request("session-accept").await;
    let (sid, block) = accepted_ibb(&accept);
    assert_eq!(sid, "d1n0-ibb-0001", "the offer's stream id");
    assert_eq!(block, 4096, "the smaller block size");
    dino.iq(
        "o1",
        &format!("<open xmlns='http://jabber.org/protocol/ibb' sid='{sid}' block-size='4096' stanza='iq'/>"),
    );
    dino.result("o1").await;
    // One block at a time, each waiting for its answer (Dino's write_async).
    for (seq, chunk) in data().chunks(usize::from(block)).enumerate() {
        let id = format!("d{seq}");
        dino.iq(
            &id,
            &format!(
                "<data xmlns='http://jabber.org/protocol/ibb' sid='{sid}' seq='{}'>{}</data>",
                seq % 65536,
                b64(chunk)
            ),
        );
        dino.result(&id).await;
    }
    dino.iq(
        "c1",
        &format!("<close xmlns='http://jabber.org/protocol/ibb' sid='{sid}'/>"),
    );
    dino.result("c1").await;
    // Dino ends the session itself once its stream is spliced.
    dino.iq(
        "t1",
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='d1n0-s1d-0001'>\
         <reason><success/></reason></jingle>",
    );
    dino.result("t1").await;
    let report = tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.transport, TransportUsed::Ibb { block_size: 4096 });
    assert!(
        !report.verified,
        "Dino sends no hash: stored, and said to be unverified"
    );
    assert_eq!(std::fs::read(dir.join("holiday.jpg")).unwrap(), data());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_in_band_bytestreams_offer_over_tor_is_accepted_and_verified() {
    let dir = temp_dir("conv");
    let (bob, task) = receiver(&dir);
    let mut conv = Client {
        bob,
        jid: "alice@example.test/Conversations.Xk3q".into(),
        seen: Vec::new(),
    };
    conv.send(include_str!(
        "../xep/fixtures/ft-offer-conversations-ibb.xml"
    ));
    conv.result("conv-i1").await;
    let accept = conv.jingle_request("session-accept").await;
    let (sid, block) = accepted_ibb(&accept);
    assert_eq!(sid, "9f0c7a52-3e1d-4b8a-a6f4-1d2e3c4b5a69");
    assert_eq!(block, 8192);
    conv.iq(
        "o1",
        &format!("<open xmlns='http://jabber.org/protocol/ibb' sid='{sid}' block-size='8192'/>"),
    );
    conv.result("o1").await;
    // Three blocks in flight (Conversations' BlockSender semaphore).
    let payload = data();
    let blocks: Vec<&[u8]> = payload.chunks(8192).collect();
    for (seq, chunk) in blocks.iter().enumerate() {
        conv.iq(
            &format!("d{seq}"),
            &format!(
                "<data xmlns='http://jabber.org/protocol/ibb' sid='{sid}' seq='{seq}'>{}</data>",
                b64(chunk)
            ),
        );
        if seq >= 2 {
            conv.result(&format!("d{}", seq - 2)).await;
        }
    }
    for seq in blocks.len().saturating_sub(2)..blocks.len() {
        conv.result(&format!("d{seq}")).await;
    }
    let sha256 = b64(&Sha256::digest(data()));
    conv.iq(
        "sum",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='cOnv-tor-s1d1'>\
             <checksum xmlns='urn:xmpp:jingle:apps:file-transfer:5' name='0'><file>\
             <hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{sha256}</hash></file></checksum></jingle>"
        ),
    );
    conv.result("sum").await;
    let info = conv.jingle_request("session-info").await;
    assert!(
        info.get_child("jingle", NS_JINGLE)
            .and_then(|j| j.get_child("received", "urn:xmpp:jingle:apps:file-transfer:5"))
            .is_some(),
        "<received/>: {info:?}"
    );
    let end = conv.jingle_request("session-terminate").await;
    assert!(
        end.get_child("jingle", NS_JINGLE)
            .and_then(|j| j.get_child("reason", NS_JINGLE))
            .and_then(|r| r.get_child("success", NS_JINGLE))
            .is_some(),
        "{end:?}"
    );
    let report = tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.transport, TransportUsed::Ibb { block_size: 8192 });
    assert!(report.verified, "checked against the checksum");
    assert_eq!(std::fs::read(dir.join("notes.pdf")).unwrap(), data());
    let _ = std::fs::remove_dir_all(&dir);
}
