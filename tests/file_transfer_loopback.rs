//! XEP-0234 file transfer end to end in one process: two [`JingleRuntime`] instances joined by the
//! in-memory server of `jingle_wire`, real ICE and data channels over 127.0.0.1, real files in
//! temporary directories. The same against Prosody, coturn and NATs is the lab's job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jingle_ice::apps::file_description::{File, Hash};
use jingle_ice::apps::file_sink::{FileSink, SinkConfig};
use jingle_ice::apps::file_transfer::{
    incoming, request_file, send_file, FileTransferError, IncomingFile, IncomingTransfer,
    SendOptions,
};
use jingle_ice::apps::transfer::TransferError;
use jingle_ice::jingle::transports::ibb::NS_JINGLE_IBB;
use jingle_ice::jingle::ReasonCondition;
use jingle_ice::xmpp::{JingleRuntime, JingleRuntimeConfig};
use minidom::Element;
use sha2::{Digest, Sha256};

mod jingle_wire;

use jingle_wire::{dc_config, strip_candidates, unwired, wire_with};

/// The default configuration: file transfer needs no opt-in.
fn ft_config() -> JingleRuntimeConfig {
    dc_config()
}

/// A fresh directory under the system's temporary directory, removed with everything in it
/// when dropped (the tests write files of up to 64 MiB).
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("jingle-ice-ft-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn sink(dir: &Path) -> SinkConfig {
    SinkConfig {
        dir: dir.to_path_buf(),
        overwrite: false,
        max_size: 2 << 30,
    }
}

fn pair_with(tamper: fn(Element) -> Element) -> (Arc<JingleRuntime>, Arc<JingleRuntime>) {
    let (a, b) = unwired(ft_config());
    wire_with(a.clone(), b.clone(), tamper);
    (a, b)
}

/// Rewrites the text of every `<tag/>` inside a file-transfer `<file/>` of a `session-initiate`.
fn rewrite_offer(mut el: Element, tag: &str, f: fn(&str) -> String) -> Element {
    fn walk(el: &mut Element, tag: &str, f: fn(&str) -> String) {
        if el.name() == tag {
            let text = f(&el.text());
            el.take_nodes();
            el.append_text(text);
        }
        for child in el.children_mut() {
            walk(child, tag, f);
        }
    }
    let initiate = el
        .get_child("jingle", "urn:xmpp:jingle:1")
        .is_some_and(|j| j.attr("action") == Some("session-initiate"));
    if initiate {
        walk(&mut el, tag, f);
    }
    el
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_verified_under_its_sanitised_name() {
    let src = temp_dir("ok-src");
    let dst = temp_dir("ok-dst");
    let data = pattern(4 << 20);
    let path = src.join("report.bin");
    std::fs::write(&path, &data).unwrap();
    let (a, b) = pair_with(|s| s);
    let bob = b.clone();
    let dst2 = dst.to_path_buf();
    let receiver = tokio::spawn(async move {
        let incoming = bob.next_incoming().await.unwrap();
        let file = IncomingFile::from_session(incoming).unwrap();
        assert_eq!(file.offer().name.as_deref(), Some("../../evil/report.bin"));
        assert_eq!(file.size(), 4 << 20);
        assert!(
            file.offer().sha256().is_some(),
            "the offer carries the hash"
        );
        assert!(file.offer().date.is_some());
        file.accept(sink(&dst2), None).await
    });
    let options = SendOptions {
        name: Some("../../evil/report.bin".into()),
        media_type: Some("application/octet-stream".into()),
        desc: Some("test file".into()),
        ..SendOptions::default()
    };
    let sent = tokio::time::timeout(
        Duration::from_secs(60),
        send_file(&a, b.local_jid(), &path, options),
    )
    .await
    .unwrap()
    .unwrap();
    let got = receiver.await.unwrap().unwrap();
    let expected: [u8; 32] = Sha256::digest(&data).into();
    assert_eq!(sent.sha256, expected);
    assert_eq!(got.sha256, expected);
    assert!(got.verified);
    assert_eq!(got.size, data.len() as u64);
    assert_eq!(got.path.as_deref(), Some(dst.join("report.bin").as_path()));
    assert_eq!(std::fs::read(dst.join("report.bin")).unwrap(), data);
    assert_eq!(listing(&dst), vec!["report.bin"], "no part file left");
    assert!(got.transport.to_string().contains("data channel"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_offer_ends_the_senders_attempt() {
    let src = temp_dir("decline-src");
    let path = src.join("x.bin");
    std::fs::write(&path, pattern(1000)).unwrap();
    let (a, b) = pair_with(|s| s);
    let bob = b.clone();
    tokio::spawn(async move {
        let incoming = bob.next_incoming().await.unwrap();
        IncomingFile::from_session(incoming).unwrap().decline();
    });
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        send_file(&a, b.local_jid(), &path, SendOptions::default()),
    )
    .await
    .unwrap()
    .unwrap_err();
    match err {
        FileTransferError::Session(e) => {
            assert!(format!("{e:?}").contains("Decline"), "{e:?}");
        }
        other => panic!("unexpected: {other:?}"),
    }
}

/// Sends a file of `len` bytes through a server that rewrites the offer with `tamper`; the
/// receiver must fail with a sink error `fits` accepts, the sender must see `<media-error/>`,
/// and nothing may be left in the receiver's directory.
async fn tampered_offer_fails(
    tag: &str,
    len: usize,
    tamper: fn(Element) -> Element,
    fits: fn(&jingle_ice::apps::file_sink::SinkError) -> bool,
) {
    let src = temp_dir(&format!("{tag}-src"));
    let dst = temp_dir(&format!("{tag}-dst"));
    let path = src.join("t.bin");
    std::fs::write(&path, pattern(len)).unwrap();
    let (a, b) = pair_with(tamper);
    let (receiver, _) = spawn_receiver(&b, &dst);
    let sent = send_file(&a, b.local_jid(), &path, SendOptions::default()).await;
    match receiver.await.unwrap() {
        Err(FileTransferError::Transfer(TransferError::Sink(e))) => assert!(fits(&e), "{e:?}"),
        other => panic!("receiver: {other:?}"),
    }
    match sent {
        Err(FileTransferError::PeerEnded(r)) => {
            assert_eq!(r.condition, ReasonCondition::MediaError)
        }
        other => panic!("sender: {other:?}"),
    }
    assert_eq!(listing(&dst), Vec::<String>::new(), "nothing left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_hash_in_the_offer_ends_with_media_error_and_no_file() {
    use jingle_ice::apps::file_sink::SinkError;
    // The offer's SHA-256 is replaced by the hash of something else.
    tampered_offer_fails(
        "hash",
        300_000,
        |s| {
            rewrite_offer(s, "hash", |_| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other"))
            })
        },
        |e| matches!(e, SinkError::HashMismatch { .. }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_smaller_than_the_bytes_sent_ends_with_media_error_and_no_file() {
    use jingle_ice::apps::file_sink::SinkError;
    // The offer claims fewer bytes than the sender sends. The receiver reads the announced
    // size; the rest makes the content disagree with the hash (or, arriving early enough,
    // overflows the announced size).
    tampered_offer_fails(
        "size",
        200_000,
        |s| rewrite_offer(s, "size", |_| "100000".into()),
        |e| {
            matches!(
                e,
                SinkError::TooLong { .. } | SinkError::HashMismatch { .. }
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_over_the_size_limit_is_declined() {
    let src = temp_dir("big-src");
    let dst = temp_dir("big-dst");
    let path = src.join("big.bin");
    std::fs::write(&path, pattern(100_000)).unwrap();
    let (a, b) = pair_with(|s| s);
    let bob = b.clone();
    let dst2 = dst.to_path_buf();
    let receiver = tokio::spawn(async move {
        let incoming = bob.next_incoming().await.unwrap();
        let file = IncomingFile::from_session(incoming).unwrap();
        let config = SinkConfig {
            max_size: 50_000,
            ..sink(&dst2)
        };
        file.accept(config, None).await
    });
    let sent = send_file(&a, b.local_jid(), &path, SendOptions::default()).await;
    assert!(receiver.await.unwrap().is_err());
    assert!(sent.is_err());
    assert_eq!(listing(&dst), Vec::<String>::new());
}

/// Starts the receiving side on `b`: accepts the next offer into `dst`, reporting the bytes
/// received on the returned channel.
fn spawn_receiver(
    b: &Arc<JingleRuntime>,
    dst: &Path,
) -> (
    tokio::task::JoinHandle<
        Result<jingle_ice::apps::file_transfer::TransferReport, FileTransferError>,
    >,
    tokio::sync::mpsc::UnboundedReceiver<u64>,
) {
    let (progress_tx, progress_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let bob = b.clone();
    let dst = dst.to_path_buf();
    let task = tokio::spawn(async move {
        let incoming = bob.next_incoming().await.unwrap();
        let file = IncomingFile::from_session(incoming).unwrap();
        let on_progress: jingle_ice::apps::file_transfer::OnProgress = Box::new(move |p| {
            let _ = progress_tx.send(p.bytes);
        });
        file.accept(sink(&dst), Some(on_progress)).await
    });
    (task, progress_rx)
}

/// Starts the sending side: `a` sends the file at `path` to `b`.
fn spawn_sender(
    a: &Arc<JingleRuntime>,
    b: &Arc<JingleRuntime>,
    path: &Path,
) -> tokio::task::JoinHandle<
    Result<jingle_ice::apps::file_transfer::TransferReport, FileTransferError>,
> {
    let a = a.clone();
    let to = b.local_jid();
    let path = path.to_path_buf();
    tokio::spawn(async move { send_file(&a, to, &path, SendOptions::default()).await })
}

/// Runs a transfer of `size` bytes and cancels one side (dropping its future) once the
/// receiver has reported progress; returns the other side's result and the receiver's
/// directory.
async fn cancel_mid_transfer(
    cancel_receiver: bool,
) -> (
    Result<jingle_ice::apps::file_transfer::TransferReport, FileTransferError>,
    TempDir,
) {
    let tag = if cancel_receiver {
        "cancel-r"
    } else {
        "cancel-s"
    };
    let src = temp_dir(&format!("{tag}-src"));
    let dst = temp_dir(&format!("{tag}-dst"));
    let path = src.join("big.bin");
    std::fs::write(&path, pattern(64 << 20)).unwrap();
    let (a, b) = pair_with(|s| s);
    let (receiver, mut progress_rx) = spawn_receiver(&b, &dst);
    let sender = spawn_sender(&a, &b, &path);
    // Wait until some bytes (not all) have arrived, then cancel one side.
    let got = tokio::time::timeout(Duration::from_secs(30), progress_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got < 64 << 20, "cancelled before the end");
    let other = if cancel_receiver {
        receiver.abort();
        sender
    } else {
        sender.abort();
        receiver
    };
    let result = tokio::time::timeout(Duration::from_secs(30), other)
        .await
        .expect("the other side learns of the cancel")
        .unwrap();
    (result, dst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_cancelling_mid_transfer_stops_the_sender_and_leaves_no_file() {
    let (sent, dst) = cancel_mid_transfer(true).await;
    match sent {
        Err(FileTransferError::PeerEnded(r)) => assert_eq!(r.condition, ReasonCondition::Cancel),
        other => panic!("sender: {other:?}"),
    }
    // The receiver's sink was dropped with its future: the part file is gone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listing(&dst), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_cancelling_mid_transfer_stops_the_receiver_and_leaves_no_file() {
    let (got, dst) = cancel_mid_transfer(false).await;
    match got {
        Err(FileTransferError::PeerEnded(r)) => assert_eq!(r.condition, ReasonCondition::Cancel),
        other => panic!("receiver: {other:?}"),
    }
    assert_eq!(listing(&dst), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_shrinking_while_sent_ends_with_media_error_and_no_file() {
    let src = temp_dir("shrink-src");
    let dst = temp_dir("shrink-dst");
    let path = src.join("shrinks.bin");
    std::fs::write(&path, pattern(64 << 20)).unwrap();
    let (a, b) = pair_with(|s| s);
    let (receiver, mut progress_rx) = spawn_receiver(&b, &dst);
    let sender = spawn_sender(&a, &b, &path);
    // Once bytes flow, the file loses most of its content under the sender.
    tokio::time::timeout(Duration::from_secs(30), progress_rx.recv())
        .await
        .unwrap()
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            sent,
            Err(FileTransferError::Transfer(
                TransferError::SourceShrank { .. }
            ))
        ),
        "{sent:?}"
    );
    let got = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .unwrap()
        .unwrap();
    match got {
        Err(FileTransferError::PeerEnded(r)) => {
            assert_eq!(r.condition, ReasonCondition::MediaError)
        }
        other => panic!("receiver: {other:?}"),
    }
    assert_eq!(listing(&dst), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_peer_to_peer_path_the_file_goes_through_in_band_bytestreams() {
    let src = temp_dir("ibb-src");
    let dst = temp_dir("ibb-dst");
    let data = pattern((1 << 20) + 12_345);
    let path = src.join("fallback.bin");
    std::fs::write(&path, &data).unwrap();
    let mut config = ft_config();
    config.connect_timeout = Duration::from_secs(2);
    let (a, b) = unwired(config);
    wire_with(a.clone(), b.clone(), strip_candidates);
    let (receiver, _progress) = spawn_receiver(&b, &dst);
    let sent = tokio::time::timeout(Duration::from_secs(60), spawn_sender(&a, &b, &path))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let got = receiver.await.unwrap().unwrap();
    let expected: [u8; 32] = Sha256::digest(&data).into();
    assert_eq!((sent.sha256, got.sha256), (expected, expected));
    assert!(got.verified && sent.verified);
    for report in [&sent, &got] {
        assert_eq!(
            report.transport,
            jingle_ice::apps::file_transfer::TransportUsed::Ibb { block_size: 8192 },
            "{}",
            report.transport
        );
        assert!(report.transport.to_string().contains("In-Band Bytestreams"));
    }
    assert_eq!(std::fs::read(dst.join("fallback.bin")).unwrap(), data);
    assert_eq!(listing(&dst), vec!["fallback.bin"], "no part file left");
}

/// The content of a large test file: the repeating pattern, with each 8192-byte block (one IBB
/// block) starting with its own index, so a block lost, repeated or out of place shows.
fn numbered_chunk(offset: u64, len: usize) -> Vec<u8> {
    const BLOCK: u64 = 8192;
    assert_eq!(offset % BLOCK, 0);
    // The pattern repeats every 251 bytes: copy it a period at a time.
    let period = pattern(251);
    let start = (offset % 251) as usize;
    let mut chunk = Vec::with_capacity(len + 251);
    chunk.extend_from_slice(&period[start..]);
    while chunk.len() < len {
        chunk.extend_from_slice(&period);
    }
    chunk.truncate(len);
    for (k, block) in chunk.chunks_mut(BLOCK as usize).enumerate() {
        let index = (offset / BLOCK + k as u64).to_le_bytes();
        let n = block.len().min(8);
        block[..n].copy_from_slice(&index[..n]);
    }
    chunk
}

/// Chunk size for writing and checking the large test file.
const CHUNK: usize = 4 << 20;

/// Writes `size` bytes of [`numbered_chunk`] content; returns its SHA-256.
fn write_numbered_file(path: &Path, size: u64) -> [u8; 32] {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hash = Sha256::new();
    let mut offset = 0;
    while offset < size {
        let chunk = numbered_chunk(offset, CHUNK.min((size - offset) as usize));
        hash.update(&chunk);
        f.write_all(&chunk).unwrap();
        offset += chunk.len() as u64;
    }
    f.flush().unwrap();
    hash.finalize().into()
}

/// Whether the file at `path` holds exactly what [`write_numbered_file`] wrote for `size`.
fn holds_numbered_content(path: &Path, size: u64) -> bool {
    use std::io::Read;
    if std::fs::metadata(path).map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < size {
        let n = CHUNK.min((size - offset) as usize);
        f.read_exact(&mut buf[..n]).unwrap();
        if buf[..n] != numbered_chunk(offset, n)[..] {
            return false;
        }
        offset += n as u64;
    }
    true
}

/// Bytes per IBB block we offer (`jingle_ice::ibb::DEFAULT_BLOCK_SIZE`).
const IBB_BLOCK: u64 = 8192;

/// Sends a file of `size` bytes with every candidate stripped, so the session falls back to
/// In-Band Bytestreams; `tamper` may rewrite the stanzas on the way. Checks the hash on both
/// sides, the transport, and the stored file block by block; prints and returns the time from
/// the offer to the verified file and the receiver's transfer time.
async fn ibb_transfer(
    tag: &str,
    size: u64,
    tamper: fn(Element) -> Element,
) -> (Duration, Duration) {
    let src = temp_dir(&format!("{tag}-src"));
    let dst = temp_dir(&format!("{tag}-dst"));
    let path = src.join("large.bin");
    let expected = write_numbered_file(&path, size);
    let mut config = ft_config();
    config.connect_timeout = Duration::from_secs(2);
    let (a, b) = unwired(config);
    wire_with(a.clone(), b.clone(), tamper);
    let (receiver, _progress) = spawn_receiver(&b, &dst);
    let started = std::time::Instant::now();
    let sent = tokio::time::timeout(Duration::from_secs(1800), spawn_sender(&a, &b, &path))
        .await
        .expect("done within 30 minutes")
        .unwrap()
        .unwrap();
    let got = receiver.await.unwrap().unwrap();
    let elapsed = started.elapsed();
    assert_eq!((sent.sha256, got.sha256), (expected, expected));
    assert!(got.verified && sent.verified);
    for report in [&sent, &got] {
        assert_eq!(
            report.transport,
            jingle_ice::apps::file_transfer::TransportUsed::Ibb {
                block_size: IBB_BLOCK as u16
            },
            "{}",
            report.transport
        );
        assert_eq!(report.size, size);
    }
    let stored = dst.join("large.bin");
    assert_eq!(got.path.as_deref(), Some(stored.as_path()));
    assert_eq!(listing(&dst), vec!["large.bin"], "no part file left");
    assert!(
        holds_numbered_content(&stored, size),
        "the stored file differs"
    );
    let secs = got.transfer_time.as_secs_f64();
    println!(
        "MEASURED {tag}: {size} bytes over IBB in loopback, {:.1} s from the offer to the verified file, {secs:.1} s transfer, {:.1} MiB/s",
        elapsed.as_secs_f64(),
        size as f64 / f64::from(1 << 20) / secs
    );
    (elapsed, got.transfer_time)
}

/// 1 GiB (and a block and a bit, so the last block is short) through In-Band Bytestreams:
/// 131,074 blocks of at most 8192 bytes, so our block numbers wrap to 0 after 65535 twice
/// (XEP-0047 §2.2; `xep/0261.md`) and the receiver follows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_goes_through_in_band_bytestreams_across_two_wraps() {
    const SIZE: u64 = (1 << 30) + IBB_BLOCK + 4321;
    assert!(
        SIZE.div_ceil(IBB_BLOCK) > 2 * 65536,
        "the numbers wrap twice"
    );
    ibb_transfer("ibb-gib", SIZE, strip_candidates).await;
}

/// Strips the candidates, and numbers the `<data/>` blocks as Conversations does: counting
/// on past 65535 (65536, 65537, ...) where our sender wraps to 0 (`xep/0261.md`).
fn strip_candidates_and_count_on(el: Element) -> Element {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Blocks seen so far; only the one test below uses this function, and its blocks all go
    // one way through one wire task, in order.
    static BLOCKS: AtomicU64 = AtomicU64::new(0);
    let mut el = strip_candidates(el);
    if let Some(data) = el.get_child_mut("data", "http://jabber.org/protocol/ibb") {
        let n = BLOCKS.fetch_add(1, Ordering::Relaxed);
        data.set_attr(
            minidom::rxml::Namespace::NONE,
            minidom::rxml::NcName::try_from("seq").unwrap(),
            n.to_string(),
        );
    }
    el
}

/// Past 65535 blocks (512 MiB at 8192 bytes), a sender that does not wrap (Conversations)
/// is followed through the whole tokio path, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_counting_on_past_65535_as_conversations_does_is_followed_over_ibb() {
    const SIZE: u64 = (512 << 20) + 2 * IBB_BLOCK + 99;
    assert!(SIZE.div_ceil(IBB_BLOCK) > 65536 + 2, "past 65535");
    ibb_transfer("ibb-counting", SIZE, strip_candidates_and_count_on).await;
}

/// Sends a file between peers whose candidates are stripped (no path) with `config`, and
/// returns the sender's error, after checking that the receiver failed and stored nothing.
async fn transfer_without_a_path(tag: &str, mut config: JingleRuntimeConfig) -> String {
    let src = temp_dir(&format!("{tag}-src"));
    let dst = temp_dir(&format!("{tag}-dst"));
    let path = src.join("never.bin");
    std::fs::write(&path, pattern(1000)).unwrap();
    config.connect_timeout = Duration::from_secs(2);
    let (a, b) = unwired(config);
    wire_with(a.clone(), b.clone(), strip_candidates);
    let (receiver, _progress) = spawn_receiver(&b, &dst);
    let sent = tokio::time::timeout(Duration::from_secs(30), spawn_sender(&a, &b, &path))
        .await
        .unwrap()
        .unwrap();
    let err = sent.expect_err("no path and no fallback");
    assert!(receiver.await.unwrap().is_err());
    assert!(listing(&dst).is_empty());
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fallback_off_a_session_without_a_path_fails_the_transfer() {
    let mut config = ft_config();
    config.ibb_fallback = false;
    transfer_without_a_path("noibb", config).await;
}

/// The fallback order is the session layer's transport registry: without IBB in it, a session
/// without a path ends as with the fallback off, and no `transport-replace` is tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ibb_in_the_transport_registry_a_session_without_a_path_fails_the_transfer() {
    let mut config = ft_config();
    assert!(config.ibb_fallback, "on, but the registry has no IBB");
    config.session.transports.remove(NS_JINGLE_IBB);
    let err = transfer_without_a_path("noibb-reg", config).await;
    assert!(!err.contains("In-Band"), "{err}");
}

/// Leaves a part file as a receiver killed after `kept` bytes would (no cleanup runs).
async fn leave_part_file(dir: &Path, name: &str, data: &[u8], kept: usize, corrupt: bool) {
    let hash: [u8; 32] = Sha256::digest(data).into();
    let mut sink = FileSink::resume(sink(dir), name, data.len() as u64, Some(hash))
        .await
        .unwrap();
    let mut part = data[..kept].to_vec();
    if corrupt {
        part[kept / 2] ^= 0xff;
    }
    sink.write(&part).await.unwrap();
    std::mem::forget(sink);
}

async fn resumed_transfer(tag: &str, corrupt: bool) {
    let src = temp_dir(&format!("{tag}-src"));
    let dst = temp_dir(&format!("{tag}-dst"));
    let data = pattern((3 << 20) + 777);
    let kept = (1 << 20) + 5;
    let path = src.join("big.iso");
    std::fs::write(&path, &data).unwrap();
    leave_part_file(&dst, "big.iso", &data, kept, corrupt).await;
    assert_eq!(listing(&dst).len(), 1, "a part file is left");
    let (a, b) = pair_with(|s| s);
    let bob = b.clone();
    let dst2 = dst.to_path_buf();
    let receiver = tokio::spawn(async move {
        let incoming = bob.next_incoming().await.unwrap();
        let file = IncomingFile::from_session(incoming).unwrap();
        assert!(file.offer().range.is_some(), "the offer announces ranges");
        file.accept(sink(&dst2), None).await
    });
    let sent = tokio::time::timeout(
        Duration::from_secs(60),
        send_file(&a, b.local_jid(), &path, SendOptions::default()),
    )
    .await
    .unwrap();
    let got = receiver.await.unwrap();
    if corrupt {
        assert!(
            matches!(&got, Err(FileTransferError::Transfer(_))),
            "{got:?}"
        );
        assert!(sent.is_err(), "{sent:?}");
        assert!(listing(&dst).is_empty(), "{:?}", listing(&dst));
        return;
    }
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(sent.resumed_from, kept as u64);
    assert_eq!(got.resumed_from, kept as u64);
    assert_eq!(
        sent.transferred(),
        (data.len() - kept) as u64,
        "only the rest"
    );
    assert!(sent.verified && got.verified);
    assert_eq!(std::fs::read(dst.join("big.iso")).unwrap(), data);
    assert_eq!(listing(&dst), vec!["big.iso"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_transfer_resumes_where_the_kept_part_ends() {
    resumed_transfer("resume", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_part_that_does_not_match_fails_the_hash_and_is_removed() {
    resumed_transfer("resume-bad", true).await;
}

/// Bob holds `data` as `held.bin` and serves requests; alice asks for `want`.
async fn request(
    tag: &str,
    data: &[u8],
    want: File,
) -> (
    Result<jingle_ice::apps::file_transfer::TransferReport, FileTransferError>,
    Result<jingle_ice::apps::file_transfer::TransferReport, FileTransferError>,
    TempDir,
) {
    let src = temp_dir(&format!("{tag}-src"));
    let dst = temp_dir(&format!("{tag}-dst"));
    let path = src.join("held.bin");
    std::fs::write(&path, data).unwrap();
    let (a, b) = pair_with(|s| s);
    let bob = b.clone();
    let server = tokio::spawn(async move {
        let session = bob.next_incoming().await.unwrap();
        match incoming(session).unwrap() {
            IncomingTransfer::Request(r) => {
                assert_eq!(r.peer().to_string(), "alice@example.test/a");
                r.serve(&path, SendOptions::default()).await
            }
            IncomingTransfer::Offer(_) => panic!("a request was read as an offer"),
        }
    });
    let got = tokio::time::timeout(
        Duration::from_secs(60),
        request_file(&a, b.local_jid(), want, sink(&dst), None),
    )
    .await
    .unwrap();
    let served = server.await.unwrap();
    drop(src);
    (got, served, dst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_file_is_sent_by_the_peer_that_holds_it() {
    let data = pattern((2 << 20) + 3);
    let hash: [u8; 32] = Sha256::digest(&data).into();
    let want = File {
        name: Some("held.bin".into()),
        hashes: vec![Hash::sha256(hash)],
        ..File::default()
    };
    let (got, served, dst) = request("request", &data, want).await;
    let (got, served) = (got.unwrap(), served.unwrap());
    assert!(got.verified && served.verified);
    assert_eq!((got.sha256, served.sha256), (hash, hash));
    assert_eq!(std::fs::read(dst.join("held.bin")).unwrap(), data);
    assert_eq!(listing(&dst), vec!["held.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_file_is_refused_and_nothing_is_stored() {
    let data = pattern(4096);
    let want = File {
        name: Some("held.bin".into()),
        hashes: vec![Hash::sha256([7; 32])],
        ..File::default()
    };
    let (got, served, dst) = request("request-other", &data, want).await;
    assert!(
        matches!(served, Err(FileTransferError::NotRequested(_))),
        "{served:?}"
    );
    match got {
        Err(FileTransferError::Session(e)) => {
            assert!(e.to_string().contains("failed-application"), "{e}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(listing(&dst).is_empty());
}

/// Removes the hashes from the offer, as Conversations sends it (`xep/0234.md`): the file can
/// then only be verified with the `<checksum/>` that follows the data.
fn offer_without_hash(mut el: Element) -> Element {
    fn walk(el: &mut Element) {
        while el.remove_child("hash", "urn:xmpp:hashes:2").is_some() {}
        for child in el.children_mut() {
            walk(child);
        }
    }
    let initiate = el
        .get_child("jingle", "urn:xmpp:jingle:1")
        .is_some_and(|j| j.attr("action") == Some("session-initiate"));
    if initiate {
        walk(&mut el);
    }
    el
}

/// [`offer_without_hash`], and the `<checksum/>`'s SHA-256 cut to 16 bytes.
fn short_checksum(el: Element) -> Element {
    fn walk(el: &mut Element) {
        if el.is("hash", "urn:xmpp:hashes:2") {
            el.take_nodes();
            el.append_text("AAAAAAAAAAAAAAAAAAAAAA==");
        }
        for child in el.children_mut() {
            walk(child);
        }
    }
    let mut el = offer_without_hash(el);
    let checksum = el
        .get_child("jingle", "urn:xmpp:jingle:1")
        .is_some_and(|j| j.attr("action") == Some("session-info"));
    if checksum {
        walk(&mut el);
    }
    el
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_hash_is_verified_by_the_checksum_that_follows_with_the_default_config() {
    let src = temp_dir("nohash-src");
    let dst = temp_dir("nohash-dst");
    let data = pattern(300_000);
    let path = src.join("late.bin");
    std::fs::write(&path, &data).unwrap();
    let (a, b) = pair_with(offer_without_hash);
    let (receiver, _) = spawn_receiver(&b, &dst);
    let started = std::time::Instant::now();
    let sent = send_file(&a, b.local_jid(), &path, SendOptions::default())
        .await
        .unwrap();
    let got = receiver.await.unwrap().unwrap();
    assert!(got.verified, "verified against the <checksum/>");
    assert!(sent.verified);
    assert!(
        started.elapsed() < jingle_ice::apps::file_transfer::END_WAIT,
        "the checksum was taken, not waited for in vain"
    );
    assert_eq!(std::fs::read(dst.join("late.bin")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_of_the_wrong_length_ends_with_media_error_and_no_file() {
    let src = temp_dir("shortsum-src");
    let dst = temp_dir("shortsum-dst");
    let path = src.join("short.bin");
    std::fs::write(&path, pattern(300_000)).unwrap();
    let (a, b) = pair_with(short_checksum);
    let (receiver, _) = spawn_receiver(&b, &dst);
    let sent = send_file(&a, b.local_jid(), &path, SendOptions::default()).await;
    match receiver.await.unwrap() {
        Err(FileTransferError::BadChecksum(_)) => {}
        other => panic!("receiver: {other:?}"),
    }
    match sent {
        Err(FileTransferError::PeerEnded(r)) => {
            assert_eq!(r.condition, ReasonCondition::MediaError)
        }
        other => panic!("sender: {other:?}"),
    }
    assert_eq!(listing(&dst), Vec::<String>::new(), "nothing stored");
}

/// Puts an XEP-0391 `<security/>` into the offer's content, as an OMEMO-encrypted file offer
/// carries it (Dino's shape: cipher and type attributes, the key in an OMEMO envelope).
fn jet_offer(mut el: Element) -> Element {
    let Some(jingle) = el.get_child_mut("jingle", "urn:xmpp:jingle:1") else {
        return el;
    };
    if jingle.attr("action") != Some("session-initiate") {
        return el;
    }
    let security: Element = "<security xmlns='urn:xmpp:jingle:jet:0' \
         cipher='urn:xmpp:ciphers:aes-128-gcm-nopadding:0' type='eu.siacs.conversations.axolotl'>\
         <encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='27183'>\
         <key rid='31415'>MwohCeS5NzuR6Tz+ZB/N6Q==</key><iv>MTIzNDU2Nzg5MDEy</iv></header>\
         </encrypted></security>"
        .parse()
        .unwrap();
    if let Some(content) = jingle.get_child_mut("content", "urn:xmpp:jingle:1") {
        content.append_child(security);
    }
    el
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_offer_is_shown_to_the_application_and_declined_with_security_error() {
    let src = temp_dir("jet-src");
    let dst = temp_dir("jet-dst");
    let path = src.join("secret.bin");
    std::fs::write(&path, pattern(10_000)).unwrap();
    let (a, b) = pair_with(jet_offer);
    let bob = b.clone();
    let receiver = tokio::spawn(async move {
        let offer = bob.next_incoming().await.unwrap();
        let security = offer.security().map(|s| s.ns());
        (security, incoming(offer).map(|_| ()))
    });
    let sent = send_file(&a, b.local_jid(), &path, SendOptions::default()).await;
    let (security, got) = receiver.await.unwrap();
    assert_eq!(security.as_deref(), Some("urn:xmpp:jingle:jet:0"));
    match got {
        Err(FileTransferError::Encrypted { security, file }) => {
            assert!(security.contains("urn:xmpp:jingle:jet:0"), "{security}");
            assert!(security.contains("aes-128-gcm-nopadding"), "{security}");
            assert_eq!(file.and_then(|f| f.name).as_deref(), Some("secret.bin"));
        }
        other => panic!("receiver: {other:?}"),
    }
    match sent {
        Err(FileTransferError::Session(jingle_ice::xmpp::JingleRuntimeError::Terminated(r))) => {
            assert_eq!(r.condition, ReasonCondition::SecurityError);
            assert!(r.text.unwrap_or_default().contains("not supported"));
        }
        other => panic!("sender: {other:?}"),
    }
    assert_eq!(listing(&dst), Vec::<String>::new(), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_an_encrypted_offer_directly_is_refused() {
    let (a, b) = pair_with(jet_offer);
    let alice = a.clone();
    let to = b.local_jid();
    let connect = tokio::spawn(async move {
        alice
            .connect(
                to,
                jingle_ice::apps::file_description::FileDescription::new(File {
                    name: Some("x".into()),
                    size: Some(1),
                    ..File::default()
                })
                .to_element(),
            )
            .await
    });
    let offer = b.next_incoming().await.unwrap();
    match offer
        .accept(Element::bare("description", "urn:example:any"))
        .await
    {
        Err(jingle_ice::xmpp::JingleRuntimeError::UnsupportedSecurity(s)) => {
            assert!(s.contains("urn:xmpp:jingle:jet:0"), "{s}")
        }
        other => panic!("accept: {:?}", other.map(|_| ())),
    }
    match connect.await.unwrap() {
        Err(jingle_ice::xmpp::JingleRuntimeError::Terminated(r)) => {
            assert_eq!(r.condition, ReasonCondition::SecurityError)
        }
        other => panic!("connect: {:?}", other.map(|_| ())),
    }
}
