//! A tiny back-to-back harness in virtual time for two sans-IO ICE agents of any
//! implementation: every datagram from one side reaches the other after a fixed one-way delay,
//! routed by destination address. Used to bring our agent and `is::IceAgent` to the same
//! state in the same way (memory and connect benches).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the harness needs from an agent.
pub trait Peer {
    /// The next datagram the agent wants sent: (source, destination, bytes).
    fn poll_transmit(&mut self) -> Option<(SocketAddr, SocketAddr, Vec<u8>)>;
    /// A datagram arrived on `local` from `remote`.
    fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]);
    /// The time moved to `now`.
    fn timeout(&mut self, now: Instant);
    /// When the agent next wants [`Peer::timeout`].
    fn next_timeout(&mut self) -> Option<Instant>;
    /// Whether a working pair exists (connected or completed).
    fn connected(&self) -> bool;
    /// Whether a pair is nominated / the agent reports completion.
    fn completed(&self) -> bool;
}

/// A datagram in flight: (to side 0?, source, destination, bytes).
type InFlight = (bool, SocketAddr, SocketAddr, Vec<u8>);

/// Two agents and the datagrams in flight between them.
pub struct BackToBack<A, B> {
    /// Side 0.
    pub a: A,
    /// Side 1.
    pub b: B,
    /// Local addresses of side 0 (anything else goes to side 1).
    a_addrs: Vec<SocketAddr>,
    /// One-way delay of every datagram.
    delay: Duration,
    now: Instant,
    start: Instant,
    /// In flight, by (arrival, sequence): (to side 0?, source, destination, bytes).
    queue: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    /// Datagrams sent so far.
    pub sent: u64,
    /// When both were first connected / completed, as time since start.
    pub both_connected: Option<Duration>,
    /// See `both_connected`.
    pub both_completed: Option<Duration>,
}

impl<A: Peer, B: Peer> BackToBack<A, B> {
    /// Wires `a` (which owns `a_addrs`) to `b` at virtual time `start`.
    pub fn new(a: A, b: B, a_addrs: Vec<SocketAddr>, delay: Duration, start: Instant) -> Self {
        BackToBack {
            a,
            b,
            a_addrs,
            delay,
            now: start,
            start,
            queue: BTreeMap::new(),
            seq: 0,
            sent: 0,
            both_connected: None,
            both_completed: None,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    fn collect(&mut self) {
        while let Some((src, dst, data)) = self.a.poll_transmit() {
            self.push(src, dst, data);
        }
        while let Some((src, dst, data)) = self.b.poll_transmit() {
            self.push(src, dst, data);
        }
        let elapsed = self.now - self.start;
        if self.both_connected.is_none() && self.a.connected() && self.b.connected() {
            self.both_connected = Some(elapsed);
        }
        if self.both_completed.is_none() && self.a.completed() && self.b.completed() {
            self.both_completed = Some(elapsed);
        }
    }

    fn push(&mut self, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let to_a = self.a_addrs.contains(&dst);
        self.seq += 1;
        self.sent += 1;
        self.queue
            .insert((self.now + self.delay, self.seq), (to_a, src, dst, data));
    }

    /// Processes events in time order until `stop` holds or `deadline` (time since start).
    pub fn run_until(&mut self, deadline: Duration, mut stop: impl FnMut(&Self) -> bool) {
        self.collect();
        let end = self.start + deadline;
        while !stop(self) {
            let q = self.queue.keys().next().map(|(t, _)| *t);
            let ta = self.a.next_timeout();
            let tb = self.b.next_timeout();
            let next = [q, ta, tb].into_iter().flatten().min();
            let Some(next) = next.filter(|&t| t <= end) else {
                self.now = end.max(self.now);
                return;
            };
            self.now = next.max(self.now);
            if q == Some(next) {
                if let Some((_, (to_a, src, dst, data))) = self.queue.pop_first() {
                    if to_a {
                        self.a.receive(self.now, dst, src, &data);
                    } else {
                        self.b.receive(self.now, dst, src, &data);
                    }
                }
            } else {
                if ta.is_some_and(|t| t <= self.now) {
                    self.a.timeout(self.now);
                }
                if tb.is_some_and(|t| t <= self.now) {
                    self.b.timeout(self.now);
                }
            }
            self.collect();
        }
    }

    /// Runs until both sides are completed (or `deadline`).
    pub fn run_to_completion(&mut self, deadline: Duration) {
        self.run_until(deadline, |h| h.both_completed.is_some());
    }

    /// The two agents, the harness (and what was in flight) dropped.
    pub fn into_agents(self) -> (A, B) {
        (self.a, self.b)
    }
}

// ---- jingle-ice --------------------------------------------------------------------------------

/// Our agent as a [`Peer`] (events drained and dropped as they come).
pub struct Ours(pub Box<jingle_ice::ice::Agent>);

impl Ours {
    fn drain(&mut self) {
        while self.0.poll_event().is_some() {}
    }
}

impl Peer for Ours {
    fn poll_transmit(&mut self) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        self.drain();
        self.0
            .poll_transmit()
            .map(|t| (t.source, t.destination, t.contents))
    }
    fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.0.handle_receive(now, local, remote, data);
        self.drain();
    }
    fn timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
        self.drain();
    }
    fn next_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn connected(&self) -> bool {
        use jingle_ice::ice::ConnectionState::*;
        matches!(self.0.state(), Connected | Completed)
    }
    fn completed(&self) -> bool {
        self.0.state() == jingle_ice::ice::ConnectionState::Completed
    }
}

/// Two of our agents with `n` host candidates each (10.0.0.x and 10.0.1.x, one component),
/// credentials and candidates exchanged at `start`, wired back to back.
pub fn ours_pair(n: u8, delay: Duration, start: Instant) -> BackToBack<Ours, Ours> {
    use jingle_ice::ice::{Agent, AgentConfig, Candidate, Role};
    let mk = |role, seed, net: u8| {
        let mut agent = Box::new(Agent::new(
            AgentConfig {
                seed: Some(seed),
                ..AgentConfig::default()
            },
            role,
            start,
        ));
        let mut addrs = Vec::new();
        for i in 1..=n {
            let addr = SocketAddr::from(([10, 0, net, i], 5000 + u16::from(i)));
            agent.add_host_candidate(1, addr);
            addrs.push(addr);
        }
        agent.gather(start);
        (agent, addrs)
    };
    let (mut a, a_addrs) = mk(Role::Controlling, 1, 0);
    let (mut b, _) = mk(Role::Controlled, 2, 1);
    a.set_remote_credentials(b.local_credentials().clone());
    b.set_remote_credentials(a.local_credentials().clone());
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
    let ca: Vec<Candidate> = a.local_candidates().iter().map(remote).collect();
    let cb: Vec<Candidate> = b.local_candidates().iter().map(remote).collect();
    for c in cb {
        a.add_remote_candidate(c, start);
    }
    for c in ca {
        b.add_remote_candidate(c, start);
    }
    a.end_of_remote_candidates(start);
    b.end_of_remote_candidates(start);
    BackToBack::new(Ours(a), Ours(b), a_addrs, delay, start)
}

// ---- is 0.12 (str0m) ---------------------------------------------------------------------------

/// `is::IceAgent` as a [`Peer`] (events drained and dropped as they come).
pub struct Theirs(pub Box<is::IceAgent>);

impl Theirs {
    fn drain(&mut self) {
        while self.0.poll_event().is_some() {}
    }
}

impl Peer for Theirs {
    fn poll_transmit(&mut self) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        self.drain();
        self.0
            .poll_transmit()
            .map(|t| (t.source, t.destination, Vec::from(t.contents)))
    }
    fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        if let Ok(message) = is::stun::StunMessage::parse(data) {
            self.0.handle_packet(
                now,
                is::stun::StunPacket {
                    proto: is::Protocol::Udp,
                    source: remote,
                    destination: local,
                    message,
                },
            );
        }
        self.drain();
    }
    fn timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
        self.drain();
    }
    fn next_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn connected(&self) -> bool {
        self.0.state().is_connected()
    }
    fn completed(&self) -> bool {
        self.0.state() == is::IceConnectionState::Completed
    }
}

/// Two `is` agents set up like [`ours_pair`].
pub fn theirs_pair(n: u8, delay: Duration, start: Instant) -> BackToBack<Theirs, Theirs> {
    use is::{Candidate, IceAgent, IceCreds};
    let hosts = |net: u8| -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, net, i], 5000 + u16::from(i))))
            .collect()
    };
    let (ha, hb) = (hosts(0), hosts(1));
    let mk = |controlling, own: &[SocketAddr]| {
        let mut agent = Box::new(IceAgent::new(IceCreds::new()));
        agent.set_controlling(controlling);
        for &addr in own {
            if let Ok(c) = Candidate::host(addr, "udp") {
                agent.add_local_candidate(c);
            }
        }
        agent
    };
    let mut a = mk(true, &ha);
    let mut b = mk(false, &hb);
    a.set_remote_credentials(b.local_credentials().clone());
    b.set_remote_credentials(a.local_credentials().clone());
    let ca: Vec<Candidate> = a.local_candidates().collect();
    let cb: Vec<Candidate> = b.local_candidates().collect();
    for c in cb {
        a.add_remote_candidate(c);
    }
    for c in ca {
        b.add_remote_candidate(c);
    }
    a.handle_timeout(start);
    b.handle_timeout(start);
    BackToBack::new(Theirs(a), Theirs(b), ha, delay, start)
}
