//! Tests of the rules of RFC 8445 / RFC 7675 that a peer relies on, with two agents wired
//! back to back in virtual time (a tiny harness: a one-way delay, an optional static NAT that
//! rewrites one side's source address, and a drop filter).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jingle_ice::ice::{
    Agent, AgentConfig, Candidate, CandidateType, ConnectionState, Credentials, IceEvent,
    ReceiveOutcome, Role, Transmit,
};
use jingle_ice::stun::{Class, Message, MessageEncoder, Method, TransactionId};
use jingle_ice::turn::{TurnConfig, TurnCredentials, TurnError, TurnTransport};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Side {
    agent: Agent,
    host: SocketAddr,
    /// Further local addresses of this side (other components).
    extra: Vec<SocketAddr>,
    events: Vec<IceEvent>,
    data: Vec<Vec<u8>>,
}

struct Harness {
    now: Instant,
    sides: [Side; 2],
    delay: Duration,
    /// In flight: (delivery time, sequence, destination side, local, remote, bytes).
    queue: Vec<(Instant, u64, usize, SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    /// Static NAT: a side's host address is seen by the other side as this public address.
    nat: HashMap<SocketAddr, SocketAddr>,
    /// Returns true to drop a datagram (source as sent, destination).
    drop: Box<dyn FnMut(&Transmit) -> bool>,
    /// A STUN server that answers Binding requests with the (NATed) source address.
    stun_server: Option<SocketAddr>,
    /// Binding requests the STUN server answered.
    stun_answered: usize,
}

fn config(seed: u64) -> AgentConfig {
    AgentConfig {
        seed: Some(seed),
        ..AgentConfig::default()
    }
}

impl Harness {
    fn new(role_a: Role, role_b: Role) -> Self {
        Self::with_configs(role_a, config(1), role_b, config(2))
    }

    fn with_configs(role_a: Role, ca: AgentConfig, role_b: Role, cb: AgentConfig) -> Self {
        let now = Instant::now();
        let mk = |role, cfg, host: &str| Side {
            agent: Agent::new(cfg, role, now),
            host: addr(host),
            extra: Vec::new(),
            events: Vec::new(),
            data: Vec::new(),
        };
        Harness {
            now,
            sides: [
                mk(role_a, ca, "10.0.0.1:1000"),
                mk(role_b, cb, "10.0.0.2:2000"),
            ],
            delay: Duration::from_millis(10),
            queue: Vec::new(),
            seq: 0,
            nat: HashMap::new(),
            drop: Box::new(|_| false),
            stun_server: None,
            stun_answered: 0,
        }
    }

    fn gather(&mut self) {
        for s in &mut self.sides {
            let host = s.host;
            s.agent.add_host_candidate(1, host).expect("host candidate");
            s.agent.gather(self.now);
        }
        self.pump();
    }

    fn exchange_credentials(&mut self) {
        let ca = self.sides[0].agent.local_credentials().clone();
        let cb = self.sides[1].agent.local_credentials().clone();
        self.sides[0].agent.set_remote_credentials(cb);
        self.sides[1].agent.set_remote_credentials(ca);
    }

    /// Gives each side the other's local candidates.
    fn exchange_candidates(&mut self) {
        let now = self.now;
        let ca: Vec<Candidate> = self.sides[0].agent.local_candidates().to_vec();
        let cb: Vec<Candidate> = self.sides[1].agent.local_candidates().to_vec();
        for c in cb {
            self.sides[0].agent.add_remote_candidate(remote(&c), now);
        }
        for c in ca {
            self.sides[1].agent.add_remote_candidate(remote(&c), now);
        }
    }

    fn owner(&self, dst: SocketAddr) -> Option<(usize, SocketAddr)> {
        for (i, s) in self.sides.iter().enumerate() {
            for &local in std::iter::once(&s.host).chain(&s.extra) {
                if local == dst || self.nat.get(&local) == Some(&dst) {
                    return Some((i, local));
                }
            }
        }
        None
    }

    /// Moves transmits into the queue and events out of the agents.
    fn pump(&mut self) {
        for i in 0..2 {
            while let Some(t) = self.sides[i].agent.poll_transmit() {
                if (self.drop)(&t) {
                    continue;
                }
                let source = self.nat.get(&t.source).copied().unwrap_or(t.source);
                if Some(t.destination) == self.stun_server {
                    let Ok(req) = Message::decode(&t.contents) else {
                        continue;
                    };
                    let mut buf = Vec::new();
                    let mut enc = MessageEncoder::new(
                        &mut buf,
                        Class::SuccessResponse,
                        Method::BINDING,
                        req.transaction_id(),
                    );
                    enc.xor_mapped_address(source);
                    enc.fingerprint();
                    enc.finish();
                    self.stun_answered += 1;
                    self.seq += 1;
                    let rtt = self.delay * 2;
                    self.queue
                        .push((self.now + rtt, self.seq, i, t.source, t.destination, buf));
                    continue;
                }
                let Some((to, local)) = self.owner(t.destination) else {
                    continue;
                };
                self.seq += 1;
                self.queue.push((
                    self.now + self.delay,
                    self.seq,
                    to,
                    local,
                    source,
                    t.contents,
                ));
            }
            while let Some(e) = self.sides[i].agent.poll_event() {
                self.sides[i].events.push(e);
            }
        }
    }

    /// Runs until `until` holds or `limit` of virtual time has passed; returns whether it held.
    fn run(&mut self, limit: Duration, mut until: impl FnMut(&Harness) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.pump();
            if until(self) {
                return true;
            }
            let next_packet = self.queue.iter().map(|q| (q.0, q.1)).min();
            let next_timer = self
                .sides
                .iter()
                .filter_map(|s| s.agent.poll_timeout())
                .min();
            let next = match (next_packet, next_timer) {
                (Some((p, _)), Some(t)) => p.min(t),
                (Some((p, _)), None) => p,
                (None, Some(t)) => t,
                (None, None) => return false,
            };
            if next > end {
                self.now = end;
                return until(self);
            }
            self.now = self.now.max(next);
            if let Some(pos) = self
                .queue
                .iter()
                .enumerate()
                .filter(|(_, q)| q.0 <= self.now)
                .min_by_key(|(_, q)| (q.0, q.1))
                .map(|(i, _)| i)
            {
                let (_, _, to, local, remote, bytes) = self.queue.remove(pos);
                let now = self.now;
                let side = &mut self.sides[to];
                if let ReceiveOutcome::Data { .. } =
                    side.agent.handle_receive(now, local, remote, &bytes)
                {
                    side.data.push(bytes);
                }
            } else {
                let now = self.now;
                for s in &mut self.sides {
                    if s.agent.poll_timeout().is_some_and(|t| t <= now) {
                        s.agent.handle_timeout(now);
                    }
                }
            }
        }
    }

    fn both(&self, state: ConnectionState) -> bool {
        self.sides.iter().all(|s| s.agent.state() == state)
    }

    fn connect(&mut self) {
        self.gather();
        self.exchange_credentials();
        self.exchange_candidates();
        assert!(
            self.run(Duration::from_secs(10), |h| h
                .both(ConnectionState::Completed)),
            "agents did not complete: {:?} / {:?}",
            self.sides[0].agent.state(),
            self.sides[1].agent.state()
        );
    }

    fn send(&mut self, from: usize, payload: &[u8]) {
        self.sides[from].agent.send(1, payload).expect("send path");
        self.pump();
    }
}

fn remote(c: &Candidate) -> Candidate {
    Candidate::remote(
        c.foundation.clone(),
        c.component,
        c.priority,
        c.address,
        c.kind,
        c.related_address,
    )
}

#[test]
fn two_agents_connect_and_carry_data() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    h.connect();
    for s in &h.sides {
        let (l, r) = s.agent.selected_pair(1).expect("selected");
        assert_eq!(l.kind, CandidateType::Host);
        assert_eq!(r.kind, CandidateType::Host);
        assert!(s
            .events
            .iter()
            .any(|e| matches!(e, IceEvent::SelectedPair { component: 1, .. })));
        assert!(s.events.contains(&IceEvent::GatheringComplete));
    }
    h.send(0, b"\x80hello");
    h.send(1, b"\x80world");
    h.run(Duration::from_millis(100), |h| {
        h.sides.iter().all(|s| !s.data.is_empty())
    });
    assert_eq!(h.sides[1].data, vec![b"\x80hello".to_vec()]);
    assert_eq!(h.sides[0].data, vec![b"\x80world".to_vec()]);
}

/// Both agents start in `role`; the conflict resolution (RFC 8445 §7.3.1.1, §7.2.5.1) must leave
/// one of each, with the loser announcing its switch to `switched_to`.
fn role_conflict_is_resolved(role: Role, switched_to: Role) {
    let mut h = Harness::new(role, role);
    h.connect();
    let roles: Vec<Role> = h.sides.iter().map(|s| s.agent.role()).collect();
    assert!(roles.contains(&Role::Controlling) && roles.contains(&Role::Controlled));
    assert!(h
        .sides
        .iter()
        .any(|s| s.events.contains(&IceEvent::RoleChanged(switched_to))));
}

#[test]
fn role_conflict_both_controlling_is_resolved() {
    role_conflict_is_resolved(Role::Controlling, Role::Controlled);
}

#[test]
fn role_conflict_both_controlled_is_resolved() {
    role_conflict_is_resolved(Role::Controlled, Role::Controlling);
}

#[test]
fn peer_reflexive_candidates_are_learned_on_both_sides() {
    // A is behind a static NAT that the signalling does not know about: B sees A's checks come
    // from an unknown address (a remote prflx), and A learns its own mapped address from B's
    // answer (a local prflx).
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    let a_host = h.sides[0].host;
    h.nat.insert(a_host, addr("198.51.100.7:40000"));
    h.connect();
    let (la, ra) = h.sides[0].agent.selected_pair(1).unwrap();
    assert_eq!(la.kind, CandidateType::PeerReflexive);
    assert_eq!(la.address, addr("198.51.100.7:40000"));
    assert_eq!(ra.kind, CandidateType::Host);
    let (lb, rb) = h.sides[1].agent.selected_pair(1).unwrap();
    assert_eq!(lb.kind, CandidateType::Host);
    assert_eq!(rb.kind, CandidateType::PeerReflexive);
    assert_eq!(rb.address, addr("198.51.100.7:40000"));
}

#[test]
fn trickled_candidates_arriving_late_still_connect() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    h.gather();
    h.exchange_credentials();
    // Only B learns A's candidate now; A learns B's a second later (slow signalling).
    let ca = h.sides[0].agent.local_candidates().to_vec();
    let now = h.now;
    for c in &ca {
        h.sides[1].agent.add_remote_candidate(remote(c), now);
    }
    h.run(Duration::from_secs(1), |_| false);
    // B's checks reached A and were answered: A knows B as peer-reflexive already.
    assert!(h.sides[0]
        .agent
        .remote_candidates()
        .iter()
        .any(|c| c.kind == CandidateType::PeerReflexive));
    let cb = h.sides[1].agent.local_candidates().to_vec();
    let now = h.now;
    for c in &cb {
        h.sides[0].agent.add_remote_candidate(remote(c), now);
    }
    assert!(h.run(Duration::from_secs(5), |h| h
        .both(ConnectionState::Completed)));
    // The signalled host candidate replaced the peer-reflexive one.
    let (_, r) = h.sides[0].agent.selected_pair(1).unwrap();
    assert_eq!(r.kind, CandidateType::Host);
}

#[test]
fn triggered_check_answers_the_peer_without_waiting_for_pacing() {
    // B has no candidates of A at all: it can only connect through triggered checks.
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    h.gather();
    h.exchange_credentials();
    let cb = h.sides[1].agent.local_candidates().to_vec();
    let now = h.now;
    for c in &cb {
        h.sides[0].agent.add_remote_candidate(remote(c), now);
    }
    let start = h.now;
    assert!(h.run(Duration::from_secs(5), |h| h
        .both(ConnectionState::Completed)));
    // Check, triggered check and nomination: a few one-way delays, far below an RTO.
    assert!(
        h.now - start < Duration::from_millis(200),
        "took {:?}",
        h.now - start
    );
}

#[test]
fn aggressive_nomination_from_the_peer_is_accepted() {
    // A hand-made controlling peer that puts USE-CANDIDATE on its very first check, as libnice
    // does by default: the controlled agent selects the pair as soon as its own check on it
    // succeeds.
    let now = Instant::now();
    let mut b = Agent::new(config(5), Role::Controlled, now);
    let b_host = addr("10.0.0.2:2000");
    let peer = addr("10.0.0.9:9000");
    b.add_host_candidate(1, b_host).unwrap();
    b.gather(now);
    let peer_creds = Credentials::new("peerufrag", "peerpasswordpeerpassword");
    b.set_remote_credentials(peer_creds.clone());
    let b_creds = b.local_credentials().clone();
    let mut buf = Vec::new();
    let mut enc = MessageEncoder::new(
        &mut buf,
        Class::Request,
        Method::BINDING,
        TransactionId([7; 12]),
    );
    enc.username(&format!("{}:{}", b_creds.ufrag, peer_creds.ufrag));
    enc.priority(1_845_501_695);
    enc.ice_controlling(42);
    enc.use_candidate();
    enc.message_integrity(b_creds.pwd.as_bytes());
    enc.fingerprint();
    enc.finish();
    assert_eq!(
        b.handle_receive(now, b_host, peer, &buf),
        ReceiveOutcome::Stun
    );
    // B answers, then sends its triggered check to the peer.
    let mut triggered = None;
    while let Some(t) = b.poll_transmit() {
        let m = Message::decode(&t.contents).unwrap();
        match m.class() {
            Class::SuccessResponse => {
                assert_eq!(m.transaction_id(), TransactionId([7; 12]));
                assert_eq!(m.xor_mapped_address(), Some(peer));
                m.verify_integrity(b_creds.pwd.as_bytes()).unwrap();
            }
            Class::Request => {
                assert_eq!(t.destination, peer);
                assert!(m.ice_controlled().is_some());
                m.verify_integrity(peer_creds.pwd.as_bytes()).unwrap();
                triggered = Some(m.transaction_id());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let tid = triggered.expect("a triggered check");
    let mut resp = Vec::new();
    let mut enc = MessageEncoder::new(&mut resp, Class::SuccessResponse, Method::BINDING, tid);
    enc.xor_mapped_address(b_host);
    enc.message_integrity(peer_creds.pwd.as_bytes());
    enc.fingerprint();
    enc.finish();
    let later = now + Duration::from_millis(5);
    assert_eq!(
        b.handle_receive(later, b_host, peer, &resp),
        ReceiveOutcome::Stun
    );
    let (l, r) = b
        .selected_pair(1)
        .expect("selected after aggressive nomination");
    assert_eq!(l.address, b_host);
    assert_eq!(r.address, peer);
    assert_eq!(r.kind, CandidateType::PeerReflexive);
    assert_eq!(b.state(), ConnectionState::Completed);
}

#[test]
fn unauthenticated_checks_are_refused_and_create_no_state() {
    let now = Instant::now();
    let mut b = Agent::new(config(9), Role::Controlled, now);
    let b_host = addr("10.0.0.2:2000");
    b.add_host_candidate(1, b_host).unwrap();
    b.gather(now);
    b.set_remote_credentials(Credentials::new("peer", "peerpasswordpeerpassword"));
    let b_creds = b.local_credentials().clone();
    let mut buf = Vec::new();
    for (i, key) in [
        b"wrong-password-wrong-pwd".as_slice(),
        b_creds.pwd.as_bytes(),
    ]
    .into_iter()
    .enumerate()
    {
        let user = if i == 0 {
            format!("{}:peer", b_creds.ufrag)
        } else {
            "notme:peer".to_string()
        };
        for n in 0..200u16 {
            let from = SocketAddr::new(addr("192.0.2.1:1").ip(), 1000 + n);
            let mut enc = MessageEncoder::new(
                &mut buf,
                Class::Request,
                Method::BINDING,
                TransactionId([1; 12]),
            );
            enc.username(&user);
            enc.priority(1);
            enc.ice_controlling(1);
            enc.message_integrity(key);
            enc.fingerprint();
            enc.finish();
            assert_eq!(
                b.handle_receive(now, b_host, from, &buf),
                ReceiveOutcome::Dropped
            );
        }
    }
    assert!(b.remote_candidates().is_empty());
    assert_eq!(b.stats().unauthenticated, 400);
    // Each was answered with 401 (RFC 8489 §9.1.3), statelessly.
    let mut n401 = 0;
    while let Some(t) = b.poll_transmit() {
        let m = Message::decode(&t.contents).unwrap();
        if m.class() == Class::ErrorResponse && m.error_code().map(|e| e.code) == Some(401) {
            n401 += 1;
        }
    }
    assert_eq!(n401, 400);
    // Garbage is counted as malformed.
    assert_eq!(
        b.handle_receive(now, b_host, addr("192.0.2.1:1"), &[0, 1, 0, 0]),
        ReceiveOutcome::Dropped
    );
    assert_eq!(b.stats().malformed_stun, 1);
    // Data from a stranger is dropped.
    assert_eq!(
        b.handle_receive(now, b_host, addr("192.0.2.1:1"), b"\x80data"),
        ReceiveOutcome::Dropped
    );
}

#[test]
fn consent_loss_stops_sending_after_30_seconds() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    h.connect();
    assert!(h.sides[0].agent.send_path(1).is_some());
    // Now B vanishes: everything towards B is dropped.
    let b_host = h.sides[1].host;
    h.drop = Box::new(move |t| t.destination == b_host);
    let cut = h.now;
    assert!(h.run(Duration::from_secs(60), |h| h.sides[0].agent.state()
        == ConnectionState::Failed));
    let took = h.now - cut;
    assert!(
        took >= Duration::from_secs(25) && took <= Duration::from_secs(31),
        "consent lost after {took:?}"
    );
    assert!(h.sides[0]
        .events
        .contains(&IceEvent::StateChanged(ConnectionState::Disconnected)));
    assert!(h.sides[0].agent.send_path(1).is_none());
}

#[test]
fn consent_keeps_a_quiet_connection_alive() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    h.connect();
    h.run(Duration::from_secs(120), |_| false);
    assert!(h.both(ConnectionState::Completed));
}

#[test]
fn ice_restart_selects_a_new_pair_and_keeps_data_flowing() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    h.connect();
    let old_a = h.sides[0].agent.local_credentials().clone();
    h.sides[0].agent.restart(h.now);
    h.sides[1].agent.restart(h.now);
    assert_ne!(*h.sides[0].agent.local_credentials(), old_a);
    // Data still flows on the old pair while the restart is signalled.
    assert!(h.sides[0].agent.send_path(1).is_some());
    h.send(0, b"\x80during restart");
    h.run(Duration::from_millis(50), |h| !h.sides[1].data.is_empty());
    assert_eq!(h.sides[1].data.len(), 1);
    let before = h.sides[0]
        .events
        .iter()
        .filter(|e| matches!(e, IceEvent::SelectedPair { .. }))
        .count();
    h.exchange_credentials();
    h.exchange_candidates();
    assert!(h.run(Duration::from_secs(10), |h| h
        .both(ConnectionState::Completed)
        && h.sides[0]
            .events
            .iter()
            .filter(|e| matches!(e, IceEvent::SelectedPair { .. }))
            .count()
            > before));
    // Checks with the old credentials are refused now.
    assert!(h.sides[1].agent.selected_pair(1).is_some());
}

#[test]
fn server_reflexive_candidates_are_gathered_and_redundant_ones_dropped() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    let stun = addr("192.0.2.100:3478");
    h.stun_server = Some(stun);
    // A is behind a NAT, B is not: B's mapped address equals its host address (redundant).
    h.nat.insert(h.sides[0].host, addr("198.51.100.7:40000"));
    for s in &mut h.sides {
        s.agent.add_stun_server(stun);
        s.agent.add_stun_server(stun); // duplicates are ignored
    }
    h.gather();
    assert!(h.run(Duration::from_secs(5), |h| h
        .sides
        .iter()
        .all(|s| s.events.contains(&IceEvent::GatheringComplete))));
    assert_eq!(h.stun_answered, 2);
    let a: Vec<CandidateType> = h.sides[0]
        .agent
        .local_candidates()
        .iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(a, vec![CandidateType::Host, CandidateType::ServerReflexive]);
    let srflx = &h.sides[0].agent.local_candidates()[1];
    assert_eq!(srflx.address, addr("198.51.100.7:40000"));
    assert_eq!(srflx.related_address, Some(h.sides[0].host));
    assert!(srflx.priority < h.sides[0].agent.local_candidates()[0].priority);
    let b: Vec<CandidateType> = h.sides[1]
        .agent
        .local_candidates()
        .iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(b, vec![CandidateType::Host]);
    // Every local candidate was announced once, before gathering completed.
    let announced: Vec<&IceEvent> = h.sides[0]
        .events
        .iter()
        .take_while(|e| **e != IceEvent::GatheringComplete)
        .filter(|e| matches!(e, IceEvent::LocalCandidate(_)))
        .collect();
    assert_eq!(announced.len(), 2);
}

#[test]
fn an_unanswered_stun_server_does_not_block_gathering_forever() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    let stun = addr("192.0.2.100:3478");
    h.drop = Box::new(move |t| t.destination == stun);
    h.sides[0].agent.add_stun_server(stun);
    h.gather();
    assert!(h.run(Duration::from_secs(30), |h| h.sides[0]
        .events
        .contains(&IceEvent::GatheringComplete)));
    assert_eq!(h.sides[0].agent.local_candidates().len(), 1);
}

#[test]
fn two_components_each_select_a_pair() {
    let two = |seed| AgentConfig {
        components: 2,
        ..config(seed)
    };
    let mut h = Harness::with_configs(Role::Controlling, two(11), Role::Controlled, two(12));
    // Component 2 uses the next port on each host.
    for s in &mut h.sides {
        let rtcp = SocketAddr::new(s.host.ip(), s.host.port() + 1);
        s.agent.add_host_candidate(2, rtcp).expect("component 2");
        assert!(
            s.agent.add_host_candidate(3, rtcp).is_none(),
            "no component 3"
        );
        s.extra.push(rtcp);
    }
    h.connect();
    for s in &h.sides {
        let (l1, _) = s.agent.selected_pair(1).expect("component 1");
        let (l2, r2) = s.agent.selected_pair(2).expect("component 2");
        assert_eq!(l1.component, 1);
        assert_eq!((l2.component, r2.component), (2, 2));
        assert_ne!(l1.address, l2.address);
        assert_ne!(s.agent.send_path(1), s.agent.send_path(2));
    }
}

#[test]
fn checks_are_paced_by_ta() {
    // Many remote candidates nobody answers: ordinary checks leave one per Ta.
    let now = Instant::now();
    let ta = Duration::from_millis(50);
    let mut a = Agent::new(AgentConfig { ta, ..config(21) }, Role::Controlling, now);
    a.add_host_candidate(1, addr("10.0.0.1:1000")).unwrap();
    a.gather(now);
    a.set_remote_credentials(Credentials::new("peer", "peerpasswordpeerpassword"));
    for port in 0..10u16 {
        let c = Candidate::remote(
            format!("f{port}"),
            1,
            2_000_000_000 - u32::from(port),
            SocketAddr::new(addr("10.9.9.9:1").ip(), 5000 + port),
            CandidateType::Host,
            None,
        );
        a.add_remote_candidate(c, now);
    }
    let mut first_sends: Vec<(Duration, SocketAddr)> = Vec::new();
    let mut t = now;
    let end = now + Duration::from_millis(480);
    loop {
        while let Some(tx) = a.poll_transmit() {
            if !first_sends.iter().any(|(_, d)| *d == tx.destination) {
                first_sends.push((t - now, tx.destination));
            }
        }
        match a.poll_timeout() {
            Some(next) if next <= end => {
                t = next.max(t);
                a.handle_timeout(t);
            }
            _ => break,
        }
    }
    assert_eq!(first_sends.len(), 10);
    for w in first_sends.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= ta,
            "checks closer than Ta: {first_sends:?}"
        );
    }
    // Highest priority first.
    assert_eq!(first_sends[0].1.port(), 5000);
}

#[test]
fn authenticated_floods_are_bounded_by_the_configured_limits() {
    let now = Instant::now();
    let limits = AgentConfig {
        max_remote_candidates: 8,
        max_candidate_pairs: 6,
        ..config(31)
    };
    let mut b = Agent::new(limits, Role::Controlled, now);
    let b_host = addr("10.0.0.2:2000");
    b.add_host_candidate(1, b_host).unwrap();
    b.gather(now);
    let peer_creds = Credentials::new("peer", "peerpasswordpeerpassword");
    b.set_remote_credentials(peer_creds.clone());
    let b_creds = b.local_credentials().clone();
    let mut buf = Vec::new();
    for n in 0..1000u16 {
        let from = SocketAddr::new(addr("192.0.2.1:1").ip(), 1000 + n);
        let mut enc = MessageEncoder::new(
            &mut buf,
            Class::Request,
            Method::BINDING,
            TransactionId([2; 12]),
        );
        enc.username(&format!("{}:{}", b_creds.ufrag, peer_creds.ufrag));
        enc.priority(1_845_501_695);
        enc.ice_controlling(7);
        enc.message_integrity(b_creds.pwd.as_bytes());
        enc.fingerprint();
        enc.finish();
        assert_eq!(
            b.handle_receive(now, b_host, from, &buf),
            ReceiveOutcome::Stun
        );
        while b.poll_transmit().is_some() {}
    }
    for n in 0..100u16 {
        let c = Candidate::remote(
            "x",
            1,
            1,
            SocketAddr::new(addr("192.0.2.2:1").ip(), n + 1),
            CandidateType::Host,
            None,
        );
        b.add_remote_candidate(c, now);
    }
    assert!(b.remote_candidates().len() <= 8);
    assert!(b.stats().candidates_refused >= 1000 - 8);
}

#[test]
fn end_of_candidates_with_no_working_pair_fails_cleanly() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    // Nothing gets through in either direction.
    h.drop = Box::new(|_| true);
    h.gather();
    h.exchange_credentials();
    h.exchange_candidates();
    let now = h.now;
    for s in &mut h.sides {
        s.agent.end_of_remote_candidates(now);
    }
    let start = h.now;
    assert!(h.run(Duration::from_secs(60), |h| h.both(ConnectionState::Failed)));
    // Within the retransmission budget of a check (RFC 8489 §6.2.1 with our RTO cap).
    assert!(
        h.now - start < Duration::from_secs(20),
        "took {:?}",
        h.now - start
    );
    for s in &h.sides {
        assert!(s.agent.send_path(1).is_none());
        assert!(s.agent.selected_pair(1).is_none());
        assert_eq!(s.agent.poll_timeout(), None, "a failed agent sleeps");
    }
}

#[test]
fn without_end_of_candidates_failure_waits_for_late_candidates() {
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    h.drop = Box::new(|_| true);
    h.gather();
    h.exchange_credentials();
    h.exchange_candidates();
    let start = h.now;
    assert!(h.run(Duration::from_secs(120), |h| h
        .both(ConnectionState::Failed)));
    let cfg = AgentConfig::default();
    assert!(
        h.now - start >= cfg.failed_timeout,
        "failed after {:?}",
        h.now - start
    );
}

#[test]
fn a_turn_server_that_never_allocated_does_not_hold_failure_off() {
    // No path at all, and a TURN server that never answers (its allocation is tried again
    // and again with back-off): ICE fails as without it, once the checks are exhausted.
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    h.drop = Box::new(|_| true);
    let silent = addr("192.0.2.50:3478");
    h.sides[0].agent.add_turn_server(TurnConfig::new(
        silent,
        TurnTransport::Udp,
        TurnCredentials::long_term("user", "password"),
    ));
    h.gather();
    h.exchange_credentials();
    h.exchange_candidates();
    let start = h.now;
    assert!(h.run(Duration::from_secs(120), |h| h
        .both(ConnectionState::Failed)));
    assert!(
        h.now - start < Duration::from_secs(40),
        "failed only after {:?}",
        h.now - start
    );
}

#[test]
fn a_dead_turn_server_or_a_broken_stream_does_not_stop_the_agent() {
    // A's TURN servers: one over UDP that never answers, one over TCP whose stream turns to
    // garbage. The agents connect on their host candidates all the same, and A reports both
    // relays as failed with the reason, then completes gathering.
    let mut h = Harness::new(Role::Controlling, Role::Controlled);
    let silent = addr("192.0.2.50:3478");
    let broken = addr("192.0.2.51:3478");
    let creds = || TurnCredentials::long_term("user", "password");
    h.sides[0]
        .agent
        .add_turn_server(TurnConfig::new(silent, TurnTransport::Udp, creds()));
    h.sides[0]
        .agent
        .add_turn_server(TurnConfig::new(broken, TurnTransport::Tcp, creds()));
    h.connect();
    let now = h.now;
    h.sides[0]
        .agent
        .handle_turn_stream(now, broken, b"SSH-2.0-OpenSSH_9.2\r\n");
    assert!(h.run(Duration::from_secs(60), |h| h.sides[0]
        .events
        .contains(&IceEvent::GatheringComplete)));
    // The first failure of each server (the agent then tries again with back-off).
    let mut failures: Vec<(SocketAddr, TurnError)> = Vec::new();
    for e in &h.sides[0].events {
        if let IceEvent::RelayFailed { server, error, .. } = e {
            if !failures.iter().any(|(s, _)| s == server) {
                failures.push((*server, error.clone()));
            }
        }
    }
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures.contains(&(silent, TurnError::Timeout)),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|(s, e)| *s == broken && matches!(e, TurnError::Stream(_))),
        "{failures:?}"
    );
    assert!(h.both(ConnectionState::Completed));
    assert!(!h.sides[0]
        .agent
        .local_candidates()
        .iter()
        .any(|c| c.kind == CandidateType::Relayed));
}
