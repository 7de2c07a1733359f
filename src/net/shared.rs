//! What the [`IceConnection`](super::IceConnection) handle and its driver task share: the
//! view the driver publishes after each turn (paths, selected pairs, candidates, counters) and
//! the types the handle gives out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, MutexGuard};

use super::tls::TurnStreamFailure;
use crate::ice::{AgentStats, Candidate, Credentials, Role};

/// Most failures of streams to TURN servers kept for [`IceConnection::turn_stream_failures`](super::IceConnection::turn_stream_failures)
/// (the oldest are dropped first).
pub(crate) const MAX_STREAM_FAILURES: usize = 32;

/// An application datagram received on a component's pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The component it arrived on (RFC 8445 §5.1.1).
    pub component: u16,
    /// The peer address it came from.
    pub source: SocketAddr,
    /// The payload.
    pub data: Vec<u8>,
}

/// The selected (nominated) pair of a component (RFC 8445 §8.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedPair {
    /// The component.
    pub component: u16,
    /// Our candidate.
    pub local: Candidate,
    /// The peer's candidate.
    pub remote: Candidate,
}

/// Counters of the driver and its agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Application datagrams received and queued for [`IceConnection::recv`](super::IceConnection::recv).
    pub datagrams_received: u64,
    /// Application datagrams dropped because the receive queue was full (UDP-like: the
    /// application was too slow to read).
    pub datagrams_dropped: u64,
    /// Events dropped because the event queue was full (the current state, selected pairs
    /// and local candidates stay readable from the handle).
    pub events_dropped: u64,
    /// Signalling (the peer's candidates, TURN servers) dropped because the driver's signal
    /// queue was full.
    pub signals_dropped: u64,
    /// Agent transmissions that the socket refused, or whose source socket is unknown.
    pub transmit_errors: u64,
    /// The agent's own counters, as of the driver's last turn.
    pub agent: AgentStats,
}

/// What the driver publishes for the handle to read without a round trip to the task.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) credentials: Credentials,
    pub(crate) role: Role,
    /// Per component (index 0 is component 1): local base and remote address of data.
    pub(crate) paths: Vec<Option<(SocketAddr, SocketAddr)>>,
    pub(crate) selected: Vec<Option<SelectedPair>>,
    pub(crate) local_candidates: Vec<Candidate>,
    pub(crate) agent_stats: AgentStats,
    /// Streams to TURN servers that could not be set up, oldest first.
    pub(crate) turn_stream_failures: Vec<TurnStreamFailure>,
}

/// State shared by the handle and the driver task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) view: Mutex<View>,
    /// Woken (all waiters) whenever a component's selected pair changes.
    pub(crate) selected_changed: tokio::sync::Notify,
    pub(crate) closed: AtomicBool,
    pub(crate) datagrams_received: AtomicU64,
    pub(crate) datagrams_dropped: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) signals_dropped: AtomicU64,
    pub(crate) transmit_errors: AtomicU64,
}

impl Shared {
    /// The view, even if a thread panicked while holding the lock (the data stays consistent:
    /// every writer replaces whole fields).
    pub(crate) fn view(&self) -> MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
