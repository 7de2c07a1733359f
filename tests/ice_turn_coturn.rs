//! Two ICE agents whose direct path is firewalled away connect through a real coturn on
//! 127.0.0.1, over UDP and over TCP to the server: both select a relayed pair, and application
//! data crosses the relay both ways intact (Send indications first, ChannelData once the pair
//! is selected).
//!
//! The agents are sans-IO; the test owns real sockets (a UDP socket per agent, a TCP stream
//! per agent for TURN over TCP) and plays a firewall that lets only traffic to and from the
//! TURN server through.

mod coturn;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use coturn::{start_coturn, turnserver_available, SECRET};
use jingle_ice::ice::{
    Agent, AgentConfig, Candidate, CandidateType, Carrier, ConnectionState, IceEvent,
    ReceiveOutcome, Role,
};
use jingle_ice::turn::{TurnConfig, TurnCredentials, TurnTransport};

struct Peer {
    agent: Agent,
    socket: UdpSocket,
    host: SocketAddr,
    stream: Option<TcpStream>,
    events: Vec<IceEvent>,
    data: Vec<Vec<u8>>,
}

fn peer(role: Role, seed: u64, turn: TurnConfig, now: Instant) -> Peer {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let host = socket.local_addr().unwrap();
    let mut agent = Agent::new(
        AgentConfig {
            seed: Some(seed),
            ..AgentConfig::default()
        },
        role,
        now,
    );
    agent.add_host_candidate(1, host).unwrap();
    agent.add_turn_server(turn);
    agent.gather(now);
    Peer {
        agent,
        socket,
        host,
        stream: None,
        events: Vec::new(),
        data: Vec::new(),
    }
}

impl Peer {
    /// Sends what the agent asks, if the firewall lets it through (only to the TURN server).
    fn flush(&mut self, server: SocketAddr) {
        while let Some(t) = self.agent.poll_transmit() {
            if t.destination != server {
                continue; // the firewall drops direct traffic
            }
            match t.transport {
                Carrier::Udp => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Carrier::Tls => panic!("this test configures no TURN over TLS"),
                Carrier::Tcp => {
                    let stream = self.stream.get_or_insert_with(|| {
                        let s = TcpStream::connect(server).unwrap();
                        s.set_nonblocking(true).unwrap();
                        s
                    });
                    stream.set_nonblocking(false).unwrap();
                    stream.write_all(&t.contents).unwrap();
                    stream.set_nonblocking(true).unwrap();
                }
            }
        }
        while let Some(e) = self.agent.poll_event() {
            self.events.push(e);
        }
        while let Some(d) = self.agent.poll_relayed_data() {
            self.data.push(d.data);
        }
    }

    /// Feeds what arrived and what is due.
    fn poll(&mut self, server: SocketAddr) {
        let mut buf = [0u8; 2048];
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let now = Instant::now();
                    if let ReceiveOutcome::Data { .. } =
                        self.agent.handle_receive(now, self.host, from, &buf[..n])
                    {
                        panic!("data arrived directly, around the firewall");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        if let Some(stream) = self.stream.as_mut() {
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        self.agent.handle_turn_stream_closed(Instant::now(), server);
                        self.stream = None;
                        break;
                    }
                    Ok(n) => self
                        .agent
                        .handle_turn_stream(Instant::now(), server, &buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("stream read: {e}"),
                }
            }
        }
        let now = Instant::now();
        if self.agent.poll_timeout().is_some_and(|t| t <= now) {
            self.agent.handle_timeout(now);
        }
        self.flush(server);
    }
}

fn run(transport: TurnTransport) {
    if !turnserver_available() {
        return;
    }
    let coturn = start_coturn();
    let server: SocketAddr = format!("127.0.0.1:{}", coturn.port).parse().unwrap();
    let credentials = || {
        TurnCredentials::time_limited_for(
            SECRET.as_bytes(),
            SystemTime::now(),
            Duration::from_secs(600),
            Some("ice"),
        )
    };
    let now = Instant::now();
    let mut a = peer(
        Role::Controlling,
        1,
        TurnConfig::new(server, transport, credentials()),
        now,
    );
    let mut b = peer(
        Role::Controlled,
        2,
        TurnConfig::new(server, transport, credentials()),
        now,
    );
    a.flush(server);
    b.flush(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Gather: both get a relayed candidate.
    while ![&a, &b]
        .iter()
        .all(|p| p.events.contains(&IceEvent::GatheringComplete))
    {
        assert!(Instant::now() < deadline, "gathering did not complete");
        a.poll(server);
        b.poll(server);
        std::thread::sleep(Duration::from_millis(1));
    }
    for p in [&a, &b] {
        let relayed = p
            .agent
            .local_candidates()
            .iter()
            .find(|c| c.kind == CandidateType::Relayed)
            .expect("a relayed candidate");
        assert_eq!(relayed.address.ip(), server.ip());
        assert_ne!(relayed.address.port(), server.port());
    }
    // Signal everything.
    let ca = a.agent.local_credentials().clone();
    let cb = b.agent.local_credentials().clone();
    a.agent.set_remote_credentials(cb);
    b.agent.set_remote_credentials(ca);
    let remote = |c: &Candidate| {
        Candidate::remote(
            c.foundation.clone(),
            c.component,
            c.priority,
            c.address,
            c.kind,
            c.related_address,
        )
    };
    let now = Instant::now();
    for c in a.agent.local_candidates().to_vec() {
        b.agent.add_remote_candidate(remote(&c), now);
    }
    for c in b.agent.local_candidates().to_vec() {
        a.agent.add_remote_candidate(remote(&c), now);
    }
    a.flush(server);
    b.flush(server);
    while ![&a, &b]
        .iter()
        .all(|p| p.agent.state() == ConnectionState::Completed)
    {
        assert!(
            Instant::now() < deadline,
            "no relayed connection: {:?} / {:?}",
            a.agent.state(),
            b.agent.state()
        );
        a.poll(server);
        b.poll(server);
        std::thread::sleep(Duration::from_millis(1));
    }
    for p in [&a, &b] {
        let (l, r) = p.agent.selected_pair(1).unwrap();
        assert_eq!(l.kind, CandidateType::Relayed, "local side of {l} / {r}");
        assert_eq!(r.kind, CandidateType::Relayed, "remote side of {l} / {r}");
    }
    // Data both ways through the relay, checked end to end.
    let n = 200usize;
    let payload = |from: u8, i: usize| -> Vec<u8> {
        let mut v = vec![0x80, from];
        v.extend_from_slice(&(i as u32).to_be_bytes());
        v.extend((0..(i % 700)).map(|k| (k as u8) ^ from));
        v
    };
    // UDP may lose a datagram when the machine is busy (coturn's socket buffers): what is
    // missing is sent again, a few rounds at most; what arrives must be intact.
    let want_a: Vec<Vec<u8>> = (0..n).map(|i| payload(b'b', i)).collect();
    let want_b: Vec<Vec<u8>> = (0..n).map(|i| payload(b'a', i)).collect();
    let mut missing_at_a: Vec<usize> = (0..n).collect();
    let mut missing_at_b: Vec<usize> = (0..n).collect();
    for round in 0..5 {
        for (k, &i) in missing_at_b.iter().enumerate() {
            a.agent.send(1, &payload(b'a', i)).unwrap();
            a.flush(server);
            if k % 10 == 9 {
                b.poll(server);
            }
        }
        for (k, &i) in missing_at_a.iter().enumerate() {
            b.agent.send(1, &payload(b'b', i)).unwrap();
            b.flush(server);
            if k % 10 == 9 {
                a.poll(server);
            }
        }
        let settle = Instant::now() + Duration::from_millis(300);
        while Instant::now() < settle {
            a.poll(server);
            b.poll(server);
            std::thread::sleep(Duration::from_millis(1));
        }
        for got in a.data.iter().chain(&b.data) {
            assert!(
                want_a.contains(got) || want_b.contains(got),
                "corrupted relayed datagram: {got:?}"
            );
        }
        missing_at_a.retain(|&i| !a.data.contains(&want_a[i]));
        missing_at_b.retain(|&i| !b.data.contains(&want_b[i]));
        if missing_at_a.is_empty() && missing_at_b.is_empty() {
            break;
        }
        eprintln!(
            "round {round}: {} and {} datagrams lost on the way, sending them again",
            missing_at_a.len(),
            missing_at_b.len()
        );
    }
    assert!(
        missing_at_a.is_empty() && missing_at_b.is_empty(),
        "relayed data missing after 5 rounds: {} and {} of {n}",
        missing_at_a.len(),
        missing_at_b.len()
    );
    // Closing deletes the allocations (RFC 8656 §8).
    a.agent.close();
    b.agent.close();
    let end = Instant::now() + Duration::from_secs(5);
    while (a.agent.poll_timeout().is_some() || b.agent.poll_timeout().is_some())
        && Instant::now() < end
    {
        a.poll(server);
        b.poll(server);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(a.agent.poll_timeout(), None, "deallocation did not finish");
}

#[test]
fn agents_connect_through_coturn_over_udp() {
    run(TurnTransport::Udp);
}

#[test]
fn agents_connect_through_coturn_over_tcp() {
    run(TurnTransport::Tcp);
}

#[test]
fn wrong_turn_credentials_are_reported_and_gathering_completes() {
    if !turnserver_available() {
        return;
    }
    let coturn = start_coturn();
    let server: SocketAddr = format!("127.0.0.1:{}", coturn.port).parse().unwrap();
    let wrong = TurnCredentials::time_limited_for(
        b"not-the-secret",
        SystemTime::now(),
        Duration::from_secs(600),
        Some("ice"),
    );
    let mut a = peer(
        Role::Controlling,
        3,
        TurnConfig::new(server, TurnTransport::Udp, wrong),
        Instant::now(),
    );
    a.flush(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.events.contains(&IceEvent::GatheringComplete) {
        assert!(Instant::now() < deadline, "gathering did not complete");
        a.poll(server);
        std::thread::sleep(Duration::from_millis(1));
    }
    // Refused credentials are not tried again (new ones come with add_turn_server).
    assert!(a.events.contains(&IceEvent::RelayFailed {
        server,
        error: jingle_ice::turn::TurnError::WrongCredentials,
        retry_in: None,
    }));
    assert!(a
        .agent
        .local_candidates()
        .iter()
        .all(|c| c.kind == CandidateType::Host));
}

/// The tokio driver: a TURN server that refused the connection's credentials (expired
/// time-limited ones) is not tried again with them; new ones given to the running connection
/// (`IceConnection::add_turn_server`, as the Jingle glue does when XEP-0215 credentials are
/// refreshed) start the allocation again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_credentials_restart_an_allocation_refused_for_the_old_ones() {
    if !turnserver_available() {
        return;
    }
    let coturn = start_coturn();
    let server: SocketAddr = format!("127.0.0.1:{}", coturn.port).parse().unwrap();
    let credentials = |secret: &[u8]| {
        TurnCredentials::time_limited_for(
            secret,
            SystemTime::now(),
            Duration::from_secs(600),
            Some("ice"),
        )
    };
    let conn = jingle_ice::net::IceConnection::builder(Role::Controlling)
        .bind("127.0.0.1".parse().unwrap())
        .turn_server(TurnConfig::new(
            server,
            TurnTransport::Udp,
            credentials(b"expired-or-wrong"),
        ))
        .start()
        .await
        .expect("start");
    let step = Duration::from_secs(20);
    let refused = tokio::time::timeout(step, async {
        while let Some(event) = conn.next_event().await {
            if let IceEvent::RelayFailed {
                error, retry_in, ..
            } = event
            {
                return (error, retry_in);
            }
        }
        panic!("connection closed");
    })
    .await
    .expect("the refusal in time");
    assert_eq!(
        refused,
        (jingle_ice::turn::TurnError::WrongCredentials, None),
        "refused credentials are not tried again"
    );
    conn.add_turn_server(TurnConfig::new(
        server,
        TurnTransport::Udp,
        credentials(SECRET.as_bytes()),
    ))
    .await
    .expect("add_turn_server");
    let relayed = tokio::time::timeout(step, async {
        while let Some(event) = conn.next_event().await {
            match event {
                IceEvent::LocalCandidate(c) if c.kind == CandidateType::Relayed => return c,
                IceEvent::RelayFailed { error, .. } => panic!("failed again: {error}"),
                _ => {}
            }
        }
        panic!("connection closed");
    })
    .await
    .expect("a relayed candidate in time");
    assert_eq!(relayed.address.ip(), server.ip());
    conn.close().await;
}
