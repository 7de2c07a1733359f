//! The ICE agent state machine (RFC 8445), sans-IO.
//!
//! One agent handles one data stream with one or more components. It owns the local and remote
//! candidates, the check list (RFC 8445 §6.1.2), the triggered-check queue (§6.1.4.1), the
//! valid list, nomination (§8.1) and consent freshness (RFC 7675) on the selected pairs.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::candidate::{local_preference, priority};
use super::{AgentConfig, Candidate, CandidateType, Credentials};
use crate::stun::{
    error_code, Class, ClientTransaction, Message, MessageEncoder, Method, RetransmitConfig,
    TransactionId, TransactionState,
};
use crate::turn::{TurnClient, TurnConfig, TurnError, TurnEvent, TurnState, TurnTransport};

/// Which side of the role negotiation the agent is on (RFC 8445 §6.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The agent that nominates pairs.
    Controlling,
    /// The agent that accepts the peer's nominations.
    Controlled,
}

/// The overall state of the agent, as the application sees it (the states of RFC 8445 §6.1.3
/// with those of the W3C `RTCIceConnectionState` that applications expect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Nothing has been checked yet.
    New,
    /// Checks are running and no pair works yet.
    Checking,
    /// Every component has a working pair; nomination may still be going on.
    Connected,
    /// Every component has a nominated (selected) pair (RFC 8445 §8.1.2).
    Completed,
    /// No pair can work for some component, or consent was lost (RFC 7675 §5.1).
    Failed,
    /// The selected pair has stopped answering; it may come back.
    Disconnected,
    /// The agent was closed by the application.
    Closed,
}

/// Something the application should know about (drained with [`Agent::poll_event`]).
#[derive(Debug, Clone, PartialEq)]
pub enum IceEvent {
    /// A new local candidate to signal to the peer (trickle, RFC 8838 §4).
    LocalCandidate(Candidate),
    /// Every gathering transaction has ended (RFC 8838 §4: end-of-candidates may be signalled).
    GatheringComplete,
    /// The connection state changed.
    StateChanged(ConnectionState),
    /// A pair was selected (nominated) for a component: application data goes on it.
    SelectedPair {
        /// The component.
        component: u16,
        /// The local candidate of the pair.
        local: Candidate,
        /// The remote candidate of the pair.
        remote: Candidate,
    },
    /// The role changed after a role conflict (RFC 8445 §7.3.1.1).
    RoleChanged(Role),
    /// A TURN allocation could not be made or was lost (wrong credentials, quota, no answer,
    /// a broken stream, 437...). A lost allocation's relayed candidate is removed first
    /// ([`IceEvent::LocalCandidateRemoved`]). The agent goes on with its other candidates and
    /// allocates again after `retry_in` (RFC 8445 §5.1.1.2; the back-off is ours, RFC 8656
    /// sets none); the new relayed candidate comes as a [`IceEvent::LocalCandidate`] to trickle
    /// (RFC 8838 §4) and is checked against the remote candidates (RFC 8445 §6.1.2).
    RelayFailed {
        /// The TURN server.
        server: SocketAddr,
        /// What went wrong. [`TurnError::WrongCredentials`] is not retried: time-limited
        /// credentials (XEP-0215) may have expired; new ones come with
        /// [`Agent::add_turn_server`].
        error: TurnError,
        /// When the agent allocates again; `None`: it gave up on this server for the
        /// component (credentials refused, a redirection, or too many failures in a row).
        retry_in: Option<Duration>,
    },
    /// A local candidate is gone because its TURN allocation was lost (RFC 8656 §8): its
    /// pairs were dropped from the check list and the valid list (RFC 8445 §6.1.2). Neither
    /// XEP-0176 nor RFC 8838 can withdraw a candidate: the peer's checks to it just fail.
    LocalCandidateRemoved(Candidate),
    /// The selected pair of a component used a local candidate that is gone. Data goes on
    /// the best other valid pair, if any (RFC 8445 §12.1); another pair cannot be nominated
    /// in this ICE session (RFC 8445 §8.1.1), so the application should restart ICE
    /// (RFC 8445 §9, [`Agent::restart`]) to select a new one. Without a restart the agent
    /// fails when consent on the lost pair runs out (RFC 7675 §5.1: 30 s after its last
    /// answer).
    SelectedPairLost {
        /// The component.
        component: u16,
        /// The local candidate of the lost pair.
        local: Candidate,
        /// The remote candidate of the lost pair.
        remote: Candidate,
    },
}

/// How a [`Transmit`] travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// A UDP datagram from the socket bound at `source`.
    Udp,
    /// Bytes for the TCP stream to a TURN server at `destination` (RFC 8656 §3.1);
    /// `source` is the host base the stream should be bound to.
    Tcp,
    /// Bytes for the TLS stream to a TURN server at `destination` (RFC 8656 §3.1), framed as
    /// over TCP; the I/O layer encrypts them and verifies the server's certificate.
    Tls,
}

/// A datagram the agent wants sent (drained with [`Agent::poll_transmit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address (a host candidate's base) to send from.
    pub source: SocketAddr,
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram, or the chunk of the stream.
    pub contents: Vec<u8>,
    /// UDP, or the stream to a TURN server.
    pub transport: Carrier,
}

/// Application data that arrived through a TURN relay (drained with
/// [`Agent::poll_relayed_data`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedData {
    /// The component of the pair it arrived on.
    pub component: u16,
    /// The peer's address, on the far side of the relay.
    pub source: SocketAddr,
    /// The data.
    pub data: Vec<u8>,
}

/// Why [`Agent::send`] refused data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No pair works for the component (yet, or any more).
    #[error("no usable path for this component")]
    NoPath,
    /// The first byte is 0-3: the peer would take it for STUN (RFC 7983 §7).
    #[error("data starting with a byte from 0 to 3 would be taken for STUN")]
    LooksLikeStun,
}

/// What a received datagram turned out to be (see [`Agent::handle_receive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// A STUN message the agent consumed (check, response, or gathering answer).
    Stun,
    /// Application data from the peer on a component: hand it to the application.
    Data {
        /// The component whose pair it arrived on.
        component: u16,
    },
    /// Traffic of a TURN allocation; application data it carried is available from
    /// [`Agent::poll_relayed_data`].
    Relayed,
    /// Not for us: malformed, unauthenticated, from an unknown address, or after close.
    /// Counted in [`AgentStats`].
    Dropped,
}

/// Counters of what the agent did and refused (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// STUN packets that failed to decode.
    pub malformed_stun: u64,
    /// Requests or responses that failed authentication (MESSAGE-INTEGRITY, FINGERPRINT,
    /// USERNAME).
    pub unauthenticated: u64,
    /// Datagrams dropped because they came from no known remote candidate or arrived before a
    /// pair was usable.
    pub unexpected_data: u64,
    /// Remote candidates refused because a limit was reached.
    pub candidates_refused: u64,
    /// Connectivity checks sent (including retransmissions).
    pub checks_sent: u64,
    /// Binding requests answered.
    pub requests_answered: u64,
    /// Relayed application data dropped because the queue was full.
    pub relayed_data_dropped: u64,
}

/// State of a candidate pair in the check list (RFC 8445 §6.1.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Frozen,
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

/// What an outstanding transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Gather(usize),
    Check(usize),
}

/// A Binding request to a STUN server to learn a server-reflexive candidate (RFC 8445 §5.1.1.2).
struct Gatherer {
    component: u16,
    base: SocketAddr,
    server: SocketAddr,
    /// `None` until the pacer starts it.
    transaction: Option<ClientTransaction>,
    request: Vec<u8>,
    done: bool,
}

/// An outstanding connectivity check on a pair.
struct Check {
    transaction: ClientTransaction,
    request: Vec<u8>,
    nominating: bool,
    first_sent: Instant,
    /// The check is a consent-freshness check (RFC 7675) rather than an ICE check.
    consent: bool,
    /// The role the request was sent in (RFC 8445 §7.2.5.1).
    role: Role,
}

/// A candidate pair (RFC 8445 §6.1.2). The local side is a base (host address); `valid_local`
/// is the local candidate learned from the mapped address once a check succeeded (§7.2.5.3.2).
struct Pair {
    component: u16,
    local: usize,
    remote: usize,
    state: PairState,
    check: Option<Check>,
    /// Transaction ids of earlier checks on this pair whose late answers still count.
    old_transactions: Vec<TransactionId>,
    valid_local: Option<usize>,
    nominated: bool,
    /// The controlled agent saw USE-CANDIDATE before the pair succeeded (RFC 8445 §7.3.1.5).
    nominate_on_success: bool,
    /// The peer sent an authenticated check on this pair: its data is accepted.
    peer_authenticated: bool,
    rtt: Option<Duration>,
    /// Consent freshness (RFC 7675): the last authenticated response on this pair.
    last_consent: Option<Instant>,
    next_consent: Option<Instant>,
}

/// A TURN allocation that gives a component a relayed candidate (RFC 8445 §5.1.1.2,
/// RFC 8656), made again with back-off when it fails or is lost.
struct Relay {
    component: u16,
    /// The host socket the allocation is made from (for TCP: the address to bind the stream to).
    base: SocketAddr,
    /// The server's settings, to allocate again.
    config: TurnConfig,
    client: TurnClient,
    /// The first allocation ended (allocated or failed): gathering no longer waits for it.
    done: bool,
    /// The relayed candidate of the current allocation, once added.
    relayed: Option<SocketAddr>,
    /// When the current allocation was made.
    allocated_at: Option<Instant>,
    /// An allocation was made once: a lost one is awaited before ICE is declared failed.
    ever_allocated: bool,
    /// Failed or short-lived allocations in a row.
    failures: u32,
    /// Allocations made so far on this relay (each draws its own transaction ids).
    attempts: u32,
    /// When to allocate again.
    retry_at: Option<Instant>,
    /// When the allocation was last verified because a pair through it stopped answering.
    last_check: Option<Instant>,
    /// The current client was made with credentials that have been replaced since.
    stale_credentials: bool,
}

/// An authenticated check that arrived before the peer's credentials were known (RFC 8445
/// §7.3: it is answered at once and acted upon once the credentials arrive).
struct EarlyCheck {
    local: SocketAddr,
    remote: SocketAddr,
    priority: u32,
    use_candidate: bool,
}

/// A sans-IO ICE agent (RFC 8445) for one data stream with one or more components.
pub struct Agent {
    config: AgentConfig,
    rng: StdRng,
    role: Role,
    tie_breaker: u64,
    local_credentials: Credentials,
    remote_credentials: Option<Credentials>,
    local_candidates: Vec<Candidate>,
    remote_candidates: Vec<Candidate>,
    stun_servers: Vec<SocketAddr>,
    gatherers: Vec<Gatherer>,
    gathering_started: bool,
    gathering_complete: bool,
    pairs: Vec<Pair>,
    pending: HashMap<TransactionId, Pending>,
    triggered: VecDeque<usize>,
    early_checks: Vec<EarlyCheck>,
    next_pacing: Option<Instant>,
    selected: Vec<Option<usize>>,
    /// Paths of the pairs selected before an ICE restart, used until new ones are selected.
    previous_paths: Vec<Option<(SocketAddr, SocketAddr)>>,
    first_valid_at: Vec<Option<Instant>>,
    remote_end_of_candidates: bool,
    exhausted_since: Option<Instant>,
    state: ConnectionState,
    transmits: VecDeque<Transmit>,
    events: VecDeque<IceEvent>,
    stats: AgentStats,
    foundations: HashMap<(CandidateType, std::net::IpAddr, Option<std::net::IpAddr>), String>,
    next_prflx_foundation: u32,
    buf: Vec<u8>,
    turn_servers: Vec<TurnConfig>,
    relays: Vec<Relay>,
    /// Per TURN server, peer addresses whose relaying may have ended an allocation (see
    /// [`TurnClient::loss_suspects`]): new relayed candidates of that server are not paired
    /// with them.
    relay_exclusions: HashMap<SocketAddr, Vec<IpAddr>>,
    /// Per TURN server, peer addresses that sent data through one of its allocations: the
    /// server can route to them, so they are never excluded.
    relay_reachable: HashMap<SocketAddr, Vec<IpAddr>>,
    /// A pair was selected for the component in this ICE session: the controlling agent does
    /// not nominate another until a restart (RFC 8445 §8.1.1).
    nominated_once: Vec<bool>,
    /// The selected pair of the component was lost with its relayed candidate: consent on it
    /// runs out at this time (RFC 7675 §5.1), and the agent fails then unless it is restarted.
    lost_consent_deadline: Vec<Option<Instant>>,
    relayed_data: VecDeque<RelayedData>,
    /// The latest time the caller gave us.
    now: Instant,
}

/// The smallest Ta an agent may use (RFC 8445 §14.2).
const MIN_TA: Duration = Duration::from_millis(5);
/// Upper bound on relayed application datagrams waiting in [`Agent::poll_relayed_data`].
const MAX_RELAYED_DATA: usize = 1024;
/// Upper bound on TURN servers (each makes one allocation per component).
const MAX_TURN_SERVERS: usize = 8;
/// Upper bound on checks remembered before the peer's credentials arrive.
const MAX_EARLY_CHECKS: usize = 16;
/// Upper bound on remembered transaction ids of superseded checks on one pair.
const MAX_OLD_TRANSACTIONS: usize = 4;
/// RFC 7675 §5.1: consent checks are sent at a random interval of 0.8 to 1.2 times the mean.
const CONSENT_JITTER: (f64, f64) = (0.8, 1.2);
/// First wait before a failed or lost TURN allocation is made again; it doubles with each
/// failure in a row up to [`RELAY_RETRY_MAX`]. RFC 8656 sets no retry timing: our choice.
const RELAY_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two allocation attempts on one server.
const RELAY_RETRY_MAX: Duration = Duration::from_secs(16);
/// Failures in a row after which the agent gives up on a TURN server for a component (with
/// the waits above, 1 + 2 + 4 + 8 + 16 s: it gives up about 31 s after the first failure).
const RELAY_MAX_FAILURES: u32 = 6;
/// An allocation that lived this long resets the count of failures in a row.
const RELAY_STABLE_AFTER: Duration = Duration::from_secs(60);
/// Upper bound on peer addresses remembered per TURN server as not to be relayed to.
const MAX_RELAY_EXCLUSIONS: usize = 16;
/// Upper bound on peer addresses remembered per TURN server as reachable from it.
const MAX_RELAY_REACHABLE: usize = 64;
/// A relay whose selected pair stops answering consent checks is verified (RFC 8656 §8
/// Refresh) at most this often.
const RELAY_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Lower bound of the wait for better pairs before the controlling agent nominates.
const MIN_NOMINATION_WAIT: Duration = Duration::from_millis(10);
/// The wait for better pairs is this many round trips of the first valid pair.
const NOMINATION_WAIT_RTTS: u32 = 3;

impl Agent {
    /// A new agent in `role`. `now` is the current time of the caller's clock.
    pub fn new(mut config: AgentConfig, role: Role, now: Instant) -> Self {
        // RFC 8445 §14.2: Ta must not be configured below 5 ms.
        config.ta = config.ta.max(MIN_TA);
        let mut rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let local_credentials = Credentials::random(&mut rng);
        let tie_breaker = rng.random();
        let components = usize::from(config.components.max(1));
        Agent {
            config,
            rng,
            role,
            tie_breaker,
            local_credentials,
            remote_credentials: None,
            local_candidates: Vec::new(),
            remote_candidates: Vec::new(),
            stun_servers: Vec::new(),
            gatherers: Vec::new(),
            gathering_started: false,
            gathering_complete: false,
            pairs: Vec::new(),
            pending: HashMap::new(),
            triggered: VecDeque::new(),
            early_checks: Vec::new(),
            next_pacing: None,
            selected: vec![None; components],
            previous_paths: vec![None; components],
            first_valid_at: vec![None; components],
            remote_end_of_candidates: false,
            exhausted_since: None,
            state: ConnectionState::New,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: AgentStats::default(),
            foundations: HashMap::new(),
            next_prflx_foundation: 0,
            buf: Vec::with_capacity(256),
            turn_servers: Vec::new(),
            relays: Vec::new(),
            relay_exclusions: HashMap::new(),
            relay_reachable: HashMap::new(),
            nominated_once: vec![false; components],
            lost_consent_deadline: vec![None; components],
            relayed_data: VecDeque::new(),
            now,
        }
    }

    /// The agent's own credentials, to signal to the peer.
    pub fn local_credentials(&self) -> &Credentials {
        &self.local_credentials
    }

    /// The peer's credentials, from signalling. Checks start once they are known.
    ///
    /// New credentials that differ from earlier ones mean the peer restarted ICE (RFC 8445
    /// §9): the remote candidates and the check list of the old generation are dropped (the
    /// selected pairs keep carrying data until new ones are selected). An application that
    /// answers a peer's restart calls [`Agent::restart`] too, and signals its new credentials.
    pub fn set_remote_credentials(&mut self, credentials: Credentials) {
        if let Some(old) = &self.remote_credentials {
            if *old == credentials {
                return;
            }
            self.reset_checks();
        }
        self.remote_credentials = Some(credentials);
        let early = std::mem::take(&mut self.early_checks);
        for check in early {
            self.on_authenticated_request(
                check.local,
                check.remote,
                check.priority,
                check.use_candidate,
            );
        }
        self.form_pairs();
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Adds a local address the caller has bound for `component` (RFC 8445 §5.1.1.1). Returns
    /// the host candidate, or `None` if it duplicates an existing one or the component is out
    /// of range. The same candidate is also announced as [`IceEvent::LocalCandidate`].
    pub fn add_host_candidate(&mut self, component: u16, addr: SocketAddr) -> Option<Candidate> {
        if component == 0 || component > self.config.components.max(1) {
            return None;
        }
        if self
            .local_candidates
            .iter()
            .any(|c| c.component == component && c.address == addr)
        {
            return None;
        }
        let same_family = self
            .local_candidates
            .iter()
            .filter(|c| {
                c.kind == CandidateType::Host
                    && c.component == component
                    && c.address.is_ipv6() == addr.is_ipv6()
            })
            .count();
        // RFC 8421 §4: prefer IPv6; distinct local preferences per interface (RFC 8445 §5.1.2.1).
        let top: u16 = if addr.is_ipv6() { 0xffff } else { 0x7fff };
        let local_pref = top.saturating_sub(same_family as u16);
        let candidate = Candidate {
            foundation: self.foundation(CandidateType::Host, addr.ip(), None),
            component,
            priority: priority(CandidateType::Host, local_pref, component),
            address: addr,
            kind: CandidateType::Host,
            related_address: None,
            base: addr,
        };
        self.local_candidates.push(candidate.clone());
        self.events
            .push_back(IceEvent::LocalCandidate(candidate.clone()));
        let servers = self.stun_servers.clone();
        for server in servers {
            self.add_gatherer(component, addr, server);
        }
        if self.gathering_started {
            self.gathering_complete = false;
        }
        self.form_pairs();
        Some(candidate)
    }

    /// Adds a STUN server to learn server-reflexive candidates from, for every host candidate
    /// of the same address family (RFC 8445 §5.1.1.2).
    pub fn add_stun_server(&mut self, server: SocketAddr) {
        if self.stun_servers.contains(&server) {
            return;
        }
        self.stun_servers.push(server);
        let hosts: Vec<(u16, SocketAddr)> = self
            .local_candidates
            .iter()
            .filter(|c| c.kind == CandidateType::Host)
            .map(|c| (c.component, c.base))
            .collect();
        for (component, base) in hosts {
            self.add_gatherer(component, base, server);
        }
        if self.gathering_started {
            self.gathering_complete = false;
        }
    }

    fn add_gatherer(&mut self, component: u16, base: SocketAddr, server: SocketAddr) {
        if base.is_ipv6() != server.is_ipv6() {
            return;
        }
        self.gatherers.push(Gatherer {
            component,
            base,
            server,
            transaction: None,
            request: Vec::new(),
            done: false,
        });
    }

    /// Adds a TURN server to allocate a relayed candidate on, for each component (RFC 8445
    /// §5.1.1.2, RFC 8656), from the first host candidate of the server's address family. At
    /// most 8 servers are used; the allocations start with [`Agent::gather`].
    ///
    /// A server already added (same address and transport) with other credentials takes the
    /// new ones for its next allocations, and allocations that gave up (after
    /// [`TurnError::WrongCredentials`], for instance expired XEP-0215 credentials) start again.
    pub fn add_turn_server(&mut self, config: TurnConfig) {
        if let Some(known) = self
            .turn_servers
            .iter_mut()
            .find(|t| t.server == config.server && t.transport == config.transport)
        {
            if known.credentials != config.credentials {
                known.credentials = config.credentials.clone();
                let now = self.now;
                for relay in self.relays.iter_mut().filter(|r| {
                    r.config.server == config.server && r.config.transport == config.transport
                }) {
                    relay.config.credentials = config.credentials.clone();
                    relay.stale_credentials = true;
                    let gave_up =
                        relay.client.state() == TurnState::Failed && relay.retry_at.is_none();
                    if gave_up && self.state != ConnectionState::Closed {
                        relay.failures = 0;
                        relay.retry_at = Some(now);
                    }
                }
            }
            return;
        }
        if self.turn_servers.len() >= MAX_TURN_SERVERS {
            return;
        }
        self.turn_servers.push(config);
        if self.gathering_started {
            self.start_relays();
        }
    }

    /// Starts the allocations not started yet: one per TURN server and component, from the
    /// first host candidate of the server's family.
    fn start_relays(&mut self) {
        let now = self.now;
        for server in 0..self.turn_servers.len() {
            let config = &self.turn_servers[server];
            for component in 1..=self.config.components.max(1) {
                let exists = self.relays.iter().any(|r| {
                    r.component == component
                        && r.client.server() == config.server
                        && r.client.transport() == config.transport
                });
                if exists {
                    continue;
                }
                let Some(base) = self
                    .local_candidates
                    .iter()
                    .find(|c| {
                        c.kind == CandidateType::Host
                            && c.component == component
                            && c.address.is_ipv6() == config.server.is_ipv6()
                            && is_loopback(c.address) == is_loopback(config.server)
                    })
                    .map(|c| c.base)
                else {
                    continue;
                };
                let mut config = config.clone();
                if let Some(seed) = self.config.seed {
                    config.seed = Some(seed ^ (u64::from(component) << 32) ^ server as u64);
                }
                self.relays.push(Relay {
                    component,
                    base,
                    client: TurnClient::new(config.clone(), now),
                    config,
                    done: false,
                    relayed: None,
                    allocated_at: None,
                    ever_allocated: false,
                    failures: 0,
                    attempts: 1,
                    retry_at: None,
                    last_check: None,
                    stale_credentials: false,
                });
                self.gathering_complete = false;
            }
        }
    }

    /// Starts gathering (from the STUN and TURN servers added so far) and, once remote
    /// credentials are known, connectivity checks.
    pub fn gather(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.gathering_started = true;
        self.start_relays();
        self.handle_timeout(now);
    }

    /// Bytes from the TCP (or TLS) stream to the TURN server `server` (RFC 8656 §3.1).
    pub fn handle_turn_stream(&mut self, now: Instant, server: SocketAddr, data: &[u8]) {
        self.now = self.now.max(now);
        for relay in &mut self.relays {
            if relay.client.server() == server && relay.client.transport().is_stream() {
                relay.client.handle_input(now, server, data);
            }
        }
        self.process_relays(now);
        self.update_state(now);
    }

    /// The stream to the TURN server `server` ended or broke: its allocations are gone.
    pub fn handle_turn_stream_closed(&mut self, now: Instant, server: SocketAddr) {
        self.now = self.now.max(now);
        for relay in &mut self.relays {
            if relay.client.server() == server && relay.client.transport().is_stream() {
                relay.client.handle_transport_closed(now);
            }
        }
        self.process_relays(now);
        self.update_state(now);
    }

    /// Acts on what the TURN clients report: relayed (and server-reflexive) candidates once
    /// allocated, failures, and data relayed from peers, which goes through the same checks
    /// and demultiplexing as data that arrives directly.
    fn process_relays(&mut self, now: Instant) {
        let mut events = Vec::new();
        for (i, relay) in self.relays.iter_mut().enumerate() {
            while let Some(event) = relay.client.poll_event() {
                events.push((i, event));
            }
        }
        for (i, event) in events {
            match event {
                TurnEvent::Allocated {
                    relayed, mapped, ..
                } => {
                    let relay = &mut self.relays[i];
                    relay.done = true;
                    relay.allocated_at = Some(now);
                    relay.ever_allocated = true;
                    relay.relayed = Some(relayed);
                    self.add_relayed(i, relayed, mapped);
                }
                TurnEvent::AllocationFailed(error) | TurnEvent::Expired(error) => {
                    self.relay_failed(now, i, error);
                }
                TurnEvent::PeerData { .. } if self.state == ConnectionState::Closed => {}
                TurnEvent::PeerData { peer, data } => {
                    let Some(relayed) = self.relays[i].client.relayed_address() else {
                        continue;
                    };
                    self.relay_reached(self.relays[i].client.server(), peer.ip());
                    if let ReceiveOutcome::Data { component } =
                        self.process(now, relayed, peer, &data)
                    {
                        if self.relayed_data.len() >= MAX_RELAYED_DATA {
                            self.stats.relayed_data_dropped += 1;
                        } else {
                            self.relayed_data.push_back(RelayedData {
                                component,
                                source: peer,
                                data,
                            });
                        }
                    }
                }
                other => tracing::trace!(?other, "TURN event"),
            }
        }
    }

    /// An allocation failed or was lost: its relayed candidate and pairs go, the peers that
    /// may have ended it are not paired with the server's next relayed candidates, and the
    /// allocation is made again after a back-off, unless the error rules it out or the
    /// failures in a row are too many.
    fn relay_failed(&mut self, now: Instant, i: usize, error: TurnError) {
        let server = self.relays[i].client.server();
        let reachable = self.relay_reachable.get(&server);
        let suspects: Vec<IpAddr> = self.relays[i]
            .client
            .loss_suspects()
            .iter()
            .filter(|p| !reachable.is_some_and(|r| r.contains(p)))
            .copied()
            .collect();
        if !suspects.is_empty() {
            tracing::info!(%server, ?suspects, "TURN allocation lost after relaying to these peers: not pairing its next relayed candidates with them");
            self.exclude_relay_peers(server, &suspects);
        }
        let relay = &mut self.relays[i];
        relay.done = true;
        let lost = relay.relayed.take();
        let stable = relay
            .allocated_at
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) >= RELAY_STABLE_AFTER);
        if stable {
            relay.failures = 0;
        }
        relay.failures += 1;
        // Refused credentials are not tried again, unless new ones came meanwhile.
        let retryable = match error {
            TurnError::WrongCredentials => relay.stale_credentials,
            TurnError::TryAlternate(_) => false,
            _ => true,
        };
        let closed = matches!(
            self.state,
            ConnectionState::Closed | ConnectionState::Failed
        );
        let retry_in = (retryable && !closed && relay.failures < RELAY_MAX_FAILURES).then(|| {
            let doublings = relay.failures.saturating_sub(1).min(16);
            (RELAY_RETRY_FIRST * (1u32 << doublings)).min(RELAY_RETRY_MAX)
        });
        relay.retry_at = retry_in.map(|d| now + d);
        tracing::warn!(%server, %error, ?retry_in, lost = ?lost, "TURN allocation failed or lost");
        if let Some(relayed) = lost {
            self.remove_relayed(relayed);
        }
        self.events.push_back(IceEvent::RelayFailed {
            server,
            error,
            retry_in,
        });
    }

    /// `peer` sent data through an allocation on `server`: the server reaches it (bounded
    /// memory), and it is not excluded any more.
    fn relay_reached(&mut self, server: SocketAddr, peer: IpAddr) {
        let list = self.relay_reachable.entry(server).or_default();
        if list.contains(&peer) {
            return;
        }
        if list.len() >= MAX_RELAY_REACHABLE {
            list.remove(0);
        }
        list.push(peer);
        if let Some(excluded) = self.relay_exclusions.get_mut(&server) {
            excluded.retain(|p| *p != peer);
        }
    }

    /// Remembers peers not to relay to through `server` (bounded), and drops the pairs of the
    /// server's relayed candidates with them that have not worked yet.
    fn exclude_relay_peers(&mut self, server: SocketAddr, peers: &[IpAddr]) {
        let list = self.relay_exclusions.entry(server).or_default();
        for p in peers {
            if !list.contains(p) {
                if list.len() >= MAX_RELAY_EXCLUSIONS {
                    list.remove(0);
                }
                list.push(*p);
            }
        }
        let doomed: Vec<bool> = (0..self.pairs.len())
            .map(|i| {
                let p = &self.pairs[i];
                p.state != PairState::Succeeded && self.pair_is_excluded(p.local, p.remote)
            })
            .collect();
        self.remove_pairs(|i, _| doomed[i]);
    }

    /// Whether the pair of local candidate `l` and remote candidate `r` would relay to a peer
    /// excluded for the local candidate's TURN server.
    fn pair_is_excluded(&self, l: usize, r: usize) -> bool {
        let (Some(lc), Some(rc)) = (self.local_candidates.get(l), self.remote_candidates.get(r))
        else {
            return false;
        };
        if lc.kind != CandidateType::Relayed {
            return false;
        }
        let Some(server) = self
            .relays
            .iter()
            .find(|relay| relay.relayed == Some(lc.base))
            .map(|relay| relay.client.server())
        else {
            return false;
        };
        self.relay_exclusions
            .get(&server)
            .is_some_and(|list| list.contains(&rc.address.ip()))
    }

    /// Removes the local candidates whose base is the relayed address of a lost allocation,
    /// and their pairs (RFC 8445 §6.1.2). A selected pair among them is lost: its component
    /// goes on with its other valid pairs ([`IceEvent::SelectedPairLost`]).
    fn remove_relayed(&mut self, relayed: SocketAddr) {
        let gone: Vec<bool> = self
            .local_candidates
            .iter()
            .map(|c| c.base == relayed)
            .collect();
        if !gone.iter().any(|g| *g) {
            return;
        }
        let uses_gone = |p: &Pair| {
            gone.get(p.local).copied().unwrap_or(false)
                || p.valid_local
                    .is_some_and(|v| gone.get(v).copied().unwrap_or(false))
        };
        for c in 0..self.selected.len() {
            let Some(idx) = self.selected[c] else {
                continue;
            };
            if !uses_gone(&self.pairs[idx]) {
                continue;
            }
            let p = &self.pairs[idx];
            let local = self.local_candidates[p.valid_local.unwrap_or(p.local)].clone();
            let remote = self.remote_candidates[p.remote].clone();
            let last = p.last_consent.unwrap_or(self.now);
            self.lost_consent_deadline[c] = Some(last + self.config.consent_timeout);
            tracing::info!(component = c + 1, local = %local, remote = %remote, "selected pair lost with its relayed candidate");
            self.events.push_back(IceEvent::SelectedPairLost {
                component: c as u16 + 1,
                local,
                remote,
            });
        }
        let doomed: Vec<bool> = self.pairs.iter().map(uses_gone).collect();
        self.remove_pairs(|i, _| doomed[i]);
        // The candidates themselves, and the indices the pairs hold.
        let mut map = Vec::with_capacity(self.local_candidates.len());
        let mut next = 0usize;
        for g in &gone {
            if *g {
                map.push(None);
            } else {
                map.push(Some(next));
                next += 1;
            }
        }
        let mut index = 0usize;
        let mut removed = Vec::new();
        self.local_candidates.retain(|c| {
            let keep = !gone.get(index).copied().unwrap_or(false);
            index += 1;
            if !keep {
                removed.push(c.clone());
            }
            keep
        });
        for p in &mut self.pairs {
            p.local = map.get(p.local).copied().flatten().unwrap_or(p.local);
            p.valid_local = p.valid_local.and_then(|v| map.get(v).copied().flatten());
        }
        for c in removed {
            if c.kind == CandidateType::Relayed {
                tracing::debug!(candidate = %c, "relayed candidate removed");
                self.events.push_back(IceEvent::LocalCandidateRemoved(c));
            }
        }
        for c in 1..=self.config.components.max(1) {
            if self.best_valid(c, false).is_none() {
                self.first_valid_at[usize::from(c) - 1] = None;
            }
        }
        for path in &mut self.previous_paths {
            if path.is_some_and(|(local, _)| local == relayed) {
                *path = None;
            }
        }
        self.exhausted_since = None;
    }

    /// Removes the pairs for which `doomed(index, pair)` holds, and rewrites the indices the
    /// selected pairs, the triggered-check queue and the pending transactions hold.
    fn remove_pairs(&mut self, doomed: impl Fn(usize, &Pair) -> bool) {
        let mut map = Vec::with_capacity(self.pairs.len());
        let mut next = 0usize;
        for (i, p) in self.pairs.iter().enumerate() {
            if doomed(i, p) {
                map.push(None);
            } else {
                map.push(Some(next));
                next += 1;
            }
        }
        if next == self.pairs.len() {
            return;
        }
        let mut index = 0usize;
        self.pairs.retain(|_| {
            let keep = map[index].is_some();
            index += 1;
            keep
        });
        for sel in &mut self.selected {
            *sel = sel.and_then(|i| map.get(i).copied().flatten());
        }
        self.triggered = self
            .triggered
            .iter()
            .filter_map(|&i| map.get(i).copied().flatten())
            .collect();
        self.pending.retain(|_, p| match p {
            Pending::Check(i) => match map.get(*i).copied().flatten() {
                Some(n) => {
                    *i = n;
                    true
                }
                None => false,
            },
            Pending::Gather(_) => true,
        });
    }

    /// Adds the relayed candidate of an allocation (and the server-reflexive one its mapped
    /// address gives, over UDP), unless redundant (RFC 8445 §5.1.3).
    fn add_relayed(&mut self, i: usize, relayed: SocketAddr, mapped: SocketAddr) {
        let (component, base, server, transport) = {
            let r = &self.relays[i];
            (r.component, r.base, r.client.server(), r.client.transport())
        };
        if transport == TurnTransport::Udp {
            self.add_server_reflexive(component, base, server, mapped);
        }
        if self
            .local_candidates
            .iter()
            .any(|c| c.component == component && c.address == relayed)
        {
            return;
        }
        let host_pref = self
            .local_base(base)
            .map(|h| local_preference(self.local_candidates[h].priority))
            .unwrap_or(0);
        // A relay reached over TCP is preferred less than one over UDP.
        let local_pref = match transport {
            TurnTransport::Udp => host_pref,
            TurnTransport::Tcp | TurnTransport::Tls => host_pref / 2,
        };
        let candidate = Candidate {
            foundation: self.foundation(CandidateType::Relayed, base.ip(), Some(server.ip())),
            component,
            priority: priority(CandidateType::Relayed, local_pref, component),
            address: relayed,
            kind: CandidateType::Relayed,
            related_address: Some(mapped),
            base: relayed,
        };
        tracing::debug!(candidate = %candidate, "relayed candidate");
        self.local_candidates.push(candidate.clone());
        self.events.push_back(IceEvent::LocalCandidate(candidate));
        self.form_pairs();
    }

    /// The local candidate that is the base `addr` (a host socket or a relayed address).
    fn local_base(&self, addr: SocketAddr) -> Option<usize> {
        self.local_candidates
            .iter()
            .position(|c| is_base(c) && c.base == addr)
    }

    /// Application data that arrived through a TURN relay.
    pub fn poll_relayed_data(&mut self) -> Option<RelayedData> {
        self.relayed_data.pop_front()
    }

    /// Sends application data on the path of `component` (see [`Agent::send_path`]): through
    /// the TURN allocation when the path is relayed, else as a datagram from the host socket.
    /// Data must not start with a byte from 0 to 3 (RFC 7983: it would be taken for STUN).
    pub fn send(&mut self, component: u16, data: &[u8]) -> Result<(), SendError> {
        let (local, remote) = self.data_path(component, data)?;
        self.emit(local, remote, data.to_vec());
        Ok(())
    }

    /// [`Agent::send`] of an owned buffer, queued as it is (no copy on a direct path).
    pub fn send_owned(&mut self, component: u16, data: Vec<u8>) -> Result<(), SendError> {
        let (local, remote) = self.data_path(component, &data)?;
        self.emit(local, remote, data);
        Ok(())
    }

    /// The path application `data` for `component` takes, if it can be sent.
    fn data_path(
        &self,
        component: u16,
        data: &[u8],
    ) -> Result<(SocketAddr, SocketAddr), SendError> {
        let path = self.send_path(component).ok_or(SendError::NoPath)?;
        if matches!(data.first(), Some(0..=3)) {
            return Err(SendError::LooksLikeStun);
        }
        Ok(path)
    }

    /// Adds a remote candidate, at any time (trickle, RFC 8838 §11). Candidates beyond
    /// [`AgentConfig::max_remote_candidates`], for an unknown component, or duplicates are
    /// ignored (and refusals counted).
    pub fn add_remote_candidate(&mut self, candidate: Candidate, now: Instant) {
        if candidate.component == 0 || candidate.component > self.config.components.max(1) {
            self.stats.candidates_refused += 1;
            return;
        }
        if let Some(existing) = self
            .remote_candidates
            .iter_mut()
            .find(|c| c.component == candidate.component && c.address == candidate.address)
        {
            // A signalled candidate replaces a peer-reflexive one learned earlier
            // (RFC 8445 §7.3.1.3, RFC 8838 §11.4).
            if existing.kind == CandidateType::PeerReflexive
                && candidate.kind != CandidateType::PeerReflexive
            {
                existing.kind = candidate.kind;
                existing.foundation = candidate.foundation;
                existing.related_address = candidate.related_address;
            }
            return;
        }
        if self.remote_candidates.len() >= self.config.max_remote_candidates {
            self.stats.candidates_refused += 1;
            return;
        }
        self.remote_candidates.push(Candidate {
            base: candidate.address,
            ..candidate
        });
        self.exhausted_since = None;
        self.form_pairs();
        self.handle_timeout(now);
    }

    /// The peer signalled end-of-candidates (RFC 8838 §4.2).
    pub fn end_of_remote_candidates(&mut self, now: Instant) {
        self.remote_end_of_candidates = true;
        self.handle_timeout(now);
    }

    /// Feeds a datagram received on the local address `local` from `remote`.
    ///
    /// STUN and application data share the socket and are told apart by their first byte
    /// (RFC 7983 §7: 0-3 is STUN).
    pub fn handle_receive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> ReceiveOutcome {
        self.now = self.now.max(now);
        // Traffic of a TURN allocation made from this socket (also after close: the
        // deallocation is answered). A STUN server may also be the TURN server: answers to
        // our own gathering requests go to the agent.
        let ours =
            Message::decode(data).is_ok_and(|m| self.pending.contains_key(&m.transaction_id()));
        let mut relayed = false;
        for relay in self.relays.iter_mut().filter(|_| !ours) {
            if relay.base == local
                && relay.client.server() == remote
                && relay.client.transport() == TurnTransport::Udp
                && relay.client.state() != TurnState::Closed
            {
                relay.client.handle_input(now, remote, data);
                relayed = true;
            }
        }
        if relayed {
            self.process_relays(now);
            self.update_state(now);
            return ReceiveOutcome::Relayed;
        }
        if self.state == ConnectionState::Closed {
            return ReceiveOutcome::Dropped;
        }
        self.process(now, local, remote, data)
    }

    /// Handles a datagram that arrived on the base `local` (a host socket, or a relayed
    /// address for data unwrapped by a TURN client).
    fn process(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> ReceiveOutcome {
        match data.first() {
            Some(0..=3) => {}
            Some(_) => return self.receive_data(local, remote),
            None => {
                self.stats.unexpected_data += 1;
                return ReceiveOutcome::Dropped;
            }
        }
        let message = match Message::decode(data) {
            Ok(m) => m,
            Err(err) => {
                tracing::debug!(%remote, %err, "dropping malformed STUN packet");
                self.stats.malformed_stun += 1;
                return ReceiveOutcome::Dropped;
            }
        };
        if message.method() != Method::BINDING {
            self.stats.malformed_stun += 1;
            return ReceiveOutcome::Dropped;
        }
        let handled = match message.class() {
            Class::Request => self.handle_request(now, local, remote, &message),
            Class::SuccessResponse | Class::ErrorResponse => {
                self.handle_response(now, local, remote, &message)
            }
            // RFC 8445 §11: Binding indications are keepalives; nothing to do.
            Class::Indication => true,
        };
        self.update_state(now);
        if handled {
            ReceiveOutcome::Stun
        } else {
            ReceiveOutcome::Dropped
        }
    }

    fn receive_data(&mut self, local: SocketAddr, remote: SocketAddr) -> ReceiveOutcome {
        let found = self.pairs.iter().find(|p| {
            self.local_candidates[p.local].base == local
                && self.remote_candidates[p.remote].address == remote
                && (p.state == PairState::Succeeded || p.peer_authenticated)
        });
        match found {
            Some(pair) => ReceiveOutcome::Data {
                component: pair.component,
            },
            None => {
                // A selected pair whose remote generation was dropped by a restart still
                // carries data until a new one is selected.
                if let Some(component) = self.selected_component_for(local, remote) {
                    return ReceiveOutcome::Data { component };
                }
                self.stats.unexpected_data += 1;
                ReceiveOutcome::Dropped
            }
        }
    }

    fn selected_component_for(&self, local: SocketAddr, remote: SocketAddr) -> Option<u16> {
        self.send_paths()
            .find(|(_, l, r)| *l == local && *r == remote)
            .map(|(c, _, _)| c)
    }

    fn send_paths(&self) -> impl Iterator<Item = (u16, SocketAddr, SocketAddr)> + '_ {
        (1..=self.config.components.max(1))
            .filter_map(|c| self.send_path(c).map(|(local, remote)| (c, local, remote)))
    }

    /// Handles a Binding request: authentication, role conflicts, the response, peer-reflexive
    /// candidates, triggered checks and nomination (RFC 8445 §7.3).
    fn handle_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message<'_>,
    ) -> bool {
        let tid = msg.transaction_id();
        let Some(component) = self
            .local_base(local)
            .map(|i| self.local_candidates[i].component)
        else {
            self.stats.unexpected_data += 1;
            return false;
        };
        // RFC 8445 §7.3 requires FINGERPRINT on checks; without it the packet is not ours.
        if !msg.has_fingerprint() {
            self.stats.unauthenticated += 1;
            return false;
        }
        if let Err((code, reason)) = self.authenticate(msg) {
            self.stats.unauthenticated += 1;
            self.send_error(local, remote, tid, code, reason, None);
            return false;
        }
        let key = self.local_credentials.pwd.clone();
        if !msg.unknown_comprehension_required().is_empty() {
            let unknown: Vec<u16> = msg.unknown_comprehension_required().to_vec();
            self.send_error(
                local,
                remote,
                tid,
                error_code::UNKNOWN_ATTRIBUTE,
                "Unknown Attribute",
                Some((&unknown, &key)),
            );
            return true;
        }
        // Role conflict (RFC 8445 §7.3.1.1): the agent with the larger tie-breaker keeps
        // controlling; the other switches, or is told to with a 487.
        let conflict = match (self.role, msg.ice_controlling(), msg.ice_controlled()) {
            (Role::Controlling, Some(theirs), _) => {
                Some((Role::Controlled, self.tie_breaker >= theirs))
            }
            (Role::Controlled, _, Some(theirs)) => {
                Some((Role::Controlling, self.tie_breaker < theirs))
            }
            _ => None,
        };
        match conflict {
            Some((_, true)) => {
                self.send_error(
                    local,
                    remote,
                    tid,
                    error_code::ROLE_CONFLICT,
                    "Role Conflict",
                    Some((&[], &key)),
                );
                return true;
            }
            Some((switch_to, false)) => self.switch_role(switch_to),
            None => {}
        }
        // The success response (RFC 8445 §7.3.1.2).
        {
            let mut enc =
                MessageEncoder::new(&mut self.buf, Class::SuccessResponse, Method::BINDING, tid);
            enc.xor_mapped_address(remote);
            enc.message_integrity(key.as_bytes());
            enc.fingerprint();
            enc.finish();
        }
        self.stats.requests_answered += 1;
        let response = self.buf.clone();
        self.emit(local, remote, response);
        let priority = msg
            .priority()
            .unwrap_or_else(|| priority(CandidateType::PeerReflexive, 0, component));
        let use_candidate = msg.use_candidate();
        if self.remote_credentials.is_none() {
            if self.early_checks.len() < MAX_EARLY_CHECKS {
                self.early_checks.push(EarlyCheck {
                    local,
                    remote,
                    priority,
                    use_candidate,
                });
            }
            return true;
        }
        self.on_authenticated_request(local, remote, priority, use_candidate);
        self.drive(now);
        true
    }

    /// Short-term authentication of a check (RFC 8445 §7.3, RFC 8489 §9.1.3): USERNAME must be
    /// `<our ufrag>:<their ufrag>` (their part checked once known) and MESSAGE-INTEGRITY must
    /// verify with our password. The error is the code and reason to answer with: 400 when
    /// the credentials are missing, 401 when they are wrong.
    fn authenticate(&self, msg: &Message<'_>) -> Result<(), (u16, &'static str)> {
        const BAD_REQUEST: (u16, &str) = (error_code::BAD_REQUEST, "Bad Request");
        const UNAUTHORIZED: (u16, &str) = (error_code::UNAUTHORIZED, "Unauthorized");
        let username = msg.username().ok_or(BAD_REQUEST)?;
        if !msg.has_message_integrity() {
            return Err(BAD_REQUEST);
        }
        let (ours, theirs) = username.split_once(':').ok_or(UNAUTHORIZED)?;
        let theirs_ok = self
            .remote_credentials
            .as_ref()
            .is_none_or(|r| r.ufrag == theirs);
        if ours != self.local_credentials.ufrag || !theirs_ok {
            return Err(UNAUTHORIZED);
        }
        msg.verify_integrity(self.local_credentials.pwd.as_bytes())
            .map_err(|_| UNAUTHORIZED)
    }

    /// Acts on an authenticated request once the peer's credentials are known: learns a
    /// peer-reflexive candidate (RFC 8445 §7.3.1.3), schedules a triggered check (§7.3.1.4) and
    /// records a nomination (§7.3.1.5).
    fn on_authenticated_request(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        priority: u32,
        use_candidate: bool,
    ) {
        let Some(local_idx) = self.local_base(local) else {
            return;
        };
        let component = self.local_candidates[local_idx].component;
        let known = self
            .remote_candidates
            .iter()
            .position(|c| c.component == component && c.address == remote);
        let remote_idx = match known {
            Some(i) => i,
            None => {
                self.next_prflx_foundation += 1;
                let candidate = Candidate::remote(
                    format!("prflx{}", self.next_prflx_foundation),
                    component,
                    priority,
                    remote,
                    CandidateType::PeerReflexive,
                    None,
                );
                let limit = self.config.max_remote_candidates;
                let Some(i) = push_bounded(&mut self.remote_candidates, candidate, limit) else {
                    self.stats.candidates_refused += 1;
                    return;
                };
                i
            }
        };
        let known = self
            .pairs
            .iter()
            .position(|p| p.local == local_idx && p.remote == remote_idx);
        let pair_idx = match known {
            Some(i) => i,
            None => {
                let pair = Pair::new(component, local_idx, remote_idx);
                let limit = self.config.max_candidate_pairs;
                let Some(i) = push_bounded(&mut self.pairs, pair, limit) else {
                    self.stats.candidates_refused += 1;
                    return;
                };
                i
            }
        };
        let pair = &mut self.pairs[pair_idx];
        pair.peer_authenticated = true;
        if use_candidate && self.role == Role::Controlled {
            if pair.state == PairState::Succeeded {
                pair.nominated = true;
            } else {
                pair.nominate_on_success = true;
            }
        }
        match pair.state {
            PairState::Succeeded => {}
            PairState::InProgress | PairState::Waiting | PairState::Frozen | PairState::Failed => {
                if pair.state != PairState::InProgress {
                    pair.state = PairState::Waiting;
                }
                if !self.triggered.contains(&pair_idx)
                    && self.triggered.len() < self.config.max_triggered_checks
                {
                    self.triggered.push_back(pair_idx);
                }
            }
        }
        self.update_selection(component);
    }

    fn switch_role(&mut self, role: Role) {
        if self.role != role {
            tracing::debug!(?role, "role conflict resolved: switching role");
            self.role = role;
            self.events.push_back(IceEvent::RoleChanged(role));
        }
    }

    fn send_error(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        tid: TransactionId,
        code: u16,
        reason: &str,
        extra: Option<(&[u16], &str)>,
    ) {
        let mut enc =
            MessageEncoder::new(&mut self.buf, Class::ErrorResponse, Method::BINDING, tid);
        enc.error_code(code, reason);
        if let Some((unknown, key)) = extra {
            if !unknown.is_empty() {
                enc.unknown_attributes(unknown);
            }
            enc.message_integrity(key.as_bytes());
        }
        enc.fingerprint();
        enc.finish();
        let response = self.buf.clone();
        self.emit(local, remote, response);
    }

    /// Handles a Binding response to a gathering request or a check (RFC 8445 §7.2.5).
    fn handle_response(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message<'_>,
    ) -> bool {
        let tid = msg.transaction_id();
        let Some(pending) = self.pending.get(&tid).copied() else {
            self.stats.unauthenticated += 1;
            return false;
        };
        match pending {
            Pending::Gather(i) => self.on_gather_response(now, i, local, remote, msg),
            Pending::Check(i) => self.on_check_response(now, i, tid, local, remote, msg),
        }
    }

    fn on_gather_response(
        &mut self,
        now: Instant,
        idx: usize,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message<'_>,
    ) -> bool {
        let Some(g) = self.gatherers.get(idx) else {
            return false;
        };
        if g.server != remote || g.base != local || g.done {
            self.stats.unauthenticated += 1;
            return false;
        }
        let tid = msg.transaction_id();
        self.pending.remove(&tid);
        let (component, base, server) = (g.component, g.base, g.server);
        if let Some(g) = self.gatherers.get_mut(idx) {
            g.done = true;
            if let Some(t) = g.transaction.as_mut() {
                t.complete();
            }
        }
        let mapped = match msg.class() {
            Class::SuccessResponse => msg.xor_mapped_address().or_else(|| msg.mapped_address()),
            _ => None,
        };
        if let Some(mapped) = mapped {
            self.add_server_reflexive(component, base, server, mapped);
        } else {
            tracing::debug!(%server, "STUN server gave no mapped address");
        }
        self.drive(now);
        true
    }

    /// Adds a server-reflexive candidate unless it is redundant (RFC 8445 §5.1.3).
    fn add_server_reflexive(
        &mut self,
        component: u16,
        base: SocketAddr,
        server: SocketAddr,
        mapped: SocketAddr,
    ) {
        if self
            .local_candidates
            .iter()
            .any(|c| c.component == component && c.address == mapped && c.base == base)
        {
            return;
        }
        let Some(host) = self
            .local_candidates
            .iter()
            .find(|c| c.kind == CandidateType::Host && c.base == base)
        else {
            return;
        };
        let local_pref = local_preference(host.priority);
        let candidate = Candidate {
            foundation: self.foundation(
                CandidateType::ServerReflexive,
                base.ip(),
                Some(server.ip()),
            ),
            component,
            priority: priority(CandidateType::ServerReflexive, local_pref, component),
            address: mapped,
            kind: CandidateType::ServerReflexive,
            related_address: Some(base),
            base,
        };
        self.local_candidates.push(candidate.clone());
        self.events.push_back(IceEvent::LocalCandidate(candidate));
    }

    #[allow(clippy::too_many_arguments)]
    fn on_check_response(
        &mut self,
        now: Instant,
        idx: usize,
        tid: TransactionId,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message<'_>,
    ) -> bool {
        let Some(remote_creds) = &self.remote_credentials else {
            return false;
        };
        if !msg.has_fingerprint() || msg.verify_integrity(remote_creds.pwd.as_bytes()).is_err() {
            self.stats.unauthenticated += 1;
            return false;
        }
        self.pending.remove(&tid);
        let Some(pair) = self.pairs.get_mut(idx) else {
            return false;
        };
        let is_current = pair
            .check
            .as_ref()
            .is_some_and(|c| c.transaction.id() == tid);
        let (nominating, consent, first_sent, transmits, sent_as) = match &pair.check {
            Some(c) if is_current => (
                c.nominating,
                c.consent,
                Some(c.first_sent),
                c.transaction.transmits(),
                c.role,
            ),
            _ => (false, false, None, 0, self.role),
        };
        if is_current {
            pair.check = None;
        } else {
            pair.old_transactions.retain(|t| *t != tid);
        }
        let component = pair.component;
        let pair_local = self.local_candidates[pair.local].base;
        let pair_remote = self.remote_candidates[pair.remote].address;
        // RFC 8445 §7.2.5.2.1: the response must come back symmetrically.
        if local != pair_local || remote != pair_remote {
            if !consent {
                pair.state = PairState::Failed;
            }
            self.update_selection(component);
            return true;
        }
        if msg.class() == Class::ErrorResponse {
            let code = msg.error_code().map(|e| e.code);
            if code == Some(error_code::ROLE_CONFLICT) && !consent {
                // RFC 8445 §7.2.5.1: switch role (unless already done) and check the pair again.
                let new_role = match sent_as {
                    Role::Controlling => Role::Controlled,
                    Role::Controlled => Role::Controlling,
                };
                if self.role == sent_as {
                    self.switch_role(new_role);
                }
                let pair = &mut self.pairs[idx];
                pair.state = PairState::Waiting;
                if !self.triggered.contains(&idx) {
                    self.triggered.push_back(idx);
                }
            } else if !consent {
                self.pairs[idx].state = PairState::Failed;
            }
            self.drive(now);
            return true;
        }
        let Some(mapped) = msg.xor_mapped_address() else {
            if !consent {
                self.pairs[idx].state = PairState::Failed;
            }
            return true;
        };
        // The local candidate the peer saw: a known one, or a new peer-reflexive one
        // (RFC 8445 §7.2.5.3.1).
        let valid_local = match self
            .local_candidates
            .iter()
            .position(|c| c.component == component && c.address == mapped)
        {
            Some(i) => i,
            None => {
                let base_idx = self.pairs[idx].local;
                let local_pref = local_preference(self.local_candidates[base_idx].priority);
                let candidate = Candidate {
                    foundation: self.foundation(
                        CandidateType::PeerReflexive,
                        pair_local.ip(),
                        None,
                    ),
                    component,
                    priority: priority(CandidateType::PeerReflexive, local_pref, component),
                    address: mapped,
                    kind: CandidateType::PeerReflexive,
                    related_address: Some(pair_local),
                    base: pair_local,
                };
                self.local_candidates.push(candidate);
                self.local_candidates.len() - 1
            }
        };
        let role = self.role;
        let pair = &mut self.pairs[idx];
        pair.last_consent = Some(now);
        if pair.next_consent.is_none() {
            pair.next_consent = Some(now + self.config.consent_interval);
        }
        if consent {
            return true;
        }
        if let (Some(sent), 1) = (first_sent, transmits) {
            pair.rtt = Some(now.saturating_duration_since(sent));
        }
        pair.state = PairState::Succeeded;
        pair.valid_local = Some(valid_local);
        if nominating && role == Role::Controlling {
            pair.nominated = true;
        }
        if pair.nominate_on_success && role == Role::Controlled {
            pair.nominated = true;
        }
        if self.first_valid_at[usize::from(component) - 1].is_none() {
            self.first_valid_at[usize::from(component) - 1] = Some(now);
        }
        // RFC 8445 §7.2.5.3.3: unfreeze pairs with the same foundation.
        let foundation = self.pair_foundation(idx);
        for i in 0..self.pairs.len() {
            if self.pairs[i].state == PairState::Frozen && self.pair_foundation(i) == foundation {
                self.pairs[i].state = PairState::Waiting;
            }
        }
        self.update_selection(component);
        self.drive(now);
        true
    }

    fn pair_foundation(&self, idx: usize) -> (String, String) {
        let p = &self.pairs[idx];
        (
            self.local_candidates[p.local].foundation.clone(),
            self.remote_candidates[p.remote].foundation.clone(),
        )
    }

    /// The pair priority of RFC 8445 §6.1.2.3, computed from the local candidate the pair is
    /// known by (its valid local candidate once it succeeded).
    fn pair_priority(&self, pair: &Pair) -> u64 {
        let local = &self.local_candidates[pair.valid_local.unwrap_or(pair.local)];
        let remote = &self.remote_candidates[pair.remote];
        let (g, d) = match self.role {
            Role::Controlling => (u64::from(local.priority), u64::from(remote.priority)),
            Role::Controlled => (u64::from(remote.priority), u64::from(local.priority)),
        };
        (1u64 << 32) * g.min(d) + 2 * g.max(d) + u64::from(g > d)
    }

    /// Pairs every local base with every remote candidate of the same component and family
    /// (RFC 8445 §6.1.2.2), reflexive local candidates replaced by their base (§6.1.2.4).
    fn form_pairs(&mut self) {
        if self.remote_credentials.is_none() {
            return;
        }
        for l in 0..self.local_candidates.len() {
            if !is_base(&self.local_candidates[l]) {
                continue;
            }
            for r in 0..self.remote_candidates.len() {
                let (lc, rc) = (&self.local_candidates[l], &self.remote_candidates[r]);
                if lc.component != rc.component || lc.address.is_ipv6() != rc.address.is_ipv6() {
                    continue;
                }
                // Link-local and loopback only pair with their own kind.
                if is_loopback(lc.address) != is_loopback(rc.address) {
                    continue;
                }
                if self.pairs.iter().any(|p| p.local == l && p.remote == r) {
                    continue;
                }
                if self.pair_is_excluded(l, r) {
                    continue;
                }
                if self.pairs.len() >= self.config.max_candidate_pairs {
                    self.stats.candidates_refused += 1;
                    return;
                }
                let mut pair = Pair::new(lc.component, l, r);
                // RFC 8445 §6.1.2.6: the first pair of each foundation starts Waiting.
                let foundation = (lc.foundation.clone(), rc.foundation.clone());
                let foundation_seen = (0..self.pairs.len()).any(|i| {
                    self.pairs[i].state != PairState::Failed
                        && self.pair_foundation(i) == foundation
                });
                pair.state = if foundation_seen {
                    PairState::Frozen
                } else {
                    PairState::Waiting
                };
                self.pairs.push(pair);
                self.exhausted_since = None;
            }
        }
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.retry_relays(now);
        for relay in &mut self.relays {
            relay.client.handle_timeout(now);
        }
        self.process_relays(now);
        if self.state == ConnectionState::Closed {
            return;
        }
        self.retransmit(now);
        self.drive(now);
        self.consent(now);
        self.nominate(now);
        self.update_state(now);
    }

    /// Allocates again on the relays whose back-off is over (RFC 8656 §7.1: a new Allocate
    /// from the same host socket; the server forgot the lost allocation).
    fn retry_relays(&mut self, now: Instant) {
        if matches!(
            self.state,
            ConnectionState::Closed | ConnectionState::Failed
        ) {
            return;
        }
        for relay in &mut self.relays {
            if relay.retry_at.is_none_or(|t| t > now) {
                continue;
            }
            relay.retry_at = None;
            relay.attempts += 1;
            relay.stale_credentials = false;
            let mut config = relay.config.clone();
            config.seed = config
                .seed
                .map(|seed| seed ^ (u64::from(relay.attempts) << 48));
            tracing::debug!(server = %config.server, attempt = relay.attempts, "allocating again");
            relay.client = TurnClient::new(config, now);
        }
    }

    /// Sends what is due: triggered checks at once, then one new transaction per Ta.
    fn drive(&mut self, now: Instant) {
        if matches!(
            self.state,
            ConnectionState::Failed | ConnectionState::Closed
        ) {
            self.triggered.clear();
            return;
        }
        while let Some(idx) = self.triggered.pop_front() {
            if self.pairs.get(idx).is_some() {
                self.start_check(now, idx, false);
            }
        }
        if !self.gathering_started {
            return;
        }
        if self.next_pacing.is_some_and(|t| t > now) {
            return;
        }
        // One new transaction per Ta (RFC 8445 §6.1.4.2): gathering first, then checks.
        if let Some(i) = self.gatherers.iter().position(|g| g.transaction.is_none()) {
            self.start_gather(now, i);
            self.next_pacing = Some(now + self.config.ta);
            return;
        }
        if self.all_completed() {
            return;
        }
        if let Some(idx) = self.next_ordinary_check() {
            self.start_check(now, idx, false);
            self.next_pacing = Some(now + self.config.ta);
        }
    }

    fn next_ordinary_check(&mut self) -> Option<usize> {
        self.remote_credentials.as_ref()?;
        let pick = |agent: &Agent, state: PairState| {
            agent
                .pairs
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.state == state && agent.selected[usize::from(p.component) - 1].is_none()
                })
                .max_by_key(|(_, p)| agent.pair_priority(p))
                .map(|(i, _)| i)
        };
        if let Some(i) = pick(self, PairState::Waiting) {
            return Some(i);
        }
        // No waiting pair: unfreeze the best frozen one (RFC 8445 §6.1.4.2).
        let i = pick(self, PairState::Frozen)?;
        self.pairs[i].state = PairState::Waiting;
        Some(i)
    }

    fn start_gather(&mut self, now: Instant, idx: usize) {
        let tid = TransactionId::random(&mut self.rng);
        let config = RetransmitConfig {
            rto: self.config.gather_rto,
            max_transmits: self.config.gather_max_transmits,
            last_wait_factor: 4,
            max_rto: None,
        };
        let mut request = Vec::with_capacity(64);
        {
            let mut enc = MessageEncoder::new(&mut request, Class::Request, Method::BINDING, tid);
            if let Some(software) = &self.config.software {
                enc.software(software);
            }
            enc.fingerprint();
            enc.finish();
        }
        let g = &mut self.gatherers[idx];
        g.transaction = Some(ClientTransaction::new(tid, config, now));
        g.request = request;
        self.pending.insert(tid, Pending::Gather(idx));
        self.retransmit(now);
    }

    /// Starts a connectivity check on a pair (RFC 8445 §7.2.4). A check already in flight is
    /// superseded: its answer still counts, but it is not retransmitted.
    fn start_check(&mut self, now: Instant, idx: usize, consent: bool) {
        if matches!(
            self.state,
            ConnectionState::Failed | ConnectionState::Closed
        ) {
            return;
        }
        let Some(remote_creds) = self.remote_credentials.clone() else {
            return;
        };
        let role = self.role;
        let nominating = !consent
            && role == Role::Controlling
            && self.pairs[idx].state == PairState::Succeeded
            && !self.pairs[idx].nominated;
        let tid = TransactionId::random(&mut self.rng);
        let pair = &self.pairs[idx];
        let base = &self.local_candidates[pair.local];
        let local_pref = local_preference(base.priority);
        let prflx_priority = priority(CandidateType::PeerReflexive, local_pref, pair.component);
        let mut request = Vec::with_capacity(128);
        {
            let username = format!("{}:{}", remote_creds.ufrag, self.local_credentials.ufrag);
            let mut enc = MessageEncoder::new(&mut request, Class::Request, Method::BINDING, tid);
            enc.username(&username);
            enc.priority(prflx_priority);
            match role {
                Role::Controlling => {
                    enc.ice_controlling(self.tie_breaker);
                    if nominating {
                        enc.use_candidate();
                    }
                }
                Role::Controlled => {
                    enc.ice_controlled(self.tie_breaker);
                }
            }
            if let Some(software) = &self.config.software {
                enc.software(software);
            }
            enc.message_integrity(remote_creds.pwd.as_bytes());
            enc.fingerprint();
            enc.finish();
        }
        let config = RetransmitConfig {
            rto: self.config.check_rto,
            max_transmits: self.config.check_max_transmits,
            last_wait_factor: 2,
            max_rto: Some(self.config.check_rto * 8),
        };
        let pair = &mut self.pairs[idx];
        if let Some(old) = pair.check.take() {
            if pair.old_transactions.len() >= MAX_OLD_TRANSACTIONS {
                let dropped = pair.old_transactions.remove(0);
                self.pending.remove(&dropped);
            }
            pair.old_transactions.push(old.transaction.id());
        }
        if !consent && pair.state != PairState::Succeeded {
            pair.state = PairState::InProgress;
        }
        pair.check = Some(Check {
            transaction: ClientTransaction::new(tid, config, now),
            request,
            nominating,
            first_sent: now,
            consent,
            role,
        });
        self.pending.insert(tid, Pending::Check(idx));
        if self.state == ConnectionState::New {
            self.set_state(ConnectionState::Checking);
        }
        self.retransmit(now);
    }

    /// Sends due (re)transmissions and expires transactions.
    fn retransmit(&mut self, now: Instant) {
        for g in &mut self.gatherers {
            let Some(t) = g.transaction.as_mut() else {
                continue;
            };
            if g.done {
                continue;
            }
            if t.poll_transmit(now) {
                self.transmits.push_back(Transmit {
                    source: g.base,
                    destination: g.server,
                    contents: g.request.clone(),
                    transport: Carrier::Udp,
                });
            }
            t.handle_timeout(now);
            if t.state() == TransactionState::TimedOut {
                tracing::debug!(server = %g.server, "STUN server did not answer");
                g.done = true;
                self.pending.remove(&t.id());
            }
        }
        let mut out = Vec::new();
        let mut unanswered_relays = Vec::new();
        for idx in 0..self.pairs.len() {
            let (base, remote, relayed) = {
                let p = &self.pairs[idx];
                let local = &self.local_candidates[p.local];
                (
                    local.base,
                    self.remote_candidates[p.remote].address,
                    local.kind == CandidateType::Relayed,
                )
            };
            let pair = &mut self.pairs[idx];
            let Some(check) = pair.check.as_mut() else {
                continue;
            };
            if check.transaction.poll_transmit(now) {
                self.stats.checks_sent += 1;
                out.push((base, remote, check.request.clone()));
                // A consent check through our relay went unanswered for an RTO: the server
                // may have lost the allocation without telling (a restart, or coturn after a
                // failed relayed send).
                if relayed && check.consent && check.transaction.transmits() >= 2 {
                    unanswered_relays.push(base);
                }
            }
            check.transaction.handle_timeout(now);
            if check.transaction.state() == TransactionState::TimedOut {
                let id = check.transaction.id();
                let consent = check.consent;
                pair.check = None;
                self.pending.remove(&id);
                for old in pair.old_transactions.drain(..) {
                    self.pending.remove(&old);
                }
                if !consent && pair.state == PairState::InProgress {
                    pair.state = PairState::Failed;
                }
            }
        }
        for (source, destination, contents) in out {
            self.emit(source, destination, contents);
        }
        for base in unanswered_relays {
            self.check_relay(now, base);
        }
    }

    /// Verifies the allocation whose relayed address is `base` (RFC 8656 §8), at most once per
    /// [`RELAY_CHECK_INTERVAL`]: a lost allocation is then reported and replaced.
    fn check_relay(&mut self, now: Instant, base: SocketAddr) {
        let Some(relay) = self.relays.iter_mut().find(|r| r.relayed == Some(base)) else {
            return;
        };
        if relay
            .last_check
            .is_some_and(|t| now.saturating_duration_since(t) < RELAY_CHECK_INTERVAL)
        {
            return;
        }
        relay.last_check = Some(now);
        tracing::debug!(server = %relay.client.server(), relayed = %base, "consent through the relay unanswered: verifying the allocation");
        relay.client.check_allocation(now);
    }

    /// Sends `contents` from the local base `source`: a host socket directly, a relayed
    /// address through its TURN allocation (RFC 8656 §10, §12).
    fn emit(&mut self, source: SocketAddr, destination: SocketAddr, contents: Vec<u8>) {
        let now = self.now;
        if let Some(relay) = self
            .relays
            .iter_mut()
            .find(|r| r.client.relayed_address() == Some(source))
        {
            if let Err(error) = relay.client.send_to(destination, &contents, now) {
                tracing::debug!(%source, %destination, %error, "could not send through the relay");
            }
            return;
        }
        self.transmits.push_back(Transmit {
            source,
            destination,
            contents,
            transport: Carrier::Udp,
        });
    }

    /// Consent freshness on selected pairs (RFC 7675 §5.1); it also serves as the keepalive of
    /// RFC 8445 §11.
    fn consent(&mut self, now: Instant) {
        for c in 0..self.selected.len() {
            let Some(idx) = self.selected[c] else {
                continue;
            };
            let due = self.pairs[idx].next_consent.is_some_and(|t| t <= now);
            if due && self.pairs[idx].check.is_none() {
                let factor = self.rng.random_range(CONSENT_JITTER.0..CONSENT_JITTER.1);
                let next = now + self.config.consent_interval.mul_f64(factor);
                self.pairs[idx].next_consent = Some(next);
                self.start_check(now, idx, true);
            } else if due {
                let next = now + self.config.consent_interval;
                self.pairs[idx].next_consent = Some(next);
            }
        }
    }

    /// Regular nomination by the controlling agent (RFC 8445 §8.1.1): once a component has a
    /// valid pair, every better pair not tried yet is checked at once (a burst bounded by the
    /// triggered-check queue), and the best valid pair is nominated when no better pair is
    /// pending, or when the better ones had a few round trips to answer, or at the latest after
    /// [`AgentConfig::nomination_timeout`].
    fn nominate(&mut self, now: Instant) {
        if self.role != Role::Controlling || self.remote_credentials.is_none() {
            return;
        }
        for c in 1..=self.config.components.max(1) {
            let Some((best, better_untried)) = self.nomination_candidates(c) else {
                continue;
            };
            for idx in better_untried {
                if !self.triggered.contains(&idx)
                    && self.triggered.len() < self.config.max_triggered_checks
                {
                    self.pairs[idx].state = PairState::Waiting;
                    self.triggered.push_back(idx);
                }
            }
            self.drive(now);
            if self.nomination_deadline(c).is_some_and(|t| now >= t) {
                tracing::debug!(component = c, "nominating");
                self.start_check(now, best, false);
            }
        }
    }

    /// For a component that has a valid pair and no nomination yet: its best valid pair and
    /// the better pairs that were not tried yet.
    fn nomination_candidates(&self, c: u16) -> Option<(usize, Vec<usize>)> {
        let ci = usize::from(c).checked_sub(1)?;
        if self.selected.get(ci).copied().flatten().is_some() || self.nominating(c) {
            return None;
        }
        // RFC 8445 §8.1.1: once a pair was nominated, another one needs an ICE restart.
        if self.nominated_once.get(ci).copied().unwrap_or(false) {
            return None;
        }
        let best = self.best_valid(c, false)?;
        let best_priority = self.pair_priority(&self.pairs[best]);
        let untried = (0..self.pairs.len())
            .filter(|&i| {
                let p = &self.pairs[i];
                p.component == c
                    && matches!(p.state, PairState::Frozen | PairState::Waiting)
                    && self.pair_priority(p) > best_priority
            })
            .collect();
        Some((best, untried))
    }

    fn nominating(&self, c: u16) -> bool {
        self.pairs
            .iter()
            .any(|p| p.component == c && p.check.as_ref().is_some_and(|k| k.nominating))
    }

    /// When the controlling agent nominates for component `c` (see [`Agent::nominate`]).
    fn nomination_deadline(&self, c: u16) -> Option<Instant> {
        let (best, untried) = self.nomination_candidates(c)?;
        let first_valid = self.first_valid_at[usize::from(c) - 1]?;
        let best_priority = self.pair_priority(&self.pairs[best]);
        let mut better_pending = !untried.is_empty();
        let mut latest_start = first_valid;
        for p in &self.pairs {
            if p.component == c
                && p.state == PairState::InProgress
                && self.pair_priority(p) > best_priority
            {
                better_pending = true;
                if let Some(check) = &p.check {
                    latest_start = latest_start.max(check.first_sent);
                }
            }
        }
        if !better_pending {
            return Some(first_valid);
        }
        let rtt = self.pairs[best].rtt.unwrap_or(self.config.check_rto);
        let wait = (rtt * NOMINATION_WAIT_RTTS).max(MIN_NOMINATION_WAIT);
        Some((latest_start + wait).min(first_valid + self.config.nomination_timeout))
    }

    /// The highest-priority valid pair of a component, nominated ones only if asked.
    fn best_valid(&self, component: u16, nominated: bool) -> Option<usize> {
        self.pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.component == component
                    && p.state == PairState::Succeeded
                    && (!nominated || p.nominated)
            })
            .max_by_key(|(_, p)| self.pair_priority(p))
            .map(|(i, _)| i)
    }

    /// The selected pair of a component is its highest-priority nominated valid pair (this
    /// also accepts aggressive nomination, where every check carries USE-CANDIDATE).
    fn update_selection(&mut self, component: u16) {
        let ci = usize::from(component) - 1;
        let best = self.best_valid(component, true);
        if best.is_none() || best == self.selected[ci] {
            return;
        }
        self.selected[ci] = best;
        self.previous_paths[ci] = None;
        self.nominated_once[ci] = true;
        self.lost_consent_deadline[ci] = None;
        if let Some(idx) = best {
            let pair = &self.pairs[idx];
            let local = self.local_candidates[pair.valid_local.unwrap_or(pair.local)].clone();
            let remote = self.remote_candidates[pair.remote].clone();
            // Data on a relayed pair goes as ChannelData from now on (RFC 8656 §12).
            let base = self.local_candidates[pair.local].base;
            let now = self.now;
            if let Some(relay) = self
                .relays
                .iter_mut()
                .find(|r| r.client.relayed_address() == Some(base))
            {
                if let Err(error) = relay.client.bind_channel(remote.address, now) {
                    tracing::debug!(%error, "no channel for the selected relayed pair");
                }
            }
            tracing::debug!(component, local = %local, remote = %remote, "selected pair");
            self.events.push_back(IceEvent::SelectedPair {
                component,
                local,
                remote,
            });
        }
    }

    fn all_completed(&self) -> bool {
        self.selected.iter().all(Option::is_some)
    }

    /// Recomputes the overall state from the components (RFC 8445 §6.1.3, RFC 7675 §5.1).
    fn update_state(&mut self, now: Instant) {
        if self.gathering_started
            && !self.gathering_complete
            && self.gatherers.iter().all(|g| g.done)
            && self.relays.iter().all(|r| r.done)
        {
            self.gathering_complete = true;
            self.events.push_back(IceEvent::GatheringComplete);
        }
        if matches!(
            self.state,
            ConnectionState::Closed | ConnectionState::Failed
        ) {
            return;
        }
        // The selected pair went with its relayed candidate and no ICE restart came before its
        // consent ran out (RFC 7675 §5.1).
        if self
            .lost_consent_deadline
            .iter()
            .flatten()
            .any(|t| now >= *t)
        {
            tracing::info!("consent lost: the selected pair went with its relayed candidate");
            self.set_state(ConnectionState::Failed);
            return;
        }
        // Consent lost on a selected pair: stop sending (RFC 7675 §5.1).
        for c in 0..self.selected.len() {
            if let Some(idx) = self.selected[c] {
                let last = self.pairs[idx].last_consent;
                if last.is_some_and(|t| {
                    now.saturating_duration_since(t) >= self.config.consent_timeout
                }) {
                    tracing::info!(component = c + 1, "consent lost");
                    self.set_state(ConnectionState::Failed);
                    return;
                }
            }
        }
        let components = self.config.components.max(1);
        if self.all_completed() {
            let stale = self.selected.iter().flatten().any(|&idx| {
                self.pairs[idx].last_consent.is_some_and(|t| {
                    now.saturating_duration_since(t) >= self.config.disconnected_timeout
                })
            });
            if stale {
                self.set_state(ConnectionState::Disconnected);
            } else {
                self.set_state(ConnectionState::Completed);
            }
            return;
        }
        let all_valid = (1..=components).all(|c| self.best_valid(c, false).is_some());
        if all_valid {
            self.set_state(ConnectionState::Connected);
            return;
        }
        // Failure: no pair can succeed for some component any more. A lost allocation being
        // made again may still bring a candidate that works (one that never worked is not
        // waited for: its retries are bounded, but by minutes over a silent server).
        let gathering_busy = self.gatherers.iter().any(|g| !g.done)
            || self.relays.iter().any(|r| {
                r.ever_allocated
                    && (r.retry_at.is_some() || r.client.state() == TurnState::Allocating)
            });
        let hopeless = (1..=components).any(|c| {
            self.best_valid(c, false).is_none()
                && !self.pairs.iter().any(|p| {
                    p.component == c
                        && matches!(
                            p.state,
                            PairState::Frozen | PairState::Waiting | PairState::InProgress
                        )
                })
        });
        let checking_possible = self.remote_credentials.is_some();
        if hopeless && checking_possible && !gathering_busy && self.triggered.is_empty() {
            let since = *self.exhausted_since.get_or_insert(now);
            if self.remote_end_of_candidates
                || now.saturating_duration_since(since) >= self.config.failed_timeout
            {
                tracing::info!("ICE failed: no pair works");
                self.set_state(ConnectionState::Failed);
                return;
            }
        } else {
            self.exhausted_since = None;
        }
        // A component lost its pairs (a relayed candidate went): checking again.
        if matches!(
            self.state,
            ConnectionState::Connected | ConnectionState::Completed | ConnectionState::Disconnected
        ) {
            self.set_state(ConnectionState::Checking);
        }
    }

    fn set_state(&mut self, state: ConnectionState) {
        if self.state != state {
            tracing::debug!(?state, "ICE state");
            self.state = state;
            self.events.push_back(IceEvent::StateChanged(state));
            if state == ConnectionState::Failed {
                self.stop_checks();
            }
        }
    }

    /// A failed agent sends no more checks (it still answers the peer's, statelessly, until it
    /// is restarted or closed).
    fn stop_checks(&mut self) {
        self.triggered.clear();
        self.early_checks.clear();
        self.pending.clear();
        for p in &mut self.pairs {
            p.check = None;
            p.old_transactions.clear();
        }
        for g in &mut self.gatherers {
            g.done = true;
        }
    }

    /// When [`Agent::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let relays = self
            .relays
            .iter()
            .filter_map(|r| r.client.poll_timeout())
            .min();
        if matches!(
            self.state,
            ConnectionState::Closed | ConnectionState::Failed
        ) {
            return relays;
        }
        let mut next: Option<Instant> = relays;
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for r in &self.relays {
            at(r.retry_at);
        }
        for d in &self.lost_consent_deadline {
            at(*d);
        }
        for g in &self.gatherers {
            if !g.done {
                at(g.transaction
                    .as_ref()
                    .and_then(ClientTransaction::poll_timeout));
            }
        }
        for p in &self.pairs {
            at(p.check.as_ref().and_then(|c| c.transaction.poll_timeout()));
        }
        let work_left = self.gathering_started
            && (self.gatherers.iter().any(|g| g.transaction.is_none())
                || (self.remote_credentials.is_some()
                    && self.pairs.iter().any(|p| {
                        matches!(p.state, PairState::Waiting | PairState::Frozen)
                            && self.selected[usize::from(p.component) - 1].is_none()
                    })));
        if work_left {
            at(Some(self.next_pacing.unwrap_or(self.now)));
        }
        for (ci, sel) in self.selected.iter().enumerate() {
            match sel {
                Some(idx) => {
                    let p = &self.pairs[*idx];
                    at(p.next_consent);
                    at(p.last_consent.map(|t| t + self.config.consent_timeout));
                    if self.state != ConnectionState::Disconnected {
                        at(p.last_consent.map(|t| t + self.config.disconnected_timeout));
                    }
                }
                None => {
                    if self.role == Role::Controlling {
                        at(self.nomination_deadline(ci as u16 + 1));
                    }
                }
            }
        }
        if let Some(since) = self.exhausted_since {
            at(Some(since + self.config.failed_timeout));
        }
        next
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.relays.iter_mut().find_map(|relay| {
            let t = relay.client.poll_transmit()?;
            Some(Transmit {
                source: relay.base,
                destination: t.destination,
                contents: t.data,
                transport: match relay.client.transport() {
                    TurnTransport::Udp => Carrier::Udp,
                    TurnTransport::Tcp => Carrier::Tcp,
                    TurnTransport::Tls => Carrier::Tls,
                },
            })
        })
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// The local base and remote address that application data for `component` must use, once
    /// a pair is usable: the selected pair, or before nomination ends the best valid pair
    /// (RFC 8445 §12.1). `None` when consent has been lost or no pair works.
    pub fn send_path(&self, component: u16) -> Option<(SocketAddr, SocketAddr)> {
        if matches!(
            self.state,
            ConnectionState::Closed | ConnectionState::Failed
        ) {
            return None;
        }
        let ci = usize::from(component).checked_sub(1)?;
        let current = self
            .selected
            .get(ci)
            .copied()
            .flatten()
            .or_else(|| self.best_valid(component, false));
        match current {
            Some(idx) => self.pair_path(idx),
            None => self.previous_paths.get(ci).copied().flatten(),
        }
    }

    /// The selected pair of a component, if any: (local candidate, remote candidate).
    pub fn selected_pair(&self, component: u16) -> Option<(&Candidate, &Candidate)> {
        let ci = usize::from(component).checked_sub(1)?;
        let idx = self.selected.get(ci).copied().flatten()?;
        let p = &self.pairs[idx];
        Some((
            &self.local_candidates[p.valid_local.unwrap_or(p.local)],
            &self.remote_candidates[p.remote],
        ))
    }

    /// ICE restart (RFC 8445 §9): new local credentials; checks start again once the peer's new
    /// credentials and candidates arrive. Local candidates are kept and announced again; the
    /// selected pairs keep carrying data until new ones are selected.
    pub fn restart(&mut self, now: Instant) {
        self.local_credentials = Credentials::random(&mut self.rng);
        self.remote_credentials = None;
        self.reset_checks();
        self.local_candidates
            .retain(|c| c.kind != CandidateType::PeerReflexive);
        for c in self.local_candidates.clone() {
            self.events.push_back(IceEvent::LocalCandidate(c));
        }
        if self.gathering_complete {
            self.events.push_back(IceEvent::GatheringComplete);
        }
        if self.state != ConnectionState::Closed {
            self.state = ConnectionState::New;
            self.set_state(ConnectionState::Checking);
        }
        self.handle_timeout(now);
    }

    /// Drops the check list and the remote candidates of the current generation. The paths of
    /// the selected pairs are remembered and keep carrying data until new pairs are selected.
    fn reset_checks(&mut self) {
        for ci in 0..self.selected.len() {
            if let Some(path) = self.selected[ci].and_then(|idx| self.pair_path(idx)) {
                self.previous_paths[ci] = Some(path);
            }
        }
        self.pending.retain(|_, p| matches!(p, Pending::Gather(_)));
        self.pairs.clear();
        self.triggered.clear();
        self.remote_candidates.clear();
        self.remote_end_of_candidates = false;
        self.exhausted_since = None;
        self.early_checks.clear();
        self.first_valid_at.iter_mut().for_each(|t| *t = None);
        self.selected.iter_mut().for_each(|s| *s = None);
        self.nominated_once.iter_mut().for_each(|n| *n = false);
        self.lost_consent_deadline
            .iter_mut()
            .for_each(|d| *d = None);
    }

    fn pair_path(&self, idx: usize) -> Option<(SocketAddr, SocketAddr)> {
        let p = self.pairs.get(idx)?;
        Some((
            self.local_candidates.get(p.local)?.base,
            self.remote_candidates.get(p.remote)?.address,
        ))
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Counters.
    pub fn stats(&self) -> &AgentStats {
        &self.stats
    }

    /// Local candidates gathered so far (host, server-reflexive, and peer-reflexive ones
    /// learned from checks).
    pub fn local_candidates(&self) -> &[Candidate] {
        &self.local_candidates
    }

    /// Remote candidates known so far (signalled and peer-reflexive).
    pub fn remote_candidates(&self) -> &[Candidate] {
        &self.remote_candidates
    }

    /// Closes the agent: nothing more is sent or accepted.
    pub fn close(&mut self) {
        self.transmits.clear();
        self.pending.clear();
        for p in &mut self.pairs {
            p.check = None;
        }
        self.set_state(ConnectionState::Closed);
        // Allocations are deleted (RFC 8656 §8): keep polling transmits and timeouts until
        // `poll_timeout` returns `None` to let the deallocations go out.
        let now = self.now;
        for relay in &mut self.relays {
            relay.retry_at = None;
            relay.client.close(now);
        }
    }

    /// The foundation of a local candidate (RFC 8445 §5.1.1.3): equal for the same type, base
    /// IP and STUN server.
    fn foundation(
        &mut self,
        kind: CandidateType,
        base: std::net::IpAddr,
        server: Option<std::net::IpAddr>,
    ) -> String {
        let next = self.foundations.len() + 1;
        self.foundations
            .entry((kind, base, server))
            .or_insert_with(|| next.to_string())
            .clone()
    }
}

impl Pair {
    fn new(component: u16, local: usize, remote: usize) -> Self {
        Pair {
            component,
            local,
            remote,
            state: PairState::Frozen,
            check: None,
            old_transactions: Vec::new(),
            valid_local: None,
            nominated: false,
            nominate_on_success: false,
            peer_authenticated: false,
            rtt: None,
            last_consent: None,
            next_consent: None,
        }
    }
}

/// Appends `item` unless `vec` already holds `limit` items; returns its index.
fn push_bounded<T>(vec: &mut Vec<T>, item: T, limit: usize) -> Option<usize> {
    if vec.len() >= limit {
        return None;
    }
    vec.push(item);
    Some(vec.len() - 1)
}

/// Candidates checks are sent from (RFC 8445 §6.1.2.4): host candidates and relayed ones, whose
/// base is themselves; reflexive candidates are represented by their base.
fn is_base(c: &Candidate) -> bool {
    matches!(c.kind, CandidateType::Host | CandidateType::Relayed)
}

fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}
