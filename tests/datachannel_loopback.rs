//! WebRTC data channels between two of our peers over real ICE on 127.0.0.1: byte streams both
//! ways, backpressure from a slow reader, many channels, fingerprint mismatch, clean close.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use jingle_ice::channel::{Certificate, ChannelError, ChannelOptions, DtlsRole, RemoteParameters};
use jingle_ice::ice::{Candidate, IceEvent, Role};
use jingle_ice::net::{DataChannels, DataChannelsConfig, IceConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

async fn ice_pair() -> (Arc<IceConnection>, Arc<IceConnection>) {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let build = |role| {
        IceConnection::builder(role)
            .include_loopback(true)
            .allow_address(ip)
    };
    let a = Arc::new(build(Role::Controlling).start().await.unwrap());
    let b = Arc::new(build(Role::Controlled).start().await.unwrap());
    a.set_remote_credentials(b.local_credentials())
        .await
        .unwrap();
    b.set_remote_credentials(a.local_credentials())
        .await
        .unwrap();
    for (from, to) in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
        tokio::spawn(async move {
            while let Some(event) = from.next_event().await {
                if let IceEvent::LocalCandidate(c) = event {
                    let c: Candidate = c.to_sdp().parse().unwrap();
                    if to.add_remote_candidate(c).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    (a, b)
}

fn remote(cert: &Certificate) -> RemoteParameters {
    RemoteParameters {
        fingerprint: cert.fingerprint(),
        max_message_size: Some(262_144),
        sctp_port: Some(5000),
    }
}

async fn channels_pair(config: DataChannelsConfig) -> (DataChannels, DataChannels) {
    let (ia, ib) = ice_pair().await;
    let ca = Certificate::generate().unwrap();
    let cb = Certificate::generate().unwrap();
    let (a, b) = tokio::join!(
        DataChannels::connect(ia, &ca, DtlsRole::Client, remote(&cb), config.clone()),
        DataChannels::connect(ib, &cb, DtlsRole::Server, remote(&ca), config),
    );
    (a.expect("A connects"), b.expect("B connects"))
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_streams_both_ways_with_labels_and_clean_end() {
    let (a, b) = within(
        LIMIT,
        "connect",
        channels_pair(DataChannelsConfig::default()),
    )
    .await;
    assert!(a.info().handshake.is_some());
    let mut ca = a
        .open(ChannelOptions::reliable("test", "xmpp-jingle"))
        .unwrap();
    let mut cb = b
        .open(ChannelOptions::reliable("test", "xmpp-jingle"))
        .unwrap();
    let mut from_a = within(LIMIT, "B accepts", b.accept()).await.unwrap();
    let mut from_b = within(LIMIT, "A accepts", a.accept()).await.unwrap();
    assert_eq!((from_a.label(), from_a.protocol()), ("test", "xmpp-jingle"));
    assert_eq!(from_a.id(), ca.id());
    assert_eq!(from_b.id(), cb.id());

    let size = 8 * 1024 * 1024;
    let data_a = pattern(1, size);
    let data_b = pattern(2, size);
    let (wa, wb) = (data_a.clone(), data_b.clone());
    let write_a = tokio::spawn(async move {
        ca.write_all(&wa).await.unwrap();
        ca.shutdown().await.unwrap();
    });
    let write_b = tokio::spawn(async move {
        cb.write_all(&wb).await.unwrap();
        cb.shutdown().await.unwrap();
    });
    let read_b = tokio::spawn(async move {
        let mut got = Vec::new();
        from_a.read_to_end(&mut got).await.unwrap();
        got
    });
    let read_a = tokio::spawn(async move {
        let mut got = Vec::new();
        from_b.read_to_end(&mut got).await.unwrap();
        got
    });
    within(LIMIT, "writes", async {
        write_a.await.unwrap();
        write_b.await.unwrap();
    })
    .await;
    let got_b = within(LIMIT, "B reads to EOF", read_b).await.unwrap();
    let got_a = within(LIMIT, "A reads to EOF", read_a).await.unwrap();
    assert!(got_b == data_a, "A→B bytes differ");
    assert!(got_a == data_b, "B→A bytes differ");
    within(LIMIT, "close", a.close()).await;
    assert_eq!(
        within(LIMIT, "B sees the close", b.closed()).await,
        ChannelError::PeerClosed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_writer_back() {
    let mut config = DataChannelsConfig::default();
    config.association.send_buffer = 256 * 1024;
    config.association.receive_window = 512 * 1024;
    let (a, b) = within(LIMIT, "connect", channels_pair(config)).await;
    let mut writer = a.open(ChannelOptions::reliable("bulk", "")).unwrap();
    let mut reader = within(LIMIT, "accept", b.accept()).await.unwrap();
    let total = 16 * 1024 * 1024;
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = progress.clone();
    let write = tokio::spawn(async move {
        let block = pattern(3, 64 * 1024);
        for _ in 0..total / block.len() {
            writer.write_all(&block).await.unwrap();
            p.fetch_add(block.len(), std::sync::atomic::Ordering::SeqCst);
        }
        writer.shutdown().await.unwrap();
    });
    // Nobody reads for a while: the writer must stall at about the receive window plus its
    // own send buffer, not run ahead.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = progress.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        written <= 512 * 1024 + 256 * 1024 + 128 * 1024,
        "writer ran ahead of a reader that does not read: {written} bytes"
    );
    // Now read everything, slowly at first.
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0; 32 * 1024];
    within(Duration::from_secs(60), "read all", async {
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.len() < 1024 * 1024 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    })
    .await;
    within(LIMIT, "writer done", write).await.unwrap();
    assert_eq!(got.len(), total);
    let block = pattern(3, 64 * 1024);
    assert!(got.chunks(block.len()).all(|c| c == block.as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_at_once() {
    let (a, b) = within(
        LIMIT,
        "connect",
        channels_pair(DataChannelsConfig::default()),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let mut ch = a
            .open(ChannelOptions::reliable(format!("c{i}"), ""))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            ch.write_all(&pattern(i, 200_000)).await.unwrap();
            ch.shutdown().await.unwrap();
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..20 {
        let mut ch = within(LIMIT, "accept", b.accept()).await.unwrap();
        readers.push(tokio::spawn(async move {
            let i: u8 = ch.label()[1..].parse().unwrap();
            let mut got = Vec::new();
            ch.read_to_end(&mut got).await.unwrap();
            assert!(got == pattern(i, 200_000), "channel {i} bytes differ");
        }));
    }
    for t in tasks.into_iter().chain(readers) {
        within(LIMIT, "channel done", t).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_fingerprint_fails_the_connection() {
    let (ia, ib) = within(LIMIT, "ICE", ice_pair()).await;
    let ca = Certificate::generate().unwrap();
    let cb = Certificate::generate().unwrap();
    let impostor = Certificate::generate().unwrap();
    let config = DataChannelsConfig {
        connect_timeout: Duration::from_secs(10),
        ..DataChannelsConfig::default()
    };
    let (a, b) = within(LIMIT, "connect", async {
        tokio::join!(
            DataChannels::connect(ia, &ca, DtlsRole::Client, remote(&impostor), config.clone()),
            DataChannels::connect(ib, &cb, DtlsRole::Server, remote(&ca), config),
        )
    })
    .await;
    match a {
        Err(ChannelError::FingerprintMismatch { expected, got }) => {
            assert_eq!(expected, impostor.fingerprint());
            assert_eq!(got, cb.fingerprint());
        }
        other => panic!("A must refuse B's certificate, got {other:?}"),
    }
    assert!(b.is_err(), "B must not get a working association");
}
