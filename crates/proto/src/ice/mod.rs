//! The ICE agent (RFC 8445), sans-IO: candidates and their priorities, check lists,
//! connectivity checks, nomination, keepalives and consent freshness (RFC 7675), trickle
//! (RFC 8838) and ICE restart.
//!
//! The [`Agent`] never touches a socket or a clock. The caller tells it which local addresses
//! it has bound ([`Agent::add_host_candidate`]), feeds it every datagram received on them
//! ([`Agent::handle_receive`]) and the time ([`Agent::handle_timeout`]), and drains what it
//! asks for: [`Agent::poll_transmit`], [`Agent::poll_event`], [`Agent::poll_timeout`].

mod agent;
mod candidate;
mod config;
mod credentials;

pub use agent::{
    Agent, AgentStats, Carrier, ConnectionState, IceEvent, ReceiveOutcome, RelayedData, Role,
    SendError, Transmit,
};
pub use candidate::{Candidate, CandidateParseError, CandidateType};
pub use config::AgentConfig;
pub use credentials::Credentials;
