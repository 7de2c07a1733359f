//! Jingle (XEP-0166) signalling for the ICE agent. For now: the XEP-0176 ICE-UDP transport
//! element and its mapping to and from the agent's credentials and candidates.

pub mod ice_udp;

pub use ice_udp::{
    CandidateError, IceUdpCandidate, IceUdpTransport, Skipped, TransportError, TransportLimits,
};
