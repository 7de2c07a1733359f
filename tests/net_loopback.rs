//! The tokio driver on real sockets: two agents in one process over 127.0.0.1 and ::1.
//!
//! Every await is bounded by a timeout, so a broken agent fails a test instead of hanging it.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jingle_ice::ice::{Candidate, ConnectionState, IceEvent, Role};
use jingle_ice::net::{Error, IceConnection, IceConnectionBuilder};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

const CONNECT: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_secs(3);
/// First byte of test datagrams: DTLS application data, outside STUN's 0-3 (RFC 7983 §7).
const MARKER: u8 = 23;

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

fn on(ip: IpAddr, role: Role) -> IceConnectionBuilder {
    IceConnection::builder(role)
        .include_loopback(true)
        .allow_address(ip)
}

/// Forwards `from`'s candidates (through their text form) and end-of-candidates to `to`.
fn signal(from: Arc<IceConnection>, to: Arc<IceConnection>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = from.next_event().await {
            let result = match event {
                IceEvent::LocalCandidate(c) => {
                    let remote: Candidate = c.to_sdp().parse().expect("own candidate re-parses");
                    to.add_remote_candidate(remote).await
                }
                IceEvent::GatheringComplete => to.end_of_remote_candidates().await,
                _ => Ok(()),
            };
            if result.is_err() {
                return;
            }
        }
    })
}

struct Pair {
    a: Arc<IceConnection>,
    b: Arc<IceConnection>,
    signalling: Vec<JoinHandle<()>>,
}

impl Pair {
    async fn close(self) {
        within(SHORT, "close A", self.a.close()).await;
        within(SHORT, "close B", self.b.close()).await;
        for task in self.signalling {
            within(SHORT, "signalling ends after close", task)
                .await
                .expect("signalling task");
        }
    }
}

async fn start_pair(a: IceConnectionBuilder, b: IceConnectionBuilder) -> Pair {
    let a = Arc::new(within(SHORT, "start A", a.start()).await.expect("A starts"));
    let b = Arc::new(within(SHORT, "start B", b.start()).await.expect("B starts"));
    within(SHORT, "credentials", async {
        a.set_remote_credentials(b.local_credentials()).await?;
        b.set_remote_credentials(a.local_credentials()).await
    })
    .await
    .expect("credentials accepted");
    let signalling = vec![
        signal(Arc::clone(&a), Arc::clone(&b)),
        signal(Arc::clone(&b), Arc::clone(&a)),
    ];
    Pair { a, b, signalling }
}

async fn connect_pair(ip: IpAddr) -> Pair {
    let pair = start_pair(on(ip, Role::Controlling), on(ip, Role::Controlled)).await;
    within(CONNECT, "A connects", pair.a.wait_connected())
        .await
        .expect("A connected");
    within(CONNECT, "B connects", pair.b.wait_connected())
        .await
        .expect("B connected");
    pair
}

/// Test payload: marker, sequence number, deterministic body of varying length, CRC-32 of all
/// that precedes it.
fn payload(seq: u32) -> Vec<u8> {
    let len = 16 + (seq.wrapping_mul(7919) % 1100) as usize;
    let mut p = Vec::with_capacity(len + 9);
    p.push(MARKER);
    p.extend_from_slice(&seq.to_be_bytes());
    let mut x = seq.wrapping_mul(2_654_435_761).wrapping_add(1);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.push(x as u8);
    }
    let crc = crc32fast::hash(&p);
    p.extend_from_slice(&crc.to_be_bytes());
    p
}

/// Checks a test payload; its sequence number if intact.
fn verify(p: &[u8]) -> Option<u32> {
    let (body, crc) = p.split_at_checked(p.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_be_bytes() != crc || body.first() != Some(&MARKER) {
        return None;
    }
    let seq = u32::from_be_bytes(body.get(1..5)?.try_into().ok()?);
    (payload(seq) == p).then_some(seq)
}

struct Tally {
    received: u64,
    corrupted: u64,
    duplicates: u64,
}

/// Sends `count` datagrams from `tx` while `rx` counts them, with at most `window` in flight.
async fn stream(
    tx: Arc<IceConnection>,
    rx: Arc<IceConnection>,
    count: u32,
    window: usize,
) -> Tally {
    let credits = Arc::new(Semaphore::new(window));
    let received = Arc::new(AtomicU64::new(0));
    let receiver = {
        let credits = Arc::clone(&credits);
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let mut seen = vec![false; count as usize];
            let mut tally = Tally {
                received: 0,
                corrupted: 0,
                duplicates: 0,
            };
            while tally.received < u64::from(count) {
                let Ok(Some(d)) = tokio::time::timeout(SHORT, rx.recv()).await else {
                    break;
                };
                assert_eq!(d.component, 1);
                match verify(&d.data).and_then(|s| seen.get_mut(s as usize)) {
                    None => tally.corrupted += 1,
                    Some(slot) if *slot => tally.duplicates += 1,
                    Some(slot) => {
                        *slot = true;
                        tally.received += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                credits.add_permits(1);
            }
            tally
        })
    };
    for seq in 0..count {
        match tokio::time::timeout(SHORT, credits.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => {
                eprintln!(
                    "sender stalled at {seq}: {} received so far",
                    received.load(Ordering::Relaxed)
                );
                break;
            }
        }
        tx.send(1, &payload(seq))
            .await
            .expect("send on a connected pair");
    }
    within(CONNECT, "receiver finishes", receiver)
        .await
        .expect("receiver task")
}

#[test]
fn payload_round_trip() {
    for seq in [0, 1, 77, 9_999, u32::MAX] {
        assert_eq!(verify(&payload(seq)), Some(seq));
        let mut bad = payload(seq);
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        assert_eq!(verify(&bad), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_loopback_exchanges_ten_thousand_datagrams_each_way() {
    init_tracing();
    const N: u32 = 10_000;
    let pair = connect_pair(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let (a_to_b, b_to_a) = tokio::join!(
        stream(Arc::clone(&pair.a), Arc::clone(&pair.b), N, 64),
        stream(Arc::clone(&pair.b), Arc::clone(&pair.a), N, 64),
    );
    for (dir, t) in [("A->B", &a_to_b), ("B->A", &b_to_a)] {
        eprintln!(
            "{dir}: {} of {N} received, {} corrupted, {} duplicated",
            t.received, t.corrupted, t.duplicates
        );
        assert_eq!(t.corrupted, 0, "{dir}: corrupted datagrams");
        assert_eq!(t.duplicates, 0, "{dir}: duplicated datagrams");
        assert_eq!(t.received, u64::from(N), "{dir}: datagrams lost");
    }
    let (sa, sb) = (pair.a.stats(), pair.b.stats());
    assert_eq!(sa.datagrams_dropped + sb.datagrams_dropped, 0);
    for (side, conn) in [("A", &pair.a), ("B", &pair.b)] {
        let selected = conn.selected_pair(1).expect("a selected pair");
        eprintln!(
            "{side}: {} {} <-> {} {}",
            selected.local.kind,
            selected.local.address,
            selected.remote.kind,
            selected.remote.address
        );
        assert!(selected.local.address.ip().is_loopback());
        assert!(selected.remote.address.ip().is_loopback());
    }
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_connects() {
    init_tracing();
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    if std::net::UdpSocket::bind(SocketAddr::new(v6, 0)).is_err() {
        eprintln!(
            "\n!!!!!! SKIPPED ipv6_loopback_connects: this machine has no usable ::1 !!!!!!\n"
        );
        return;
    }
    let pair = connect_pair(v6).await;
    let (a_to_b, b_to_a) = tokio::join!(
        stream(Arc::clone(&pair.a), Arc::clone(&pair.b), 200, 32),
        stream(Arc::clone(&pair.b), Arc::clone(&pair.a), 200, 32),
    );
    assert_eq!((a_to_b.received, a_to_b.corrupted), (200, 0));
    assert_eq!((b_to_a.received, b_to_a.corrupted), (200, 0));
    let selected = within(CONNECT, "B learns the selected pair", async {
        loop {
            if let Some(p) = pair.b.selected_pair(1) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(selected.local.address.ip(), v6);
    assert_eq!(selected.remote.address.ip(), v6);
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_needs_a_path_and_an_open_connection() {
    init_tracing();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let conn = within(SHORT, "start", on(ip, Role::Controlling).start())
        .await
        .expect("starts");
    assert!(matches!(
        conn.send(1, b"\x17early").await,
        Err(Error::NoPath { component: 1 })
    ));
    assert!(matches!(
        conn.send(2, b"\x17x").await,
        Err(Error::InvalidComponent(2))
    ));
    assert!(matches!(
        conn.send(0, b"\x17x").await,
        Err(Error::InvalidComponent(0))
    ));
    assert!(conn.selected_pair(1).is_none());
    assert!(conn.selected_pair(0).is_none());
    let addrs = conn.local_addresses();
    within(SHORT, "close", conn.close()).await;
    assert_eq!(conn.state(), ConnectionState::Closed);
    // The ports are free again although the handle still exists.
    for a in &addrs {
        std::net::UdpSocket::bind(a).expect("port released by close");
    }
    assert!(matches!(
        conn.send(1, b"\x17late").await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        conn.end_of_remote_candidates().await,
        Err(Error::Closed)
    ));
    assert!(within(SHORT, "recv after close", conn.recv())
        .await
        .is_none());
    // Events queued before close can still be read; then the stream ends.
    within(SHORT, "events end after close", async {
        while conn.next_event().await.is_some() {}
    })
    .await;
    // Closing twice is harmless.
    within(SHORT, "close again", conn.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_errors() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let zero = on(ip, Role::Controlling).components(0).start().await;
    assert!(matches!(zero, Err(Error::InvalidConfig(_))));
    let range = on(ip, Role::Controlling)
        .port_range(5000, 4000)
        .start()
        .await;
    assert!(matches!(range, Err(Error::InvalidConfig(_))));
    // Loopback only, but loopback not included: nothing to gather from.
    let none = IceConnection::builder(Role::Controlling)
        .allow_address(ip)
        .start()
        .await;
    assert!(matches!(none, Err(Error::NoUsableAddress)));
    // An explicit address that is not ours cannot be bound.
    let foreign = IceConnection::builder(Role::Controlling)
        .bind("192.0.2.254".parse().expect("ip"))
        .start()
        .await;
    assert!(matches!(foreign, Err(Error::Bind { .. })), "{foreign:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_range_and_components_are_honoured() {
    init_tracing();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // Find three free ports in a row is not guaranteed; use a wide range instead.
    let conn = within(
        SHORT,
        "start",
        IceConnection::builder(Role::Controlled)
            .bind(ip)
            .components(2)
            .port_range(40_000, 40_999)
            .start(),
    )
    .await
    .expect("starts");
    let addrs = conn.local_addresses();
    assert_eq!(addrs.len(), 2, "one socket per component: {addrs:?}");
    for a in &addrs {
        assert_eq!(a.ip(), ip);
        assert!((40_000..=40_999).contains(&a.port()), "{a}");
    }
    let candidates = conn.local_candidates();
    let mut components: Vec<u16> = candidates.iter().map(|c| c.component).collect();
    components.sort_unstable();
    components.dedup();
    assert_eq!(components, [1, 2], "{candidates:?}");
    within(SHORT, "close", conn.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_receive_queue_drops_and_counts() {
    init_tracing();
    const SENT: u32 = 50;
    const QUEUE: usize = 4;
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let pair = start_pair(
        on(ip, Role::Controlling),
        on(ip, Role::Controlled).receive_queue(QUEUE),
    )
    .await;
    within(CONNECT, "A connects", pair.a.wait_connected())
        .await
        .expect("A connected");
    within(CONNECT, "B connects", pair.b.wait_connected())
        .await
        .expect("B connected");
    // B's application does not read: after QUEUE datagrams the rest are dropped and counted.
    for seq in 0..SENT {
        pair.a.send(1, &payload(seq)).await.expect("send");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    within(SHORT, "B accounts for every datagram", async {
        loop {
            let s = pair.b.stats();
            if s.datagrams_received + s.datagrams_dropped >= u64::from(SENT) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let s = pair.b.stats();
    assert_eq!(s.datagrams_received, QUEUE as u64);
    assert_eq!(s.datagrams_dropped, u64::from(SENT) - QUEUE as u64);
    // The queued ones are the first ones, intact.
    for seq in 0..QUEUE as u32 {
        let d = within(SHORT, "queued datagram", pair.b.recv())
            .await
            .expect("datagram");
        assert_eq!(verify(&d.data), Some(seq));
    }
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_driver_and_frees_the_sockets() {
    init_tracing();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let conn = within(SHORT, "start", on(ip, Role::Controlling).start())
        .await
        .expect("starts");
    let addrs = conn.local_addresses();
    assert!(!addrs.is_empty());
    drop(conn);
    within(SHORT, "sockets are released", async {
        loop {
            if addrs.iter().all(|a| std::net::UdpSocket::bind(a).is_ok()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_reconnects() {
    init_tracing();
    let pair = connect_pair(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let old_a = pair.a.local_credentials();
    let new_a = within(SHORT, "A restarts", pair.a.restart())
        .await
        .expect("restart");
    assert_ne!(old_a, new_a);
    assert_eq!(pair.a.local_credentials(), new_a);
    let new_b = within(SHORT, "B restarts", pair.b.restart())
        .await
        .expect("restart");
    within(SHORT, "new credentials", async {
        pair.b.set_remote_credentials(new_a).await?;
        pair.a.set_remote_credentials(new_b).await
    })
    .await
    .expect("credentials");
    within(CONNECT, "data flows after the restart", async {
        loop {
            if pair.a.state() == ConnectionState::Failed {
                panic!("A failed after restart");
            }
            if pair.a.send(1, &payload(1)).await.is_ok() {
                if let Ok(Some(d)) =
                    tokio::time::timeout(Duration::from_millis(50), pair.b.recv()).await
                {
                    assert_eq!(verify(&d.data), Some(1));
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_components_carry_their_own_datagrams() {
    init_tracing();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let pair = start_pair(
        on(ip, Role::Controlling).components(2),
        on(ip, Role::Controlled).components(2),
    )
    .await;
    within(CONNECT, "A connects", pair.a.wait_connected())
        .await
        .expect("A connected");
    within(CONNECT, "B connects", pair.b.wait_connected())
        .await
        .expect("B connected");
    for component in [1u16, 2] {
        let seq = u32::from(component) * 1000;
        pair.a
            .send(component, &payload(seq))
            .await
            .expect("send on a connected component");
        let d = within(SHORT, "datagram on the component", pair.b.recv())
            .await
            .expect("datagram");
        assert_eq!(d.component, component);
        assert_eq!(verify(&d.data), Some(seq));
    }
    let (one, two) = within(CONNECT, "both components selected", async {
        loop {
            if let (Some(one), Some(two)) = (pair.a.selected_pair(1), pair.a.selected_pair(2)) {
                return (one, two);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!((one.component, two.component), (1, 2));
    assert_ne!(one.local.address, two.local.address);
    pair.close().await;
}
