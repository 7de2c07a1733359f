//! Jingle (XEP-0166) signalling for the ICE agent: the `<jingle/>` element and its contents
//! ([`element`]), the XEP-0176 ICE-UDP transport mapped to the agent's credentials and
//! candidates ([`ice_udp`]), the XEP-0320 DTLS fingerprint ([`dtls`]), Conversations'
//! `webrtc-datachannel:1` transport wrapping ICE-UDP ([`datachannel`]), the sans-IO session
//! state machine ([`session`]). The stanza errors it answers with are in [`crate::xmpp::stanza`].

pub mod datachannel;
pub mod dtls;
pub mod element;
pub mod ice_udp;
pub mod session;

pub use crate::xmpp::stanza::{
    dismantle, Condition, JingleCondition, LimitExceeded, StanzaError, StanzaLimits,
};
pub use datachannel::{DataChannelError, DataChannelTransport, NS_WEBRTC_DATACHANNEL};
pub use dtls::{dtls_role, DtlsError, DtlsFingerprint, DtlsRole, Setup, NS_DTLS};
pub use element::{
    Action, Content, Creator, Jingle, JingleError, Reason, ReasonCondition, Senders, Transport,
    NS_JINGLE,
};
pub use ice_udp::{
    CandidateError, IceUdpCandidate, IceUdpTransport, Skipped, TransportError, TransportLimits,
    NS_ICE_UDP,
};
pub use session::{
    SessionConfig, SessionError, SessionEvent, SessionKey, SessionManager, SessionRole,
    SessionState, SUPPORTED_TRANSPORTS,
};
