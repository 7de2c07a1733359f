//! [`AgentEndpoint`]: an ICE [`Agent`] attached to the simulated network, keeping its events and
//! the application data it received.

use std::net::SocketAddr;
use std::time::Instant;

use jingle_ice_proto::ice::{Agent, IceEvent, ReceiveOutcome};

use super::endpoint::{Endpoint, SimDatagram};

/// Application data an agent received on a usable pair (directly, or unwrapped by its TURN
/// client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedData {
    /// Virtual time of arrival.
    pub at: Instant,
    /// The component whose pair it arrived on.
    pub component: u16,
    /// The local address it arrived on (the host socket, for data relayed by a TURN server).
    pub local: SocketAddr,
    /// The remote address it came from.
    pub remote: SocketAddr,
    /// The payload.
    pub contents: Vec<u8>,
}

/// An ICE [`Agent`] as a simulated [`Endpoint`]: feeds it datagrams and timers, sends what it
/// asks for, and keeps a log of its [`IceEvent`]s (stamped with virtual time) and of the
/// application data it accepted ([`ReceiveOutcome::Data`]), so a test can read
/// `LocalCandidate`, `SelectedPair`, `StateChanged` and the data afterwards. The application
/// sends its own data with [`AgentEndpoint::send_data`], through [`Agent::send`].
pub struct AgentEndpoint {
    agent: Agent,
    events: Vec<(Instant, IceEvent)>,
    data: Vec<ReceivedData>,
    last_now: Option<Instant>,
}

impl std::fmt::Debug for AgentEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEndpoint")
            .field("events", &self.events.len())
            .field("data", &self.data.len())
            .finish()
    }
}

impl AgentEndpoint {
    /// Wraps an agent. Bind it to the ports of its host candidates with
    /// [`crate::Network::add_endpoint`].
    pub fn new(agent: Agent) -> Self {
        AgentEndpoint {
            agent,
            events: Vec::new(),
            data: Vec::new(),
            last_now: None,
        }
    }

    /// The agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The agent, to drive it (signalling, gathering). Use it inside
    /// [`crate::Network::with_endpoint`] so that what it then sends goes out and its events
    /// are logged at the right virtual time.
    pub fn agent_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }

    /// Every event so far with the virtual time it was drained at, in order.
    pub fn events(&self) -> &[(Instant, IceEvent)] {
        &self.events
    }

    /// Application data received so far, in order.
    pub fn received_data(&self) -> &[ReceivedData] {
        &self.data
    }

    /// Sends application data for `component` on the agent's current send path (through
    /// its TURN allocation when the path is relayed). Returns `false` (and sends nothing) when
    /// the agent has no usable pair for it, or the data would be taken for STUN.
    pub fn send_data(&mut self, component: u16, contents: impl Into<Vec<u8>>) -> bool {
        self.agent.send_owned(component, contents.into()).is_ok()
    }

    fn drain_events(&mut self) {
        let Some(now) = self.last_now else { return };
        while let Some(e) = self.agent.poll_event() {
            self.events.push((now, e));
        }
    }
}

impl Endpoint for AgentEndpoint {
    fn handle_receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.last_now = Some(now);
        if let ReceiveOutcome::Data { component } =
            self.agent.handle_receive(now, local, remote, data)
        {
            self.data.push(ReceivedData {
                at: now,
                component,
                local,
                remote,
                contents: data.to_vec(),
            });
        }
        while let Some(relayed) = self.agent.poll_relayed_data() {
            self.data.push(ReceivedData {
                at: now,
                component: relayed.component,
                local,
                remote: relayed.source,
                contents: relayed.data,
            });
        }
        self.drain_events();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.agent.handle_timeout(now);
        self.drain_events();
    }

    fn poll_transmit(&mut self) -> Option<SimDatagram> {
        let t = self.agent.poll_transmit()?;
        Some(SimDatagram {
            source: t.source,
            destination: t.destination,
            contents: t.contents,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.agent.poll_timeout()
    }

    fn touched(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.drain_events();
    }
}
