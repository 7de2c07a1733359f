//! The sans-IO TURN client against a real coturn on 127.0.0.1, over UDP and TCP: allocate with
//! time-limited credentials (coturn `use-auth-secret`), permission, Send/Data indications,
//! channel bind and ChannelData both ways with a plain UDP peer, then deallocation.
//!
//! Needs `turnserver` (Debian package `coturn`). Without it the tests say so loudly and pass,
//! except under `CI=true`, where a missing coturn is a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use jingle_ice::turn::{Credentials, TurnClient, TurnConfig, TurnEvent, TurnState, TurnTransport};

const SECRET: &str = "coturn-test-secret";
const WAIT: Duration = Duration::from_secs(10);

/// A coturn process, killed on drop.
struct Coturn {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn turnserver_available() -> bool {
    let found = Command::new("turnserver")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "CI=true but `turnserver` (coturn) is not installed");
        eprintln!(
            "\n*** SKIPPED: `turnserver` (coturn) is not installed; apt-get install coturn ***\n"
        );
    }
    found
}

/// A port free for both UDP and TCP on 127.0.0.1 right now (and the next one, which coturn
/// may use as its alternate port).
fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let port = udp.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port");
}

fn start_coturn() -> Coturn {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("jingle-ice-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--realm=example.test",
            "--use-auth-secret",
            &format!("--static-auth-secret={SECRET}"),
            "--allow-loopback-peers",
            "--min-port=40000",
            "--max-port=60000",
            "--simple-log",
            &format!("--log-file={}", dir.join("turn.log").display()),
            &format!("--pidfile={}", dir.join("turn.pid").display()),
            &format!("--userdb={}", dir.join("turndb").display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnserver");
    let coturn = Coturn { child, port, dir };
    // Ready once its TCP listener accepts.
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "coturn did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    coturn
}

/// The connection to the server: a UDP socket or a TCP stream.
enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Link {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        match self {
            Link::Udp(s) => {
                s.send_to(data, to).unwrap();
            }
            Link::Tcp(s) => s.write_all(data).unwrap(),
        }
    }

    /// One datagram or stream chunk, or `None` after a short wait.
    fn recv(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match self {
            Link::Udp(s) => s.recv_from(buf).ok(),
            Link::Tcp(s) => {
                let peer = s.peer_addr().unwrap();
                match s.read(buf) {
                    Ok(0) => None,
                    Ok(n) => Some((n, peer)),
                    Err(_) => None,
                }
            }
        }
    }
}

/// Moves bytes between the client and the server until `want` accepts an event (returned),
/// within a bounded time.
fn drive(
    client: &mut TurnClient,
    link: &mut Link,
    mut want: impl FnMut(&TurnEvent) -> bool,
) -> TurnEvent {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 65_600];
    loop {
        while let Some(t) = client.poll_transmit() {
            link.send(t.destination, &t.data);
        }
        while let Some(event) = client.poll_event() {
            if want(&event) {
                return event;
            }
            assert!(
                !matches!(
                    event,
                    TurnEvent::AllocationFailed(_) | TurnEvent::Expired(_)
                ),
                "unexpected {event:?}"
            );
        }
        assert!(Instant::now() < deadline, "timed out waiting for an event");
        if let Some((n, from)) = link.recv(&mut buf) {
            client.handle_input(Instant::now(), from, &buf[..n]);
        }
        let now = Instant::now();
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
    }
}

fn run(transport: TurnTransport) {
    if !turnserver_available() {
        return;
    }
    let coturn = start_coturn();
    let server: SocketAddr = ([127, 0, 0, 1], coturn.port).into();
    let mut link = match transport {
        TurnTransport::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            Link::Udp(s)
        }
        TurnTransport::Tcp => {
            let s = TcpStream::connect(server).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            s.set_nodelay(true).unwrap();
            Link::Tcp(s)
        }
    };
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let credentials = Credentials::time_limited_for(
        SECRET.as_bytes(),
        SystemTime::now(),
        Duration::from_secs(3600),
        Some("alice"),
    );
    let mut config = TurnConfig::new(server, transport, credentials);
    config.software = Some("jingle-ice test".into());
    let mut client = TurnClient::new(config, Instant::now());

    let TurnEvent::Allocated {
        relayed, lifetime, ..
    } = drive(&mut client, &mut link, |e| {
        matches!(e, TurnEvent::Allocated { .. })
    })
    else {
        unreachable!()
    };
    assert!(relayed.ip().is_loopback());
    assert!(lifetime > Duration::ZERO);

    // Permission, then a Send indication out and a Data indication back.
    client
        .create_permission(peer_addr.ip(), Instant::now())
        .unwrap();
    drive(&mut client, &mut link, |e| {
        matches!(e, TurnEvent::PermissionCreated(_))
    });
    client
        .send_to(peer_addr, b"hello via send", Instant::now())
        .unwrap();
    flush(&mut client, &mut link);
    let mut buf = [0u8; 2048];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"hello via send"[..], relayed));
    peer.send_to(b"hello via data", relayed).unwrap();
    let event = drive(&mut client, &mut link, |e| {
        matches!(e, TurnEvent::PeerData { .. })
    });
    assert_eq!(
        event,
        TurnEvent::PeerData {
            peer: peer_addr,
            data: b"hello via data".to_vec()
        }
    );
    assert_eq!(client.stats().data_indications, 1);

    // Channel, then ChannelData both ways.
    let channel = client.bind_channel(peer_addr, Instant::now()).unwrap();
    let event = drive(&mut client, &mut link, |e| {
        matches!(e, TurnEvent::ChannelBound { .. })
    });
    assert_eq!(
        event,
        TurnEvent::ChannelBound {
            peer: peer_addr,
            channel
        }
    );
    for i in 0..20u8 {
        let payload = vec![i; 100 + usize::from(i)];
        client.send_to(peer_addr, &payload, Instant::now()).unwrap();
        flush(&mut client, &mut link);
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&payload[..], relayed));
        peer.send_to(&payload[..n - 1], relayed).unwrap();
        let event = drive(&mut client, &mut link, |e| {
            matches!(e, TurnEvent::PeerData { .. })
        });
        assert_eq!(
            event,
            TurnEvent::PeerData {
                peer: peer_addr,
                data: payload[..n - 1].to_vec()
            }
        );
    }
    assert_eq!(client.stats().channel_data, 20);
    assert_eq!(client.stats().data_indications, 1);

    client.close(Instant::now());
    drive(&mut client, &mut link, |e| matches!(e, TurnEvent::Closed));
    assert_eq!(client.state(), TurnState::Closed);
    drop(coturn);
}

/// Sends whatever the client has queued.
fn flush(client: &mut TurnClient, link: &mut Link) {
    while let Some(t) = client.poll_transmit() {
        link.send(t.destination, &t.data);
    }
}

#[test]
fn coturn_udp_allocate_permission_channel_and_close() {
    run(TurnTransport::Udp);
}

#[test]
fn coturn_tcp_allocate_permission_channel_and_close() {
    run(TurnTransport::Tcp);
}

#[test]
fn coturn_refuses_a_wrong_secret() {
    if !turnserver_available() {
        return;
    }
    let coturn = start_coturn();
    let server: SocketAddr = ([127, 0, 0, 1], coturn.port).into();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut link = Link::Udp(socket);
    let credentials = Credentials::time_limited_for(
        b"not the secret",
        SystemTime::now(),
        Duration::from_secs(3600),
        None,
    );
    let mut client = TurnClient::new(
        TurnConfig::new(server, TurnTransport::Udp, credentials),
        Instant::now(),
    );
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 2048];
    let event = loop {
        flush(&mut client, &mut link);
        if let Some(event) = client.poll_event() {
            break event;
        }
        assert!(Instant::now() < deadline, "no answer from coturn");
        if let Some((n, from)) = link.recv(&mut buf) {
            client.handle_input(Instant::now(), from, &buf[..n]);
        }
    };
    assert_eq!(
        event,
        TurnEvent::AllocationFailed(jingle_ice::turn::TurnError::WrongCredentials)
    );
}
