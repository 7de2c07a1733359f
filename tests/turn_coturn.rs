//! The sans-IO TURN client against a real coturn on 127.0.0.1, over UDP and TCP: allocate with
//! time-limited credentials (coturn `use-auth-secret`), permission, Send/Data indications,
//! channel bind and ChannelData both ways with a plain UDP peer, then deallocation.
//!
//! Needs `turnserver` (Debian package `coturn`). Without it the tests say so loudly and pass,
//! except under `CI=true`, where a missing coturn is a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use jingle_ice::turn::{
    TurnClient, TurnConfig, TurnCredentials, TurnEvent, TurnState, TurnTransport,
};

mod coturn;
use coturn::{start_coturn, turnserver_available, SECRET};

const WAIT: Duration = Duration::from_secs(10);

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
        TurnTransport::Tls => panic!("TURN over TLS is tested in tests/turn_tls.rs"),
    };
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let credentials = TurnCredentials::time_limited_for(
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
    let credentials = TurnCredentials::time_limited_for(
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
