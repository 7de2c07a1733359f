//! Jingle (XEP-0166) signalling: the `<jingle/>` element and its contents ([`element`]), the
//! transport methods, each in its folder ([`transports`]: ICE-UDP, webrtc-datachannel, IBB)
//! behind one [`TransportMethod`] trait, in a [`TransportRegistry`] that orders them,
//! and the sans-IO session state machine ([`session`]). The stanza errors it answers with are
//! in [`crate::xmpp::stanza`].

pub mod element;
pub mod session;
pub mod transports;

pub use crate::xmpp::stanza::{
    dismantle, Condition, JingleCondition, LimitExceeded, StanzaError, StanzaLimits,
};
pub use element::{
    Action, Content, Creator, Jingle, JingleError, Reason, ReasonCondition, Senders, Transport,
    NS_JINGLE,
};
pub use session::{
    SessionConfig, SessionError, SessionEvent, SessionKey, SessionManager, SessionRole,
    SessionState,
};
pub use transports::ice_udp::{
    CandidateError, IceUdpCandidate, IceUdpTransport, Skipped, TransportError, TransportLimits,
    NS_ICE_UDP,
};
pub use transports::webrtc_datachannel::dtls::{
    dtls_role, DtlsError, DtlsFingerprint, DtlsRole, Setup, NS_DTLS,
};
pub use transports::webrtc_datachannel::{
    DataChannelError, DataChannelTransport, NS_WEBRTC_DATACHANNEL,
};
pub use transports::{
    DataChannelMethod, IbbMethod, IceUdpMethod, OpaqueMethod, TransportMethod, TransportRegistry,
    SUPPORTED_TRANSPORTS,
};
