//! Lost TURN allocations in the simulated network (issue 13): two agents behind symmetric NATs
//! (no direct path: they need the relay), a TURN server on the internet, 10 ms one way
//! between the agents, signalling with 50 ms of delay as the Jingle glue does it (credentials
//! first, each local candidate as it comes, no end-of-candidates; a lost selected pair is
//! answered with an ICE restart, and the peer answers a restart with its own).
//!
//! - The server tears down an allocation that relays to a private address (coturn 4.6 on
//!   ENETUNREACH, as in the lab's TURN host without a default route) and answers 400 as coturn
//!   does: the agents remove the relayed candidate, allocate again after a second, no longer
//!   pair the new relayed candidate with the address that killed the old one, trickle it, and
//!   connect through the relay.
//! - The server restarts while the agents talk through it: the agent whose selected pair went
//!   through the lost allocation notices it (a consent check unanswered, a Refresh answered
//!   437), reports the lost pair, and the ICE restart reconnects both through new allocations.
//! - Allocations keep failing: the waits double from 1 s and the agent gives up after six
//!   failures in a row, and says so.
//! - New credentials: after the server refused the old ones (expired), the agent gives up on
//!   the server until the application adds it again with new ones.
//!
//! Run with `--nocapture` to see the virtual times.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use jingle_ice::ice::{
    Agent, AgentConfig, Candidate, CandidateType, ConnectionState, IceEvent, Role,
};
use jingle_ice::turn::{TurnConfig, TurnCredentials, TurnError, TurnTransport};
use jingle_ice_sim::{
    AgentEndpoint, EndpointHandle, FilteringBehavior, LinkConfig, MappingBehavior, NatConfig,
    Network, Realm, TurnServer,
};

const SIGNALLING_DELAY: Duration = Duration::from_millis(50);
const HALF_PATH: Duration = Duration::from_millis(5);
const A_HOST: &str = "10.0.1.2:5000";
const B_HOST: &str = "10.0.2.2:5000";
const TURN: &str = "198.51.100.1:3478";
const RELAY_PORTS: std::ops::Range<u16> = 49152..49200;
const REALM: &str = "example.test";
const USER: &str = "user";
const PASSWORD: &str = "password";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("address literal")
}

fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(_) => false,
    }
}

fn symmetric() -> NatConfig {
    NatConfig::new(
        MappingBehavior::AddressAndPortDependent,
        FilteringBehavior::AddressAndPortDependent,
    )
}

fn turn_config(password: &str) -> TurnConfig {
    TurnConfig::new(
        sa(TURN),
        TurnTransport::Udp,
        TurnCredentials::long_term(USER, password),
    )
}

struct Side {
    h: EndpointHandle<AgentEndpoint>,
    /// Events already looked at for signalling.
    cursor: usize,
    /// We restarted ICE and wait for the peer's new credentials (the glue's rule: those
    /// answer our restart, they do not start another).
    awaiting_answer: bool,
    /// ICE restarts this side started.
    restarts: u32,
}

/// A signalling message on its way.
enum Message {
    Candidate(String),
    /// New ICE credentials (a restart, or the answer to ours).
    Restart(jingle_ice::ice::Credentials),
}

struct Case {
    net: Network,
    sides: [Side; 2],
    turn: EndpointHandle<TurnServer>,
    /// (delivery time, sequence, recipient, message)
    queue: Vec<(Instant, u64, usize, Message)>,
    seq: u64,
    /// A lost selected pair is answered with an ICE restart, as the Jingle glue does.
    restart_on_lost_pair: bool,
}

fn agent(seed: u64, role: Role, host: SocketAddr, now: Instant) -> Agent {
    let config = AgentConfig {
        seed: Some(seed),
        ..AgentConfig::default()
    };
    let mut agent = Agent::new(config, role, now);
    agent.add_host_candidate(1, host);
    agent.add_stun_server(sa(TURN));
    agent.add_turn_server(turn_config(PASSWORD));
    agent
}

fn build(seed: u64, server: TurnServer) -> Case {
    let start = Instant::now();
    let mut net = Network::new(seed, start);
    let uplink = LinkConfig::with_delay(HALF_PATH);
    let nat_a = net
        .add_nat(
            Realm::Internet,
            "203.0.113.1".parse().unwrap(),
            symmetric(),
            uplink,
        )
        .unwrap();
    let nat_b = net
        .add_nat(
            Realm::Internet,
            "203.0.113.2".parse().unwrap(),
            symmetric(),
            uplink,
        )
        .unwrap();
    let host_a = net
        .add_host(Realm::Lan(nat_a), sa(A_HOST).ip(), LinkConfig::ideal())
        .unwrap();
    let host_b = net
        .add_host(Realm::Lan(nat_b), sa(B_HOST).ip(), LinkConfig::ideal())
        .unwrap();
    let turn_host = net
        .add_host(Realm::Internet, sa(TURN).ip(), uplink)
        .unwrap();
    let mut ports = vec![sa(TURN).port()];
    ports.extend(RELAY_PORTS);
    let turn = net.add_endpoint(turn_host, &ports, server).unwrap();
    let agent_a = agent(seed * 2, Role::Controlling, sa(A_HOST), start);
    let agent_b = agent(seed * 2 + 1, Role::Controlled, sa(B_HOST), start);
    let cred_a = agent_a.local_credentials().clone();
    let cred_b = agent_b.local_credentials().clone();
    let a = net
        .add_endpoint(host_a, &[sa(A_HOST).port()], AgentEndpoint::new(agent_a))
        .unwrap();
    let b = net
        .add_endpoint(host_b, &[sa(B_HOST).port()], AgentEndpoint::new(agent_b))
        .unwrap();
    // Credentials travel in session-initiate and session-accept, before any candidate.
    net.with_endpoint(a, |ep, now| {
        ep.agent_mut().set_remote_credentials(cred_b);
        ep.agent_mut().gather(now);
    });
    net.with_endpoint(b, |ep, now| {
        ep.agent_mut().set_remote_credentials(cred_a);
        ep.agent_mut().gather(now);
    });
    let side = |h| Side {
        h,
        cursor: 0,
        awaiting_answer: false,
        restarts: 0,
    };
    Case {
        net,
        sides: [side(a), side(b)],
        turn,
        queue: Vec::new(),
        seq: 0,
        restart_on_lost_pair: true,
    }
}

/// The lab's coturn without a default route: a relayed send to a private address tears the
/// allocation down a little later (30 ms: coturn answers requests meanwhile), and requests
/// without an allocation get 400 (CreatePermission, ChannelBind) or 437 (Refresh), as coturn
/// 4.6 answers.
fn killing_server() -> TurnServer {
    TurnServer::new(
        sa(TURN).ip(),
        sa(TURN).port(),
        RELAY_PORTS,
        REALM,
        USER,
        PASSWORD,
    )
    .kill_on_unreachable(private)
    .kill_after(Duration::from_millis(30))
    .coturn_errors()
}

/// A TURN host with a route to nowhere: sends to private addresses are lost silently.
fn plain_server() -> TurnServer {
    TurnServer::new(
        sa(TURN).ip(),
        sa(TURN).port(),
        RELAY_PORTS,
        REALM,
        USER,
        PASSWORD,
    )
    .coturn_errors()
}

impl Case {
    fn ep(&self, i: usize) -> &AgentEndpoint {
        self.net.endpoint(self.sides[i].h).expect("endpoint")
    }

    fn events(&self, i: usize) -> &[(Instant, IceEvent)] {
        self.ep(i).events()
    }

    fn server(&self) -> &TurnServer {
        self.net.endpoint(self.turn).expect("server")
    }

    fn secs(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.net.start()).as_secs_f64()
    }

    fn send(&mut self, to: usize, message: Message) {
        self.seq += 1;
        let at = self.net.now() + SIGNALLING_DELAY;
        self.queue.push((at, self.seq, to, message));
    }

    /// What the Jingle glue does with the agents' events: trickles local candidates, answers a
    /// lost selected pair with an ICE restart.
    fn signal(&mut self) {
        for i in 0..2 {
            let new: Vec<IceEvent> = self.events(i)[self.sides[i].cursor..]
                .iter()
                .map(|(_, e)| e.clone())
                .collect();
            self.sides[i].cursor += new.len();
            for e in new {
                match e {
                    IceEvent::LocalCandidate(c) => self.send(1 - i, Message::Candidate(c.to_sdp())),
                    IceEvent::SelectedPairLost { .. }
                        if self.restart_on_lost_pair && !self.sides[i].awaiting_answer =>
                    {
                        self.sides[i].awaiting_answer = true;
                        self.sides[i].restarts += 1;
                        let creds = self.restart(i);
                        self.send(1 - i, Message::Restart(creds));
                    }
                    _ => {}
                }
            }
        }
    }

    fn restart(&mut self, i: usize) -> jingle_ice::ice::Credentials {
        self.net
            .with_endpoint(self.sides[i].h, |ep, now| {
                ep.agent_mut().restart(now);
                ep.agent().local_credentials().clone()
            })
            .expect("endpoint")
    }

    fn deliver(&mut self, to: usize, message: Message) {
        let h = self.sides[to].h;
        match message {
            Message::Candidate(line) => {
                let remote: Candidate = line.parse().expect("own candidate parses");
                self.net.with_endpoint(h, |ep, now| {
                    ep.agent_mut().add_remote_candidate(remote, now)
                });
            }
            Message::Restart(creds) => {
                if self.sides[to].awaiting_answer {
                    self.sides[to].awaiting_answer = false;
                } else {
                    let ours = self.restart(to);
                    self.send(1 - to, Message::Restart(ours));
                }
                self.net
                    .with_endpoint(h, |ep, _| ep.agent_mut().set_remote_credentials(creds));
            }
        }
    }

    /// Runs (signalling as it goes) until `done` holds or `limit` of virtual time passed.
    fn run(&mut self, limit: Duration, done: impl Fn(&Case) -> bool) -> bool {
        let deadline = self.net.now() + limit;
        loop {
            self.signal();
            if done(self) {
                return true;
            }
            let next_message = self.queue.iter().map(|(t, s, _, _)| (*t, *s)).min();
            let next_event = self.net.next_event_time();
            match (next_message, next_event) {
                (Some((t, seq)), e) if t <= deadline && e.is_none_or(|e| t <= e) => {
                    self.net.run_until(t, |_| false);
                    let pos = self
                        .queue
                        .iter()
                        .position(|(_, s, _, _)| *s == seq)
                        .expect("queued");
                    let (_, _, to, message) = self.queue.remove(pos);
                    self.deliver(to, message);
                }
                (_, Some(e)) if e <= deadline => {
                    self.net.step();
                }
                _ => {
                    self.net.run_until(deadline, |_| false);
                    return done(self);
                }
            }
        }
    }

    fn selected(&self, i: usize) -> Option<(Instant, Candidate, Candidate)> {
        let pair = self.ep(i).agent().selected_pair(1)?;
        let at = self
            .events(i)
            .iter()
            .rev()
            .find_map(|(t, e)| matches!(e, IceEvent::SelectedPair { .. }).then_some(*t))?;
        Some((at, pair.0.clone(), pair.1.clone()))
    }

    fn both_selected(&self) -> bool {
        self.selected(0).is_some() && self.selected(1).is_some()
    }

    fn relay_failures(&self, i: usize) -> Vec<(Instant, TurnError, Option<Duration>)> {
        self.events(i)
            .iter()
            .filter_map(|(t, e)| match e {
                IceEvent::RelayFailed {
                    error, retry_in, ..
                } => Some((*t, error.clone(), *retry_in)),
                _ => None,
            })
            .collect()
    }

    fn relayed_candidates(&self, i: usize) -> Vec<(Instant, SocketAddr)> {
        self.events(i)
            .iter()
            .filter_map(|(t, e)| match e {
                IceEvent::LocalCandidate(c) if c.kind == CandidateType::Relayed => {
                    Some((*t, c.address))
                }
                _ => None,
            })
            .collect()
    }

    fn removed(&self, i: usize) -> Vec<(Instant, SocketAddr)> {
        self.events(i)
            .iter()
            .filter_map(|(t, e)| match e {
                IceEvent::LocalCandidateRemoved(c) => Some((*t, c.address)),
                _ => None,
            })
            .collect()
    }

    fn failed(&self, i: usize) -> bool {
        self.events(i)
            .iter()
            .any(|(_, e)| *e == IceEvent::StateChanged(ConnectionState::Failed))
    }

    fn dump(&self) -> String {
        format!(
            "A events: {:#?}\nB events: {:#?}\nserver: {:?}",
            self.events(0),
            self.events(1),
            self.server()
        )
    }

    /// Sends `n` datagrams each way on the current send paths; returns how many arrived at
    /// each side, intact.
    fn exchange(&mut self, n: usize) -> [usize; 2] {
        let before = [
            self.ep(0).received_data().len(),
            self.ep(1).received_data().len(),
        ];
        for (i, tag) in [(0usize, b'A'), (1, b'B')] {
            let h = self.sides[i].h;
            self.net.with_endpoint(h, |ep, _| {
                for k in 0..n {
                    let mut d = vec![23, tag, k as u8];
                    d.extend([tag; 100]);
                    ep.send_data(1, d);
                }
            });
        }
        self.run(Duration::from_secs(1), |_| false);
        let mut got = [0usize; 2];
        for (i, from) in [(0usize, b'B'), (1, b'A')] {
            let seen: BTreeSet<u8> = self.ep(i).received_data()[before[i]..]
                .iter()
                .filter(|d| d.contents.len() == 103 && d.contents[1] == from)
                .map(|d| d.contents[2])
                .collect();
            got[i] = seen.len();
        }
        got
    }
}

/// What a side's selected pair is: at least one end relayed (no direct path exists between
/// two symmetric NATs).
fn assert_relayed(case: &Case, i: usize) {
    let (_, local, remote) = case.selected(i).expect("selected");
    assert!(
        local.kind == CandidateType::Relayed || remote.kind == CandidateType::Relayed,
        "side {i}: {local} / {remote}"
    );
}

#[test]
fn an_allocation_killed_by_a_send_to_a_private_address_is_replaced_and_the_agents_relay() {
    let mut case = build(11, killing_server());
    let connected = case.run(Duration::from_secs(60), Case::both_selected);
    assert!(
        connected,
        "no pair selected: A {:?}, B {:?}\n{}",
        case.ep(0).agent().state(),
        case.ep(1).agent().state(),
        case.dump()
    );
    for i in 0..2 {
        assert_relayed(&case, i);
        // The first allocation died (its relayed check to the peer's private host address),
        // its candidate was removed, a second one came a second later and was trickled.
        let failures = case.relay_failures(i);
        assert_eq!(
            failures.first().map(|f| (f.1.clone(), f.2)),
            Some((TurnError::AllocationMismatch, Some(Duration::from_secs(1)))),
            "side {i}: {failures:?}"
        );
        let relayed = case.relayed_candidates(i);
        let removed = case.removed(i);
        assert_eq!(relayed.len(), 2, "side {i}: {relayed:?}");
        assert_eq!(removed, vec![(failures[0].0, relayed[0].1)], "side {i}");
        assert_ne!(relayed[0].1, relayed[1].1);
        assert!(relayed[1].0 >= failures[0].0 + Duration::from_secs(1));
        let locals = case.ep(i).agent().local_candidates();
        assert!(
            !locals.iter().any(|c| c.address == relayed[0].1),
            "side {i}: the lost relayed candidate is gone"
        );
        assert!(locals.iter().any(|c| c.address == relayed[1].1));
        let (at, local, remote) = case.selected(i).expect("selected");
        assert_ne!(local.address, relayed[0].1);
        assert_ne!(remote.address, case.relayed_candidates(1 - i)[0].1);
        eprintln!(
            "side {}: allocation lost at {:.3} s, new relayed candidate at {:.3} s, selected at {:.3} s: {local} / {remote}",
            ["A", "B"][i],
            case.secs(failures[0].0),
            case.secs(relayed[1].0),
            case.secs(at)
        );
    }
    // Converged: one kill per agent, two allocations each, and no more after a minute.
    case.run(Duration::from_secs(60), |_| false);
    let stats = case.server().stats().clone();
    assert_eq!(stats.killed, 2, "{stats:?}");
    assert_eq!(stats.allocations, 4, "{stats:?}");
    for i in 0..2 {
        assert_eq!(case.ep(i).agent().state(), ConnectionState::Completed);
        assert_eq!(case.relay_failures(i).len(), 1);
    }
    assert_eq!(case.exchange(50), [50, 50]);
}

#[test]
fn a_server_restart_under_a_relayed_session_is_noticed_and_an_ice_restart_reconnects() {
    let mut case = build(12, plain_server());
    assert!(case.run(Duration::from_secs(30), Case::both_selected));
    assert_eq!(case.exchange(20), [20, 20]);
    let before: Vec<Candidate> = (0..2)
        .map(|i| case.selected(i).expect("selected").1)
        .collect();
    // The server forgets every allocation. The side whose selected pair goes through its own
    // relayed candidate finds out from a consent check that gets no answer.
    case.net
        .with_endpoint(case.turn, |server, _| server.restart());
    let restarted_at = case.net.now();
    let lost_side = (0..2)
        .find(|&i| before[i].kind == CandidateType::Relayed)
        .expect("a side relays locally");
    let noticed = case.run(Duration::from_secs(20), |c| {
        c.events(lost_side)
            .iter()
            .any(|(t, e)| *t >= restarted_at && matches!(e, IceEvent::SelectedPairLost { .. }))
    });
    assert!(noticed, "the lost pair was not noticed\n{}", case.dump());
    let noticed_at = case.net.now();
    // The ICE restart selects new pairs on both sides, through new allocations.
    let reconnected = case.run(Duration::from_secs(30), |c| {
        (0..2).all(|i| {
            c.selected(i)
                .is_some_and(|(t, _, _)| t > noticed_at && !c.sides[i].awaiting_answer)
        })
    });
    assert!(reconnected, "no new pairs\n{}", case.dump());
    let done_at = case.net.now();
    for (i, old) in before.iter().enumerate() {
        assert_relayed(&case, i);
        assert!(!case.failed(i), "side {i} failed");
        let (_, local, _) = case.selected(i).expect("selected");
        assert_ne!(local.address, old.address, "side {i}: a new path");
    }
    assert_eq!(case.sides[lost_side].restarts, 1);
    assert_eq!(
        case.sides[1 - lost_side].restarts,
        0,
        "it answered, no glare"
    );
    assert!(case.server().stats().allocations >= 3);
    assert_eq!(case.exchange(20), [20, 20]);
    eprintln!(
        "server restarted at {:.3} s; side {} noticed the lost pair at {:.3} s (+{:.3} s); both selected new pairs at {:.3} s (+{:.3} s after the restart)",
        case.secs(restarted_at),
        ["A", "B"][lost_side],
        case.secs(noticed_at),
        (noticed_at - restarted_at).as_secs_f64(),
        case.secs(done_at),
        (done_at - restarted_at).as_secs_f64()
    );
}

#[test]
fn failed_allocations_are_retried_with_doubling_waits_and_then_given_up() {
    let mut case = build(13, killing_server());
    // Once the first allocations died, the server refuses new ones (486 quota).
    let killed = case.run(Duration::from_secs(5), |c| c.server().stats().killed == 2);
    assert!(killed, "{}", case.dump());
    case.net
        .with_endpoint(case.turn, |server, _| server.set_refuse_allocations(true));
    case.run(Duration::from_secs(120), |_| false);
    for i in 0..2 {
        let failures = case.relay_failures(i);
        let waits: Vec<Option<Duration>> = failures.iter().map(|f| f.2).collect();
        let s = Duration::from_secs;
        assert_eq!(
            waits,
            vec![
                Some(s(1)),
                Some(s(2)),
                Some(s(4)),
                Some(s(8)),
                Some(s(16)),
                None
            ],
            "side {i}: {failures:?}"
        );
        assert_eq!(failures[0].1, TurnError::AllocationMismatch);
        assert!(failures[1..].iter().all(|f| f.1 == TurnError::Quota));
        // Each attempt came when the previous failure said.
        for w in failures.windows(2) {
            let expected = w[0].0 + w[0].2.expect("a wait");
            let late = w[1].0.saturating_duration_since(expected);
            assert!(late < Duration::from_millis(100), "side {i}: {failures:?}");
        }
        // ICE keeps going while a relay may still come: no failure before the agent gave up.
        let failed_at = case.events(i).iter().find_map(|(t, e)| {
            (*e == IceEvent::StateChanged(ConnectionState::Failed)).then_some(*t)
        });
        let gave_up = failures.last().expect("failures").0;
        assert!(
            failed_at.is_some_and(|t| t >= gave_up),
            "side {i}: failed at {failed_at:?}, gave up at {gave_up:?}"
        );
        eprintln!(
            "side {}: retries at {:?} s, gave up at {:.1} s, ICE failed at {:.1} s",
            ["A", "B"][i],
            failures
                .iter()
                .map(|f| format!("{:.1}", case.secs(f.0)))
                .collect::<Vec<_>>(),
            case.secs(gave_up),
            case.secs(failed_at.unwrap_or(gave_up))
        );
    }
    assert_eq!(case.server().stats().allocations, 2);
}

#[test]
fn refused_credentials_stop_the_retries_until_new_ones_are_given() {
    let mut case = build(14, killing_server());
    // The first allocations die; meanwhile the credentials expire on the server.
    let noticed = case.run(Duration::from_secs(5), |c| {
        (0..2).all(|i| !c.relay_failures(i).is_empty())
    });
    assert!(noticed, "{}", case.dump());
    case.net
        .with_endpoint(case.turn, |server, _| server.set_password("renewed"));
    let refused = case.run(Duration::from_secs(5), |c| {
        (0..2).all(|i| c.relay_failures(i).len() == 2)
    });
    assert!(refused, "{}", case.dump());
    // Nothing more comes: the agents do not try the refused credentials again.
    case.run(Duration::from_secs(5), |_| false);
    for i in 0..2 {
        let failures = case.relay_failures(i);
        assert_eq!(failures.len(), 2, "side {i}: {failures:?}");
        assert_eq!(failures[1].1, TurnError::WrongCredentials);
        assert_eq!(failures[1].2, None, "not retried with refused credentials");
        assert!(case.selected(i).is_none());
    }
    assert_eq!(case.server().stats().allocations, 2);
    // The application gets new credentials (XEP-0215) and gives them to the agents, before
    // ICE gives up (10 s after the last check failed).
    for i in 0..2 {
        assert!(!case.failed(i));
    }
    for i in 0..2 {
        let h = case.sides[i].h;
        case.net.with_endpoint(h, |ep, _| {
            ep.agent_mut().add_turn_server(turn_config("renewed"))
        });
    }
    assert!(
        case.run(Duration::from_secs(30), Case::both_selected),
        "{}",
        case.dump()
    );
    for i in 0..2 {
        assert_relayed(&case, i);
        assert_eq!(case.relayed_candidates(i).len(), 2);
    }
}

#[test]
fn credentials_refreshed_under_a_live_allocation_are_used_when_the_old_ones_expire() {
    let mut case = build(15, plain_server());
    assert!(case.run(Duration::from_secs(30), Case::both_selected));
    // The application refreshes the credentials (XEP-0215) while the allocations live...
    for i in 0..2 {
        let h = case.sides[i].h;
        case.net.with_endpoint(h, |ep, _| {
            ep.agent_mut().add_turn_server(turn_config("renewed"))
        });
    }
    // ...then the old ones expire: the next request on each allocation is refused (401). The
    // allocations are lost, and made again with the new credentials.
    case.net
        .with_endpoint(case.turn, |server, _| server.set_password("renewed"));
    let before = case.server().stats().allocations;
    // A relayed pair needs a permission refresh within 5 minutes (RFC 8656 §9).
    let replaced = case.run(Duration::from_secs(400), |c| {
        (0..2).all(|i| c.relayed_candidates(i).len() >= 2)
    });
    assert!(replaced, "{}", case.dump());
    for i in 0..2 {
        let failures = case.relay_failures(i);
        assert_eq!(failures[0].1, TurnError::WrongCredentials, "side {i}");
        assert!(
            failures[0].2.is_some(),
            "side {i}: new credentials, so retried"
        );
    }
    assert_eq!(case.server().stats().allocations, before + 2);
}

#[test]
fn without_an_ice_restart_a_lost_selected_pair_fails_when_its_consent_runs_out() {
    let mut case = build(16, plain_server());
    case.restart_on_lost_pair = false;
    assert!(case.run(Duration::from_secs(30), Case::both_selected));
    case.net
        .with_endpoint(case.turn, |server, _| server.restart());
    let restarted_at = case.net.now();
    let lost_pair = |c: &Case, i: usize| {
        c.events(i)
            .iter()
            .any(|(_, e)| matches!(e, IceEvent::SelectedPairLost { .. }))
    };
    let lost = case.run(Duration::from_secs(20), |c| {
        lost_pair(c, 0) || lost_pair(c, 1)
    });
    assert!(lost, "{}", case.dump());
    // The side that lost its selected pair (the other fails through consent on its own
    // selected pair anyway).
    let side = (0..2).find(|&i| lost_pair(&case, i)).expect("a side");
    let failed = case.run(Duration::from_secs(60), |c| c.failed(side));
    assert!(failed, "side {side} never failed\n{}", case.dump());
    let at = case.net.now() - restarted_at;
    // RFC 7675 §5.1: 30 s after the last answer on the pair, which came less than a consent
    // interval (5 s +20 %) before the restart.
    assert!(
        at >= Duration::from_secs(24) && at <= Duration::from_secs(31),
        "failed {at:?} after the restart"
    );
}
