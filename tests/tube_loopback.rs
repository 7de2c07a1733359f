//! Stream tubes end to end in one process: two [`JingleRuntime`] joined by the in-memory server of
//! `jingle_wire`, real ICE and data channels over 127.0.0.1, real TCP services and clients.
//! The same against Prosody, coturn and NATs is `tests/lab_tube.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jingle_ice::apps::tube::{share, IncomingTube, Tube, TubeConfig, TubeDescription};
use jingle_ice::jingle::ReasonCondition;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

mod jingle_wire;

use jingle_wire::{dc_config, unwired, wire};

const LIMIT: Duration = Duration::from_secs(120);

/// `len` bytes, different for each `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Echoes every connection until its EOF, then closes it.
async fn echo_service() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Reads a request line `LEN SEED`, answers `pattern(LEN, SEED)` and closes (like an HTTP/1.0
/// server).
async fn source_service() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while s.read_exact(&mut b).await.is_ok() && b[0] != b'\n' {
                    line.push(b[0]);
                }
                let line = String::from_utf8(line).unwrap();
                let mut words = line.split_whitespace();
                let len: usize = words.next().unwrap().parse().unwrap();
                let seed: u64 = words.next().unwrap().parse().unwrap();
                let _ = s.write_all(&pattern(len, seed)).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

struct Tubes {
    sharing: Arc<Tube>,
    connecting: Arc<Tube>,
    /// The connecting side's local port.
    addr: SocketAddr,
    runs: Vec<tokio::task::JoinHandle<jingle_ice::jingle::Reason>>,
}

/// Alice shares `service`; Bob accepts on 127.0.0.1:0; both run.
async fn tubes(service: SocketAddr, share_config: TubeConfig, connect_config: TubeConfig) -> Tubes {
    let (a, b) = unwired(dc_config());
    wire(a.clone(), b.clone());
    let bob = b.local_jid();
    let mut offer = TubeDescription::new("echo");
    offer.desc = Some("a test service".into());
    let offered = offer.clone();
    let accept = async move {
        let incoming = b.next_incoming().await.unwrap();
        let tube = IncomingTube::from_session(incoming).unwrap();
        assert_eq!(tube.description(), &offered);
        assert_eq!(tube.peer().to_bare().as_str(), "alice@example.test");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = tube.accept(listener, connect_config).await.unwrap();
        (t, b)
    };
    let (sharing, (connecting, _b)) = tokio::join!(
        async {
            share(&a, bob, offer, service.to_string(), share_config)
                .await
                .unwrap()
        },
        accept
    );
    let sharing = Arc::new(sharing);
    let connecting = Arc::new(connecting);
    let addr = connecting.local_addr().unwrap();
    assert!(sharing.local_addr().is_none());
    let runs = [sharing.clone(), connecting.clone()]
        .into_iter()
        .map(|t| tokio::spawn(async move { t.run().await }))
        .collect();
    // Keep the extensions alive with the tubes.
    std::mem::forget(a);
    Tubes {
        sharing,
        connecting,
        addr,
        runs,
    }
}

/// Sends `data`, half-closes, reads everything back until EOF.
async fn echo_through(addr: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    got
}

async fn request(s: &mut TcpStream, len: usize, seed: u64) {
    s.write_all(format!("{len} {seed}\n").as_bytes())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tube_carries_many_concurrent_connections_both_ways() {
    tokio::time::timeout(LIMIT, async {
        let service = echo_service().await;
        let t = tubes(service, TubeConfig::default(), TubeConfig::default()).await;
        let mut clients = Vec::new();
        for i in 0..24u64 {
            // Sizes from a few bytes to 1 MiB, none a multiple of the chunk.
            let len = [7usize, 1000, 65_537, 300_001, 1 << 20][i as usize % 5];
            let data = pattern(len, i);
            let addr = t.addr;
            clients.push(tokio::spawn(async move {
                let got = echo_through(addr, data.clone()).await;
                assert_eq!(got.len(), data.len(), "connection {i}");
                assert!(got == data, "connection {i}: bytes differ");
                len as u64
            }));
        }
        let mut total = 0;
        for c in clients {
            total += c.await.unwrap();
        }
        // Every connection ended cleanly on both sides.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for tube in [&t.sharing, &t.connecting] {
            let s = tube.stats();
            assert_eq!(s.connections, 24, "{s:?}");
            assert_eq!(s.active, 0, "{s:?}");
            assert_eq!(s.failed, 0, "{s:?}");
            assert_eq!(s.bytes_sent, total, "{s:?}");
            assert_eq!(s.bytes_received, total, "{s:?}");
        }
        // Closing the tube ends both runs with <success/>.
        t.connecting.close();
        for r in t.runs {
            assert_eq!(r.await.unwrap().condition, ReasonCondition::Success);
        }
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tube_connection_whose_reader_stalls_does_not_starve_the_others() {
    tokio::time::timeout(LIMIT, async {
        let service = source_service().await;
        let t = tubes(service, TubeConfig::default(), TubeConfig::default()).await;
        const STALLED: usize = 32 << 20;
        const MOVING: usize = 8 << 20;
        // The stalled client's socket takes little, so the tube is what holds the rest.
        let sock = TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(64 * 1024).unwrap();
        let mut stalled = sock.connect(t.addr).await.unwrap();
        request(&mut stalled, STALLED, 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;

        let started = Instant::now();
        let mut moving = TcpStream::connect(t.addr).await.unwrap();
        request(&mut moving, MOVING, 2).await;
        let mut got = Vec::new();
        moving.read_to_end(&mut got).await.unwrap();
        let took = started.elapsed();
        assert_eq!(got.len(), MOVING);
        assert!(got == pattern(MOVING, 2), "moving connection: bytes differ");

        // The stalled connection's bytes wait at the service, not in the association: what
        // the sharing side sent for it is bounded by the window and the TCP buffers.
        let sent = t.sharing.stats().bytes_sent - MOVING as u64;
        eprintln!(
            "moving connection: {MOVING} bytes in {took:?} while the other is stalled; \
             {sent} bytes of the stalled one sent"
        );
        assert!(
            sent < (STALLED / 2) as u64,
            "{sent} bytes of the stalled one sent"
        );

        // The stalled reader reads again: its connection completes.
        let mut got = Vec::new();
        stalled.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), STALLED);
        assert!(
            got == pattern(STALLED, 1),
            "stalled connection: bytes differ"
        );
        assert_eq!(t.connecting.stats().failed, 0);
    })
    .await
    .expect("in time");
}

/// A client connects, writes `request` and sees its connection end without data: reset (even
/// before `connect` returns, on loopback), or at worst EOF.
async fn refused_at(addr: SocketAddr, request: &[u8]) {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
        Err(e) => panic!("connect: {e}"),
    };
    let _ = s.write_all(request).await;
    refused(&mut s).await;
}

/// The client's connection ends without data: reset, or at worst EOF.
async fn refused(s: &mut TcpStream) {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
        Ok(Ok(0)) => {}
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(Ok(n)) => panic!("{n} bytes from a refused connection"),
        Err(_) => panic!("the refused connection stayed open"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tube_service_refusing_closes_the_client_connection() {
    tokio::time::timeout(LIMIT, async {
        // A port bound but not listening (kept for the whole test, so that no listener of the
        // test gets it): connecting to it is refused.
        let reserved = TcpSocket::new_v4().unwrap();
        reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = reserved.local_addr().unwrap();
        let t = tubes(closed, TubeConfig::default(), TubeConfig::default()).await;
        refused_at(t.addr, b"GET / HTTP/1.0\r\n\r\n").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(t.sharing.stats().refused, 1);
        assert_eq!(t.connecting.stats().failed, 1);
        assert_eq!(t.sharing.stats().active, 0);
        assert_eq!(t.connecting.stats().active, 0);
        // The tube itself stays up.
        assert!(t.sharing.session().end_reason().is_none());
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tube_refuses_connections_over_the_limit() {
    tokio::time::timeout(LIMIT, async {
        let service = echo_service().await;
        let connect = TubeConfig {
            max_connections: 2,
            ..TubeConfig::default()
        };
        let t = tubes(service, TubeConfig::default(), connect).await;
        let mut open = Vec::new();
        for i in 0..2u8 {
            let mut s = TcpStream::connect(t.addr).await.unwrap();
            s.write_all(&[i]).await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i);
            open.push(s);
        }
        // The third is refused at once.
        refused_at(t.addr, b"z").await;
        assert_eq!(t.connecting.stats().refused, 1);
        // Once one ends, a new one goes through.
        drop(open.pop());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = echo_through(t.addr, b"again".to_vec()).await;
        assert_eq!(got, b"again");

        // The sharing side has its own limit: over it, the client's connection is reset.
        let service = echo_service().await;
        let share = TubeConfig {
            max_connections: 1,
            ..TubeConfig::default()
        };
        let t = tubes(service, share, TubeConfig::default()).await;
        let mut first = TcpStream::connect(t.addr).await.unwrap();
        first.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        first.read_exact(&mut b).await.unwrap();
        refused_at(t.addr, b"y").await;
        assert_eq!(t.sharing.stats().refused, 1);
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tube_ending_mid_transfer_resets_the_open_connections() {
    tokio::time::timeout(LIMIT, async {
        let service = source_service().await;
        let t = tubes(service, TubeConfig::default(), TubeConfig::default()).await;
        let mut s = TcpStream::connect(t.addr).await.unwrap();
        request(&mut s, 64 << 20, 3).await;
        let mut first = vec![0u8; 1 << 20];
        s.read_exact(&mut first).await.unwrap();
        assert!(first == pattern(64 << 20, 3)[..1 << 20]);
        // The sharing side stops the tube: the client's connection must not end like a
        // complete stream.
        t.sharing.close();
        let mut rest = Vec::new();
        let r = s.read_to_end(&mut rest).await;
        assert!(r.is_err(), "clean EOF after {} more bytes", rest.len());
        for r in t.runs {
            assert_eq!(r.await.unwrap().condition, ReasonCondition::Success);
        }
        assert_eq!(t.connecting.stats().active, 0);
    })
    .await
    .expect("in time");
}

/// Not a proof, a figure: 32 MiB through one tube connection and through a bare data channel
/// of the same kind of session, in the same run (`--release` for meaningful numbers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tube_one_connection_throughput_against_the_bare_channel() {
    const SIZE: usize = 32 << 20;
    tokio::time::timeout(LIMIT, async {
        let service = source_service().await;
        let t = tubes(service, TubeConfig::default(), TubeConfig::default()).await;
        let mut s = TcpStream::connect(t.addr).await.unwrap();
        let started = Instant::now();
        request(&mut s, SIZE, 4).await;
        let mut got = Vec::with_capacity(SIZE);
        s.read_to_end(&mut got).await.unwrap();
        let tube_secs = started.elapsed().as_secs_f64();
        assert!(got == pattern(SIZE, 4));

        // The bare channel: a session of its own between two fresh extensions.
        let (a, b) = unwired(dc_config());
        wire(a.clone(), b.clone());
        let bob = b.local_jid();
        let (sa, sb) = tokio::join!(
            async {
                a.connect(bob, TubeDescription::new("bare").to_element())
                    .await
                    .unwrap()
            },
            async {
                let inc = b.next_incoming().await.unwrap();
                inc.accept(TubeDescription::new("bare").to_element())
                    .await
                    .unwrap()
            }
        );
        let data = pattern(SIZE, 5);
        let mut tx = sa
            .data_channels()
            .unwrap()
            .open(jingle_ice::channel::ChannelOptions::reliable(
                "bare", "bare",
            ))
            .unwrap();
        let started = Instant::now();
        let sender = async {
            tx.write_all(&data).await.unwrap();
            tx.shutdown().await.unwrap();
        };
        let receiver = async {
            let mut rx = sb.data_channels().unwrap().accept().await.unwrap();
            let mut got = Vec::with_capacity(SIZE);
            rx.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), got) = tokio::join!(sender, receiver);
        let bare_secs = started.elapsed().as_secs_f64();
        assert!(got == data);
        let mb = SIZE as f64 / 1e6;
        eprintln!(
            "one tube connection: {:.1} MB/s; bare data channel: {:.1} MB/s; ratio {:.2}",
            mb / tube_secs,
            mb / bare_secs,
            bare_secs / tube_secs
        );
    })
    .await
    .expect("in time");
}
