//! The ICE agent state machine (RFC 8445), sans-IO.

use std::net::SocketAddr;
use std::time::Instant;

use super::{AgentConfig, Candidate, Credentials};

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
    /// Every component has a nominated (selected) pair and checks have ended (RFC 8445 §8.1.2).
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
pub enum Event {
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
}

/// A datagram the agent wants sent (drained with [`Agent::poll_transmit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address (a candidate's base) to send from.
    pub source: SocketAddr,
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram.
    pub contents: Vec<u8>,
}

/// What a received datagram turned out to be (see [`Agent::handle_receive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A STUN message the agent consumed (check, response, or gathering answer).
    Stun,
    /// Application data from the peer on a component: hand it to the application.
    Data {
        /// The component whose pair it arrived on.
        component: u16,
    },
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
}

/// A sans-IO ICE agent (RFC 8445) for one media stream with one or more components.
pub struct Agent {
    _private: (),
}

impl Agent {
    /// A new agent in `role`. `now` is the current time of the caller's clock.
    pub fn new(config: AgentConfig, role: Role, now: Instant) -> Self {
        let _ = (config, role, now);
        todo!()
    }

    /// The agent's own credentials, to signal to the peer.
    pub fn local_credentials(&self) -> &Credentials {
        todo!()
    }

    /// The peer's credentials, from signalling. Checks start once they are known.
    pub fn set_remote_credentials(&mut self, credentials: Credentials) {
        let _ = credentials;
        todo!()
    }

    /// The current role.
    pub fn role(&self) -> Role {
        todo!()
    }

    /// Adds a local address the caller has bound for `component` (RFC 8445 §5.1.1.1). Returns
    /// the host candidate, or `None` if it duplicates an existing one. The same
    /// candidate is also announced as [`Event::LocalCandidate`].
    pub fn add_host_candidate(&mut self, component: u16, addr: SocketAddr) -> Option<Candidate> {
        let _ = (component, addr);
        todo!()
    }

    /// Adds a STUN server to learn server-reflexive candidates from, for every host candidate
    /// of the same address family (RFC 8445 §5.1.1.2).
    pub fn add_stun_server(&mut self, server: SocketAddr) {
        let _ = server;
        todo!()
    }

    /// Starts gathering (from the STUN servers added so far) and, once remote credentials
    /// are known, connectivity checks.
    pub fn gather(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Adds a remote candidate, at any time (trickle, RFC 8838 §11).
    pub fn add_remote_candidate(&mut self, candidate: Candidate, now: Instant) {
        let _ = (candidate, now);
        todo!()
    }

    /// The peer signalled end-of-candidates (RFC 8838 §4.2).
    pub fn end_of_remote_candidates(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Feeds a datagram received on the local address `local` from `remote`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Received {
        let _ = (now, local, remote, data);
        todo!()
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// When [`Agent::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// The local base and remote address that application data for `component` must use, once
    /// a pair is usable (selected, or working when the agent is connected but not yet
    /// completed). `None` when consent has been lost or no pair works.
    pub fn send_path(&self, component: u16) -> Option<(SocketAddr, SocketAddr)> {
        let _ = component;
        todo!()
    }

    /// The selected pair of a component, if any.
    pub fn selected_pair(&self, component: u16) -> Option<(&Candidate, &Candidate)> {
        let _ = component;
        todo!()
    }

    /// ICE restart (RFC 8445 §9): new local credentials, checks start again once the peer's new
    /// credentials and candidates arrive. Local candidates are kept and re-announced.
    pub fn restart(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        todo!()
    }

    /// Counters.
    pub fn stats(&self) -> &AgentStats {
        todo!()
    }

    /// Local candidates gathered so far.
    pub fn local_candidates(&self) -> &[Candidate] {
        todo!()
    }

    /// Closes the agent: nothing more is sent.
    pub fn close(&mut self) {
        todo!()
    }
}
